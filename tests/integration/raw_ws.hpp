// A WebSocket client at the byte level, for conformance tests: a plain TCP
// socket, the opening handshake written by hand, masked client frames built
// here (any opcode, reserved bits, unmasked, fragments, lies about lengths),
// and the server's frames parsed here. Nothing from Beast's websocket stream,
// so nothing is validated or fixed up on the client side: a test sees
// exactly the bytes the server sent.
//
//     namespace rw = flk::test::raw;
//     rw::client c(port);                           // TCP only
//     c.upgrade();                                  // 101 with the right Sec-WebSocket-Accept, or throws
//     c.send(rw::frame(rw::op::text, R"({"type":"heartbeat","roomId":"r"})"));
//     auto f = c.read_frame();                      // nullopt: timeout or the server ended TCP
//     c.send_bytewise(rw::frame(rw::op::ping, "x")); // one write per byte
//     BOOST_TEST(c.wait_eof());                     // the server closed TCP, nothing else came
//
//     rw::client h(port);
//     h.send(rw::upgrade_request("/", "abc"));      // any handshake bytes
//     auto r = h.read_http_response();              // r.status (0: the server sent none)
//
// Every wait has a deadline and is driven by the client's own io_context
// (no sleeps). A read that timed out stays pending; later waits pick its
// bytes up. One client, one thread.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace flk::test::raw {

using namespace std::chrono_literals;
using milliseconds = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

/// Opcodes, the reserved ones included (RFC 6455, 5.2).
namespace op {
inline constexpr unsigned continuation = 0x0;
inline constexpr unsigned text = 0x1;
inline constexpr unsigned binary = 0x2;
inline constexpr unsigned close = 0x8;
inline constexpr unsigned ping = 0x9;
inline constexpr unsigned pong = 0xA;
}  // namespace op

/// How a client frame is built beyond opcode and payload.
struct frame_options {
    bool fin = true;
    unsigned rsv = 0;     ///< the three reserved bits, 0..7 (RSV1 = 4, RSV2 = 2, RSV3 = 1)
    bool masked = true;   ///< false: an unmasked client frame, which RFC 6455 forbids
    /// The masking key; unset: a fresh one per frame (never all zero bytes,
    /// so a server that forgets to unmask is caught).
    std::optional<std::array<unsigned char, 4>> mask;
};

namespace detail {
inline std::array<unsigned char, 4> next_mask() {
    static std::uint32_t state = 0x9E3779B9u;
    std::array<unsigned char, 4> m{};
    do {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        for (int i = 0; i < 4; ++i) m[i] = static_cast<unsigned char>(state >> (8 * i));
    } while (m[0] == 0 || m[1] == 0 || m[2] == 0 || m[3] == 0);
    return m;
}
}  // namespace detail

/// The header of a client frame announcing `length` payload bytes, mask key
/// included (2, 4 or 10 bytes, then 4 bytes of mask when masked). Lengths use
/// their shortest encoding.
inline std::string frame_header(unsigned opcode, std::uint64_t length, frame_options const& o,
                                std::array<unsigned char, 4> const& mask) {
    std::string h;
    h += static_cast<char>((o.fin ? 0x80 : 0) | ((o.rsv & 7) << 4) | (opcode & 0x0F));
    unsigned char const m = o.masked ? 0x80 : 0;
    if (length < 126) {
        h += static_cast<char>(m | length);
    } else if (length <= 0xFFFF) {
        h += static_cast<char>(m | 126);
        h += static_cast<char>(length >> 8);
        h += static_cast<char>(length & 0xFF);
    } else {
        h += static_cast<char>(m | 127);
        for (int i = 7; i >= 0; --i) h += static_cast<char>((length >> (8 * i)) & 0xFF);
    }
    if (o.masked) h.append(reinterpret_cast<char const*>(mask.data()), 4);
    return h;
}

/// A whole client frame: header, mask key, masked payload.
inline std::string frame(unsigned opcode, std::string_view payload, frame_options const& o = {}) {
    auto const mask = o.mask ? *o.mask : detail::next_mask();
    std::string f = frame_header(opcode, payload.size(), o, mask);
    std::size_t const at = f.size();
    f.append(payload.data(), payload.size());
    if (o.masked)
        for (std::size_t i = 0; i < payload.size(); ++i)
            f[at + i] = static_cast<char>(static_cast<unsigned char>(f[at + i]) ^ mask[i % 4]);
    return f;
}

