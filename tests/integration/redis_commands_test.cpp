// The Redis cost of cursor moves (issue 9, point 4) and what a user would
// notice of it: moves still reach the other instance in order and exactly
// once, with and without FLOCK_REDIS_BATCH_MS; a joiner still sees every
// relayed cursor; the lazier TTL refresh never evicts an active user.
// The command counts come from INFO commandstats of a private redis-server
// (no other test's traffic), which counts the calls made inside scripts too.
#include <boost/test/unit_test.hpp>

#include <flock/broker/redis.hpp>
#include <flock/codec/json.hpp>

#include "redis_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace redis_commands_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redis_fixture::redis_server;
using redis_fixture::run_until;

struct recorder final : flk::broker_events {
    std::vector<flk::server_message> remote;
    std::vector<std::string> evicted;
    void on_remote(std::string_view, flk::server_message const& msg) override { remote.push_back(msg); }
    void on_evicted(std::string_view, std::string_view user) override { evicted.emplace_back(user); }

    /// The x of every cursor:updated of `user`, in arrival order.
    std::vector<double> xs(std::string const& user) const {
        std::vector<double> out;
        for (auto const& m : remote)
            if (auto const* c = std::get_if<flk::server::cursor_updated>(&m); c && c->user_id == user)
                out.push_back(c->pos.x);
        return out;
    }
    std::size_t evictions(std::string const& user) const { return std::count(evicted.begin(), evicted.end(), user); }
};

struct instance {
    recorder ev;
    flk::options opts;
    flk::redis_broker broker;

    instance(asio::io_context& io, std::string const& url, std::chrono::milliseconds batch,
             std::chrono::seconds ttl = 30s)
        : opts(make_options(url, ttl)), broker(io.get_executor(), opts, ev, settings(opts, batch)) {}

    static flk::options make_options(std::string const& url, std::chrono::seconds ttl) {
        flk::options o;
        o.redis_url = url;
        o.presence_ttl = ttl;
        o.log = flk::log_level::warn;
        o.log_sink = [](flk::log_level, std::string_view) {};
        return o;
    }
    static flk::redis_settings settings(flk::options const& o, std::chrono::milliseconds batch) {
        auto s = flk::redis_settings::from(o);
        s.connect_timeout = 2000ms;
        s.reconnect_min = 50ms;
        s.reconnect_max = 300ms;
        s.publish_batch = batch;
        return s;
    }

    /// What the core does for a move: the cursor to the broker, then the broadcast.
    void move(std::string const& room, std::string const& user, double x) {
        broker.set_cursor(room, user, {x, 0.5}, 1000 + static_cast<std::int64_t>(x * 1000));
        broker.publish(room, flk::server::cursor_updated{room, user, {x, 0.5}, 1});
    }
};

void start_all(asio::io_context& io, std::vector<instance*> const& all) {
    for (auto* i : all) i->broker.start();
    BOOST_REQUIRE(run_until(io, [&] {
        return std::all_of(all.begin(), all.end(), [](instance* i) { return i->broker.connected(); });
    }));
}

flk::join_result join(asio::io_context& io, instance& i, std::string const& room, std::string const& user) {
    i.broker.subscribe(room);
    std::optional<flk::join_result> res;
    i.broker.join({room, user, {}, 50}, [&](flk::join_result r) { res = std::move(r); });
    BOOST_REQUIRE(run_until(io, [&] { return res.has_value(); }));
    BOOST_REQUIRE((res->outcome == flk::join_result::status::joined));
    i.broker.publish(room, flk::server::user_joined{room, user, {}});
    return std::move(*res);
}

/// What a recorder got, one JSON message a line (for failure messages).
std::string dump(recorder const& r) {
    std::string out;
    for (auto const& m : r.remote) out += flk::json_codec{}.encode(m) + "\n";
    return out;
}

std::string unique_room(std::string_view what) {
    static std::mt19937_64 rng{std::random_device{}()};
    return "cmds:" + std::string(what) + ":" + std::to_string(rng() % 1000000000);
}

std::optional<flk::position> cursor_of(flk::join_result const& r, std::string const& user) {
    for (auto const& m : r.others)
        if (m.user_id == user) return m.cursor;
    return std::nullopt;
}

