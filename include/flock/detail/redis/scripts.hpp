// The Lua scripts of the Redis broker. Each runs atomically in Redis, which is
// what makes capacity cluster-wide, snapshots consistent and ownership checks
// race-free. They touch only the keys of PROTOCOL.md's schema (plus one extra
// field, `instance`, in the presence hash: the owner, which Node.js instances
// ignore since they read `metadata` only).
//
// Replies stay two levels deep at most (hiredis 0.14 nests up to 7).
#pragma once

#include <openssl/sha.h>

#include <array>
#include <cstdio>
#include <string>
#include <string_view>

namespace flk::detail::redis {

struct script {
    std::string_view name;
    std::string_view source;
    std::string sha1;  ///< hex, as EVALSHA wants it

    script(std::string_view n, std::string_view src) : name(n), source(src), sha1(hex_sha1(src)) {}

    static std::string hex_sha1(std::string_view s) {
        std::array<unsigned char, SHA_DIGEST_LENGTH> d{};
        SHA1(reinterpret_cast<unsigned char const*>(s.data()), s.size(), d.data());
        std::string out;
        out.reserve(2 * d.size());
        constexpr char digits[] = "0123456789abcdef";
        for (unsigned char c : d) {
            out += digits[c >> 4];
            out += digits[c & 15];
        }
        return out;
    }
};

namespace lua {

/// Admits a user against the room capacity and answers with the snapshot of
/// the others, in one atomic step.
///   KEYS: members set, joiner's presence key
///   ARGV: presence prefix, cursor prefix, user, capacity, ttl, metadata,
///         joinedAt, instance
///   -> {0} room full, or {1, id, metadata, x, y, ...} (x, y '' without cursor)
/// A user already present (in the set with a live presence key) is always
/// admitted; stale set entries (presence gone) are removed and not counted.
inline constexpr std::string_view join = R"lua(
local members, pkey = KEYS[1], KEYS[2]
local pprefix, cprefix, user = ARGV[1], ARGV[2], ARGV[3]
local capacity, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local present, live, out = false, 0, {1}
for _, id in ipairs(redis.call('SMEMBERS', members)) do
  if redis.call('EXISTS', pprefix .. id) == 1 then
    if id == user then
      present = true
    else
      live = live + 1
      local c = redis.call('HMGET', cprefix .. id, 'x', 'y')
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', pprefix .. id, 'metadata') or '{}'
      out[#out + 1] = c[1] or ''
      out[#out + 1] = c[2] or ''
    end
  elseif id ~= user then
    redis.call('SREM', members, id)
  end
end
if not present and live >= capacity then return {0} end
redis.call('HSET', pkey, 'metadata', ARGV[6], 'joinedAt', ARGV[7], 'instance', ARGV[8])
redis.call('EXPIRE', pkey, ttl)
redis.call('SADD', members, user)
return out
)lua";

/// Removes a user's presence, cursor and membership, unless the presence
/// now belongs to someone else: another flock instance (its `instance`
/// field) or a Node.js instance (no `instance` field, another `joinedAt`).
///   KEYS: members set, presence key, cursor key
///   ARGV: user, instance, joinedAt ('' when unknown)
///   -> 1 removed, 0 left to its new owner
inline constexpr std::string_view leave = R"lua(
local f = redis.call('HMGET', KEYS[2], 'instance', 'joinedAt')
if f[1] then
  if f[1] ~= ARGV[2] then return 0 end
elseif f[2] and f[2] ~= ARGV[3] then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
)lua";

/// Replaces the stored metadata, only while the presence exists (an evicted
/// user must not come back half present, without set membership or TTL).
///   KEYS: presence key   ARGV: metadata, ttl   -> 1 written, 0 absent
inline constexpr std::string_view set_metadata = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'metadata', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
)lua";

/// Publishes a user:left envelope unless the presence belongs to another
/// flock instance: the user re-joined there, this is a stale socket leaving.
///   KEYS: presence key   ARGV: channel, envelope, instance
///   -> receivers, or -1 when suppressed
inline constexpr std::string_view publish_left = R"lua(
local owner = redis.call('HGET', KEYS[1], 'instance')
if owner and owner ~= ARGV[3] then return -1 end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
)lua";

