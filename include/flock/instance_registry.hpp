// flk::instance_registry: in Redis mode, each flock process keeps a short
// record about itself in Redis, so that the admin dashboard of any instance
// can list every flock instance of the cluster (docs/admin.md, "Instances").
//
// Every `refresh` (5 s) it asks its shards for their figures (connections,
// rooms, broker state and instanceId; no copy of the rooms) and writes, in
// one pipelined write on a Redis connection of its own (never a broker's):
//
//     SET  flock:instance:{processId} <json> PX <ttl>     (ttl: 15 s, 3 refreshes)
//     SADD flock:instances {processId}
//
// The record (detail/instance_record.hpp) holds the name (host:port), the
// version, when the process started, its shards' instanceIds and figures and
// the round trip of the previous refresh's SET. stop() deletes it (DEL and
// SREM); a process that dies without stop() leaves it to expire within the
// TTL, and a reader then SREMs its id from the index. On a Redis Cluster
// (the URL's node answers CLUSTER INFO, as the brokers detect it) the same
// commands go through a cluster client, each to the master of its key's slot
// (the record and the index are in different slots: two writes, not one).
// It runs whether or not the admin is enabled, on the executor given (one
// thread, no locks):
//
//     auto registry = std::make_shared<flk::instance_registry>(io.get_executor(), opts);  // opts.redis_url set
//     registry->attach(flk::admin_backend_of(server), flk::instance_name(opts, server.port()));
//     ...
//     registry->stop([] { /* the record is gone (or the stop timed out) */ });
#pragma once

#include <flock/admin_backend.hpp>
#include <flock/broker/redis_settings.hpp>
#include <flock/detail/admin_security.hpp>
#include <flock/detail/instance_record.hpp>
#include <flock/detail/redis/cluster/client.hpp>
#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/url.hpp>
#include <flock/log.hpp>
#include <flock/options.hpp>
#include <flock/version.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace flk {

/// How the name of this process is shown: `host:port`, with the machine's
/// host name when the server listens on every address (0.0.0.0 or ::).
inline std::string instance_name(options const& o, std::uint16_t port) {
    std::string host = o.host;
    if (host.empty() || host == "0.0.0.0" || host == "::") {
        char buf[256] = {};
        if (::gethostname(buf, sizeof buf - 1) == 0 && buf[0] != '\0') host = buf;
        else if (host.empty()) host = "0.0.0.0";
    }
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return host + ':' + std::to_string(port);
}

struct registry_options {
    /// The record is rewritten this often.
    std::chrono::milliseconds refresh{5000};
    /// And expires this long after its last write (about 3 refreshes): how
    /// long a crashed process stays listed at most.
    std::chrono::milliseconds ttl{15000};
    /// How long stop() waits for Redis to confirm the deletion.
    std::chrono::milliseconds stop_timeout{1000};
};

class instance_registry : public std::enable_shared_from_this<instance_registry> {
public:
    /// `server_opts.redis_url` must be set (else std::invalid_argument).
    instance_registry(boost::asio::any_io_executor ex, options const& server_opts, registry_options r = {})
        : ex_(ex), ropts_(r), settings_(redis_settings::from(server_opts)),
          log_(server_opts.make_logger().with("component", "registry")), id_(detail::admin::random_token(16)),
          key_(detail::instance_key(id_)), timer_(ex), retry_(ex), stop_timer_(ex),
          started_at_(now_ms()) {
        if (!server_opts.redis_url) throw std::invalid_argument("flk::instance_registry needs a Redis URL");
        if (ropts_.refresh.count() <= 0 || ropts_.ttl <= ropts_.refresh)
            throw std::invalid_argument("flk::instance_registry: the TTL must be longer than the refresh period");
        url_ = detail::redis::parse_url(*server_opts.redis_url);
        if (url_.tls) {
            tls_ = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
            if (!settings_.tls_verify) {
                tls_->set_verify_mode(boost::asio::ssl::verify_none);
            } else {
                tls_->set_verify_mode(boost::asio::ssl::verify_peer);
                boost::system::error_code ec;
                if (settings_.ca_file) tls_->load_verify_file(*settings_.ca_file, ec);
                else tls_->set_default_verify_paths(ec);
            }
        }
    }

    instance_registry(instance_registry const&) = delete;
    instance_registry& operator=(instance_registry const&) = delete;

    /// This process's id: the suffix of its key `flock:instance:{id}`.
    std::string const& id() const noexcept { return id_; }
    std::string const& key() const noexcept { return key_; }

    /// The server to describe, and its name; starts connecting and writing.
    void attach(admin_backend b, std::string name) {
        boost::asio::post(ex_, [self = shared_from_this(), b = std::move(b), n = std::move(name)]() mutable {
            if (self->stopped_) return;
            self->backend_ = std::move(b);
            self->name_ = std::move(n);
            self->connect();
        });
    }

