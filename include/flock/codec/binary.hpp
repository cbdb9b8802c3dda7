// The binary codec: every message of PROTOCOL.md in a compact byte layout,
// one message per binary WebSocket frame, for native clients that ask for the
// `flock.binary.v2` subprotocol. The layout is documented, table by table, in
// docs/binary-codec.md; the functions below follow it in the same order.
//
// Messages about one user in one room have two forms: by handle (the small
// integers of flk::handle, which the core assigns and announces in join:ack
// and user:joined) and by name (the ids spelled out, when the sender has no
// handle). flk::binary_session, at the end, is the client side: it learns the
// handles and gives back every message with its names.
#pragma once

#include <flock/codec/concept.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/binary_wire.hpp>
#include <flock/protocol.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>

namespace flk::detail::binary_wire {

namespace bj = boost::json;

/// The first byte of every frame. Client messages have the high bit clear,
/// server messages set, so a frame sent the wrong way is an unknown type.
/// Server messages about one user in one room have a tag for each form:
/// 0x8N spells out the ids, 0x9N gives the handles instead.
namespace tag {
inline constexpr std::uint8_t join = 0x01;
inline constexpr std::uint8_t heartbeat = 0x02;
inline constexpr std::uint8_t cursor_move = 0x03;
inline constexpr std::uint8_t cursor_leave = 0x04;
inline constexpr std::uint8_t presence_update = 0x05;
inline constexpr std::uint8_t leave = 0x06;

inline constexpr std::uint8_t join_ack = 0x81;
inline constexpr std::uint8_t user_joined = 0x82;
inline constexpr std::uint8_t user_left = 0x83;
inline constexpr std::uint8_t cursor_updated = 0x84;
inline constexpr std::uint8_t cursor_removed = 0x85;
inline constexpr std::uint8_t presence_updated = 0x86;
inline constexpr std::uint8_t heartbeat_ack = 0x87;
inline constexpr std::uint8_t error = 0x88;

inline constexpr std::uint8_t user_joined_by_handle = 0x92;
inline constexpr std::uint8_t user_left_by_handle = 0x93;
inline constexpr std::uint8_t cursor_updated_by_handle = 0x94;
inline constexpr std::uint8_t cursor_removed_by_handle = 0x95;
inline constexpr std::uint8_t presence_updated_by_handle = 0x96;
}  // namespace tag

/// The byte of each error code: a fixed table, independent of the enum's order.
constexpr std::uint8_t code_byte(error_code c) noexcept {
    switch (c) {
    case error_code::invalid_api_key: return 0;
    case error_code::room_full: return 1;
    case error_code::rate_limited: return 2;
    case error_code::internal_error: return 3;
    case error_code::invalid_message: return 4;
    case error_code::too_many_rooms: return 5;
    }
    return 3;
}

/// Another server may send a code this one does not know: still an error.
constexpr error_code code_from_byte(std::uint8_t b) noexcept {
    switch (b) {
    case 0: return error_code::invalid_api_key;
    case 1: return error_code::room_full;
    case 2: return error_code::rate_limited;
    case 4: return error_code::invalid_message;
    case 5: return error_code::too_many_rooms;
    default: return error_code::internal_error;
    }
}

/// Metadata is the root of its JSON text here, one level below the message
/// object in the JSON codec (which allows 32 levels in all), so that exactly
/// the same metadata is accepted by both codecs.
inline constexpr unsigned metadata_max_depth = 31;

/// The smallest join:ack entry: an empty userId, handle 0, `{}`, no cursor.
inline constexpr std::size_t min_member_size = 1 + 1 + (1 + 2) + 1;

// ---------------------------------------------------------------- reading

/// Reads the fields of one message in layout order and remembers the first
/// problem, so that each message reader is a plain list of its fields; after
/// a failure every read is a no-op. Field names must be string literals
/// (decode_error::field keeps a view).
class field_reader {
public:
    /// `body`: the frame after its tag byte.
    explicit field_reader(std::string_view body) noexcept : in_(body) {}

    bool ok() const noexcept { return !failure_; }

