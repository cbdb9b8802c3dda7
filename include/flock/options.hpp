// Every setting of a flock server, with the reference server's defaults, and
// `options::from_env()` reading the same FLOCK_* variables.
#pragma once

#include <flock/connection_gate.hpp>
#include <flock/http.hpp>
#include <flock/log.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk {

/// A setting has a value it cannot take. `what()` names the setting.
class config_error : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

struct options {
    // --- the reference server's settings -------------------------------------
    std::string host = "0.0.0.0";                        ///< FLOCK_HOST (an extension)
    std::uint16_t port = 8787;                           ///< FLOCK_PORT; 0 picks a free port
    std::optional<std::string> redis_url;                ///< FLOCK_REDIS_URL
    std::optional<std::string> redis_ca_file;            ///< FLOCK_REDIS_CA_FILE: PEM CAs for rediss:// (else the system's)
    bool redis_tls_verify = true;                        ///< FLOCK_REDIS_TLS_VERIFY: 0 only for tests
    /// FLOCK_REDIS_BATCH_MS: 0 (default) publishes one envelope per
    /// broadcast, as the reference does. Above 0, a room's broadcasts are
    /// gathered for up to this long and published together on the room's
    /// batch channel, which only flock instances read: for clusters made of
    /// flock instances only (docs/scaling.md).
    std::chrono::milliseconds redis_batch{0};
    std::vector<std::string> api_keys;                   ///< FLOCK_API_KEYS; empty = open mode
    std::chrono::seconds presence_ttl{30};               ///< FLOCK_PRESENCE_TTL_SECONDS
    std::chrono::milliseconds heartbeat_interval{10000}; ///< FLOCK_HEARTBEAT_INTERVAL_MS
    std::uint32_t max_messages_per_second = 100;         ///< FLOCK_MAX_MESSAGES_PER_SECOND
    std::uint32_t max_room_size = 10;                    ///< FLOCK_MAX_ROOM_SIZE
    std::optional<std::string> admin_password;           ///< FLOCK_ADMIN_PASSWORD (no admin pages yet)
    log_level log = log_level::info;                     ///< FLOCK_LOG_LEVEL

