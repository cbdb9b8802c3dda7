// Metrics of a flock server, and their Prometheus text exposition
// (`GET /metrics`, docs/metrics.md).
//
// Every counter is a plain integer owned by one shard (one event loop, one
// thread): the core, its transport and its broker each count what they see,
// with no atomic and no lock on the hot path. A scrape asks every shard, on
// its own thread, to add its numbers into a metrics_snapshot
// (basic_flock::collect_metrics), sums the snapshots and renders them.
//
// Labels are bounded: message types, close codes (the known ones, else
// "other"), refusal reasons, shard numbers. Never a room or a user.
#pragma once

#include <flock/detail/http_util.hpp>
#include <flock/http.hpp>
#include <flock/options.hpp>
#include <flock/protocol.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace flk {

/// A histogram with fixed bucket bounds in seconds (cumulative on output).
struct latency_histogram {
    static constexpr std::array<double, 14> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                   0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
    std::array<std::uint64_t, bounds.size() + 1> buckets{};  ///< not cumulative; the last is +Inf
    double sum = 0;                                          ///< seconds
    std::uint64_t count = 0;

    void observe(std::chrono::steady_clock::duration d) noexcept {
        double const s = std::chrono::duration<double>(d).count();
        std::size_t i = 0;
        while (i < bounds.size() && s > bounds[i]) ++i;
        ++buckets[i];
        sum += s;
        ++count;
    }
    void add(latency_histogram const& o) noexcept {
        for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
        sum += o.sum;
        count += o.count;
    }
};

/// The close codes counted by name; any other is counted as "other".
inline constexpr std::array<std::uint16_t, 14> counted_close_codes{
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013, 4000, 4001, 4002};

/// What one transport (one shard's WebSocket server) counted.
struct transport_metrics {
    std::uint64_t opened = 0;                   ///< WebSockets accepted
    std::uint64_t bytes_in = 0;                 ///< WebSocket bytes read (frames, headers included)
    std::uint64_t bytes_out = 0;                ///< WebSocket bytes written
    std::uint64_t frames_conflated = 0;         ///< stale cursor frames replaced in a congested queue
    std::uint64_t send_queue_overflows = 0;     ///< connections closed (1013) for a full send queue
    /// Closed connections by the code of the close (sent, or echoed), 1006
    /// when none was exchanged; the last slot is "other".
    std::array<std::uint64_t, counted_close_codes.size() + 1> closed{};

    void count_close(std::uint16_t code) noexcept {
        std::size_t i = 0;
        while (i < counted_close_codes.size() && counted_close_codes[i] != code) ++i;
        ++closed[i];
    }
    void add(transport_metrics const& o) noexcept {
        opened += o.opened;
        bytes_in += o.bytes_in;
        bytes_out += o.bytes_out;
        frames_conflated += o.frames_conflated;
        send_queue_overflows += o.send_queue_overflows;
        for (std::size_t i = 0; i < closed.size(); ++i) closed[i] += o.closed[i];
    }
};

/// What one core (basic_flock) counted.
struct core_metrics {
    static constexpr std::array<std::string_view, 6> client_types{"join", "heartbeat", "cursor:move",
                                                                  "cursor:leave", "presence:update", "leave"};
    static constexpr std::array<std::string_view, 8> server_types{
        "join:ack", "user:joined", "user:left", "cursor:updated", "cursor:removed", "presence:updated",
        "heartbeat:ack", "error"};
    static_assert(client_types.size() == std::variant_size_v<client_message>);
    static_assert(server_types.size() == std::variant_size_v<server_message>);

    std::array<std::uint64_t, client_types.size() + 1> messages_in{};  ///< by type; the last: undecodable
    std::array<std::uint64_t, server_types.size()> messages_out{};     ///< by type, one per recipient
    std::uint64_t rate_limited = 0;      ///< connections closed for exceeding the message rate
    std::uint64_t joins_room_full = 0;   ///< joins refused: room full
    std::uint64_t joins_bad_key = 0;     ///< joins refused: invalid API key
    std::uint64_t joins_failed = 0;      ///< joins failed: presence store unavailable
    std::uint64_t join_timeouts = 0;     ///< connections closed (4002) for sending no join
    std::uint64_t evictions = 0;         ///< users reported expired by the broker, local or remote
    latency_histogram join_latency;      ///< join received -> join:ack queued