    /// Runs `f` (on the executor) once a record gathered after this call is
    /// in Redis. Never runs if the registry stops first.
    void when_published(std::function<void()> f) {
        boost::asio::post(ex_, [self = shared_from_this(), f = std::move(f)]() mutable {
            if (self->stopped_) return;
            self->waiters_.emplace_back(self->gathers_ + 1, std::move(f));
        });
    }

    /// Deletes the record (DEL, SREM), waiting at most stop_timeout for
    /// Redis, then closes; `done` runs on the executor. Later calls only run `done`.
    void stop(std::function<void()> done = {}) {
        boost::asio::post(ex_, [self = shared_from_this(), done = std::move(done)]() mutable {
            if (std::exchange(self->stopped_, true)) {
                if (done) done();
                return;
            }
            self->stop_done_ = std::move(done);
            self->timer_.cancel();
            self->retry_.cancel();
            self->waiters_.clear();
            if (!self->up_) return self->closed();
            self->stop_timer_.expires_after(self->ropts_.stop_timeout);
            self->stop_timer_.async_wait([self](boost::system::error_code ec) {
                if (!ec) self->closed();
            });
            // Both answered (on a cluster, two masters may hold them).
            auto left = std::make_shared<int>(2);
            auto answered = [self, left](detail::redis::reply&&) {
                if (--*left == 0) self->closed();
            };
            self->command(self->key_, {"DEL", self->key_}, answered);
            self->command(detail::instances_index_key, {"SREM", detail::instances_index_key, self->id_}, answered);
        });
    }

    /// Stops without a word to Redis: the record stays until its TTL, as
    /// when the process dies. For tests of that path; `done` runs on the
    /// executor once nothing more will be written.
    void halt(std::function<void()> done = {}) {
        boost::asio::post(ex_, [self = shared_from_this(), done = std::move(done)]() mutable {
            self->stopped_ = true;
            self->waiters_.clear();
            self->timer_.cancel();
            self->retry_.cancel();
            self->closed();
            if (done) done();
        });
    }

private:
    static std::int64_t now_ms() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    void closed() {
        stop_timer_.cancel();
        if (cmd_) cmd_->close();
        if (cluster_) cluster_->close();
        up_ = false;
        if (auto d = std::exchange(stop_done_, nullptr)) d();
    }

    detail::redis::connection_config config() const {
        detail::redis::connection_config cfg;
        cfg.connect_timeout = settings_.connect_timeout;
        cfg.reply_timeout = settings_.reply_timeout;
        cfg.ping_interval = settings_.ping_interval;
        cfg.client_name = "flock-registry";
        return cfg;
    }

    /// A command about `key`: on the connection, or on a cluster to the
    /// master of the key's slot.
    void command(std::string_view key, std::initializer_list<std::string_view> args,
                 detail::redis::connection::reply_handler h = {}) {
        std::span<std::string_view const> a(args.begin(), args.size());
        if (cluster_) return cluster_->send(key, a, std::move(h));
        if (cmd_) return cmd_->send(a, std::move(h));
        if (h) boost::asio::post(ex_, [h = std::move(h)] { h(detail::redis::reply::io_failure("not connected to redis")); });
    }

    void connect() {
        if (stopped_) return;
        if (cluster_mode_) return start_cluster();
        cmd_ = std::make_shared<detail::redis::connection>(ex_, tls_.get());
        up_ = false;
        cmd_->async_connect(url_, config(), [w = weak_from_this(), c = cmd_](std::string const& err) {
            auto self = w.lock();
            if (!self || c != self->cmd_ || self->stopped_) return;
            if (!err.empty()) return self->lost(err);
            c->on_close([w, c = c.get()](std::string const& why) {
                if (auto s = w.lock(); s && s->cmd_.get() == c) s->lost(why);
            });
            if (self->detected_ || self->url_.sentinel()) return self->connected();
            // The first connection asks whether its node belongs to a Redis
            // Cluster, as the brokers do.
            c->send({"CLUSTER", "INFO"}, [w, c](detail::redis::reply&& r) {
                auto self = w.lock();
                if (!self || c != self->cmd_ || self->stopped_) return;
                if (r.type == detail::redis::reply::kind::io_error) return self->lost(r.str);
                self->detected_ = true;
                if (r.is_error()) return self->connected();  // not a cluster
                self->cluster_mode_ = true;
                c->close();
                boost::asio::post(self->ex_, [old = std::move(self->cmd_)] {});
                self->start_cluster();
            });
        });
    }

    void start_cluster() {
        detail::redis::cluster::client_config cfg;
        cfg.connection = config();
        auto c = std::make_shared<detail::redis::cluster::client>(ex_, tls_.get(), url_, std::move(cfg));
        cluster_ = c;
        up_ = false;
        c->async_start([w = weak_from_this(), c](std::string const& err, bool is_cluster) {
            auto self = w.lock();
            if (!self || c != self->cluster_ || self->stopped_) return;
            if (!err.empty()) return self->lost(err);
            if (!is_cluster) {  // the node left its cluster meanwhile: start over
                self->cluster_mode_ = self->detected_ = false;
                return self->lost("the node is not a cluster node any more");
            }
            self->connected();
        });
    }

