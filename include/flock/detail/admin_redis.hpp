// The admin dashboard's own view of a Redis cluster: two connections of its
// own (commands, and a subscriber), apart from the brokers', so that reading
// the dashboard never delays a broker's pipeline.
//
// - Rooms and members cluster-wide, from the schema of PROTOCOL.md: SCAN
//   (never KEYS) over `flock:room:*:members`, at most `max_scan_calls`
//   calls of COUNT 100 and `max_rooms` rooms; one SSCAN page per room; then
//   HMGET of each member's presence hash (metadata, joinedAt, and flock's
//   own `instance` field: who holds the member). A member set entry with no
//   presence hash is stale and not shown.
// - Every flock instance of the cluster: SSCAN (bounded: at most
//   `max_index_scans` calls of COUNT 100, `max_instances` ids) of the index
//   set `flock:instances`, then one MGET of their records
//   `flock:instance:{processId}` (flk::instance_registry writes them;
//   detail/instance_record.hpp). An id whose record has expired (a process
//   that died) is SREMmed from the index.
// - The round trip: a PING, timed.
// - Close orders for every instance: PUBLISH on `flock:admin:control:{db}`,
//   a channel only flock instances subscribe to. Reference (Node.js)
//   instances subscribe to `flock:broadcast:{room}` channels and the
//   keyspace-event channel only, so they never see it.
//
// On a Redis Cluster (detected as the brokers do: the first command
// connection asks CLUSTER INFO, and a Redis without cluster support refuses
// it), the commands go through a cluster client (redis/cluster/client.hpp)
// and the keys are the brokers' tagged ones (key_schema(true)): every master
// is SCANned (its own cursor, at most `max_scan_calls` calls each), SSCAN and
// HMGET go to the master of their key, and the instance records, one slot
// each, are read with one GET per record instead of a cross-slot MGET. Close
// orders stay classic PUBLISH/SUBSCRIBE, which a cluster forwards to every
// node: the subscriber is one connection to one node (the URL's first, then,
// after a loss, another master of the map).
//
// Everything runs on the executor given, one thread.
#pragma once

#include <flock/broker/redis_settings.hpp>
#include <flock/detail/admin_html.hpp>
#include <flock/detail/instance_record.hpp>
#include <flock/detail/redis/cluster/client.hpp>
#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/keys.hpp>
#include <flock/detail/redis/sentinel.hpp>
#include <flock/detail/redis/url.hpp>
#include <flock/log.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk::detail::admin {

namespace asio = boost::asio;
namespace rd = flk::detail::redis;

/// What Redis says about the cluster.
struct cluster_view {
    bool ok = false;                  ///< false: Redis could not be read (see notes)
    std::vector<room_row> rooms;      ///< `where` holds the raw `instance` field ("" for a reference instance)
    std::vector<std::string> notes;
    std::optional<std::chrono::microseconds> rtt;
    bool instances_ok = false;        ///< false: the instance records could not be read
    std::vector<instance_record> instances;  ///< every flock instance's record, in no order
};

/// A close order from another process: a room, or every room when empty.
using close_order = std::function<void(std::string const& room)>;

class cluster_reader : public std::enable_shared_from_this<cluster_reader> {
public:
    static constexpr std::size_t max_scan_calls = 20;  ///< per master on a Redis Cluster
    static constexpr std::size_t max_rooms = 500;
    static constexpr std::size_t members_page = 200;
    static constexpr std::size_t max_index_scans = 10;
    static constexpr std::size_t max_instances = 200;

    cluster_reader(asio::any_io_executor ex, std::string const& url, redis_settings settings, std::string process_id,
                   logger log)
        : ex_(ex), url_(rd::parse_url(url)), settings_(std::move(settings)), process_(std::move(process_id)),
          log_(std::move(log)), retry_(ex), sub_retry_(ex) {
        control_ = "flock:admin:control:" + std::to_string(url_.db);
        if (url_.tls) {
            tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
            if (!settings_.tls_verify) {
                tls_->set_verify_mode(asio::ssl::verify_none);
            } else {
                tls_->set_verify_mode(asio::ssl::verify_peer);
                boost::system::error_code ec;
                if (settings_.ca_file) tls_->load_verify_file(*settings_.ca_file, ec);
                else tls_->set_default_verify_paths(ec);
            }
        }
    }

