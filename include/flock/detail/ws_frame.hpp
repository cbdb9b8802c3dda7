// RFC 6455 framing without I/O: the header of a server frame, control frame
// payloads, and ws_reader, which turns the bytes a client sent into messages
// and control frames. The WebSocket transport does the I/O around it.
#pragma once

#include <flock/detail/utf8.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace flk::detail {

enum class ws_opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

/// Longest header of a server frame (unmasked, 64-bit length).
inline constexpr std::size_t ws_max_header_bytes = 10;
/// Longest payload of a control frame (RFC 6455, 5.5).
inline constexpr std::size_t ws_max_control_payload = 125;

/// Close codes the framing itself produces (RFC 6455, 7.4.1).
inline constexpr std::uint16_t ws_close_protocol_error = 1002;
inline constexpr std::uint16_t ws_close_no_status = 1005;  ///< never sent: "the close frame had no code"
inline constexpr std::uint16_t ws_close_invalid_payload = 1007;  ///< text that is not UTF-8
inline constexpr std::uint16_t ws_close_too_big = 1009;

/// Size of the header of a server frame whose payload is `payload_bytes` long: 2, 4 or 10.
constexpr std::size_t ws_header_size(std::uint64_t payload_bytes) noexcept {
    return payload_bytes < 126 ? 2 : payload_bytes <= 0xFFFF ? 4 : 10;
}

/// Writes the header of a final, unmasked (server) frame into `out` (room
/// for ws_max_header_bytes) and returns its size.
inline std::size_t write_ws_header(unsigned char* out, ws_opcode op, std::uint64_t payload_bytes) noexcept {
    out[0] = static_cast<unsigned char>(0x80 | static_cast<unsigned>(op));
    std::size_t const size = ws_header_size(payload_bytes);
    if (size == 2) {
        out[1] = static_cast<unsigned char>(payload_bytes);
        return 2;
    }
    out[1] = size == 4 ? 126 : 127;
    for (std::size_t i = 2; i < size; ++i)
        out[i] = static_cast<unsigned char>(payload_bytes >> (8 * (size - 1 - i)));
    return size;
}

/// A whole server frame: header and payload. For control frames and tests.
inline std::string ws_frame_bytes(ws_opcode op, std::string_view payload) {
    std::array<unsigned char, ws_max_header_bytes> header{};
    std::size_t const n = write_ws_header(header.data(), op, payload.size());
    std::string out(reinterpret_cast<char const*>(header.data()), n);
    out += payload;
    return out;
}

