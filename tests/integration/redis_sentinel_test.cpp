// FLOCK_REDIS_URL=redis+sentinel://...: two flock instances behind Redis
// Sentinel (one master, one replica, three sentinels, all started here on
// free loopback ports as `redis-server --sentinel`), and a master killed
// under traffic. What users notice: cursors flow again across instances
// without a restart, nothing twice, nobody dropped; and how long the gap is.
#include <boost/test/unit_test.hpp>

#include <flock/basic_flock.hpp>
#include <flock/broker/redis.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/admin_redis.hpp>
#include <flock/testing/memory_transport.hpp>

#include "instance_fixture.hpp"
#include "redis_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace redis_sentinel_test {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using redis_fixture::redis_server;
using redis_fixture::run_until;
using redis_fixture::sync_client;
using instance_fixture::join;
using instance_fixture::tab;
using instance_fixture::users_of;
using server_type = instance_fixture::server_type;

/// One flock instance; FLOCK_TEST_SENTINEL_LOG=1 shows its log.
struct node : instance_fixture::node {
    node(asio::io_context& io, std::string const& url)
        : instance_fixture::node(io, url, std::chrono::seconds(30), "FLOCK_TEST_SENTINEL_LOG") {}
};

/// One `redis-server <conf> --sentinel` (the conf must be writable: Sentinel
/// rewrites it with what it learns).
class sentinel_process {
public:
    sentinel_process(std::filesystem::path const& dir, int master_port) : port_(redis_fixture::free_port()) {
        conf_ = dir / ("sentinel-" + std::to_string(port_) + ".conf");
        std::ofstream(conf_) << "port " << port_ << "\nbind 127.0.0.1\ndir " << dir.string()
                             << "\nlogfile \"\"\nloglevel warning\n"
                             << "sentinel monitor mymaster 127.0.0.1 " << master_port << " 2\n"
                             << "sentinel down-after-milliseconds mymaster 1000\n"
                             << "sentinel failover-timeout mymaster 5000\n"
                             << "sentinel parallel-syncs mymaster 1\n";
        std::vector<std::string> args{"redis-server", conf_.string(), "--sentinel"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        // Sentinel logs to stdout with `logfile ""`: to /dev/null, unless asked.
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (!std::getenv("FLOCK_TEST_SENTINEL_LOG"))
            posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        int rc = posix_spawnp(&pid_, "redis-server", &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) throw std::runtime_error("cannot run redis-server --sentinel");
    }
    ~sentinel_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }
    int port() const { return port_; }

private:
    int port_;
    pid_t pid_ = -1;
    std::filesystem::path conf_;
};

/// A master, its replica and three sentinels watching them with quorum 2,
/// failing over 1 s after they lose the master. Ready once every
/// sentinel knows the replica and the two other sentinels (so a failover
/// can be voted on at once).
struct sentinel_setup {
    std::filesystem::path dir;
    std::unique_ptr<redis_server> master, replica;
    std::vector<std::unique_ptr<sentinel_process>> sentinels;

