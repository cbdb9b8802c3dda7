// The machinery of flk::redis_broker: connections, scripts, subscriptions,
// sweeps and reconnection. See include/flock/broker/redis.hpp for what it does.
// Its link is one Redis (a command and a subscriber connection, found through
// Sentinel for redis+sentinel://) or, when the URL's node says it is part of a
// Redis Cluster, cluster/client.hpp: keys tagged by room, sharded pub/sub.
// The I/O lives here (connections, timers, calls into the core); what it
// decides lives in plain classes without I/O: membership.hpp (rooms, joins
// waiting for SUBSCRIBE, known/unconfirmed/evicted members, sweep verdicts),
// reconnect.hpp (link state and backoff) and error.hpp (replies as codes).
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/broker/redis_settings.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/contain.hpp>
#include <flock/detail/redis/batch.hpp>
#include <flock/detail/redis/cluster/client.hpp>
#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/error.hpp>
#include <flock/detail/redis/sentinel.hpp>
#include <flock/detail/redis/keys.hpp>
#include <flock/detail/redis/membership.hpp>
#include <flock/detail/redis/reconnect.hpp>
#include <flock/detail/redis/scripts.hpp>
#include <flock/detail/redis/url.hpp>
#include <flock/detail/string_map.hpp>
#include <flock/log.hpp>
#include <flock/options.hpp>
#include <flock/protocol.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>


namespace flk {

namespace detail::redis {

template <class V>
using str_map = flk::detail::string_map<V>;
using str_set = flk::detail::string_set;

inline std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

inline std::string number_text(double d) {
    char buf[40];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
    if (ec != std::errc()) return "0";
    return std::string(buf, end);
}

inline std::optional<double> parse_number(std::string_view s) {
    if (s.empty()) return std::nullopt;
    double d = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return std::nullopt;
    return d;
}

inline metadata parse_metadata(std::string_view text) {
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec || !v.is_object()) return {};
    return std::move(v.get_object());
}

/// Reads {id, metadata, x, y, ...} (from `first`) into members.
inline std::vector<server::member> parse_members(reply const& r, std::size_t first) {
    std::vector<server::member> out;
    auto const& e = r.elements;
    for (std::size_t i = first; i + 4 <= e.size(); i += 4) {
        server::member m;
        m.user_id = e[i].str;
        m.meta = parse_metadata(e[i + 1].str);
        auto x = parse_number(e[i + 2].str), y = parse_number(e[i + 3].str);
        if (x && y) m.cursor = position{*x, *y};
        out.push_back(std::move(m));
    }
    return out;
}

/// The broker's state, shared with its pending callbacks (which hold it weakly).
class broker_impl : public std::enable_shared_from_this<broker_impl> {
public:
    using state_handler = std::function<void(bool up, std::string const& error)>;

    broker_impl(asio::any_io_executor ex, options const& opts, broker_events& events, redis_settings s)
        : ex_(ex),
          events_(&events),
          log_(opts.make_logger()),
          settings_(std::move(s)),
          url_(parse_url(opts.redis_url ? *opts.redis_url : throw config_error("FLOCK_REDIS_URL is not set"))),
          ttl_(std::to_string(opts.presence_ttl.count())),
          instance_(boost::uuids::to_string(boost::uuids::random_generator()())),
          expired_channel_(expired_channel(url_.db)),
          link_(settings_.reconnect_min, settings_.reconnect_max,
                settings_.restore_grace ? *settings_.restore_grace : 2 * settings_.reconnect_max),
          reconnect_timer_(ex),
          sweep_timer_(ex),
          cursor_timer_(ex),
          stop_timer_(ex),
          batch_timer_(ex) {
        sweep_every_ = settings_.sweep_interval
                           ? *settings_.sweep_interval
                           : std::max<std::chrono::milliseconds>(std::chrono::seconds(1),
                                                                 std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                     opts.presence_ttl) / 4);
        // A third of the TTL, but below the heartbeat interval: a user who
        // only heartbeats refreshes on every heartbeat, as before, so a late
        // or lost heartbeat costs it no more than it did.
        ttl_refresh_after_ = settings_.ttl_refresh_after
                                 ? *settings_.ttl_refresh_after
                                 : std::min(std::chrono::duration_cast<std::chrono::milliseconds>(opts.presence_ttl) / 3,
                                            opts.heartbeat_interval * 4 / 5);
        if (url_.tls) make_tls_context();
        if (url_.sentinel()) {
            topology_ = topology::single;
            connection_config c;
            c.connect_timeout = settings_.connect_timeout;
            c.reply_timeout = settings_.reply_timeout;
            c.ping_interval = settings_.ping_interval;
            sentinel_ = std::make_shared<sentinel_client>(ex_, url_, tls_.get(), c, log_);
        }
    }

    // ---- lifecycle -----------------------------------------------------------------

    void start() {
        if (started_ || stopped_) return;
        started_ = true;
        log_.info("redis broker starting", {{"url", url_.redacted()}, {"instance", instance_}});
        if (sentinel_)
            sentinel_->watch([w = weak_from_this()](endpoint const& e) {
                if (auto self = w.lock()) self->on_switch_master(e);
            });
        connect();
    }

    void stop(std::function<void()> done) {
        if (stopping_ && !stopped_) {  // already on its way: call both when done
            if (done)
                stop_done_ = [first = std::move(stop_done_), done = std::move(done)] {
                    if (first) first();
                    done();
                };
            return;
        }
        if (stopped_) {
            if (done) asio::post(ex_, std::move(done));
            return;
        }
        stopping_ = true;
        stop_done_ = std::move(done);
        reconnect_timer_.cancel();
        sweep_timer_.cancel();
        cursor_timer_.cancel();
        batch_timer_.cancel();
        if (!up()) return finish_stop();
        flush_batches();

        // Users the core did not leave: announced and removed here.
        str_set rooms;
        for (auto const& [room, user] : members_.joined_locals()) {
            publish_impl(room, server::user_left{room, user});
            leave(room, user);
            rooms.insert(room);
        }
        auto w = weak_from_this();
        if (cluster_) {
            drain_cluster(rooms);
            if (stopped_) return;  // nothing to drain: stopped already
        } else {
            sub_->send({"UNSUBSCRIBE"});
            cmd_->send({"PING"}, [w](reply&&) {
                if (auto self = w.lock()) self->finish_stop();
            });
        }
        stop_timer_.expires_after(settings_.stop_timeout);
        stop_timer_.async_wait([w](boost::system::error_code ec) {
            if (ec) return;
            if (auto self = w.lock()) self->finish_stop();
        });
    }

