// The JSON codec: the wire format of PROTOCOL.md, one JSON object per text
// frame, spoken by the existing browser clients and reference servers.
#pragma once

#include <flock/codec/concept.hpp>
#include <flock/detail/json_writer.hpp>
#include <flock/protocol.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace flk::detail::json_wire {

namespace bj = boost::json;

// ---------------------------------------------------------------- parsing

/// Frames are parsed into an arena on the stack: a typical ~100-byte cursor
/// message then costs no heap allocation until its fields are copied out.
/// Bigger frames spill over to the heap.
struct stack_arena {
    unsigned char buffer[2048];
    bj::monotonic_resource resource{buffer};
};

/// Parses `bytes` into `arena`, or gives null for anything that is not one
/// valid UTF-8 JSON text. The depth bound keeps hostile nesting cheap.
inline std::optional<bj::value> parse(std::string_view bytes, stack_arena& arena) {
    bj::parse_options options;
    options.max_depth = 32;
    bj::error_code ec;
    auto v = bj::parse(bytes, ec, &arena.resource, options);
    if (ec) return std::nullopt;
    return v;
}

/// Boost.JSON reads 1e999 as infinity and would write it back as `Infinity`,
/// which is not JSON: such values must never be stored or relayed.
inline bool finite_throughout(bj::value const& v) {
    switch (v.kind()) {
    case bj::kind::double_: return std::isfinite(v.get_double());
    case bj::kind::array: return std::ranges::all_of(v.get_array(), finite_throughout);
    case bj::kind::object:
        return std::ranges::all_of(v.get_object(),
                                   [](auto const& kv) { return finite_throughout(kv.value()); });
    default: return true;
    }
}

/// A finite number in any of JSON's three representations.
inline std::optional<double> finite_number(bj::value const& v) {
    switch (v.kind()) {
    case bj::kind::int64: return static_cast<double>(v.get_int64());
    case bj::kind::uint64: return static_cast<double>(v.get_uint64());
    case bj::kind::double_:
        if (std::isfinite(v.get_double())) return v.get_double();
        return std::nullopt;
    default: return std::nullopt;
    }
}

/// Reads the fields of one message object and remembers the first problem,
/// so that each message reader is a plain list of its fields. Values are
/// copied onto the default heap: the object may live in a stack arena.
/// Field names must be string literals (decode_error::field keeps a view).
class field_reader {
public:
    explicit field_reader(bj::object const& obj) noexcept : obj_(obj) {}

    std::string string(std::string_view name) {
        auto const* v = require(obj_, name, name);
        if (!v) return {};
        auto const* s = v->if_string();
        if (!s) {
            fail(decode_errc::wrong_type, name);
            return {};
        }
        return std::string(s->data(), s->size());
    }

    /// Absent and `null` both mean "not given".
    std::optional<std::string> optional_string(std::string_view name) {
        if (!has(name)) return std::nullopt;
        return string(name);
    }

    /// A metadata object (any JSON object whose numbers are finite).
    metadata object(std::string_view name) {
        auto const* v = require(obj_, name, name);
        if (!v) return {};
        auto const* o = v->if_object();
        if (!o || !finite_throughout(*v)) {
            fail(decode_errc::wrong_type, name);
            return {};
        }
        return metadata(*o, bj::storage_ptr());
    }

    /// `{x, y}`, two finite numbers; `x_name`/`y_name` name them in errors.
    position point(std::string_view name, std::string_view x_name, std::string_view y_name) {
        auto const* v = require(obj_, name, name);
        if (!v) return {};
        auto const* o = v->if_object();
        if (!o) {
            fail(decode_errc::wrong_type, name);
            return {};
        }
        return {coordinate(*o, "x", x_name), coordinate(*o, "y", y_name)};
    }

    /// An integer; a double with an integral value is accepted too.
    std::int64_t integer(std::string_view name) {
        auto const* v = require(obj_, name, name);
        if (!v) return 0;
        bj::error_code ec;
        auto const n = v->to_number<std::int64_t>(ec);
        if (ec) {
            fail(decode_errc::wrong_type, name);
            return 0;
        }
        return n;
    }

