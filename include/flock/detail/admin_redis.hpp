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
// Everything runs on the executor given, one thread.
#pragma once

#include <flock/broker/redis_settings.hpp>
#include <flock/detail/admin_html.hpp>
#include <flock/detail/instance_record.hpp>
#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/keys.hpp>
#include <flock/detail/redis/sentinel.hpp>
#include <flock/detail/redis/url.hpp>
#include <flock/log.hpp>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
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
    static constexpr std::size_t max_scan_calls = 20;
    static constexpr std::size_t max_rooms = 500;
    static constexpr std::size_t members_page = 200;
    static constexpr std::size_t max_index_scans = 10;
    static constexpr std::size_t max_instances = 200;

    cluster_reader(asio::any_io_executor ex, std::string const& url, redis_settings settings, std::string process_id,
                   logger log)
        : ex_(ex), url_(rd::parse_url(url)), settings_(std::move(settings)), process_(std::move(process_id)),
          log_(std::move(log)), retry_(ex) {
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
        if (cmd_) cmd_->close();
        if (sub_) sub_->close();
    }

    bool up() const noexcept { return cmd_up_ && sub_up_; }

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
        cmd_->send({"PUBLISH", control_, msg});
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
    struct query {
        cluster_view view;
        std::function<void(cluster_view)> done;
        std::vector<std::string> rooms;
        std::size_t scans = 0;
        std::size_t waiting = 0;
        std::size_t parts = 2;  // the rooms, the instances
        std::vector<std::string> ids;
        std::size_t index_scans = 0;
    };

    void unreachable(std::shared_ptr<query> const& q) {
        q->view.notes.push_back("Redis is not reachable" + (error_.empty() ? std::string() : ": " + error_));
        finish(q);
    }

    void run(std::shared_ptr<query> q) {
        auto const t0 = std::chrono::steady_clock::now();
        auto self = shared_from_this();
        cmd_->send({"PING"}, [self, q, t0](rd::reply&& r) {
            if (r.is_error()) {
                q->view.notes.push_back("Redis PING failed: " + r.str);
                return self->finish(q);
            }
            q->view.rtt = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
            self->scan(q, "0");
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

    void scan(std::shared_ptr<query> q, std::string const& cursor) {
        auto self = shared_from_this();
        auto const pattern = std::string(rd::room_prefix) + "*" + std::string(rd::members_suffix);
        cmd_->send({"SCAN", cursor, "MATCH", pattern, "COUNT", "100"}, [self, q](rd::reply&& r) {
            ++q->scans;
            if (!r.is_array() || r.elements.size() != 2 || !r.elements[1].is_array()) {
                q->view.notes.push_back("Redis SCAN failed: " + r.str);
                return part_done(q);
            }
            for (auto& k : r.elements[1].elements) {
                std::string_view key = k.str;
                if (key.size() < rd::room_prefix.size() + rd::members_suffix.size()) continue;
                auto room = key.substr(rd::room_prefix.size(),
                                       key.size() - rd::room_prefix.size() - rd::members_suffix.size());
                if (std::ranges::find(q->rooms, room) == q->rooms.end()) q->rooms.emplace_back(room);
            }
            auto const next = r.elements[0].str;
            if (next != "0" && (q->scans >= max_scan_calls || q->rooms.size() >= max_rooms)) {
                q->view.notes.push_back("Listing cut short: the keyspace is larger than " +
                                        std::to_string(max_scan_calls) + " SCAN calls or " +
                                        std::to_string(max_rooms) + " rooms.");
                return self->members(q);
            }
            if (next != "0") return self->scan(q, next);
            self->members(q);
        });
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
            cmd_->send({"SSCAN", rd::members_key(q->rooms[i]), "0", "COUNT", std::to_string(members_page)},
                       [self, q, i](rd::reply&& r) {
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
            cmd_->send({"HMGET", rd::presence_key(room, u), "metadata", "joinedAt", "instance"},
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
        cmd_->send({"SSCAN", instances_index_key, cursor, "COUNT", "100"}, [self, q](rd::reply&& r) {
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
        std::vector<std::string> keys;
        keys.reserve(q->ids.size());
        for (auto const& id : q->ids) keys.push_back(instance_key(id));
        std::vector<std::string_view> args{"MGET"};
        for (auto const& k : keys) args.emplace_back(k);
        auto self = shared_from_this();
        cmd_->send(args, [self, q](rd::reply&& r) {
            if (!r.is_array() || r.elements.size() != q->ids.size()) {
                q->view.notes.push_back("Reading the instance records failed: " + r.str);
                return part_done(q);
            }
            std::vector<std::string> gone;
            for (std::size_t i = 0; i < q->ids.size(); ++i) {
                auto& e = r.elements[i];
                if (e.is_nil()) {
                    gone.push_back(q->ids[i]);  // expired: that process died without a word
                    continue;
                }
                if (auto rec = parse_instance_record(e.str); rec && rec->id == q->ids[i])
                    q->view.instances.push_back(std::move(*rec));
            }
            if (!gone.empty()) {
                std::vector<std::string_view> srem{"SREM", instances_index_key};
                for (auto const& id : gone) srem.emplace_back(id);
                self->cmd_->send(srem);
            }
            q->view.instances_ok = true;
            part_done(q);
        });
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
        auto cfg = config();
        auto self = shared_from_this();
        cmd_ = std::make_shared<rd::connection>(ex_, tls_.get());
        sub_ = std::make_shared<rd::connection>(ex_, tls_.get());
        cmd_up_ = sub_up_ = false;
        connecting_ = true;
        auto lost = [w = weak_from_this()](std::string const& why) {
            if (auto s = w.lock()) s->on_lost(why);
        };
        cmd_->async_connect(target, cfg, [self, lost, c = cmd_](std::string const& err) {
            if (c != self->cmd_) return;
            if (!err.empty()) return self->on_lost(err);
            self->cmd_up_ = true;
            self->connecting_ = false;
            c->on_close(lost);
            for (auto& q : std::exchange(self->waiting_, {})) self->run(q);
        });
        sub_->async_connect(target, cfg, [self, lost, s = sub_](std::string const& err) {
            if (s != self->sub_) return;
            if (!err.empty()) return self->on_lost(err);
            s->on_close(lost);
            s->set_push_handler([w = self->weak_from_this()](rd::reply&& r) {
                if (auto me = w.lock()) me->on_push(std::move(r));
            });
            s->send({"SUBSCRIBE", self->control_});
            self->sub_up_ = true;
        });
    }

    void on_lost(std::string const& why) {
        if (stopped_) return;
        if (why != error_) log_.warn("admin: redis connection failed, retrying", {{"error", why}});
        error_ = why;
        cmd_up_ = sub_up_ = connecting_ = subscribed_ = false;
        for (auto& q : std::exchange(waiting_, {})) unreachable(q);
        if (cmd_) cmd_->close();
        if (sub_) sub_->close();
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
    bool cmd_up_ = false, sub_up_ = false, connecting_ = false, stopped_ = false;
    std::vector<std::shared_ptr<query>> waiting_;  // reads waiting for the first connection
    bool subscribed_ = false;                       // the control channel's SUBSCRIBE is confirmed
    std::vector<std::function<void()>> when_subscribed_;
    std::string error_;
    asio::steady_timer retry_;
    close_order on_order_;
};

}  // namespace flk::detail::admin
