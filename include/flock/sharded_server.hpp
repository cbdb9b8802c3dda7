// flk::sharded_server: one flock server per core, sharing nothing.
//
// A basic_flock runs on one event loop. To use several cores, a process runs
// several of them, shards, each with its own io_context on its own thread:
//
// - they listen on the same port with SO_REUSEPORT, so the kernel spreads
//   new connections over them, and a connection stays on its shard for life;
// - they coordinate as separate instances do: through Redis when the broker
//   is redis_broker (each shard is an instance with its own instanceId), or
//   through a memory_hub when it is memory_broker (see broker/memory.hpp).
//
// No state is shared between threads, so the hot path takes no lock; what
// crosses shards goes by message passing, batched per loop turn.
//
//     flk::options opts = flk::options::from_env();      // opts.threads: 0 = one per core
//     flk::sharded_server<flk::single_node_server> server(opts);
//     server.start();                                    // binds; throws on failure
//     ...
//     server.stop([] { /* every shard is shut */ });     // from any thread
//     server.join();                                     // the threads are gone
#pragma once

#include <flock/broker/memory.hpp>
#include <flock/metrics.hpp>
#include <flock/options.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flk {

template <class Server>
class sharded_server {
public:
    using server_type = Server;

    /// Nothing runs or binds before start(). `opts.threads` shards, or one
    /// per core when it is 0.
    explicit sharded_server(options opts) : opts_(std::move(opts)) {
        std::size_t n = opts_.threads;
        if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
        opts_.reuse_port = n > 1;
        // The connection limits hold for the process: one gate for every shard.
        if (!opts_.gate) opts_.gate = std::make_shared<connection_gate>(opts_.max_connections, opts_.max_connections_per_ip);
        shards_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<shard>());
        hub_ = std::make_unique<memory_hub>(n);
        if (opts_.metrics)  // GET /metrics: every shard's counters, summed at scrape time
            opts_.http_routes.push_back(metrics_route([this](auto done) { collect_metrics(std::move(done)); },
                                                      opts_.metrics_token, opts_.metrics_allow));
    }

    sharded_server(sharded_server const&) = delete;
    sharded_server& operator=(sharded_server const&) = delete;

    ~sharded_server() {
        if (!started_) return;
        halt();
        join_threads();
    }

    /// Builds and starts every shard, then runs one thread per shard. Shard 0
    /// binds first, so a port of 0 picks one free port that all shards share.
    /// Throws what the Server throws (config_error, a bind failure). Should a
    /// shard's loop throw later, every loop is halted and `on_failure` runs
    /// (on that shard's thread); join() then rethrows.
    void start(std::function<void()> on_failure = {}) {
        if (started_) return;
        if (shards_.size() > 1) refuse_a_taken_port();
        for (std::size_t i = 0; i < shards_.size(); ++i) {
            auto& s = *shards_[i];
            auto shard_opts = opts_;
            if (shards_.size() > 1) shard_opts.log_fields.emplace_back("shard", std::to_string(i));
            if constexpr (hub_aware) s.server.emplace(s.io.get_executor(), std::move(shard_opts), *hub_, i);
            else s.server.emplace(s.io.get_executor(), std::move(shard_opts));
            s.server->start();
            if (i == 0) opts_.port = s.server->transport().port();
        }
        started_ = true;
        for (auto& s : shards_)
            s->thread = std::thread([this, &sh = *s, on_failure] {
                try {
                    sh.io.run();
                } catch (...) {
                    {
                        std::lock_guard lock(failure_mutex_);
                        if (!failure_) failure_ = std::current_exception();
                    }
                    halt();  // one shard down takes the process down, rather than half of it
                    if (on_failure) on_failure();
                }
            });
    }

    /// Graceful stop of every shard (see basic_flock::stop); `done` runs on a
    /// shard's thread once all of them are shut. Safe from any thread.
    void stop(std::function<void()> done = {}) {
        if (!started_) {
            if (done) done();
            return;
        }
        auto remaining = std::make_shared<std::atomic<std::size_t>>(shards_.size());
        auto finish = [this, remaining, done = std::move(done)] {
            if (remaining->fetch_sub(1) != 1) return;
            for (auto& s : shards_) s->work.reset();  // each loop ends when its work does
            if (done) done();
        };
        for (auto& s : shards_)
            boost::asio::post(s->io, [&srv = *s->server, finish] { srv.stop(finish); });
    }

    /// Stops every event loop at once, without the goodbyes of stop().
    void halt() {
        for (auto& s : shards_) s->io.stop();
    }

    /// Waits for every shard's thread to end (after stop's `done`, or halt()).
    /// Rethrows what ended a shard's loop, if anything did.
    void join() {
        join_threads();
        std::lock_guard lock(failure_mutex_);
        if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    }

    std::size_t size() const noexcept { return shards_.size(); }
    /// The port every shard listens on; 0 before start().
    std::uint16_t port() const noexcept { return started_ ? opts_.port : 0; }
    options const& config() const noexcept { return opts_; }

    /// Runs `f(i, server)` on each shard's own thread in turn and waits for it:
    /// how to read a shard's state from outside. Never call it from a shard.
    template <class F>
    void for_each(F f) {
        for (std::size_t i = 0; i < shards_.size(); ++i) {
            std::promise<void> ran;
            boost::asio::post(shards_[i]->io, [&, i] {
                try {
                    f(i, *shards_[i]->server);
                    ran.set_value();
                } catch (...) {
                    ran.set_exception(std::current_exception());
                }
            });
            ran.get_future().get();
        }
    }

    /// Runs `f(i, server)` later on shard i's own thread and returns at once;
    /// safe from any thread. Nothing runs once that shard's loop has ended.
    template <class F>
    void post(std::size_t i, F f) {
        boost::asio::post(shards_[i]->io, [s = shards_[i].get(), i, f = std::move(f)]() mutable {
            if (s->server) f(i, *s->server);
        });
    }

    /// Asks every shard, on its own thread, for its figures and calls `done`
    /// with their sum (shard by shard in order), on the last shard's thread.
    /// Never blocks: safe from a shard. After start() only.
    void collect_metrics(std::function<void(metrics_snapshot)> done) {
        struct gathering {
            std::mutex mutex;
            std::vector<metrics_snapshot> parts;
            std::size_t left;
            std::function<void(metrics_snapshot)> done;
        };
        auto g = std::make_shared<gathering>();
        g->parts.resize(shards_.size());
        g->left = shards_.size();
        g->done = std::move(done);
        for (std::size_t i = 0; i < shards_.size(); ++i)
            boost::asio::post(shards_[i]->io, [g, i, &srv = *shards_[i]->server] {
                metrics_snapshot part;
                srv.collect_metrics(part);
                {
                    std::lock_guard lock(g->mutex);
                    g->parts[i] = std::move(part);
                    if (--g->left != 0) return;
                }
                metrics_snapshot sum;
                for (auto const& p : g->parts) sum.add(p);
                g->done(std::move(sum));
            });
    }

