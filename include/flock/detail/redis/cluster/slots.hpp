// Redis Cluster without I/O: the hash slot of a key (CRC16 with hash tags),
// the slot map read from a CLUSTER SHARDS (7.0+) or CLUSTER SLOTS reply,
// MOVED/ASK redirections, and the routing decision (which master serves a
// key or a sharded channel). Everything here is a pure function of its
// inputs, unit-tested in tests/unit/redis_cluster_slots_test.cpp; the I/O
// around it is cluster/client.hpp.
//
// Reference: https://redis.io/docs/reference/cluster-spec/ (key distribution
// model, hash tags, redirection and resharding).
#pragma once

#include <flock/detail/redis/resp.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flk::detail::redis::cluster {

inline constexpr std::size_t slot_count = 16384;

/// CRC16-CCITT (XModem): polynomial 0x1021, initial value 0, no reflection.
/// The checksum Redis Cluster hashes keys with ("123456789" -> 0x31C3).
constexpr std::uint16_t crc16(std::string_view data) noexcept {
    std::uint16_t crc = 0;
    for (char ch : data) {
        crc = static_cast<std::uint16_t>(crc ^ (static_cast<std::uint16_t>(static_cast<unsigned char>(ch)) << 8));
        for (int i = 0; i < 8; ++i)
            crc = (crc & 0x8000) ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
    }
    return crc;
}

/// The part of `key` that is hashed: the text between the first `{` and the
/// first `}` after it, when that text is not empty; otherwise the whole key.
/// (`{user1000}.following` -> `user1000`; `foo{}{bar}` -> the whole key;
/// `foo{{bar}}` -> `{bar`; `foo{bar}{zap}` -> `bar`.)
constexpr std::string_view hash_tag(std::string_view key) noexcept {
    auto open = key.find('{');
    if (open == std::string_view::npos) return key;
    auto close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return key;
    return key.substr(open + 1, close - open - 1);
}

/// The hash slot (0..16383) of a key, or of a sharded pub/sub channel.
constexpr std::uint16_t key_slot(std::string_view key) noexcept {
    return static_cast<std::uint16_t>(crc16(hash_tag(key)) & (slot_count - 1));
}

/// A cluster node as clients reach it.
struct node_address {
    std::string host;
    std::uint16_t port = 0;
    std::string id;  ///< node id (40 hex), empty when the reply did not say

    /// "host:port" ("[::1]:port" for an IPv6 address): the key of a node.
    std::string name() const {
        std::string s;
        if (host.find(':') != std::string::npos)
            s = "[" + host + "]";
        else
            s = host;
        return s + ":" + std::to_string(port);
    }
    bool same_endpoint(node_address const& o) const noexcept { return host == o.host && port == o.port; }
};

/// A MOVED or ASK error reply.
struct redirect {
    enum class kind { moved, ask };
    kind type = kind::moved;
    std::uint16_t slot = 0;
    /// Where to go. An empty host (Redis 7 says `:port` when the node's
    /// endpoint is unknown) means the host of the node that answered.
    node_address target;
};

namespace slots_detail {

inline std::optional<std::uint32_t> to_uint(std::string_view s) noexcept {
    std::uint32_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

/// An integer reply, or a string holding a decimal integer.
inline std::optional<long long> as_int(reply const& r) noexcept {
    if (r.type == reply::kind::integer) return r.integer;
    if (r.is_string()) {
        if (auto v = to_uint(r.str)) return *v;
    }
    return std::nullopt;
}

/// `host:port`, `[v6]:port`, `v6:port` (the last colon separates) or `:port`.
inline std::optional<node_address> parse_endpoint(std::string_view s) {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto port = to_uint(s.substr(colon + 1));
    if (!port || *port == 0 || *port > 65535) return std::nullopt;
    auto host = s.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    node_address a;
    a.host = std::string(host);
    a.port = static_cast<std::uint16_t>(*port);
    return a;
}

}  // namespace slots_detail

/// The redirection in an error reply, or nothing when it is not
/// `MOVED <slot> <endpoint>` or `ASK <slot> <endpoint>`.
inline std::optional<redirect> parse_redirect(reply const& r) {
    if (r.type != reply::kind::error) return std::nullopt;
    std::string_view s = r.str;
    redirect out;
    if (s.starts_with("MOVED "))
        out.type = redirect::kind::moved, s.remove_prefix(6);
    else if (s.starts_with("ASK "))
        out.type = redirect::kind::ask, s.remove_prefix(4);
    else
        return std::nullopt;
    auto space = s.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    auto slot = slots_detail::to_uint(s.substr(0, space));
    if (!slot || *slot >= slot_count) return std::nullopt;
    auto endpoint = slots_detail::parse_endpoint(s.substr(space + 1));
    if (!endpoint) return std::nullopt;
    out.slot = static_cast<std::uint16_t>(*slot);
    out.target = std::move(*endpoint);
    return out;
}

/// Which master serves each of the 16384 slots, and which replicas it has.
class slot_map {
public:
    struct shard {
        node_address master;
        std::vector<node_address> replicas;
    };

