// The single-process broker: presence lives in this process, broadcasts have
// no other instance to reach. Unlike the reference server it still evicts a
// user whose heartbeats stop for the presence TTL, so a half-open connection
// cannot leave a ghost behind.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/detail/presence_store.hpp>

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>

namespace flk {

class memory_broker {
public:
    memory_broker(boost::asio::any_io_executor ex, options const& opts, broker_events& events)
        : events_(events), store_(opts.presence_ttl), timer_(ex),
          sweep_every_(std::clamp<std::chrono::steady_clock::duration>(
              opts.presence_ttl / 10, std::chrono::milliseconds(100), std::chrono::seconds(1))) {}

    void start() {
        running_ = true;
        arm();
    }
    void stop(std::function<void()> done) {
        running_ = false;
        timer_.cancel();
        if (done) done();
    }

    void join(join_request req, join_handler handler) { handler(store_.join(req, clock::now())); }
    void leave(std::string_view room, std::string_view user) { store_.leave(room, user); }
    void touch(std::string_view room, std::string_view user) { store_.touch(room, user, clock::now()); }
    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        store_.set_metadata(room, user, meta);
    }
    void set_cursor(std::string_view room, std::string_view user, position pos, std::int64_t) {
        store_.set_cursor(room, user, pos);
    }
    void clear_cursor(std::string_view room, std::string_view user) { store_.set_cursor(room, user, std::nullopt); }
    void publish(std::string_view, server_message const&) {}  // no other instance
    void subscribe(std::string_view) {}
    void unsubscribe(std::string_view) {}
    void health(boost::json::object&) const {}

    /// Evicts everyone idle at `now`; the timer calls it, tests may too.
    void expire_idle(std::chrono::steady_clock::time_point now) {
        for (auto const& [room, user] : store_.expire(now)) events_.on_evicted(room, user);
    }

    detail::presence_store const& store() const noexcept { return store_; }

private:
    using clock = std::chrono::steady_clock;

    void arm() {
        timer_.expires_after(sweep_every_);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (ec || !running_) return;
            expire_idle(clock::now());
            arm();
        });
    }

    broker_events& events_;
    detail::presence_store store_;
    boost::asio::steady_timer timer_;
    clock::duration sweep_every_;
    bool running_ = false;
};

static_assert(Broker<memory_broker>);

}  // namespace flk