/// A non-final fragment (opcode text/binary for the first, continuation after).
inline std::string fragment(unsigned opcode, std::string_view payload, bool fin) {
    frame_options o;
    o.fin = fin;
    return frame(opcode, payload, o);
}

/// The size of the header (mask included) of a masked client frame of `length` bytes.
constexpr std::size_t client_header_size(std::uint64_t length) {
    return (length < 126 ? 2 : length <= 0xFFFF ? 4 : 10) + 4;
}

/// The payload of a close frame: the code (big endian), then `reason`.
inline std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
    std::string p{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
    p.append(reason.data(), reason.size());
    return p;
}

/// Base64 (standard alphabet, padded), by OpenSSL.
inline std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int const n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<unsigned char const*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

/// Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)) (RFC 6455, 4.2.2), by OpenSSL.
inline std::string accept_for(std::string_view key) {
    std::string const in = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<unsigned char const*>(in.data()), in.size(), digest);
    return base64(std::string_view(reinterpret_cast<char const*>(digest), sizeof digest));
}

/// A fresh Sec-WebSocket-Key: base64 of 16 random bytes.
inline std::string random_key() {
    static std::mt19937 gen{std::random_device{}()};
    std::string bytes(16, '\0');
    for (auto& b : bytes) b = static_cast<char>(gen() & 0xFF);
    return base64(bytes);
}

/// An upgrade request. `extra` holds further header lines, each ending in
/// CRLF; pass `key` empty to leave Sec-WebSocket-Key out.
inline std::string upgrade_request(std::string_view target = "/", std::string_view key = {},
                                   std::string_view extra = {}, std::string_view http_version = "HTTP/1.1",
                                   std::string_view ws_version = "13") {
    std::string r = "GET " + std::string(target) + " " + std::string(http_version) + "\r\n";
    r += "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    if (!key.empty()) r += "Sec-WebSocket-Key: " + std::string(key) + "\r\n";
    if (!ws_version.empty()) r += "Sec-WebSocket-Version: " + std::string(ws_version) + "\r\n";
    r += extra;
    r += "\r\n";
    return r;
}

/// A frame the server sent, as it was on the wire.
struct server_frame {
    bool fin = false;
    unsigned rsv = 0;
    unsigned opcode = 0;
    bool masked = false;
    std::string payload;

    /// A close frame's code: 1005 when it has no payload, 0 when the payload is one byte.
    std::uint16_t close_code() const {
        if (payload.empty()) return 1005;
        if (payload.size() < 2) return 0;
        return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                          static_cast<unsigned char>(payload[1]));
    }
    std::string close_reason() const { return payload.size() > 2 ? payload.substr(2) : std::string(); }

    /// "text 24 B {...}", "close 1002 \"why\"", for failure messages.
    std::string describe() const {
        std::ostringstream os;
        switch (opcode) {
        case op::continuation: os << "continuation"; break;
        case op::text: os << "text"; break;
        case op::binary: os << "binary"; break;
        case op::close: os << "close"; break;
        case op::ping: os << "ping"; break;
        case op::pong: os << "pong"; break;
        default: os << "opcode " << opcode; break;
        }
        if (!fin) os << " (not fin)";
        if (rsv) os << " rsv=" << rsv;
        if (masked) os << " (masked)";
        if (opcode == op::close) {
            os << ' ' << close_code();
            if (payload.size() > 2) os << " \"" << close_reason() << '"';
        } else {
            os << ' ' << payload.size() << " B";
            if (payload.size() <= 200) os << " \"" << payload << '"';
        }
        return os.str();
    }
};

inline std::ostream& operator<<(std::ostream& os, server_frame const& f) { return os << f.describe(); }

/// An HTTP response head as it arrived (and the body when it had a Content-Length).
struct http_response {
    int status = 0;     ///< 0: no response at all (the server closed or stayed silent)
    std::string head;   ///< status line and header lines, up to the blank line
    std::string body;

