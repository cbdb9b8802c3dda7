// A Redis Cluster client over connection.hpp (plain TCP or TLS), on one
// executor: the Redis broker's link in cluster mode (broker_impl.hpp).
//
// - Start: asks the seed node `CLUSTER INFO`. A Redis without cluster support
//   answers with an error: the start handler says "not a cluster" and the
//   caller uses its single-Redis mode. Otherwise the slot map is loaded with
//   CLUSTER SHARDS (7.0+), or CLUSTER SLOTS on older servers.
// - Commands: `send(key, args)` goes to the master of the key's slot, over one
//   pipelined connection per master, opened on first use. MOVED updates the
//   map for that slot, reloads the whole map in the background and resends;
//   ASK resends once to the named node, preceded by ASKING. TRYAGAIN,
//   CLUSTERDOWN and a master that cannot be reached park the command and
//   reload the map every `retry_delay` until a master answers or the
//   command's `command_timeout` passes. Scripts named in the config are
//   loaded on each connection first. A command already written when its
//   connection dies is NOT resent (it may have run): its handler gets an
//   io_error reply, and the map is reloaded.
// - Sharded pub/sub: `ssubscribe(channel)` subscribes on the master that owns
//   the channel's slot, over one subscriber connection per master. After a
//   map change, a `sunsubscribe` Redis sends by itself (its slot moved), an
//   error or a lost subscriber connection, the channel is subscribed again
//   where the new map says. Messages arrive once, from the node the channel is
//   subscribed at. `spublish` is a keyed command on the channel.
// - Expiry events are per node: `watch_expired()` subscribes every master's
//   `__keyevent@0__:expired` (the nodes need notify-keyspace-events Ex), and
//   the masters that appear after a failover or resharding too.
//
// The routing itself (slots, hash tags, map parsing, MOVED/ASK) is sans-I/O,
// in slots.hpp.
#pragma once

#include <flock/detail/redis/cluster/slots.hpp>
#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/scripts.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk::detail::redis::cluster {

namespace asio = boost::asio;

struct client_config {
    connection_config connection;                        ///< every connection to a node
    std::chrono::milliseconds command_timeout{10000};    ///< longest a command waits for a master that answers
    std::chrono::milliseconds retry_delay{100};          ///< map reloads while a slot's master is unreachable
    std::chrono::milliseconds refresh_interval{10000};   ///< map reloads when all is well (0: never)
    int max_redirects = 16;                              ///< MOVED/ASK hops of one command
    std::shared_ptr<connection_stats> stats;             ///< counts every connection's commands (may be null)
    /// Lua sources loaded (SCRIPT LOAD) on every command connection before
    /// anything else is written to it: an EVALSHA never meets NOSCRIPT on a
    /// master met for the first time (a promoted replica has no scripts), so
    /// it is never re-sent as EVAL behind commands sent after it.
    std::vector<std::string> scripts;
};

class client : public std::enable_shared_from_this<client> {
public:
    using reply_handler = connection::reply_handler;
    /// `error` empty: started; then `is_cluster` says whether the seed is a
    /// cluster node (false: a Redis without cluster support, nothing else done).
    using start_handler = std::function<void(std::string const& error, bool is_cluster)>;
    using message_handler = std::function<void(std::string const& channel, std::string const& payload)>;
    using subscribed_handler = std::function<void(std::string const& channel, node_address const& at)>;
    using expired_handler = std::function<void(std::string const& key, node_address const& from)>;
    using log_handler = std::function<void(std::string const& what)>;
    using routing_handler = std::function<void()>;
    using node_reply_handler = std::function<void(node_address const& at, reply&& r)>;

    /// `tls` is null for plain TCP; it must outlive the client.
    client(asio::any_io_executor ex, asio::ssl::context* tls, url seed, client_config cfg = {})
        : ex_(ex), tls_(tls), seed_(std::move(seed)), cfg_(std::move(cfg)), retry_timer_(ex), refresh_timer_(ex) {}

    client(client const&) = delete;
    client& operator=(client const&) = delete;

    void on_message(message_handler h) { on_message_ = std::move(h); }
    void on_subscribed(subscribed_handler h) { on_subscribed_ = std::move(h); }
    void on_expired(expired_handler h) { on_expired_ = std::move(h); }
    void on_log(log_handler h) { log_ = std::move(h); }
    /// A reloaded map routes some slots to other masters than before (a
    /// failover, a resharding). Not called for the first map.
    void on_routing_changed(routing_handler h) { on_routing_changed_ = std::move(h); }

