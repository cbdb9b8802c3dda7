// The Redis broker's link state and reconnect backoff, without I/O: the
// broker reports connect attempts, their outcome and lost connections; this
// answers whether the outcome still counts, how long to wait before the next
// attempt, whether a failure is worth a log line at warn level, and whether
// sweeps must wait (restore grace after a reconnect). Deterministic given its
// jitter function, so the unit tests inject one.
#pragma once

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>

namespace flk::detail::redis {

class reconnect_policy {
public:
    using clock = std::chrono::steady_clock;
    /// Returns a jitter in [0, max] milliseconds.
    using jitter_fn = std::function<long long(long long max)>;

    /// Delays grow from `min` (x2 per failed attempt) to `max`, plus up to a
    /// fifth of jitter; sweeps wait `grace` after a reconnect.
    reconnect_policy(std::chrono::milliseconds min, std::chrono::milliseconds max, std::chrono::milliseconds grace,
                     jitter_fn jitter = {})
        : min_(min), max_(max), grace_(grace), jitter_(jitter ? std::move(jitter) : random_jitter()) {}

    // ---- events ----------------------------------------------------------------

    struct connected_verdict {
        bool reconnect = false;  ///< it was up before: a reconnect, not the first connection
    };
    /// Both connections of an attempt are open.
    connected_verdict connected(clock::time_point now) {
        connected_verdict v{ever_up_};
        up_ = true;
        ever_up_ = true;
        step_ = 0;
        error_ = {};
        message_.clear();
        if (v.reconnect) grace_until_ = now + grace_;
        return v;
    }

    struct failed_verdict {
        /// A cause not reported before (once per distinct cause, not per attempt).
        bool first_report = false;
        /// It was up once: "unavailable, retrying" rather than "cannot connect".
        bool was_up = false;
        std::chrono::milliseconds retry_in{0};
    };
    /// An attempt failed.
    failed_verdict connect_failed(boost::system::error_code ec, std::string message) {
        failed_verdict v;
        v.first_report = ec != error_ || message != message_;
        v.was_up = ever_up_;
        up_ = false;
        error_ = ec;
        message_ = std::move(message);
        v.retry_in = next_delay();
        return v;
    }

    struct lost_verdict {
        bool counts = false;  ///< it was up: tear down and reconnect (else a second report of one loss)
        std::chrono::milliseconds retry_in{0};
    };
    /// An open connection failed (or Redis turned out to be a replica).
    lost_verdict lost(boost::system::error_code ec, std::string message) {
        if (!up_) return {};
        up_ = false;
        error_ = ec;
        message_ = std::move(message);
        return {true, next_delay()};
    }

    /// Stopped for good.
    void stopped() noexcept { up_ = false; }

    /// The next attempt is to wait the minimum again (a sentinel named a new
    /// master: no point waiting for the old one).
    void reset_backoff() noexcept { step_ = 0; }

    // ---- state -----------------------------------------------------------------

    /// A Redis Cluster moved slots to other masters while we stayed up (a
    /// failover): presence is restored as after a reconnect, so sweeps wait
    /// the same grace.
    void failed_over(clock::time_point now) { grace_until_ = now + grace_; }

    bool up() const noexcept { return up_; }
    bool ever_up() const noexcept { return ever_up_; }
    /// What failed last (cleared once connected).
    boost::system::error_code const& error() const noexcept { return error_; }
    std::string const& message() const noexcept { return message_; }
    /// Sweeps may run: not within the restore grace after a reconnect (the
    /// restores of every instance are still landing).
    bool may_sweep(clock::time_point now) const noexcept { return now >= grace_until_; }

private:
    std::chrono::milliseconds next_delay() {
        auto base = min_.count() << std::min<int>(step_, 16);
        auto delay = std::min<long long>(base, max_.count());
        ++step_;
        delay += jitter_(delay / 5);
        return std::chrono::milliseconds(delay);
    }

    static jitter_fn random_jitter() {
        return [rng = std::minstd_rand(std::random_device{}())](long long max) mutable {
            return std::uniform_int_distribution<long long>(0, max)(rng);
        };
    }

    std::chrono::milliseconds min_, max_, grace_;
    jitter_fn jitter_;
    bool up_ = false, ever_up_ = false;
    int step_ = 0;
    boost::system::error_code error_;
    std::string message_;
    clock::time_point grace_until_{};
};

}  // namespace flk::detail::redis