    std::string const& control_channel() const noexcept { return control_; }

    void start(close_order on_order) {
        on_order_ = std::move(on_order);
        connect();
    }

    void stop() {
        stopped_ = true;
        if (sentinel_) sentinel_->stop();
        waiting_.clear();
        retry_.cancel();
        sub_retry_.cancel();
        if (cmd_) cmd_->close();
        if (sub_) sub_->close();
        if (cluster_) cluster_->close();
    }

    bool up() const noexcept { return cmd_up_ && sub_up_; }
    /// The URL's node belongs to a Redis Cluster (known once connected).
    bool cluster_mode() const noexcept { return topology_ == topology::cluster; }

    /// Runs `f` once close orders from other instances reach this one (the
    /// control channel's SUBSCRIBE is confirmed): now, or then.
    void when_subscribed(std::function<void()> f) {
        if (subscribed_) f();
        else when_subscribed_.push_back(std::move(f));
    }
    std::string const& last_error() const noexcept { return error_; }

    /// Tells every other flock instance to close `room` ("" = every room).
    void publish_close(std::string const& room) {
        if (!cmd_up_) {
            log_.warn("admin: redis is down; the close order reaches this process only", {{"room", room}});
            return;
        }
        boost::json::object o{{"from", process_}, {"op", room.empty() ? "close-all" : "close-room"}};
        if (!room.empty()) o["roomId"] = room;
        auto msg = boost::json::serialize(o);
        // On a cluster, any node forwards a classic PUBLISH to every node.
        command(control_, {"PUBLISH", control_, msg});
    }

    /// Reads the cluster's rooms and members; `done` runs once, on the executor.
    void read(std::function<void(cluster_view)> done) {
        auto q = std::make_shared<query>();
        q->done = std::move(done);
        if (cmd_up_) return run(q);
        if (connecting_) return waiting_.push_back(q);  // answered once connected (or failed)
        unreachable(q);
    }

private:
    enum class topology { unknown, single, cluster };

    struct query {
        cluster_view view;
        std::function<void(cluster_view)> done;
        std::vector<std::string> rooms;
        std::size_t scans = 0;
        std::size_t scan_nodes = 0;   // masters SCANned (cluster)
        std::size_t scanning = 0;     // masters whose SCAN has not ended (cluster)
        std::size_t scan_failed = 0;  // masters whose SCAN failed (cluster)
        bool cut_short = false;
        std::size_t waiting = 0;
        std::size_t parts = 2;  // the rooms, the instances
        std::vector<std::string> ids;
        std::size_t index_scans = 0;
    };

    /// A command about `key`: on the command connection, or on a cluster to
    /// the master of the key's slot.
    void command(std::string_view key, std::span<std::string_view const> args, rd::connection::reply_handler h = {}) {
        if (cluster_) return cluster_->send(key, args, std::move(h));
        if (cmd_ && topology_ != topology::cluster) return cmd_->send(args, std::move(h));
        if (h) asio::post(ex_, [h = std::move(h)] { h(rd::reply::io_failure("not connected to redis")); });
    }
    void command(std::string_view key, std::initializer_list<std::string_view> args,
                 rd::connection::reply_handler h = {}) {
        command(key, std::span<std::string_view const>(args.begin(), args.size()), std::move(h));
    }

    void unreachable(std::shared_ptr<query> const& q) {
        q->view.notes.push_back("Redis is not reachable" + (error_.empty() ? std::string() : ": " + error_));
        finish(q);
    }

    void run(std::shared_ptr<query> q) {
        auto const t0 = std::chrono::steady_clock::now();
        auto self = shared_from_this();
        command(control_, {"PING"}, [self, q, t0](rd::reply&& r) {
            if (r.is_error()) {
                q->view.notes.push_back("Redis PING failed: " + r.str);
                return self->finish(q);
            }
            q->view.rtt = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
            self->scan_all(q);
            self->instances(q, "0");
        });
    }