    void connected() {
        up_ = true;
        if (!error_.empty()) log_.info("registry: redis reachable again");
        error_.clear();
        tick();  // at once: a (re)connected process is listed without waiting a period
    }

    void lost(std::string const& why) {
        if (stopped_) return;
        if (why != error_) log_.warn("registry: redis connection failed, retrying", {{"error", why}});
        error_ = why;
        up_ = false;
        timer_.cancel();
        if (cmd_) cmd_->close();
        if (cluster_) {
            cluster_->close();
            boost::asio::post(ex_, [old = std::move(cluster_)] {});
            cluster_ = nullptr;
        }
        retry_.expires_after(std::chrono::seconds(1));
        retry_.async_wait([w = weak_from_this()](boost::system::error_code ec) {
            if (ec) return;
            if (auto s = w.lock()) s->connect();
        });
    }

    struct gather {
        std::uint64_t number = 0;
        std::vector<std::optional<admin_backend::shard_report>> reports;
        std::size_t left = 0;
        bool written = false;
    };

    // Writes what the last gather has (a shard that has not answered by the
    // next tick is written as such), then starts the next one.
    void tick() {
        if (stopped_ || !up_ || !backend_) return;
        timer_.expires_after(ropts_.refresh);
        timer_.async_wait([w = weak_from_this()](boost::system::error_code ec) {
            if (ec) return;
            if (auto s = w.lock()) s->tick();
        });
        if (current_ && !current_->written) write(*current_);
        auto g = std::make_shared<gather>();
        g->number = ++gathers_;
        g->reports.resize(backend_->shards);
        g->left = backend_->shards;
        current_ = g;
        if (g->left == 0) return write(*g);
        for (std::size_t i = 0; i < backend_->shards; ++i)
            backend_->report(i, false, [w = weak_from_this(), g, i](admin_backend::shard_report r) {
                auto self = w.lock();
                if (!self) return;
                boost::asio::post(self->ex_, [self, g, i, r = std::move(r)]() mutable {
                    if (g->written) return;
                    g->reports[i] = std::move(r);
                    if (--g->left == 0) self->write(*g);
                });
            });
    }

    void write(gather& g) {
        g.written = true;
        if (stopped_ || !up_) return;
        detail::instance_record rec;
        rec.id = id_;
        rec.name = name_;
        rec.version = std::string(version);
        rec.started_at = started_at_;
        rec.updated_at = now_ms();
        rec.refresh_ms = ropts_.refresh.count();
        rec.rtt_us = rtt_us_;
        for (auto const& r : g.reports) {
            detail::instance_record::shard s;
            if (r) {
                s.instance = r->instance;
                s.connections = r->connections;
                s.rooms = r->room_count;
                s.up = r->up;
                s.error = r->error;
            } else {
                s.error = "did not answer within " + std::to_string(ropts_.refresh.count()) + " ms";
            }
            rec.shards.push_back(std::move(s));
        }
        auto const json = detail::to_json(rec);
        auto const ttl = std::to_string(ropts_.ttl.count());
        auto const t0 = std::chrono::steady_clock::now();
        command(key_, {"SET", key_, json, "PX", ttl},
                   [w = weak_from_this(), t0, n = g.number](detail::redis::reply&& r) {
                       auto self = w.lock();
                       if (!self || self->stopped_) return;
                       if (r.is_error()) {
                           if (r.str != self->write_error_)
                               self->log_.warn("registry: writing the record failed", {{"error", r.str}});
                           self->write_error_ = r.str;
                           return;
                       }
                       self->write_error_.clear();
                       self->rtt_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::steady_clock::now() - t0)
                                           .count();
                       std::vector<std::function<void()>> due;
                       std::erase_if(self->waiters_, [&](auto& w8) {
                           if (w8.first > n) return false;
                           due.push_back(std::move(w8.second));
                           return true;
                       });
                       for (auto& f : due) f();
                   });
        command(detail::instances_index_key, {"SADD", detail::instances_index_key, id_});
    }

    boost::asio::any_io_executor ex_;
    registry_options ropts_;
    redis_settings settings_;
    logger log_;
    std::string id_, key_, name_;
    detail::redis::url url_;
    std::unique_ptr<boost::asio::ssl::context> tls_;
    std::shared_ptr<detail::redis::connection> cmd_;
    std::shared_ptr<detail::redis::cluster::client> cluster_;  // on a Redis Cluster
    bool detected_ = false, cluster_mode_ = false;             // CLUSTER INFO asked; its answer
    boost::asio::steady_timer timer_, retry_, stop_timer_;
    std::optional<admin_backend> backend_;
    std::int64_t started_at_ = 0;
    std::optional<std::int64_t> rtt_us_;
    std::shared_ptr<gather> current_;
    std::uint64_t gathers_ = 0;
    std::vector<std::pair<std::uint64_t, std::function<void()>>> waiters_;  // (gather number, f)
    bool up_ = false, stopped_ = false;
    std::string error_, write_error_;
    std::function<void()> stop_done_;
};

}  // namespace flk
