// The machinery of flk::redis_broker: connections, scripts, subscriptions,
// sweeps and reconnection. See include/flock/broker/redis.hpp for what it does.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/broker/redis_settings.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/contain.hpp>
#include <flock/detail/redis/batch.hpp>
#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/sentinel.hpp>
#include <flock/detail/redis/keys.hpp>
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
#include <memory>
#include <optional>
#include <random>
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
          reconnect_timer_(ex),
          sweep_timer_(ex),
          cursor_timer_(ex),
          stop_timer_(ex),
          batch_timer_(ex),
          rng_(std::random_device{}()) {
        sweep_every_ = settings_.sweep_interval
                           ? *settings_.sweep_interval
                           : std::max<std::chrono::milliseconds>(std::chrono::seconds(1),
                                                                 std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                     opts.presence_ttl) / 4);
        grace_ = settings_.restore_grace ? *settings_.restore_grace : 2 * settings_.reconnect_max;
        // A third of the TTL, but below the heartbeat interval: a user who
        // only heartbeats refreshes on every heartbeat, as before, so a late
        // or lost heartbeat costs it no more than it did.
        ttl_refresh_after_ = settings_.ttl_refresh_after
                                 ? *settings_.ttl_refresh_after
                                 : std::min(std::chrono::duration_cast<std::chrono::milliseconds>(opts.presence_ttl) / 3,
                                            opts.heartbeat_interval * 4 / 5);
        if (url_.tls) make_tls_context();
        if (url_.sentinel()) {
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
        if (!up_) return finish_stop();
        flush_batches();

        // Users the core did not leave: announced and removed here.
        std::vector<std::pair<std::string, std::string>> users;
        for (auto const& [room, members] : locals_)
            for (auto const& [user, lu] : members)
                if (!lu.pending) users.emplace_back(room, user);
        for (auto const& [room, user] : users) {
            publish_impl(room, server::user_left{room, user});
            leave(room, user);
        }
        sub_->send({"UNSUBSCRIBE"});
        auto w = weak_from_this();
        cmd_->send({"PING"}, [w](reply&&) {
            if (auto self = w.lock()) self->finish_stop();
        });
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
        if (!up_ || stopping_ || stopped_) {
            asio::post(ex_, [w, h = std::move(handler)] {
                if (auto self = w.lock(); self && self->events_)
                    self->answer(h, join_result{join_result::status::failed, {}});
            });
            return;
        }
        auto seq = ++join_seq_;
        auto& lu = locals_[req.room_id][req.user_id];
        lu = local_user{};
        lu.meta_json = boost::json::serialize(req.meta);
        lu.joined_at = std::to_string(now_ms());
        lu.pending = true;
        lu.seq = seq;
        std::string room = req.room_id;
        auto rs = rooms_.find(room);
        if (rs != rooms_.end()) mark_known(rs->second, req.user_id);

        auto go = [w, req = std::move(req), handler = std::move(handler), seq, meta = lu.meta_json,
                   joined_at = lu.joined_at](bool ok) mutable {
            auto self = w.lock();
            if (!self || !self->events_) return;  // the broker (and so the core) is gone
            if (!ok || !self->up_) {
                self->forget_pending(req.room_id, req.user_id, seq);
                return self->answer(handler, join_result{join_result::status::failed, {}});
            }
            std::vector<std::string> params{members_key(req.room_id),
                                            presence_key(req.room_id, req.user_id),
                                            presence_key_prefix(req.room_id),
                                            cursor_key_prefix(req.room_id),
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
        if (rs != rooms_.end() && !rs->second.confirmed)
            rs->second.waiting.push_back(std::move(go));
        else
            go(true);
    }

    void leave(std::string_view room, std::string_view user) {
        std::string joined_at;
        if (auto rm = locals_.find(room); rm != locals_.end()) {
            if (auto u = rm->second.find(user); u != rm->second.end()) {
                joined_at = u->second.joined_at;
                rm->second.erase(u);
            }
            if (rm->second.empty()) locals_.erase(rm);
        }
        drop_dirty_cursor(room, user);
        if (auto r = rooms_.find(room); r != rooms_.end()) r->second.known.erase(std::string(user));
        if (stopped_) return;
        if (!up_) {
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
        if (!up_ || stopping_) return;
        auto* lu = find_local(room, user);
        auto const now = std::chrono::steady_clock::now();
        if (lu) {
            if (now - lu->ttl_refreshed_at < ttl_refresh_after_) return;
            lu->ttl_refreshed_at = now;
        }
        cmd_->send({"EXPIRE", presence_key(room, user), ttl_});
        // No cursor of this session: nothing of ours to keep alive.
        if (!lu || lu->cursor) cmd_->send({"EXPIRE", cursor_key(room, user), ttl_});
    }

    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        auto json = boost::json::serialize(meta);
        auto* lu = find_local(room, user);
        if (lu) lu->meta_json = json;
        if (!up_ || stopping_) return;
        if (lu) lu->ttl_refreshed_at = std::chrono::steady_clock::now();  // the script refreshes the TTL
        eval(scripts_.set_metadata, 1, {presence_key(room, user), std::move(json), ttl_}, {});
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
        if (up_ && lu && !lu->cursor_written) {
            drop_dirty_cursor(room, user);
            std::vector<cursor_write> one;
            one.push_back({cursor_key(room, user), pos, ts});
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
        if (!up_ || stopping_) return;
        cmd_->send({"DEL", cursor_key(room, user)});
    }

    void publish(std::string_view room, server_message const& msg) {
        if (!up_ || stopping_) return;
        publish_impl(room, msg);
    }

    void subscribe(std::string_view room) {
        if (stopping_ || stopped_) return;
        auto [it, fresh] = rooms_.try_emplace(std::string(room));
        if (!fresh) return;
        if (up_) {
            sub_acks_[it->first] += 2;  // one per channel
            sub_->send({"SUBSCRIBE", channel(room), batch_channel(room)});
        }
    }

    void unsubscribe(std::string_view room) {
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return;
        auto waiting = std::move(it->second.waiting);
        rooms_.erase(it);
        if (up_) flush_batch(room);
        if (up_ && !stopping_) sub_->send({"UNSUBSCRIBE", channel(room), batch_channel(room)});
        for (auto& w : waiting) w(true);  // nothing to wait for any more
    }

    void health(boost::json::object& h) const { h["redis"] = up_ ? "up" : "down"; }

    /// Adds this broker's counters (one Redis instance) to `m`.
    void collect_metrics(metrics_snapshot& m) const {
        redis_metrics r;
        r.up = up_ ? 1 : 0;
        r.reconnects = reconnects_;
        r.commands_sent = stats_->commands;
        r.published = published_;
        r.received = received_;
        r.round_trip = stats_->round_trip;
        m.redis.add(r);
        ++m.redis_shards;
    }

    // ---- observers -------------------------------------------------------------------

    bool connected() const noexcept { return up_; }
    std::string const& last_error() const noexcept { return last_error_; }
    std::string const& instance_id() const noexcept { return instance_; }
    std::chrono::milliseconds sweep_interval() const noexcept { return sweep_every_; }
    void on_state_change(state_handler h) { state_handler_ = std::move(h); }
    url const& target() const noexcept { return url_; }

private:
    struct local_user {
        std::string meta_json;
        std::string joined_at;  ///< ms since the epoch, as stored in the hash
        std::optional<position> cursor;
        std::int64_t cursor_ts = 0;
        std::chrono::steady_clock::time_point cursor_written_at{};  ///< last HSET of the cursor
        bool cursor_written = false;  ///< a cursor hash of this session is (being) written
        std::chrono::steady_clock::time_point ttl_refreshed_at = std::chrono::steady_clock::now();
        bool pending = false;  ///< join script not answered yet
        std::uint64_t seq = 0;
    };
    struct room_state {
        /// Users this instance has told the core about, with the stamp of
        /// the last sign of them (a newer stamp than a sweep's voids its verdict).
        str_map<std::uint64_t> known;
        /// Live members unknown here, seen by the last sweep: told to the
        /// core when the next sweep still sees them (by then any user:joined
        /// on its way has arrived).
        str_set unconfirmed;
        /// Users reported evicted, with the sweep count then: a sweep that
        /// finds them gone again (the set entry a keyspace event left) does
        /// not report them twice.
        str_map<std::uint64_t> evicted;
        /// The last position relayed here of each remote user with a cursor:
        /// merged into snapshots, so a joiner sees what the room saw even
        /// before the writer's coalesced cursor write reaches Redis.
        str_map<position> relayed_cursors;
        bool confirmed = false;  ///< SUBSCRIBE acknowledged
        std::vector<std::function<void(bool ok)>> waiting;  ///< joins waiting for it
    };
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
        if (!sentinel_) return connect_to(url_);
        // redis+sentinel://: ask the sentinels for the master first.
        ++attempt_;
        auto w = weak_from_this();
        sentinel_->resolve([w, attempt = attempt_](std::string const& error, url const& master) {
            auto self = w.lock();
            if (!self || self->stopped_ || self->stopping_ || self->attempt_ != attempt) return;
            if (!error.empty()) return self->on_connect_failed(error);
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
        if (up_ && e == master_) return;
        if (up_) on_lost("sentinel: the master moved to " + e.text());
        if (stopping_ || stopped_) return;
        backoff_step_ = 0;
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
                self->on_connected();
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

    void on_connect_failed(std::string const& why) {
        close_connections();
        bool first_report = why != last_error_;
        last_error_ = why;
        if (first_report) {
            // Once per distinct cause, not once per attempt.
            if (ever_up_)
                log_.warn("redis unavailable, retrying in the background", {{"error", why}});
            else
                log_.error("cannot connect to redis, retrying in the background",
                           {{"url", url_.redacted()}, {"error", why}});
        } else {
            log_.debug("redis connect attempt failed", {{"error", why}, {"attempt", attempt_}});
        }
        notify_state(false, why);
        schedule_reconnect();
    }

    void schedule_reconnect() {
        if (stopping_ || stopped_) return;
        auto base = settings_.reconnect_min.count() << std::min<int>(backoff_step_, 16);
        auto delay = std::min<long long>(base, settings_.reconnect_max.count());
        ++backoff_step_;
        std::uniform_int_distribution<long long> jitter(0, delay / 5);
        delay += jitter(rng_);
        reconnect_timer_.expires_after(std::chrono::milliseconds(delay));
        auto w = weak_from_this();
        reconnect_timer_.async_wait([w](boost::system::error_code ec) {
            if (ec) return;
            if (auto self = w.lock()) self->connect();
        });
    }

    void on_connected() {
        bool reconnect = ever_up_;
        script_error_logged_ = false;
        up_ = true;
        ever_up_ = true;
        backoff_step_ = 0;
        last_error_.clear();
        auto w = weak_from_this();
        auto lost = [w](std::string const& why) {
            if (auto self = w.lock()) self->on_lost(why);
        };
        cmd_->on_close(lost);
        sub_->on_close(lost);
        sub_->set_push_handler([w](reply&& r) {
            if (auto self = w.lock()) self->on_push(std::move(r));
        });

        // Subscriber: the expired-key channel and every followed room, at once.
        sub_acks_.clear();
        std::vector<std::string> chans{expired_channel_};
        for (auto& [room, st] : rooms_) {
            st.confirmed = false;
            st.unconfirmed.clear();
            sub_acks_[room] += 2;
            chans.push_back(channel(room));
            chans.push_back(batch_channel(room));
        }
        std::vector<std::string_view> args{"SUBSCRIBE"};
        for (auto const& c : chans) args.push_back(c);
        sub_->send(std::span<std::string_view const>(args));

        // Commands: scripts first (EVALSHA works from here on), the
        // keyspace-events check, then what Redis may have lost.
        scripts_.for_each([&](script const& s) {
            cmd_->send({"SCRIPT", "LOAD", s.source}, [w, name = std::string(s.name)](reply&& r) {
                auto self = w.lock();
                if (self && r.type == reply::kind::error)
                    self->log_.error("redis refused a flock Lua script", {{"script", name}, {"error", r.str}});
            });
        });
        check_keyspace_events();
        auto leaves = std::move(leaves_while_down_);
        leaves_while_down_.clear();
        for (auto const& l : leaves)
            if (!find_local(l.room, l.user)) send_leave(l.room, l.user, l.joined_at);
        restore_presence();

        if (reconnect) {
            ++reconnects_;
            grace_until_ = std::chrono::steady_clock::now() + grace_;
            log_.info("redis reconnected", {{"url", url_.redacted()}});
        } else {
            log_.info("redis connected", {{"url", url_.redacted()}, {"instance", instance_}});
        }
        arm_sweep();
        arm_cursor_flush();
        notify_state(true, {});
    }

    void on_lost(std::string const& why) {
        if (!up_) return;
        up_ = false;
        last_error_ = why;
        log_.warn("redis connection lost; local delivery goes on, reconnecting in the background",
                  {{"error", why}});
        close_connections();
        sweep_timer_.cancel();
        cursor_timer_.cancel();
        batch_timer_.cancel();
        batches_.clear();  // dropped, as a PUBLISH is while down
        sub_acks_.clear();
        std::vector<std::function<void(bool)>> waiting;
        for (auto& [room, st] : rooms_) {
            st.confirmed = false;
            for (auto& f : st.waiting) waiting.push_back(std::move(f));
            st.waiting.clear();
        }
        for (auto& f : waiting) f(false);
        notify_state(false, why);
        if (stopping_) return finish_stop();
        schedule_reconnect();
    }

    void close_connections() {
        if (cmd_) cmd_->close();
        if (sub_) sub_->close();
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
        up_ = false;
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
        cmd_->send({"CONFIG", "GET", "notify-keyspace-events"}, [w](reply&& r) {
            auto self = w.lock();
            if (!self || !self->events_) return;
            if (r.is_error() || !r.is_array() || r.elements.size() < 2) {
                if (r.type == reply::kind::io_error) return;
                self->log_.warn("cannot read redis notify-keyspace-events; make sure it includes Ex, or idle users "
                                "are evicted only by the periodic sweep",
                                {{"error", r.is_error() ? r.str : std::string("unexpected reply")},
                                 {"sweep_ms", self->sweep_every_.count()}});
                return;
            }
            std::string flags = r.elements[1].str;
            bool e = flags.find('E') != std::string::npos;
            bool x = flags.find('x') != std::string::npos || flags.find('A') != std::string::npos;
            if (e && x) return;
            if (!self->settings_.enable_keyspace_events) return self->warn_no_expired_events(flags, {});
            std::string wanted = flags;
            if (!e) wanted += 'E';
            if (!x) wanted += 'x';
            self->cmd_->send({"CONFIG", "SET", "notify-keyspace-events", wanted}, [w, flags, wanted](reply&& r2) {
                auto self = w.lock();
                if (!self || !self->events_ || r2.type == reply::kind::io_error) return;
                if (r2.is_error()) return self->warn_no_expired_events(flags, r2.str);
                self->log_.info("enabled redis expired-key events", {{"notify-keyspace-events", wanted}});
            });
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
        for (auto& [room, users] : locals_)
            for (auto& [user, lu] : users) {
                if (lu.pending) continue;
                lu.ttl_refreshed_at = now;
                lu.cursor_written = lu.cursor.has_value();
                lu.cursor_written_at = now;
                std::vector<std::string> params{members_key(room), presence_key(room, user), cursor_key(room, user),
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
            }
        dirty_.clear();  // restored from the latest positions already
    }

    // ---- commands --------------------------------------------------------------------

    /// EVALSHA, falling back to EVAL if Redis lost the script (SCRIPT FLUSH).
    void eval(script const& s, int numkeys, std::vector<std::string> params, connection::reply_handler h) {
        auto shared = std::make_shared<std::vector<std::string>>(std::move(params));
        auto n = std::to_string(numkeys);
        std::vector<std::string_view> args{"EVALSHA", s.sha1, n};
        for (auto const& p : *shared) args.push_back(p);
        auto w = weak_from_this();
        cmd_->send(std::span<std::string_view const>(args),
                   [w, &s, shared, n, h = std::move(h)](reply&& r) mutable {
                       auto self = w.lock();
                       if (self && self->up_ && r.is_error_code("NOSCRIPT")) {
                           std::vector<std::string_view> a{"EVAL", s.source, n};
                           for (auto const& p : *shared) a.push_back(p);
                           self->cmd_->send(std::span<std::string_view const>(a), std::move(h));
                           return;
                       }
                       if (self && r.is_error_code("READONLY")) {
                           // A failover left us on a replica: reconnect (the
                           // address may now lead to the new primary).
                           self->on_lost("redis is a read-only replica: " + r.str);
                       } else if (self && r.type == reply::kind::error) {
                           // Once per connection (an out-of-memory Redis fails every write).
                           auto level = std::exchange(self->script_error_logged_, true) ? log_level::debug
                                                                                         : log_level::warn;
                           self->log_(level, "redis script failed", {{"script", s.name}, {"error", r.str}});
                       }
                       if (h) h(std::move(r));
                   });
    }

    void send_leave(std::string_view room, std::string_view user, std::string const& joined_at) {
        auto w = weak_from_this();
        eval(scripts_.leave, 3,
             {members_key(room), presence_key(room, user), cursor_key(room, user), std::string(user), instance_,
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
            eval(scripts_.publish_left, 1, {presence_key(room, left->user_id), channel(room), std::move(env), instance_},
                 {});
            return;
        }
        cmd_->send({"PUBLISH", channel(room), env});
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

    void mark_known(room_state& st, std::string const& user) {
        st.known[user] = ++stamp_;
        st.unconfirmed.erase(user);
        st.evicted.erase(user);
    }

    local_user* find_local(std::string_view room, std::string_view user) {
        auto rm = locals_.find(room);
        if (rm == locals_.end()) return nullptr;
        auto u = rm->second.find(user);
        return u == rm->second.end() ? nullptr : &u->second;
    }

    void forget_pending(std::string const& room, std::string const& user, std::uint64_t seq) {
        auto rm = locals_.find(room);
        if (rm == locals_.end()) return;
        auto u = rm->second.find(user);
        if (u == rm->second.end() || u->second.seq != seq) return;
        rm->second.erase(u);
        if (rm->second.empty()) locals_.erase(rm);
        if (auto r = rooms_.find(room); r != rooms_.end()) r->second.known.erase(user);
    }

    void on_join_reply(std::string const& room, std::string const& user, std::uint64_t seq, reply&& r,
                       join_handler const& handler) {
        if (r.is_error() || !r.is_array() || r.elements.empty() || r.elements[0].type != reply::kind::integer) {
            if (r.type != reply::kind::io_error && !r.is_error())
                log_.warn("unexpected reply to the join script", {{"room", room}});
            forget_pending(room, user, seq);
            return answer(handler, join_result{join_result::status::failed, {}});
        }
        if (r.elements[0].integer == 0) {
            forget_pending(room, user, seq);
            return answer(handler, join_result{join_result::status::room_full, {}});
        }
        join_result res{join_result::status::joined, parse_members(r, 1)};
        merge_relayed_cursors(room, res.others);
        if (auto* lu = find_local(room, user); lu && lu->seq == seq) lu->pending = false;
        if (auto rs = rooms_.find(room); rs != rooms_.end())
            for (auto const& m : res.others) mark_known(rs->second, m.user_id);
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
            ++received_;
            auto const& ch = r.elements[1].str;
            auto const& payload = r.elements[2].str;
            if (ch == expired_channel_)
                on_expired(payload);
            else if (auto room = room_of_channel(ch))
                on_broadcast(*room, payload);
            else if (auto broom = room_of_batch_channel(ch))
                on_batch(*broom, payload);
        } else if (kind == "subscribe" && r.elements.size() >= 2) {
            if (auto room = room_of_channel(r.elements[1].str))
                on_subscribed(*room);
            else if (auto broom = room_of_batch_channel(r.elements[1].str))
                on_subscribed(*broom);
        }
    }

    void on_subscribed(std::string_view room) {
        auto a = sub_acks_.find(room);
        if (a != sub_acks_.end() && --a->second > 0) return;
        if (a != sub_acks_.end()) sub_acks_.erase(a);
        auto it = rooms_.find(room);
        if (it == rooms_.end() || it->second.confirmed) return;
        it->second.confirmed = true;
        auto waiting = std::move(it->second.waiting);
        it->second.waiting.clear();
        for (auto& f : waiting) f(true);
    }

    void on_broadcast(std::string_view room_view, std::string_view payload) {
        auto it = rooms_.find(room_view);
        if (it == rooms_.end()) return;  // unsubscribed meanwhile
        boost::system::error_code ec;
        auto v = boost::json::parse(payload, ec);
        auto const* env = v.if_object();
        if (ec || !env) return log_.debug("dropped a broadcast that is not a JSON object", {{"room", it->first}});
        auto const* id = env->if_contains("instanceId");
        if (id && id->is_string() && id->get_string() == instance_) return;  // our own
        auto const* inner = env->if_contains("message");
        auto msg = inner ? json_codec::server_from_json(*inner) : std::nullopt;
        if (!msg) return log_.debug("dropped a broadcast without a valid message", {{"room", it->first}});
        deliver_remote(it->first, *msg);
    }

    // A batch (FLOCK_REDIS_BATCH_MS, batch.hpp): its messages one by one, in
    // order, as if each had come in its own envelope.
    void on_batch(std::string_view room_view, std::string_view payload) {
        auto it = rooms_.find(room_view);
        if (it == rooms_.end()) return;
        auto b = parse_batch(payload);
        if (!b) return log_.debug("dropped a batch that is not a batch envelope", {{"room", it->first}});
        if (b->instance_id == instance_) return;  // our own
        std::string room = it->first;
        for (auto const& m : b->messages) {
            // The core may leave or unsubscribe from inside a delivery.
            if (!events_ || !rooms_.contains(room)) return;
            auto msg = json_codec::server_from_json(m);
            if (!msg) {
                log_.debug("dropped a batched message that is not valid", {{"room", room}});
                continue;
            }
            deliver_remote(room, *msg);
        }
    }

    void deliver_remote(std::string const& room_name, server_message const& m0) {
        auto it = rooms_.find(room_name);
        if (it == rooms_.end()) return;
        auto const* msg = &m0;
        std::string room = it->first;
        auto& st = it->second;
        bool drop = false;
        std::visit(
            [&](auto const& m) {
                using M = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<M, server::user_left>) {
                    // Not in the room as this instance knows it: already
                    // evicted here (a Node.js instance republishes evictions),
                    // or never seen. Either way the core has nothing to remove.
                    if (st.known.erase(m.user_id) == 0) drop = true;
                    st.relayed_cursors.erase(m.user_id);
                } else if constexpr (std::is_same_v<M, server::user_joined>) {
                    mark_known(st, m.user_id);
                    // The core closes its socket of a user who joined elsewhere:
                    // that user is no longer ours to write back.
                    if (auto* lu = find_local(room, m.user_id); lu && !lu->pending) {
                        locals_[room].erase(m.user_id);
                        if (locals_[room].empty()) locals_.erase(room);
                        drop_dirty_cursor(room, m.user_id);
                    }
                } else if constexpr (std::is_same_v<M, server::cursor_updated> ||
                                     std::is_same_v<M, server::cursor_removed> ||
                                     std::is_same_v<M, server::presence_updated>) {
                    if (auto k = st.known.find(m.user_id); k != st.known.end()) k->second = ++stamp_;
                    if constexpr (std::is_same_v<M, server::cursor_updated>) st.relayed_cursors[m.user_id] = m.pos;
                    if constexpr (std::is_same_v<M, server::cursor_removed>) st.relayed_cursors.erase(m.user_id);
                }
            },
            *msg);
        if (drop) return log_.debug("dropped user:left of a user not in the room", {{"room", room}});
        tell_core("on_remote", [&] { events_->on_remote(room, *msg); });
    }

    void on_expired(std::string_view key) {
        auto hits = parse_presence_key(key, [this](std::string_view room) { return rooms_.contains(room); });
        if (hits.empty()) return;
        std::vector<std::pair<std::string, std::string>> gone;
        for (auto const& [room, user] : hits) gone.emplace_back(room, user);
        for (auto const& [room, user] : gone) {
            if (find_local(room, user)) {
                // One of ours: the reply to a re-join on the command connection
                // may have overtaken this event. Report it only if the key is
                // still gone once the commands sent so far have run.
                auto w = weak_from_this();
                cmd_->send({"EXISTS", presence_key(room, user)}, [w, r = room, u = user](reply&& rep) {
                    auto self = w.lock();
                    if (!self || rep.type != reply::kind::integer || rep.integer != 0) return;
                    self->report_eviction(r, u);
                });
                continue;
            }
            report_eviction(room, user);
        }
    }

    void report_eviction(std::string const& room, std::string const& user) {
        if (!events_) return;
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return;
        // Both the expired event and a sweep can see the same expiry.
        if (!it->second.known.contains(user) && it->second.evicted.contains(user) && !find_local(room, user)) return;
        if (auto* lu = find_local(room, user)) {
            if (lu->pending) return;  // its join is writing a fresh presence
            locals_[room].erase(user);
            if (locals_[room].empty()) locals_.erase(room);
            drop_dirty_cursor(room, user);
        }
        it->second.known.erase(user);
        it->second.unconfirmed.erase(user);
        it->second.relayed_cursors.erase(user);
        it->second.evicted[user] = sweeps_;
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
            if (!self || !self->up_ || self->stopping_) return;
            self->sweep();
            self->arm_sweep();
        });
    }

    void sweep() {
        if (std::chrono::steady_clock::now() < grace_until_) return;
        ++sweeps_;
        auto issued = stamp_;
        auto w = weak_from_this();
        for (auto const& [room, st] : rooms_) {
            std::vector<std::string> params{members_key(room), presence_key_prefix(room), cursor_key_prefix(room)};
            for (auto const& [user, _] : st.known) params.push_back(user);
            eval(scripts_.sweep, 1, std::move(params), [w, room = room, issued](reply&& r) {
                if (auto self = w.lock()) self->on_sweep_reply(room, issued, std::move(r));
            });
        }
    }

    void on_sweep_reply(std::string const& room, std::uint64_t issued, reply&& r) {
        if (!events_ || r.is_error() || !r.is_array() || r.elements.size() != 2) return;
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return;
        auto& st = it->second;
        auto const& gone = r.elements[0].elements;
        std::vector<std::string> evicted;
        for (auto const& g : gone) {
            auto const& user = g.str;
            auto k = st.known.find(user);
            if (k != st.known.end() && k->second > issued) continue;  // seen alive since
            if (auto* lu = find_local(room, user); lu && lu->pending) continue;
            evicted.push_back(user);
        }
        std::erase_if(st.evicted, [this](auto const& e) { return e.second + 3 < sweeps_; });
        std::vector<server::member> fresh;
        str_set still_unknown;
        for (auto& m : parse_members(r.elements[1], 0)) {
            if (st.known.contains(m.user_id) || find_local(room, m.user_id)) continue;
            still_unknown.insert(m.user_id);
            if (st.unconfirmed.contains(m.user_id)) fresh.push_back(std::move(m));
        }
        for (auto const& m : fresh) still_unknown.erase(m.user_id);
        st.unconfirmed = std::move(still_unknown);
        for (auto const& m : fresh) mark_known(st, m.user_id);

        // The core may leave, unsubscribe or stop from inside these calls.
        for (auto const& user : evicted) report_eviction(room, user);
        for (auto& m : fresh) {
            if (!events_ || !rooms_.contains(room)) return;
            log_.info("a member missed while disconnected is in the room", {{"room", room}, {"user", m.user_id}});
            tell_core("on_remote", [&] { events_->on_remote(room, server::user_joined{room, m.user_id, m.meta}); });
            if (m.cursor && events_ && rooms_.contains(room))
                tell_core("on_remote", [&] {
                    events_->on_remote(room, server::cursor_updated{room, m.user_id, *m.cursor, now_ms()});
                });
        }
    }

    // ---- cursors ---------------------------------------------------------------------

    void arm_cursor_flush() {
        if (cursor_armed_ || dirty_.empty() || !up_ || stopping_) return;
        cursor_armed_ = true;
        cursor_timer_.expires_after(settings_.cursor_quiet);
        auto w = weak_from_this();
        cursor_timer_.async_wait([w](boost::system::error_code ec) {
            auto self = w.lock();
            if (!self) return;
            self->cursor_armed_ = false;
            if (ec || !self->up_ || self->stopping_) return;
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
                due.push_back({cursor_key(rm->first, u->first), u->second.pos, u->second.ts});
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

    /// One `cursors` script call per max_cursors_per_call cursors.
    void write_cursors(std::vector<cursor_write> const& cs) {
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
        if (batch_armed_ || !up_ || stopping_) return;
        batch_armed_ = true;
        batch_timer_.expires_after(settings_.publish_batch);
        auto w = weak_from_this();
        batch_timer_.async_wait([w](boost::system::error_code ec) {
            auto self = w.lock();
            if (!self) return;
            self->batch_armed_ = false;
            if (ec || !self->up_) return;
            self->flush_batches();
        });
    }

    void flush_batch(std::string_view room) {
        auto it = batches_.find(room);
        if (it == batches_.end()) return;
        auto env = it->second.take();
        batches_.erase(it);
        if (up_) cmd_->send({"PUBLISH", batch_channel(room), env});
    }

    void flush_batches() {
        auto all = std::move(batches_);
        batches_.clear();
        for (auto& [room, b] : all)
            if (!b.empty() && up_) cmd_->send({"PUBLISH", batch_channel(room), b.take()});
    }

    // A snapshot read from Redis may lag the cursors this instance has
    // relayed (coalesced writes): the relayed position, or our own user's,
    // is what the room has seen, so it wins.
    void merge_relayed_cursors(std::string const& room, std::vector<server::member>& members) {
        auto rs = rooms_.find(room);
        auto lr = locals_.find(room);
        for (auto& m : members) {
            if (lr != locals_.end())
                if (auto u = lr->second.find(m.user_id); u != lr->second.end() && u->second.cursor) {
                    m.cursor = u->second.cursor;
                    continue;
                }
            if (rs != rooms_.end())
                if (auto c = rs->second.relayed_cursors.find(m.user_id); c != rs->second.relayed_cursors.end())
                    m.cursor = c->second;
        }
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

    std::shared_ptr<sentinel_client> sentinel_;  ///< redis+sentinel:// only
    endpoint master_;                            ///< redis+sentinel://: the master last resolved
    std::shared_ptr<connection> cmd_, sub_;
    std::shared_ptr<connection_stats> stats_ = std::make_shared<connection_stats>();
    std::uint64_t reconnects_ = 0, published_ = 0, received_ = 0;
    bool started_ = false, up_ = false, ever_up_ = false, stopping_ = false, stopped_ = false;
    std::uint64_t attempt_ = 0;
    int backoff_step_ = 0;
    std::string last_error_;
    state_handler state_handler_;
    std::function<void()> stop_done_;

    str_map<str_map<local_user>> locals_;  ///< room -> user -> what the core told us
    str_map<room_state> rooms_;            ///< subscribed rooms
    str_map<int> sub_acks_;                ///< SUBSCRIBE acknowledgements still due, per room
    str_map<str_map<dirty_cursor>> dirty_; ///< cursor writes not flushed yet
    str_map<batch_builder> batches_;       ///< broadcasts gathered per room (publish_batch)
    std::vector<pending_leave> leaves_while_down_;
    std::uint64_t join_seq_ = 0, stamp_ = 0, sweeps_ = 0;

    std::chrono::milliseconds sweep_every_{1000};
    std::chrono::milliseconds grace_{10000};
    std::chrono::steady_clock::time_point grace_until_{};
    std::chrono::milliseconds ttl_refresh_after_{10000};
    bool cursor_armed_ = false;
    bool batch_armed_ = false;
    static constexpr std::size_t max_cursors_per_call = 512;
    static constexpr std::size_t max_batch_bytes = 32 * 1024;
    bool script_error_logged_ = false;

    asio::steady_timer reconnect_timer_, sweep_timer_, cursor_timer_, stop_timer_, batch_timer_;
    std::minstd_rand rng_;
};

}  // namespace detail::redis

}  // namespace flk