    // The rooms and the instances are read side by side; the answer goes
    // once both are.
    static void part_done(std::shared_ptr<query> const& q) {
        if (--q->parts == 0) finish(q);
    }

    static void finish(std::shared_ptr<query> const& q) {
        if (auto d = std::exchange(q->done, nullptr)) d(std::move(q->view));
    }

    static std::string scan_pattern() { return std::string(rd::room_prefix) + "*" + std::string(rd::members_suffix); }

    /// Adds the rooms of a SCAN page; the next cursor, or none when the page
    /// is not one.
    std::optional<std::string> scan_page(query& q, rd::reply& r) const {
        if (!r.is_array() || r.elements.size() != 2 || !r.elements[1].is_array()) return std::nullopt;
        for (auto& k : r.elements[1].elements)
            if (auto room = keys_.room_of_members(k.str))
                if (std::ranges::find(q.rooms, *room) == q.rooms.end()) q.rooms.emplace_back(*room);
        return std::move(r.elements[0].str);
    }

    void cut_short(query& q, std::string const& calls) {
        if (std::exchange(q.cut_short, true)) return;
        q.view.notes.push_back("Listing cut short: the keyspace is larger than " + calls + " or " +
                               std::to_string(max_rooms) + " rooms.");
    }

    void scan_all(std::shared_ptr<query> q) {
        if (!cluster_) return scan(q, "0");
        auto const masters = cluster_->map().masters();
        if (masters.empty()) {
            q->view.notes.push_back("Redis SCAN failed: the cluster's slot map has no master");
            return part_done(q);
        }
        q->scan_nodes = q->scanning = masters.size();
        for (auto const& m : masters) scan_node(q, m, "0", 0);
    }

    void scan(std::shared_ptr<query> q, std::string const& cursor) {
        auto self = shared_from_this();
        auto const pattern = scan_pattern();
        command(pattern, {"SCAN", cursor, "MATCH", pattern, "COUNT", "100"}, [self, q](rd::reply&& r) {
            ++q->scans;
            auto next = self->scan_page(*q, r);
            if (!next) {
                q->view.notes.push_back("Redis SCAN failed: " + r.str);
                return part_done(q);
            }
            if (*next != "0" && (q->scans >= max_scan_calls || q->rooms.size() >= max_rooms)) {
                self->cut_short(*q, std::to_string(max_scan_calls) + " SCAN calls");
                return self->members(q);
            }
            if (*next != "0") return self->scan(q, *next);
            self->members(q);
        });
    }

    /// One master's SCAN (cluster mode): its own cursor, at most
    /// max_scan_calls calls; the members are read once every master's ends.
    void scan_node(std::shared_ptr<query> q, rd::cluster::node_address const& at, std::string const& cursor,
                   std::size_t calls) {
        auto self = shared_from_this();
        cluster_->send_to(at, {"SCAN", cursor, "MATCH", scan_pattern(), "COUNT", "100"},
                          [self, q, calls](rd::cluster::node_address const& node, rd::reply&& r) {
                              auto next = self->scan_page(*q, r);
                              if (!next) {
                                  ++q->scan_failed;
                                  q->view.notes.push_back("Redis SCAN failed on " + node.name() +
                                                          " (its rooms are not listed): " + r.str);
                              } else if (*next != "0" && (calls + 1 >= max_scan_calls || q->rooms.size() >= max_rooms)) {
                                  self->cut_short(*q, std::to_string(max_scan_calls) + " SCAN calls per master");
                              } else if (*next != "0") {
                                  if (!self->cluster_) return self->scan_ended(q, node, "not connected to redis");
                                  return self->scan_node(q, node, *next, calls + 1);
                              }
                              self->scan_ended(q);
                          });
    }

    void scan_ended(std::shared_ptr<query> const& q, rd::cluster::node_address const& at, std::string const& why) {
        ++q->scan_failed;
        q->view.notes.push_back("Redis SCAN failed on " + at.name() + " (its rooms are not listed): " + why);
        scan_ended(q);
    }
    void scan_ended(std::shared_ptr<query> const& q) {
        if (--q->scanning > 0) return;
        if (q->scan_failed < q->scan_nodes) return members(q);
        part_done(q);  // no master answered: the page shows this process's rooms
    }