    /// Detects cluster mode and loads the slot map, then calls `done`.
    void async_start(start_handler done) {
        if (seed_.db != 0) {
            auto why = "Redis Cluster has database 0 only, the URL selects " + std::to_string(seed_.db);
            asio::post(ex_, [done = std::move(done), why] { done(why, false); });
            return;
        }
        node_address a{seed_.host, seed_.port, {}};
        auto w = weak_from_this();
        with_command_connection(a, [w, a, done = std::move(done)](node_state* n, std::string const& err) mutable {
            auto self = w.lock();
            if (!self) return;
            if (!n) return done(err, false);
            n->cmd->send({"CLUSTER", "INFO"}, [w, done = std::move(done)](reply&& r) mutable {
                auto self = w.lock();
                if (!self) return;
                if (r.is_error()) {
                    if (r.str.find("cluster support disabled") != std::string::npos) return done({}, false);
                    return done("CLUSTER INFO failed: " + r.str, false);
                }
                self->start_done_ = std::move(done);
                self->request_refresh();
                self->arm_refresh_timer();
            });
        });
    }

    /// Sends `args` to the master of `key`'s slot; `h` gets the reply (after
    /// any redirection), an error reply, or an io_error reply.
    void send(std::string_view key, std::span<std::string_view const> args, reply_handler h = {}) {
        auto c = std::make_shared<command>();
        c->args.assign(args.begin(), args.end());
        c->slot = key_slot(key);
        c->handler = std::move(h);
        c->deadline = clock::now() + cfg_.command_timeout;
        // Behind the commands of the same slot still waiting for a master:
        // first in, first sent.
        for (auto const& p : parked_)
            if (p->slot == c->slot) {
                park(std::move(c));
                return request_refresh(true);
            }
        dispatch(std::move(c));
    }
    void send(std::string_view key, std::initializer_list<std::string_view> args, reply_handler h = {}) {
        send(key, std::span<std::string_view const>(args.begin(), args.size()), std::move(h));
    }

    /// EVALSHA on the master of `keys[0]` (all keys must share a slot: use
    /// one hash tag), falling back to EVAL when that node lacks the script.
    void eval(script const& s, std::vector<std::string> keys, std::vector<std::string> argv, reply_handler h = {}) {
        auto key = keys.empty() ? std::string() : keys.front();
        auto params = std::make_shared<std::vector<std::string>>(std::move(keys));
        auto numkeys = std::to_string(params->size());
        params->insert(params->end(), std::make_move_iterator(argv.begin()), std::make_move_iterator(argv.end()));
        std::vector<std::string_view> a{"EVALSHA", s.sha1, numkeys};
        for (auto const& p : *params) a.push_back(p);
        auto w = weak_from_this();
        send(key, std::span<std::string_view const>(a),
             [w, &s, key, params, numkeys, h = std::move(h)](reply&& r) mutable {
                 auto self = w.lock();
                 if (self && r.is_error_code("NOSCRIPT")) {
                     std::vector<std::string_view> b{"EVAL", s.source, numkeys};
                     for (auto const& p : *params) b.push_back(p);
                     return self->send(key, std::span<std::string_view const>(b), std::move(h));
                 }
                 if (h) h(std::move(r));
             });
    }

    /// SPUBLISH on the master of the channel's slot: the reply is the number
    /// of subscribers reached.
    void spublish(std::string_view channel, std::string_view payload, reply_handler h = {}) {
        send(channel, {"SPUBLISH", channel, payload}, std::move(h));
    }

    /// Subscribes `channel` (sharded) and keeps it subscribed across map
    /// changes until sunsubscribe(). on_subscribed tells when Redis confirmed.
    void ssubscribe(std::string const& channel) {
        channels_.try_emplace(channel);
        reconcile();
    }
    void sunsubscribe(std::string const& channel) {
        auto it = channels_.find(channel);
        if (it == channels_.end()) return;
        if (auto n = nodes_.find(it->second.at); n != nodes_.end()) {
            n->second.sub_channels.erase(channel);
            if (n->second.sub_open) {
                n->second.sub->send({"SUNSUBSCRIBE", channel});
                ++n->second.unsubscribing[channel];
            }
        }
        channels_.erase(it);
    }