    void add(core_metrics const& o) noexcept {
        for (std::size_t i = 0; i < messages_in.size(); ++i) messages_in[i] += o.messages_in[i];
        for (std::size_t i = 0; i < messages_out.size(); ++i) messages_out[i] += o.messages_out[i];
        rate_limited += o.rate_limited;
        joins_room_full += o.joins_room_full;
        joins_bad_key += o.joins_bad_key;
        joins_failed += o.joins_failed;
        join_timeouts += o.join_timeouts;
        evictions += o.evictions;
        join_latency.add(o.join_latency);
    }
};

/// What a Redis broker counted (one per shard: each shard is an instance).
struct redis_metrics {
    std::uint64_t up = 0;                ///< 1 while both connections are up
    std::uint64_t reconnects = 0;        ///< connections re-established after a loss
    std::uint64_t commands_sent = 0;     ///< on both connections
    std::uint64_t published = 0;         ///< broadcasts handed to other instances
    std::uint64_t received = 0;          ///< pub/sub messages received (broadcasts and expiry events)
    latency_histogram round_trip;        ///< command sent -> its reply read (command connection)

    void add(redis_metrics const& o) noexcept {
        up += o.up;
        reconnects += o.reconnects;
        commands_sent += o.commands_sent;
        published += o.published;
        received += o.received;
        round_trip.add(o.round_trip);
    }
};

/// Upgrades a transport refused, by reason (websocket_refusals, copied).
struct refusal_metrics {
    std::uint64_t bad_upgrade = 0, headers_too_large = 0, unauthorized = 0, origin = 0, full = 0,
                  address_full = 0, write_stalls = 0;
    void add(refusal_metrics const& o) noexcept {
        bad_upgrade += o.bad_upgrade;
        headers_too_large += o.headers_too_large;
        unauthorized += o.unauthorized;
        origin += o.origin;
        full += o.full;
        address_full += o.address_full;
        write_stalls += o.write_stalls;
    }
};

/// One shard's figures, or the sum of several.
struct metrics_snapshot {
    std::uint64_t connections_open = 0;
    std::uint64_t rooms = 0;    ///< rooms with a member on this instance (a room on two shards counts twice)
    std::uint64_t members = 0;  ///< joined members on this instance
    core_metrics core;
    transport_metrics transport;
    refusal_metrics refusals;
    std::uint64_t redis_shards = 0;  ///< shards with a Redis broker
    redis_metrics redis;
    /// Open connections per shard, in shard order.
    std::vector<std::uint64_t> shard_connections;

    void add(metrics_snapshot const& o) {
        connections_open += o.connections_open;
        rooms += o.rooms;
        members += o.members;
        core.add(o.core);
        transport.add(o.transport);
        refusals.add(o.refusals);
        redis_shards += o.redis_shards;
        shard_connections.insert(shard_connections.end(), o.shard_connections.begin(), o.shard_connections.end());
        redis.add(o.redis);
    }
};

namespace detail {

/// The index of `T` among the alternatives of the variant `V`, at compile time.
template <class T, class V>
struct variant_index;
template <class T, class... Ts>
struct variant_index<T, std::variant<Ts...>> {
    static constexpr std::size_t value = [] {
        constexpr bool same[] = {std::is_same_v<T, Ts>...};
        std::size_t i = 0;
        while (i < sizeof...(Ts) && !same[i]) ++i;
        return i;
    }();
    static_assert(value < sizeof...(Ts), "not an alternative of the variant");
};
template <class T, class V>
inline constexpr std::size_t variant_index_v = variant_index<T, V>::value;

class prometheus_writer {
public:
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(std::string_view name, std::uint64_t v, std::string_view labels = {}) {
        head(name, labels);
        out_ += std::to_string(v);
        out_ += '\n';
    }
    void sample(std::string_view name, double v, std::string_view labels = {}) {
        head(name, labels);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.9g", v);
        out_ += buf;
        out_ += '\n';
    }
    void counter(std::string_view name, std::string_view help, std::uint64_t v) {
        family(name, "counter", help);
        sample(name, v);
    }
    void gauge(std::string_view name, std::string_view help, std::uint64_t v) {
        family(name, "gauge", help);
        sample(name, v);
    }
    void histogram(std::string_view name, std::string_view help, latency_histogram const& h) {
        family(name, "histogram", help);
        std::string const bucket = std::string(name) + "_bucket";
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < latency_histogram::bounds.size(); ++i) {
            cumulative += h.buckets[i];
            char le[48];
            std::snprintf(le, sizeof le, "le=\"%g\"", latency_histogram::bounds[i]);
            sample(bucket, cumulative, le);
        }
        cumulative += h.buckets.back();
        sample(bucket, cumulative, "le=\"+Inf\"");
        sample(std::string(name) + "_sum", h.sum);
        sample(std::string(name) + "_count", h.count);
    }
    std::string take() { return std::move(out_); }

private:
    void head(std::string_view name, std::string_view labels) {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            out_ += labels;
            out_ += '}';
        }
        out_ += ' ';
    }
    std::string out_;
};