/// publish_left on a Redis Cluster: the room's sharded channel, which
/// shares the presence key's slot (keys.hpp, key_schema).
inline constexpr std::string_view publish_left_sharded = R"lua(
local owner = redis.call('HGET', KEYS[1], 'instance')
if owner and owner ~= ARGV[3] then return -1 end
return redis.call('SPUBLISH', ARGV[1], ARGV[2])
)lua";

/// Writes back the presence (and last cursor) of a user still connected to
/// this instance, after Redis came back, unless another instance owns it.
///   KEYS: members set, presence key, cursor key
///   ARGV: user, metadata, joinedAt, instance, ttl, x, y, timestamp (x '' = no cursor)
///   -> 1 written, 0 owned elsewhere
inline constexpr std::string_view restore = R"lua(
local f = redis.call('HMGET', KEYS[2], 'instance', 'joinedAt')
if f[1] then
  if f[1] ~= ARGV[4] then return 0 end
elseif f[2] and f[2] ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[2], 'metadata', ARGV[2], 'joinedAt', ARGV[3], 'instance', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[3], 'x', ARGV[6], 'y', ARGV[7], 'timestamp', ARGV[8])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
return 1
)lua";

/// Writes the cursors of many users in one call (one flush of an instance).
/// A hash that did not exist gets its TTL; an existing one keeps its own,
/// which signs of life refresh (broker touch), so a write is one HSET.
///   KEYS: cursor keys   ARGV: ttl, then x, y, timestamp per key
///   -> the number of hashes created
inline constexpr std::string_view cursors = R"lua(
local ttl, created = ARGV[1], 0
for i = 1, #KEYS do
  local a = 3 * i - 1
  if redis.call('HSET', KEYS[i], 'x', ARGV[a], 'y', ARGV[a + 1], 'timestamp', ARGV[a + 2]) > 0 then
    redis.call('EXPIRE', KEYS[i], ttl)
    created = created + 1
  end
end
return created
)lua";

/// The eviction safety net, per room. Members whose presence key is gone are
/// removed from the set and reported; so are the users this instance knows
/// in the room (passed in) whose presence key is gone, wherever they are.
/// Live members this instance does not know are returned with metadata and
/// cursor, to heal a view that missed a user:joined.
///   KEYS: members set   ARGV: presence prefix, cursor prefix, known users...
///   -> {{gone ids...}, {id, metadata, x, y, ...}}
inline constexpr std::string_view sweep = R"lua(
local pprefix, cprefix = ARGV[1], ARGV[2]
local gone, fresh, known, live = {}, {}, {}, {}
for i = 3, #ARGV do known[ARGV[i]] = true end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', pprefix .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
    if not known[id] then gone[#gone + 1] = id end
  elseif known[id] then
    live[id] = true
  else
    local c = redis.call('HMGET', cprefix .. id, 'x', 'y')
    fresh[#fresh + 1] = id
    fresh[#fresh + 1] = redis.call('HGET', pprefix .. id, 'metadata') or '{}'
    fresh[#fresh + 1] = c[1] or ''
    fresh[#fresh + 1] = c[2] or ''
  end
end
for i = 3, #ARGV do
  -- A known user found live in the set above is not looked up twice.
  if not live[ARGV[i]] and redis.call('EXISTS', pprefix .. ARGV[i]) == 0 then gone[#gone + 1] = ARGV[i] end
end
return {gone, fresh}
)lua";

}  // namespace lua

/// The scripts, with their SHA1s computed once.
struct script_set {
    script join{"join", lua::join};
    script leave{"leave", lua::leave};
    script set_metadata{"set_metadata", lua::set_metadata};
    script publish_left{"publish_left", lua::publish_left};
    script restore{"restore", lua::restore};
    script sweep{"sweep", lua::sweep};
    script cursors{"cursors", lua::cursors};
    /// Cluster mode only (loaded on each master by the cluster client).
    script publish_left_sharded{"publish_left_sharded", lua::publish_left_sharded};

    template <class F>
    void for_each(F&& f) const {
        for (auto const* s : {&join, &leave, &set_metadata, &publish_left, &restore, &sweep, &cursors}) f(*s);
    }
};

}  // namespace flk::detail::redis
