// flock on a Redis Cluster: FLOCK_REDIS_URL names one node of a local
// cluster (3 masters, 3 replicas, redis_cluster_fixture.hpp), the broker
// detects cluster mode by itself and uses keys tagged by room and sharded
// pub/sub. What users notice, across two instances: moves and presence cross
// exactly once whichever master a room lives on, a late joiner's snapshot is
// whole, capacity holds cluster-wide, idle users are evicted on every master,
// and a master killed under traffic costs a gap (measured) but no duplicate,
// no departure and no restart.
#include <boost/test/unit_test.hpp>

#include <flock/basic_flock.hpp>
#include <flock/broker/redis.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/redis/cluster/slots.hpp>
#include <flock/detail/redis/keys.hpp>
#include <flock/testing/memory_transport.hpp>

#include "instance_fixture.hpp"
#include "redis_cluster_fixture.hpp"
#include "redis_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace redis_cluster_broker_test {

namespace asio = boost::asio;
namespace json = boost::json;
namespace cl = flk::detail::redis::cluster;
using namespace std::chrono_literals;
using cluster_fixture::local_cluster;
using instance_fixture::join;
using instance_fixture::tab;
using instance_fixture::users_of;
using redis_fixture::run_until;
using server_type = instance_fixture::server_type;

/// The cluster of this file (its last test kills one of its masters).
struct broker_tests {};
local_cluster* shared_cluster(std::string_view test) { return cluster_fixture::shared_cluster<broker_tests>(test); }

/// One flock instance on the cluster; FLOCK_TEST_CLUSTER_LOG=1 shows its log.
struct node : instance_fixture::node {
    node(asio::io_context& io, local_cluster const& c, std::chrono::seconds ttl = 30s)
        : instance_fixture::node(io, c.seed_url(), ttl, "FLOCK_TEST_CLUSTER_LOG") {}
    node(asio::io_context& io, flk::options o) : instance_fixture::node(io, std::move(o), "FLOCK_TEST_CLUSTER_LOG") {}
};

flk::detail::redis::key_schema const tagged(true);

int slot_of(std::string const& room) { return cl::key_slot(tagged.members(room)); }

/// A fresh room id whose keys live on a master `want` accepts.
template <class F>
std::string room_where(std::string const& prefix, local_cluster const& c, F want) {
    static std::mt19937 rng(std::random_device{}());
    while (true) {
        auto room = prefix + std::to_string(rng());
        if (want(c.master_port(slot_of(room)))) return room;
    }
}

/// One fresh room id on each master of `c`: "<prefix><i>:<n>".
std::vector<std::string> room_on_each_master(std::string const& prefix, local_cluster const& c) {
    std::vector<std::string> rooms;
    std::set<int> used;
    for (std::size_t i = 0; i < c.master_ports().size(); ++i)
        rooms.push_back(room_where(prefix + std::to_string(i) + ":", c, [&](int port) {
            return used.insert(port).second;
        }));
    return rooms;
}