    void members(std::shared_ptr<query> q) {
        q->view.ok = true;
        if (q->rooms.size() > max_rooms) q->rooms.resize(max_rooms);
        q->view.rooms.resize(q->rooms.size());
        if (q->rooms.empty()) return part_done(q);
        q->waiting = q->rooms.size();
        auto self = shared_from_this();
        for (std::size_t i = 0; i < q->rooms.size(); ++i) {
            q->view.rooms[i].id = q->rooms[i];
            auto const key = keys_.members(q->rooms[i]);
            command(key, {"SSCAN", key, "0", "COUNT", std::to_string(members_page)}, [self, q, i](rd::reply&& r) {
                std::vector<std::string> users;
                if (r.is_array() && r.elements.size() == 2)
                    for (auto& u : r.elements[1].elements) users.push_back(std::move(u.str));
                self->presence(q, i, std::move(users));
            });
        }
    }

    void presence(std::shared_ptr<query> q, std::size_t i, std::vector<std::string> users) {
        if (users.empty()) return room_done(q);
        auto left = std::make_shared<std::size_t>(users.size());
        auto self = shared_from_this();
        auto const& room = q->rooms[i];
        for (auto& u : users) {
            auto const key = keys_.presence(room, u);
            command(key, {"HMGET", key, "metadata", "joinedAt", "instance"},
                    [self, q, i, left, user = u](rd::reply&& r) {
                        if (r.is_array() && r.elements.size() == 3 && !r.elements[0].is_nil()) {
                            member_row m;
                            m.user_id = user;
                            boost::system::error_code ec;
                            auto v = boost::json::parse(r.elements[0].str, ec);
                            if (!ec && v.is_object()) m.meta = std::move(v.get_object());
                            m.where = r.elements[2].str;
                            auto& rm = q->view.rooms[i];
                            long long joined = 0;
                            auto const& j = r.elements[1].str;
                            std::from_chars(j.data(), j.data() + j.size(), joined);
                            auto const at = std::chrono::system_clock::time_point(std::chrono::milliseconds(joined));
                            if (joined > 0 && (rm.members.empty() || at < rm.created)) rm.created = at;
                            rm.members.push_back(std::move(m));
                        }
                        if (--*left == 0) self->room_done(q);
                    });
        }
    }

    void room_done(std::shared_ptr<query> const& q) {
        if (--q->waiting > 0) return;
        std::erase_if(q->view.rooms, [](room_row const& r) { return r.members.empty(); });
        for (auto& r : q->view.rooms)
            std::ranges::sort(r.members, {}, &member_row::user_id);
        std::ranges::sort(q->view.rooms, {}, &room_row::id);
        part_done(q);
    }

    void instances(std::shared_ptr<query> q, std::string const& cursor) {
        auto self = shared_from_this();
        command(instances_index_key, {"SSCAN", instances_index_key, cursor, "COUNT", "100"}, [self, q](rd::reply&& r) {
            ++q->index_scans;
            if (!r.is_array() || r.elements.size() != 2 || !r.elements[1].is_array()) {
                q->view.notes.push_back("Reading the instance index failed: " + r.str);
                return part_done(q);
            }
            for (auto& e : r.elements[1].elements)
                if (std::ranges::find(q->ids, e.str) == q->ids.end()) q->ids.push_back(std::move(e.str));
            auto const next = r.elements[0].str;
            if (next != "0" && (q->index_scans >= max_index_scans || q->ids.size() >= max_instances)) {
                q->view.notes.push_back("Instance list cut short at " + std::to_string(max_index_scans) +
                                        " SSCAN calls or " + std::to_string(max_instances) + " instances.");
                return self->records(q);
            }
            if (next != "0") return self->instances(q, next);
            self->records(q);
        });
    }