    /// Sends `args` to every master of the current map (CONFIG GET, CONFIG
    /// SET): `h` gets each one's reply, or an io_error reply when it cannot
    /// be reached. Not redirected, not retried.
    void each_master(std::vector<std::string> args, node_reply_handler h) {
        auto shared = std::make_shared<std::vector<std::string>>(std::move(args));
        for (auto const& m : map_.masters()) send_to(m, shared, h);
    }
    /// Sends `args` to the node `at` only (as each_master).
    void send_to(node_address const& at, std::vector<std::string> args, node_reply_handler h) {
        send_to(at, std::make_shared<std::vector<std::string>>(std::move(args)), std::move(h));
    }

    /// Subscribes to `__keyevent@0__:expired` on every master, now and later.
    void watch_expired() {
        if (watch_expired_) return;
        watch_expired_ = true;
        for (auto& [name, n] : nodes_)
            if (n.sub_open && !n.expired_requested) subscribe_expired(n);
        reconcile();
    }

    /// Closes every connection. Commands not answered yet get io_error replies.
    void close() {
        if (closed_) return;
        closed_ = true;
        retry_timer_.cancel();
        refresh_timer_.cancel();
        auto parked = std::move(parked_);
        parked_.clear();
        for (auto& [name, n] : nodes_) {
            for (auto& [c, asking] : n.waiting) parked.push_back(c);
            n.waiting.clear();
            auto ready = std::move(n.on_ready);
            n.on_ready.clear();
            for (auto& f : ready) asio::post(ex_, [f = std::move(f)] { f(nullptr, "cluster client closed"); });
            if (n.cmd) n.cmd->close();
            if (n.sub) n.sub->close();
        }
        nodes_.clear();
        for (auto& c : parked) fail(c, "cluster client closed");
        if (start_done_) {
            auto d = std::move(start_done_);
            start_done_ = {};
            asio::post(ex_, [d = std::move(d)] { d("cluster client closed", true); });
        }
    }

    slot_map const& map() const noexcept { return map_; }
    std::uint64_t map_loads() const noexcept { return map_loads_; }
    /// Open command connections (one per master used, plus nodes asked for the map).
    std::size_t command_connections() const noexcept {
        std::size_t k = 0;
        for (auto const& [name, n] : nodes_) k += n.cmd_open;
        return k;
    }
    std::size_t subscriber_connections() const noexcept {
        std::size_t k = 0;
        for (auto const& [name, n] : nodes_) k += n.sub_open;
        return k;
    }
    /// Where `channel` is subscribed right now (confirmed by Redis), if anywhere.
    std::optional<node_address> subscribed_at(std::string const& channel) const {
        auto it = channels_.find(channel);
        if (it == channels_.end() || !it->second.confirmed) return std::nullopt;
        auto n = nodes_.find(it->second.at);
        if (n == nodes_.end()) return std::nullopt;
        return n->second.addr;
    }

private:
    using clock = std::chrono::steady_clock;

    struct command {
        std::vector<std::string> args;
        std::uint16_t slot = 0;
        reply_handler handler;
        int redirects = 0;
        std::optional<node_address> ask;  ///< the next attempt follows this ASK
        clock::time_point deadline;
    };
    using command_ptr = std::shared_ptr<command>;
    struct node_state;
    using ready_handler = std::function<void(node_state*, std::string const& error)>;

    struct node_state {
        node_address addr;
        std::shared_ptr<connection> cmd;  ///< commands, pipelined
        bool cmd_open = false;
        std::vector<ready_handler> on_ready;  ///< waiting for `cmd` to open
        std::deque<std::pair<command_ptr, bool>> waiting;  ///< commands (asking?) for `cmd`
        std::shared_ptr<connection> sub;  ///< subscriber (push mode)
        bool sub_open = false;
        std::set<std::string> sub_channels;  ///< channels this node's subscriber holds
        std::map<std::string, int> unsubscribing;  ///< our SUNSUBSCRIBEs not confirmed yet, per channel
        bool expired_requested = false;
        clock::time_point failed_at{};  ///< last connection failure: map sources order, reconnect backoff
        int failures = 0;               ///< connection failures in a row (logged once)
        int sub_failures = 0;
    };

