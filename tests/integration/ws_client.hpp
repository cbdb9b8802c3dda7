// Synchronous test clients for a flock server on 127.0.0.1: a WebSocket
// client, a keep-alive HTTP client, and a raw TCP connection.
//
//     flk::test::ws_client c(port, "/?apiKey=k");       // throws when refused
//     c.send_text(R"({"type":"join","roomId":"r","userId":"u","metadata":{}})");
//     auto ack = c.read_until_type("join:ack");          // skips other messages
//     BOOST_TEST(c.got_nothing_for(200ms));              // nothing else arrives
//     BOOST_TEST(c.wait_close() == 1008);                // the close code the server sent
//
//     BOOST_TEST(flk::test::ws_client::upgrade_status(port, "/?apiKey=bad") == 401);
//     auto r = flk::test::http_get(port, "/health");     // r.status, r.content_type, r.body
//
// Every wait has a deadline and is driven by the client's own io_context
// (no sleeps). A read that timed out stays pending, so a later read picks
// the message up. Nothing here is thread-safe: one client, one thread.
//
// This header also makes std::optional printable by Boost.Test, so
// `BOOST_TEST(c.wait_close() == 1001)` compiles and reports "nullopt != 1001".
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/test/tools/detail/print_helper.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Boost.Test prints both sides of a failed BOOST_TEST(a == b); teach it optionals.
namespace boost::test_tools::tt_detail {
template <class T>
struct print_log_value<std::optional<T>> {
    void operator()(std::ostream& os, std::optional<T> const& v) {
        if (v) print_log_value<T>()(os, *v);
        else os << "nullopt";
    }
};
}  // namespace boost::test_tools::tt_detail

namespace flk::test {

namespace client_detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using clock = std::chrono::steady_clock;

/// Runs `ioc` until `done()` holds or `deadline` passes; true when done.
template <class Done>
bool run_until(net::io_context& ioc, Done&& done, clock::time_point deadline) {
    while (!done()) {
        if (ioc.stopped()) ioc.restart();
        if (ioc.run_one_until(deadline) == 0) {
            if (done()) return true;
            if (clock::now() >= deadline) return false;
            if (ioc.stopped()) return done();  // no work left: nothing can change
        }
    }
    return true;
}

inline std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

/// Connects `stream` to 127.0.0.1:port; throws on failure or timeout.
inline void connect(net::io_context& ioc, beast::tcp_stream& stream, std::uint16_t port,
                    std::chrono::milliseconds timeout) {
    boost::system::error_code ec;
    bool done = false;
    stream.expires_after(timeout);
    stream.async_connect(tcp::endpoint(net::ip::make_address_v4("127.0.0.1"), port),
                         [&](boost::system::error_code e) {
                             ec = e;
                             done = true;
                         });
    if (!run_until(ioc, [&] { return done; }, clock::now() + timeout + std::chrono::milliseconds(100)))
        throw std::runtime_error("test client: connect to 127.0.0.1:" + std::to_string(port) + " timed out");
    stream.expires_never();
    if (ec)
        throw std::runtime_error("test client: connect to 127.0.0.1:" + std::to_string(port) +
                                 " failed: " + ec.message());
    stream.socket().set_option(tcp::no_delay(true), ec);
}

}  // namespace client_detail

/// What an HTTP request answered.
struct http_response {
    int status = 0;
    std::string content_type;
    std::string body;
    boost::beast::http::fields headers;
    bool keep_alive = false;

    std::string header(std::string_view name) const {
        auto it = headers.find(boost::beast::string_view(name.data(), name.size()));
        return it == headers.end() ? std::string() : std::string(it->value());
    }
};