/// Calls `tick(i)` for i = 0..n-1, one every `period`, running the loop.
void every(asio::io_context& io, std::chrono::milliseconds period, int n, std::function<void(int)> tick) {
    asio::steady_timer t(io);
    int i = 0;
    std::function<void()> step = [&] {
        tick(i++);
        if (i == n) return;
        t.expires_after(period);
        t.async_wait([&](boost::system::error_code ec) {
            if (!ec) step();
        });
    };
    step();
    BOOST_REQUIRE(run_until(io, [&] { return i == n; }, period * n + 10s));
}

/// INFO commandstats as name -> calls.
std::map<std::string, long long> commandstats(redis_fixture::sync_client& cli) {
    std::map<std::string, long long> out;
    auto text = cli.command({"INFO", "commandstats"}).str;
    std::size_t p = 0;
    while ((p = text.find("cmdstat_", p)) != std::string::npos) {
        auto colon = text.find(':', p);
        auto calls = text.find("calls=", colon);
        out[text.substr(p + 8, colon - p - 8)] = std::stoll(text.substr(calls + 6));
        p = colon;
    }
    return out;
}

long long all_calls(std::map<std::string, long long> const& s) {
    long long n = 0;
    for (auto const& [name, calls] : s)
        if (name != "info" && name != "config|resetstat") n += calls;
    return n;
}

std::string describe(std::map<std::string, long long> const& s) {
    std::string out;
    for (auto const& [name, calls] : s) out += name + "=" + std::to_string(calls) + " ";
    return out;
}

// Two instances, five users on each, every user moving at 10 Hz, all of an
// instance's users in the same 100 ms step. Every move reaches the other
// instance once, in order; the Redis calls per move stay under the bound:
// 1.1 with one envelope per broadcast, 0.3 with 20 ms batches. The first
// move of each user (written ahead of its PUBLISH) is before the count.
BOOST_AUTO_TEST_CASE(commands_per_move_with_and_without_batching) {
    auto srv = redis_server::spawn_or_skip("redis_commands/commands_per_move_with_and_without_batching");
    if (!srv) return;
    for (auto batch : {0ms, 20ms}) {
        BOOST_TEST_CONTEXT("FLOCK_REDIS_BATCH_MS=" << batch.count()) {
            asio::io_context io;
            auto a = std::make_unique<instance>(io, srv->url(), batch);
            auto b = std::make_unique<instance>(io, srv->url(), batch);
            start_all(io, {a.get(), b.get()});
            auto room = unique_room("per-move");
            std::vector<std::string> on_a, on_b;
            for (int u = 0; u < 5; ++u) {
                on_a.push_back("a" + std::to_string(u));
                on_b.push_back("b" + std::to_string(u));
                join(io, *a, room, on_a.back());
                join(io, *b, room, on_b.back());
            }
            auto step = [&](int i) {
                double x = i / 1000.0;
                for (auto const& u : on_a) a->move(room, u, x);
                for (auto const& u : on_b) b->move(room, u, x);
            };
            step(0);
            auto cli = srv->client();
            BOOST_REQUIRE(run_until(io, [&] { return b->ev.xs("a4").size() == 1 && a->ev.xs("b4").size() == 1; }));
            cli.command({"CONFIG", "RESETSTAT"});
            std::size_t const steps = 30;  // 3 s at 10 Hz
            every(io, 100ms, static_cast<int>(steps) - 1, [&](int i) { step(i + 1); });
            BOOST_REQUIRE(run_until(io, [&] {
                return b->ev.xs("a4").size() == steps && a->ev.xs("b4").size() == steps;
            }));
            auto stats = commandstats(cli);
            double const moves = 10.0 * (steps - 1);
            double const per_move = all_calls(stats) / moves;
            BOOST_TEST_MESSAGE("batch " << batch.count() << " ms: " << per_move << " calls per move: " << describe(stats));
            BOOST_TEST(per_move <= (batch.count() ? 0.3 : 1.1), "calls per move " << per_move << ": " << describe(stats));

            // In order, exactly once, never echoed.
            std::vector<double> expected;
            for (std::size_t i = 0; i < steps; ++i) expected.push_back(static_cast<double>(i) / 1000.0);
            for (auto const& u : on_a) {
                BOOST_TEST(b->ev.xs(u) == expected, boost::test_tools::per_element());
                BOOST_TEST(a->ev.xs(u).empty());
            }
            for (auto const& u : on_b) {
                BOOST_TEST(a->ev.xs(u) == expected, boost::test_tools::per_element());
                BOOST_TEST(b->ev.xs(u).empty());
            }
        }
    }
}

