// The seam between the load generator and a wire encoding: how the three
// client messages it sends are written, and how a server frame is read back.
//
// Probe fields: a cursor:move carries x = the sender's sequence number and
// y = its send time in microseconds since the run started (steady clock,
// shared by every thread). The server relays positions as given, so each
// cursor:updated tells the receiver who sent it, which message it was and
// when it left. Both are integers below 2^53, exact in a double.
#pragma once

#include "ws_wire.hpp"

#include <flock/codec/binary.hpp>

#include <charconv>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace load {

enum class msg_type : std::uint8_t {
    cursor_updated,
    heartbeat_ack,
    join_ack,
    user_joined,
    user_left,
    error,
    other,
};
inline constexpr std::size_t msg_type_count = 7;

inline constexpr std::string_view msg_type_names[msg_type_count] = {
    "cursor:updated", "heartbeat:ack", "join:ack", "user:joined", "user:left", "error", "other"};

/// What a connection that reads message content keeps from one frame to
/// the next, for a wire encoding whose frames refer to earlier ones (binary:
/// the handles its server announced). One per such connection.
class codec_session {
public:
    virtual ~codec_session() = default;
};

/// What the generator needs from one server message.
struct inbound {
    msg_type type = msg_type::other;
    bool content = false;       ///< the fields below were read (cursor:updated)
    std::string_view user_id;   ///< sender (views into the frame)
    double x = 0;               ///< sender's sequence number
    double y = 0;               ///< send time, µs since the run start
    std::string_view error_code;  ///< for `error`
};

class codec {
public:
    virtual ~codec() = default;
    virtual std::string_view name() const = 0;
    /// Sec-WebSocket-Protocol to ask for; empty asks for none.
    virtual std::string_view subprotocol() const = 0;
    virtual ws::opcode frame_opcode() const = 0;

    virtual void encode_join(std::string& out, std::string_view room, std::string_view user) const = 0;
    virtual void encode_move(std::string& out, std::string_view room, double x, double y) const = 0;
    virtual void encode_heartbeat(std::string& out, std::string_view room) const = 0;
    virtual void encode_leave(std::string& out, std::string_view room) const = 0;

    /// What a connection that reads content must keep (see codec_session);
    /// null when the encoding needs nothing.
    virtual std::unique_ptr<codec_session> make_session() const { return nullptr; }

    /// The message type always; with `content`, also the cursor:updated fields
    /// (which is the costly part, done on sampled connections). `session` is
    /// the connection's, from make_session(), when `content`.
    virtual inbound parse_frame(std::string_view payload, bool content, codec_session* session) const = 0;
};

/// PROTOCOL.md's JSON. Reading scans for the few keys it needs instead of
/// building a DOM: any field order and optional whitespace are accepted, but
/// a string with escapes is not understood (ids made here never have any).
class json_codec final : public codec {
public:
    std::string_view name() const override { return "json"; }
    std::string_view subprotocol() const override { return {}; }
    ws::opcode frame_opcode() const override { return ws::opcode::text; }

    void encode_join(std::string& out, std::string_view room, std::string_view user) const override {
        out.append(R"({"type":"join","roomId":")").append(room);
        out.append(R"(","userId":")").append(user);
        out.append(R"(","metadata":{"name":")").append(user).append(R"(","color":"#3b82f6"}})");
    }

    void encode_move(std::string& out, std::string_view room, double x, double y) const override {
        out.append(R"({"type":"cursor:move","roomId":")").append(room);
        out.append(R"(","position":{"x":)");
        append_number(out, x);
        out.append(R"(,"y":)");
        append_number(out, y);
        out.append("}}");
    }

    void encode_heartbeat(std::string& out, std::string_view room) const override {
        out.append(R"({"type":"heartbeat","roomId":")").append(room).append(R"("})");
    }
    void encode_leave(std::string& out, std::string_view room) const override {
        out.append(R"({"type":"leave","roomId":")").append(room).append(R"("})");
    }

    inbound parse_frame(std::string_view payload, bool content, codec_session*) const override {
        inbound m;
        auto const type = string_field(payload, "type");
        if (!type) return m;
        m.type = classify(*type);
        if (m.type == msg_type::error) m.error_code = string_field(payload, "code").value_or("?");
        if (m.type == msg_type::cursor_updated && content) read_cursor(payload, m);
        return m;
    }

private:
    static void append_number(std::string& out, double v) {
        char buf[32];
        auto const r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }

    static msg_type classify(std::string_view type) {
        for (std::size_t i = 0; i + 1 < msg_type_count; ++i)
            if (type == msg_type_names[i]) return static_cast<msg_type>(i);
        return msg_type::other;
    }

    static void read_cursor(std::string_view payload, inbound& m) {
        auto const user = string_field(payload, "userId");
        auto const pos = value_of(payload, "position");
        if (!user || !pos) return;
        auto const x = number_field(*pos, "x");
        auto const y = number_field(*pos, "y");
        if (!x || !y) return;
        m.user_id = *user;
        m.x = *x;
        m.y = *y;
        m.content = true;
    }

    /// The text right after `"key":`, whitespace skipped; nullopt if absent.
    static std::optional<std::string_view> value_of(std::string_view in, std::string_view key) {
        for (std::size_t at = 0; (at = in.find(key, at)) != std::string_view::npos; at += key.size()) {
            if (at == 0 || in[at - 1] != '"' || at + key.size() >= in.size() || in[at + key.size()] != '"')
                continue;
            auto rest = skip_space(in.substr(at + key.size() + 1));
            if (rest.empty() || rest.front() != ':') continue;
            return skip_space(rest.substr(1));
        }
        return std::nullopt;
    }

    static std::string_view skip_space(std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r'))
            s.remove_prefix(1);
        return s;
    }

    static std::optional<std::string_view> string_field(std::string_view in, std::string_view key) {
        auto const v = value_of(in, key);
        if (!v || v->empty() || v->front() != '"') return std::nullopt;
        auto const end = v->find_first_of("\"\\", 1);
        if (end == std::string_view::npos || (*v)[end] == '\\') return std::nullopt;
        return v->substr(1, end - 1);
    }

    static std::optional<double> number_field(std::string_view in, std::string_view key) {
        auto const v = value_of(in, key);
        if (!v) return std::nullopt;
        double d = 0;
        auto const r = std::from_chars(v->data(), v->data() + v->size(), d);
        if (r.ec != std::errc{}) return std::nullopt;
        return d;
    }
};

