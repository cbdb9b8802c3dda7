// A broker for unit tests: keeps presence in memory like memory_broker, records
// every call, and lets a test play the other instances of a cluster (inject a
// remote broadcast, a remote member, an eviction) or hold joins back to test
// what happens while one is in flight.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/detail/presence_store.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <string>
#include <vector>

namespace flk::testing {

class mock_broker {
public:
    /// One recorded call: `op` is the method name ("join", "leave", "touch",
    /// "set_metadata", "set_cursor", "clear_cursor", "subscribe", "unsubscribe").
    struct call {
        std::string op;
        std::string room;
        std::string user;
    };
    struct publication {
        std::string room;
        server_message message;
    };

    mock_broker(boost::asio::any_io_executor, options const& opts, broker_events& events)
        : events_(events), store_(opts.presence_ttl) {}

    // --- the Broker policy ----------------------------------------------------
    void start() { started = true; }
    void stop(std::function<void()> done) {
        stopped = true;
        if (done) done();
    }
    void join(join_request req, join_handler handler) {
        record("join", req.room_id, req.user_id);
        if (defer_joins) {
            held_.push_back({std::move(req), std::move(handler)});
            return;
        }
        answer(req, handler);
    }
    void leave(std::string_view room, std::string_view user) {
        record("leave", room, user);
        store_.leave(room, user);
    }
    void touch(std::string_view room, std::string_view user) {
        record("touch", room, user);
        store_.touch(room, user, clock::now());
    }
    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        record("set_metadata", room, user);
        store_.set_metadata(room, user, meta);
    }
    void set_cursor(std::string_view room, std::string_view user, position pos, std::int64_t) {
        record("set_cursor", room, user);
        store_.set_cursor(room, user, pos);
    }
    void clear_cursor(std::string_view room, std::string_view user) {
        record("clear_cursor", room, user);
        store_.set_cursor(room, user, std::nullopt);
    }
    void publish(std::string_view room, server_message const& msg) {
        published.push_back({std::string(room), msg});
    }
    void subscribe(std::string_view room) {
        record("subscribe", room, {});
        subscribed.emplace_back(room);
    }
    void unsubscribe(std::string_view room) {
        record("unsubscribe", room, {});
        std::erase(subscribed, room);
    }
    void health(boost::json::object& h) const {
        if (!health_fields.empty())
            for (auto const& [k, v] : health_fields) h[k] = v;
    }

    // --- what a test inspects -------------------------------------------------
    std::vector<call> calls;
    std::vector<publication> published;
    std::vector<std::string> subscribed;  ///< rooms currently subscribed
    bool started = false;
    bool stopped = false;
    boost::json::object health_fields;    ///< added to GET /health

    std::size_t count(std::string_view op) const {
        return std::count_if(calls.begin(), calls.end(), [&](call const& c) { return c.op == op; });
    }
    /// The published messages of type M, in order.
    template <class M>
    std::vector<M> published_of() const {
        std::vector<M> out;
        for (auto const& p : published)
            if (auto const* m = std::get_if<M>(&p.message)) out.push_back(*m);
        return out;
    }
    detail::presence_store const& store() const noexcept { return store_; }

    // --- what a test does -----------------------------------------------------
    /// Hold joins until complete_joins(); the core must cope with the delay.
    bool defer_joins = false;
    /// The outcome of the next answered joins; nullopt = decide by capacity.
    std::optional<join_result::status> force_outcome;

    /// Answers the held joins, oldest first.
    void complete_joins() {
        auto held = std::move(held_);
        held_.clear();
        for (auto& h : held) answer(h.req, h.handler);
    }
    std::size_t held_joins() const noexcept { return held_.size(); }

    /// A user present on another instance: later snapshots list it.
    void add_remote_member(std::string room, std::string user, metadata meta = {},
                           std::optional<position> cursor = {}) {
        store_.join({room, user, std::move(meta), std::size_t(-1)}, clock::now());
        if (cursor) store_.set_cursor(room, user, cursor);
    }
    /// A broadcast another instance published to `room`.
    void inject(std::string_view room, server_message const& msg) { events_.on_remote(room, msg); }
    /// What the core answers a broker that asks whether `user` is still its
    /// member of `room` (broker_events::holds_member).
    bool core_holds(std::string_view room, std::string_view user) const { return events_.holds_member(room, user); }
    /// The user's presence expired.
    void evict(std::string_view room, std::string_view user) {
        store_.leave(room, user);
        events_.on_evicted(room, user);
    }

private:
    using clock = std::chrono::steady_clock;
    struct held_join {
        join_request req;
        join_handler handler;
    };

    void record(std::string_view op, std::string_view room, std::string_view user) {
        calls.push_back({std::string(op), std::string(room), std::string(user)});
    }
    void answer(join_request const& req, join_handler const& handler) {
        if (force_outcome && *force_outcome != join_result::status::joined) {
            handler({*force_outcome, {}});
            return;
        }
        handler(store_.join(req, clock::now()));
    }

    broker_events& events_;
    detail::presence_store store_;
    std::vector<held_join> held_;
};

static_assert(Broker<mock_broker>);

}  // namespace flk::testing
