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

/// The key and channel names of one broker: PROTOCOL.md's schema on a
/// single Redis (or Sentinel), or the same names with the room as a hash tag
/// on a Redis Cluster, `flock:presence:{room}:user`, so that a room's keys,
/// its scripts and its sharded channel live in one slot. The original names
/// cannot work across slots; a cluster is therefore shared by flock
/// instances only (docs/scaling.md).
///
/// Redis hashes what lies between the first '{' and the first '}' after it,
/// and the whole key when that is empty. A room id starting with '}' would
/// give an empty tag, so such a room (and, to keep the names one-to-one, one
/// starting with '\') is written with a leading '\' inside the braces.
class key_schema {
public:
    key_schema() = default;
    explicit key_schema(bool tagged) : tagged_(tagged) {}

    bool tagged() const noexcept { return tagged_; }

    std::string presence(std::string_view room, std::string_view user) const {
        return cat({presence_prefix, part(room), ":", user});
    }
    std::string presence_prefix_of(std::string_view room) const { return cat({presence_prefix, part(room), ":"}); }
    std::string cursor(std::string_view room, std::string_view user) const {
        return cat({cursor_prefix, part(room), ":", user});
    }
    std::string cursor_prefix_of(std::string_view room) const { return cat({cursor_prefix, part(room), ":"}); }
    std::string members(std::string_view room) const { return cat({room_prefix, part(room), members_suffix}); }
    std::string channel(std::string_view room) const { return cat({channel_prefix, part(room)}); }
    std::string batch_channel(std::string_view room) const { return cat({batch_channel_prefix, part(room)}); }

    std::optional<std::string_view> room_of_channel(std::string_view ch) const {
        return room_after(ch, channel_prefix);
    }
    std::optional<std::string_view> room_of_batch_channel(std::string_view ch) const {
        return room_after(ch, batch_channel_prefix);
    }
    /// The room of a member set key `flock:room:{room}:members` of this
    /// schema (the admin's SCAN), if it is one.
    std::optional<std::string_view> room_of_members(std::string_view key) const {
        if (!key.ends_with(members_suffix)) return std::nullopt;
        return room_after(key.substr(0, key.size() - members_suffix.size()), room_prefix);
    }

    /// As parse_presence_key() below, for this schema.
    template <class IsRoom>
    std::vector<std::pair<std::string_view, std::string_view>> parse_presence(std::string_view key,
                                                                              IsRoom&& is_room) const {
        if (!tagged_) return parse_presence_key(key, std::forward<IsRoom>(is_room));
        std::vector<std::pair<std::string_view, std::string_view>> out;
        if (!key.starts_with(presence_prefix)) return out;
        auto rest = key.substr(presence_prefix.size());
        if (!rest.starts_with('{')) return out;
        for (auto p = rest.find("}:"); p != std::string_view::npos; p = rest.find("}:", p + 1)) {
            auto room = unescape(rest.substr(1, p - 1));
            if (room && is_room(*room)) out.emplace_back(*room, rest.substr(p + 2));
        }
        return out;
    }

private:
    std::string part(std::string_view room) const {
        if (!tagged_) return std::string(room);
        bool escape = !room.empty() && (room.front() == '}' || room.front() == '\\');
        return cat({"{", escape ? "\\" : "", room, "}"});
    }
    static std::optional<std::string_view> unescape(std::string_view t) {
        if (t.starts_with('\\')) {
            t.remove_prefix(1);
            if (!t.starts_with('}') && !t.starts_with('\\')) return std::nullopt;  // never written so
        } else if (t.starts_with('}')) {
            return std::nullopt;
        }
        return t;
    }
    std::optional<std::string_view> room_after(std::string_view ch, std::string_view prefix) const {
        if (!ch.starts_with(prefix)) return std::nullopt;
        auto rest = ch.substr(prefix.size());
        if (!tagged_) return rest;
        if (rest.size() < 2 || rest.front() != '{' || rest.back() != '}') return std::nullopt;
        return unescape(rest.substr(1, rest.size() - 2));
    }

    bool tagged_ = false;
};

}  // namespace flk::detail::redis
