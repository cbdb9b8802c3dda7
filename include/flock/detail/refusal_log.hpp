// Log lines about refused clients, at most one per client address per
// interval: a flood of bad requests must not flood the log. The refusals are
// still counted by whoever refuses them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <unordered_map>

namespace flk::detail {

class refusal_log {
public:
    using clock = std::chrono::steady_clock;

    explicit refusal_log(clock::duration interval) : interval_(interval) {}

    /// True when a refusal of `address` at `now` should be logged; false
    /// while one was logged less than an interval ago.
    bool should_log(std::string_view address, clock::time_point now) {
        if (interval_ <= clock::duration::zero()) return true;
        if (last_.size() >= max_addresses) {
            forget_older_than(now - interval_);
            // Still full: a flood from many addresses. Lines about addresses
            // not yet remembered wait until some are forgotten.
            if (last_.size() >= max_addresses && !last_.contains(std::string(address))) return false;
        }
        auto [it, fresh] = last_.try_emplace(std::string(address), now);
        if (fresh) return true;
        if (now - it->second < interval_) return false;
        it->second = now;
        return true;
    }

    /// Addresses remembered; never more than max_addresses.
    std::size_t size() const noexcept { return last_.size(); }

    static constexpr std::size_t max_addresses = 4096;

private:
    void forget_older_than(clock::time_point t) {
        std::erase_if(last_, [&](auto const& e) { return e.second < t; });
    }

    clock::duration interval_;
    std::unordered_map<std::string, clock::time_point> last_;
};

}  // namespace flk::detail