/// A keep-alive HTTP/1.1 connection: several requests on one socket.
class http_client {
public:
    explicit http_client(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5))
        : port_(port), timeout_(timeout), stream_(ioc_) {
        client_detail::connect(ioc_, stream_, port, timeout);
    }
    http_client(http_client const&) = delete;
    http_client& operator=(http_client const&) = delete;

    /// Sends one request and reads its response; throws on failure or timeout.
    /// `headers` are added (or replace Host and User-Agent).
    http_response request(boost::beast::http::verb method, std::string_view target, std::string body = {},
                          bool keep_alive = true,
                          std::vector<std::pair<std::string, std::string>> const& headers = {}) {
        namespace http = client_detail::http;
        http::request<http::string_body> req{method, boost::beast::string_view(target.data(), target.size()), 11};
        req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
        req.set(http::field::user_agent, "flock-test");
        for (auto const& [name, value] : headers) req.set(name, value);
        req.keep_alive(keep_alive);
        if (!body.empty() || method == http::verb::post) {
            req.body() = std::move(body);
            req.prepare_payload();
        }
        boost::system::error_code ec;
        bool done = false;
        stream_.expires_after(timeout_);
        http::async_write(stream_, req, [&](boost::system::error_code e, std::size_t) {
            ec = e;
            done = true;
        });
        wait(done, "write");
        if (ec) throw std::runtime_error("http_client: write failed: " + ec.message());
        http::response_parser<http::string_body> parser;
        parser.body_limit(16 * 1024 * 1024);
        done = false;
        http::async_read(stream_, buffer_, parser, [&](boost::system::error_code e, std::size_t) {
            ec = e;
            done = true;
        });
        wait(done, "read");
        stream_.expires_never();
        if (ec) throw std::runtime_error("http_client: reading the response failed: " + ec.message());
        auto res = parser.release();
        http_response out;
        out.status = static_cast<int>(res.result_int());
        out.content_type = std::string(res[http::field::content_type]);
        out.keep_alive = res.keep_alive();
        out.body = std::move(res.body());
        for (auto const& f : res) out.headers.insert(f.name_string(), f.value());
        return out;
    }

    http_response get(std::string_view target, bool keep_alive = true) {
        return request(boost::beast::http::verb::get, target, {}, keep_alive);
    }

    /// True when the server closed the connection within `timeout`.
    bool closed_by_server_within(std::chrono::milliseconds timeout) {
        boost::system::error_code ec;
        bool done = false;
        char byte = 0;
        stream_.socket().async_read_some(boost::asio::buffer(&byte, 1), [&](boost::system::error_code e, std::size_t) {
            ec = e;
            done = true;
        });
        if (!client_detail::run_until(ioc_, [&] { return done; }, client_detail::clock::now() + timeout)) {
            stream_.socket().cancel();
            client_detail::run_until(ioc_, [&] { return done; }, client_detail::clock::now() + timeout);
            return false;
        }
        return bool(ec);
    }

private:
    void wait(bool const& done, char const* what) {
        if (!client_detail::run_until(ioc_, [&] { return done; },
                                      client_detail::clock::now() + timeout_ + std::chrono::milliseconds(100)))
            throw std::runtime_error(std::string("http_client: ") + what + " timed out");
    }

    std::uint16_t port_;
    std::chrono::milliseconds timeout_;
    boost::asio::io_context ioc_;
    boost::beast::tcp_stream stream_;
    boost::beast::flat_buffer buffer_;
};

/// One `GET target` on a fresh connection (`connection: close`).
inline http_response http_get(std::uint16_t port, std::string_view target,
                              std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    http_client c(port, timeout);
    return c.get(target, false);
}

/// A WebSocket client.
class ws_client {
public:
    using milliseconds = std::chrono::milliseconds;
    static constexpr milliseconds default_timeout{5000};

    /// Connects to 127.0.0.1:port and upgrades with `target` (path and query).
    /// Throws std::runtime_error when that fails, naming the HTTP status when
    /// the server answered one.
    explicit ws_client(std::uint16_t port, std::string_view target = "/", milliseconds timeout = default_timeout)
        : ws_(ioc_) {
        boost::system::error_code ec;
        auto status = handshake(port, target, timeout, ec);
        if (ec) {
            std::string m = "ws_client: upgrade of ws://127.0.0.1:" + std::to_string(port) + std::string(target);
            if (status) m += " refused with HTTP " + std::to_string(*status);
            else m += " failed: " + ec.message();
            throw std::runtime_error(m);
        }
    }