    void records(std::shared_ptr<query> q) {
        if (q->ids.size() > max_instances) q->ids.resize(max_instances);
        if (q->ids.empty()) {
            q->view.instances_ok = true;
            return part_done(q);
        }
        auto self = shared_from_this();
        if (cluster_mode()) {
            // One slot per record: one GET each, to the master of its slot
            // (an MGET across slots is refused with CROSSSLOT).
            auto values = std::make_shared<std::vector<rd::reply>>(q->ids.size());
            auto left = std::make_shared<std::size_t>(q->ids.size());
            for (std::size_t i = 0; i < q->ids.size(); ++i) {
                auto const key = instance_key(q->ids[i]);
                command(key, {"GET", key}, [self, q, values, left, i](rd::reply&& r) {
                    (*values)[i] = std::move(r);
                    if (--*left == 0) self->got_records(q, *values);
                });
            }
            return;
        }
        std::vector<std::string> keys;
        keys.reserve(q->ids.size());
        for (auto const& id : q->ids) keys.push_back(instance_key(id));
        std::vector<std::string_view> args{"MGET"};
        for (auto const& k : keys) args.emplace_back(k);
        command(keys.front(), args, [self, q](rd::reply&& r) {
            if (!r.is_array() || r.elements.size() != q->ids.size()) {
                q->view.notes.push_back("Reading the instance records failed: " + r.str);
                return part_done(q);
            }
            self->got_records(q, r.elements);
        });
    }

    /// The records of q->ids, in order: a nil is an expired record (its id
    /// leaves the index), an error one that could not be read (cluster).
    void got_records(std::shared_ptr<query> const& q, std::vector<rd::reply>& values) {
        std::vector<std::string> gone;
        std::size_t failed = 0;
        std::string why;
        for (std::size_t i = 0; i < q->ids.size(); ++i) {
            auto& e = values[i];
            if (e.is_nil()) {
                gone.push_back(q->ids[i]);  // expired: that process died without a word
                continue;
            }
            if (e.is_error()) {
                if (failed++ == 0) why = e.str;
                continue;
            }
            if (auto rec = parse_instance_record(e.str); rec && rec->id == q->ids[i])
                q->view.instances.push_back(std::move(*rec));
        }
        if (!gone.empty()) {
            std::vector<std::string_view> srem{"SREM", instances_index_key};
            for (auto const& id : gone) srem.emplace_back(id);
            command(instances_index_key, srem);
        }
        if (failed > 0)
            q->view.notes.push_back("Reading " + std::to_string(failed) + " of " + std::to_string(q->ids.size()) +
                                    " instance records failed: " + why);
        q->view.instances_ok = failed < q->ids.size();
        part_done(q);
    }

    // ---- connections -------------------------------------------------------------

    rd::connection_config config() const {
        rd::connection_config cfg;
        cfg.connect_timeout = settings_.connect_timeout;
        cfg.reply_timeout = settings_.reply_timeout;
        cfg.ping_interval = settings_.ping_interval;
        cfg.client_name = "flock-admin";
        return cfg;
    }

    void connect() {
        if (stopped_) return;
        if (topology_ == topology::cluster) return start_cluster();
        if (!url_.sentinel()) return connect_to(url_);
        // redis+sentinel://: the master the sentinels name, as the brokers find it.
        if (!sentinel_) sentinel_ = std::make_shared<rd::sentinel_client>(ex_, url_, tls_.get(), config(), log_);
        connecting_ = true;
        sentinel_->resolve([w = weak_from_this()](std::string const& err, rd::url const& master) {
            auto self = w.lock();
            if (!self || self->stopped_) return;
            if (!err.empty()) return self->on_lost(err);
            self->connect_to(master);
        });
    }

    void connect_to(rd::url const& target) {
        auto self = shared_from_this();
        cmd_ = std::make_shared<rd::connection>(ex_, tls_.get());
        cmd_up_ = false;
        connecting_ = true;
        cmd_->async_connect(target, config(), [self, c = cmd_](std::string const& err) {
            if (c != self->cmd_) return;
            if (!err.empty()) return self->on_lost(err);
            c->on_close([w = self->weak_from_this(), c = c.get()](std::string const& why) {
                if (auto s = w.lock(); s && s->cmd_.get() == c) s->on_lost(why);
            });
            if (self->topology_ == topology::unknown && !self->url_.sentinel()) return self->detect(c);
            self->commands_up();
        });
        connect_subscriber(target);
    }