    struct channel_state {
        std::string at;  ///< node name it is subscribed (or being subscribed) at; empty: nowhere
        bool confirmed = false;
    };

    std::string expired_channel() const { return "__keyevent@0__:expired"; }

    void log(std::string const& s) {
        if (log_) log_(s);
    }

    url url_of(node_address const& a) const {
        url u = seed_;
        u.host = a.host;
        u.port = a.port;
        u.db = 0;
        return u;
    }

    node_state& node(node_address const& a) {
        auto [it, fresh] = nodes_.try_emplace(a.name());
        if (fresh) it->second.addr = a;
        else if (it->second.addr.id.empty()) it->second.addr.id = a.id;
        return it->second;
    }

    bool recently_failed(node_state const& n) const {
        return n.failed_at != clock::time_point{} && clock::now() - n.failed_at < cfg_.retry_delay;
    }

    bool is_master(node_address const& a) const {
        for (auto const& m : map_.masters())
            if (m.same_endpoint(a)) return true;
        return false;
    }

    void send_to(node_address const& at, std::shared_ptr<std::vector<std::string>> args, node_reply_handler h) {
        with_command_connection(at, [args, h = std::move(h), at](node_state* n, std::string const& err) {
            if (!n) return h(at, reply::io_failure(err));
            std::vector<std::string_view> a(args->begin(), args->end());
            n->cmd->send(std::span<std::string_view const>(a), [h, at](reply&& r) { h(at, std::move(r)); });
        });
    }

    // ---- command connections -------------------------------------------------------

    /// Calls `f` with the node's open command connection (opening it first),
    /// or with null and a reason.
    void with_command_connection(node_address const& a, ready_handler f) {
        if (closed_) {
            asio::post(ex_, [f = std::move(f)] { f(nullptr, "cluster client closed"); });
            return;
        }
        auto& n = node(a);
        if (n.cmd_open) return f(&n, {});
        n.on_ready.push_back(std::move(f));
        if (n.cmd) return;  // connecting
        auto name = a.name();
        n.cmd = std::make_shared<connection>(ex_, seed_.tls ? tls_ : nullptr);
        if (cfg_.stats) n.cmd->count_into(cfg_.stats);
        auto w = weak_from_this();
        // Handlers stored in a connection name it by address only: a
        // shared_ptr there would keep it alive forever.
        connection* conn = n.cmd.get();
        conn->on_close([w, name, conn](std::string const& why) {
            if (auto self = w.lock()) self->command_connection_lost(name, conn, why);
        });
        conn->async_connect(url_of(a), cfg_.connection, [w, name, conn](std::string const& err) {
            auto self = w.lock();
            if (!self || self->closed_) return;
            auto it = self->nodes_.find(name);
            if (it == self->nodes_.end() || it->second.cmd.get() != conn) return;
            auto& n = it->second;
            if (err.empty()) {
                n.cmd_open = true;
                n.failures = 0;
                n.failed_at = {};
                for (auto const& src : self->cfg_.scripts)
                    conn->send({"SCRIPT", "LOAD", src}, [w, name](reply&& r) {
                        if (auto self = w.lock(); self && r.type == reply::kind::error)
                            self->log("node " + name + " refused a Lua script: " + r.str);
                    });
            } else {
                n.cmd.reset();
                n.failed_at = clock::now();
                if (n.failures++ == 0) self->log("cannot connect to cluster node " + name + ": " + err);
            }
            auto ready = std::move(n.on_ready);
            n.on_ready.clear();
            auto waiting = std::move(n.waiting);
            n.waiting.clear();
            for (auto& f : ready) f(err.empty() ? &self->nodes_.at(name) : nullptr, err);
            if (self->closed_) {
                for (auto& [c, asking] : waiting) self->fail(c, "cluster client closed");
                return;
            }
            if (!err.empty() || !self->nodes_.at(name).cmd_open) {
                // Never written: safe to try again once the map says where.
                for (auto& [c, asking] : waiting) self->park(c);
                self->request_refresh(true);
            } else {
                for (auto& [c, asking] : waiting) self->write(self->nodes_.at(name), c, asking);
            }
        });
    }

