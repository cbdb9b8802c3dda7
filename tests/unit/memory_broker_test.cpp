// The single-process broker: capacity, snapshots and idle eviction.
#include <flock/broker/memory.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

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

BOOST_FIXTURE_TEST_CASE(leave_removes_at_once_and_drops_empty_rooms, fixture) {
    join("r", "a");
    broker.leave("r", "a");
    BOOST_TEST(broker.store().room_count() == 0u);
    broker.expire_idle(steady::now() + std::chrono::hours(1));
    BOOST_TEST(events.evicted.empty());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace memory_broker_test