    /// The `roomId` field; remembered so that a later error can name it.
    std::string room() {
        auto const v = text("roomId");
        if (ok()) room_ = v;
        return std::string(v);
    }

    std::string string(std::string_view name) { return std::string(text(name)); }

    /// A presence byte (0 absent, 1 present), then the string when present.
    std::optional<std::string> optional_string(std::string_view name) {
        if (!present(name)) return std::nullopt;
        return string(name);
    }

    /// A presence byte: 0 or 1, anything else is malformed.
    bool present(std::string_view name) {
        if (!ok()) return false;
        std::uint8_t b = 0;
        if (!in_.byte(b) || b > 1) fail(decode_errc::malformed, name);
        return ok() && b == 1;
    }

    /// Varint-length JSON text holding one object with finite numbers.
    metadata object(std::string_view name) {
        std::string_view text;
        if (!ok()) return {};
        if (!in_.bytes(text)) {
            fail(decode_errc::malformed, name);
            return {};
        }
        // Parsed in a stack arena, then copied onto the heap: the result owns it.
        json_wire::stack_arena arena;
        bj::parse_options options;
        options.max_depth = metadata_max_depth;
        bj::error_code ec;
        auto const v = bj::parse(text, ec, &arena.resource, options);
        if (ec || !v.is_object() || !json_wire::finite_throughout(v)) {
            fail(decode_errc::wrong_type, name);
            return {};
        }
        return metadata(v.get_object(), bj::storage_ptr());
    }

    /// Two little-endian float64, both finite.
    position point(std::string_view x_name, std::string_view y_name) {
        auto const x = coordinate(x_name);
        auto const y = coordinate(y_name);
        return {x, y};
    }

    /// A varint handle that names something: 0 is refused.
    handle required_handle(std::string_view name) {
        auto const h = optional_handle(name);
        if (ok() && h == 0) fail(decode_errc::malformed, name);
        return h;
    }

    /// A varint handle, 0 for none.
    handle optional_handle(std::string_view name) {
        std::uint64_t u = 0;
        if (ok() && !in_.varint(u)) fail(decode_errc::malformed, name);
        return ok() ? u : 0;
    }

    /// A zigzag varint.
    std::int64_t integer(std::string_view name) {
        std::uint64_t u = 0;
        if (ok() && !in_.varint(u)) fail(decode_errc::malformed, name);
        return ok() ? unzigzag(u) : 0;
    }

    /// A varint count of items that each take at least `min_item_size`
    /// bytes: a count the rest of the frame cannot hold is refused before
    /// anything is reserved for it.
    std::size_t count(std::string_view name, std::size_t min_item_size) {
        std::uint64_t n = 0;
        if (ok() && (!in_.varint(n) || n > in_.remaining() / min_item_size))
            fail(decode_errc::malformed, name);
        return ok() ? static_cast<std::size_t>(n) : 0;
    }

    std::uint8_t byte(std::string_view name) {
        std::uint8_t b = 0;
        if (ok() && !in_.byte(b)) fail(decode_errc::malformed, name);
        return b;
    }

    /// The error, naming the room when it was read.
    decode_error error() const {
        return decode_error{failure_->code, failure_->field, std::string(room_)};
    }

    /// `m` if every field was read and nothing follows the last one.
    template <class Message>
    decode_result client_result(Message&& m) {
        finish();
        if (failure_) return error();
        return client_message(std::forward<Message>(m));
    }

    template <class Message>
    std::optional<server_message> server_result(Message&& m) {
        finish();
        if (failure_) return std::nullopt;
        return server_message(std::forward<Message>(m));
    }

private:
    /// A varint-length UTF-8 string, viewed in the frame.
    std::string_view text(std::string_view name) {
        std::string_view v;
        if (!ok()) return v;
        if (!in_.bytes(v)) {
            fail(decode_errc::malformed, name);
            return {};
        }
        // Strings are relayed to browsers inside JSON text: UTF-8 or nothing.
        if (!valid_utf8(v)) {
            fail(decode_errc::wrong_type, name);
            return {};
        }
        return v;
    }

