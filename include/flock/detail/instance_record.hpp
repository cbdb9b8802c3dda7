// The record each flock process in Redis mode keeps in Redis about itself
// (flk::instance_registry writes it, the admin dashboard reads it), as JSON.
// No I/O.
//
//   flock:instance:{processId}   string, the record below; PX = the registry's TTL
//   flock:instances              set of the processIds that wrote one (an index:
//                                readers SSCAN it, never the keyspace, and
//                                SREM the ids whose record has expired)
//
// Neither is in PROTOCOL.md's schema: reference (Node.js) servers never read
// or write them.
#pragma once

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flk::detail {

inline constexpr std::string_view instance_key_prefix = "flock:instance:";
inline constexpr std::string_view instances_index_key = "flock:instances";

inline std::string instance_key(std::string_view process_id) {
    return std::string(instance_key_prefix) + std::string(process_id);
}

struct instance_record {
    struct shard {
        std::string instance;  ///< the shard's Redis instanceId (the `instance` field of its presence hashes)
        std::uint64_t connections = 0;
        std::uint64_t rooms = 0;
        bool up = false;       ///< its broker's Redis connection
        std::string error;     ///< why it is down
    };
    std::string id;       ///< the process's own random id (the key's suffix)
    std::string name;     ///< host:port, as the operator knows it
    std::string version;  ///< flk::version
    std::int64_t started_at = 0;  ///< ms since the epoch, the process's clock
    std::int64_t updated_at = 0;  ///< ms since the epoch: when this record was written
    std::int64_t refresh_ms = 0;  ///< how often it is rewritten
    std::optional<std::int64_t> rtt_us;  ///< the round trip of the previous refresh's SET
    std::vector<shard> shards;

    std::uint64_t connections() const {
        std::uint64_t n = 0;
        for (auto const& s : shards) n += s.connections;
        return n;
    }
    std::uint64_t rooms() const {
        std::uint64_t n = 0;
        for (auto const& s : shards) n += s.rooms;
        return n;
    }
    std::size_t shards_up() const {
        std::size_t n = 0;
        for (auto const& s : shards) n += s.up ? 1 : 0;
        return n;
    }
    /// The index of the shard whose instanceId is `instance`, if it is one of ours.
    std::optional<std::size_t> shard_of(std::string_view instance) const {
        for (std::size_t i = 0; i < shards.size(); ++i)
            if (!instance.empty() && shards[i].instance == instance) return i;
        return std::nullopt;
    }
};

inline std::string to_json(instance_record const& r) {
    boost::json::array shards;
    for (auto const& s : r.shards)
        shards.push_back(boost::json::object{{"instanceId", s.instance},
                                             {"connections", s.connections},
                                             {"rooms", s.rooms},
                                             {"up", s.up},
                                             {"error", s.error}});
    boost::json::object o{{"id", r.id},
                          {"name", r.name},
                          {"version", r.version},
                          {"startedAt", r.started_at},
                          {"updatedAt", r.updated_at},
                          {"refreshMs", r.refresh_ms},
                          {"shards", std::move(shards)}};
    if (r.rtt_us) o["rttUs"] = *r.rtt_us;
    return boost::json::serialize(o);
}

/// The record in `text`, or nothing when it is not one (written by another
/// version, or by something else). Unknown fields are ignored.
inline std::optional<instance_record> parse_instance_record(std::string_view text) {
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec || !v.is_object()) return std::nullopt;
    auto const& o = v.get_object();
    auto str = [](boost::json::object const& ob, char const* k) -> std::string {
        auto const* p = ob.if_contains(k);
        return p && p->is_string() ? std::string(p->get_string()) : std::string();
    };
    auto num = [](boost::json::object const& ob, char const* k) -> std::optional<std::int64_t> {
        auto const* p = ob.if_contains(k);
        if (p && p->is_int64()) return p->get_int64();
        if (p && p->is_uint64() && p->get_uint64() <= std::uint64_t(INT64_MAX)) return std::int64_t(p->get_uint64());
        return std::nullopt;
    };
    instance_record r;
    r.id = str(o, "id");
    if (r.id.empty()) return std::nullopt;
    r.name = str(o, "name");
    r.version = str(o, "version");
    r.started_at = num(o, "startedAt").value_or(0);
    r.updated_at = num(o, "updatedAt").value_or(0);
    r.refresh_ms = num(o, "refreshMs").value_or(0);
    r.rtt_us = num(o, "rttUs");
    if (auto const* s = o.if_contains("shards"); s && s->is_array()) {
        for (auto const& e : s->get_array()) {
            if (!e.is_object()) continue;
            auto const& so = e.get_object();
            instance_record::shard sh;
            sh.instance = str(so, "instanceId");
            sh.connections = std::uint64_t(std::max<std::int64_t>(0, num(so, "connections").value_or(0)));
            sh.rooms = std::uint64_t(std::max<std::int64_t>(0, num(so, "rooms").value_or(0)));
            auto const* up = so.if_contains("up");
            sh.up = up && up->is_bool() && up->get_bool();
            sh.error = str(so, "error");
            r.shards.push_back(std::move(sh));
        }
    }
    return r;
}

}  // namespace flk::detail
