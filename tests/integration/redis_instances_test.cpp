// Whole flock instances (basic_flock with the in-memory transport and the
// Redis broker) sharing one redis-server, seen from their clients: what
// PROTOCOL.md promises members of a room spread over several instances.
#include <boost/test/unit_test.hpp>

#include <flock/basic_flock.hpp>
#include <flock/broker/redis.hpp>
#include <flock/codec/json.hpp>
#include <flock/testing/memory_transport.hpp>

#include "instance_fixture.hpp"
#include "redis_server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace redis_instances_test {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using redis_fixture::redis_server;
using redis_fixture::run_until;
using instance_fixture::join;
using instance_fixture::join_msg;
using instance_fixture::node;
using instance_fixture::tab;
using instance_fixture::users_of;

inline std::string unique_room(std::string_view what) {
    static std::mt19937_64 rng{std::random_device{}()};
    return "cluster:" + std::string(what) + ":" + std::to_string(rng() % 1000000000);
}


BOOST_AUTO_TEST_SUITE(redis_instances)

BOOST_AUTO_TEST_CASE(three_instances_one_room) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    node a(io, srv.url()), b(io, srv.url()), c(io, srv.url());
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected() && c.connected(); }));
    auto room = unique_room("three");

    tab alice(a), al2(a), bob(b), carol(c);
    BOOST_TEST(join(io, alice, room, "alice", {{"name", "Alice"}}).at("users").as_array().empty());
    alice.send({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", 0.25}, {"y", 0.5}}}});
    BOOST_REQUIRE(run_until(io, [&] { return cli.exists("flock:cursor:" + room + ":alice"); }));
    join(io, al2, room, "al2");
    join(io, bob, room, "bob", {{"name", "Bob"}});
    auto ack = join(io, carol, room, "carol");
    // The joiner's snapshot holds every member, wherever, with cursors.
    BOOST_TEST((users_of(ack) == std::vector<std::string>{"al2", "alice", "bob"}));
    for (auto const& u : ack.at("users").as_array())
        if (u.at("userId").as_string() == "alice") {
            BOOST_TEST(u.at("metadata").at("name").as_string() == "Alice");
            BOOST_TEST(u.at("cursor").at("x").to_number<double>() == 0.25);
        }
    // Everyone saw carol arrive, once.
    BOOST_REQUIRE(run_until(io, [&] {
        return alice.count("user:joined", "carol") == 1 && al2.count("user:joined", "carol") == 1 &&
               bob.count("user:joined", "carol") == 1;
    }));

    // A cursor move reaches every other member once: on its own instance and elsewhere.
    alice.send({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", 0.5}, {"y", 0.5}}}});
    BOOST_REQUIRE(run_until(io, [&] {
        return al2.count("cursor:updated", "alice") >= 1 && bob.count("cursor:updated", "alice") >= 1 &&
               carol.count("cursor:updated", "alice") >= 1;
    }));
    bob.send({{"type", "presence:update"}, {"roomId", room}, {"metadata", {{"status", "away"}}}});
    BOOST_REQUIRE(run_until(io, [&] {  // later than alice's move on every path
        return alice.count("presence:updated", "bob") == 1 && al2.count("presence:updated", "bob") == 1 &&
               carol.count("presence:updated", "bob") == 1;
    }));
    BOOST_TEST(al2.count("cursor:updated", "alice") == 1u);
    BOOST_TEST(bob.count("cursor:updated", "alice") == 1u);
    BOOST_TEST(carol.count("cursor:updated", "alice") == 1u);
    BOOST_TEST(alice.count("cursor:updated") == 0u);
    BOOST_TEST(bob.count("presence:updated") == 0u);

    // A leave on one instance is seen once everywhere; its keys are gone.
    al2.send({{"type", "leave"}, {"roomId", room}});
    BOOST_REQUIRE(run_until(io, [&] {
        return alice.count("user:left", "al2") == 1 && bob.count("user:left", "al2") == 1 &&
               carol.count("user:left", "al2") == 1;
    }));
    BOOST_TEST(!cli.exists("flock:presence:" + room + ":al2"));
    // A later joiner's snapshot has the merged metadata.
    tab dave(c);
    auto ack2 = join(io, dave, room, "dave");
    BOOST_TEST((users_of(ack2) == std::vector<std::string>{"alice", "bob", "carol"}));
    for (auto const& u : ack2.at("users").as_array())
        if (u.at("userId").as_string() == "bob") {
            BOOST_TEST(u.at("metadata").at("name").as_string() == "Bob");
            BOOST_TEST(u.at("metadata").at("status").as_string() == "away");
        }
    BOOST_TEST(json::parse(a.transport().health()).at("redis").as_string() == "up");
}

BOOST_AUTO_TEST_CASE(idle_member_leaves_exactly_once_for_everyone) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    node a(io, srv.url(), 1s), b(io, srv.url(), 1s), c(io, srv.url(), 1s);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected() && c.connected(); }));
    auto room = unique_room("idle");
    tab idle(a), a2(a), bob(b), carol(c);
    join(io, idle, room, "idle");
    join(io, a2, room, "a2");
    join(io, bob, room, "bob");
    join(io, carol, room, "carol");
    // Heartbeats every 300 ms, as browsers do (faster, for a short TTL); the cores' clocks follow.
    redis_fixture::heartbeat hb(io, [&] {
        for (auto* n : {&a, &b, &c}) n->transport().advance(300ms);
        for (auto* t : {&a2, &bob, &carol}) t->send({{"type", "heartbeat"}, {"roomId", room}});
    });

    BOOST_REQUIRE(run_until(io, [&] {
        return a2.count("user:left", "idle") >= 1 && bob.count("user:left", "idle") >= 1 &&
               carol.count("user:left", "idle") >= 1;
    }, 6000ms));
    BOOST_TEST((idle.c->close_code() == flk::close_code::presence_expired));
    // Once the sweeps have tidied the set entry, nothing else is on its way.
    BOOST_REQUIRE(run_until(io, [&] {
        return cli.command({"SISMEMBER", "flock:room:" + room + ":members", "idle"}).integer == 0;
    }, 4000ms));
    BOOST_TEST(a2.count("user:left", "idle") == 1u);
    BOOST_TEST(bob.count("user:left", "idle") == 1u);
    BOOST_TEST(carol.count("user:left", "idle") == 1u);
    BOOST_TEST(a2.count("user:left") + bob.count("user:left") + carol.count("user:left") == 3u);
    BOOST_TEST(!cli.exists("flock:presence:" + room + ":idle"));
}