    sentinel_setup() {
        dir = std::filesystem::temp_directory_path() /
              ("flock-sentinel-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
        std::filesystem::create_directories(dir);
        master = redis_server::spawn();
        // Writable, so that the test can make it miss writes (see below).
        // (--dir: a replica's full sync writes dump.rdb, here rather than in the cwd.)
        replica = redis_server::spawn({"--replicaof", "127.0.0.1", std::to_string(master->port()),
                                       "--replica-read-only", "no", "--dir", dir.string()});
        wait_for("the replica to sync", [&] {
            auto r = replica->client().command({"INFO", "replication"});
            return r.str.find("master_link_status:up") != std::string::npos;
        });
        for (int i = 0; i < 3; ++i) sentinels.push_back(std::make_unique<sentinel_process>(dir, master->port()));
        // Polling child processes we started until they are set up (not a
        // stand-in for synchronising with the code under test).
        wait_for("the sentinels to know the replica and each other", [&] {
            for (auto const& s : sentinels) {
                sync_client c("127.0.0.1", s->port());
                if (c.command({"SENTINEL", "replicas", "mymaster"}).elements.size() != 1) return false;
                if (c.command({"SENTINEL", "sentinels", "mymaster"}).elements.size() != 2) return false;
            }
            return true;
        });
    }
    ~sentinel_setup() {
        sentinels.clear();
        replica.reset();
        master.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    /// redis+sentinel://, with a dead address first: skipped, as a sentinel that is down would be.
    std::string url() const {
        std::string u = "redis+sentinel://127.0.0.1:" + std::to_string(redis_fixture::free_port());
        for (auto const& s : sentinels) u += ",127.0.0.1:" + std::to_string(s->port());
        return u + "/mymaster";
    }

    static void wait_for(std::string const& what, std::function<bool()> const& ready) {
        auto deadline = std::chrono::steady_clock::now() + 15s;
        while (true) {
            try {
                if (ready()) return;
            } catch (std::exception const&) {
                // not listening yet
            }
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("timed out waiting for " + what);
            std::this_thread::sleep_for(50ms);
        }
    }
};

BOOST_AUTO_TEST_SUITE(redis_sentinel)

BOOST_AUTO_TEST_CASE(master_killed_under_traffic_fails_over) {
    std::unique_ptr<sentinel_setup> setup;
    try {
        setup = std::make_unique<sentinel_setup>();
    } catch (std::exception const& e) {
        flk_test::prerequisite(false, "redis_sentinel", std::string("cannot start Redis Sentinel: ") + e.what());
        return;
    }
    auto const url = setup->url();
    asio::io_context io;
    node a(io, url), b(io, url);
    BOOST_REQUIRE(run_until(io, [&] { return a.connected() && b.connected(); }));
    std::string const room = "sentinel:" + std::to_string(std::random_device{}());
    tab alice(a), bob(b);
    join(io, alice, room, "alice");
    join(io, bob, room, "bob");
    // The instances write to the master the sentinels named.
    BOOST_TEST(setup->master->client().command({"SISMEMBER", "flock:room:" + room + ":members", "bob"}).integer == 1);

    // Traffic: alice moves at 50 Hz.
    instance_fixture::moving_member mover(io, a, alice, room);
    int const& sent = mover.sent;
    mover.start();
    BOOST_REQUIRE(run_until(io, [&] { return bob.count("cursor:updated", "alice") >= 5; }));

    // The replica misses the room's member set, as a replica that was behind
    // when its master died would: only the instances' restore brings it back.
    setup->replica->client().command({"DEL", "flock:room:" + room + ":members"});

    auto const killed_at = std::chrono::steady_clock::now();
    int const sent_at_kill = sent;
    setup->master->kill();

    // Cross-instance moves flow again: a move alice made after the master died reaches bob.
    BOOST_REQUIRE_MESSAGE(
        instance_fixture::failover_gap(io, bob, "alice", sent_at_kill, killed_at, "redis_sentinel"),
        "no cross-instance cursor move within 20 s of the master's death");
    auto after = [&](int n) { return instance_fixture::first_move_after(bob, "alice", n); };
    mover.stop();
    BOOST_TEST(a.connected());
    BOOST_TEST(b.connected());

    // Now on the promoted replica.
    auto promoted = setup->replica->client().command({"ROLE"});
    BOOST_REQUIRE(!promoted.elements.empty());
    BOOST_TEST(promoted.elements[0].str == "master");
    BOOST_TEST(json::parse(a.transport().health()).at("redis").as_string() == "up");

    // And back: bob's move reaches alice.
    bob.send({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", 0.75}, {"y", 0.25}}}});
    BOOST_REQUIRE(run_until(io, [&] { return alice.count("cursor:updated", "bob") == 1; }));

    // Presence restored: both members are in the promoted replica's member
    // set again, and a late joiner's snapshot has them; nobody left. (A new
    // client: the sentinels closed every client of the replica they promoted.)
    auto rc = setup->replica->client();
    BOOST_REQUIRE(run_until(io, [&] {
        return rc.command({"SISMEMBER", "flock:room:" + room + ":members", "alice"}).integer == 1 &&
               rc.command({"SISMEMBER", "flock:room:" + room + ":members", "bob"}).integer == 1;
    }));
    tab carol(b);
    BOOST_TEST((users_of(join(io, carol, room, "carol")) == std::vector<std::string>{"alice", "bob"}));
    BOOST_REQUIRE(run_until(io, [&] { return alice.count("user:joined", "carol") == 1; }));
    BOOST_TEST(alice.count("user:left") == 0u);
    BOOST_TEST(bob.count("user:left") == 0u);

    // Nothing delivered twice, and in order.
    auto seen = instance_fixture::moves_seen(bob, "alice");
    bool increasing = std::adjacent_find(seen.begin(), seen.end(), [](int x, int y) { return y <= x; }) == seen.end();
    BOOST_TEST(increasing);
    BOOST_TEST(alice.count("cursor:updated", "alice") == 0u);
    BOOST_TEST(alice.count("user:joined", "carol") == 1u);

    // A planned failover back (SENTINEL FAILOVER), the demoted master alive:
    // the instances move to the promoted one on their own, while moving.
    // The old master comes back as the new one's replica, on its old port
    // (which the sentinels list as a replica since the switch).
    setup->master->restart(
        {"--replicaof", "127.0.0.1", std::to_string(setup->replica->port()), "--dir", setup->dir.string()});
    auto role_of_old = [&] {
        auto info = setup->master->client().command({"INFO", "replication"}).str;
        if (info.find("role:master") != std::string::npos) return std::string("master");
        return std::string(info.find("master_link_status:up") != std::string::npos ? "synced" : "syncing");
    };
    sentinel_setup::wait_for("the old master to be a synced replica", [&] { return role_of_old() != "syncing"; });
    int const resumed_from = sent;
    mover.start();
    BOOST_REQUIRE(run_until(io, [&] { return after(resumed_from).has_value(); }));
    int const sent_at_failover = sent;
    auto const failover_at = std::chrono::steady_clock::now();
    // Refused (NOGOODSLAVE) until the sentinels see the replica in sync. (On
    // a loaded machine the sentinels sometimes think a just-promoted master
    // is down for a moment, and fail over back on their own: the same case.)
    sentinel_setup::wait_for("a sentinel to accept SENTINEL FAILOVER", [&] {
        return role_of_old() == "master" ||
               !sync_client("127.0.0.1", setup->sentinels[1]->port())
                    .command({"SENTINEL", "FAILOVER", "mymaster"})
                    .is_error();
    });
    auto on_new_master = [&] {  // both instances' command and subscriber connections
        auto list = setup->master->client().command({"CLIENT", "LIST"}).str;
        std::size_t n = 0;
        for (auto p = list.find("name=flock-"); p != std::string::npos; p = list.find("name=flock-", p + 1)) ++n;
        return n == 4;
    };
    BOOST_REQUIRE_MESSAGE(run_until(io, [&] {
        if (!after(sent_at_failover)) return false;
        try {
            return on_new_master();
        } catch (std::exception const&) {
            return false;  // the sentinels closed our test client while promoting it
        }
    }, 20000ms), "the instances did not move to the promoted master, with moves flowing");
    // A move after the instances moved still crosses over.
    int const sent_when_moved = sent;
    BOOST_REQUIRE(run_until(io, [&] { return after(sent_when_moved).has_value(); }));
    mover.stop();
    // What bob saw of it: the longest pause between two of alice's moves, and how many were lost.
    std::chrono::steady_clock::duration pause{};
    std::optional<std::chrono::steady_clock::time_point> previous;
    int received = 0;
    bob.pull();
    for (auto const& [t, m] : bob.inbox) {
        if (t < failover_at || m.at("type").as_string() != "cursor:updated" || m.at("userId").as_string() != "alice")
            continue;
        if (previous) pause = std::max(pause, t - *previous);
        previous = t;
        ++received;
    }
    std::cerr << "redis_sentinel: SENTINEL FAILOVER: longest pause between cross-instance moves "
              << std::chrono::duration_cast<std::chrono::milliseconds>(pause).count() << " ms, "
              << (sent - sent_at_failover - received) << " of " << (sent - sent_at_failover) << " moves lost\n";
    BOOST_TEST(setup->master->client().command({"ROLE"}).elements.at(0).str == "master");
    seen = instance_fixture::moves_seen(bob, "alice");
    increasing = std::adjacent_find(seen.begin(), seen.end(), [](int x, int y) { return y <= x; }) == seen.end();
    BOOST_TEST(increasing);
    BOOST_TEST(alice.count("user:left") + bob.count("user:left") + carol.count("user:left") == 0u);

    // The admin's own connections find the new master the same way.
    flk::redis_settings rs;
    auto reader = std::make_shared<flk::detail::admin::cluster_reader>(io.get_executor(), url, rs, "test",
                                                                       flk::logger(flk::log_level::silent));
    reader->start([](std::string const&) {});
    std::optional<flk::detail::admin::cluster_view> view;
    bool asked = false;
    BOOST_REQUIRE(run_until(io, [&] {
        if (reader->up() && !asked) {
            asked = true;
            reader->read([&](flk::detail::admin::cluster_view v) { view = std::move(v); });
        }
        return view.has_value();
    }));
    reader->stop();
    BOOST_TEST(view->ok);
    bool found = false;
    for (auto const& r : view->rooms)
        if (r.id == room) found = r.members.size() == 3;
    BOOST_TEST(found);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_sentinel_test
