// The Redis key schema of PROTOCOL.md, shared with the reference (Node.js)
// servers, and the parsing of expired-key notifications. No I/O.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk::detail::redis {

inline constexpr std::string_view presence_prefix = "flock:presence:";
inline constexpr std::string_view cursor_prefix = "flock:cursor:";
inline constexpr std::string_view room_prefix = "flock:room:";
inline constexpr std::string_view members_suffix = ":members";
inline constexpr std::string_view channel_prefix = "flock:broadcast:";
/// Not in PROTOCOL.md's schema: flock instances only (FLOCK_REDIS_BATCH_MS).
inline constexpr std::string_view batch_channel_prefix = "flock:batch:";

inline std::string cat(std::initializer_list<std::string_view> parts) {
    std::size_t n = 0;
    for (auto p : parts) n += p.size();
    std::string s;
    s.reserve(n);
    for (auto p : parts) s += p;
    return s;
}

/// `flock:presence:{room}:{user}`: hash metadata, joinedAt (+ instance, ours).
inline std::string presence_key(std::string_view room, std::string_view user) {
    return cat({presence_prefix, room, ":", user});
}
/// `flock:presence:{room}:`: a user id appended gives the presence key.
inline std::string presence_key_prefix(std::string_view room) { return cat({presence_prefix, room, ":"}); }
/// `flock:cursor:{room}:{user}`: hash x, y, timestamp.
inline std::string cursor_key(std::string_view room, std::string_view user) {
    return cat({cursor_prefix, room, ":", user});
}
inline std::string cursor_key_prefix(std::string_view room) { return cat({cursor_prefix, room, ":"}); }
/// `flock:room:{room}:members`: set of user ids.
inline std::string members_key(std::string_view room) { return cat({room_prefix, room, members_suffix}); }
/// `flock:broadcast:{room}`: the room's pub/sub channel.
inline std::string channel(std::string_view room) { return cat({channel_prefix, room}); }
/// `flock:batch:{room}`: the room's batched broadcasts, published by flock
/// instances with FLOCK_REDIS_BATCH_MS and read by every flock instance.
/// Reference (Node.js) instances never subscribe to it, so a batch never
/// reaches one (docs/scaling.md).
inline std::string batch_channel(std::string_view room) { return cat({batch_channel_prefix, room}); }
/// `__keyevent@{db}__:expired`
inline std::string expired_channel(int db) { return "__keyevent@" + std::to_string(db) + "__:expired"; }

/// The room of a broadcast channel, if it is one.
inline std::optional<std::string_view> room_of_channel(std::string_view ch) {
    if (!ch.starts_with(channel_prefix)) return std::nullopt;
    return ch.substr(channel_prefix.size());
}

/// The room of a batch channel, if it is one.
inline std::optional<std::string_view> room_of_batch_channel(std::string_view ch) {
    if (!ch.starts_with(batch_channel_prefix)) return std::nullopt;
    return ch.substr(batch_channel_prefix.size());
}

/// Every (room, user) an expired key `flock:presence:{room}:{user}` can name
/// among the rooms `is_room` accepts. Room and user ids may both contain ':',
/// so the key is never split at one fixed ':' (the reference's bug): each ':'
/// is tried as the separator and kept when the part before it is a room this
/// instance follows. A key can name several (room, user) pairs when ids are
/// crafted to collide ("a" + "b:c" and "a:b" + "c"); they share that one key,
/// so each of them is truly gone.
template <class IsRoom>
std::vector<std::pair<std::string_view, std::string_view>> parse_presence_key(std::string_view key,
                                                                             IsRoom&& is_room) {
    std::vector<std::pair<std::string_view, std::string_view>> out;
    if (!key.starts_with(presence_prefix)) return out;
    auto rest = key.substr(presence_prefix.size());
    for (auto p = rest.find(':'); p != std::string_view::npos; p = rest.find(':', p + 1)) {
        auto room = rest.substr(0, p);
        if (is_room(room)) out.emplace_back(room, rest.substr(p + 1));
    }
    return out;
}

}  // namespace flk::detail::redis