    bj::array const* array(std::string_view name) {
        auto const* v = require(obj_, name, name);
        if (!v) return nullptr;
        auto const* a = v->if_array();
        if (!a) fail(decode_errc::wrong_type, name);
        return a;
    }

    bool has(std::string_view name) const {
        auto const* v = obj_.if_contains(name);
        return v && !v->is_null();
    }

    bool ok() const noexcept { return !failure_; }

    /// An error naming the object's room when it has a readable `roomId`,
    /// so the server can say which room the bad message was for.
    decode_error error(decode_errc code, std::string_view field = {}) const {
        decode_error e{code, field, {}};
        if (auto const* room = obj_.if_contains("roomId"); room && room->is_string())
            e.room_id.assign(room->get_string().data(), room->get_string().size());
        return e;
    }

    template <class Message>
    decode_result client_result(Message m) const {
        if (failure_) return error(failure_->code, failure_->field);
        return client_message(std::move(m));
    }

    template <class Message>
    std::optional<server_message> server_result(Message m) const {
        if (failure_) return std::nullopt;
        return server_message(std::move(m));
    }

private:
    bj::value const* require(bj::object const& in, std::string_view key, std::string_view name) {
        auto const* v = in.if_contains(key);
        if (!v) fail(decode_errc::missing_field, name);
        return v;
    }

    double coordinate(bj::object const& in, std::string_view key, std::string_view name) {
        auto const* v = require(in, key, name);
        if (!v) return 0;
        auto const d = finite_number(*v);
        if (!d) fail(decode_errc::wrong_type, name);
        return d.value_or(0);
    }

    void fail(decode_errc code, std::string_view field) {
        if (!failure_) failure_ = failure{code, field};
    }

    struct failure {
        decode_errc code;
        std::string_view field;
    };
    bj::object const& obj_;
    std::optional<failure> failure_;
};

// ---------------------------------------------------- client messages in
// Braced initialisers evaluate in order, so the first field listed that is
// wrong is the one reported.

inline decode_result read_join(field_reader& r) {
    return r.client_result(client::join{r.string("roomId"), r.string("userId"),
                                        r.object("metadata"), r.optional_string("apiKey")});
}

inline decode_result read_heartbeat(field_reader& r) {
    return r.client_result(client::heartbeat{r.string("roomId")});
}

inline decode_result read_cursor_move(field_reader& r) {
    return r.client_result(client::cursor_move{
        r.string("roomId"), r.point("position", "position.x", "position.y")});
}

inline decode_result read_cursor_leave(field_reader& r) {
    return r.client_result(client::cursor_leave{r.string("roomId")});
}

inline decode_result read_presence_update(field_reader& r) {
    return r.client_result(client::presence_update{r.string("roomId"), r.object("metadata")});
}

inline decode_result read_leave(field_reader& r) {
    return r.client_result(client::leave{r.string("roomId")});
}

struct client_type {
    std::string_view name;
    decode_result (*read)(field_reader&);
};

/// Most frequent first: cursor moves are most of the traffic.
inline constexpr client_type client_types[] = {
    {"cursor:move", read_cursor_move},         {"heartbeat", read_heartbeat},
    {"cursor:leave", read_cursor_leave},       {"presence:update", read_presence_update},
    {"join", read_join},                       {"leave", read_leave},
};

// ---------------------------------------------------- server messages in
// These come from this codec or another flock instance; any deviation just
// means "not a message we understand".

inline std::optional<server::member> read_member(bj::value const& v) {
    auto const* obj = v.if_object();
    if (!obj) return std::nullopt;
    field_reader r(*obj);
    server::member m{r.string("userId"), r.object("metadata"), std::nullopt};
    if (r.has("cursor")) m.cursor = r.point("cursor", "cursor.x", "cursor.y");
    if (!r.ok()) return std::nullopt;
    return m;
}

inline std::optional<server_message> read_join_ack(field_reader& r) {
    server::join_ack m{r.string("roomId"), {}};
    auto const* users = r.array("users");
    if (!users) return std::nullopt;
    m.users.reserve(users->size());
    for (auto const& u : *users) {
        auto member = read_member(u);
        if (!member) return std::nullopt;
        m.users.push_back(std::move(*member));
    }
    return r.server_result(std::move(m));
}