    // --- limits the reference lacks -------------------------------------------
    std::size_t max_frame_bytes = 64 * 1024;             ///< FLOCK_MAX_FRAME_BYTES
    std::size_t max_metadata_bytes = 4 * 1024;           ///< FLOCK_MAX_METADATA_BYTES (serialised JSON)
    std::size_t max_id_length = 128;                     ///< FLOCK_MAX_ID_LENGTH (roomId, userId bytes)
    std::uint32_t max_rooms_per_connection = 32;         ///< FLOCK_MAX_ROOMS_PER_CONNECTION
    std::size_t max_send_queue_bytes = 1024 * 1024;      ///< FLOCK_MAX_SEND_QUEUE_BYTES
    std::chrono::milliseconds handshake_timeout{10000};  ///< FLOCK_HANDSHAKE_TIMEOUT_MS
    std::chrono::milliseconds idle_timeout{30000};       ///< FLOCK_IDLE_TIMEOUT_MS (ping at half)
    /// FLOCK_JOIN_TIMEOUT_MS: a WebSocket that has not sent a join this long
    /// after its upgrade is closed with 4002, so idle sockets cannot pin
    /// descriptors; 0 = never.
    std::chrono::milliseconds join_timeout{30000};
    /// FLOCK_WRITE_STALL_MS: a WebSocket whose socket has taken no bytes for
    /// this long while frames wait for it (a client that stopped reading) is
    /// closed with 1008; 0 = never. Any bytes drained restart the clock.
    std::chrono::milliseconds write_stall{30000};
    /// FLOCK_WRITE_DELAY_MS: a connection's cursor frames are held up to this
    /// long so that those of several users leave in one write (Centrifugo's
    /// write delay, uWebSockets' cork); 0 = written in the loop turn they
    /// were sent in. Any other frame (presence, acks, errors), a ping or a
    /// close is written at once, with the cursors held before it: nothing is
    /// reordered, and only cursors wait.
    std::chrono::milliseconds write_delay{0};
    /// FLOCK_IO_URING: a flush hands its connections' small writes to the
    /// kernel in one io_uring submission instead of a send() each; on unless
    /// 0. Where the build has no liburing or the kernel refuses io_uring,
    /// writes go out with send() (logged at start).
    bool io_uring = true;
    /// FLOCK_ALLOWED_ORIGINS: the `Origin` values a WebSocket upgrade may
    /// carry (others get 403); empty = any. A request without `Origin` (not
    /// from a browser) is let through: the check stops other sites' pages.
    std::vector<std::string> allowed_origins;
    std::uint32_t max_connections = 0;         ///< FLOCK_MAX_CONNECTIONS: WebSockets at once, 0 = no limit (503 past it)
    std::uint32_t max_connections_per_ip = 0;  ///< FLOCK_MAX_CONNECTIONS_PER_IP: likewise per client address
    /// Counts connections against the two limits above. Transports sharing
    /// one gate share the limits (flk::sharded_server gives its shards one);
    /// when null, each transport makes its own.
    std::shared_ptr<connection_gate> gate;
    /// Refusals (403, 503, 431, bad upgrades, bad keys) are logged at most
    /// once per client address per this interval; they are always counted.
    std::chrono::milliseconds refusal_log_interval{10000};
    /// FLOCK_THREADS: event loops (shards) of a flk::sharded_server; 0 = one
    /// per core. A basic_flock alone always runs on the one executor it is given.
    std::uint32_t threads = 0;
    /// Let other listeners in this process bind the same port (SO_REUSEPORT),
    /// so the kernel spreads connections over them. sharded_server sets it.
    bool reuse_port = false;
    /// Pages and endpoints served beside `GET /health`, tried in order for
    /// any request that is not a WebSocket upgrade (flock/http.hpp).
    std::vector<http_route> http_routes;
    /// FLOCK_DEMO: serve the demo page (a shared canvas of live cursors) at
    /// `/` and `/demo`. Off by default. flock-server adds the route
    /// (flk::demo_route, flock/demo.hpp); a program embedding flock adds it
    /// itself, since the page's files are compiled into flock-server.
    bool demo = false;
    /// FLOCK_METRICS: serve `GET /metrics` (Prometheus text, docs/metrics.md)
    /// from a flk::sharded_server; on unless 0.
    bool metrics = true;
    /// FLOCK_METRICS_TOKEN: when set, /metrics wants `Authorization: Bearer <token>`.
    std::optional<std::string> metrics_token;
    /// FLOCK_METRICS_ALLOW: client addresses /metrics answers (others get 403); empty = any.
    std::vector<std::string> metrics_allow;

    /// Where log lines go; stderr when empty.
    logger::sink_type log_sink;
    /// Fields added to every log line (sharded_server adds `shard`).
    std::vector<std::pair<std::string, std::string>> log_fields;

    logger make_logger() const {
        logger l(log, log_sink);
        for (auto const& [k, v] : log_fields) l = l.with(k, v);
        return l;
    }

    /// Compares with every key in constant time: how long it takes tells
    /// nothing about how much of a key was guessed right.
    bool api_key_accepted(std::string_view key) const {
        bool accepted = false;
        for (auto const& k : api_keys) accepted |= constant_time_equal(key, k);
        return accepted;
    }

    /// True when `origin` is allowed to open a WebSocket (ASCII case ignored).
    bool origin_allowed(std::string_view origin) const {
        if (allowed_origins.empty()) return true;
        return std::ranges::any_of(allowed_origins, [&](std::string const& o) {
            return std::ranges::equal(o, origin, [](char a, char b) { return ascii_lower(a) == ascii_lower(b); });
        });
    }

    /// Throws config_error when a value cannot work (a zero TTL, ...).
    void validate() const {
        if (presence_ttl.count() <= 0) fail("FLOCK_PRESENCE_TTL_SECONDS", "must be at least 1");
        if (heartbeat_interval.count() <= 0) fail("FLOCK_HEARTBEAT_INTERVAL_MS", "must be at least 1");
        if (max_messages_per_second == 0) fail("FLOCK_MAX_MESSAGES_PER_SECOND", "must be at least 1");
        if (max_room_size == 0) fail("FLOCK_MAX_ROOM_SIZE", "must be at least 1");
        if (max_frame_bytes < 128) fail("FLOCK_MAX_FRAME_BYTES", "must be at least 128");
        if (max_id_length == 0) fail("FLOCK_MAX_ID_LENGTH", "must be at least 1");
        if (max_rooms_per_connection == 0) fail("FLOCK_MAX_ROOMS_PER_CONNECTION", "must be at least 1");
        if (max_send_queue_bytes < max_frame_bytes)
            fail("FLOCK_MAX_SEND_QUEUE_BYTES", "must be at least FLOCK_MAX_FRAME_BYTES");
        if (handshake_timeout.count() <= 0) fail("FLOCK_HANDSHAKE_TIMEOUT_MS", "must be at least 1");
        if (idle_timeout.count() <= 0) fail("FLOCK_IDLE_TIMEOUT_MS", "must be at least 1");
        if (write_delay.count() < 0 || write_delay.count() > 1000) fail("FLOCK_WRITE_DELAY_MS", "must be 0 to 1000");
        for (auto const& k : api_keys)
            if (k.empty()) fail("FLOCK_API_KEYS", "holds an empty key");
        for (auto const& o : allowed_origins)
            if (o.empty()) fail("FLOCK_ALLOWED_ORIGINS", "holds an empty origin");
    }