inline std::string label(std::string_view key, std::string_view value) {
    std::string l(key);
    l += "=\"";
    l += value;  // label values here are fixed words and numbers: nothing to escape
    l += '"';
    return l;
}

}  // namespace detail

/// The Prometheus text exposition (format 0.0.4) of `m`.
inline std::string render_prometheus(metrics_snapshot const& m) {
    detail::prometheus_writer w;
    using detail::label;

    w.gauge("flock_connections_open", "WebSocket connections open now.", m.connections_open);
    w.counter("flock_connections_opened_total", "WebSocket connections accepted.", m.transport.opened);
    w.family("flock_connections_closed_total", "counter",
             "WebSocket connections closed, by close code (sent or echoed; 1006: none exchanged).");
    for (std::size_t i = 0; i < m.transport.closed.size(); ++i) {
        std::string const code =
            i < counted_close_codes.size() ? std::to_string(counted_close_codes[i]) : std::string("other");
        w.sample("flock_connections_closed_total", m.transport.closed[i], label("code", code));
    }
    w.family("flock_connections_refused_total", "counter",
             "WebSocket upgrades refused, by reason (HTTP 400/426/411, 431, 401, 403, 503).");
    std::pair<char const*, std::uint64_t> const refused[] = {
        {"bad_upgrade", m.refusals.bad_upgrade},   {"headers_too_large", m.refusals.headers_too_large},
        {"unauthorized", m.refusals.unauthorized}, {"origin", m.refusals.origin},
        {"max_connections", m.refusals.full},      {"max_connections_per_ip", m.refusals.address_full}};
    for (auto const& [reason, n] : refused) w.sample("flock_connections_refused_total", n, label("reason", reason));
    w.family("flock_connections_dropped_total", "counter",
             "Open connections closed by the server for a stalled reader (1008) or no join in time (4002).");
    std::pair<char const*, std::uint64_t> const dropped[] = {
        {"write_stalled", m.refusals.write_stalls},
        {"join_timeout", m.core.join_timeouts}};
    for (auto const& [reason, n] : dropped) w.sample("flock_connections_dropped_total", n, label("reason", reason));
    w.counter("flock_rate_limited_total", "Connections closed (1008) for sending more than FLOCK_MAX_MESSAGES_PER_SECOND.",
              m.core.rate_limited);
    w.counter("flock_send_queue_overflows_total", "Connections closed (1013) because their send queue was full.",
              m.transport.send_queue_overflows);
    w.counter("flock_frames_conflated_total", "Stale cursor frames replaced by newer ones in a congested send queue.",
              m.transport.frames_conflated);
    w.family("flock_joins_refused_total", "counter", "Joins refused, by reason.");
    std::pair<char const*, std::uint64_t> const joins[] = {{"room_full", m.core.joins_room_full},
                                                           {"invalid_api_key", m.core.joins_bad_key},
                                                           {"store_unavailable", m.core.joins_failed}};
    for (auto const& [reason, n] : joins) w.sample("flock_joins_refused_total", n, label("reason", reason));

    w.gauge("flock_rooms", "Rooms with a member on this instance (counted once per shard holding one).", m.rooms);
    w.gauge("flock_members", "Members joined on this instance.", m.members);

    w.family("flock_messages_received_total", "counter", "Client messages received, by type (invalid: undecodable).");
    for (std::size_t i = 0; i < core_metrics::client_types.size(); ++i)
        w.sample("flock_messages_received_total", m.core.messages_in[i], label("type", core_metrics::client_types[i]));
    w.sample("flock_messages_received_total", m.core.messages_in.back(), label("type", "invalid"));
    w.family("flock_messages_sent_total", "counter", "Server messages queued to clients, by type, one per recipient.");
    for (std::size_t i = 0; i < core_metrics::server_types.size(); ++i)
        w.sample("flock_messages_sent_total", m.core.messages_out[i], label("type", core_metrics::server_types[i]));
    w.counter("flock_received_bytes_total", "WebSocket bytes read from clients.", m.transport.bytes_in);
    w.counter("flock_sent_bytes_total", "WebSocket bytes written to clients.", m.transport.bytes_out);

    w.histogram("flock_join_duration_seconds", "From a join's arrival to its join:ack (broker round trip included).",
                m.core.join_latency);
    w.counter("flock_presence_evictions_total", "Users whose presence expired, as reported by the broker.",
              m.core.evictions);

    w.gauge("flock_shards", "Event loops (FLOCK_THREADS) of this process.", m.shard_connections.size());
    w.family("flock_shard_connections_open", "gauge", "WebSocket connections open now, per shard.");
    for (std::size_t i = 0; i < m.shard_connections.size(); ++i)
        w.sample("flock_shard_connections_open", m.shard_connections[i], label("shard", std::to_string(i)));

    if (m.redis_shards > 0) {
        w.gauge("flock_redis_up", "1 when every shard's Redis connections are up, else 0.",
                m.redis.up == m.redis_shards ? 1 : 0);
        w.counter("flock_redis_reconnects_total", "Redis connections re-established after a loss.", m.redis.reconnects);
        w.counter("flock_redis_commands_total", "Redis commands sent (both connections).", m.redis.commands_sent);
        w.counter("flock_redis_published_total", "Broadcasts published to other instances.", m.redis.published);
        w.counter("flock_redis_pubsub_received_total", "Pub/sub messages received (broadcasts and expiry events).",
                  m.redis.received);
        w.histogram("flock_redis_round_trip_seconds", "Redis command round trips (sent to reply read).",
                    m.redis.round_trip);
    }
    return w.take();
}

