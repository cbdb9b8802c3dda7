// The client side of RFC 6455 on raw bytes: the upgrade request and response,
// masked client frames out, unmasked server frames in. Kept free of I/O so a
// read of many frames is parsed in one pass over the buffer.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

namespace load::ws {

enum class opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

/// Appends one final client frame. Clients must mask (RFC 6455 5.3); the key
/// is fixed per connection, which servers cannot tell from a fresh one.
inline void append_frame(std::string& out, opcode op, std::string_view payload, std::uint32_t mask_key) {
    auto const n = payload.size();
    out += static_cast<char>(0x80 | static_cast<std::uint8_t>(op));
    if (n < 126) {
        out += static_cast<char>(0x80 | n);
    } else if (n <= 0xffff) {
        out += static_cast<char>(0x80 | 126);
        for (int shift = 8; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
    } else {
        out += static_cast<char>(0x80 | 127);
        for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
    }
    char key[4];
    std::memcpy(key, &mask_key, 4);
    out.append(key, 4);
    auto const start = out.size();
    out.append(payload);
    for (std::size_t i = 0; i < n; ++i) out[start + i] ^= key[i & 3];
}

/// The payload of a close frame: the code, big-endian, then the reason.
inline std::string close_payload(std::uint16_t code) {
    return {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
}

struct frame {
    opcode op = opcode::text;
    bool fin = true;
    std::string_view payload;
};

enum class parse_status { ok, incomplete, error };

struct parse_result {
    parse_status status = parse_status::incomplete;
    frame f;
    std::size_t size = 0;        ///< bytes taken by the frame (ok only)
    char const* error = nullptr;  ///< why the bytes are not a valid server frame
};

/// Frames larger than this are refused: no flock message comes near it.
inline constexpr std::uint64_t max_frame_payload = 16u << 20;

/// Reads the server frame at the start of `in`, if it is all there.
inline parse_result parse_frame(std::string_view in) {
    parse_result r;
    if (in.size() < 2) return r;
    auto const b0 = static_cast<std::uint8_t>(in[0]);
    auto const b1 = static_cast<std::uint8_t>(in[1]);
    auto fail = [&](char const* why) {
        r.status = parse_status::error;
        r.error = why;
        return r;
    };
    if (b0 & 0x70) return fail("reserved bits set (no extension was negotiated)");
    if (b1 & 0x80) return fail("masked server frame");
    r.f.fin = b0 & 0x80;
    r.f.op = static_cast<opcode>(b0 & 0x0f);
    std::uint64_t len = b1 & 0x7f;
    std::size_t header = 2;
    if (len >= 126) {
        std::size_t const bytes = len == 126 ? 2 : 8;
        if (in.size() < 2 + bytes) return r;
        len = 0;
        for (std::size_t i = 0; i < bytes; ++i) len = (len << 8) | static_cast<std::uint8_t>(in[2 + i]);
        header += bytes;
    }
    if (len > max_frame_payload) return fail("frame too big");
    bool const control = static_cast<std::uint8_t>(r.f.op) >= 8;
    if (control && (len > 125 || !r.f.fin)) return fail("bad control frame");
    if (in.size() - header < len) return r;
    r.status = parse_status::ok;
    r.f.payload = in.substr(header, len);
    r.size = header + len;
    return r;
}

/// A close frame's code; 1005 (no status) when it carries none.
inline std::uint16_t close_code(std::string_view payload) {
    if (payload.size() < 2) return 1005;
    return static_cast<std::uint16_t>(static_cast<std::uint8_t>(payload[0]) << 8 |
                                      static_cast<std::uint8_t>(payload[1]));
}

/// A Sec-WebSocket-Key: 16 random bytes in base64.
inline std::string make_key(std::mt19937_64& rng) {
    static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::uint8_t raw[18] = {};  // 16 bytes, padded to a multiple of 3
    for (int i = 0; i < 16; ++i) raw[i] = static_cast<std::uint8_t>(rng());
    std::string out;
    for (int i = 0; i < 18; i += 3) {
        std::uint32_t const v = raw[i] << 16 | raw[i + 1] << 8 | raw[i + 2];
        for (int shift = 18; shift >= 0; shift -= 6) out += digits[(v >> shift) & 63];
    }
    out.resize(22);
    return out + "==";
}

inline std::string upgrade_request(std::string_view host, std::string_view target, std::string_view key,
                                   std::string_view subprotocol) {
    std::string r;
    r.reserve(256);
    r.append("GET ").append(target).append(" HTTP/1.1\r\nHost: ").append(host);
    r.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    r.append(key).append("\r\n");
    if (!subprotocol.empty()) r.append("Sec-WebSocket-Protocol: ").append(subprotocol).append("\r\n");
    r.append("\r\n");
    return r;
}

struct upgrade_response {
    bool complete = false;      ///< the header block has been received
    std::size_t size = 0;       ///< its length; frames may follow
    int status = 0;
    std::string_view protocol;  ///< Sec-WebSocket-Protocol, if any
};

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    return true;
}

/// Parses the server's answer to the upgrade request, once it is all there.
inline upgrade_response parse_upgrade_response(std::string_view in) {
    upgrade_response r;
    auto const end = in.find("\r\n\r\n");
    if (end == std::string_view::npos) return r;
    r.complete = true;
    r.size = end + 4;
    auto head = in.substr(0, end + 2);
    auto const first = head.find("\r\n");
    auto const status_line = head.substr(0, first);
    if (status_line.size() >= 12 && status_line.starts_with("HTTP/1."))
        std::from_chars(status_line.data() + 9, status_line.data() + 12, r.status);
    for (auto pos = first + 2; pos < head.size();) {
        auto const eol = head.find("\r\n", pos);
        auto const line = head.substr(pos, eol - pos);
        pos = eol + 2;
        auto const colon = line.find(':');
        if (colon == std::string_view::npos || !iequals(line.substr(0, colon), "sec-websocket-protocol"))
            continue;
        auto value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
        r.protocol = value;
    }
    return r;
}

}  // namespace load::ws