    using env_getter = std::function<char const*(char const*)>;

    /// Options from FLOCK_* environment variables; unset or empty variables
    /// keep their defaults. Throws config_error naming the variable at fault.
    static options from_env(env_getter const& get = [](char const* n) { return std::getenv(n); }) {
        options o;
        auto var = [&](char const* name) -> std::optional<std::string_view> {
            char const* v = get(name);
            if (v == nullptr || *v == '\0') return std::nullopt;
            return std::string_view(v);
        };
        if (auto v = var("FLOCK_HOST")) o.host = *v;
        if (auto v = var("FLOCK_PORT")) o.port = number<std::uint16_t>("FLOCK_PORT", *v, 0, 65535);
        if (auto v = var("FLOCK_REDIS_URL")) o.redis_url = std::string(*v);
        if (auto v = var("FLOCK_REDIS_CA_FILE")) o.redis_ca_file = std::string(*v);
        if (auto v = var("FLOCK_REDIS_TLS_VERIFY")) o.redis_tls_verify = flag("FLOCK_REDIS_TLS_VERIFY", *v);
        if (auto v = var("FLOCK_DEMO")) o.demo = flag("FLOCK_DEMO", *v);
        if (auto v = var("FLOCK_REDIS_BATCH_MS"))
            o.redis_batch = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_REDIS_BATCH_MS", *v, 0, 1000));
        if (auto v = var("FLOCK_API_KEYS")) o.api_keys = split_list("FLOCK_API_KEYS", *v);
        if (auto v = var("FLOCK_ALLOWED_ORIGINS")) o.allowed_origins = split_list("FLOCK_ALLOWED_ORIGINS", *v);
        if (auto v = var("FLOCK_MAX_CONNECTIONS"))
            o.max_connections = number<std::uint32_t>("FLOCK_MAX_CONNECTIONS", *v, 0);
        if (auto v = var("FLOCK_MAX_CONNECTIONS_PER_IP"))
            o.max_connections_per_ip = number<std::uint32_t>("FLOCK_MAX_CONNECTIONS_PER_IP", *v, 0);
        if (auto v = var("FLOCK_WRITE_STALL_MS"))
            o.write_stall = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_WRITE_STALL_MS", *v, 0));
        if (auto v = var("FLOCK_WRITE_DELAY_MS"))
            o.write_delay = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_WRITE_DELAY_MS", *v, 0, 1000));
        if (auto v = var("FLOCK_IO_URING")) o.io_uring = flag("FLOCK_IO_URING", *v);
        if (auto v = var("FLOCK_JOIN_TIMEOUT_MS"))
            o.join_timeout = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_JOIN_TIMEOUT_MS", *v, 0));
        if (auto v = var("FLOCK_PRESENCE_TTL_SECONDS"))
            o.presence_ttl = std::chrono::seconds(number<std::uint32_t>("FLOCK_PRESENCE_TTL_SECONDS", *v, 1));
        if (auto v = var("FLOCK_HEARTBEAT_INTERVAL_MS"))
            o.heartbeat_interval = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_HEARTBEAT_INTERVAL_MS", *v, 1));
        if (auto v = var("FLOCK_MAX_MESSAGES_PER_SECOND"))
            o.max_messages_per_second = number<std::uint32_t>("FLOCK_MAX_MESSAGES_PER_SECOND", *v, 1);
        if (auto v = var("FLOCK_MAX_ROOM_SIZE")) o.max_room_size = number<std::uint32_t>("FLOCK_MAX_ROOM_SIZE", *v, 1);
        if (auto v = var("FLOCK_ADMIN_PASSWORD")) o.admin_password = std::string(*v);
        if (auto v = var("FLOCK_LOG_LEVEL")) {
            auto l = log_level_from_string(*v);
            if (!l) fail("FLOCK_LOG_LEVEL", "must be one of trace, debug, info, warn, error, silent", *v);
            o.log = *l;
        }
        if (auto v = var("FLOCK_MAX_FRAME_BYTES")) o.max_frame_bytes = number<std::size_t>("FLOCK_MAX_FRAME_BYTES", *v, 128);
        if (auto v = var("FLOCK_MAX_METADATA_BYTES")) o.max_metadata_bytes = number<std::size_t>("FLOCK_MAX_METADATA_BYTES", *v, 2);
        if (auto v = var("FLOCK_MAX_ID_LENGTH")) o.max_id_length = number<std::size_t>("FLOCK_MAX_ID_LENGTH", *v, 1);
        if (auto v = var("FLOCK_MAX_ROOMS_PER_CONNECTION"))
            o.max_rooms_per_connection = number<std::uint32_t>("FLOCK_MAX_ROOMS_PER_CONNECTION", *v, 1);
        if (auto v = var("FLOCK_MAX_SEND_QUEUE_BYTES"))
            o.max_send_queue_bytes = number<std::size_t>("FLOCK_MAX_SEND_QUEUE_BYTES", *v, 1);
        if (auto v = var("FLOCK_HANDSHAKE_TIMEOUT_MS"))
            o.handshake_timeout = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_HANDSHAKE_TIMEOUT_MS", *v, 1));
        if (auto v = var("FLOCK_IDLE_TIMEOUT_MS"))
            o.idle_timeout = std::chrono::milliseconds(number<std::uint32_t>("FLOCK_IDLE_TIMEOUT_MS", *v, 1));
        if (auto v = var("FLOCK_METRICS")) {
            if (*v == "0" || *v == "false") o.metrics = false;
            else if (*v == "1" || *v == "true") o.metrics = true;
            else fail("FLOCK_METRICS", "must be 1 or 0", *v);
        }
        if (auto v = var("FLOCK_METRICS_TOKEN")) o.metrics_token = std::string(*v);
        if (auto v = var("FLOCK_METRICS_ALLOW")) o.metrics_allow = split_list("FLOCK_METRICS_ALLOW", *v);
        if (auto v = var("FLOCK_THREADS")) o.threads = number<std::uint32_t>("FLOCK_THREADS", *v, 0, 1024);
        o.validate();
        return o;
    }

private:
    [[noreturn]] static void fail(std::string_view var, std::string_view why, std::optional<std::string_view> got = {}) {
        std::string m(var);
        m += ' ';
        m += why;
        if (got) {
            m += ", got '";
            m += *got;
            m += '\'';
        }
        throw config_error(m);
    }