    /// The owner is gone: no callback reaches the core any more.
    void shutdown() {
        events_ = nullptr;
        state_handler_ = nullptr;
        stopped_ = true;
        if (sentinel_) sentinel_->stop();
        close_connections();
        reconnect_timer_.cancel();
        sweep_timer_.cancel();
        cursor_timer_.cancel();
        stop_timer_.cancel();
        batch_timer_.cancel();
    }

    // ---- the Broker operations -------------------------------------------------------

    void join(join_request req, join_handler handler) {
        auto w = weak_from_this();
        if (!up() || stopping_ || stopped_) {
            asio::post(ex_, [w, h = std::move(handler)] {
                if (auto self = w.lock(); self && self->events_)
                    self->answer(h, join_result{join_result::status::failed, {}});
            });
            return;
        }
        auto meta_json = boost::json::serialize(req.meta);
        auto joined_at = std::to_string(now_ms());
        auto ticket = members_.join_requested(req.room_id, req.user_id, meta_json, joined_at,
                                              std::chrono::steady_clock::now());
        auto seq = ticket.id;

        auto go = [w, req = std::move(req), handler = std::move(handler), seq, meta = std::move(meta_json),
                   joined_at = std::move(joined_at)](bool ok) mutable {
            auto self = w.lock();
            if (!self || !self->events_) return;  // the broker (and so the core) is gone
            if (!ok || !self->up()) {
                self->members_.join_failed(req.room_id, req.user_id, seq);
                return self->answer(handler, join_result{join_result::status::failed, {}});
            }
            std::vector<std::string> params{self->keys_.members(req.room_id),
                                            self->keys_.presence(req.room_id, req.user_id),
                                            self->keys_.presence_prefix_of(req.room_id),
                                            self->keys_.cursor_prefix_of(req.room_id),
                                            req.user_id,
                                            std::to_string(req.capacity),
                                            self->ttl_,
                                            std::move(meta),
                                            std::move(joined_at),
                                            self->instance_};
            self->eval(self->scripts_.join, 2, std::move(params),
                       [w, room = req.room_id, user = req.user_id, seq, handler = std::move(handler)](reply&& r) {
                           auto self = w.lock();
                           if (!self || !self->events_) return;
                           self->on_join_reply(room, user, seq, std::move(r), handler);
                       });
        };
        // A join into a room waits until the room's SUBSCRIBE is acknowledged,
        // so no broadcast sent after the snapshot can be missed.
        if (ticket.parked)
            parked_.emplace(seq, std::move(go));
        else
            go(true);
    }

    void leave(std::string_view room, std::string_view user) {
        std::string joined_at = members_.leave(room, user);
        drop_dirty_cursor(room, user);
        if (stopped_) return;
        if (!up()) {
            // Replayed once Redis is back: its keys go at once, not after the TTL.
            leaves_while_down_.push_back({std::string(room), std::string(user), std::move(joined_at)});
            return;
        }
        send_leave(room, user, joined_at);
    }

    // A sign of life refreshes the TTLs only once ttl_refresh_after (TTL / 3,
    // at most 0.8 x the heartbeat interval) has passed since the last
    // refresh (a join, a metadata write, a restore or a touch): the key then
    // still has 2/3 of its TTL to live, and a busy user costs two EXPIREs
    // per 8 s (defaults) instead of two per touch (one a second).
    void touch(std::string_view room, std::string_view user) {
        if (!up() || stopping_) return;
        auto* lu = find_local(room, user);
        auto const now = std::chrono::steady_clock::now();
        if (lu) {
            if (now - lu->ttl_refreshed_at < ttl_refresh_after_) return;
            lu->ttl_refreshed_at = now;
        }
        auto const presence = keys_.presence(room, user);
        command(presence, {"EXPIRE", presence, ttl_});
        // No cursor of this session: nothing of ours to keep alive.
        if (!lu || lu->cursor) {
            auto const cursor = keys_.cursor(room, user);
            command(cursor, {"EXPIRE", cursor, ttl_});
        }
    }

    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        auto json = boost::json::serialize(meta);
        auto* lu = find_local(room, user);
        if (lu) lu->meta_json = json;
        if (!up() || stopping_) return;
        if (lu) lu->ttl_refreshed_at = std::chrono::steady_clock::now();  // the script refreshes the TTL
        eval(scripts_.set_metadata, 1, {keys_.presence(room, user), std::move(json), ttl_}, {});
    }

    // A cursor that has been relayed must be in every later snapshot, yet a
    // Redis write per move would double the commands of the hottest path.
    // So a user's first move (no cursor hash of this session yet) is written
    // at once, on the command connection, ahead of the PUBLISH the core
    // sends next: no instance can see the move before Redis holds a cursor
    // for the user. Later moves are written behind (see flush_cursors): the
    // hash exists, only its position lags. A joiner on an instance already
    // in the room gets the latest position from what its instance relayed
    // (see merge_relayed_cursors); one on an instance new to the room, from
    // Redis: at most 2 x cursor_quiet late for a cursor that stopped, and a
    // cursor still moving is corrected by its next move.
    void set_cursor(std::string_view room, std::string_view user, position pos, std::int64_t ts) {
        auto* lu = find_local(room, user);
        if (lu) {
            lu->cursor = pos;
            lu->cursor_ts = ts;
        }
        if (stopping_ || stopped_) return;
        auto const now = std::chrono::steady_clock::now();
        if (up() && lu && !lu->cursor_written) {
            drop_dirty_cursor(room, user);
            std::vector<cursor_write> one;
            one.push_back({keys_.cursor(room, user), pos, ts});
            write_cursors(one);
            lu->cursor_written = true;
            lu->cursor_written_at = now;
            return;
        }
        auto& d = dirty_[std::string(room)][std::string(user)];
        d.pos = pos;
        d.ts = ts;
        d.moved_at = now;
        arm_cursor_flush();
    }

    void clear_cursor(std::string_view room, std::string_view user) {
        if (auto* lu = find_local(room, user)) {
            lu->cursor.reset();
            lu->cursor_written = false;  // the next move is written ahead again
        }
        drop_dirty_cursor(room, user);
        if (!up() || stopping_) return;
        auto const cursor = keys_.cursor(room, user);
        command(cursor, {"DEL", cursor});
    }

    void publish(std::string_view room, server_message const& msg) {
        if (!up() || stopping_) return;
        publish_impl(room, msg);
    }

    void subscribe(std::string_view room) {
        if (stopping_ || stopped_) return;
        if (members_.subscribe(room, up()) && up()) listen(room);
    }

    void unsubscribe(std::string_view room) {
        auto u = members_.unsubscribe(room);
        if (!u.was_followed) return;
        if (up()) flush_batch(room);
        if (up() && !stopping_) unlisten(room);
        run_parked(u.released, true);  // nothing to wait for any more
    }

    void health(boost::json::object& h) const { h["redis"] = up() ? "up" : "down"; }

    /// Adds this broker's counters (one Redis instance) to `m`.
    void collect_metrics(metrics_snapshot& m) const {
        redis_metrics r;
        r.up = up() ? 1 : 0;
        r.reconnects = reconnects_;
        r.commands_sent = stats_->commands;
        r.published = published_;
        r.received = received_;
        r.round_trip = stats_->round_trip;
        m.redis.add(r);
        ++m.redis_shards;
    }

    // ---- observers -------------------------------------------------------------------

    bool connected() const noexcept { return up(); }
    std::string const& last_error() const noexcept { return link_.message(); }
    boost::system::error_code const& last_error_code() const noexcept { return link_.error(); }
    std::string const& instance_id() const noexcept { return instance_; }
    std::chrono::milliseconds sweep_interval() const noexcept { return sweep_every_; }
    void on_state_change(state_handler h) { state_handler_ = std::move(h); }
    url const& target() const noexcept { return url_; }