// With batching, a room's broadcasts of all kinds keep their order (a
// presence update between moves, a leave after them), and a reference
// (Node.js) instance's one-envelope broadcasts are still read.
BOOST_AUTO_TEST_CASE(batching_keeps_the_order_of_every_kind_of_broadcast) {
    auto& srv = redis_server::shared();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url(), 50ms);
    auto b = std::make_unique<instance>(io, srv.url(), 0ms);  // not batching: still reads batches
    start_all(io, {a.get(), b.get()});
    auto room = unique_room("order");
    join(io, *b, room, "bob");
    join(io, *a, room, "alice");  // its user:joined goes into a batch too
    a->move(room, "alice", 0.1);
    a->broker.publish(room, flk::server::presence_updated{room, "alice", {{"status", "busy"}}});
    a->move(room, "alice", 0.2);
    a->broker.publish(room, flk::server::cursor_removed{room, "alice"});
    a->move(room, "alice", 0.3);
    a->broker.publish(room, flk::server::user_left{room, "alice"});
    a->broker.leave(room, "alice");
    BOOST_REQUIRE_MESSAGE(run_until(io, [&] { return b->ev.remote.size() == 7; }), "b got " << dump(b->ev));
    auto cli = srv.client();
    cli.command({"PUBLISH", "flock:broadcast:" + room,
                 R"({"instanceId":"node-1","message":{"type":"cursor:updated","roomId":")" + room +
                     R"(","userId":"node:user","position":{"x":0.9,"y":0.9},"timestamp":1}})"});
    BOOST_REQUIRE_MESSAGE(run_until(io, [&] { return b->ev.remote.size() == 8 && !a->ev.xs("node:user").empty(); }),
                          "a got " << dump(a->ev));
    auto is = [&](std::size_t i, auto tag) {
        return std::holds_alternative<decltype(tag)>(b->ev.remote.at(i));
    };
    BOOST_TEST(is(0, flk::server::user_joined{}));
    BOOST_TEST(is(1, flk::server::cursor_updated{}));
    BOOST_TEST(is(2, flk::server::presence_updated{}));
    BOOST_TEST(is(3, flk::server::cursor_updated{}));
    BOOST_TEST(is(4, flk::server::cursor_removed{}));
    BOOST_TEST(is(5, flk::server::cursor_updated{}));
    BOOST_TEST(is(6, flk::server::user_left{}));
    BOOST_TEST(is(7, flk::server::cursor_updated{}));  // the Node.js instance's
    BOOST_TEST((b->ev.xs("alice") == std::vector<double>{0.1, 0.2, 0.3}));
    BOOST_TEST((b->ev.xs("node:user") == std::vector<double>{0.9}));
    // The Node.js move, once, and never one of its own messages. (b's
    // user:joined for bob may reach `a` or not: b publishes it while `a` is
    // subscribing, and Redis may see either first.)
    BOOST_TEST((a->ev.xs("node:user") == std::vector<double>{0.9}));
    BOOST_TEST(dump(a->ev).find(R"("userId":"alice")") == std::string::npos, "a got " << dump(a->ev));
}