json::object move_msg(std::string const& room, double x, double y = 0.5) {
    return {{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", x}, {"y", y}}}};
}

BOOST_AUTO_TEST_SUITE(redis_cluster_broker)

BOOST_AUTO_TEST_CASE(rooms_on_two_masters_cross_exactly_once) {
    auto* cluster = shared_cluster("redis_cluster_broker");
    if (!cluster) return;
    asio::io_context io;
    node a(io, *cluster), b(io, *cluster);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }, 10s));

    auto r1 = room_where("c1:", *cluster, [](int) { return true; });
    int const m1 = cluster->master_port(slot_of(r1));
    auto r2 = room_where("c2:", *cluster, [&](int port) { return port != m1; });
    int const m2 = cluster->master_port(slot_of(r2));

    tab alice(a), bob(b), carol(a), dan(b);
    join(io, alice, r1, "alice", {{"color", "red"}});
    join(io, carol, r2, "carol");
    BOOST_TEST(users_of(join(io, bob, r1, "bob")) == std::vector<std::string>{"alice"});
    BOOST_TEST(users_of(join(io, dan, r2, "dan")) == std::vector<std::string>{"carol"});
    BOOST_REQUIRE(run_until(io, [&] { return alice.count("user:joined", "bob") == 1 && carol.count("user:joined", "dan") == 1; }));

    // The keys are tagged by room, on the master of the room's slot.
    BOOST_TEST(cluster->client(m1).command({"SISMEMBER", tagged.members(r1), "bob"}).integer == 1);
    BOOST_TEST(cluster->client(m2).command({"SISMEMBER", tagged.members(r2), "dan"}).integer == 1);
    BOOST_TEST(cluster->client(m1).command({"HGET", tagged.presence(r1, "alice"), "metadata"}).str ==
               R"({"color":"red"})");
    // Broadcasts are sharded: both instances listen on the room's master, and
    // nothing on classic pub/sub (which every node would copy).
    auto shard_subscribers = [&](int port, std::string const& room) {
        auto r = cluster->client(port).command({"PUBSUB", "SHARDNUMSUB", tagged.channel(room)});
        return r.elements.size() == 2 ? r.elements[1].integer : -1;
    };
    BOOST_TEST(shard_subscribers(m1, r1) == 2);
    BOOST_TEST(shard_subscribers(m2, r2) == 2);
    BOOST_TEST(cluster->client(m1).command({"PUBSUB", "NUMSUB", tagged.channel(r1)}).elements.at(1).integer == 0);

    // Moves both ways in both rooms: each once, in order, never echoed.
    for (int i = 1; i <= 20; ++i) {
        a.transport().advance(100ms);
        b.transport().advance(100ms);
        alice.send(move_msg(r1, i / 100.0));
        dan.send(move_msg(r2, i / 100.0));
    }
    bob.send({{"type", "presence:update"}, {"roomId", r1}, {"metadata", {{"status", "away"}}}});
    BOOST_REQUIRE(run_until(io, [&] {
        return bob.count("cursor:updated", "alice") == 20 && carol.count("cursor:updated", "dan") == 20 &&
               alice.count("presence:updated", "bob") == 1;
    }));
    auto xs = [](std::vector<json::object> const& ms) {
        std::vector<double> out;
        for (auto const& m : ms) out.push_back(m.at("position").at("x").to_number<double>());
        return out;
    };
    auto bx = xs(bob.of("cursor:updated", "alice")), cx = xs(carol.of("cursor:updated", "dan"));
    BOOST_TEST(std::is_sorted(bx.begin(), bx.end()));
    BOOST_TEST(std::is_sorted(cx.begin(), cx.end()));
    BOOST_TEST(alice.count("cursor:updated") == 0u);
    BOOST_TEST(dan.count("cursor:updated") == 0u);
    BOOST_TEST(carol.count("cursor:updated", "alice") == 0u);  // other room

    // A late joiner on either instance gets the whole room, cursors included.
    tab erin(a);
    auto ack = join(io, erin, r1, "erin");
    BOOST_TEST_MESSAGE("late joiner's snapshot: " << json::serialize(ack));
    BOOST_TEST(users_of(ack) == (std::vector<std::string>{"alice", "bob"}));
    for (auto const& u : ack.at("users").as_array())
        if (u.at("userId").as_string() == "alice") {
            BOOST_REQUIRE(u.as_object().contains("cursor"));
            BOOST_TEST(u.at("cursor").at("x").to_number<double>() == 0.20);
        } else {
            BOOST_TEST(u.at("metadata").at("status").as_string() == "away");
        }

    // A leave crosses once, and the keys go.
    bob.send({{"type", "leave"}, {"roomId", r1}});
    BOOST_REQUIRE(run_until(io, [&] { return alice.count("user:left", "bob") == 1 && erin.count("user:left", "bob") == 1; }));
    BOOST_REQUIRE(run_until(io, [&] {
        return cluster->client(m1).command({"EXISTS", tagged.presence(r1, "bob")}).integer == 0;
    }));
    BOOST_TEST(cluster->client(m1).command({"SISMEMBER", tagged.members(r1), "bob"}).integer == 0);
    BOOST_TEST(alice.count("user:left", "bob") == 1u);

    // The last member on `b` leaves and joins again at once (a page reload):
    // `b` unsubscribes the room and subscribes it again on the same master.
    dan.send({{"type", "leave"}, {"roomId", r2}});
    dan.send(instance_fixture::join_msg(r2, "dan"));
    BOOST_REQUIRE(run_until(io, [&] { return dan.count("join:ack") == 2; }));
    BOOST_TEST(users_of(dan.of("join:ack").back()) == std::vector<std::string>{"carol"});
    a.transport().advance(100ms);
    carol.send(move_msg(r2, 0.5));
    BOOST_REQUIRE(run_until(io, [&] { return dan.count("cursor:updated", "carol") == 1; }));
    BOOST_TEST(shard_subscribers(m2, r2) == 2);
}

