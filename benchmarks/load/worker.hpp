// One generator thread: its own io_context and its share of the connections.
// A 1 ms tick opens connections on the ramp schedule and visits each joined
// user once per send period, at its phase in the period: drawn at random per
// user (real users move independently), or k/n for the worker's k-th of n
// connections with --phase lockstep (a room's members one after another).
#pragma once

#include "connection.hpp"
#include "stats.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace load {

class worker {
public:
    /// Serves the connections whose ids are `ids` (ascending).
    worker(run_config const& cfg, unsigned index, std::vector<std::uint32_t> const& ids)
        : ctx_(cfg, index + 1, poller_), timer_(io_) {
        auto const& o = cfg.opts;
        // Sampled connections are spread evenly over all ids.
        auto checked = [&](std::uint32_t id) {
            return std::floor((id + 1) * o.sample) > std::floor(id * o.sample);
        };
        for (auto id : ids)
            conns_.push_back(std::make_unique<connection>(io_, ctx_, static_cast<std::uint32_t>(conns_.size()), id,
                                                          checked(id)));
        ctx_.unsettled = static_cast<std::uint64_t>(
            std::ranges::count_if(conns_, [](auto const& c) { return !c->churner(); }));
        // Idle users are visited once a second, for their heartbeats only.
        period_us_ = std::max<std::int64_t>(1, std::llround(o.idle ? 1e6 : 1e6 / o.hz));
        plan_phases();
        publish();
    }

    /// The thread body: runs until run_control::stop.
    void run() {
        timer_.expires_at(ctx_.cfg.clock.at(0));
        schedule();
        watch();
        io_.run();
    }

    worker_progress& progress() { return progress_; }
    worker_stats const& stats() const { return ctx_.stats; }
    std::vector<std::unique_ptr<connection>> const& connections() const { return conns_; }

private:
    static constexpr std::int64_t tick_us = 1000;
    static constexpr std::int64_t housekeeping_us = 100'000;

    void schedule() {
        timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) on_tick();
        });
    }

    /// The connections' sockets: one wait per turn of the loop for all of them.
    void watch() {
        poller_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;
            for (epoll_event const& ev : poller_.poll())
                conns_[connection::index_of(ev.data.u64)]->on_events(ev.data.u64, ev.events);
            watch();
        });
    }

    void on_tick() {
        if (ctx_.cfg.control.stop.load(std::memory_order_relaxed)) return shutdown();
        auto const now = ctx_.cfg.clock.now_us();
        open_due(now);
        visit_due(now);
        if (now >= next_housekeeping_us_) {
            next_housekeeping_us_ = now + housekeeping_us;
            if (ctx_.unsettled > 0)
                for (auto& c : conns_) c->check_deadline(now);
            publish();
        }
        timer_.expires_at(timer_.expiry() + std::chrono::microseconds(tick_us));
        schedule();
    }

    /// Connection `id` opens at id / ramp-rate seconds into the run.
    void open_due(std::int64_t now) {
        auto const rate = ctx_.cfg.opts.ramp_rate;
        while (next_open_ < conns_.size() &&
               static_cast<double>(conns_[next_open_]->id()) / rate * 1e6 <= static_cast<double>(now))
            conns_[next_open_++]->start(now);
    }

    /// Each connection's phase (µs into the period), and the visiting
    /// order: by phase. A random phase depends only on --seed and the
    /// connection's id, not on how ids are split over workers.
    void plan_phases() {
        auto const n = conns_.size();
        auto const& o = ctx_.cfg.opts;
        std::vector<std::int64_t> phase(n);
        for (std::size_t k = 0; k < n; ++k) {
            phase[k] = o.lockstep ? static_cast<std::int64_t>(k) * period_us_ / static_cast<std::int64_t>(n)
                                  : static_cast<std::int64_t>(mix(o.seed, conns_[k]->id()) %
                                                              static_cast<std::uint64_t>(period_us_));
        }
        order_.resize(n);
        for (std::size_t k = 0; k < n; ++k) order_[k] = k;
        std::ranges::stable_sort(order_, {}, [&](std::size_t k) { return phase[k]; });
        phases_.resize(n);
        for (std::size_t k = 0; k < n; ++k) phases_[k] = phase[order_[k]];
    }

    /// splitmix64 of (seed, id): a well-spread value per connection.
    static std::uint64_t mix(std::uint64_t seed, std::uint64_t id) {
        std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + id + 0x632BE59BD9B4E019ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    /// Visits every connection whose phase has come. `visited_` counts
    /// visits since the start (round r, position i in phase order: visit
    /// r * n + i); a late tick catches up, but never by more than one period
    /// (nobody sends twice in a period).
    void visit_due(std::int64_t now) {
        auto const n = static_cast<std::int64_t>(conns_.size());
        if (n == 0) return;
        auto const round = now / period_us_;
        auto const into = now - round * period_us_;
        auto const passed = std::ranges::upper_bound(phases_, into) - phases_.begin();
        auto const due = round * n + passed;
        visited_ = std::max(visited_, due - n);
        for (; visited_ < due; ++visited_) conns_[order_[static_cast<std::size_t>(visited_ % n)]]->visit(now);
    }

    void publish() {
        auto& p = progress_;
        p.open.store(ctx_.open, std::memory_order_relaxed);
        p.joined.store(ctx_.joined, std::memory_order_relaxed);
        p.failed.store(ctx_.failed, std::memory_order_relaxed);
        p.unsettled.store(ctx_.unsettled, std::memory_order_relaxed);
        p.sent.store(ctx_.stats.moves_sent + ctx_.stats.heartbeats_sent, std::memory_order_relaxed);
        p.received.store(ctx_.stats.frames_received, std::memory_order_relaxed);
        std::lock_guard lock(p.mutex);
        p.recent_latency.merge(ctx_.recent_latency);
        ctx_.recent_latency.clear();
    }

    void shutdown() {
        for (auto& c : conns_) c->shutdown();
        publish();
        io_.stop();
    }

    boost::asio::io_context io_{1};  // first: destroyed after the sockets and the timer
    flk::detail::ws_poller poller_{io_.get_executor()};
    worker_context ctx_;
    boost::asio::steady_timer timer_;
    std::vector<std::unique_ptr<connection>> conns_;
    worker_progress progress_;
    std::int64_t period_us_ = 100'000;
    std::vector<std::size_t> order_;      ///< connection indices by phase
    std::vector<std::int64_t> phases_;    ///< their phases, ascending
    std::size_t next_open_ = 0;
    std::int64_t visited_ = 0;
    std::int64_t next_housekeeping_us_ = 0;
};

}  // namespace load
