// FLOCK_THREADS over real sockets: flk::sharded_server runs one core per
// thread on one port, and users on different shards share rooms as if they
// were on one server.
#include <flock/flock.hpp>

#include "integration/ws_client.hpp"
#include "messages.hpp"

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

namespace sharded_server_test {

namespace json = boost::json;
namespace msg = flk::test::msg;
using flk::test::ws_client;
using namespace std::chrono_literals;

struct member {
    std::string user;
    std::size_t shard = 0;
    std::unique_ptr<ws_client> client;
};

struct fixture {
    flk::options opts = [] {
        flk::options o;
        o.host = "127.0.0.1";
        o.port = 0;
        o.threads = 2;
        o.max_room_size = 64;
        o.log = flk::log_level::silent;
        return o;
    }();
    std::unique_ptr<flk::sharded_server<flk::single_node_server>> srv;

    void start() {
        srv = std::make_unique<flk::sharded_server<flk::single_node_server>>(opts);
        srv->start();
    }
    ~fixture() {
        if (srv) stop();
    }
    void stop() {
        std::promise<void> done;
        srv->stop([&] { done.set_value(); });
        BOOST_TEST((done.get_future().wait_for(5s) == std::future_status::ready));
        srv->join();
    }

    std::vector<std::size_t> connections_per_shard() {
        std::vector<std::size_t> counts(srv->size());
        srv->for_each([&](std::size_t i, auto& shard) { counts[i] = shard.connection_count(); });
        return counts;
    }