inline std::optional<server_message> read_user_joined(field_reader& r) {
    return r.server_result(
        server::user_joined{r.string("roomId"), r.string("userId"), r.object("metadata")});
}

inline std::optional<server_message> read_user_left(field_reader& r) {
    return r.server_result(server::user_left{r.string("roomId"), r.string("userId")});
}

inline std::optional<server_message> read_cursor_updated(field_reader& r) {
    return r.server_result(server::cursor_updated{r.string("roomId"), r.string("userId"),
                                                  r.point("position", "position.x", "position.y"),
                                                  r.integer("timestamp")});
}

inline std::optional<server_message> read_cursor_removed(field_reader& r) {
    return r.server_result(server::cursor_removed{r.string("roomId"), r.string("userId")});
}

inline std::optional<server_message> read_presence_updated(field_reader& r) {
    return r.server_result(
        server::presence_updated{r.string("roomId"), r.string("userId"), r.object("metadata")});
}

inline std::optional<server_message> read_heartbeat_ack(field_reader&) {
    return server_message(server::heartbeat_ack{});
}

inline std::optional<server_message> read_error(field_reader& r) {
    // Another server may send a code this one does not know: still an error.
    auto const code = error_code_from_string(r.string("code")).value_or(error_code::internal_error);
    return r.server_result(server::error{code, r.string("message"), r.optional_string("roomId")});
}

struct server_type {
    std::string_view name;
    std::optional<server_message> (*read)(field_reader&);
};

inline constexpr server_type server_types[] = {
    {"cursor:updated", read_cursor_updated},     {"heartbeat:ack", read_heartbeat_ack},
    {"cursor:removed", read_cursor_removed},     {"presence:updated", read_presence_updated},
    {"user:joined", read_user_joined},           {"user:left", read_user_left},
    {"join:ack", read_join_ack},                 {"error", read_error},
};

// --------------------------------------------------- server messages out
// Written straight into one string, `type` first: no DOM on the hot path.

/// Starts `{"type":"<type>","roomId":<room>`, reserving `extra` more bytes so
/// a typical message is written without the string growing.
inline std::string begin(std::string_view type, std::string_view room_id, std::size_t extra) {
    std::string out;
    out.reserve(32 + type.size() + room_id.size() + extra);
    out += R"({"type":")";
    out += type;
    out += R"(","roomId":)";
    write_string(out, room_id);
    return out;
}

/// Appends `,"<key>":`; keys are literals that need no escaping.
inline void key(std::string& out, std::string_view k) {
    out += R"(,")";
    out += k;
    out += R"(":)";
}

inline void write_position(std::string& out, position p) {
    out += R"({"x":)";
    write_double(out, p.x);
    out += R"(,"y":)";
    write_double(out, p.y);
    out += '}';
}

/// One join:ack entry; `cursor` is left out when the user has none yet.
inline void write_member(std::string& out, server::member const& u) {
    out += R"({"userId":)";
    write_string(out, u.user_id);
    key(out, "metadata");
    write_object(out, u.meta);
    if (u.cursor) {
        key(out, "cursor");
        write_position(out, *u.cursor);
    }
    out += '}';
}

/// A guess at a metadata object's size, for reserving.
inline constexpr std::size_t metadata_guess = 64;

inline std::string encode(server::join_ack const& m) {
    std::size_t extra = 16;
    for (auto const& u : m.users) extra += 80 + u.user_id.size() + metadata_guess;
    auto out = begin("join:ack", m.room_id, extra);
    key(out, "users");
    out += '[';
    for (std::size_t i = 0; i < m.users.size(); ++i) {
        if (i > 0) out += ',';
        write_member(out, m.users[i]);
    }
    out += "]}";
    return out;
}

inline std::string encode(server::user_joined const& m) {
    auto out = begin("user:joined", m.room_id, 32 + m.user_id.size() + metadata_guess);
    key(out, "userId");
    write_string(out, m.user_id);
    key(out, "metadata");
    write_object(out, m.meta);
    out += '}';
    return out;
}