    /// The value of header `name` (case-insensitive), "" when absent.
    std::string header(std::string_view name) const {
        std::size_t pos = head.find("\r\n");
        while (pos != std::string::npos && pos + 2 < head.size()) {
            std::size_t const start = pos + 2;
            std::size_t const end = head.find("\r\n", start);
            std::string_view line(head.data() + start, (end == std::string::npos ? head.size() : end) - start);
            auto const colon = line.find(':');
            if (colon != std::string_view::npos && colon == name.size()) {
                bool same = true;
                for (std::size_t i = 0; i < colon && same; ++i)
                    same = std::tolower(static_cast<unsigned char>(line[i])) == std::tolower(static_cast<unsigned char>(name[i]));
                if (same) {
                    auto v = line.substr(colon + 1);
                    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
                    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
                    return std::string(v);
                }
            }
            pos = end;
        }
        return {};
    }
};

/// One TCP connection to 127.0.0.1:port.
class client {
public:
    static constexpr milliseconds default_timeout{5000};

    /// Connects to 127.0.0.1:port, from the loopback address `from` when given
    /// (127.0.0.2, ...: another client address for per-address limits).
    explicit client(std::uint16_t port, milliseconds timeout = default_timeout, std::string_view from = {})
        : socket_(ioc_) {
        boost::system::error_code ec;
        bool done = false;
        if (!from.empty()) {
            socket_.open(tcp::v4());
            socket_.bind(tcp::endpoint(net::ip::make_address_v4(std::string(from)), 0));
        }
        socket_.async_connect(tcp::endpoint(net::ip::make_address_v4("127.0.0.1"), port),
                              [&](boost::system::error_code e) {
                                  ec = e;
                                  done = true;
                              });
        if (!run_until([&] { return done; }, steady::now() + timeout)) {
            boost::system::error_code ignored;
            socket_.close(ignored);
            throw std::runtime_error("raw_ws: connect to port " + std::to_string(port) + " timed out");
        }
        if (ec) throw std::runtime_error("raw_ws: connect to port " + std::to_string(port) + " failed: " + ec.message());
        socket_.set_option(tcp::no_delay(true), ec);
    }

    client(client const&) = delete;
    client& operator=(client const&) = delete;
    ~client() {
        boost::system::error_code ignored;
        socket_.close(ignored);
    }

    // --- writing ---------------------------------------------------------------

    /// Writes `bytes` in one write (one send call as far as the kernel takes it).
    void send(std::string_view bytes) {
        boost::system::error_code ec;
        net::write(socket_, net::buffer(bytes.data(), bytes.size()), ec);
        if (ec) throw std::runtime_error("raw_ws: write failed: " + ec.message());
    }

    /// Writes `bytes` `chunk` bytes per write (TCP_NODELAY is on: each is a segment of its own).
    void send_chunked(std::string_view bytes, std::size_t chunk) {
        for (std::size_t i = 0; i < bytes.size(); i += chunk) send(bytes.substr(i, chunk));
    }
    void send_bytewise(std::string_view bytes) { send_chunked(bytes, 1); }

    void shutdown_send() {
        boost::system::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
    }

    // --- the handshake ---------------------------------------------------------

    /// The response head to a request written before (and its body, when it
    /// has a Content-Length and `with_body`). status 0 when the server sent
    /// no complete head before closing or before the deadline. Bytes past it
    /// stay for read_frame().
    http_response read_http_response(milliseconds timeout = default_timeout, bool with_body = true) {
        http_response r;
        auto const deadline = steady::now() + timeout;
        wait([&] { return received_.find("\r\n\r\n") != std::string::npos; }, deadline);
        auto const end = received_.find("\r\n\r\n");
        if (end == std::string::npos) {
            r.head = received_;  // what came, if anything, for the failure message
            return r;
        }
        r.head = received_.substr(0, end + 2);
        received_.erase(0, end + 4);
        if (r.head.starts_with("HTTP/1.") && r.head.size() >= 12)
            r.status = std::atoi(r.head.substr(9, 3).c_str());
        if (with_body && r.status != 101) {
            auto const cl = r.header("Content-Length");
            if (!cl.empty()) {
                std::size_t const n = std::stoul(cl);
                wait([&] { return received_.size() >= n; }, deadline);
                r.body = received_.substr(0, std::min(n, received_.size()));
                received_.erase(0, r.body.size());
            }
        }
        return r;
    }