    ws_client(ws_client const&) = delete;
    ws_client& operator=(ws_client const&) = delete;

    /// Drops the TCP connection without a close handshake (see close()).
    ~ws_client() {
        boost::system::error_code ignored;
        boost::beast::get_lowest_layer(ws_).socket().close(ignored);
    }

    /// The HTTP status the server answered an upgrade of `target` with: 101
    /// when it accepted (the connection is then closed cleanly), 401 when
    /// refused, ...; nullopt when no HTTP response came at all.
    static std::optional<int> upgrade_status(std::uint16_t port, std::string_view target,
                                             milliseconds timeout = default_timeout) {
        ws_client c(no_connect{});
        boost::system::error_code ec;
        auto status = c.handshake(port, target, timeout, ec);
        if (!ec) c.close();
        return status;
    }

    void send_text(std::string_view text) { write(text, true); }
    void send_binary(std::string_view bytes) { write(bytes, false); }

    /// The next message, or nullopt on timeout or once the connection closed.
    std::optional<std::string> read(milliseconds timeout = default_timeout) {
        std::string s;
        if (next(timeout, s) == outcome::message) return s;
        return std::nullopt;
    }

    /// The next message parsed as a JSON object; throws std::runtime_error on
    /// timeout, close, invalid JSON or a non-object.
    boost::json::object read_json(milliseconds timeout = default_timeout) {
        std::string s;
        switch (next(timeout, s)) {
        case outcome::timeout: throw std::runtime_error("ws_client: no message within " + client_detail::ms_text(timeout));
        case outcome::closed: throw std::runtime_error("ws_client: connection closed" + close_text() + " while waiting for a message");
        case outcome::message: break;
        }
        boost::system::error_code ec;
        auto v = boost::json::parse(s, ec);
        if (ec) throw std::runtime_error("ws_client: message is not JSON (" + ec.message() + "): " + s);
        if (!v.is_object()) throw std::runtime_error("ws_client: message is not a JSON object: " + s);
        return std::move(v.as_object());
    }

    /// Reads until a JSON object whose "type" is `type` arrives, skipping every
    /// other message; throws when none comes within `timeout` (in total).
    boost::json::object read_until_type(std::string_view type, milliseconds timeout = default_timeout) {
        auto const deadline = client_detail::clock::now() + timeout;
        std::string skipped;
        for (;;) {
            auto const left = std::chrono::duration_cast<milliseconds>(deadline - client_detail::clock::now());
            std::string s;
            auto const r = next(std::max(left, milliseconds(0)), s);
            if (r != outcome::message)
                throw std::runtime_error("ws_client: no \"" + std::string(type) + "\" message within " +
                                         client_detail::ms_text(timeout) +
                                         (r == outcome::closed ? " (connection closed" + close_text() + ")" : "") +
                                         (skipped.empty() ? "" : "; skipped: " + skipped));
            boost::system::error_code ec;
            auto v = boost::json::parse(s, ec);
            if (!ec && v.is_object()) {
                auto const* t = v.as_object().if_contains("type");
                if (t && t->is_string() && t->as_string() == type) return std::move(v.as_object());
            }
            if (skipped.size() < 2000) skipped += s + ' ';
        }
    }

    /// Reads and discards messages until the connection closes. Returns the
    /// close code the server sent (1005 when its close frame had no code,
    /// 1006 when the connection dropped without a close frame), or nullopt
    /// when it is still open at the deadline.
    std::optional<std::uint16_t> wait_close(milliseconds timeout = default_timeout) {
        auto const deadline = client_detail::clock::now() + timeout;
        for (;;) {
            auto const left = std::chrono::duration_cast<milliseconds>(deadline - client_detail::clock::now());
            std::string s;
            switch (next(std::max(left, milliseconds(0)), s)) {
            case outcome::closed: return close_code_;
            case outcome::timeout: return std::nullopt;
            case outcome::message: break;
            }
        }
    }