    double coordinate(std::string_view name) {
        double d = 0;
        if (!ok()) return 0;
        if (!in_.f64(d)) {
            fail(decode_errc::malformed, name);
            return 0;
        }
        if (!std::isfinite(d)) {
            fail(decode_errc::wrong_type, name);
            return 0;
        }
        return d;
    }

    void finish() {
        if (ok() && !in_.at_end()) fail(decode_errc::malformed, "trailing bytes");
    }

    void fail(decode_errc code, std::string_view field) {
        if (!failure_) failure_ = failure{code, field};
    }

    struct failure {
        decode_errc code;
        std::string_view field;
    };
    reader in_;
    std::string_view room_;
    std::optional<failure> failure_;
};

// ---------------------------------------------------- client messages in
// Braced initialisers evaluate in order: fields are read in layout order.

inline decode_result read_join(field_reader& r) {
    return r.client_result(client::join{r.room(), r.string("userId"), r.object("metadata"),
                                        r.optional_string("apiKey")});
}

inline decode_result read_heartbeat(field_reader& r) {
    return r.client_result(client::heartbeat{r.room()});
}

inline decode_result read_cursor_move(field_reader& r) {
    return r.client_result(client::cursor_move{r.room(), r.point("position.x", "position.y")});
}

inline decode_result read_cursor_leave(field_reader& r) {
    return r.client_result(client::cursor_leave{r.room()});
}

inline decode_result read_presence_update(field_reader& r) {
    return r.client_result(client::presence_update{r.room(), r.object("metadata")});
}

inline decode_result read_leave(field_reader& r) {
    return r.client_result(client::leave{r.room()});
}

inline decode_result decode_client(std::string_view bytes) {
    // No tag, no type: dropped silently, like a JSON object without `type`.
    if (bytes.empty()) return decode_error{decode_errc::missing_type, {}, {}};
    field_reader r(bytes.substr(1));
    switch (static_cast<std::uint8_t>(bytes.front())) {
    case tag::cursor_move: return read_cursor_move(r);
    case tag::heartbeat: return read_heartbeat(r);
    case tag::cursor_leave: return read_cursor_leave(r);
    case tag::presence_update: return read_presence_update(r);
    case tag::join: return read_join(r);
    case tag::leave: return read_leave(r);
    default: return decode_error{decode_errc::unknown_type, {}, {}};
    }
}

// ---------------------------------------------------- server messages in
// These come from this codec or another flock instance; any deviation just
// means "not a message we understand".

inline std::optional<server_message> read_join_ack(field_reader& r) {
    server::join_ack m;
    m.room_id = r.string("roomId");
    m.room_handle = r.optional_handle("roomHandle");
    auto const n = r.count("users", min_member_size);
    m.users.reserve(n);
    for (std::size_t i = 0; i < n && r.ok(); ++i) {
        server::member u;
        u.user_id = r.string("userId");
        u.user_handle = r.optional_handle("userHandle");
        u.meta = r.object("metadata");
        if (r.present("cursor")) u.cursor = r.point("cursor.x", "cursor.y");
        m.users.push_back(std::move(u));
    }
    return r.server_result(std::move(m));
}

// By name: the v1 layouts, the ids spelled out.

inline std::optional<server_message> read_user_joined(field_reader& r) {
    return r.server_result(
        server::user_joined{r.string("roomId"), r.string("userId"), r.object("metadata")});
}

inline std::optional<server_message> read_user_left(field_reader& r) {
    return r.server_result(server::user_left{r.string("roomId"), r.string("userId")});
}

inline std::optional<server_message> read_cursor_updated(field_reader& r) {
    return r.server_result(server::cursor_updated{r.string("roomId"), r.string("userId"),
                                                  r.point("position.x", "position.y"),
                                                  r.integer("timestamp")});
}

inline std::optional<server_message> read_cursor_removed(field_reader& r) {
    return r.server_result(server::cursor_removed{r.string("roomId"), r.string("userId")});
}

inline std::optional<server_message> read_presence_updated(field_reader& r) {
    return r.server_result(
        server::presence_updated{r.string("roomId"), r.string("userId"), r.object("metadata")});
}

// By handle: two nonzero handles in place of the ids, whose strings are left
// empty (flk::binary_session fills them in). The handles come first, so the
// fields are read one statement at a time, in layout order.

/// Reads the room and user handles that open every handle form into `m`.
template <class Message>
void read_handles(field_reader& r, Message& m) {
    m.room_handle = r.required_handle("roomHandle");
    m.user_handle = r.required_handle("userHandle");
}

inline std::optional<server_message> read_user_joined_by_handle(field_reader& r) {
    server::user_joined m;
    read_handles(r, m);
    m.user_id = r.string("userId");
    m.meta = r.object("metadata");
    return r.server_result(std::move(m));
}

inline std::optional<server_message> read_user_left_by_handle(field_reader& r) {
    server::user_left m;
    read_handles(r, m);
    return r.server_result(std::move(m));
}

inline std::optional<server_message> read_cursor_updated_by_handle(field_reader& r) {
    server::cursor_updated m;
    read_handles(r, m);
    m.pos = r.point("position.x", "position.y");
    m.timestamp = r.integer("timestamp");
    return r.server_result(std::move(m));
}

inline std::optional<server_message> read_cursor_removed_by_handle(field_reader& r) {
    server::cursor_removed m;
    read_handles(r, m);
    return r.server_result(std::move(m));
}

inline std::optional<server_message> read_presence_updated_by_handle(field_reader& r) {
    server::presence_updated m;
    read_handles(r, m);
    m.patch = r.object("metadata");
    return r.server_result(std::move(m));
}

inline std::optional<server_message> read_error(field_reader& r) {
    return r.server_result(server::error{code_from_byte(r.byte("code")), r.string("message"),
                                         r.optional_string("roomId")});
}

inline std::optional<server_message> decode_server(std::string_view bytes) {
    if (bytes.empty()) return std::nullopt;
    field_reader r(bytes.substr(1));
    switch (static_cast<std::uint8_t>(bytes.front())) {
    case tag::cursor_updated_by_handle: return read_cursor_updated_by_handle(r);
    case tag::cursor_updated: return read_cursor_updated(r);
    case tag::heartbeat_ack: return r.server_result(server::heartbeat_ack{});
    case tag::cursor_removed_by_handle: return read_cursor_removed_by_handle(r);
    case tag::presence_updated_by_handle: return read_presence_updated_by_handle(r);
    case tag::user_joined_by_handle: return read_user_joined_by_handle(r);
    case tag::user_left_by_handle: return read_user_left_by_handle(r);
    case tag::cursor_removed: return read_cursor_removed(r);
    case tag::presence_updated: return read_presence_updated(r);
    case tag::user_joined: return read_user_joined(r);
    case tag::user_left: return read_user_left(r);
    case tag::join_ack: return read_join_ack(r);
    case tag::error: return read_error(r);
    default: return std::nullopt;
    }
}

// ---------------------------------------------------------------- writing
// Each layout() lists a message's fields once; it runs twice per encode:
// with a `sizer` to find the size to reserve (exact, or an upper bound when
// metadata is involved), then with a `writer` that fills the one allocation.

/// Adds up the bytes a layout takes.
struct sizer {
    std::size_t n = 0;
    void byte(std::uint8_t) noexcept { n += 1; }
    void varint(std::uint64_t v) noexcept { n += varint_size(v); }
    void integer(std::int64_t v) noexcept { n += varint_size(zigzag(v)); }
    void string(std::string_view s) noexcept { n += string_size(s); }
    void point(position) noexcept { n += 2 * f64_size; }
    void object(metadata const& m) noexcept {
        auto const bound = json_size_bound(m);
        n += varint_size(bound) + bound;
    }
};

/// Writes a layout into a string sized by a sizer: one allocation, filled
/// through a pointer, trimmed to what was written at the end. Every write
/// checks its room first, so the output is right and in bounds even if a
/// size were short; it then only costs another allocation.
class writer {
public:
    explicit writer(std::size_t size) {
        out_.resize(size);
        p_ = out_.data();
    }