    /// Upgrades with a fresh key; throws unless the answer is 101 with the
    /// right Sec-WebSocket-Accept, Upgrade and Connection.
    http_response upgrade(std::string_view target = "/", std::string_view extra = {}) {
        auto const key = random_key();
        send(upgrade_request(target, key, extra));
        auto r = read_http_response(default_timeout, false);
        if (r.status != 101) throw std::runtime_error("raw_ws: upgrade answered " + std::to_string(r.status) + ": " + r.head);
        if (r.header("Sec-WebSocket-Accept") != accept_for(key))
            throw std::runtime_error("raw_ws: wrong Sec-WebSocket-Accept in " + r.head);
        return r;
    }

    // --- reading frames ----------------------------------------------------------

    /// The next frame the server sent; nullopt when none came within `timeout`
    /// or the server ended the connection first (see ended()).
    std::optional<server_frame> read_frame(milliseconds timeout = default_timeout) {
        std::optional<server_frame> f;
        wait([&] { return (f = take_frame()).has_value(); }, steady::now() + timeout);
        return f;
    }

    /// True when the server ended TCP (EOF or reset) within `timeout` and
    /// sent nothing more before it. Bytes that did come are in unread().
    bool wait_eof(milliseconds timeout = default_timeout) {
        wait([] { return false; }, steady::now() + timeout);
        return ended_ && received_.empty();
    }

    /// The server ended the connection (EOF, reset); see end_error().
    bool ended() const noexcept { return ended_; }
    /// How it ended: "End of file", "Connection reset by peer", ... ("" while open).
    std::string end_error() const { return ended_ ? end_.message() : std::string(); }
    bool ended_with_eof() const noexcept { return ended_ && end_ == net::error::eof; }
    /// Bytes received and not yet taken as a frame or response.
    std::string const& unread() const noexcept { return received_; }

private:
    template <class Done>
    bool run_until(Done done, steady::time_point deadline) {
        while (!done()) {
            ioc_.restart();
            if (ioc_.run_one_until(deadline) == 0) return done();
        }
        return true;
    }

    // Reads until `done()` holds, the connection ends, or the deadline passes.
    template <class Done>
    bool wait(Done done, steady::time_point deadline) {
        while (!done()) {
            if (ended_) return done();
            if (!reading_) {
                reading_ = true;
                socket_.async_read_some(net::buffer(chunk_), [this](boost::system::error_code ec, std::size_t n) {
                    reading_ = false;
                    received_.append(chunk_.data(), n);
                    if (ec) {
                        ended_ = true;
                        end_ = ec;
                    }
                });
            }
            ioc_.restart();
            if (ioc_.run_one_until(deadline) == 0) return done();
        }
        return true;
    }

    // One server frame off the front of what arrived, if it is all there.
    std::optional<server_frame> take_frame() {
        if (received_.size() < 2) return std::nullopt;
        auto const b = [&](std::size_t i) { return static_cast<unsigned char>(received_[i]); };
        server_frame f;
        f.fin = (b(0) & 0x80) != 0;
        f.rsv = (b(0) >> 4) & 7;
        f.opcode = b(0) & 0x0F;
        f.masked = (b(1) & 0x80) != 0;
        std::uint64_t len = b(1) & 0x7F;
        std::size_t at = 2;
        if (len == 126) {
            if (received_.size() < 4) return std::nullopt;
            len = (std::uint64_t(b(2)) << 8) | b(3);
            at = 4;
        } else if (len == 127) {
            if (received_.size() < 10) return std::nullopt;
            len = 0;
            for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | b(i);
            at = 10;
        }
        std::array<unsigned char, 4> mask{};
        if (f.masked) {
            if (received_.size() < at + 4) return std::nullopt;
            for (std::size_t i = 0; i < 4; ++i) mask[i] = b(at + i);
            at += 4;
        }
        if (received_.size() < at + len) return std::nullopt;
        f.payload = received_.substr(at, static_cast<std::size_t>(len));
        if (f.masked)
            for (std::size_t i = 0; i < f.payload.size(); ++i)
                f.payload[i] = static_cast<char>(static_cast<unsigned char>(f.payload[i]) ^ mask[i % 4]);
        received_.erase(0, at + static_cast<std::size_t>(len));
        return f;
    }

    net::io_context ioc_;
    tcp::socket socket_;
    std::array<char, 16384> chunk_{};
    std::string received_;
    boost::system::error_code end_;
    bool reading_ = false;
    bool ended_ = false;
};

}  // namespace flk::test::raw
