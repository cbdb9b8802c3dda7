// A per-connection message rate limit over a sliding one-second window.
#pragma once

#include <chrono>
#include <cstdint>

namespace flk::detail {

/// Estimates the count of the last second from two fixed one-second buckets:
/// the previous bucket's count, weighted by how much of it still overlaps the
/// window, plus the current one's. 16 bytes per connection instead of one
/// timestamp per allowed message; it errs on the strict side.
class rate_window {
public:
    using time_point = std::chrono::steady_clock::time_point;

    /// Counts one message at `now`; false when it would exceed `limit` per second.
    bool allow(time_point now, std::uint32_t limit) noexcept {
        using std::chrono::seconds;
        auto elapsed = now - start_;
        if (elapsed >= seconds(2) || elapsed < decltype(elapsed)::zero()) {
            previous_ = 0;
            current_ = 0;
            start_ = now;
            elapsed = decltype(elapsed)::zero();
        } else if (elapsed >= seconds(1)) {
            previous_ = current_;
            current_ = 0;
            start_ += seconds(1);
            elapsed -= seconds(1);
        }
        double overlap = 1.0 - std::chrono::duration<double>(elapsed).count();
        if (previous_ * overlap + current_ + 1 > limit) return false;
        ++current_;
        return true;
    }

private:
    time_point start_{};
    std::uint32_t previous_ = 0;
    std::uint32_t current_ = 0;
};

}  // namespace flk::detail