BOOST_AUTO_TEST_CASE(redis_restart_with_clients_connected) {
    auto srv = redis_server::spawn();
    asio::io_context io;
    node a(io, srv->url()), b(io, srv->url());
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }));
    auto room = unique_room("restart");
    tab alice(a), al2(a), bob(b);
    join(io, alice, room, "alice");
    join(io, al2, room, "al2");
    join(io, bob, room, "bob");

    srv->kill();
    BOOST_REQUIRE(run_until(io, [&] { return !a.connected() && !b.connected(); }));
    BOOST_TEST(json::parse(a.transport().health()).at("redis").as_string() == "down");
    BOOST_TEST(json::parse(a.transport().health()).at("status").as_string() == "ok");
    // Local delivery goes on.
    alice.send({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", 0.1}, {"y", 0.1}}}});
    BOOST_REQUIRE(run_until(io, [&] { return al2.count("cursor:updated", "alice") == 1; }));

    srv->restart();
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }, 10000ms));
    auto cli = srv->client();
    BOOST_REQUIRE(run_until(io, [&] {
        return cli.exists("flock:presence:" + room + ":alice") && cli.exists("flock:presence:" + room + ":al2") &&
               cli.exists("flock:presence:" + room + ":bob");
    }));
    // Cross-instance delivery is back; nobody was dropped meanwhile.
    bob.send({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", 0.9}, {"y", 0.9}}}});
    BOOST_REQUIRE(run_until(io, [&] {
        return alice.count("cursor:updated", "bob") == 1 && al2.count("cursor:updated", "bob") == 1;
    }));
    BOOST_TEST(alice.count("user:left") == 0u);
    BOOST_TEST(bob.count("user:left") == 0u);
    tab late(b);
    auto ack = join(io, late, room, "late");
    BOOST_TEST((users_of(ack) == std::vector<std::string>{"al2", "alice", "bob"}));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_instances_test