    void byte(std::uint8_t b) { *room(1)++ = static_cast<char>(b); }
    void varint(std::uint64_t v) { p_ = put_varint(room(varint_size(v)), v); }
    void integer(std::int64_t v) { varint(zigzag(v)); }
    void string(std::string_view s) { p_ = put_string(room(string_size(s)), s); }
    void point(position p) { p_ = put_f64(put_f64(room(2 * f64_size), p.x), p.y); }

    /// The JSON text is serialized in place after a one-byte length, which
    /// is widened afterwards if the text turned out longer than 127 bytes
    /// (the sizer reserved the widest length its bound can need).
    void object(metadata const& m) {
        auto const at = offset();
        bj::serializer sr;
        sr.reset(&m);
        std::size_t n = 0;
        for (;;) {
            if (auto const used = at + 1 + n; used < out_.size())
                n += sr.read(out_.data() + used, out_.size() - used).size();
            if (sr.done()) break;
            grow(out_.size() + 1);  // the bound was short: never expected
        }
        auto const w = varint_size(n);
        if (w > 1) {
            if (at + w + n > out_.size()) grow(at + w + n);
            std::memmove(out_.data() + at + w, out_.data() + at + 1, n);
        }
        p_ = put_varint(out_.data() + at, n) + n;
    }