    // Connects and joins `room` as `user`, and learns which shard took the socket.
    member join(std::string_view room, std::string user) {
        auto before = connections_per_shard();
        auto c = std::make_unique<ws_client>(srv->port());
        auto after = connections_per_shard();  // the socket was opened before the upgrade answer
        std::size_t shard = 0;
        while (shard < after.size() && after[shard] == before[shard]) ++shard;
        BOOST_TEST_REQUIRE(shard < after.size());
        c->send_text(msg::join(room, user, R"({"name":")" + user + R"("})"));
        BOOST_TEST_REQUIRE(c->read_until_type("join:ack").at("roomId").as_string() == room);
        return {std::move(user), shard, std::move(c)};
    }
    // Joins users until both shards hold at least one of them. The kernel
    // spreads sockets by their ports, so this takes a few tries at most.
    std::vector<member> join_across_shards(std::string_view room) {
        std::vector<member> members;
        auto on = [&](std::size_t s) {
            return std::ranges::any_of(members, [&](member const& m) { return m.shard == s; });
        };
        while ((!on(0) || !on(1)) && members.size() < 48)
            members.push_back(join(room, "user-" + std::to_string(members.size())));
        BOOST_TEST_REQUIRE((on(0) && on(1)));
        return members;
    }
};

BOOST_AUTO_TEST_SUITE(sharded_server)

BOOST_FIXTURE_TEST_CASE(one_port_serves_every_shard, fixture) {
    start();
    BOOST_TEST(srv->size() == 2u);
    BOOST_TEST(srv->port() != 0);
    auto health = flk::test::http_get(srv->port(), "/health");
    BOOST_TEST(health.status == 200);
}

BOOST_FIXTURE_TEST_CASE(a_port_another_server_listens_on_is_refused, fixture) {
    // SO_REUSEPORT would let a second server share the port silently and take
    // half of the first one's new connections; it must fail at start instead.
    start();
    auto again = opts;
    again.port = srv->port();
    flk::sharded_server<flk::single_node_server> second(again);
    try {
        second.start();
        BOOST_FAIL("a second server started on a port in use");
    } catch (std::runtime_error const& e) {
        BOOST_TEST(std::string(e.what()).find(std::to_string(srv->port())) != std::string::npos, e.what());
    }
    auto c = join("board", "still-served");  // the first one is unharmed
    BOOST_TEST(c.shard < srv->size());
}

BOOST_FIXTURE_TEST_CASE(each_shard_says_which_it_is_in_its_log_lines, fixture) {
    std::mutex mutex;  // shards log from their own threads
    std::vector<std::string> lines;
    opts.log = flk::log_level::info;
    opts.log_sink = [&](flk::log_level, std::string_view line) {
        std::lock_guard lock(mutex);
        lines.emplace_back(line);
    };
    start();
    stop();
    srv.reset();
    for (std::string shard : {"shard=0", "shard=1"}) {
        auto listening = std::ranges::count_if(lines, [&](std::string const& l) {
            return l.find("msg=listening") != std::string::npos && l.ends_with(shard);
        });
        BOOST_TEST(listening == 1, shard);
    }
}

BOOST_FIXTURE_TEST_CASE(users_on_different_shards_see_each_other_once, fixture) {
    start();
    auto members = join_across_shards("board");
    // The newest member's snapshot lists everyone, whichever shard they are on.
    auto late = join("board", "late");
    members.push_back(std::move(late));

    // Every earlier member heard each later join exactly once: read up to the
    // newest one and count.
    for (std::size_t i = 0; i + 1 < members.size(); ++i) {
        std::size_t joins = 0;
        for (;;) {
            auto m = members[i].client->read_json();
            BOOST_TEST_REQUIRE(m.at("type").as_string() == "user:joined");
            ++joins;
            if (m.at("userId").as_string() == "late") break;
        }
        BOOST_TEST(joins == members.size() - 1 - i, members[i].user << " on shard " << members[i].shard);
    }

    // A cursor from one shard reaches everyone on both shards exactly once,
    // and in order with what its sender does next.
    auto& sender = *members.front().client;
    sender.send_text(msg::move("board", 0.25, 0.5));
    sender.send_text(msg::in_room("presence:update", "board", R"(,"metadata":{"status":"away"})"));
    for (std::size_t i = 1; i < members.size(); ++i) {
        auto cursor = members[i].client->read_json();
        BOOST_TEST(cursor.at("type").as_string() == "cursor:updated", members[i].user);
        BOOST_TEST(cursor.at("userId").as_string() == members.front().user);
        BOOST_TEST(cursor.at("position").at("x").as_double() == 0.25);
        auto presence = members[i].client->read_json();
        BOOST_TEST(presence.at("type").as_string() == "presence:updated", members[i].user);
    }
    BOOST_TEST(sender.got_nothing_for(50ms));  // not echoed back
}

BOOST_FIXTURE_TEST_CASE(a_snapshot_carries_members_and_cursors_of_every_shard, fixture) {
    start();
    auto members = join_across_shards("snap");
    for (auto& m : members) m.client->send_text(msg::move("snap", 0.5, 0.75));
    // Each member's move is seen by the first member: then it is stored too.
    for (std::size_t seen = 1; seen < members.size(); ++seen) members.front().client->read_until_type("cursor:updated");
    auto c = ws_client(srv->port());
    c.send_text(msg::join("snap", "observer"));
    auto ack = c.read_until_type("join:ack");
    auto const& users = ack.at("users").as_array();
    BOOST_TEST(users.size() == members.size());
    for (auto const& u : users) {
        BOOST_TEST(u.at("metadata").at("name").as_string() == u.at("userId").as_string());
        BOOST_TEST(u.as_object().contains("cursor"), u.at("userId"));
    }
}

BOOST_FIXTURE_TEST_CASE(a_departure_on_one_shard_is_announced_on_the_other, fixture) {
    start();
    auto members = join_across_shards("exit");
    // A member of shard 1 closes its socket; everyone else, on both shards, is told.
    auto leaver = std::ranges::find_if(members, [](member const& m) { return m.shard == 1; });
    std::string gone = leaver->user;
    leaver->client->close();
    for (auto& m : members) {
        if (m.user == gone) continue;
        auto left = m.client->read_until_type("user:left");
        BOOST_TEST(left.at("userId").as_string() == gone, m.user << " on shard " << m.shard);
    }
}

BOOST_FIXTURE_TEST_CASE(graceful_stop_closes_every_shard_with_1001, fixture) {
    start();
    auto members = join_across_shards("bye");
    std::promise<void> done;
    srv->stop([&] { done.set_value(); });
    for (auto& m : members) BOOST_TEST(m.client->wait_close() == std::optional<std::uint16_t>(1001), m.user);
    BOOST_TEST((done.get_future().wait_for(5s) == std::future_status::ready));
    srv->join();
    srv.reset();
}

BOOST_FIXTURE_TEST_CASE(a_silent_user_is_evicted_once_for_everyone, fixture) {
    opts.presence_ttl = std::chrono::seconds(1);
    opts.idle_timeout = 60s;
    start();
    auto members = join_across_shards("ttl");
    // Everyone but the first keeps heartbeating; the silent one is evicted by
    // the room's owner shard, closed with 4001, and every other member hears
    // of it once.
    auto& silent = members.front();
    auto heartbeats = [&] {
        for (std::size_t i = 1; i < members.size(); ++i) members[i].client->send_text(msg::in_room("heartbeat", "ttl"));
    };
    std::optional<std::uint16_t> closed;
    for (int round = 0; round < 50 && !closed; ++round) {
        heartbeats();
        closed = silent.client->wait_close(200ms);  // the event awaited; also paces the heartbeats
    }
    BOOST_TEST(closed == std::optional<std::uint16_t>(flk::close_code::presence_expired));
    for (std::size_t i = 1; i < members.size(); ++i) {
        // The others keep heartbeating while each is checked: the checks take
        // longer than the 1 s TTL on a slow (ThreadSanitizer) build.
        heartbeats();
        auto& c = *members[i].client;
        BOOST_TEST(c.read_until_type("user:left").at("userId").as_string() == silent.user);
        // No second user:left follows: what else comes is acks of the rounds.
        while (!c.got_nothing_for(150ms))
            BOOST_TEST(c.read_json().at("type").as_string() == "heartbeat:ack", members[i].user);
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace sharded_server_test