    void command_connection_lost(std::string const& name, connection const* conn, std::string const& why) {
        if (closed_) return;
        auto it = nodes_.find(name);
        if (it == nodes_.end() || it->second.cmd.get() != conn) return;
        it->second.cmd.reset();
        it->second.cmd_open = false;
        it->second.failed_at = clock::now();
        log("lost cluster node " + name + ": " + why);
        request_refresh();
    }

    // ---- commands ------------------------------------------------------------------

    void dispatch(command_ptr c) {
        if (closed_) return fail(c, "cluster client closed");
        if (clock::now() > c->deadline)
            return fail(c, "no master for slot " + std::to_string(c->slot) + " answered within " +
                               std::to_string(cfg_.command_timeout.count()) + " ms");
        std::optional<redirect> ask;
        if (c->ask) ask = redirect{redirect::kind::ask, c->slot, *c->ask};
        c->ask.reset();
        node_address const* m = ask ? nullptr : map_.master_for_slot(c->slot);
        if (!ask && !m) {
            park(c);
            return request_refresh(map_loads_ > 0);
        }
        node_address target = ask ? ask->target : *m;
        auto& n = node(target);
        if (n.cmd_open) return write(n, c, ask.has_value());
        if (!n.cmd && recently_failed(n)) {  // wait for a new map rather than hammer a dead node
            if (ask) c->ask = ask->target;
            park(c);
            return request_refresh(true);
        }
        n.waiting.emplace_back(c, ask.has_value());
        if (!n.cmd) with_command_connection(target, [](node_state*, std::string const&) {});
    }

    void write(node_state& n, command_ptr const& c, bool asking) {
        if (asking) n.cmd->send({"ASKING"}, [](reply&&) {});
        std::vector<std::string_view> a(c->args.begin(), c->args.end());
        auto w = weak_from_this();
        n.cmd->send(std::span<std::string_view const>(a), [w, c, at = n.addr](reply&& r) {
            auto self = w.lock();
            if (!self || self->closed_) return deliver(c, std::move(r));
            self->on_reply(c, at, std::move(r));
        });
    }

    void on_reply(command_ptr const& c, node_address const& at, reply&& r) {
        if (r.type == reply::kind::error) {
            if (auto rd = parse_redirect(r)) {
                if (++c->redirects > cfg_.max_redirects) return deliver(c, std::move(r));
                if (rd->target.host.empty()) rd->target.host = at.host;
                if (rd->type == redirect::kind::moved) {
                    map_.apply_moved(rd->slot, rd->target);
                    request_refresh();
                } else {
                    c->ask = rd->target;
                }
                return dispatch(c);
            }
            if (r.is_error_code("TRYAGAIN") || r.is_error_code("CLUSTERDOWN") || r.is_error_code("LOADING") ||
                r.is_error_code("MASTERDOWN")) {
                park(c);
                return request_refresh(true);
            }
            if (r.is_error_code("READONLY")) {  // a replica now: the map is old
                park(c);
                return request_refresh();
            }
        } else if (r.type == reply::kind::io_error) {
            // The connection died with the command written: it may have run.
            request_refresh();
        }
        deliver(c, std::move(r));
    }

    static void deliver(command_ptr const& c, reply&& r) {
        auto h = std::move(c->handler);
        c->handler = {};
        if (h) h(std::move(r));
    }

    void fail(command_ptr const& c, std::string why) {
        auto h = std::move(c->handler);
        c->handler = {};
        if (h) asio::post(ex_, [h = std::move(h), why = std::move(why)] { h(reply::io_failure(why)); });
    }

    void park(command_ptr c) { parked_.push_back(std::move(c)); }

    void expire_parked() {
        auto now = clock::now();
        std::deque<command_ptr> keep;
        for (auto& c : parked_) {
            if (now > c->deadline)
                fail(c, "no master for slot " + std::to_string(c->slot) + " answered within " +
                            std::to_string(cfg_.command_timeout.count()) + " ms");
            else
                keep.push_back(std::move(c));
        }
        parked_ = std::move(keep);
    }

    // ---- the slot map --------------------------------------------------------------