/// The payload of a close frame: the code, then `reason` cut to 123 bytes on
/// a UTF-8 character boundary. Code 1005 (no status) gives an empty payload.
inline std::string ws_close_payload(std::uint16_t code, std::string_view reason) {
    if (code == ws_close_no_status) return {};
    std::size_t n = std::min<std::size_t>(reason.size(), ws_max_control_payload - 2);
    while (n < reason.size() && n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
    std::string out{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
    out.append(reason.data(), n);
    return out;
}

/// Whether a peer may send `code` in a close frame (RFC 6455, 7.4).
constexpr bool ws_close_code_is_valid(std::uint16_t code) noexcept {
    if (code >= 3000 && code <= 4999) return true;
    return code >= 1000 && code <= 1014 && code != 1004 && code != ws_close_no_status && code != 1006;
}

/// The header of a frame a client sent.
struct ws_frame_header {
    ws_opcode opcode = ws_opcode::continuation;
    bool fin = false;
    std::uint64_t payload_size = 0;
    std::size_t size = 0;  ///< header bytes, mask key included
    std::array<unsigned char, 4> mask{};
};

/// What parse_ws_header() found: a header, too few bytes yet, or a protocol
/// error (`error` says which; the connection is then closed with 1002).
struct ws_header_result {
    enum class status : std::uint8_t { complete, need_more, bad } what = status::need_more;
    std::string_view error;
};

/// Parses the header of a client frame at the start of `in`. Rejects what
/// RFC 6455 forbids: reserved bits (no extension is negotiated), unknown
/// opcodes, unmasked frames, fragmented or long control frames, lengths not
/// in their shortest form or with the top bit set.
inline ws_header_result parse_ws_header(std::span<char const> in, ws_frame_header& h) {
    using status = ws_header_result::status;
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
    if (in.size() < 2) return {};
    if ((byte(0) & 0x70) != 0) return {status::bad, "reserved bits set"};
    h.fin = (byte(0) & 0x80) != 0;
    h.opcode = static_cast<ws_opcode>(byte(0) & 0x0F);
    bool const control = (byte(0) & 0x08) != 0;
    switch (h.opcode) {
    case ws_opcode::continuation: case ws_opcode::text: case ws_opcode::binary:
    case ws_opcode::close: case ws_opcode::ping: case ws_opcode::pong: break;
    default: return {status::bad, "unknown opcode"};
    }
    if ((byte(1) & 0x80) == 0) return {status::bad, "unmasked client frame"};
    std::uint64_t const len7 = byte(1) & 0x7F;
    std::size_t const len_bytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (control && !h.fin) return {status::bad, "fragmented control frame"};
    if (control && len7 > ws_max_control_payload) return {status::bad, "control frame too long"};
    h.size = 2 + len_bytes + 4;
    if (in.size() < h.size) return {};
    h.payload_size = len_bytes == 0 ? len7 : 0;
    for (std::size_t i = 0; i < len_bytes; ++i) h.payload_size = (h.payload_size << 8) | byte(2 + i);
    if (len_bytes == 2 && h.payload_size < 126) return {status::bad, "length not in shortest form"};
    if (len_bytes == 8 && h.payload_size <= 0xFFFF) return {status::bad, "length not in shortest form"};
    if (len_bytes == 8 && (h.payload_size >> 63) != 0) return {status::bad, "length too large"};
    for (std::size_t i = 0; i < 4; ++i) h.mask[i] = byte(2 + len_bytes + i);
    return {status::complete, {}};
}

/// XORs `data` with the 4-byte `mask`, the first byte with mask[0].
inline void ws_unmask(std::span<char> data, std::array<unsigned char, 4> const& mask) noexcept {
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>(static_cast<unsigned char>(data[i]) ^ mask[i % 4]);
}

/// Turns what a client sent into messages and control frames.
///
///     std::span<char> in(buf, n);            // bytes just read; unmasked in place
///     for (;;) {
///         auto item = reader.next(in, max_message_bytes);
///         if (item.what == ws_reader::result::need_more) break;  // read more
///         ...
///     }
///
/// A message that arrived in one frame is handed out in place, without a
/// copy. Only what must outlive a read is kept: the bytes of a frame cut by
/// the end of a read, and the fragments of an unfinished message. They live
/// in a block allocated while needed and freed once consumed, so an idle
/// reader is one pointer. After `error` or `close` the reader is spent.
///
/// Text is checked as UTF-8 (RFC 6455, 8.1): a text message, and a close
/// reason, that is not well-formed fails with 1007; a fragmented message
/// fails at the fragment that breaks it, and at its end if that cuts a
/// character.
class ws_reader {
public:
    enum class result : std::uint8_t { need_more, message, ping, pong, close, error };

    struct item {
        result what = result::need_more;
        bool text = false;         ///< message: a text message (else binary)
        std::string_view payload;  ///< message, ping, pong: the payload; close: the reason; error: why
        std::uint16_t code = 0;    ///< close: the peer's code (1005 for none); error: the code to close with
    };

    /// The next item out of the bytes given so far. `in` holds new bytes (it
    /// may be empty) and is consumed from the front; on need_more all of it
    /// was consumed. Views stay valid until the next call, as long as the
    /// storage under `in` does not change. A data message longer than
    /// `max_message_bytes` is refused (1009) as soon as a header announces it.
    item next(std::span<char>& in, std::size_t max_message_bytes) {
        release_last_item();
        for (;;) {
            std::span<char> src = source(in);
            ws_frame_header h;
            auto const parsed = parse_ws_header(src, h);
            if (parsed.what == ws_header_result::status::bad) return failure(ws_close_protocol_error, parsed.error);
            if (parsed.what == ws_header_result::status::need_more) return keep(in, src);
            bool const control = (static_cast<unsigned>(h.opcode) & 0x08) != 0;
            bool const continuing = held_ && held_->in_message;
            if (!control) {
                if (h.opcode == ws_opcode::continuation && !continuing)
                    return failure(ws_close_protocol_error, "continuation without a message");
                if (h.opcode != ws_opcode::continuation && continuing)
                    return failure(ws_close_protocol_error, "new message inside a fragmented one");
                std::size_t const so_far = continuing ? held_->message.size() : 0;
                if (h.payload_size > max_message_bytes - so_far) return failure(ws_close_too_big, "message too big");
            }
            if (src.size() - h.size < h.payload_size) return keep(in, src);
            std::span<char> const payload = src.subspan(h.size, static_cast<std::size_t>(h.payload_size));
            ws_unmask(payload, h.mask);
            consume(in, h.size + payload.size());
            std::string_view const bytes(payload.data(), payload.size());
            if (control) return control_item(h.opcode, bytes);
            if (h.fin && !continuing) {
                bool const text = h.opcode == ws_opcode::text;
                if (text && !is_valid_utf8(bytes)) return failure(ws_close_invalid_payload, "invalid UTF-8");
                return {result::message, text, bytes, 0};
            }
            if (!continuing) start_message(h.opcode == ws_opcode::text);
            if (held_->message_text && !held_->utf8.feed(bytes))
                return failure(ws_close_invalid_payload, "invalid UTF-8");
            held_->message += bytes;
            if (h.fin) {
                if (held_->message_text && !held_->utf8.complete())
                    return failure(ws_close_invalid_payload, "text message ends inside a UTF-8 character");
                held_->message_done = true;
                return {result::message, held_->message_text, held_->message, 0};
            }
        }
    }

    /// Bytes kept between reads (a cut frame, the fragments of a message).
    std::size_t held_bytes() const noexcept {
        return held_ ? held_->tail.size() - held_->tail_used + held_->message.size() : 0;
    }

private:
    struct held {
        std::string tail;           // a frame cut by the end of a read, and what followed it
        std::size_t tail_used = 0;  // bytes of `tail` already handed out
        std::string message;        // the fragments of a message so far
        bool in_message = false;    // a fragmented message is under way
        bool message_text = false;
        bool message_done = false;  // `message` was handed out whole by the last next()
        utf8_validator utf8;        // the text message's bytes so far
    };

    static item failure(std::uint16_t code, std::string_view why) { return {result::error, false, why, code}; }

    static item control_item(ws_opcode op, std::string_view payload) {
        if (op == ws_opcode::ping) return {result::ping, false, payload, 0};
        if (op == ws_opcode::pong) return {result::pong, false, payload, 0};
        if (payload.empty()) return {result::close, false, {}, ws_close_no_status};
        if (payload.size() == 1) return failure(ws_close_protocol_error, "close frame with a one-byte payload");
        auto const code = static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                     static_cast<unsigned char>(payload[1]));
        if (!ws_close_code_is_valid(code)) return failure(ws_close_protocol_error, "invalid close code");
        if (!is_valid_utf8(payload.substr(2))) return failure(ws_close_invalid_payload, "close reason is not UTF-8");
        return {result::close, false, payload.substr(2), code};
    }

    bool holds_tail() const noexcept { return held_ && held_->tail_used < held_->tail.size(); }

    // Where the next frame starts: the kept tail (new bytes appended to it;
    // rare, only after a read ended inside a frame) or the new bytes.
    std::span<char> source(std::span<char>& in) {
        if (!holds_tail()) return in;
        held_->tail.append(in.data(), in.size());
        in = {};
        return std::span<char>(held_->tail).subspan(held_->tail_used);
    }

    void consume(std::span<char>& in, std::size_t n) {
        if (holds_tail()) held_->tail_used += n;
        else in = in.subspan(n);
    }

    // The rest of `src` is an incomplete frame: keep it for the next read.
    item keep(std::span<char>& in, std::span<char> src) {
        if (holds_tail()) {
            held_->tail.erase(0, held_->tail_used);
        } else if (!src.empty()) {
            hold().tail.assign(src.data(), src.size());
            in = {};
        } else if (held_) {
            held_->tail.clear();
        }
        if (held_) held_->tail_used = 0;
        free_if_empty();
        return {};
    }

    void start_message(bool text) {
        auto& h = hold();
        h.in_message = true;
        h.message_text = text;
        h.utf8.reset();
    }

    held& hold() {
        if (!held_) held_ = std::make_unique<held>();
        return *held_;
    }

    // What the last item pointed into may go now; an empty block is freed.
    void release_last_item() {
        if (!held_) return;
        if (held_->message_done) {
            held_->message.clear();
            held_->message_done = false;
            held_->in_message = false;
        }
        if (held_->tail_used == held_->tail.size()) {
            held_->tail.clear();
            held_->tail_used = 0;
        }
        free_if_empty();
    }

    void free_if_empty() noexcept {
        if (held_ && held_->tail.empty() && !held_->in_message) held_.reset();
    }

    std::unique_ptr<held> held_;
};

}  // namespace flk::detail