private:
    struct dirty_cursor {
        position pos;
        std::int64_t ts = 0;
        std::chrono::steady_clock::time_point moved_at{};
    };
    struct cursor_write {
        std::string key;
        position pos;
        std::int64_t ts = 0;
    };
    struct pending_leave {
        std::string room, user, joined_at;
    };

    // ---- connecting --------------------------------------------------------------

    void make_tls_context() {
        tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
        SSL_CTX_set_min_proto_version(tls_->native_handle(), TLS1_2_VERSION);
        if (!settings_.tls_verify) {
            tls_->set_verify_mode(asio::ssl::verify_none);
            return;
        }
        tls_->set_verify_mode(asio::ssl::verify_peer);
        boost::system::error_code ec;
        if (settings_.ca_file) {
            tls_->load_verify_file(*settings_.ca_file, ec);
            if (ec)
                throw config_error("FLOCK_REDIS_CA_FILE cannot be loaded from '" + *settings_.ca_file +
                                   "': " + ec.message());
        } else {
            tls_->set_default_verify_paths(ec);
            if (ec) throw config_error("cannot load the system's CA certificates for rediss://: " + ec.message());
        }
    }

    void connect() {
        if (stopping_ || stopped_) return;
        if (topology_ == topology::cluster) return start_cluster();
        if (!sentinel_) return connect_to(url_);
        // redis+sentinel://: ask the sentinels for the master first.
        ++attempt_;
        auto w = weak_from_this();
        sentinel_->resolve([w, attempt = attempt_](std::string const& error, url const& master) {
            auto self = w.lock();
            if (!self || self->stopped_ || self->stopping_ || self->attempt_ != attempt) return;
            if (!error.empty()) return self->on_connect_failed(error, redis_errc::no_master);
            if (master.host != self->master_.host || master.port != self->master_.port)
                self->log_.info("sentinel: the master is " + endpoint{master.host, master.port}.text(),
                                {{"master", self->url_.master_name}});
            self->master_ = endpoint{master.host, master.port};
            self->connect_to(master);
        });
    }

    /// A sentinel saw our master switch to `e`: leave the old one (if still
    /// on it) and connect to the new one now, whatever the backoff had grown to.
    void on_switch_master(endpoint const& e) {
        if (stopping_ || stopped_) return;
        if (up() && e == master_) return;
        if (up()) on_lost(redis_errc::master_moved, "sentinel: the master moved to " + e.text());
        if (stopping_ || stopped_) return;
        link_.reset_backoff();
        reconnect_timer_.cancel();
        close_connections();
        connect();
    }

    void connect_to(url const& target) {
        ++attempt_;
        auto cfg_for = [&](std::string_view role) {
            connection_config c;
            c.connect_timeout = settings_.connect_timeout;
            c.reply_timeout = settings_.reply_timeout;
            c.ping_interval = settings_.ping_interval;
            c.client_name = "flock-" + std::string(role) + "-" + instance_.substr(0, 8);
            return c;
        };
        auto cmd = std::make_shared<connection>(ex_, tls_.get());
        auto sub = std::make_shared<connection>(ex_, tls_.get());
        cmd->count_into(stats_);
        sub->count_into(stats_);
        cmd_ = cmd;
        sub_ = sub;
        auto results = std::make_shared<std::pair<std::optional<std::string>, std::optional<std::string>>>();
        auto w = weak_from_this();
        auto attempt = attempt_;
        auto both = [w, results, attempt] {
            if (!results->first || !results->second) return;
            auto self = w.lock();
            if (!self || self->stopped_ || self->stopping_ || self->attempt_ != attempt) return;
            if (results->first->empty() && results->second->empty())
                self->on_links_open();
            else
                self->on_connect_failed(results->first->empty() ? *results->second : *results->first);
        };
        cmd->async_connect(target, cfg_for("cmd"), [results, both](std::string const& e) {
            results->first = e;
            both();
        });
        sub->async_connect(target, cfg_for("sub"), [results, both](std::string const& e) {
            results->second = e;
            both();
        });
    }

    void on_connect_failed(std::string const& why, boost::system::error_code code = {}) {
        auto v = link_.connect_failed(code ? code : failed_code(), why);
        close_connections();
        if (v.first_report) {
            // Once per distinct cause, not once per attempt.
            if (v.was_up)
                log_.warn("redis unavailable, retrying in the background", {{"error", why}});
            else
                log_.error("cannot connect to redis, retrying in the background",
                           {{"url", url_.redacted()}, {"error", why}});
        } else {
            log_.debug("redis connect attempt failed", {{"error", why}, {"attempt", attempt_}});
        }
        notify_state(false, why);
        schedule_reconnect(v.retry_in);
    }

    /// What failed: the connection that reported it (the first to fail).
    boost::system::error_code failed_code() const {
        if (cmd_ && cmd_->error()) return cmd_->error();
        if (sub_ && sub_->error()) return sub_->error();
        return redis_errc::connection_lost;
    }

    void schedule_reconnect(std::chrono::milliseconds delay) {
        if (stopping_ || stopped_) return;
        reconnect_timer_.expires_after(delay);
        auto w = weak_from_this();
        reconnect_timer_.async_wait([w](boost::system::error_code ec) {
            if (ec) return;
            if (auto self = w.lock()) self->connect();
        });
    }

    /// Both connections of a redis:// URL are open. The first time, ask the
    /// node whether it belongs to a Redis Cluster: if so, the cluster client
    /// takes over for the life of the broker (hash-tagged keys, sharded
    /// pub/sub); a Redis without cluster support refuses CLUSTER INFO.
    void on_links_open() {
        if (topology_ != topology::unknown) return on_connected();
        auto w = weak_from_this();
        cmd_->send({"CLUSTER", "INFO"}, [w, attempt = attempt_](reply&& r) {
            auto self = w.lock();
            if (!self || self->stopped_ || self->stopping_ || self->attempt_ != attempt) return;
            if (r.type == reply::kind::io_error) return self->on_connect_failed(r.str);
            if (r.is_error()) {  // "cluster support disabled", or a CLUSTER this user may not run
                self->topology_ = topology::single;
                return self->on_connected();
            }
            self->topology_ = topology::cluster;
            self->keys_ = key_schema(true);
            self->log_.info("redis is a cluster node: cluster mode (keys tagged by room, sharded pub/sub)",
                            {{"url", self->url_.redacted()}});
            self->close_connections();
            self->start_cluster();
        });
    }

    void start_cluster() {
        ++attempt_;
        cluster::client_config cfg;
        cfg.connection.connect_timeout = settings_.connect_timeout;
        cfg.connection.reply_timeout = settings_.reply_timeout;
        cfg.connection.ping_interval = settings_.ping_interval;
        cfg.connection.client_name = "flock-" + instance_.substr(0, 8);
        cfg.stats = stats_;
        scripts_.for_each([&](script const& s) { cfg.scripts.emplace_back(s.source); });
        cfg.scripts.emplace_back(scripts_.publish_left_sharded.source);
        auto c = std::make_shared<cluster::client>(ex_, tls_.get(), url_, std::move(cfg));
        cluster_ = c;
        auto w = weak_from_this();
        c->on_message([w](std::string const& ch, std::string const& payload) {
            if (auto self = w.lock()) self->on_message(ch, payload);
        });
        c->on_subscribed([w](std::string const& ch, cluster::node_address const&) {
            if (auto self = w.lock()) self->on_channel_subscribed(ch);
        });
        c->on_expired([w](std::string const& key, cluster::node_address const&) {
            if (auto self = w.lock(); self && self->events_) {
                ++self->received_;
                self->on_expired(key);
            }
        });
        c->on_log([w](std::string const& what) {
            if (auto self = w.lock()) self->log_.info("redis cluster: " + what);
        });
        c->on_routing_changed([w] {
            if (auto self = w.lock()) self->on_cluster_routing_changed();
        });
        c->async_start([w, attempt = attempt_](std::string const& err, bool is_cluster) {
            auto self = w.lock();
            if (!self || self->stopped_ || self->stopping_ || self->attempt_ != attempt) return;
            if (!err.empty()) return self->on_connect_failed(err);
            if (!is_cluster) {  // the node left its cluster meanwhile: start over
                self->topology_ = topology::unknown;
                self->keys_ = key_schema(false);
                self->close_connections();
                return self->connect_to(self->url_);
            }
            self->on_connected();
        });
    }

    /// Slots moved to other masters (a replica took over, or a resharding):
    /// the new master may have missed the last writes, so presence is written
    /// back as after a reconnect, and sweeps wait out the same grace while
    /// every instance does so.
    void on_cluster_routing_changed() {
        if (!up() || stopping_ || stopped_) return;
        log_.info("redis cluster: slots moved to other masters; restoring presence");
        link_.failed_over(std::chrono::steady_clock::now());
        check_keyspace_events();
        restore_presence();
    }

    void on_connected() {
        bool reconnect = link_.connected(std::chrono::steady_clock::now()).reconnect;
        script_error_logged_ = false;
        auto w = weak_from_this();
        if (cluster_) {
            // Expired events from every master; each room's channels on the
            // master of its slot (the client follows them across failovers).
            cluster_->watch_expired();
            for (auto const& room : members_.connection_up()) listen(room);
        } else {
            auto lost = [w](std::string const& why) {
                if (auto self = w.lock()) self->on_lost(self->failed_code(), why);
            };
            cmd_->on_close(lost);
            sub_->on_close(lost);
            sub_->set_push_handler([w](reply&& r) {
                if (auto self = w.lock()) self->on_push(std::move(r));
            });

            // Subscriber: the expired-key channel and every followed room, at once.
            std::vector<std::string> chans{expired_channel_};
            for (auto const& room : members_.connection_up()) {
                chans.push_back(keys_.channel(room));
                chans.push_back(keys_.batch_channel(room));
            }
            std::vector<std::string_view> args{"SUBSCRIBE"};
            for (auto const& c : chans) args.push_back(c);
            sub_->send(std::span<std::string_view const>(args));

            // Scripts first (EVALSHA works from here on). A cluster's nodes
            // get them as each connection opens (cluster/client.hpp).
            scripts_.for_each([&](script const& s) {
                cmd_->send({"SCRIPT", "LOAD", s.source}, [w, name = std::string(s.name)](reply&& r) {
                    auto self = w.lock();
                    if (self && r.type == reply::kind::error)
                        self->log_.error("redis refused a flock Lua script", {{"script", name}, {"error", r.str}});
                });
            });
        }
        // The keyspace-events check, then what Redis may have lost.
        check_keyspace_events();
        auto leaves = std::move(leaves_while_down_);
        leaves_while_down_.clear();
        for (auto const& l : leaves)
            if (!find_local(l.room, l.user)) send_leave(l.room, l.user, l.joined_at);
        restore_presence();

        if (reconnect) {
            ++reconnects_;
            log_.info("redis reconnected", {{"url", url_.redacted()}});
        } else {
            log_.info("redis connected", {{"url", url_.redacted()}, {"instance", instance_}});
        }
        arm_sweep();
        arm_cursor_flush();
        notify_state(true, {});
    }

    void on_lost(boost::system::error_code ec, std::string const& why) {
        auto v = link_.lost(ec, why);
        if (!v.counts) return;
        log_.warn("redis connection lost; local delivery goes on, reconnecting in the background",
                  {{"error", why}});
        close_connections();
        sweep_timer_.cancel();
        cursor_timer_.cancel();
        batch_timer_.cancel();
        batches_.clear();  // dropped, as a PUBLISH is while down
        run_parked(members_.connection_lost(), false);
        notify_state(false, why);
        if (stopping_) return finish_stop();
        schedule_reconnect(v.retry_in);
    }

    /// Runs the parked joins `ids` (ok: their SUBSCRIBE is confirmed or no
    /// longer needed; else they fail).
    void run_parked(std::vector<membership::join_id> const& ids, bool ok) {
        std::vector<std::function<void(bool)>> go;
        for (auto id : ids)
            if (auto p = parked_.find(id); p != parked_.end()) {
                go.push_back(std::move(p->second));
                parked_.erase(p);
            }
        for (auto& f : go) f(ok);
    }

    void close_connections() {
        if (cmd_) cmd_->close();
        if (sub_) sub_->close();
        if (cluster_) cluster_->close();
        cluster_.reset();
    }

    /// Stopping on a cluster: the leaves went to the masters of their rooms'
    /// slots; a PING behind them on each room's master says they have run.
    void drain_cluster(str_set const& rooms) {
        if (rooms.empty()) return finish_stop();
        auto left = std::make_shared<std::size_t>(rooms.size());
        auto w = weak_from_this();
        for (auto const& room : rooms)
            command(keys_.members(room), {"PING"}, [w, left](reply&&) {
                if (--*left == 0)
                    if (auto self = w.lock()) self->finish_stop();
            });
    }

    void notify_state(bool up, std::string const& why) {
        if (state_handler_) {
            auto h = state_handler_;  // may replace itself
            h(up, why);
        }
    }

    void finish_stop() {
        if (stopped_) return;
        stopped_ = true;
        link_.stopped();
        stop_timer_.cancel();
        reconnect_timer_.cancel();
        if (sentinel_) sentinel_->stop();
        close_connections();
        log_.info("redis broker stopped");
        if (!stop_done_) return;
        asio::post(ex_, [w = weak_from_this(), done = std::move(stop_done_)] {
            if (auto self = w.lock(); self && self->events_) done();
        });
    }

    // CONFIG GET notify-keyspace-events: idle eviction needs E and x (A
    // implies x). Off: turn it on if allowed, else say clearly what that costs.
    void check_keyspace_events() {
        auto w = weak_from_this();
        if (cluster_) {  // per node: every master must publish its own expiries
            cluster_->each_master({"CONFIG", "GET", "notify-keyspace-events"},
                                  [w](cluster::node_address const& at, reply&& r) {
                                      auto self = w.lock();
                                      if (!self) return;
                                      self->on_keyspace_events(
                                          std::move(r), [w, at](std::vector<std::string> args,
                                                                connection::reply_handler h) {
                                              auto self = w.lock();
                                              if (!self || !self->cluster_) return;
                                              self->cluster_->send_to(at, std::move(args),
                                                                      [h = std::move(h)](cluster::node_address const&,
                                                                                         reply&& r2) { h(std::move(r2)); });
                                          });
                                  });
            return;
        }
        cmd_->send({"CONFIG", "GET", "notify-keyspace-events"}, [w](reply&& r) {
            auto self = w.lock();
            if (!self) return;
            self->on_keyspace_events(std::move(r), [w](std::vector<std::string> args, connection::reply_handler h) {
                auto self = w.lock();
                if (!self || !self->cmd_) return;
                std::vector<std::string_view> a(args.begin(), args.end());
                self->cmd_->send(std::span<std::string_view const>(a), std::move(h));
            });
        });
    }

    /// The reply to CONFIG GET notify-keyspace-events from one node; `send`
    /// takes a CONFIG SET to that same node.
    template <class Send>
    void on_keyspace_events(reply&& r, Send send) {
        if (!events_) return;
        if (r.is_error() || !r.is_array() || r.elements.size() < 2) {
            if (r.type == reply::kind::io_error) return;
            log_.warn("cannot read redis notify-keyspace-events; make sure it includes Ex, or idle users "
                      "are evicted only by the periodic sweep",
                      {{"error", r.is_error() ? r.str : std::string("unexpected reply")},
                       {"sweep_ms", sweep_every_.count()}});
            return;
        }
        std::string flags = r.elements[1].str;
        bool e = flags.find('E') != std::string::npos;
        bool x = flags.find('x') != std::string::npos || flags.find('A') != std::string::npos;
        if (e && x) return;
        if (!settings_.enable_keyspace_events) return warn_no_expired_events(flags, {});
        std::string wanted = flags;
        if (!e) wanted += 'E';
        if (!x) wanted += 'x';
        auto w = weak_from_this();
        send(std::vector<std::string>{"CONFIG", "SET", "notify-keyspace-events", wanted},
             [w, flags, wanted](reply&& r2) {
                 auto self = w.lock();
                 if (!self || !self->events_ || r2.type == reply::kind::io_error) return;
                 if (r2.is_error()) return self->warn_no_expired_events(flags, r2.str);
                 self->log_.info("enabled redis expired-key events", {{"notify-keyspace-events", wanted}});
             });
    }

    void warn_no_expired_events(std::string const& flags, std::string const& error) {
        log_.warn("redis expired-key events are off (notify-keyspace-events lacks Ex): idle users are evicted "
                  "only by the periodic sweep, up to sweep_ms after their TTL; run CONFIG SET "
                  "notify-keyspace-events Ex on the redis server",
                  {{"notify-keyspace-events", flags}, {"error", error}, {"sweep_ms", sweep_every_.count()}});
    }

    // Presence and cursor of users still connected here, written back after a
    // reconnect (a restarted Redis lost them; otherwise it is a refresh).
    void restore_presence() {
        auto const now = std::chrono::steady_clock::now();
        members_.for_each_local([&](std::string const& room, std::string const& user, local_user& lu) {
                if (lu.pending) return;
                lu.ttl_refreshed_at = now;
                lu.cursor_written = lu.cursor.has_value();
                lu.cursor_written_at = now;
                std::vector<std::string> params{keys_.members(room), keys_.presence(room, user), keys_.cursor(room, user),
                                                user,               lu.meta_json,            lu.joined_at,
                                                instance_,          ttl_};
                if (lu.cursor) {
                    params.push_back(number_text(lu.cursor->x));
                    params.push_back(number_text(lu.cursor->y));
                    params.push_back(std::to_string(lu.cursor_ts));
                } else {
                    params.insert(params.end(), {"", "", ""});
                }
                eval(scripts_.restore, 3, std::move(params), {});
            });
        dirty_.clear();  // restored from the latest positions already
    }

    // ---- commands --------------------------------------------------------------------

    // ---- the link: one Redis (cmd_, sub_) or a Redis Cluster (cluster_) -------------

    /// A command about `key`: on the command connection, or on a cluster to
    /// the master of the key's slot, in order with that slot's commands.
    void command(std::string_view key, std::initializer_list<std::string_view> args,
                 connection::reply_handler h = {}) {
        if (cluster_) return cluster_->send(key, args, std::move(h));
        if (cmd_ && topology_ != topology::cluster) return cmd_->send(args, std::move(h));
        if (h) asio::post(ex_, [h = std::move(h)] { h(reply::io_failure("not connected to redis")); });
    }

    void publish_to(std::string const& ch, std::string_view payload) {
        if (cluster_)
            cluster_->spublish(ch, payload);
        else if (cmd_ && topology_ != topology::cluster)
            cmd_->send({"PUBLISH", ch, payload});
    }

    /// Follows a room's channels (its broadcasts and batches).
    void listen(std::string_view room) {
        if (cluster_) {
            cluster_->ssubscribe(keys_.channel(room));
            cluster_->ssubscribe(keys_.batch_channel(room));
        } else if (sub_) {
            sub_->send({"SUBSCRIBE", keys_.channel(room), keys_.batch_channel(room)});
        }
    }
    void unlisten(std::string_view room) {
        if (cluster_) {
            cluster_->sunsubscribe(keys_.channel(room));
            cluster_->sunsubscribe(keys_.batch_channel(room));
        } else if (sub_) {
            sub_->send({"UNSUBSCRIBE", keys_.channel(room), keys_.batch_channel(room)});
        }
    }

    /// EVALSHA, falling back to EVAL if Redis lost the script (SCRIPT FLUSH).
    /// On a cluster, on the master of the first key's slot (every key of a
    /// call shares it: key_schema tags them by room).
    void eval(script const& s, int numkeys, std::vector<std::string> params, connection::reply_handler h) {
        auto w = weak_from_this();
        auto done = [w, &s, h = std::move(h)](reply&& r) mutable {
            if (auto self = w.lock()) self->on_script_reply(s, r);
            if (h) h(std::move(r));
        };
        if (cluster_) {
            auto const k = static_cast<std::ptrdiff_t>(std::min<std::size_t>(numkeys, params.size()));
            std::vector<std::string> keys(std::make_move_iterator(params.begin()),
                                          std::make_move_iterator(params.begin() + k));
            params.erase(params.begin(), params.begin() + k);
            cluster_->eval(s, std::move(keys), std::move(params), std::move(done));
            return;
        }
        if (!cmd_ || topology_ == topology::cluster) {
            asio::post(ex_, [done = std::move(done)]() mutable { done(reply::io_failure("not connected to redis")); });
            return;
        }
        auto shared = std::make_shared<std::vector<std::string>>(std::move(params));
        auto n = std::to_string(numkeys);
        std::vector<std::string_view> args{"EVALSHA", s.sha1, n};
        for (auto const& p : *shared) args.push_back(p);
        cmd_->send(std::span<std::string_view const>(args),
                   [w, &s, shared, n, done = std::move(done)](reply&& r) mutable {
                       auto self = w.lock();
                       if (self && self->up() && self->cmd_ && error_of(r) == redis_errc::no_script) {
                           std::vector<std::string_view> a{"EVAL", s.source, n};
                           for (auto const& p : *shared) a.push_back(p);
                           self->cmd_->send(std::span<std::string_view const>(a), std::move(done));
                           return;
                       }
                       done(std::move(r));
                   });
    }

    void on_script_reply(script const& s, reply const& r) {
        auto const ec = error_of(r);
        if (ec == redis_errc::read_only_replica && !cluster_) {
            // A failover left us on a replica: reconnect (the address may
            // now lead to the new primary). A cluster client re-routes itself.
            on_lost(ec, "redis is a read-only replica: " + r.str);
        } else if (ec && ec != redis_errc::connection_lost) {
            // Once per connection (an out-of-memory Redis fails every write).
            auto level = std::exchange(script_error_logged_, true) ? log_level::debug : log_level::warn;
            log_(level, "redis script failed", {{"script", s.name}, {"error", r.str}});
        }
    }

    void send_leave(std::string_view room, std::string_view user, std::string const& joined_at) {
        auto w = weak_from_this();
        eval(scripts_.leave, 3,
             {keys_.members(room), keys_.presence(room, user), keys_.cursor(room, user), std::string(user), instance_,
              joined_at},
             [w, room = std::string(room), user = std::string(user)](reply&& r) {
                 auto self = w.lock();
                 if (self && r.type == reply::kind::integer && r.integer == 0)
                     self->log_.debug("leave kept the presence: the user is live on another instance",
                                      {{"room", room}, {"user", user}});
             });
    }

    void publish_impl(std::string_view room, server_message const& msg) {
        ++published_;
        auto inner = codec_.encode(msg);
        bool const is_left = std::holds_alternative<server::user_left>(msg);
        if (settings_.publish_batch.count() > 0 && !is_left) {
            auto& b = batches_[std::string(room)];
            b.add(instance_, inner);
            if (b.bytes() >= max_batch_bytes)
                flush_batch(room);
            else
                arm_batch();
            return;
        }
        flush_batch(room);  // what was gathered goes first: one order per sender
        std::string env;
        env.reserve(inner.size() + instance_.size() + 32);
        env += R"({"instanceId":")";
        env += instance_;
        env += R"(","message":)";
        env += inner;
        env += '}';
        if (auto const* left = std::get_if<server::user_left>(&msg)) {
            // Not announced when the user re-joined on another instance:
            // this is a stale socket going, the user is still there.
            eval(cluster_ ? scripts_.publish_left_sharded : scripts_.publish_left, 1,
                 {keys_.presence(room, left->user_id), keys_.channel(room), std::move(env), instance_}, {});
            return;
        }
        publish_to(keys_.channel(room), env);
    }

    // ---- calls into the core --------------------------------------------------------
    // Whatever the core throws is logged and dropped here: it must not unwind
    // through the Redis connection's read loop and stop the event loop.

    template <class F>
    void tell_core(std::string_view what, F&& f) {
        detail::contain(log_, what, std::forward<F>(f));
    }
    void answer(join_handler const& h, join_result res) {
        tell_core("join handler", [&] { h(std::move(res)); });
    }

    // ---- joins -----------------------------------------------------------------------

    local_user* find_local(std::string_view room, std::string_view user) { return members_.find_local(room, user); }
    bool up() const noexcept { return link_.up(); }

    void on_join_reply(std::string const& room, std::string const& user, std::uint64_t seq, reply&& r,
                       join_handler const& handler) {
        if (r.is_error() || !r.is_array() || r.elements.empty() || r.elements[0].type != reply::kind::integer) {
            if (r.type != reply::kind::io_error && !r.is_error())
                log_.warn("unexpected reply to the join script", {{"room", room}});
            members_.join_failed(room, user, seq);
            return answer(handler, join_result{join_result::status::failed, {}});
        }
        if (r.elements[0].integer == 0) {
            members_.join_failed(room, user, seq);
            return answer(handler, join_result{join_result::status::room_full, {}});
        }
        join_result res{join_result::status::joined, parse_members(r, 1)};
        members_.join_succeeded(room, user, seq, res.others);
        answer(handler, std::move(res));
    }

    // ---- subscriber ------------------------------------------------------------------

    void on_push(reply&& r) {
        if (!events_) return;
        if (r.is_error()) {
            log_.warn("redis subscriber error", {{"error", r.str}});
            return;
        }
        if (!r.is_array() || r.elements.empty()) return;
        auto const& kind = r.elements[0].str;
        if (kind == "message" && r.elements.size() >= 3) {
            auto const& ch = r.elements[1].str;
            if (ch == expired_channel_) {
                ++received_;
                on_expired(r.elements[2].str);
            } else {
                on_message(ch, r.elements[2].str);
            }
        } else if (kind == "subscribe" && r.elements.size() >= 2) {
            on_channel_subscribed(r.elements[1].str);
        }
    }

    /// A message on a room's channel (PUBLISH, or SPUBLISH on a cluster).
    void on_message(std::string const& ch, std::string const& payload) {
        if (!events_) return;
        ++received_;
        if (auto room = keys_.room_of_channel(ch))
            on_broadcast(*room, payload);
        else if (auto broom = keys_.room_of_batch_channel(ch))
            on_batch(*broom, payload);
    }

    void on_channel_subscribed(std::string const& ch) {
        if (auto room = keys_.room_of_channel(ch))
            on_subscribed(*room);
        else if (auto broom = keys_.room_of_batch_channel(ch))
            on_subscribed(*broom);
    }

    void on_subscribed(std::string_view room) { run_parked(members_.subscribe_confirmed(room), true); }

    void on_broadcast(std::string_view room, std::string_view payload) {
        if (!members_.following(room)) return;  // unsubscribed meanwhile
        json_wire::stack_arena arena;  // as a client's frame: a typical envelope parses without the heap
        auto v = json_wire::parse(payload, arena);
        auto const* env = v ? v->if_object() : nullptr;
        if (!env) return log_.debug("dropped a broadcast that is not a JSON object", {{"room", room}});
        auto const* id = env->if_contains("instanceId");
        if (id && id->is_string() && id->get_string() == instance_) return;  // our own
        auto const* inner = env->if_contains("message");
        auto msg = inner ? json_codec::server_from_json(*inner) : std::nullopt;
        if (!msg) return log_.debug("dropped a broadcast without a valid message", {{"room", room}});
        deliver_remote(std::string(room), *msg);
    }

    // A batch (FLOCK_REDIS_BATCH_MS, batch.hpp): its messages one by one, in
    // order, as if each had come in its own envelope.
    void on_batch(std::string_view room_view, std::string_view payload) {
        if (!members_.following(room_view)) return;
        std::string room(room_view);
        auto b = parse_batch(payload);
        if (!b) return log_.debug("dropped a batch that is not a batch envelope", {{"room", room}});
        if (b->instance_id == instance_) return;  // our own
        for (auto const& m : b->messages) {
            // The core may leave or unsubscribe from inside a delivery.
            if (!events_ || !members_.following(room)) return;
            auto msg = json_codec::server_from_json(m);
            if (!msg) {
                log_.debug("dropped a batched message that is not valid", {{"room", room}});
                continue;
            }
            deliver_remote(room, *msg);
        }
    }

    void deliver_remote(std::string const& room, server_message const& msg) {
        if (!members_.following(room)) return;
        if (!members_.remote_message(room, msg))
            return log_.debug("dropped user:left of a user not in the room", {{"room", room}});
        tell_core("on_remote", [&] { events_->on_remote(room, msg); });
        if (auto const* joined = std::get_if<server::user_joined>(&msg)) {
            // Whether this user:joined replaced our member is the core's call
            // (it closes that socket): ask it, then follow its answer.
            bool holds = false;
            if (events_) tell_core("holds_member", [&] { holds = events_->holds_member(room, joined->user_id); });
            if (members_.remote_join_settled(room, joined->user_id, holds)) drop_dirty_cursor(room, joined->user_id);
        }
    }

    void on_expired(std::string_view key) {
        auto hits = keys_.parse_presence(key, [this](std::string_view room) { return members_.following(room); });
        if (hits.empty()) return;
        std::vector<std::pair<std::string, std::string>> gone;
        for (auto const& [room, user] : hits) gone.emplace_back(room, user);
        for (auto const& [room, user] : gone) {
            switch (members_.expired(room, user)) {
            case membership::expiry::ignore: break;
            case membership::expiry::evict: report_eviction(room, user); break;
            case membership::expiry::confirm_first: {
                // One of ours: the reply to a re-join on the command connection
                // may have overtaken this event. Report it only if the key is
                // still gone once the commands sent so far have run.
                auto w = weak_from_this();
                auto const key = keys_.presence(room, user);
                command(key, {"EXISTS", key}, [w, r = room, u = user](reply&& rep) {
                    auto self = w.lock();
                    if (!self || rep.type != reply::kind::integer || rep.integer != 0) return;
                    self->report_eviction(r, u);
                });
                break;
            }
            }
        }
    }

    void report_eviction(std::string const& room, std::string const& user) {
        if (!events_) return;
        auto e = members_.evict(room, user);
        if (e.forgot_local) drop_dirty_cursor(room, user);
        if (!e.report) return;
        log_.debug("presence expired", {{"room", room}, {"user", user}});
        tell_core("on_evicted", [&] { events_->on_evicted(room, user); });
    }

    // ---- the sweep -------------------------------------------------------------------

    void arm_sweep() {
        sweep_timer_.expires_after(sweep_every_);
        auto w = weak_from_this();
        sweep_timer_.async_wait([w](boost::system::error_code ec) {
            if (ec) return;
            auto self = w.lock();
            if (!self || !self->up() || self->stopping_) return;
            self->sweep();
            self->arm_sweep();
        });
    }

    void sweep() {
        if (!link_.may_sweep(std::chrono::steady_clock::now())) return;
        auto issued = members_.sweep_started();
        auto w = weak_from_this();
        for (auto const& room : members_.rooms()) {
            std::vector<std::string> params{keys_.members(room), keys_.presence_prefix_of(room), keys_.cursor_prefix_of(room)};
            for (auto& user : members_.known_users(room)) params.push_back(std::move(user));
            eval(scripts_.sweep, 1, std::move(params), [w, room = room, issued](reply&& r) {
                if (auto self = w.lock()) self->on_sweep_reply(room, issued, std::move(r));
            });
        }
    }

    void on_sweep_reply(std::string const& room, std::uint64_t issued, reply&& r) {
        if (!events_ || r.is_error() || !r.is_array() || r.elements.size() != 2) return;
        if (!members_.following(room)) return;
        std::vector<std::string> gone;
        for (auto const& g : r.elements[0].elements) gone.push_back(g.str);
        auto v = members_.sweep_reply(room, issued, gone, parse_members(r.elements[1], 0));

        // The core may leave, unsubscribe or stop from inside these calls.
        for (auto const& user : v.evicted) report_eviction(room, user);
        for (auto& m : v.fresh) {
            if (!events_ || !members_.following(room)) return;
            log_.info("a member missed while disconnected is in the room", {{"room", room}, {"user", m.user_id}});
            tell_core("on_remote", [&] { events_->on_remote(room, server::user_joined{room, m.user_id, m.meta}); });
            if (m.cursor && events_ && members_.following(room))
                tell_core("on_remote", [&] {
                    events_->on_remote(room, server::cursor_updated{room, m.user_id, *m.cursor, now_ms()});
                });
        }
    }

    // ---- cursors ---------------------------------------------------------------------

    void arm_cursor_flush() {
        if (cursor_armed_ || dirty_.empty() || !up() || stopping_) return;
        cursor_armed_ = true;
        cursor_timer_.expires_after(settings_.cursor_quiet);
        auto w = weak_from_this();
        cursor_timer_.async_wait([w](boost::system::error_code ec) {
            auto self = w.lock();
            if (!self) return;
            self->cursor_armed_ = false;
            if (ec || !self->up() || self->stopping_) return;
            self->flush_cursors();
        });
    }

    // Every cursor_quiet: the dirty cursors that stopped (no move for
    // cursor_quiet) or whose Redis copy is cursor_flush_interval old, all in
    // one script call; the others wait for a later flush.
    void flush_cursors() {
        auto const now = std::chrono::steady_clock::now();
        std::vector<cursor_write> due;
        for (auto rm = dirty_.begin(); rm != dirty_.end();) {
            auto& users = rm->second;
            for (auto u = users.begin(); u != users.end();) {
                auto* lu = find_local(rm->first, u->first);
                if (lu && now - u->second.moved_at < settings_.cursor_quiet &&
                    now - lu->cursor_written_at < settings_.cursor_flush_interval) {
                    ++u;
                    continue;
                }
                due.push_back({keys_.cursor(rm->first, u->first), u->second.pos, u->second.ts});
                if (lu) {
                    lu->cursor_written = true;
                    lu->cursor_written_at = now;
                }
                u = users.erase(u);
            }
            rm = users.empty() ? dirty_.erase(rm) : std::next(rm);
        }
        write_cursors(due);
        arm_cursor_flush();
    }

    /// One `cursors` script call per max_cursors_per_call cursors; on a
    /// cluster, per hash slot too (a script's keys must share one slot).
    void write_cursors(std::vector<cursor_write> const& cs) {
        if (!cluster_) return write_cursor_calls(cs);
        std::map<std::uint16_t, std::vector<cursor_write>> by_slot;
        for (auto const& c : cs) by_slot[cluster::key_slot(c.key)].push_back(c);
        for (auto const& [slot, group] : by_slot) write_cursor_calls(group);
    }

    void write_cursor_calls(std::vector<cursor_write> const& cs) {
        for (std::size_t first = 0; first < cs.size(); first += max_cursors_per_call) {
            auto const n = std::min(cs.size() - first, max_cursors_per_call);
            std::vector<std::string> params;
            params.reserve(4 * n + 1);
            for (std::size_t i = first; i < first + n; ++i) params.push_back(cs[i].key);
            params.push_back(ttl_);
            for (std::size_t i = first; i < first + n; ++i) {
                params.push_back(number_text(cs[i].pos.x));
                params.push_back(number_text(cs[i].pos.y));
                params.push_back(std::to_string(cs[i].ts));
            }
            eval(scripts_.cursors, static_cast<int>(n), std::move(params), {});
        }
    }

    // ---- batched publishing (FLOCK_REDIS_BATCH_MS) ----------------------------------

    void arm_batch() {
        if (batch_armed_ || !up() || stopping_) return;
        batch_armed_ = true;
        batch_timer_.expires_after(settings_.publish_batch);
        auto w = weak_from_this();
        batch_timer_.async_wait([w](boost::system::error_code ec) {
            auto self = w.lock();
            if (!self) return;
            self->batch_armed_ = false;
            if (ec || !self->up()) return;
            self->flush_batches();
        });
    }

    void flush_batch(std::string_view room) {
        auto it = batches_.find(room);
        if (it == batches_.end()) return;
        auto env = it->second.take();
        batches_.erase(it);
        if (up()) publish_to(keys_.batch_channel(room), env);
    }

    void flush_batches() {
        auto all = std::move(batches_);
        batches_.clear();
        for (auto& [room, b] : all)
            if (!b.empty() && up()) publish_to(keys_.batch_channel(room), b.take());
    }

    void drop_dirty_cursor(std::string_view room, std::string_view user) {
        auto rm = dirty_.find(room);
        if (rm == dirty_.end()) return;
        if (auto u = rm->second.find(user); u != rm->second.end()) rm->second.erase(u);
        if (rm->second.empty()) dirty_.erase(rm);
    }

    // ---- state -----------------------------------------------------------------------

    asio::any_io_executor ex_;
    broker_events* events_;
    logger log_;
    redis_settings settings_;
    url url_;
    std::string ttl_;
    std::string instance_;
    std::string expired_channel_;
    script_set scripts_;
    json_codec codec_;
    std::unique_ptr<asio::ssl::context> tls_;

    enum class topology { unknown, single, cluster };
    topology topology_ = topology::unknown;  ///< found on the first connection (on_links_open)
    key_schema keys_;                        ///< tagged by room on a cluster
    std::shared_ptr<cluster::client> cluster_;   ///< cluster mode, while connected
    std::shared_ptr<sentinel_client> sentinel_;  ///< redis+sentinel:// only
    endpoint master_;                            ///< redis+sentinel://: the master last resolved
    std::shared_ptr<connection> cmd_, sub_;
    std::shared_ptr<connection_stats> stats_ = std::make_shared<connection_stats>();
    std::uint64_t reconnects_ = 0, published_ = 0, received_ = 0;
    bool started_ = false, stopping_ = false, stopped_ = false;
    std::uint64_t attempt_ = 0;
    reconnect_policy link_;  ///< up or down, the last error, the backoff
    state_handler state_handler_;
    std::function<void()> stop_done_;

    membership members_;  ///< rooms, local users, known/unconfirmed/evicted members
    std::unordered_map<membership::join_id, std::function<void(bool ok)>> parked_;  ///< joins awaiting SUBSCRIBE
    str_map<str_map<dirty_cursor>> dirty_; ///< cursor writes not flushed yet
    str_map<batch_builder> batches_;       ///< broadcasts gathered per room (publish_batch)
    std::vector<pending_leave> leaves_while_down_;

    std::chrono::milliseconds sweep_every_{1000};
    std::chrono::milliseconds ttl_refresh_after_{10000};
    bool cursor_armed_ = false;
    bool batch_armed_ = false;
    static constexpr std::size_t max_cursors_per_call = 512;
    static constexpr std::size_t max_batch_bytes = 32 * 1024;
    bool script_error_logged_ = false;

    asio::steady_timer reconnect_timer_, sweep_timer_, cursor_timer_, stop_timer_, batch_timer_;
};

}  // namespace detail::redis

}  // namespace flk