// A cursor relayed to the room is in every later joiner's snapshot, with
// writes behind: on an instance that relayed it (exactly the last position),
// on an instance new to the room (a cursor at once; the last position once
// the user stopped and the flush ran), with and without batching.
BOOST_AUTO_TEST_CASE(late_joiners_see_relayed_cursors) {
    auto& srv = redis_server::shared();
    for (auto batch : {0ms, 20ms}) {
        BOOST_TEST_CONTEXT("FLOCK_REDIS_BATCH_MS=" << batch.count()) {
            asio::io_context io;
            auto a = std::make_unique<instance>(io, srv.url(), batch);
            auto b = std::make_unique<instance>(io, srv.url(), batch);
            auto c = std::make_unique<instance>(io, srv.url(), batch);
            start_all(io, {a.get(), b.get(), c.get()});
            auto room = unique_room("late");
            join(io, *a, room, "alice");
            join(io, *b, room, "bob");
            for (int i = 1; i <= 20; ++i) a->move(room, "alice", i / 100.0);
            BOOST_REQUIRE(run_until(io, [&] { return b->ev.xs("alice").size() == 20; }));

            // On b, which relayed the moves: the last one, whatever Redis holds yet.
            auto rb = join(io, *b, room, "bea");
            BOOST_REQUIRE(cursor_of(rb, "alice").has_value());
            BOOST_TEST(cursor_of(rb, "alice")->x == 0.2);
            // On c, new to the room: a cursor, at once (the first move was
            // written ahead of its PUBLISH).
            auto rc = join(io, *c, room, "cid");
            BOOST_TEST(cursor_of(rc, "alice").has_value());
            // Once alice has stopped, the flush writes her last position.
            auto cli = srv.client();
            BOOST_REQUIRE(run_until(io, [&] {
                return cli.hget("flock:cursor:" + room + ":alice", "x") == std::optional<std::string>("0.2");
            }));
            auto rc2 = join(io, *c, room, "cy");
            BOOST_REQUIRE(cursor_of(rc2, "alice").has_value());
            BOOST_TEST(cursor_of(rc2, "alice")->x == 0.2);
            BOOST_TEST(cli.command({"TTL", "flock:cursor:" + room + ":alice"}).integer > 0);

            // A cursor:leave, then a move again: written ahead again.
            a->broker.clear_cursor(room, "alice");
            a->broker.publish(room, flk::server::cursor_removed{room, "alice"});
            a->move(room, "alice", 0.7);
            BOOST_REQUIRE(run_until(io, [&] { return b->ev.xs("alice").size() == 21; }));  // relayed
            auto rd = join(io, *c, room, "dan");
            BOOST_REQUIRE(cursor_of(rd, "alice").has_value());
            BOOST_TEST(cursor_of(rd, "alice")->x == 0.7);
        }
    }
}

// TTLs are refreshed by signs of life only once a third of the TTL has
// passed, yet an active user is never evicted, and an idle one still is.
BOOST_AUTO_TEST_CASE(lazy_ttl_refresh_keeps_active_users_and_evicts_idle_ones) {
    auto srv = redis_server::spawn_or_skip("redis_commands/lazy_ttl_refresh_keeps_active_users_and_evicts_idle_ones");
    if (!srv) return;
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv->url(), 0ms, 2s);
    auto b = std::make_unique<instance>(io, srv->url(), 0ms, 2s);
    start_all(io, {a.get(), b.get()});
    auto room = unique_room("ttl");
    join(io, *a, room, "active");
    join(io, *b, room, "idle");
    a->move(room, "active", 0.5);
    auto cli = srv->client();
    BOOST_REQUIRE(run_until(io, [&] { return cli.exists("flock:cursor:" + room + ":active"); }));
    cli.command({"CONFIG", "RESETSTAT"});
    auto const t0 = std::chrono::steady_clock::now();
    int touches = 0;
    // Heartbeats every 200 ms (as the core touches on any message) for 3 TTLs.
    every(io, 200ms, 30, [&](int) {
        a->broker.touch(room, "active");
        ++touches;
    });
    auto const elapsed = std::chrono::steady_clock::now() - t0;
    BOOST_REQUIRE(run_until(io, [&] { return a->ev.evictions("idle") == 1 && b->ev.evictions("idle") == 1; }));
    BOOST_TEST(a->ev.evictions("active") == 0u);
    BOOST_TEST(b->ev.evictions("active") == 0u);
    BOOST_TEST(cli.exists("flock:presence:" + room + ":active"));
    BOOST_TEST(cli.exists("flock:cursor:" + room + ":active"));
    BOOST_TEST(cli.command({"PTTL", "flock:presence:" + room + ":active"}).integer > 0);
    // Two EXPIREs (presence, cursor) per refresh, a refresh at most every
    // TTL / 3: far fewer than two per touch.
    auto const expires = commandstats(cli)["expire"];
    auto const refreshes_allowed = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() / 666 + 1;
    BOOST_TEST(expires <= 2 * refreshes_allowed + 1, expires << " EXPIREs for " << touches << " touches");
    BOOST_TEST(expires < touches);
    BOOST_TEST(expires >= 2);  // it did refresh
}

}  // namespace redis_commands_test
