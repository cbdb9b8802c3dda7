// Whole flock instances on Redis with the in-memory transport, and browser
// tabs on them, for the tests of several instances sharing a Redis
// (redis_instances_test.cpp, redis_sentinel_test.cpp).
#pragma once

#include <boost/test/unit_test.hpp>

#include <flock/basic_flock.hpp>
#include <flock/broker/redis.hpp>
#include <flock/codec/json.hpp>
#include <flock/testing/memory_transport.hpp>

#include "redis_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace instance_fixture {

namespace asio = boost::asio;
namespace json = boost::json;
using server_type = flk::basic_flock<flk::testing::memory_transport, flk::redis_broker, flk::json_codec>;

/// One flock instance. Its log is silent unless `log_env` names a variable
/// that is set.
struct node {
    std::unique_ptr<server_type> server;
    node(asio::io_context& io, std::string const& url, std::chrono::seconds ttl = std::chrono::seconds(30),
         char const* log_env = nullptr)
        : node(io, with_url(url, ttl), log_env) {}
    node(asio::io_context& io, flk::options o, char const* log_env) {
        o.log = log_env ? flk::log_level::info : flk::log_level::warn;
        if (!log_env || !std::getenv(log_env)) o.log_sink = [](flk::log_level, std::string_view) {};
        server = std::make_unique<server_type>(io.get_executor(), o);
        server->start();
    }
    static flk::options with_url(std::string const& url, std::chrono::seconds ttl) {
        flk::options o;
        o.redis_url = url;
        o.presence_ttl = ttl;
        return o;
    }
    flk::testing::memory_transport& transport() { return server->transport(); }
    bool connected() { return server->broker().connected(); }
};

/// A browser tab on one node: keeps everything it received, and when.
struct tab {
    flk::testing::memory_transport::client* c;
    std::vector<std::pair<std::chrono::steady_clock::time_point, json::object>> inbox;

    explicit tab(node& n) : c(&n.transport().connect()) {}

    void send(json::object const& o) { c->send(json::serialize(o)); }
    void pull() {
        auto const now = std::chrono::steady_clock::now();
        for (auto& m : c->take_json()) inbox.emplace_back(now, std::move(m));
    }
    std::vector<json::object> of(std::string_view type, std::string_view user = {}) {
        pull();
        std::vector<json::object> out;
        for (auto const& entry : inbox) {
            auto const& m = entry.second;
            if (m.at("type").as_string() == type &&
                (user.empty() || (m.contains("userId") && m.at("userId").as_string() == user)))
                out.push_back(m);
        }
        return out;
    }
    std::size_t count(std::string_view type, std::string_view user = {}) { return of(type, user).size(); }
};

inline json::object join_msg(std::string const& room, std::string const& user, json::object meta = {}) {
    return {{"type", "join"}, {"roomId", room}, {"userId", user}, {"metadata", std::move(meta)}};
}

/// Joins and waits for the join:ack; returns it.
inline json::object join(asio::io_context& io, tab& t, std::string const& room, std::string const& user,
                         json::object meta = {}) {
    t.send(join_msg(room, user, std::move(meta)));
    BOOST_REQUIRE_MESSAGE(redis_fixture::run_until(io, [&] { return t.count("join:ack") >= 1; }),
                          "no join:ack for " + user);
    return t.of("join:ack").back();
}

/// The userIds of a join:ack's snapshot, sorted.
inline std::vector<std::string> users_of(json::object const& ack) {
    std::vector<std::string> ids;
    for (auto const& u : ack.at("users").as_array()) ids.emplace_back(u.at("userId").as_string());
    std::sort(ids.begin(), ids.end());
    return ids;
}

/// A member moving her cursor every 20 ms (50 Hz, under the rate limit)
/// until stop(): move n is at x = n / 100000, so a receiver can tell which
/// moves it got, and in what order.
struct moving_member {
    node& n;
    tab& t;
    std::string room;
    int sent = 0;
    asio::steady_timer timer;

    moving_member(asio::io_context& io, node& on, tab& who, std::string r)
        : n(on), t(who), room(std::move(r)), timer(io) {}
    void start() {
        n.transport().advance(std::chrono::milliseconds(20));  // the core's clock (its rate limit) follows
        ++sent;
        t.send({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", sent / 100000.0}, {"y", 0.5}}}});
        timer.expires_after(std::chrono::milliseconds(20));
        timer.async_wait([this](boost::system::error_code ec) {
            if (!ec) start();
        });
    }
    void stop() { timer.cancel(); }
};

/// When `receiver` first got one of `user`'s moves made after her n-th (see moving_member).
inline std::optional<std::chrono::steady_clock::time_point> first_move_after(tab& receiver, std::string_view user,
                                                                            int n) {
    receiver.pull();
    for (auto const& [t, m] : receiver.inbox)
        if (m.at("type").as_string() == "cursor:updated" && m.at("userId").as_string() == user &&
            m.at("position").at("x").to_number<double>() * 100000.0 > n + 0.5)
            return t;
    return std::nullopt;
}

/// Runs the loop until `receiver` gets one of `user`'s moves made after her
/// n-th (20 s at most): the failover gap since `killed_at`, also printed to
/// stderr as "<what>: failover gap ...". Nothing after 20 s.
inline std::optional<std::chrono::milliseconds> failover_gap(asio::io_context& io, tab& receiver,
                                                             std::string_view user, int n,
                                                             std::chrono::steady_clock::time_point killed_at,
                                                             std::string_view what) {
    if (!redis_fixture::run_until(io, [&] { return first_move_after(receiver, user, n).has_value(); },
                                  std::chrono::seconds(20)))
        return std::nullopt;
    auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(*first_move_after(receiver, user, n) - killed_at);
    std::cerr << what << ": failover gap (master SIGKILL -> first cross-instance move delivered): " << gap.count()
              << " ms\n";
    return gap;
}

/// The sequence numbers of `user`'s moves (see moving_member) that `receiver` got, in order.
inline std::vector<int> moves_seen(tab& receiver, std::string_view user) {
    std::vector<int> seen;
    for (auto const& m : receiver.of("cursor:updated", user))
        seen.push_back(static_cast<int>(m.at("position").at("x").to_number<double>() * 100000.0 + 0.5));
    return seen;
}

}  // namespace instance_fixture