BOOST_AUTO_TEST_CASE(capacity_holds_across_instances) {
    auto* cluster = shared_cluster("redis_cluster_broker");
    if (!cluster) return;
    asio::io_context io;
    flk::options o;
    o.redis_url = cluster->seed_url();
    o.max_room_size = 3;
    node a(io, o), b(io, o);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }, 10s));
    auto room = room_where("cap:", *cluster, [](int) { return true; });

    // Six joins at once, three on each instance: three get in.
    std::vector<std::unique_ptr<tab>> tabs;
    for (int i = 0; i < 6; ++i) {
        tabs.push_back(std::make_unique<tab>(i % 2 ? b : a));
        tabs.back()->send(instance_fixture::join_msg(room, "u" + std::to_string(i)));
    }
    auto answered = [&] {
        std::size_t n = 0;
        for (auto& t : tabs) n += t->count("join:ack") + t->count("error");
        return n;
    };
    BOOST_REQUIRE(run_until(io, [&] { return answered() == 6; }));
    std::size_t acks = 0, full = 0;
    for (auto& t : tabs) {
        acks += t->count("join:ack");
        for (auto const& e : t->of("error")) full += e.at("code").as_string() == "ROOM_FULL";
    }
    BOOST_TEST(acks == 3u);
    BOOST_TEST(full == 3u);
    BOOST_TEST(cluster->client(cluster->master_port(slot_of(room))).command({"SCARD", tagged.members(room)}).integer ==
               3);
}

BOOST_AUTO_TEST_CASE(idle_users_expire_on_every_master) {
    auto* cluster = shared_cluster("redis_cluster_broker");
    if (!cluster) return;
    asio::io_context io;
    node a(io, *cluster, 1s), b(io, *cluster, 1s);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }, 10s));
    // One room on each master; in each, a user on `a` who goes quiet and a
    // watcher on `b` who keeps sending signs of life.
    auto const rooms = room_on_each_master("ttl", *cluster);
    std::vector<std::unique_ptr<tab>> idle, watchers;
    for (auto const& room : rooms) {
        idle.push_back(std::make_unique<tab>(a));
        watchers.push_back(std::make_unique<tab>(b));
        join(io, *idle.back(), room, "sleepy");
        join(io, *watchers.back(), room, "awake");
    }
    // Heartbeats keep the watchers; the sleepy users' keys expire (1 s TTL)
    // and each master's expired event evicts them.
    asio::steady_timer beat(io);
    std::function<void()> heartbeat = [&] {
        for (std::size_t i = 0; i < rooms.size(); ++i)
            watchers[i]->send({{"type", "heartbeat"}, {"roomId", rooms[i]}});
        b.transport().advance(250ms);
        beat.expires_after(250ms);
        beat.async_wait([&](boost::system::error_code ec) {
            if (!ec) heartbeat();
        });
    };
    heartbeat();
    BOOST_REQUIRE(run_until(io, [&] {
        for (std::size_t i = 0; i < rooms.size(); ++i)
            if (watchers[i]->count("user:left", "sleepy") != 1 || !idle[i]->c->close_code()) return false;
        return true;
    }, 10s));
    beat.cancel();
    for (std::size_t i = 0; i < rooms.size(); ++i) {
        BOOST_TEST(watchers[i]->count("user:left", "sleepy") == 1u);
        BOOST_TEST(watchers[i]->count("user:left", "awake") == 0u);
        // The evicted socket is closed, so that a live client re-joins.
        BOOST_TEST(idle[i]->c->close_code().value_or(0) == flk::close_code::presence_expired);
    }
}

BOOST_AUTO_TEST_CASE(a_tls_cluster_carries_rooms_on_every_master_over_tls_only) {
    // A cluster with in-transit encryption (--tls-cluster): FLOCK_REDIS_URL is
    // rediss:// to one node by name, and every connection flock opens to the
    // masters it discovers is TLS, verified against FLOCK_REDIS_CA_FILE.
    namespace fs = std::filesystem;
    char const* const test = "redis_cluster_broker/a_tls_cluster_carries_rooms_on_every_master_over_tls_only";
    auto const certs = fs::temp_directory_path() / ("flock-cluster-tls-" + std::to_string(::getpid()));
    struct remove_dir {
        fs::path p;
        ~remove_dir() {
            std::error_code ignored;
            fs::remove_all(p, ignored);
        }
    } const cleanup{certs};
    if (!flk_test::prerequisite(redis_fixture::make_test_certificates(certs), test,
                                "openssl cannot make test certificates"))
        return;
    std::unique_ptr<local_cluster> cluster;
    std::string why;
    try {
        cluster = local_cluster::start(3, 0, certs);
    } catch (std::exception const& e) {
        why = e.what();
    }
    if (!flk_test::prerequisite(cluster != nullptr, test, "cannot start a local Redis Cluster with TLS: " + why)) return;

    asio::io_context io;
    flk::options o;
    o.redis_url = cluster->tls_seed_url();
    o.redis_ca_file = (certs / "ca.crt").string();
    node a(io, o), b(io, o);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }, 10s));

    // A room on each master: a member moving on `a`, a watcher on `b`.
    auto const rooms = room_on_each_master("tls", *cluster);
    std::vector<std::unique_ptr<tab>> movers, watchers;
    for (auto const& room : rooms) {
        movers.push_back(std::make_unique<tab>(a));
        watchers.push_back(std::make_unique<tab>(b));
        join(io, *movers.back(), room, "mover");
        BOOST_TEST(users_of(join(io, *watchers.back(), room, "watcher")) == std::vector<std::string>{"mover"});
    }
    for (int i = 1; i <= 5; ++i) {
        a.transport().advance(100ms);
        for (std::size_t r = 0; r < rooms.size(); ++r) movers[r]->send(move_msg(rooms[r], i / 10.0));
    }
    BOOST_REQUIRE(run_until(io, [&] {
        for (auto& w : watchers)
            if (w->count("cursor:updated", "mover") < 5) return false;
        return true;
    }));
    for (auto& w : watchers) BOOST_TEST(w->count("cursor:updated", "mover") == 5u);  // each once

    // On every master, flock's connections arrived on the TLS port; the only
    // client on the plain port is the one asking.
    for (auto const& n : cluster->nodes()) {
        auto const clients = cluster->client(n.port).command({"CLIENT", "LIST"}).str;
        auto const count = [&](int port) {
            auto const local = " laddr=127.0.0.1:" + std::to_string(port) + " ";
            std::size_t k = 0;
            for (auto at = clients.find(local); at != std::string::npos; at = clients.find(local, at + 1)) ++k;
            return k;
        };
        BOOST_TEST_CONTEXT("master on port " << n.port) {
            BOOST_TEST(count(n.tls_port) >= 2u);  // at least the two instances' subscriber connections
            BOOST_TEST(count(n.port) == 1u);
        }
    }
}