    /// The first command connection of a redis:// URL asks whether its node
    /// belongs to a Redis Cluster, as the brokers do: if so, a cluster client
    /// takes over the commands for the life of the reader.
    void detect(std::shared_ptr<rd::connection> const& c) {
        c->send({"CLUSTER", "INFO"}, [w = weak_from_this(), c](rd::reply&& r) {
            auto self = w.lock();
            if (!self || self->stopped_ || c != self->cmd_) return;
            if (r.type == rd::reply::kind::io_error) return self->on_lost(r.str);
            if (r.is_error()) {  // "cluster support disabled", or a CLUSTER this user may not run
                self->topology_ = topology::single;
                return self->commands_up();
            }
            self->topology_ = topology::cluster;
            self->keys_ = rd::key_schema(true);
            self->log_.info("admin: redis is a cluster node: reading every master", {{"url", self->url_.redacted()}});
            drop(self->ex_, self->cmd_);
            self->start_cluster();
        });
    }

    void start_cluster() {
        rd::cluster::client_config cfg;
        cfg.connection = config();
        auto c = std::make_shared<rd::cluster::client>(ex_, tls_.get(), url_, std::move(cfg));
        cluster_ = c;
        connecting_ = true;
        auto w = weak_from_this();
        c->on_log([w](std::string const& what) {
            if (auto self = w.lock()) self->log_.debug("admin: redis cluster: " + what);
        });
        c->async_start([w, c](std::string const& err, bool is_cluster) {
            auto self = w.lock();
            if (!self || self->stopped_ || c != self->cluster_) return;
            if (!err.empty()) return self->on_lost(err);
            if (!is_cluster) {  // the node left its cluster meanwhile: start over
                self->topology_ = topology::unknown;
                self->keys_ = rd::key_schema(false);
                return self->on_lost("the node is not a cluster node any more");
            }
            self->commands_up();
        });
        if (!sub_) connect_subscriber(url_);
    }

    void commands_up() {
        cmd_up_ = true;
        connecting_ = false;
        for (auto& q : std::exchange(waiting_, {})) run(q);
    }

    void connect_subscriber(rd::url const& target) {
        auto self = shared_from_this();
        sub_ = std::make_shared<rd::connection>(ex_, tls_.get());
        sub_at_ = rd::cluster::node_address{target.host, target.port, {}}.name();
        sub_up_ = subscribed_ = false;
        sub_->async_connect(target, config(), [self, s = sub_](std::string const& err) {
            if (s != self->sub_) return;
            if (!err.empty()) return self->subscriber_lost(err);
            s->on_close([w = self->weak_from_this(), s = s.get()](std::string const& why) {
                if (auto me = w.lock(); me && me->sub_.get() == s) me->subscriber_lost(why);
            });
            s->set_push_handler([w = self->weak_from_this()](rd::reply&& r) {
                if (auto me = w.lock()) me->on_push(std::move(r));
            });
            s->send({"SUBSCRIBE", self->control_});
            self->sub_up_ = true;
            if (self->cluster_mode() && !self->sub_error_.empty()) {
                self->log_.info("admin: subscribed to close orders again", {{"node", self->sub_at_}});
                self->sub_error_.clear();
            }
        });
    }

    /// The subscriber is lost. On a cluster, it alone connects again, to
    /// another master of the map (classic pub/sub reaches every node); else
    /// everything does (on_lost).
    void subscriber_lost(std::string const& why) {
        if (stopped_) return;
        if (!cluster_) return on_lost(why);
        if (why != sub_error_)
            log_.warn("admin: the subscriber to close orders was lost, connecting to another node", {{"error", why}});
        sub_error_ = why;
        auto const failed = sub_at_;
        sub_up_ = subscribed_ = false;
        drop(ex_, sub_);
        sub_retry_.expires_after(std::chrono::seconds(1));
        sub_retry_.async_wait([w = weak_from_this(), failed](boost::system::error_code ec) {
            if (ec) return;
            auto self = w.lock();
            if (!self || self->stopped_ || !self->cluster_ || self->sub_) return;
            self->connect_subscriber(self->next_node(failed));
        });
    }