private:
    static constexpr bool hub_aware =
        std::constructible_from<Server, boost::asio::any_io_executor, options, memory_hub&, std::size_t>;

    struct shard {
        boost::asio::io_context io{1};
        std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{
            io.get_executor()};
        std::optional<Server> server;
        std::thread thread;
    };

    // SO_REUSEPORT lets any process of the same user bind the port too: a
    // second flock-server started by mistake on a busy port would silently
    // take half of its connections. So the port must be free first; a plain
    // bind (no SO_REUSEPORT) fails on any listener, whoever it is.
    void refuse_a_taken_port() const {
        if (opts_.port == 0) return;  // the kernel picks a free one
        namespace ip = boost::asio::ip;
        boost::asio::io_context io;
        boost::system::error_code ec;
        auto const where = opts_.host + ':' + std::to_string(opts_.port);
        auto const found = ip::tcp::resolver(io).resolve(
            opts_.host, std::to_string(opts_.port), ip::tcp::resolver::passive | ip::tcp::resolver::numeric_service, ec);
        if (ec || found.empty()) return;  // shard 0 reports it, with the same words as alone
        auto const endpoint = found.begin()->endpoint();
        ip::tcp::acceptor probe(io);
        probe.open(endpoint.protocol(), ec);
        if (!ec) probe.set_option(ip::tcp::acceptor::reuse_address(true), ec);  // as the shards do
        if (!ec) probe.bind(endpoint, ec);
        if (ec == boost::asio::error::address_in_use)
            throw std::runtime_error("flock: cannot listen on " + where + ": bind: " + ec.message());
    }

    void join_threads() {
        for (auto& s : shards_)
            if (s->thread.joinable()) s->thread.join();
    }

    options opts_;
    std::unique_ptr<memory_hub> hub_;
    std::vector<std::unique_ptr<shard>> shards_;
    bool started_ = false;
    std::mutex failure_mutex_;
    std::exception_ptr failure_;
};

}  // namespace flk