    /// Reloads the map now, or after retry_delay (`delayed`); calls coalesce.
    void request_refresh(bool delayed = false) {
        if (closed_) return;
        if (refreshing_) {
            (delayed ? refresh_again_delayed_ : refresh_again_) = true;
            return;
        }
        if (!delayed) {
            retry_timer_.cancel();
            retry_armed_ = false;
            return refresh();
        }
        if (retry_armed_) return;
        retry_armed_ = true;
        retry_timer_.expires_after(cfg_.retry_delay);
        auto w = weak_from_this();
        retry_timer_.async_wait([w](boost::system::error_code ec) {
            auto self = w.lock();
            if (!self || ec || self->closed_) return;
            self->retry_armed_ = false;
            self->expire_parked();
            self->request_refresh();
        });
    }

    void arm_refresh_timer() {
        if (cfg_.refresh_interval.count() <= 0 || closed_) return;
        refresh_timer_.expires_after(cfg_.refresh_interval);
        auto w = weak_from_this();
        refresh_timer_.async_wait([w](boost::system::error_code ec) {
            auto self = w.lock();
            if (!self || ec || self->closed_) return;
            self->request_refresh();
            self->arm_refresh_timer();
        });
    }

    /// Where to ask for the map: nodes with an open connection first, then
    /// the other masters, replicas and the seed; nodes that failed last.
    std::vector<node_address> map_sources() {
        std::vector<node_address> all = map_.nodes();
        node_address seed{seed_.host, seed_.port, {}};
        bool have_seed = false;
        for (auto const& a : all) have_seed |= a.same_endpoint(seed);
        if (!have_seed) all.push_back(seed);
        auto rank = [&](node_address const& a) {
            auto it = nodes_.find(a.name());
            if (it == nodes_.end()) return 1;
            if (it->second.cmd_open) return 0;
            if (it->second.failed_at != clock::time_point{} &&
                clock::now() - it->second.failed_at < std::chrono::seconds(5))
                return 2;
            return 1;
        };
        std::stable_sort(all.begin(), all.end(),
                         [&](node_address const& x, node_address const& y) { return rank(x) < rank(y); });
        return all;
    }

    void refresh() {
        refreshing_ = true;
        refresh_again_ = refresh_again_delayed_ = false;
        auto sources = std::make_shared<std::vector<node_address>>(map_sources());
        refresh_from(sources, 0, {});
    }

    void refresh_from(std::shared_ptr<std::vector<node_address>> sources, std::size_t i, std::string last_error) {
        if (closed_) return;
        if (i >= sources->size()) {
            refreshing_ = false;
            log("cannot load the cluster slot map: " + last_error);
            if (start_done_ && map_loads_ == 0) {
                auto d = std::move(start_done_);
                start_done_ = {};
                d("cannot load the cluster slot map: " + last_error, true);
            }
            expire_parked();
            return request_refresh(true);
        }
        auto w = weak_from_this();
        auto src = (*sources)[i];
        with_command_connection(src, [w, sources, i, src](node_state* n, std::string const& err) {
            auto self = w.lock();
            if (!self || self->closed_) return;
            if (!n) return self->refresh_from(sources, i + 1, src.name() + ": " + err);
            bool shards = self->use_shards_;
            std::initializer_list<std::string_view> cmd = {"CLUSTER", shards ? "SHARDS" : "SLOTS"};
            n->cmd->send(cmd, [w, sources, i, src, shards](reply&& r) {
                auto self = w.lock();
                if (!self || self->closed_) return;
                if (r.is_error()) {
                    if (shards && r.type == reply::kind::error &&
                        r.str.find("nknown subcommand") != std::string::npos) {
                        self->use_shards_ = false;  // before Redis 7.0
                        return self->refresh_from(sources, i, {});
                    }
                    return self->refresh_from(sources, i + 1, src.name() + ": " + r.str);
                }
                auto m = shards ? slot_map::from_cluster_shards(r, src.host, self->seed_.tls)
                                : slot_map::from_cluster_slots(r, src.host);
                if (!m || m->covered() == 0)
                    return self->refresh_from(sources, i + 1, src.name() + ": no slots in its answer");
                self->install(std::move(*m));
            });
        });
    }

