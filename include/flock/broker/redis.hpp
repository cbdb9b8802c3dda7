// The Redis broker: instances of a cluster share presence, cursors and
// broadcasts through one Redis, with the key schema and envelope of
// PROTOCOL.md, so flock instances and reference (Node.js) instances can share
// a cluster.
//
//   using scaled = flk::basic_flock<flk::websocket_transport, flk::redis_broker, flk::json_codec>;
//
// - RESP through hiredis's formatter and reader; bytes moved by Asio (TCP or
//   TLS), never blocking the loop. One pipelined command connection and one
//   subscriber connection per instance.
// - Join is one Lua script: cluster-wide capacity, atomically, and the
//   snapshot of the others in the same round trip.
// - Redis commands per cursor move stay near one (the PUBLISH): cursor
//   hashes are written behind, many in one script call, and TTLs refreshed
//   only every TTL / 3; FLOCK_REDIS_BATCH_MS (flock-only clusters) puts a
//   room's broadcasts of a window in one PUBLISH (docs/scaling.md).
// - Evictions: `__keyevent@{db}__:expired` notifications, plus a periodic
//   sweep of the rooms this instance follows (keyspace events can be late,
//   and are lost while disconnected). Evictions are reported to the core
//   only, never republished.
// - A presence hash carries one field more than the schema, `instance` (its
//   owner), so a stale socket leaving on one instance never deletes the
//   presence of the same user re-joined on another.
// - Redis may vanish: the broker logs it once, fails joins fast, drops
//   fire-and-forget writes, reconnects with backoff, re-subscribes, and
//   writes back the presence and cursor of its still-connected users.
// - Behind Redis Sentinel (redis+sentinel://), each (re)connect asks the
//   sentinels for the master, and a `+switch-master` reconnects at once
//   (detail/redis/sentinel.hpp; docs/scaling.md#redis-sentinel).
//
// Everything runs on the executor given at construction, on one thread.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/broker/redis_error.hpp>
#include <flock/broker/redis_settings.hpp>
#include <flock/detail/redis/broker_impl.hpp>
#include <flock/options.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace flk {

/// The Broker over Redis. See the top of this file.
class redis_broker {
public:
    /// Settings from `opts` (FLOCK_REDIS_URL, the presence TTL) and the
    /// options (redis_settings::from). Throws config_error when the
    /// URL is missing or invalid.
    redis_broker(boost::asio::any_io_executor ex, options const& opts, broker_events& events)
        : redis_broker(ex, opts, events, redis_settings::from(opts)) {}

    redis_broker(boost::asio::any_io_executor ex, options const& opts, broker_events& events, redis_settings s)
        : impl_(std::make_shared<detail::redis::broker_impl>(ex, opts, events, std::move(s))) {}

    redis_broker(redis_broker const&) = delete;
    redis_broker& operator=(redis_broker const&) = delete;

    ~redis_broker() { impl_->shutdown(); }

    /// Connects in the background and returns at once; see connected(),
    /// last_error() and on_state_change() for the outcome.
    void start() { impl_->start(); }
    /// Leaves (and announces) every user the core did not leave, unsubscribes,
    /// closes both connections, then calls `done` (from the event loop).
    void stop(std::function<void()> done) { impl_->stop(std::move(done)); }

    void join(join_request req, join_handler h) { impl_->join(std::move(req), std::move(h)); }
    void leave(std::string_view room, std::string_view user) { impl_->leave(room, user); }
    void touch(std::string_view room, std::string_view user) { impl_->touch(room, user); }
    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        impl_->set_metadata(room, user, meta);
    }
    void set_cursor(std::string_view room, std::string_view user, position pos, std::int64_t ts) {
        impl_->set_cursor(room, user, pos, ts);
    }
    void clear_cursor(std::string_view room, std::string_view user) { impl_->clear_cursor(room, user); }
    void publish(std::string_view room, server_message const& msg) { impl_->publish(room, msg); }
    void subscribe(std::string_view room) { impl_->subscribe(room); }
    void unsubscribe(std::string_view room) { impl_->unsubscribe(room); }
    /// Adds `"redis": "up"` or `"down"`.
    void health(boost::json::object& h) const { impl_->health(h); }
    /// Adds the Redis figures of `GET /metrics` (flock/metrics.hpp).
    void collect_metrics(metrics_snapshot& m) const { impl_->collect_metrics(m); }

    /// Both connections are up (authenticated, database selected).
    bool connected() const noexcept { return impl_->connected(); }
    /// Why the last connection attempt failed or the connection was lost;
    /// empty while connected.
    std::string const& last_error() const noexcept { return impl_->last_error(); }
    /// The same as a code of flk::redis_errc (broker/redis_error.hpp); none
    /// while connected.
    boost::system::error_code const& last_error_code() const noexcept { return impl_->last_error_code(); }
    /// Called on the event loop each time the broker connects (up, "") or a
    /// connection attempt fails or the connection is lost (false, why).
    void on_state_change(std::function<void(bool up, std::string const& error)> h) {
        impl_->on_state_change(std::move(h));
    }
    /// The random UUID v4 tagging this instance's envelopes.
    std::string const& instance_id() const noexcept { return impl_->instance_id(); }
    std::chrono::milliseconds sweep_interval() const noexcept { return impl_->sweep_interval(); }

private:
    std::shared_ptr<detail::redis::broker_impl> impl_;
};

static_assert(Broker<redis_broker>);

}  // namespace flk