    /// True when no message arrived and the connection stayed open for `d`.
    /// A message that did arrive is kept for the next read.
    bool got_nothing_for(milliseconds d) {
        if (!stash_.empty() || closed_) return false;
        std::string s;
        switch (next(d, s)) {
        case outcome::timeout: return true;
        case outcome::closed: return false;
        case outcome::message:
            stash_.emplace_front(std::move(s), last_text_);
            return false;
        }
        return false;
    }

    /// Starts the close handshake and waits for it to finish (or the timeout).
    void close(std::uint16_t code = 1000, milliseconds timeout = default_timeout) {
        if (closed_) return;
        bool done = false;
        ws_.async_close(boost::beast::websocket::close_reason(code), [&](boost::system::error_code) { done = true; });
        client_detail::run_until(ioc_, [&] { return done && state_ != read_state::pending; },
                                 client_detail::clock::now() + timeout);
        closed_ = true;
        if (!close_code_) close_code_ = static_cast<std::uint16_t>(ws_.reason().code);
    }

    /// Whether the last message read was a text frame (false: binary).
    bool last_was_text() const noexcept { return last_text_; }
    bool is_open() const noexcept { return !closed_; }
    /// The close code received once closed (see wait_close()).
    std::optional<std::uint16_t> close_code() const noexcept { return close_code_; }
    /// Why the last read ended the connection ("" while open): "closed" after
    /// a close frame, else the transport error (end of stream, reset, ...).
    std::string last_error() const { return read_ec_ ? read_ec_.message() : std::string(); }
    /// The server's reason text once closed by a close frame.
    std::string close_reason() const {
        auto const& r = ws_.reason().reason;
        return std::string(r.data(), r.size());
    }
    /// The client's own address, as the server sees it ("127.0.0.1:port").
    std::string local_address() const {
        boost::system::error_code ec;
        auto ep = boost::beast::get_lowest_layer(ws_).socket().local_endpoint(ec);
        return ep.address().to_string() + ':' + std::to_string(ep.port());
    }
    /// The response to the upgrade request (headers such as `server`).
    boost::beast::websocket::response_type const& upgrade_response() const noexcept { return res_; }

private:
    struct no_connect {};
    explicit ws_client(no_connect) : ws_(ioc_) {}

    enum class outcome { message, timeout, closed };
    enum class read_state { idle, pending, done };

    std::optional<int> handshake(std::uint16_t port, std::string_view target, milliseconds timeout,
                                 boost::system::error_code& ec) {
        namespace websocket = client_detail::websocket;
        auto& tcp = boost::beast::get_lowest_layer(ws_);
        try {
            client_detail::connect(ioc_, tcp, port, timeout);
        } catch (std::exception const&) {
            ec = boost::asio::error::connection_refused;
            return std::nullopt;
        }
        ws_.set_option(websocket::stream_base::timeout{std::chrono::seconds(30), websocket::stream_base::none(), false});
        ws_.read_message_max(64 * 1024 * 1024);
        bool done = false;
        tcp.expires_after(timeout);
        ws_.async_handshake(res_, "127.0.0.1:" + std::to_string(port),
                            boost::beast::string_view(target.data(), target.size()),
                            [&](boost::system::error_code e) {
                                ec = e;
                                done = true;
                            });
        if (!client_detail::run_until(ioc_, [&] { return done; },
                                      client_detail::clock::now() + timeout + milliseconds(100))) {
            ec = boost::asio::error::timed_out;
            tcp.socket().close();
            client_detail::run_until(ioc_, [&] { return done; }, client_detail::clock::now() + timeout);
            closed_ = true;
            return std::nullopt;
        }
        tcp.expires_never();
        if (!ec) return 101;
        closed_ = true;
        if (ec == websocket::error::upgrade_declined) return static_cast<int>(res_.result_int());
        return std::nullopt;
    }

    void write(std::string_view data, bool text) {
        if (closed_) throw std::runtime_error("ws_client: write on a closed connection" + close_text());
        ws_.text(text);
        boost::system::error_code ec;
        bool done = false;
        ws_.async_write(boost::asio::buffer(data.data(), data.size()), [&](boost::system::error_code e, std::size_t) {
            ec = e;
            done = true;
        });
        if (!client_detail::run_until(ioc_, [&] { return done; }, client_detail::clock::now() + default_timeout))
            throw std::runtime_error("ws_client: write of " + std::to_string(data.size()) + " bytes timed out");
        if (ec) throw std::runtime_error("ws_client: write failed: " + ec.message());
    }