    void install(slot_map m) {
        bool const first = map_loads_ == 0;
        bool changed = first || !map_.same_routing(m);
        map_ = std::move(m);
        ++map_loads_;
        refreshing_ = false;
        if (changed) log("cluster slot map: " + std::to_string(map_.masters().size()) + " masters, " +
                         std::to_string(map_.covered()) + " slots covered");
        if (start_done_) {
            auto d = std::move(start_done_);
            start_done_ = {};
            d({}, true);
        }
        auto parked = std::move(parked_);
        parked_.clear();
        for (auto& c : parked) dispatch(c);
        reconcile();
        if (changed && !first && on_routing_changed_) {
            auto h = on_routing_changed_;  // may close the client
            h();
            if (closed_) return;
        }
        // Idle connections to nodes that serve no slots any more.
        for (auto& [name, n] : nodes_)
            if (n.cmd_open && n.waiting.empty() && n.cmd->pending() == 0 && !is_master(n.addr)) {
                n.cmd->close();
                n.cmd.reset();
                n.cmd_open = false;
            }
        // Asked for while loading: now, or after retry_delay when it was
        // asked for by a failure (no busy loop while a master is down).
        if (!closed_ && (refresh_again_ || refresh_again_delayed_)) {
            bool now = refresh_again_;
            refresh_again_ = refresh_again_delayed_ = false;
            request_refresh(!now);
        }
    }

    // ---- subscriptions -------------------------------------------------------------

    /// Brings the subscriptions in line with the map: every channel on its
    /// slot's master, an expired-events subscription on every master.
    void reconcile() {
        if (closed_ || map_loads_ == 0) return;
        bool unrouted = false;
        for (auto& [ch, st] : channels_) {
            auto const* m = map_.master_for(ch);
            if (!m) {
                unrouted = true;
                continue;
            }
            auto name = m->name();
            if (st.at == name) continue;
            if (auto old = nodes_.find(st.at); old != nodes_.end()) {
                old->second.sub_channels.erase(ch);
                if (old->second.sub_open) {
                    old->second.sub->send({"SUNSUBSCRIBE", ch});
                    ++old->second.unsubscribing[ch];
                }
            }
            st.at = name;
            st.confirmed = false;
            auto& n = node(*m);
            n.sub_channels.insert(ch);
            if (n.sub_open)
                n.sub->send({"SSUBSCRIBE", ch});
            else
                open_subscriber(n);
        }
        for (auto& [name, n] : nodes_)
            if (!n.sub && !n.sub_channels.empty()) open_subscriber(n);
        if (watch_expired_)
            for (auto const& m : map_.masters()) open_subscriber(node(m));
        for (auto& [name, n] : nodes_)
            if (n.sub && n.sub_channels.empty() && !is_master(n.addr)) drop_subscriber(n);
        if (unrouted) request_refresh(true);
    }

    void subscribe_expired(node_state& n) {
        n.expired_requested = true;
        n.sub->send({"SUBSCRIBE", expired_channel()});
    }

    void open_subscriber(node_state& n) {
        if (n.sub) return;
        if (recently_failed(n)) return request_refresh(true);  // reconcile() runs again after it
        auto name = n.addr.name();
        n.sub = std::make_shared<connection>(ex_, seed_.tls ? tls_ : nullptr);
        if (cfg_.stats) n.sub->count_into(cfg_.stats);
        connection* conn = n.sub.get();
        auto w = weak_from_this();
        conn->on_close([w, name, conn](std::string const& why) {
            if (auto self = w.lock()) self->subscriber_lost(name, conn, "lost: " + why);
        });
        conn->async_connect(url_of(n.addr), cfg_.connection, [w, name, conn](std::string const& err) {
            auto self = w.lock();
            if (!self || self->closed_) return;
            auto it = self->nodes_.find(name);
            if (it == self->nodes_.end() || it->second.sub.get() != conn) return;
            if (!err.empty()) return self->subscriber_lost(name, conn, "cannot connect: " + err);
            auto& n = it->second;
            n.sub_open = true;
            n.sub_failures = 0;
            conn->set_push_handler([w, name, conn](reply&& r) {
                if (auto self = w.lock()) self->on_push(name, conn, std::move(r));
            });
            for (auto const& ch : n.sub_channels) conn->send({"SSUBSCRIBE", ch});
            if (self->watch_expired_) self->subscribe_expired(n);
        });
    }

    void drop_subscriber(node_state& n) {
        if (n.sub) n.sub->close();
        n.sub.reset();
        n.sub_open = false;
        n.expired_requested = false;
        n.unsubscribing.clear();
        for (auto const& ch : n.sub_channels)
            if (auto it = channels_.find(ch); it != channels_.end()) it->second = channel_state{};
        n.sub_channels.clear();
    }

