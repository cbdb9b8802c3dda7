// The single-process broker: capacity, snapshots and idle eviction.
#include <flock/broker/memory.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace memory_broker_test {

struct recorder : flk::broker_events {
    std::vector<std::pair<std::string, std::string>> evicted;
    void on_remote(std::string_view, flk::server_message const&) override {}
    void on_evicted(std::string_view room, std::string_view user) override {
        evicted.emplace_back(room, user);
    }
};

struct fixture {
    boost::asio::io_context io;
    flk::options opts;
    recorder events;
    flk::memory_broker broker{io.get_executor(), opts, events};

    flk::join_result join(std::string room, std::string user, std::size_t capacity = 10) {
        flk::join_result out;
        broker.join({std::move(room), std::move(user), {}, capacity}, [&](flk::join_result r) { out = std::move(r); });
        return out;
    }
};
using join_status = flk::join_result::status;
using steady = std::chrono::steady_clock;


BOOST_AUTO_TEST_SUITE(memory_broker)

BOOST_FIXTURE_TEST_CASE(capacity_counts_everyone_but_a_returning_user, fixture) {
    BOOST_TEST((join("r", "a", 2).outcome == join_status::joined));
    BOOST_TEST((join("r", "b", 2).outcome == join_status::joined));
    BOOST_TEST((join("r", "c", 2).outcome == join_status::room_full));
    auto again = join("r", "a", 2);
    BOOST_TEST((again.outcome == join_status::joined));
    BOOST_TEST_REQUIRE(again.others.size() == 1u);
    BOOST_TEST(again.others[0].user_id == "b");
}

BOOST_FIXTURE_TEST_CASE(snapshot_holds_metadata_and_cursor, fixture) {
    join("r", "a");
    broker.set_metadata("r", "a", boost::json::object{{"name", "A"}});
    broker.set_cursor("r", "a", {0.5, 0.25}, 0);
    auto r = join("r", "b");
    BOOST_TEST_REQUIRE(r.others.size() == 1u);
    BOOST_TEST(r.others[0].meta.at("name").as_string() == "A");
    BOOST_TEST((r.others[0].cursor == flk::position{0.5, 0.25}));
    broker.clear_cursor("r", "a");
    BOOST_TEST(!join("r", "c").others.at(0).cursor.has_value());
}

BOOST_FIXTURE_TEST_CASE(users_silent_for_the_ttl_are_evicted, fixture) {
    join("r", "a");
    join("r", "b");
    broker.expire_idle(steady::now() + opts.presence_ttl - std::chrono::seconds(1));
    BOOST_TEST(events.evicted.empty());
    broker.expire_idle(steady::now() + opts.presence_ttl + std::chrono::milliseconds(10));
    BOOST_TEST(events.evicted.size() == 2u);
    BOOST_TEST(broker.store().room_count() == 0u);
}

