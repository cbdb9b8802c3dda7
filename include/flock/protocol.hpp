// The messages of the Flock wire protocol (see docs/protocol.md), independent
// of how they are spelled on the wire: a Codec turns frames into these types
// and back.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace flk {

/// A pointer position, normalised to 0..1 by clients. Relayed as given.
struct position {
    double x = 0;
    double y = 0;
    friend bool operator==(position const&, position const&) = default;
};

/// User metadata (name, colour, status, ...): always a JSON object.
using metadata = boost::json::object;

/// A small integer a server instance gives a room, or a user in a room, so
/// that the binary encoding (`flock.binary.v2`, docs/binary-codec.md) can send
/// it in place of the name. 0 means "none": the frame spells out the names.
///
/// - A room's handle is unique on its instance and never reused while the
///   instance lives. A user's handle is unique in its room and never reused
///   while the room lives: a user keeps it while present, and one who left
///   (`user:left`) and comes back gets a new one.
/// - Handles are the same for every recipient on one instance, so a broadcast
///   is still encoded once and shared. They mean nothing on another instance:
///   the core sets its own on what it sends, ignores those of remote
///   messages, and publishes none.
/// - Clients learn them from `join:ack` and `user:joined`. The JSON encoding
///   ignores them. A message the core builds has its names as well; one that
///   `binary_codec::decode_server` reads from a handle frame has the handles
///   and empty names, which `flk::binary_session` fills in.
using handle = std::uint64_t;

/// Codes carried by an `error` message. The first four are the reference
/// server's; the others are flock extensions, which existing clients ignore
/// like every error (errors carry no routing they act on).
enum class error_code {
    invalid_api_key,
    room_full,
    rate_limited,
    internal_error,
    invalid_message,  ///< a known message type with a malformed field
    too_many_rooms,   ///< the socket already joined options::max_rooms_per_connection rooms
};

constexpr std::string_view to_string(error_code c) noexcept {
    switch (c) {
    case error_code::invalid_api_key: return "INVALID_API_KEY";
    case error_code::room_full: return "ROOM_FULL";
    case error_code::rate_limited: return "RATE_LIMITED";
    case error_code::internal_error: return "INTERNAL_ERROR";
    case error_code::invalid_message: return "INVALID_MESSAGE";
    case error_code::too_many_rooms: return "TOO_MANY_ROOMS";
    }
    return "INTERNAL_ERROR";
}

constexpr std::optional<error_code> error_code_from_string(std::string_view s) noexcept {
    for (auto c : {error_code::invalid_api_key, error_code::room_full, error_code::rate_limited,
                   error_code::internal_error, error_code::invalid_message,
                   error_code::too_many_rooms})
        if (to_string(c) == s) return c;
    return std::nullopt;
}

/// WebSocket close codes the server uses.
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;       ///< server shutting down
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t policy_violation = 1008;  ///< bad API key, room full, rate limited
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t try_again_later = 1013;  ///< send queue overflow (slow consumer)
inline constexpr std::uint16_t replaced = 4000;          ///< same user joined on a newer socket
inline constexpr std::uint16_t presence_expired = 4001;  ///< no sign of life for the presence TTL
inline constexpr std::uint16_t join_timeout = 4002;      ///< no join within FLOCK_JOIN_TIMEOUT_MS of the upgrade
}  // namespace close_code

/// Messages a client sends. Every one names its room.
namespace client {
struct join {
    std::string room_id;
    std::string user_id;
    metadata meta;
    std::optional<std::string> api_key;
    friend bool operator==(join const&, join const&) = default;
};
struct heartbeat {
    std::string room_id;
    friend bool operator==(heartbeat const&, heartbeat const&) = default;
};
struct cursor_move {
    std::string room_id;
    position pos;
    friend bool operator==(cursor_move const&, cursor_move const&) = default;
};
struct cursor_leave {
    std::string room_id;
    friend bool operator==(cursor_leave const&, cursor_leave const&) = default;
};
struct presence_update {
    std::string room_id;
    metadata patch;
    friend bool operator==(presence_update const&, presence_update const&) = default;
};
struct leave {
    std::string room_id;
    friend bool operator==(leave const&, leave const&) = default;
};
}  // namespace client

using client_message = std::variant<client::join, client::heartbeat, client::cursor_move,
                                    client::cursor_leave, client::presence_update, client::leave>;

/// The room a client message is about.
inline std::string const& room_of(client_message const& m) {
    return std::visit([](auto const& v) -> std::string const& { return v.room_id; }, m);
}

/// Messages the server sends. Those about a room carry the handles (see
/// `handle`) of the room and of the user concerned when the sender has them.
namespace server {
/// One entry of a join:ack snapshot.
struct member {
    std::string user_id;
    metadata meta;
    std::optional<position> cursor;
    handle user_handle = 0;
    friend bool operator==(member const&, member const&) = default;
};
struct join_ack {
    std::string room_id;
    std::vector<member> users;
    handle room_handle = 0;
    friend bool operator==(join_ack const&, join_ack const&) = default;
};
struct user_joined {
    std::string room_id;
    std::string user_id;
    metadata meta;
    handle room_handle = 0;
    handle user_handle = 0;
    friend bool operator==(user_joined const&, user_joined const&) = default;
};
struct user_left {
    std::string room_id;
    std::string user_id;
    handle room_handle = 0;
    handle user_handle = 0;
    friend bool operator==(user_left const&, user_left const&) = default;
};
struct cursor_updated {
    std::string room_id;
    std::string user_id;
    position pos;
    std::int64_t timestamp = 0;  ///< ms since the Unix epoch
    handle room_handle = 0;
    handle user_handle = 0;
    friend bool operator==(cursor_updated const&, cursor_updated const&) = default;
};
struct cursor_removed {
    std::string room_id;
    std::string user_id;
    handle room_handle = 0;
    handle user_handle = 0;
    friend bool operator==(cursor_removed const&, cursor_removed const&) = default;
};
struct presence_updated {
    std::string room_id;
    std::string user_id;
    metadata patch;  ///< only the patch, not the merged object
    handle room_handle = 0;
    handle user_handle = 0;
    friend bool operator==(presence_updated const&, presence_updated const&) = default;
};
struct heartbeat_ack {
    friend bool operator==(heartbeat_ack const&, heartbeat_ack const&) = default;
};
struct error {
    error_code code = error_code::internal_error;
    std::string message;
    std::optional<std::string> room_id;  ///< an extension; clients ignore it
    friend bool operator==(error const&, error const&) = default;
};
}  // namespace server

using server_message =
    std::variant<server::join_ack, server::user_joined, server::user_left, server::cursor_updated,
                 server::cursor_removed, server::presence_updated, server::heartbeat_ack,
                 server::error>;

/// Whether a WebSocket frame is text or binary.
enum class frame_kind : std::uint8_t { text, binary };

}  // namespace flk
