// A log-linear histogram of microsecond values, like HdrHistogram with two
// significant digits: values below 128 are kept exactly; above, each power of
// two is split into 64 buckets, so a reported percentile is within 1.6% of
// the true value (and never above the true maximum).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace load {

class histogram {
public:
    void record(std::uint64_t v) {
        v = std::min(v, limit);
        ++counts_[index(v)];
        ++count_;
        sum_ += v;
        max_ = std::max(max_, v);
    }

    void merge(histogram const& other) {
        for (std::size_t i = 0; i < buckets; ++i) counts_[i] += other.counts_[i];
        count_ += other.count_;
        sum_ += other.sum_;
        max_ = std::max(max_, other.max_);
    }

    void clear() { *this = histogram{}; }

    std::uint64_t count() const { return count_; }
    std::uint64_t max() const { return max_; }
    double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }

    /// The value at quantile `q` (0..1): the upper bound of the bucket
    /// holding that rank, capped by the maximum. 0 when empty.
    std::uint64_t percentile(double q) const {
        if (count_ == 0) return 0;
        auto const rank = std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))));
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < buckets; ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::min(upper_bound(i), max_);
        }
        return max_;
    }

private:
    static constexpr int linear_bits = 7;                         // 0..127 exact
    static constexpr std::uint64_t half = 1u << (linear_bits - 1);  // buckets per power of two
    static constexpr int top_bit = 39;                            // values up to 2^40 µs (12 days)
    static constexpr std::uint64_t limit = (std::uint64_t{1} << (top_bit + 1)) - 1;
    static constexpr std::size_t buckets = 2 * half + (top_bit - linear_bits + 1) * half;

    /// For v >= 128, `shift` drops the bits below the 7 most significant, so
    /// v >> shift is in [64, 128): the bucket within that power of two.
    static std::size_t index(std::uint64_t v) {
        if (v < 2 * half) return v;
        int const shift = std::bit_width(v) - linear_bits;
        return 2 * half + (shift - 1) * half + ((v >> shift) - half);
    }

    static std::uint64_t upper_bound(std::size_t i) {
        if (i < 2 * half) return i;
        auto const shift = static_cast<int>((i - 2 * half) / half) + 1;
        auto const sub = (i - 2 * half) % half + half;
        return ((sub + 1) << shift) - 1;
    }

    std::array<std::uint64_t, buckets> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t max_ = 0;
};

}  // namespace load