    /// The next master of the map after the node `failed` (host:port), in
    /// turn; the URL's node while no map is known.
    rd::url next_node(std::string const& failed) {
        auto const masters = cluster_ ? cluster_->map().masters() : std::vector<rd::cluster::node_address>{};
        auto u = url_;
        for (std::size_t k = 0; k < masters.size(); ++k) {
            auto const& m = masters[(sub_pick_ + k) % masters.size()];
            if (m.name() == failed && masters.size() > 1) continue;
            sub_pick_ = (sub_pick_ + k + 1) % masters.size();
            u.host = m.host;
            u.port = m.port;
            break;
        }
        return u;
    }

    /// Closes a connection now and lets it go once the handler running
    /// (maybe one of its own) has returned.
    template <class C>
    static void drop(asio::any_io_executor ex, std::shared_ptr<C>& c) {
        if (!c) return;
        c->close();
        asio::post(ex, [old = std::move(c)] {});
        c = nullptr;
    }

    void on_lost(std::string const& why) {
        if (stopped_) return;
        if (why != error_) log_.warn("admin: redis connection failed, retrying", {{"error", why}});
        error_ = why;
        cmd_up_ = sub_up_ = connecting_ = subscribed_ = false;
        for (auto& q : std::exchange(waiting_, {})) unreachable(q);
        drop(ex_, cmd_);
        drop(ex_, sub_);
        drop(ex_, cluster_);
        sub_retry_.cancel();
        retry_.expires_after(std::chrono::seconds(1));
        retry_.async_wait([w = weak_from_this()](boost::system::error_code ec) {
            if (ec) return;
            if (auto s = w.lock()) s->connect();
        });
    }

    void on_push(rd::reply&& r) {
        if (r.is_array() && r.elements.size() == 3 && r.elements[0].str == "subscribe" &&
            r.elements[1].str == control_) {
            subscribed_ = true;
            for (auto& f : std::exchange(when_subscribed_, {})) f();
            return;
        }
        if (!r.is_array() || r.elements.size() != 3 || r.elements[0].str != "message") return;
        if (r.elements[1].str != control_) return;
        boost::system::error_code ec;
        auto v = boost::json::parse(r.elements[2].str, ec);
        if (ec || !v.is_object()) return;
        auto const& o = v.get_object();
        auto str = [&](char const* k) -> std::string {
            auto it = o.find(k);
            return it != o.end() && it->value().is_string() ? std::string(it->value().get_string()) : std::string();
        };
        if (str("from") == process_) return;  // ours: already done locally
        auto const op = str("op");
        if (op == "close-all") {
            log_.info("admin: close-all ordered by another instance", {{"from", str("from")}});
            if (on_order_) on_order_("");
        } else if (op == "close-room" && !str("roomId").empty()) {
            log_.info("admin: close-room ordered by another instance", {{"from", str("from")}, {"room", str("roomId")}});
            if (on_order_) on_order_(str("roomId"));
        }
    }

    asio::any_io_executor ex_;
    rd::url url_;
    redis_settings settings_;
    std::string process_;
    logger log_;
    std::string control_;
    std::unique_ptr<asio::ssl::context> tls_;
    std::shared_ptr<rd::sentinel_client> sentinel_;  // redis+sentinel:// only
    std::shared_ptr<rd::connection> cmd_, sub_;
    topology topology_ = topology::unknown;
    rd::key_schema keys_;                          // tagged by room on a cluster
    std::shared_ptr<rd::cluster::client> cluster_;  // the commands, on a cluster
    std::size_t sub_pick_ = 0;                      // the next master for the subscriber (cluster)
    std::string sub_at_;                            // host:port of the subscriber's node
    std::string sub_error_;                         // why the subscriber was last lost (cluster)
    bool cmd_up_ = false, sub_up_ = false, connecting_ = false, stopped_ = false;
    std::vector<std::shared_ptr<query>> waiting_;  // reads waiting for the first connection
    bool subscribed_ = false;                       // the control channel's SUBSCRIBE is confirmed
    std::vector<std::function<void()>> when_subscribed_;
    std::string error_;
    asio::steady_timer retry_, sub_retry_;
    close_order on_order_;
};

}  // namespace flk::detail::admin