/// flock's binary layout (docs/binary-codec.md), negotiated with the
/// subprotocol flock.binary.v2. Written and read by the library's own codec.
/// A cursor:updated names its sender by handle: a connection that reads
/// content keeps a flk::binary_session, fed every join:ack, user:joined and
/// user:left, to turn the handle back into the sender's userId.
class binary_codec final : public codec {
public:
    std::string_view name() const override { return "binary"; }
    std::string_view subprotocol() const override { return flk::binary_codec::subprotocol; }
    ws::opcode frame_opcode() const override { return ws::opcode::binary; }

    void encode_join(std::string& out, std::string_view room, std::string_view user) const override {
        flk::metadata meta{{"name", user}, {"color", "#3b82f6"}};
        out += wire_.encode_client(flk::client::join{std::string(room), std::string(user), std::move(meta), {}});
    }
    void encode_move(std::string& out, std::string_view room, double x, double y) const override {
        out += wire_.encode_client(flk::client::cursor_move{std::string(room), {x, y}});
    }
    void encode_heartbeat(std::string& out, std::string_view room) const override {
        out += wire_.encode_client(flk::client::heartbeat{std::string(room)});
    }
    void encode_leave(std::string& out, std::string_view room) const override {
        out += wire_.encode_client(flk::client::leave{std::string(room)});
    }

    std::unique_ptr<codec_session> make_session() const override { return std::make_unique<state>(); }

    inbound parse_frame(std::string_view payload, bool content, codec_session* session) const override {
        inbound m;
        if (payload.empty()) return m;
        m.type = classify(static_cast<std::uint8_t>(payload.front()));
        if (m.type == msg_type::error) return read_error(payload, m);
        auto* const s = content ? static_cast<state*>(session) : nullptr;
        if (!s) return m;
        switch (m.type) {
        case msg_type::join_ack:
        case msg_type::user_joined:
        case msg_type::user_left: s->names.decode(payload); return m;  // the handles to learn
        case msg_type::cursor_updated: break;
        default: return m;
        }
        auto msg = s->names.decode(payload);
        auto* const cu = msg ? std::get_if<flk::server::cursor_updated>(&*msg) : nullptr;
        if (!cu) return m;
        // The view must outlive this call: it points into the session, which
        // holds one sender at a time.
        s->user = std::move(cu->user_id);
        m.user_id = s->user;
        m.x = cu->pos.x;
        m.y = cu->pos.y;
        m.content = true;
        return m;
    }

private:
    struct state final : codec_session {
        flk::binary_session names;
        std::string user;  ///< the sender of the last cursor:updated read
    };

    // Errors are rare: read them with the library's decoder.
    inbound read_error(std::string_view payload, inbound m) const {
        auto msg = wire_.decode_server(payload);
        auto const* e = msg ? std::get_if<flk::server::error>(&*msg) : nullptr;
        m.error_code = e ? flk::to_string(e->code) : "?";
        return m;
    }

    /// Both forms of a message (by name 0x8N, by handle 0x9N) are one type.
    static msg_type classify(std::uint8_t tag) {
        namespace t = flk::detail::binary_wire::tag;
        switch (tag) {
        case t::cursor_updated_by_handle:
        case t::cursor_updated: return msg_type::cursor_updated;
        case t::heartbeat_ack: return msg_type::heartbeat_ack;
        case t::join_ack: return msg_type::join_ack;
        case t::user_joined_by_handle:
        case t::user_joined: return msg_type::user_joined;
        case t::user_left_by_handle:
        case t::user_left: return msg_type::user_left;
        case t::error: return msg_type::error;
        default: return msg_type::other;
        }
    }

    flk::binary_codec wire_;
};

/// The codec called `name`, or null with `error` saying why.
inline std::unique_ptr<codec> make_codec(std::string_view name, std::string& error) {
    if (name == "json") return std::make_unique<json_codec>();
    if (name == "binary") return std::make_unique<binary_codec>();
    error = "unknown codec '" + std::string(name) + "' (json or binary)";
    return nullptr;
}

}  // namespace load