    slot_map() { owner_.fill(none); }

    /// From a CLUSTER SHARDS reply (Redis 7.0+): per shard a map (a flat
    /// key/value array in RESP2) with `slots` (start, end pairs) and `nodes`
    /// (each with id, ip/endpoint, port, role, health). A shard whose online
    /// master is missing (e.g. a dead master after its replica took over, left
    /// with no slots) adds nothing. `answered_by` stands in for an endpoint
    /// the reply leaves empty or "?". With `tls`, a node's `tls-port` is used
    /// when it has one. Nothing when the reply is malformed.
    static std::optional<slot_map> from_cluster_shards(reply const& r, std::string_view answered_by_host = {},
                                                       bool tls = false) {
        if (!r.is_array()) return std::nullopt;
        slot_map m;
        for (auto const& sh : r.elements) {
            if (!sh.is_array() || sh.elements.size() % 2 != 0) return std::nullopt;
            reply const* slots = nullptr;
            reply const* nodes = nullptr;
            for (std::size_t i = 0; i + 1 < sh.elements.size(); i += 2) {
                if (sh.elements[i].str == "slots") slots = &sh.elements[i + 1];
                if (sh.elements[i].str == "nodes") nodes = &sh.elements[i + 1];
            }
            if (!slots || !nodes || !slots->is_array() || !nodes->is_array() || slots->elements.size() % 2 != 0)
                return std::nullopt;
            std::optional<node_address> master;
            bool master_online = false;
            std::vector<node_address> replicas;
            for (auto const& n : nodes->elements) {
                if (!n.is_array() || n.elements.size() % 2 != 0) return std::nullopt;
                node_address a;
                std::string role, health, ip, endpoint;
                std::optional<long long> port, tls_port;
                for (std::size_t i = 0; i + 1 < n.elements.size(); i += 2) {
                    auto const& k = n.elements[i].str;
                    auto const& v = n.elements[i + 1];
                    if (k == "id") a.id = v.str;
                    else if (k == "port") port = slots_detail::as_int(v);
                    else if (k == "tls-port") tls_port = slots_detail::as_int(v);
                    else if (k == "ip") ip = v.str;
                    else if (k == "endpoint") endpoint = v.str;
                    else if (k == "role") role = v.str;
                    else if (k == "health") health = v.str;
                }
                if (tls_port && (tls || !port)) port = tls_port;
                if (!port || *port <= 0 || *port > 65535) continue;
                a.port = static_cast<std::uint16_t>(*port);
                a.host = !endpoint.empty() && endpoint != "?" ? endpoint : !ip.empty() ? ip : std::string(answered_by_host);
                if (a.host.empty()) continue;
                if (role == "master") {
                    bool online = health.empty() || health == "online";
                    if (!master || (online && !master_online)) {
                        master = std::move(a);
                        master_online = online;
                    }
                } else {
                    replicas.push_back(std::move(a));
                }
            }
            if (slots->elements.empty()) continue;  // e.g. a failed master that lost its slots
            if (!master) continue;                   // slots without a master: left uncovered
            auto idx = m.add_master(std::move(*master), std::move(replicas));
            for (std::size_t i = 0; i + 1 < slots->elements.size(); i += 2) {
                auto lo = slots_detail::as_int(slots->elements[i]);
                auto hi = slots_detail::as_int(slots->elements[i + 1]);
                if (!lo || !hi || *lo < 0 || *hi < *lo || *hi >= static_cast<long long>(slot_count))
                    return std::nullopt;
                for (auto s = *lo; s <= *hi; ++s) m.owner_[static_cast<std::size_t>(s)] = idx;
            }
        }
        return m;
    }

    /// From a CLUSTER SLOTS reply (any Redis with cluster support): per range
    /// [start, end, master, replica...], each node [host, port, id, ...].
    static std::optional<slot_map> from_cluster_slots(reply const& r, std::string_view answered_by_host = {}) {
        if (!r.is_array()) return std::nullopt;
        slot_map m;
        auto node_of = [&](reply const& n) -> std::optional<node_address> {
            if (!n.is_array() || n.elements.size() < 2) return std::nullopt;
            auto port = slots_detail::as_int(n.elements[1]);
            if (!port || *port <= 0 || *port > 65535) return std::nullopt;
            node_address a;
            // NULL (unknown endpoint), "" or "?" : the node that answered.
            a.host = n.elements[0].is_string() && !n.elements[0].str.empty() && n.elements[0].str != "?"
                         ? n.elements[0].str
                         : std::string(answered_by_host);
            if (a.host.empty()) return std::nullopt;
            a.port = static_cast<std::uint16_t>(*port);
            if (n.elements.size() > 2 && n.elements[2].is_string()) a.id = n.elements[2].str;
            return a;
        };
        for (auto const& range : r.elements) {
            if (!range.is_array() || range.elements.size() < 3) return std::nullopt;
            auto lo = slots_detail::as_int(range.elements[0]);
            auto hi = slots_detail::as_int(range.elements[1]);
            if (!lo || !hi || *lo < 0 || *hi < *lo || *hi >= static_cast<long long>(slot_count)) return std::nullopt;
            auto master = node_of(range.elements[2]);
            if (!master) return std::nullopt;
            std::vector<node_address> replicas;
            for (std::size_t i = 3; i < range.elements.size(); ++i)
                if (auto rep = node_of(range.elements[i])) replicas.push_back(std::move(*rep));
            auto idx = m.add_master(std::move(*master), std::move(replicas));
            for (auto s = *lo; s <= *hi; ++s) m.owner_[static_cast<std::size_t>(s)] = idx;
        }
        return m;
    }