    std::string take() && {
        out_.resize(offset());
        return std::move(out_);
    }

private:
    std::size_t offset() const noexcept { return static_cast<std::size_t>(p_ - out_.data()); }

    /// Where the next `n` bytes go.
    char*& room(std::size_t n) {
        if (static_cast<std::size_t>(out_.data() + out_.size() - p_) < n) [[unlikely]]
            grow(offset() + n);
        return p_;
    }

    void grow(std::size_t at_least) {
        auto const at = offset();
        out_.resize(std::max(at_least, 2 * out_.size()));
        p_ = out_.data() + at;
    }

    std::string out_;
    char* p_;
};

template <class Out>
void layout(Out& o, server::join_ack const& m) {
    o.byte(tag::join_ack);
    o.string(m.room_id);
    o.varint(m.room_handle);
    o.varint(m.users.size());
    for (auto const& u : m.users) {
        o.string(u.user_id);
        o.varint(u.user_handle);
        o.object(u.meta);
        o.byte(u.cursor ? 1 : 0);
        if (u.cursor) o.point(*u.cursor);
    }
}

/// A message about one user goes by handle when it has both handles.
template <class Message>
constexpr bool by_handle(Message const& m) noexcept {
    return m.room_handle != 0 && m.user_handle != 0;
}

/// The tag and the subject that open a message about one user in one room:
/// the two handles, or else the two ids.
template <class Out, class Message>
void subject(Out& o, Message const& m, std::uint8_t by_name_tag, std::uint8_t by_handle_tag) {
    if (by_handle(m)) {
        o.byte(by_handle_tag);
        o.varint(m.room_handle);
        o.varint(m.user_handle);
    } else {
        o.byte(by_name_tag);
        o.string(m.room_id);
        o.string(m.user_id);
    }
}

template <class Out>
void layout(Out& o, server::user_joined const& m) {
    subject(o, m, tag::user_joined, tag::user_joined_by_handle);
    if (by_handle(m)) o.string(m.user_id);  // what the new handle stands for
    o.object(m.meta);
}

template <class Out>
void layout(Out& o, server::user_left const& m) {
    subject(o, m, tag::user_left, tag::user_left_by_handle);
}

template <class Out>
void layout(Out& o, server::cursor_updated const& m) {
    subject(o, m, tag::cursor_updated, tag::cursor_updated_by_handle);
    o.point(m.pos);
    o.integer(m.timestamp);
}

template <class Out>
void layout(Out& o, server::cursor_removed const& m) {
    subject(o, m, tag::cursor_removed, tag::cursor_removed_by_handle);
}

template <class Out>
void layout(Out& o, server::presence_updated const& m) {
    subject(o, m, tag::presence_updated, tag::presence_updated_by_handle);
    o.object(m.patch);
}

template <class Out>
void layout(Out& o, server::heartbeat_ack const&) {
    o.byte(tag::heartbeat_ack);
}

template <class Out>
void layout(Out& o, server::error const& m) {
    o.byte(tag::error);
    o.byte(code_byte(m.code));
    o.string(m.message);
    o.byte(m.room_id ? 1 : 0);
    if (m.room_id) o.string(*m.room_id);
}

template <class Out>
void layout(Out& o, client::join const& m) {
    o.byte(tag::join);
    o.string(m.room_id);
    o.string(m.user_id);
    o.object(m.meta);
    o.byte(m.api_key ? 1 : 0);
    if (m.api_key) o.string(*m.api_key);
}

template <class Out>
void layout(Out& o, client::heartbeat const& m) {
    o.byte(tag::heartbeat);
    o.string(m.room_id);
}

template <class Out>
void layout(Out& o, client::cursor_move const& m) {
    o.byte(tag::cursor_move);
    o.string(m.room_id);
    o.point(m.pos);
}

template <class Out>
void layout(Out& o, client::cursor_leave const& m) {
    o.byte(tag::cursor_leave);
    o.string(m.room_id);
}

template <class Out>
void layout(Out& o, client::presence_update const& m) {
    o.byte(tag::presence_update);
    o.string(m.room_id);
    o.object(m.patch);
}

template <class Out>
void layout(Out& o, client::leave const& m) {
    o.byte(tag::leave);
    o.string(m.room_id);
}

/// One allocation, sized before anything is written; no DOM is built.
template <class Message>
std::string encode(Message const& m) {
    sizer s;
    layout(s, m);
    writer w(s.n);
    layout(w, m);
    return std::move(w).take();
}

}  // namespace flk::detail::binary_wire