inline std::string encode(server::user_left const& m) {
    auto out = begin("user:left", m.room_id, 16 + m.user_id.size());
    key(out, "userId");
    write_string(out, m.user_id);
    out += '}';
    return out;
}

inline std::string encode(server::cursor_updated const& m) {
    // Each double takes at most 24 characters, the timestamp at most 20.
    auto out = begin("cursor:updated", m.room_id, 112 + m.user_id.size());
    key(out, "userId");
    write_string(out, m.user_id);
    key(out, "position");
    write_position(out, m.pos);
    key(out, "timestamp");
    write_int(out, m.timestamp);
    out += '}';
    return out;
}

inline std::string encode(server::cursor_removed const& m) {
    auto out = begin("cursor:removed", m.room_id, 16 + m.user_id.size());
    key(out, "userId");
    write_string(out, m.user_id);
    out += '}';
    return out;
}

inline std::string encode(server::presence_updated const& m) {
    auto out = begin("presence:updated", m.room_id, 32 + m.user_id.size() + metadata_guess);
    key(out, "userId");
    write_string(out, m.user_id);
    key(out, "metadata");
    write_object(out, m.patch);
    out += '}';
    return out;
}

inline std::string encode(server::heartbeat_ack const&) {
    return R"({"type":"heartbeat:ack"})";
}

inline std::string encode(server::error const& m) {
    std::string out;
    out.reserve(64 + m.message.size() + (m.room_id ? m.room_id->size() + 12 : 0));
    out += R"({"type":"error","code":")";
    out += to_string(m.code);
    out += '"';
    key(out, "message");
    write_string(out, m.message);
    if (m.room_id) {
        key(out, "roomId");
        write_string(out, *m.room_id);
    }
    out += '}';
    return out;
}

}  // namespace flk::detail::json_wire

namespace flk {

/// The Codec of PROTOCOL.md: each message is one JSON object in a text frame.
struct json_codec {
    static constexpr frame_kind kind = frame_kind::text;

    /// One client frame to a message; never throws on bad input.
    decode_result decode(std::string_view bytes, frame_kind received) const {
        if (received != kind) return decode_error{decode_errc::wrong_frame_kind, {}, {}};
        detail::json_wire::stack_arena arena;
        auto const v = detail::json_wire::parse(bytes, arena);
        if (!v) return decode_error{decode_errc::invalid_json, {}, {}};
        return client_from_json(*v);
    }

    /// The frame payload for `msg`, encoded once per broadcast.
    std::string encode(server_message const& msg) const {
        return std::visit([](auto const& m) { return detail::json_wire::encode(m); }, msg);
    }

    /// A server message back from its bytes; nullopt if it is not one.
    std::optional<server_message> decode_server(std::string_view bytes) const {
        detail::json_wire::stack_arena arena;
        auto const v = detail::json_wire::parse(bytes, arena);
        if (!v) return std::nullopt;
        return server_from_json(*v);
    }

    /// A client message from an already parsed value (the checks of decode
    /// after parsing). The result owns its data: `v` may be freed afterwards.
    static decode_result client_from_json(boost::json::value const& v) {
        auto const* obj = v.if_object();
        if (!obj) return decode_error{decode_errc::not_an_object, {}, {}};
        detail::json_wire::field_reader r(*obj);
        auto const* type = obj->if_contains("type");
        if (!type || !type->is_string()) return r.error(decode_errc::missing_type);
        for (auto const& t : detail::json_wire::client_types)
            if (t.name == type->get_string()) return t.read(r);
        return r.error(decode_errc::unknown_type);
    }

    /// A server message from an already parsed value, such as the `message`
    /// of a broker envelope. The result owns its data.
    static std::optional<server_message> server_from_json(boost::json::value const& v) {
        auto const* obj = v.if_object();
        if (!obj) return std::nullopt;
        auto const* type = obj->if_contains("type");
        if (!type || !type->is_string()) return std::nullopt;
        detail::json_wire::field_reader r(*obj);
        for (auto const& t : detail::json_wire::server_types)
            if (t.name == type->get_string()) return t.read(r);
        return std::nullopt;
    }
};

static_assert(Codec<json_codec>);

}  // namespace flk