    /// The master serving `slot`, or null when no master does.
    node_address const* master_for_slot(std::uint16_t slot) const noexcept {
        if (slot >= slot_count) return nullptr;
        auto i = owner_[slot];
        return i == none ? nullptr : &shards_[i].master;
    }
    /// The master serving `key` (or the sharded channel `key`).
    node_address const* master_for(std::string_view key) const noexcept { return master_for_slot(key_slot(key)); }

    /// After a MOVED: `slot` is served by `to` from now on (a master this map
    /// may not know yet). The rest of the map is unchanged until reloaded.
    void apply_moved(std::uint16_t slot, node_address const& to) {
        if (slot >= slot_count) return;
        for (std::size_t i = 0; i < shards_.size(); ++i)
            if (shards_[i].master.same_endpoint(to)) {
                owner_[slot] = static_cast<std::uint16_t>(i);
                return;
            }
        owner_[slot] = add_master(to, {});
    }

    /// Masters that serve at least one slot, each once, in first-slot order.
    std::vector<node_address> masters() const {
        std::vector<bool> seen(shards_.size(), false);
        std::vector<node_address> out;
        for (auto i : owner_)
            if (i != none && !seen[i]) {
                seen[i] = true;
                out.push_back(shards_[i].master);
            }
        return out;
    }

    /// Every node the map names (masters first, then replicas), each once.
    std::vector<node_address> nodes() const {
        std::vector<node_address> out;
        auto add = [&](node_address const& a) {
            for (auto const& o : out)
                if (o.same_endpoint(a)) return;
            out.push_back(a);
        };
        for (auto const& s : shards_) add(s.master);
        for (auto const& s : shards_)
            for (auto const& r : s.replicas) add(r);
        return out;
    }

    /// The replicas the reply listed for the master `m`.
    std::vector<node_address> replicas_of(node_address const& m) const {
        for (auto const& s : shards_)
            if (s.master.same_endpoint(m)) return s.replicas;
        return {};
    }

    /// How many slots have a master (16384 when the cluster is fully covered).
    std::size_t covered() const noexcept {
        std::size_t n = 0;
        for (auto i : owner_) n += i != none;
        return n;
    }
    bool complete() const noexcept { return covered() == slot_count; }

    /// Same owner endpoint for every slot.
    bool same_routing(slot_map const& o) const noexcept {
        for (std::size_t s = 0; s < slot_count; ++s) {
            auto a = owner_[s], b = o.owner_[s];
            if ((a == none) != (b == none)) return false;
            if (a != none && !shards_[a].master.same_endpoint(o.shards_[b].master)) return false;
        }
        return true;
    }

private:
    static constexpr std::uint16_t none = 0xffff;

    std::uint16_t add_master(node_address master, std::vector<node_address> replicas) {
        for (std::size_t i = 0; i < shards_.size(); ++i)
            if (shards_[i].master.same_endpoint(master)) {
                for (auto& r : replicas) shards_[i].replicas.push_back(std::move(r));
                return static_cast<std::uint16_t>(i);
            }
        shards_.push_back(shard{std::move(master), std::move(replicas)});
        return static_cast<std::uint16_t>(shards_.size() - 1);
    }

    std::vector<shard> shards_;
    std::array<std::uint16_t, slot_count> owner_{};
};

/// Where one command goes: the routing decision of the cluster client, kept
/// apart from its I/O.
struct route {
    node_address node;
    bool asking = false;  ///< send ASKING first (an ASK redirection)
};

/// The node for a command on `key`: an ASK redirection being followed wins,
/// then the slot's master in `map`; nothing when no master serves the slot.
inline std::optional<route> route_for(slot_map const& map, std::string_view key,
                                      std::optional<redirect> const& ask = std::nullopt) {
    if (ask && ask->type == redirect::kind::ask) return route{ask->target, true};
    if (auto const* m = map.master_for(key)) return route{*m, false};
    return std::nullopt;
}

}  // namespace flk::detail::redis::cluster