    outcome next(milliseconds timeout, std::string& out) {
        if (!stash_.empty()) {
            out = std::move(stash_.front().first);
            last_text_ = stash_.front().second;
            stash_.pop_front();
            return outcome::message;
        }
        if (closed_ && state_ != read_state::done) return outcome::closed;
        if (state_ == read_state::idle) {
            state_ = read_state::pending;
            ws_.async_read(buffer_, [this](boost::system::error_code e, std::size_t) {
                read_ec_ = e;
                state_ = read_state::done;
            });
        }
        if (!client_detail::run_until(ioc_, [&] { return state_ == read_state::done; },
                                      client_detail::clock::now() + timeout))
            return outcome::timeout;
        state_ = read_state::idle;
        if (read_ec_) {
            closed_ = true;
            auto const code = static_cast<std::uint16_t>(ws_.reason().code);
            if (code != 0) close_code_ = code;  // a close frame came (even if TCP then ended uncleanly)
            else if (read_ec_ == client_detail::websocket::error::closed) close_code_ = 1005;
            else close_code_ = 1006;
            return outcome::closed;
        }
        out = boost::beast::buffers_to_string(buffer_.data());
        buffer_.consume(buffer_.size());
        last_text_ = ws_.got_text();
        return outcome::message;
    }

    std::string close_text() const {
        return close_code_ ? " with code " + std::to_string(*close_code_) : std::string();
    }

    boost::asio::io_context ioc_;
    boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
    boost::beast::websocket::response_type res_;
    boost::beast::flat_buffer buffer_;
    std::deque<std::pair<std::string, bool>> stash_;
    read_state state_ = read_state::idle;
    boost::system::error_code read_ec_;
    std::optional<std::uint16_t> close_code_;
    bool closed_ = false;
    bool last_text_ = true;
};

/// A plain TCP connection, for what a browser would never send: nothing at
/// all, half a request, raw bytes.
class raw_connection {
public:
    explicit raw_connection(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5))
        : stream_(ioc_) {
        client_detail::connect(ioc_, stream_, port, timeout);
    }

    void send(std::string_view bytes) {
        boost::system::error_code ec;
        bool done = false;
        boost::asio::async_write(stream_.socket(), boost::asio::buffer(bytes.data(), bytes.size()),
                                 [&](boost::system::error_code e, std::size_t) {
                                     ec = e;
                                     done = true;
                                 });
        if (!client_detail::run_until(ioc_, [&] { return done; },
                                      client_detail::clock::now() + std::chrono::seconds(5)))
            throw std::runtime_error("raw_connection: write timed out");
        if (ec) throw std::runtime_error("raw_connection: write failed: " + ec.message());
    }

    /// Reads until the server closes the connection. Returns what it sent
    /// meanwhile, or nullopt when it was still open after `timeout`.
    std::optional<std::string> read_until_closed(std::chrono::milliseconds timeout) {
        auto const deadline = client_detail::clock::now() + timeout;
        std::string got;
        for (;;) {
            boost::system::error_code ec;
            std::size_t n = 0;
            bool done = false;
            char buf[4096];
            stream_.socket().async_read_some(boost::asio::buffer(buf), [&](boost::system::error_code e, std::size_t k) {
                ec = e;
                n = k;
                done = true;
            });
            if (!client_detail::run_until(ioc_, [&] { return done; }, deadline)) {
                stream_.socket().cancel();
                client_detail::run_until(ioc_, [&] { return done; },
                                         client_detail::clock::now() + std::chrono::seconds(1));
                return std::nullopt;
            }
            got.append(buf, n);
            if (ec) return got;
        }
    }

private:
    boost::asio::io_context ioc_;
    boost::beast::tcp_stream stream_;
};

}  // namespace flk::test