    static bool flag(std::string_view var, std::string_view text) {
        if (text == "1" || text == "true") return true;
        if (text == "0" || text == "false") return false;
        fail(var, "must be 1 or 0", text);
    }

    template <class N>
    static N number(std::string_view var, std::string_view text, N min,
                    N max = std::numeric_limits<N>::max()) {
        std::uint64_t v = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || end != text.data() + text.size())
            fail(var, "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max), text);
        if (v < min || v > max)
            fail(var, "must be from " + std::to_string(min) + " to " + std::to_string(max), text);
        return static_cast<N>(v);
    }

    static char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

    // Touches every byte of `secret` whatever `guess` holds; only the length
    // of the secret shows in the time taken.
    static bool constant_time_equal(std::string_view guess, std::string_view secret) noexcept {
        unsigned diff = guess.size() != secret.size() ? 1u : 0u;
        for (std::size_t i = 0; i < secret.size(); ++i) {
            unsigned char const g = guess.empty() ? 0 : static_cast<unsigned char>(guess[i % guess.size()]);
            diff |= g ^ static_cast<unsigned char>(secret[i]);
        }
        return diff == 0;
    }

    static std::vector<std::string> split_list(std::string_view var, std::string_view s) {
        std::vector<std::string> keys;
        while (!s.empty()) {
            auto comma = s.find(',');
            auto key = s.substr(0, comma);
            while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
            while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
            if (!key.empty()) keys.emplace_back(key);
            if (comma == std::string_view::npos) break;
            s.remove_prefix(comma + 1);
        }
        if (keys.empty()) fail(var, "holds no value", s);
        return keys;
    }
};

}  // namespace flk
