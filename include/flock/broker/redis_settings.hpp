// Settings of flk::redis_broker beyond flk::options.
#pragma once

#include <flock/options.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace flk {

/// Settings of the Redis broker beyond `options` (the URL and the presence
/// TTL come from there). The defaults suit production.
struct redis_settings {
    /// CA bundle (PEM) to verify a rediss:// server with; the system's
    /// default paths when unset. options::redis_ca_file.
    std::optional<std::string> ca_file;
    /// Verify the rediss:// server's certificate and host name. Turning this
    /// off is for tests only. options::redis_tls_verify.
    bool tls_verify = true;

    std::chrono::milliseconds connect_timeout{5000};  ///< resolve + connect + TLS + AUTH
    std::chrono::milliseconds reply_timeout{10000};   ///< an unanswered command: connection dead
    std::chrono::milliseconds ping_interval{5000};    ///< PING an idle connection
    std::chrono::milliseconds reconnect_min{100};     ///< backoff doubles from here...
    std::chrono::milliseconds reconnect_max{5000};    ///< ...up to here
    /// The eviction safety net runs this often; max(1 s, TTL / 4) when unset.
    std::optional<std::chrono::milliseconds> sweep_interval;
    /// After a reconnect, the sweep waits this long before reporting anyone
    /// gone, so other instances have time to write their users back when
    /// Redis lost its data; 2 x reconnect_max when unset.
    std::optional<std::chrono::milliseconds> restore_grace;
    /// Cursor hashes are written at most this often per user (latest wins).
    std::chrono::milliseconds cursor_flush_interval{100};
    /// How long stop() waits for Redis before closing anyway.
    std::chrono::milliseconds stop_timeout{2000};
    /// Turn on `notify-keyspace-events Ex` when it is off (CONFIG SET).
    bool enable_keyspace_events = true;

    /// The settings flk::options carries (the CA file, whether to verify TLS).
    static redis_settings from(options const& o) {
        redis_settings s;
        s.ca_file = o.redis_ca_file;
        s.tls_verify = o.redis_tls_verify;
        return s;
    }
};

}  // namespace flk
