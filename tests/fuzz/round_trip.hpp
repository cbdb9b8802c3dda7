// Shared by the codec fuzz targets: invariant checks and a JSON spelling of
// client messages (json_codec decodes them but, being a server codec, has no
// encoder for them).
#pragma once

#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/json_writer.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <limits>
#include <cstdlib>
#include <string>
#include <variant>

namespace flk::fuzz {

[[noreturn]] inline void fail(char const* what, char const* file, int line) {
    std::fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    std::abort();
}
#define CHECK(cond) \
    do {            \
        if (!(cond)) ::flk::fuzz::fail(#cond, __FILE__, __LINE__); \
    } while (0)

/// Doubles within a few units in the last place. Boost.JSON 1.81 parses
/// numbers without correct rounding (there is no number_precision::precise
/// before 1.83), so the shortest spelling of a double written by flock or by
/// Boost's serializer may read back one ULP off: docs/fuzzing.md.
inline bool near(double a, double b) {
    if (a == b) return true;
    if (std::isnan(a) || std::isnan(b) || std::signbit(a) != std::signbit(b)) return false;
    // Distance in units in the last place: for doubles of one sign the bit
    // patterns are ordered, so this holds for subnormals too, where a
    // relative epsilon is far smaller than one ULP.
    auto const ia = std::bit_cast<std::uint64_t>(a);
    auto const ib = std::bit_cast<std::uint64_t>(b);
    return (ia > ib ? ia - ib : ib - ia) <= 4;
}

inline bool near(boost::json::value const& a, boost::json::value const& b);

inline bool near(boost::json::object const& a, boost::json::object const& b) {
    if (a.size() != b.size()) return false;
    auto j = b.begin();
    for (auto i = a.begin(); i != a.end(); ++i, ++j)
        if (i->key() != j->key() || !near(i->value(), j->value())) return false;
    return true;
}

inline bool near(boost::json::value const& a, boost::json::value const& b) {
    namespace bj = boost::json;
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
    case bj::kind::double_: return near(a.get_double(), b.get_double());
    case bj::kind::object: return near(a.get_object(), b.get_object());
    case bj::kind::array: {
        auto const& x = a.get_array();
        auto const& y = b.get_array();
        if (x.size() != y.size()) return false;
        for (std::size_t i = 0; i < x.size(); ++i)
            if (!near(x[i], y[i])) return false;
        return true;
    }
    default: return a == b;
    }
}

inline bool near(position a, position b) { return near(a.x, b.x) && near(a.y, b.y); }

inline bool near(server::member const& a, server::member const& b) {
    return a.user_id == b.user_id && near(a.meta, b.meta) && a.user_handle == b.user_handle &&
           a.cursor.has_value() == b.cursor.has_value() && (!a.cursor || near(*a.cursor, *b.cursor));
}

/// Field by field, numbers compared with near(), everything else exactly.
template <class M>
bool near_message(M const& a, M const& b) {
    bool ok = true;
    if constexpr (requires { a.room_id; }) ok = ok && a.room_id == b.room_id;
    if constexpr (requires { a.user_id; }) ok = ok && a.user_id == b.user_id;
    if constexpr (requires { a.api_key; }) ok = ok && a.api_key == b.api_key;
    if constexpr (requires { a.meta; }) ok = ok && near(a.meta, b.meta);
    if constexpr (requires { a.patch; }) ok = ok && near(a.patch, b.patch);
    if constexpr (requires { a.pos; }) ok = ok && near(a.pos, b.pos);
    if constexpr (requires { a.timestamp; }) ok = ok && a.timestamp == b.timestamp;
    if constexpr (requires { a.room_handle; }) ok = ok && a.room_handle == b.room_handle;
    if constexpr (requires { a.user_handle; }) ok = ok && a.user_handle == b.user_handle;
    if constexpr (requires { a.code; }) ok = ok && a.code == b.code && a.message == b.message;
    if constexpr (requires { a.users; }) {
        ok = ok && a.users.size() == b.users.size();
        for (std::size_t i = 0; ok && i < a.users.size(); ++i) ok = near(a.users[i], b.users[i]);
    }
    return ok;
}

template <class... T>
bool near(std::variant<T...> const& a, std::variant<T...> const& b) {
    return a.index() == b.index() &&
           std::visit([&](auto const& x) { return near_message(x, std::get<std::decay_t<decltype(x)>>(b)); }, a);
}

/// A client message as a browser client writes it (docs/protocol.md).
inline std::string to_json(client_message const& msg) {
    using detail::write_double;
    using detail::write_object;
    using detail::write_string;
    std::string out = R"({"type":)";
    std::visit(
        [&](auto const& m) {
            using M = std::decay_t<decltype(m)>;
            char const* type = std::is_same_v<M, client::join>              ? "join"
                               : std::is_same_v<M, client::heartbeat>       ? "heartbeat"
                               : std::is_same_v<M, client::cursor_move>     ? "cursor:move"
                               : std::is_same_v<M, client::cursor_leave>    ? "cursor:leave"
                               : std::is_same_v<M, client::presence_update> ? "presence:update"
                                                                            : "leave";
            write_string(out, type);
            out += R"(,"roomId":)";
            write_string(out, m.room_id);
            if constexpr (std::is_same_v<M, client::join>) {
                out += R"(,"userId":)";
                write_string(out, m.user_id);
                out += R"(,"metadata":)";
                write_object(out, m.meta);
                if (m.api_key) {
                    out += R"(,"apiKey":)";
                    write_string(out, *m.api_key);
                }
            } else if constexpr (std::is_same_v<M, client::cursor_move>) {
                out += R"(,"position":{"x":)";
                write_double(out, m.pos.x);
                out += R"(,"y":)";
                write_double(out, m.pos.y);
                out += '}';
            } else if constexpr (std::is_same_v<M, client::presence_update>) {
                out += R"(,"metadata":)";
                write_object(out, m.patch);
            }
        },
        msg);
    out += '}';
    return out;
}

/// A decoded client message survives both codecs' spellings unchanged.
inline void check_client_round_trip(client_message const& m, json_codec const& json, binary_codec const& binary) {
    auto const text = to_json(m);
    auto const again = json.decode(text, frame_kind::text);
    CHECK(again.has_value());
    CHECK(near(*again, m));  // numbers: see near()
    auto const bytes = binary.encode_client(m);
    auto const back = binary.decode(bytes, frame_kind::binary);
    CHECK(back.has_value());
    CHECK(near(*back, m));  // metadata numbers go through JSON text in binary too
    if (*back == m) CHECK(binary.encode_client(*back) == bytes);
}

/// A decoded server message encodes to a frame that decodes to an equal
/// message, and whose encoding is the same frame again (the first encoding
/// normalises the spelling; from then on it is a fixed point).
template <class Codec>
void check_server_round_trip(server_message const& m, Codec const& codec) {
    auto const bytes = codec.encode(m);
    auto const back = codec.decode_server(bytes);
    CHECK(back.has_value());
    CHECK(near(*back, m));
    if (*back == m) CHECK(codec.encode(*back) == bytes);  // a fixed point unless a number moved
}

}  // namespace flk::fuzz