    void subscriber_lost(std::string const& name, connection const* conn, std::string const& why) {
        if (closed_) return;
        auto it = nodes_.find(name);
        if (it == nodes_.end() || it->second.sub.get() != conn) return;
        if (it->second.sub_failures++ == 0) log("subscriber connection to " + name + " " + why);
        it->second.failed_at = clock::now();
        drop_subscriber(it->second);
        request_refresh(true);
    }

    static std::string_view word(reply const& r, std::size_t i) {
        if (i >= r.elements.size() || !r.elements[i].is_string()) return {};
        return r.elements[i].str;
    }

    void on_push(std::string const& name, connection const* conn, reply&& r) {
        if (closed_) return;
        auto it = nodes_.find(name);
        if (it == nodes_.end() || it->second.sub.get() != conn) return;
        auto& n = it->second;
        if (r.type == reply::kind::error) {
            // An SSUBSCRIBE this node refused (MOVED during a resharding,
            // CLUSTERDOWN during a failover): subscribe its unconfirmed
            // channels again once the map is reloaded.
            log("subscriber on " + name + ": " + r.str);
            if (auto rd = parse_redirect(r); rd && rd->type == redirect::kind::moved) {
                if (rd->target.host.empty()) rd->target.host = n.addr.host;
                map_.apply_moved(rd->slot, rd->target);
            }
            for (auto ch = n.sub_channels.begin(); ch != n.sub_channels.end();) {
                auto st = channels_.find(*ch);
                if (st != channels_.end() && !st->second.confirmed) {
                    st->second = channel_state{};
                    ch = n.sub_channels.erase(ch);
                } else {
                    ++ch;
                }
            }
            return request_refresh(true);
        }
        if (!r.is_array()) return;
        auto kind = word(r, 0);
        auto channel = std::string(word(r, 1));
        if (kind == "smessage" && r.elements.size() >= 3) {
            auto st = channels_.find(channel);
            if (st == channels_.end() || st->second.at != name) return;  // moved away: not from here
            if (on_message_) on_message_(channel, r.elements[2].str);
        } else if (kind == "message" && r.elements.size() >= 3 && channel == expired_channel()) {
            auto from = n.addr;  // a handler may close the client
            if (on_expired_) on_expired_(r.elements[2].str, from);
        } else if (kind == "ssubscribe") {
            auto st = channels_.find(channel);
            if (st == channels_.end() || st->second.at != name) return;
            st->second.confirmed = true;
            auto at = n.addr;
            if (on_subscribed_) on_subscribed_(channel, at);
        } else if (kind == "subscribe" && channel == expired_channel()) {
            auto at = n.addr;
            if (on_subscribed_) on_subscribed_(channel, at);
        } else if (kind == "sunsubscribe") {
            // The confirmation of our own SUNSUBSCRIBE (the channel may have
            // been subscribed again since, on this same node): nothing moved.
            if (auto u = n.unsubscribing.find(channel); u != n.unsubscribing.end()) {
                if (--u->second == 0) n.unsubscribing.erase(u);
                return;
            }
            auto st = channels_.find(channel);
            if (st == channels_.end() || st->second.at != name) return;  // ours, after a move
            // Redis dropped it by itself: its slot moved to another master.
            log("redis unsubscribed " + channel + " on " + name + ": its slot moved");
            st->second = channel_state{};
            n.sub_channels.erase(channel);
            request_refresh();
        }
    }

    asio::any_io_executor ex_;
    asio::ssl::context* tls_;
    url seed_;
    client_config cfg_;
    asio::steady_timer retry_timer_, refresh_timer_;
    bool retry_armed_ = false;

    slot_map map_;
    std::uint64_t map_loads_ = 0;
    bool use_shards_ = true;
    bool refreshing_ = false, refresh_again_ = false, refresh_again_delayed_ = false;
    bool closed_ = false;
    start_handler start_done_;

    std::map<std::string, node_state> nodes_;
    std::deque<command_ptr> parked_;
    std::map<std::string, channel_state> channels_;
    bool watch_expired_ = false;

    message_handler on_message_;
    subscribed_handler on_subscribed_;
    expired_handler on_expired_;
    log_handler log_;
    routing_handler on_routing_changed_;
};

}  // namespace flk::detail::redis::cluster
