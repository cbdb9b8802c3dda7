// What the generator counts. Each worker thread owns its counters and
// publishes a few of them for the live display; everything is summed once
// the threads have stopped.
#pragma once

#include "codec.hpp"
#include "histogram.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <string>

namespace load {

/// Microseconds on the steady clock since the run started; every thread
/// stamps and reads send times with it.
class run_clock {
public:
    std::int64_t now_us() const {
        return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start_)
            .count();
    }
    std::chrono::steady_clock::time_point at(std::int64_t us) const { return start_ + std::chrono::microseconds(us); }

private:
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

/// Set by the main thread, read by the workers.
struct run_control {
    static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();
    std::atomic<std::int64_t> window_start_us{never};
    std::atomic<std::int64_t> window_end_us{never};
    std::atomic<bool> stop{false};

    bool in_window(std::int64_t t) const {
        return t >= window_start_us.load(std::memory_order_relaxed) && t < window_end_us.load(std::memory_order_relaxed);
    }
};

/// Duplicates and gaps in the sequence numbers of one sender as seen by one
/// receiver. A 64-message memory tells a duplicate from a late arrival that
/// fills an earlier gap.
class sequence_tracker {
public:
    enum class verdict { fresh, duplicate, late };

    /// `gap` is set to the number of sequence numbers skipped (fresh only).
    verdict observe(std::uint64_t seq, std::uint64_t& gap) {
        gap = 0;
        if (!started_) {
            started_ = true;
            next_ = seq + 1;
            seen_ = 1;
            return verdict::fresh;
        }
        if (seq >= next_) {
            gap = seq - next_;
            seen_ = gap + 1 >= 64 ? 1 : (seen_ << (gap + 1)) | 1;
            next_ = seq + 1;
            return verdict::fresh;
        }
        auto const age = next_ - 1 - seq;
        if (age >= 64) return verdict::late;  // too old to tell; cannot be fresh
        auto const bit = std::uint64_t{1} << age;
        if (seen_ & bit) return verdict::duplicate;
        seen_ |= bit;
        return verdict::late;
    }

    std::uint32_t delivered_in_window = 0;  ///< unique messages sent in the window

private:
    bool started_ = false;
    std::uint64_t next_ = 0;  ///< one past the highest sequence seen
    std::uint64_t seen_ = 0;  ///< bit i: sequence next_-1-i was received
};

/// Counters of one worker thread (plain: only that thread writes them).
struct worker_stats {
    std::uint64_t upgraded = 0;  ///< connections that completed the WebSocket upgrade
    std::uint64_t moves_sent = 0;
    std::uint64_t heartbeats_sent = 0;
    std::uint64_t frames_received = 0;  ///< data frames, all connections
    std::uint64_t frames_in_window = 0;  ///< received while the window was open
    std::uint64_t bytes_in_window = 0;
    std::array<std::uint64_t, msg_type_count> by_type{};

    // Content checks (sampled connections), over messages sent in the window.
    std::uint64_t duplicates = 0;
    std::uint64_t gaps = 0;
    std::uint64_t late = 0;      ///< arrived after a later one: out of order
    std::uint64_t unexpected_sender = 0;  ///< from the receiver itself or from outside its room
    std::uint64_t unparsed = 0;  ///< cursor:updated whose probe fields could not be read

    histogram latency;       ///< one-way, messages sent in the window
    histogram latency_cross; ///< the same, sender on another --url than the receiver
    histogram join_time;     ///< join sent -> join:ack
    std::map<std::string, std::uint64_t> failures;     ///< never joined: reason -> connections
    std::map<std::string, std::uint64_t> disconnects;  ///< lost after joining: reason -> connections
    std::map<int, std::uint64_t> close_codes;          ///< close frames received, by code
    std::map<std::string, std::uint64_t> errors;       ///< `error` messages by code

    // Churning users (--churn): counted apart from the measured ones.
    std::uint64_t churn_joins = 0;   ///< joins acknowledged
    std::uint64_t churn_leaves = 0;  ///< leave + close sent after --churn-period
    std::map<std::string, std::uint64_t> churn_failures;  ///< cycles cut short: reason -> count

    void merge(worker_stats const& o) {
        upgraded += o.upgraded;
        moves_sent += o.moves_sent;
        heartbeats_sent += o.heartbeats_sent;
        frames_received += o.frames_received;
        frames_in_window += o.frames_in_window;
        bytes_in_window += o.bytes_in_window;
        for (std::size_t i = 0; i < by_type.size(); ++i) by_type[i] += o.by_type[i];
        duplicates += o.duplicates;
        gaps += o.gaps;
        late += o.late;
        unexpected_sender += o.unexpected_sender;
        unparsed += o.unparsed;
        latency.merge(o.latency);
        latency_cross.merge(o.latency_cross);
        join_time.merge(o.join_time);
        for (auto const& [k, v] : o.failures) failures[k] += v;
        for (auto const& [k, v] : o.disconnects) disconnects[k] += v;
        for (auto const& [k, v] : o.close_codes) close_codes[k] += v;
        churn_joins += o.churn_joins;
        churn_leaves += o.churn_leaves;
        for (auto const& [k, v] : o.churn_failures) churn_failures[k] += v;
        for (auto const& [k, v] : o.errors) errors[k] += v;
    }
};

/// What a worker shows the live display, refreshed every 100 ms.
struct worker_progress {
    std::atomic<std::uint64_t> open{0};    ///< upgraded, not closed
    std::atomic<std::uint64_t> joined{0};  ///< measured users: join:ack received, not closed
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> unsettled{0};  ///< neither joined nor failed yet, incl. not opened
    std::atomic<std::uint64_t> sent{0};
    std::atomic<std::uint64_t> received{0};

    std::mutex mutex;
    histogram recent_latency;  ///< since the display last took it
};

}  // namespace load