namespace flk {

/// The binary Codec: one message per binary frame, in the byte layout of
/// docs/binary-codec.md. A connection gets it by asking for the WebSocket
/// subprotocol `flock.binary.v2`; without one it speaks JSON.
struct binary_codec {
    static constexpr frame_kind kind = frame_kind::binary;

    /// The Sec-WebSocket-Protocol token that selects this codec: version 2
    /// of the layout, the first with handles (a new layout gets a new token).
    static constexpr std::string_view subprotocol = "flock.binary.v2";

    /// One client frame to a message; never throws on bad input. Layout
    /// violations (truncation, bad varints, bad presence bytes, trailing
    /// bytes) are `malformed`; well-framed values that are unacceptable
    /// (invalid UTF-8, a non-finite coordinate, metadata that is not one JSON
    /// object of finite numbers) are `wrong_type`; both name the field.
    decode_result decode(std::string_view bytes, frame_kind received) const {
        if (received != kind) return decode_error{decode_errc::wrong_frame_kind, {}, {}};
        return detail::binary_wire::decode_client(bytes);
    }

    /// The frame payload for `msg`, encoded once per broadcast. A message
    /// about one user goes by handle when it carries both its room's and its
    /// user's handle, and by name otherwise; join:ack carries the handles it
    /// has (0 for none).
    std::string encode(server_message const& msg) const {
        return std::visit([](auto const& m) { return detail::binary_wire::encode(m); }, msg);
    }

    /// A server message back from its bytes; nullopt if it is not one. It is
    /// the frame as it stands: a message by handle comes back with its
    /// handles and empty `roomId`/`userId` (flk::binary_session puts the
    /// names in), and encoding the result gives the same bytes again.
    std::optional<server_message> decode_server(std::string_view bytes) const {
        return detail::binary_wire::decode_server(bytes);
    }

    /// The frame a native client sends for `msg` (for clients, the load
    /// generator and tests; the server never needs it).
    std::string encode_client(client_message const& msg) const {
        return std::visit([](auto const& m) { return detail::binary_wire::encode(m); }, msg);
    }
};

static_assert(Codec<binary_codec>);

/// The client side of `flock.binary.v2`, one per connection (handles belong
/// to the server instance at the other end). It reads server frames as
/// binary_codec::decode_server does, learns the handles that join:ack and
/// user:joined announce, and gives back each message as a JSON client would
/// have received it: ids filled in, handles cleared.
///
/// - join:ack replaces what the session knew of that room; user:joined adds
///   (or moves) one user's handle; user:left, by handle or by name, forgets it.
/// - A frame is refused (nullopt, and the session learns or forgets nothing)
///   when decode_server refuses it, when it uses a room or user handle the
///   session was not told about, when a user:joined gives a handle that
///   stands for another user of the room, or when a join:ack gives one
///   handle to two users. A server keeps each handle to one user, and a
///   client on one connection hears every announcement before the handle is
///   used, so none of these happen with a correct server.
class binary_session {
public:
    std::optional<server_message> decode(std::string_view bytes) {
        auto msg = detail::binary_wire::decode_server(bytes);
        if (msg && !std::visit([this](auto& m) { return resolve(m); }, *msg)) return std::nullopt;
        return msg;
    }