BOOST_AUTO_TEST_CASE(a_touch_extends_presence_by_the_ttl) {
    flk::detail::presence_store store(std::chrono::seconds(30));
    auto t0 = steady::now();
    store.join({"r", "quiet", {}, 10}, t0);
    store.join({"r", "chatty", {}, 10}, t0);
    store.touch("r", "chatty", t0 + std::chrono::seconds(20));
    auto gone = store.expire(t0 + std::chrono::seconds(31));
    BOOST_TEST_REQUIRE(gone.size() == 1u);
    BOOST_TEST(gone[0].second == "quiet");
    BOOST_TEST(store.find("r", "chatty") != nullptr);
    BOOST_TEST(store.expire(t0 + std::chrono::seconds(51)).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_throwing_core_is_contained_and_the_next_event_still_arrives) {
    // A core that throws on the first eviction it hears of.
    struct throwing : recorder {
        void on_evicted(std::string_view room, std::string_view user) override {
            recorder::on_evicted(room, user);
            if (evicted.size() == 1) throw std::runtime_error("core failure");
        }
    };
    boost::asio::io_context io;
    flk::options opts;
    std::vector<std::string> lines;
    opts.log_sink = [&](flk::log_level, std::string_view line) { lines.emplace_back(line); };
    throwing events;
    flk::memory_broker broker{io.get_executor(), opts, events};
    for (auto user : {"a", "b"}) broker.join({"r", user, {}, 10}, [](flk::join_result) {});
    BOOST_CHECK_NO_THROW(broker.expire_idle(steady::now() + opts.presence_ttl + std::chrono::seconds(1)));
    BOOST_TEST(events.evicted.size() == 2u);  // the second user is still reported
    BOOST_TEST(std::ranges::count_if(lines, [](auto const& l) { return l.find("core failure") != std::string::npos; }) == 1);
}

BOOST_AUTO_TEST_CASE(posted_work_of_a_destroyed_broker_runs_nothing) {
    boost::asio::io_context io;
    flk::options opts;
    recorder events_a, events_b;
    flk::memory_hub hub{2};
    auto a = std::make_unique<flk::memory_broker>(io.get_executor(), opts, events_a, hub, 0);
    auto b = std::make_unique<flk::memory_broker>(io.get_executor(), opts, events_b, hub, 1);
    a->start();
    b->start();
    std::string room = "r0";
    while (hub.owner_of(room) != 1) room += 'x';
    bool answered = false;
    a->join({room, "u", {}, 10}, [&](flk::join_result) { answered = true; });  // for shard 1
    BOOST_TEST(io.poll_one() == 1u);  // shard 0's flush: the batch is posted to shard 1
    b.reset();                        // shard 1 goes before its batch runs
    io.poll();                        // under ASan: no use after free
    BOOST_TEST(!answered);
    a.reset();
    io.poll();
}

BOOST_FIXTURE_TEST_CASE(leave_removes_at_once_and_drops_empty_rooms, fixture) {
    join("r", "a");
    broker.leave("r", "a");
    BOOST_TEST(broker.store().room_count() == 0u);
    broker.expire_idle(steady::now() + std::chrono::hours(1));
    BOOST_TEST(events.evicted.empty());
}

BOOST_AUTO_TEST_SUITE_END()

// ---- shards of one process, joined by a memory_hub ----------------------------
// Each shard has its own io_context, as under sharded_server; the test runs
// them one after another on this thread, so every hand-off is explicit.

struct shard_recorder : flk::broker_events {
    std::vector<std::pair<std::string, flk::server_message>> remote;
    std::vector<std::pair<std::string, std::string>> evicted;
    void on_remote(std::string_view room, flk::server_message const& m) override { remote.emplace_back(room, m); }
    void on_evicted(std::string_view room, std::string_view user) override { evicted.emplace_back(room, user); }
};

struct shards_fixture {
    static constexpr std::size_t n = 3;
    flk::options opts;
    flk::memory_hub hub{n};
    std::array<boost::asio::io_context, n> io;
    std::array<shard_recorder, n> events;
    std::vector<std::unique_ptr<flk::memory_broker>> brokers;

    shards_fixture() {
        for (std::size_t i = 0; i < n; ++i)
            brokers.push_back(std::make_unique<flk::memory_broker>(io[i].get_executor(), opts, events[i], hub, i));
        for (auto& b : brokers) b->start();
    }
    flk::memory_broker& shard(std::size_t i) { return *brokers[i]; }

    // Runs every shard's ready work until none is left; returns the handlers run.
    std::size_t settle() {
        std::size_t total = 0;
        for (std::size_t ran = 1; ran != 0;) {
            ran = 0;
            for (auto& ctx : io) {
                ran += ctx.poll();
                ctx.restart();
            }
            total += ran;
        }
        return total;
    }
    // A room whose presence lives on shard `owner`.
    std::string room_owned_by(std::size_t owner, std::string_view prefix = "room") {
        for (int i = 0;; ++i) {
            auto r = std::string(prefix) + "-" + std::to_string(i);
            if (hub.owner_of(r) == owner) return r;
        }
    }
    std::optional<flk::join_result> join(std::size_t on, std::string room, std::string user, std::size_t cap = 10) {
        std::optional<flk::join_result> out;
        shard(on).join({std::move(room), std::move(user), {}, cap}, [&](flk::join_result r) { out = std::move(r); });
        settle();
        return out;
    }
    static std::vector<std::string> users_of(std::vector<std::pair<std::string, flk::server_message>> const& got) {
        std::vector<std::string> users;
        for (auto const& [room, m] : got)
            if (auto* c = std::get_if<flk::server::cursor_updated>(&m)) users.push_back(c->user_id);
        return users;
    }
};

BOOST_AUTO_TEST_SUITE(memory_hub)

BOOST_FIXTURE_TEST_CASE(capacity_holds_across_shards, shards_fixture) {
    auto room = room_owned_by(1);
    for (std::size_t s = 0; s < n; ++s) shard(s).subscribe(room);
    BOOST_TEST((join(0, room, "a", 2)->outcome == join_status::joined));
    BOOST_TEST((join(2, room, "b", 2)->outcome == join_status::joined));
    BOOST_TEST((join(1, room, "c", 2)->outcome == join_status::room_full));
    BOOST_TEST((join(0, room, "c", 2)->outcome == join_status::room_full));
    // Joins racing from every shard in one turn: the owner admits exactly one.
    shard(0).leave(room, "a");
    std::vector<flk::join_result::status> outcomes;
    for (std::size_t s = 0; s < n; ++s)
        shard(s).join({room, "racer-" + std::to_string(s), {}, 2},
                      [&](flk::join_result r) { outcomes.push_back(r.outcome); });
    settle();
    BOOST_TEST_REQUIRE(outcomes.size() == n);
    BOOST_TEST(std::ranges::count(outcomes, join_status::joined) == 1);
}

BOOST_FIXTURE_TEST_CASE(a_snapshot_holds_members_of_other_shards, shards_fixture) {
    auto room = room_owned_by(2);
    join(0, room, "ann");
    shard(0).set_metadata(room, "ann", boost::json::object{{"name", "Ann"}});
    shard(0).set_cursor(room, "ann", {0.25, 0.75}, 0);
    auto got = join(1, room, "ben");
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST_REQUIRE(got->others.size() == 1u);
    BOOST_TEST(got->others[0].user_id == "ann");
    BOOST_TEST(got->others[0].meta.at("name").as_string() == "Ann");
    BOOST_TEST((got->others[0].cursor == flk::position{0.25, 0.75}));
    BOOST_TEST(shard(2).store().member_count(room) == 2u);  // the owner keeps it
    BOOST_TEST(shard(0).store().member_count(room) == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_broadcast_reaches_every_other_following_shard_once_in_order, shards_fixture) {
    auto room = room_owned_by(1);
    shard(0).subscribe(room);
    shard(2).subscribe(room);  // shard 1 owns the room but has no member in it
    settle();
    for (int i = 0; i < 50; ++i)
        shard(0).publish(room, flk::server::cursor_updated{room, "u" + std::to_string(i), {0, 0}, i});
    // One post carries the turn's batch to the owner, one more to the follower.
    BOOST_TEST(settle() <= 4u);
    std::vector<std::string> expected;
    for (int i = 0; i < 50; ++i) expected.push_back("u" + std::to_string(i));
    BOOST_TEST(users_of(events[2].remote) == expected, boost::test_tools::per_element());
    BOOST_TEST(events[0].remote.empty());  // the publisher delivers locally itself
    // The owner hears it too (it ignores rooms it has no member in).
    BOOST_TEST(events[1].remote.size() == 50u);

    shard(2).unsubscribe(room);
    settle();
    events[2].remote.clear();
    shard(1).publish(room, flk::server::user_left{room, "u1"});
    settle();
    BOOST_TEST(events[2].remote.empty());
    BOOST_TEST(events[0].remote.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(an_eviction_is_heard_once_by_each_following_shard, shards_fixture) {
    auto room = room_owned_by(0);
    for (std::size_t s = 0; s < n; ++s) shard(s).subscribe(room);
    join(1, room, "quiet");
    join(2, room, "chatty");
    shard(2).touch(room, "chatty");
    settle();
    shard(0).expire_idle(steady::now() + opts.presence_ttl + std::chrono::milliseconds(10));
    settle();
    for (std::size_t s = 0; s < n; ++s) BOOST_TEST(events[s].evicted.size() == 2u, "shard " << s);
    BOOST_TEST(shard(0).store().room_count() == 0u);
    // Another shard's sweep owns nothing of this room, so it evicts no one twice.
    shard(1).expire_idle(steady::now() + std::chrono::hours(1));
    settle();
    BOOST_TEST(events[1].evicted.size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(a_stopped_shard_is_told_nothing_more, shards_fixture) {
    auto room = room_owned_by(0);
    shard(1).subscribe(room);
    settle();
    shard(1).stop({});
    shard(0).publish(room, flk::server::user_left{room, "x"});
    settle();
    BOOST_TEST(events[1].remote.empty());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace memory_broker_test
