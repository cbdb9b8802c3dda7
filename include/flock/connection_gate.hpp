// flk::connection_gate: counts the WebSockets a process holds, in all and per
// client address, against FLOCK_MAX_CONNECTIONS and
// FLOCK_MAX_CONNECTIONS_PER_IP. One gate is shared by every transport of a
// process (flk::sharded_server hands its shards the same one), so the limits
// hold for the process, not per shard.
//
// Thread-safe: taken once when a connection upgrades and once when it ends,
// never per message, so a mutex costs nothing that matters.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace flk {

class connection_gate {
public:
    /// 0 means no limit.
    connection_gate(std::uint32_t max_total, std::uint32_t max_per_address)
        : max_total_(max_total), max_per_address_(max_per_address) {}

    enum class verdict : std::uint8_t { admitted, full, address_full };

    /// Counts a connection from `address` unless a limit is reached.
    verdict enter(std::string_view address) {
        std::lock_guard lock(mutex_);
        if (max_total_ && total_ >= max_total_) return verdict::full;
        if (max_per_address_) {
            auto& n = per_address_[std::string(address)];
            if (n >= max_per_address_) return verdict::address_full;
            ++n;
        }
        ++total_;
        return verdict::admitted;
    }

    /// A connection `enter` admitted has ended.
    void leave(std::string_view address) {
        std::lock_guard lock(mutex_);
        --total_;
        if (!max_per_address_) return;
        auto it = per_address_.find(std::string(address));
        if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
    }

    std::uint32_t count() const {
        std::lock_guard lock(mutex_);
        return total_;
    }

private:
    mutable std::mutex mutex_;
    std::uint32_t const max_total_;
    std::uint32_t const max_per_address_;
    std::uint32_t total_ = 0;
    std::unordered_map<std::string, std::uint32_t> per_address_;
};

}  // namespace flk
