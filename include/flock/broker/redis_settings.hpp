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
    /// Cursor hashes (`flock:cursor:*`). A user's first move (after a join,
    /// a cursor:leave or a reconnect) is written at once, ahead of its
    /// PUBLISH: a relayed cursor is always in Redis. Later moves are written
    /// behind, all of an instance's due cursors in one script call per
    /// flush: a cursor that has not moved for `cursor_quiet` (so a snapshot
    /// read from Redis shows where a user stopped, at most 2 x cursor_quiet
    /// late), and one that keeps moving every `cursor_flush_interval`.
    std::chrono::milliseconds cursor_quiet{250};
    /// See cursor_quiet: how stale the Redis copy of a cursor that keeps
    /// moving may get (its other instances' members see every move anyway).
    std::chrono::milliseconds cursor_flush_interval{5000};
    /// Presence and cursor TTLs are refreshed (EXPIRE) by a sign of life
    /// only when this long has passed since the last refresh; when unset,
    /// TTL / 3 or 0.8 x the heartbeat interval, whichever is shorter (so
    /// every heartbeat of an otherwise quiet user refreshes, as before).
    /// A user with no sign of life is evicted TTL - this after its last one
    /// at worst.
    std::optional<std::chrono::milliseconds> ttl_refresh_after;
    /// options::redis_batch (FLOCK_REDIS_BATCH_MS): 0 = one PUBLISH per
    /// broadcast; above 0, a room's broadcasts of this long in one PUBLISH
    /// on its batch channel (flock-only clusters).
    std::chrono::milliseconds publish_batch{0};
    /// How long stop() waits for Redis before closing anyway.
    std::chrono::milliseconds stop_timeout{2000};
    /// Turn on `notify-keyspace-events Ex` when it is off (CONFIG SET).
    bool enable_keyspace_events = true;

    /// The settings flk::options carries (the CA file, whether to verify TLS).
    static redis_settings from(options const& o) {
        redis_settings s;
        s.ca_file = o.redis_ca_file;
        s.tls_verify = o.redis_tls_verify;
        s.publish_batch = o.redis_batch;
        return s;
    }
};

}  // namespace flk