    /// Forgets the handles of a room, once the client has left it (a new
    /// join:ack for the room would replace them anyway).
    void forget(std::string_view room_id) {
        std::erase_if(rooms_, [&](auto const& r) { return r.second.id == room_id; });
    }

    /// Rooms whose handle this session knows.
    std::size_t room_count() const noexcept { return rooms_.size(); }

    /// Users of `room_id` whose handle this session knows.
    std::size_t user_count(std::string_view room_id) const {
        auto const* r = find(room_id);
        return r ? r->users.size() : 0;
    }

private:
    struct room {
        std::string id;
        std::unordered_map<handle, std::string> users;  // user handle -> userId
    };

    room* find(std::string_view room_id) {
        for (auto& [h, r] : rooms_)
            if (r.id == room_id) return &r;
        return nullptr;
    }
    room const* find(std::string_view room_id) const {
        for (auto const& [h, r] : rooms_)
            if (r.id == room_id) return &r;
        return nullptr;
    }

    /// A user has one handle at a time: a new one replaces the old.
    static void drop_user(room& r, std::string_view user_id) {
        std::erase_if(r.users, [&](auto const& u) { return u.second == user_id; });
    }

    /// Puts the ids of a message by handle in place of its handles; false if
    /// either handle is unknown. A message by name is left as it is.
    template <class Message>
    bool name(Message& m) {
        if (m.room_handle == 0) return true;
        auto const r = rooms_.find(m.room_handle);
        if (r == rooms_.end()) return false;
        auto const u = r->second.users.find(m.user_handle);
        if (u == r->second.users.end()) return false;
        m.room_id = r->second.id;
        m.user_id = u->second;
        m.room_handle = m.user_handle = 0;
        return true;
    }

    bool resolve(server::join_ack& m) {
        std::unordered_map<handle, std::string> users;
        for (auto& u : m.users) {
            if (u.user_handle != 0 && !users.try_emplace(u.user_handle, u.user_id).second) return false;
            u.user_handle = 0;
        }
        forget(m.room_id);
        if (m.room_handle != 0) rooms_[m.room_handle] = room{m.room_id, std::move(users)};
        m.room_handle = 0;
        return true;
    }

    bool resolve(server::user_joined& m) {
        if (m.room_handle == 0) {
            if (auto* r = find(m.room_id)) drop_user(*r, m.user_id);  // present now without a handle
            return true;
        }
        auto const it = rooms_.find(m.room_handle);
        if (it == rooms_.end()) return false;
        room& r = it->second;
        if (auto const u = r.users.find(m.user_handle); u != r.users.end() && u->second != m.user_id)
            return false;
        drop_user(r, m.user_id);
        r.users.emplace(m.user_handle, m.user_id);
        m.room_id = r.id;
        m.room_handle = m.user_handle = 0;
        return true;
    }

    bool resolve(server::user_left& m) {
        if (m.room_handle == 0) {
            if (auto* r = find(m.room_id)) drop_user(*r, m.user_id);
            return true;
        }
        auto const user = m.user_handle;
        auto const r = rooms_.find(m.room_handle);
        if (!name(m)) return false;
        r->second.users.erase(user);  // never used again for anyone
        return true;
    }

    bool resolve(server::cursor_updated& m) { return name(m); }
    bool resolve(server::cursor_removed& m) { return name(m); }
    bool resolve(server::presence_updated& m) { return name(m); }
    bool resolve(server::heartbeat_ack&) { return true; }
    bool resolve(server::error&) { return true; }

    std::unordered_map<handle, room> rooms_;  // room handle -> what it stands for
};

}  // namespace flk