BOOST_AUTO_TEST_CASE(master_killed_under_traffic_fails_over) {
    auto* cluster = shared_cluster("redis_cluster_broker");
    if (!cluster) return;
    asio::io_context io;
    node a(io, *cluster), b(io, *cluster);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }, 10s));
    auto room = room_where("fail:", *cluster, [](int) { return true; });
    int const victim = cluster->master_port(slot_of(room));
    tab alice(a), bob(b);
    join(io, alice, room, "alice");
    join(io, bob, room, "bob");

    instance_fixture::moving_member mover(io, a, alice, room);
    mover.start();
    BOOST_REQUIRE(run_until(io, [&] { return bob.count("cursor:updated", "alice") >= 5; }));

    auto const killed_at = std::chrono::steady_clock::now();
    int const sent_at_kill = mover.sent;
    cluster->kill(victim);

    BOOST_REQUIRE_MESSAGE(
        instance_fixture::failover_gap(io, bob, "alice", sent_at_kill, killed_at, "redis_cluster_broker"),
        "no cross-instance cursor move within 20 s of the master's death");
    mover.stop();
    int const promoted = cluster->master_port(slot_of(room));
    BOOST_TEST(promoted != victim);
    BOOST_TEST(a.connected());
    BOOST_TEST(b.connected());

    // Presence is on the promoted master (restored by both instances), and a
    // late joiner's snapshot is whole; nobody left.
    BOOST_REQUIRE(run_until(io, [&] {
        auto c = cluster->client(promoted);
        return c.command({"SISMEMBER", tagged.members(room), "alice"}).integer == 1 &&
               c.command({"SISMEMBER", tagged.members(room), "bob"}).integer == 1 &&
               c.command({"EXISTS", tagged.presence(room, "alice")}).integer == 1;
    }));
    tab carol(b);
    BOOST_TEST((users_of(join(io, carol, room, "carol")) == std::vector<std::string>{"alice", "bob"}));
    BOOST_REQUIRE(run_until(io, [&] { return alice.count("user:joined", "carol") == 1; }));
    bob.send(move_msg(room, 0.75, 0.25));
    BOOST_REQUIRE(run_until(io, [&] { return alice.count("cursor:updated", "bob") == 1; }));
    BOOST_TEST(alice.count("user:left") + bob.count("user:left") + carol.count("user:left") == 0u);

    // Nothing delivered twice, never echoed. A move refused while the slot
    // had no master (CLUSTERDOWN) and retried may be overtaken by one sent
    // after it: counted, not asserted (cluster/client.hpp).
    auto const seen = instance_fixture::moves_seen(bob, "alice");
    BOOST_TEST(std::set<int>(seen.begin(), seen.end()).size() == seen.size());
    int overtaken = 0;
    for (std::size_t i = 1; i < seen.size(); ++i) overtaken += seen[i] < seen[i - 1];
    std::cerr << "  " << seen.size() << " of " << mover.sent << " moves delivered, none twice, " << overtaken
              << " out of order\n";
    BOOST_TEST(alice.count("cursor:updated", "alice") == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_cluster_broker_test