/// Gathers a snapshot of every shard and hands the sum to the callback, once,
/// from any thread (sharded_server::collect_metrics).
using metrics_gatherer = std::function<void(std::function<void(metrics_snapshot)>)>;

/// The `GET /metrics` route: the Prometheus text of what `gather` collects.
/// With a token, a request must carry `Authorization: Bearer <token>` (401
/// otherwise); with `allowed` addresses, it must come from one of them (403).
inline http_route metrics_route(metrics_gatherer gather, std::optional<std::string> token = {},
                                std::vector<std::string> allowed = {}) {
    return [gather = std::move(gather), token = std::move(token), allowed = std::move(allowed)](
               http_request const& req, http_responder& reply) {
        if (req.path != "/metrics") return false;
        if (req.method != "GET" && req.method != "HEAD") {
            reply({.status = 405, .body = "GET only\n", .headers = {{"Allow", "GET, HEAD"}}});
            return true;
        }
        if (!allowed.empty() && !detail::address_listed(allowed, req.remote_address)) {
            reply({.status = 403, .body = "forbidden\n", .headers = {}});
            return true;
        }
        if (token) {
            auto const given = req.header("Authorization");
            std::string_view const prefix = "Bearer ";
            bool ok = given.size() > prefix.size() && given.substr(0, prefix.size()) == prefix;
            // Compared in constant time (for the token's length): timing tells nothing.
            auto const guess = ok ? given.substr(prefix.size()) : std::string_view{};
            unsigned diff = guess.size() != token->size() ? 1u : 0u;
            for (std::size_t i = 0; i < token->size(); ++i)
                diff |= static_cast<unsigned char>(guess.empty() ? 0 : guess[i % guess.size()]) ^
                        static_cast<unsigned char>((*token)[i]);
            if (!ok || diff != 0) {
                reply({.status = 401, .body = "bearer token required\n", .headers = {{"WWW-Authenticate", "Bearer"}}});
                return true;
            }
        }
        gather([reply](metrics_snapshot m) {
            reply({.content_type = "text/plain; version=0.0.4; charset=utf-8",
                   .body = render_prometheus(m),
                   .headers = {{"Cache-Control", "no-store"}}});
        });
        return true;
    };
}

}  // namespace flk
