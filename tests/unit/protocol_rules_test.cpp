// Every protocol rule of PROTOCOL.md, through the in-memory transport and the
// mock broker: no sockets, no Redis, time moved by hand.
#include <flock/basic_flock.hpp>
#include <flock/codec/json.hpp>
#include <flock/codec/negotiated.hpp>
#include <flock/testing/memory_transport.hpp>
#include <flock/detail/send_queue.hpp>
#include <flock/testing/mock_broker.hpp>

#include "messages.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace rules_test {

namespace json = boost::json;
namespace msg = flk::test::msg;
using server_t = flk::basic_flock<flk::testing::memory_transport, flk::testing::mock_broker, flk::json_codec>;
using client = flk::testing::memory_transport::client;


std::vector<std::string> types_of(std::vector<json::object> const& msgs) {
    std::vector<std::string> t;
    for (auto const& m : msgs) t.emplace_back(m.at("type").as_string());
    return t;
}
using types = std::vector<std::string>;

struct fixture {
    boost::asio::io_context io;
    flk::options opts = quiet();
    std::unique_ptr<server_t> srv;

    static flk::options quiet() {
        flk::options o;
        o.log = flk::log_level::silent;
        return o;
    }
    fixture() { restart(); }
    // Rebuilds the server after a test changed `opts`.
    void restart() {
        srv = std::make_unique<server_t>(io.get_executor(), opts);
        srv->start();
    }
    flk::testing::mock_broker& broker() { return srv->broker(); }
    flk::testing::memory_transport& transport() { return srv->transport(); }
    client& connect(std::optional<std::string> api_key = {}) {
        flk::connection_info info;
        info.remote = "test";
        info.api_key = std::move(api_key);
        return transport().connect(info);
    }

    // Connects, joins and returns the join:ack.
    json::object join(client& c, std::string_view room, std::string_view user, std::string_view meta = "{}") {
        c.send(msg::join(room, user, meta));
        auto got = c.take_json();
        BOOST_TEST_REQUIRE(got.size() == 1u);
        BOOST_TEST_REQUIRE(got[0].at("type").as_string() == "join:ack");
        return got[0];
    }
    client& joined(std::string_view room, std::string_view user, std::string_view meta = "{}") {
        auto& c = connect();
        join(c, room, user, meta);
        return c;
    }
};

json::array users_of(json::object const& ack) { return ack.at("users").as_array(); }


BOOST_AUTO_TEST_SUITE(protocol_rules)

BOOST_FIXTURE_TEST_CASE(join_acks_with_a_snapshot_of_everyone_else, fixture) {
    auto& alice = connect();
    auto ack = join(alice, "r1", "alice", R"({"name":"Alice","color":"#f00"})");
    BOOST_TEST(ack.at("roomId").as_string() == "r1");
    BOOST_TEST(users_of(ack).empty());

    auto& bob = connect();
    ack = join(bob, "r1", "bob", R"({"name":"Bob"})");
    auto users = users_of(ack);
    BOOST_TEST_REQUIRE(users.size() == 1u);
    BOOST_TEST(users[0].at("userId").as_string() == "alice");
    BOOST_TEST(users[0].at("metadata").at("name").as_string() == "Alice");
    BOOST_TEST(!users[0].as_object().contains("cursor"));

    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("type").as_string() == "user:joined");
    BOOST_TEST(got[0].at("roomId").as_string() == "r1");
    BOOST_TEST(got[0].at("userId").as_string() == "bob");
    BOOST_TEST(got[0].at("metadata").at("name").as_string() == "Bob");
}

BOOST_FIXTURE_TEST_CASE(snapshot_carries_the_last_cursor, fixture) {
    auto& alice = joined("r1", "alice");
    alice.send(msg::move("r1", 0.25, 0.75));
    auto& bob = connect();
    auto users = users_of(join(bob, "r1", "bob"));
    BOOST_TEST_REQUIRE(users.size() == 1u);
    BOOST_TEST(users[0].at("cursor").at("x").to_number<double>() == 0.25);
    BOOST_TEST(users[0].at("cursor").at("y").to_number<double>() == 0.75);
}

BOOST_FIXTURE_TEST_CASE(cursor_moves_reach_the_others_and_never_echo, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    auto& carol = joined("r1", "carol");
    alice.take();
    bob.take();
    alice.send(msg::move("r1", 0.5, 0.125));
    BOOST_TEST(alice.take().empty());
    for (client* c : {&bob, &carol}) {
        auto got = c->take_json();
        BOOST_TEST_REQUIRE(got.size() == 1u);
        BOOST_TEST(got[0].at("type").as_string() == "cursor:updated");
        BOOST_TEST(got[0].at("userId").as_string() == "alice");
        BOOST_TEST(got[0].at("position").at("x").to_number<double>() == 0.5);
        BOOST_TEST(got[0].at("position").at("y").to_number<double>() == 0.125);
        auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
        auto ts = got[0].at("timestamp").to_number<std::int64_t>();
        BOOST_TEST(ts <= now_ms);
        BOOST_TEST(ts > now_ms - 60'000);
    }
    BOOST_TEST(broker().published_of<flk::server::cursor_updated>().size() == 1u);
    BOOST_TEST(broker().count("set_cursor") == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_broadcast_is_encoded_once_and_shared, fixture) {
    auto& alice = joined("r1", "alice");
    std::vector<client*> others;
    for (auto name : {"b", "c", "d"}) others.push_back(&joined("r1", name));
    for (auto* c : others) c->take();
    alice.send(msg::move("r1", 0.1, 0.2));
    auto const* shared = others[0]->frames().at(0).bytes.get();
    for (auto* c : others) BOOST_TEST(c->frames().at(0).bytes.get() == shared);
}

BOOST_FIXTURE_TEST_CASE(cursor_leave_removes_the_cursor, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.send(msg::move("r1", 0.5, 0.5));
    alice.send(msg::in_room("cursor:leave", "r1"));
    auto got = bob.take_json();
    BOOST_TEST(types_of(got) == (types{"cursor:updated", "cursor:removed"}));
    BOOST_TEST(got[1].at("userId").as_string() == "alice");
    auto& carol = connect();
    for (auto const& u : users_of(join(carol, "r1", "carol")))
        BOOST_TEST(!u.as_object().contains("cursor"));
}

BOOST_FIXTURE_TEST_CASE(presence_merges_and_broadcasts_only_the_patch, fixture) {
    auto& alice = joined("r1", "alice", R"({"name":"Alice","color":"red"})");
    auto& bob = joined("r1", "bob");
    alice.take();
    alice.send(msg::in_room("presence:update", "r1", R"(,"metadata":{"status":"away","color":"blue"})"));
    auto got = bob.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("type").as_string() == "presence:updated");
    BOOST_TEST(got[0].at("userId").as_string() == "alice");
    BOOST_TEST(got[0].at("metadata") == json::parse(R"({"status":"away","color":"blue"})"));
    BOOST_TEST(alice.take().empty());

    auto& carol = connect();
    auto users = users_of(join(carol, "r1", "carol"));
    for (auto const& u : users)
        if (u.at("userId").as_string() == "alice")
            BOOST_TEST(u.at("metadata") == json::parse(R"({"name":"Alice","color":"blue","status":"away"})"));
    BOOST_TEST(broker().count("set_metadata") == 1u);
}

BOOST_FIXTURE_TEST_CASE(heartbeats_are_acked_and_refresh_presence, fixture) {
    auto& alice = joined("r1", "alice");
    alice.send(msg::in_room("heartbeat", "r1"));
    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0] == json::parse(R"({"type":"heartbeat:ack"})"));
    BOOST_TEST(broker().count("touch") == 1u);

    // Acked even for a room the socket is not in (the client's liveness check),
    // without touching anyone's presence.
    alice.send(msg::in_room("heartbeat", "elsewhere"));
    BOOST_TEST(types_of(alice.take_json()) == types{"heartbeat:ack"});
    BOOST_TEST(broker().count("touch") == 1u);
}

BOOST_FIXTURE_TEST_CASE(other_traffic_refreshes_presence_at_most_once_a_second, fixture) {
    auto& alice = joined("r1", "alice");
    transport().advance(std::chrono::seconds(2));
    for (int i = 0; i < 5; ++i) alice.send(msg::move("r1", 0.1 * i, 0.1));
    BOOST_TEST(broker().count("touch") == 1u);
    transport().advance(std::chrono::milliseconds(1500));
    alice.send(msg::move("r1", 0.9, 0.9));
    BOOST_TEST(broker().count("touch") == 2u);
}

BOOST_FIXTURE_TEST_CASE(leave_announces_and_removes_the_empty_room, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    BOOST_TEST(srv->room_count() == 1u);
    BOOST_TEST(broker().subscribed == std::vector<std::string>{"r1"});
    bob.send(msg::in_room("leave", "r1"));
    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0] == json::parse(R"({"type":"user:left","roomId":"r1","userId":"bob"})"));
    BOOST_TEST(bob.is_open());
    BOOST_TEST(broker().count("leave") == 1u);
    BOOST_TEST(broker().store().find("r1", "bob") == nullptr);

    alice.send(msg::in_room("leave", "r1"));
    BOOST_TEST(srv->room_count() == 0u);
    BOOST_TEST(broker().subscribed.empty());
    BOOST_TEST(broker().count("unsubscribe") == 1u);
}

BOOST_FIXTURE_TEST_CASE(closing_the_socket_leaves_every_room, fixture) {
    auto& alice = connect();
    join(alice, "r1", "alice");
    join(alice, "r2", "alice");
    auto& bob = joined("r1", "bob");
    auto& carol = joined("r2", "carol");
    alice.disconnect();
    BOOST_TEST(types_of(bob.take_json()) == types{"user:left"});
    BOOST_TEST(types_of(carol.take_json()) == types{"user:left"});
    BOOST_TEST(srv->connection_count() == 2u);
    BOOST_TEST(broker().count("leave") == 2u);
}

BOOST_FIXTURE_TEST_CASE(one_socket_in_several_rooms_routes_by_room_id, fixture) {
    auto& alice = connect();
    join(alice, "r1", "alice");
    join(alice, "r2", "alice-2");
    auto& bob = joined("r1", "bob");
    auto& carol = joined("r2", "carol");
    alice.take();
    alice.send(msg::move("r2", 0.3, 0.3));
    BOOST_TEST(bob.take().empty());
    auto got = carol.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("roomId").as_string() == "r2");
    BOOST_TEST(got[0].at("userId").as_string() == "alice-2");

    alice.send(msg::in_room("leave", "r1"));
    BOOST_TEST(types_of(bob.take_json()) == types{"user:left"});
    alice.send(msg::move("r2", 0.4, 0.4));
    BOOST_TEST(types_of(carol.take_json()) == types{"cursor:updated"});
    BOOST_TEST(srv->local_member_count("r2") == 2u);
}

BOOST_FIXTURE_TEST_CASE(too_many_rooms_on_one_socket_is_refused, fixture) {
    opts.max_rooms_per_connection = 2;
    restart();
    auto& alice = connect();
    join(alice, "r1", "a");
    join(alice, "r2", "a");
    alice.send(msg::join("r3", "a"));
    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("code").as_string() == "TOO_MANY_ROOMS");
    BOOST_TEST(got[0].at("roomId").as_string() == "r3");
    BOOST_TEST(alice.is_open());
    BOOST_TEST(srv->room_count() == 2u);
}

BOOST_FIXTURE_TEST_CASE(api_keys_are_required_when_configured, fixture) {
    opts.api_keys = {"k1", "k2"};
    restart();
    auto& anon = connect();
    anon.send(msg::join("r1", "anon"));
    auto got = anon.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("type").as_string() == "error");
    BOOST_TEST(got[0].at("code").as_string() == "INVALID_API_KEY");
    BOOST_TEST((anon.close_code() == flk::close_code::policy_violation));
    BOOST_TEST(!anon.is_open());

    auto& wrong = connect();
    wrong.send(msg::join("r1", "w", "{}", R"(,"apiKey":"nope")"));
    BOOST_TEST(wrong.take_json().at(0).at("code").as_string() == "INVALID_API_KEY");

    auto& good = connect();
    good.send(msg::join("r1", "g", "{}", R"(,"apiKey":"k2")"));
    BOOST_TEST(types_of(good.take_json()) == types{"join:ack"});
    BOOST_TEST(srv->local_member_count("r1") == 1u);
}

BOOST_FIXTURE_TEST_CASE(an_api_key_in_the_url_is_checked_at_upgrade, fixture) {
    opts.api_keys = {"k1"};
    restart();
    BOOST_TEST(connect(std::string("bad")).refused());
    auto& c = connect(std::string("k1"));
    BOOST_TEST(!c.refused());
    join(c, "r1", "unmodified-client");  // no apiKey in the join itself
}

BOOST_FIXTURE_TEST_CASE(open_mode_ignores_api_keys, fixture) {
    // An app that always puts its key in the URL still connects to an open server.
    auto& c = connect(std::string("whatever"));
    BOOST_TEST(!c.refused());
    c.send(msg::join("r1", "u", "{}", R"(,"apiKey":"also-ignored")"));
    BOOST_TEST(types_of(c.take_json()) == types{"join:ack"});
}

BOOST_FIXTURE_TEST_CASE(a_full_room_refuses_newcomers_but_not_returning_users, fixture) {
    opts.max_room_size = 2;
    restart();
    joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    auto& carol = connect();
    carol.send(msg::join("r1", "carol"));
    auto got = carol.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("code").as_string() == "ROOM_FULL");
    BOOST_TEST((carol.close_code() == flk::close_code::policy_violation));
    BOOST_TEST(srv->local_member_count("r1") == 2u);

    // Bob reloads the page: a new socket re-joins the full room.
    auto& bob2 = connect();
    join(bob2, "r1", "bob");
    BOOST_TEST((bob.close_code() == flk::close_code::replaced));
}

BOOST_FIXTURE_TEST_CASE(same_user_on_a_new_socket_evicts_the_old_one, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob_old = joined("r1", "bob", R"({"tab":1})");
    alice.take();
    auto& bob_new = connect();
    auto users = users_of(join(bob_new, "r1", "bob", R"({"tab":2})"));
    BOOST_TEST_REQUIRE(users.size() == 1u);
    BOOST_TEST(users[0].at("userId").as_string() == "alice");

    BOOST_TEST((bob_old.close_code() == flk::close_code::replaced));
    auto got = alice.take_json();
    BOOST_TEST(types_of(got) == (types{"user:left", "user:joined"}));
    BOOST_TEST(got[1].at("metadata").at("tab").as_int64() == 2);

    // The stale socket's close arrives later and must not remove the live user.
    bob_old.disconnect();
    BOOST_TEST(alice.take().empty());
    BOOST_TEST(srv->local_member_count("r1") == 2u);
    BOOST_TEST(broker().store().find("r1", "bob") != nullptr);
    bob_new.send(msg::move("r1", 0.5, 0.5));
    BOOST_TEST(types_of(alice.take_json()) == types{"cursor:updated"});
}

BOOST_FIXTURE_TEST_CASE(cursor_moves_before_the_join_are_replayed, fixture) {
    auto& bob = joined("r1", "bob");
    auto& alice = connect();
    for (int i = 1; i <= 5; ++i) alice.send(msg::move("r1", i / 10.0, 0));
    BOOST_TEST(bob.take().empty());
    join(alice, "r1", "alice");
    auto got = bob.take_json();
    BOOST_TEST(types_of(got) == (types{"user:joined", "cursor:updated", "cursor:updated", "cursor:updated"}));
    // The three most recent, in order.
    BOOST_TEST(got[1].at("position").at("x").to_number<double>() == 0.3);
    BOOST_TEST(got[3].at("position").at("x").to_number<double>() == 0.5);
}

BOOST_FIXTURE_TEST_CASE(a_burst_of_moves_reaches_a_reader_that_keeps_up_whole_and_in_order, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    // 20 moves back to back, all queued for bob before he reads once.
    for (int i = 1; i <= 20; ++i) alice.send(msg::move("r1", i / 100.0, 0));
    auto got = bob.take_json();
    BOOST_TEST_REQUIRE(got.size() == 20u);
    for (int i = 1; i <= 20; ++i) {
        BOOST_TEST(got[i - 1].at("type").as_string() == "cursor:updated");
        BOOST_TEST(got[i - 1].at("position").at("x").to_number<double>() == i / 100.0);
    }
}

BOOST_FIXTURE_TEST_CASE(a_reader_that_stops_reading_gets_the_newest_cursor_per_user, fixture) {
    auto& alice = joined("r1", "alice");
    auto& carol = joined("r1", "carol");
    auto& bob = joined("r1", "bob");
    alice.take();
    carol.take();
    bob.stop_reading();
    for (int i = 1; i <= 500; ++i) {
        alice.send(msg::move("r1", i / 1000.0, 0));
        carol.send(msg::move("r1", 0, i / 1000.0));
        transport().advance(std::chrono::milliseconds(20));  // within the rate limit
    }
    carol.send(msg::in_room("presence:update", "r1", R"(,"metadata":{"status":"away"})"));
    BOOST_TEST(bob.queued() == 3u);  // one cursor per user, and the presence event
    bob.resume_reading();
    auto got = bob.take_json();
    BOOST_TEST(types_of(got) == (types{"cursor:updated", "cursor:updated", "presence:updated"}));
    BOOST_TEST(got[0].at("position").at("x").to_number<double>() == 0.5);
    BOOST_TEST(got[1].at("position").at("y").to_number<double>() == 0.5);
    BOOST_TEST(bob.is_open());
    // Reading again, bob gets every move from now on.
    for (int i = 1; i <= 5; ++i) alice.send(msg::move("r1", i / 10.0, 0));
    BOOST_TEST(bob.take().size() == 5u);
}

BOOST_FIXTURE_TEST_CASE(a_reader_that_stops_reading_is_closed_past_the_queue_bound, fixture) {
    opts.max_send_queue_bytes = opts.max_frame_bytes;
    restart();
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    bob.stop_reading();
    // Presence events are never dropped: they pile up until the bound.
    for (int i = 0; bob.is_open() && i < 10'000; ++i) {
        alice.send(msg::in_room("presence:update", "r1", R"(,"metadata":{"n":)" + std::to_string(i) + "}"));
        transport().advance(std::chrono::milliseconds(20));
    }
    BOOST_TEST(!bob.is_open());
    BOOST_TEST((bob.close_code() == flk::close_code::try_again_later));
    BOOST_TEST(srv->local_member_count("r1") == 1u);
    auto left = alice.take_json();
    BOOST_TEST(std::ranges::count_if(left, [](auto const& m) { return m.at("type").as_string() == "user:left"; }) == 1);
}

BOOST_FIXTURE_TEST_CASE(held_cursor_moves_expire_after_500ms, fixture) {
    broker().defer_joins = true;
    auto& bob = connect();
    bob.send(msg::join("r1", "bob"));
    broker().complete_joins();
    bob.take();
    auto& alice = connect();
    alice.send(msg::join("r1", "alice"));
    alice.send(msg::move("r1", 0.1, 0));
    transport().advance(std::chrono::milliseconds(400));
    alice.send(msg::move("r1", 0.2, 0));
    transport().advance(std::chrono::milliseconds(200));
    broker().complete_joins();
    auto got = bob.take_json();
    BOOST_TEST_REQUIRE(types_of(got) == (types{"user:joined", "cursor:updated"}));
    BOOST_TEST(got[1].at("position").at("x").to_number<double>() == 0.2);
}

BOOST_FIXTURE_TEST_CASE(nothing_is_broadcast_to_a_joiner_before_its_ack, fixture) {
    auto& bob = joined("r1", "bob");
    broker().defer_joins = true;
    auto& alice = connect();
    alice.send(msg::join("r1", "alice"));
    bob.send(msg::move("r1", 0.5, 0.5));
    BOOST_TEST(alice.take().empty());
    broker().complete_joins();
    BOOST_TEST(types_of(alice.take_json()) == types{"join:ack"});
}

BOOST_FIXTURE_TEST_CASE(a_join_still_in_flight_is_undone_when_the_socket_closes, fixture) {
    broker().defer_joins = true;
    auto& alice = connect();
    alice.send(msg::join("r1", "alice"));
    alice.disconnect();
    BOOST_TEST(srv->room_count() == 0u);
    broker().complete_joins();
    BOOST_TEST(broker().count("leave") == 1u);
    BOOST_TEST(broker().store().find("r1", "alice") == nullptr);
}

BOOST_FIXTURE_TEST_CASE(a_failed_join_closes_so_the_client_retries, fixture) {
    broker().force_outcome = flk::join_result::status::failed;
    auto& alice = connect();
    alice.send(msg::join("r1", "alice"));
    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("code").as_string() == "INTERNAL_ERROR");
    BOOST_TEST((alice.close_code() == flk::close_code::try_again_later));
    BOOST_TEST(srv->room_count() == 0u);
}

BOOST_FIXTURE_TEST_CASE(the_rate_limit_closes_a_flooding_socket, fixture) {
    opts.max_messages_per_second = 10;
    restart();
    auto& bob = joined("r1", "bob");  // 1 message
    auto& alice = joined("r1", "alice");
    bob.take();
    for (int i = 0; i < 9; ++i) alice.send(msg::move("r1", 0.1, 0.1));
    BOOST_TEST(alice.is_open());
    BOOST_TEST(bob.take().size() == 9u);
    alice.send(msg::move("r1", 0.2, 0.2));
    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("code").as_string() == "RATE_LIMITED");
    BOOST_TEST((alice.close_code() == flk::close_code::policy_violation));
    BOOST_TEST(types_of(bob.take_json()) == types{"user:left"});
}

BOOST_FIXTURE_TEST_CASE(the_rate_limit_window_slides, fixture) {
    opts.max_messages_per_second = 10;
    restart();
    auto& alice = joined("r1", "alice");
    for (int i = 0; i < 9; ++i) alice.send(msg::in_room("heartbeat", "r1"));
    // Half a second later, half of the previous second's 10 still count.
    transport().advance(std::chrono::milliseconds(1500));
    for (int i = 0; i < 5; ++i) alice.send(msg::in_room("heartbeat", "r1"));
    BOOST_TEST(alice.is_open());
    BOOST_TEST(alice.take().size() == 14u);
    alice.send(msg::in_room("heartbeat", "r1"));
    BOOST_TEST(alice.take_json().at(0).at("code").as_string() == "RATE_LIMITED");
    // A quiet connection gets its full budget back.
    auto& bob = joined("r1", "bob");
    transport().advance(std::chrono::seconds(3));
    for (int i = 0; i < 10; ++i) bob.send(msg::in_room("heartbeat", "r1"));
    BOOST_TEST(bob.is_open());
}

BOOST_FIXTURE_TEST_CASE(empty_rooms_are_removed, fixture) {
    auto& a = joined("r1", "a");
    auto& b = joined("r2", "b");
    BOOST_TEST(srv->room_count() == 2u);
    a.disconnect();
    b.send(msg::in_room("leave", "r2"));
    BOOST_TEST(srv->room_count() == 0u);
    BOOST_TEST(broker().store().room_count() == 0u);
}

BOOST_FIXTURE_TEST_CASE(remote_broadcasts_reach_local_members_once, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    broker().inject("r1", flk::server::cursor_updated{"r1", "zed", {0.5, 0.5}, 123});
    for (client* c : {&alice, &bob}) {
        auto got = c->take_json();
        BOOST_TEST_REQUIRE(got.size() == 1u);
        BOOST_TEST(got[0].at("userId").as_string() == "zed");
    }
    // Relayed, never published back.
    BOOST_TEST(broker().published_of<flk::server::cursor_updated>().empty());
    // A room without local members hears nothing.
    broker().inject("r9", flk::server::cursor_updated{"r9", "zed", {0.5, 0.5}, 123});
}

BOOST_FIXTURE_TEST_CASE(snapshots_include_users_of_other_instances, fixture) {
    broker().add_remote_member("r1", "zed", json::object{{"name", "Zed"}}, flk::position{0.1, 0.9});
    auto& alice = connect();
    auto users = users_of(join(alice, "r1", "alice"));
    BOOST_TEST_REQUIRE(users.size() == 1u);
    BOOST_TEST(users[0].at("userId").as_string() == "zed");
    BOOST_TEST(users[0].at("cursor").at("y").to_number<double>() == 0.9);
}

BOOST_FIXTURE_TEST_CASE(an_eviction_is_announced_exactly_once, fixture) {
    broker().add_remote_member("r1", "zed");
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    broker().evict("r1", "zed");
    broker().evict("r1", "zed");  // the keyspace event and the sweep both saw it
    for (client* c : {&alice, &bob}) {
        auto got = c->take_json();
        BOOST_TEST_REQUIRE(got.size() == 1u);
        BOOST_TEST(got[0] == json::parse(R"({"type":"user:left","roomId":"r1","userId":"zed"})"));
    }
    BOOST_TEST(broker().published_of<flk::server::user_left>().empty());
}

BOOST_FIXTURE_TEST_CASE(an_evicted_local_user_is_closed_not_left_half_present, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    broker().evict("r1", "bob");
    BOOST_TEST(types_of(alice.take_json()) == types{"user:left"});
    BOOST_TEST((bob.close_code() == flk::close_code::presence_expired));
    BOOST_TEST(srv->local_member_count("r1") == 1u);
    // Its heartbeats cannot re-add it: the socket is gone.
    bob.send(msg::in_room("heartbeat", "r1"));
    BOOST_TEST(broker().store().find("r1", "bob") == nullptr);
}

BOOST_FIXTURE_TEST_CASE(the_same_user_joining_elsewhere_replaces_ours_without_a_leave, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    broker().inject("r1", flk::server::user_joined{"r1", "bob", json::object{{"tab", 2}}});
    BOOST_TEST((bob.close_code() == flk::close_code::replaced));
    BOOST_TEST(types_of(alice.take_json()) == types{"user:joined"});
    BOOST_TEST(broker().count("leave") == 0u);  // the shared presence belongs to the live socket
    // The core owns that verdict; a broker asking afterwards hears that bob is
    // no longer a member here, alice still is.
    BOOST_TEST(!broker().core_holds("r1", "bob"));
    BOOST_TEST(broker().core_holds("r1", "alice"));
    // A stale user:left from the instance that lost the user is relayed, then the
    // user is gone from our view.
    broker().inject("r1", flk::server::user_left{"r1", "bob"});
    BOOST_TEST(types_of(alice.take_json()) == types{"user:left"});
}

BOOST_FIXTURE_TEST_CASE(graceful_stop_announces_departures_and_closes_with_1001, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    bool done = false;
    srv->stop([&] { done = true; });
    BOOST_TEST(done);
    BOOST_TEST(broker().published_of<flk::server::user_left>().size() == 2u);
    BOOST_TEST(broker().count("leave") == 2u);
    BOOST_TEST(broker().stopped);
    BOOST_TEST((alice.close_code() == flk::close_code::going_away));
    BOOST_TEST((bob.close_code() == flk::close_code::going_away));
    BOOST_TEST(broker().subscribed.empty());
    // A second stop (a second signal, a second owner) is told too, at once.
    bool again = false;
    srv->stop([&] { again = true; });
    BOOST_TEST(again);
}

BOOST_FIXTURE_TEST_CASE(health_reports_ok_and_the_brokers_fields, fixture) {
    BOOST_TEST(json::parse(transport().health()) == json::parse(R"({"status":"ok"})"));
    broker().health_fields["redis"] = "up";
    BOOST_TEST(json::parse(transport().health()) == json::parse(R"({"status":"ok","redis":"up"})"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bad_input)

BOOST_FIXTURE_TEST_CASE(unparseable_frames_and_unknown_types_are_dropped_silently, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    for (auto bad : {"{not json", "null", "[]", "42", "\"str\"", R"({"type":"dance","roomId":"r1"})",
                     R"({"roomId":"r1"})"})
        alice.send(bad);
    BOOST_TEST(alice.take().empty());
    BOOST_TEST(bob.take().empty());
    BOOST_TEST(alice.is_open());
    alice.send(msg::in_room("heartbeat", "r1"));
    BOOST_TEST(types_of(alice.take_json()) == types{"heartbeat:ack"});
}

BOOST_FIXTURE_TEST_CASE(malformed_known_messages_get_an_error_and_are_not_relayed, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = joined("r1", "bob");
    alice.take();
    for (auto bad : {R"({"type":"cursor:move","roomId":"r1","position":{"x":"0.5","y":0.5}})",
                     R"({"type":"cursor:move","roomId":"r1"})",
                     R"({"type":"presence:update","roomId":"r1","metadata":[1,2]})",
                     R"({"type":"presence:update","roomId":"r1","metadata":null})"}) {
        alice.send(bad);
        auto got = alice.take_json();
        BOOST_TEST_REQUIRE(got.size() == 1u, bad);
        BOOST_TEST(got[0].at("type").as_string() == "error");
        BOOST_TEST(got[0].at("code").as_string() == "INVALID_MESSAGE");
        BOOST_TEST(got[0].at("roomId").as_string() == "r1");
    }
    BOOST_TEST(bob.take().empty());
    BOOST_TEST(alice.is_open());
}

BOOST_FIXTURE_TEST_CASE(a_binary_frame_to_the_json_codec_is_refused, fixture) {
    auto& alice = joined("r1", "alice");
    alice.send_binary(std::string("\x01\x02\x03", 3));
    auto got = alice.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("code").as_string() == "INVALID_MESSAGE");
    BOOST_TEST(alice.is_open());
}

BOOST_FIXTURE_TEST_CASE(joins_with_bad_ids_or_metadata_are_refused, fixture) {
    auto& alice = connect();
    std::string long_id(opts.max_id_length + 1, 'x');
    std::string big_meta = R"({"blob":")" + std::string(opts.max_metadata_bytes, 'x') + "\"}";
    for (auto const& bad : {msg::join("", "alice"), msg::join("r1", ""), msg::join(long_id, "alice"),
                            msg::join("r1", long_id), msg::join("r1", "alice", big_meta),
                            std::string(R"({"type":"join","roomId":"r1"})"),
                            std::string(R"({"type":"join","roomId":"r1","userId":"a","metadata":"x"})")}) {
        alice.send(bad);
        auto got = alice.take_json();
        BOOST_TEST_REQUIRE(got.size() == 1u, bad);
        BOOST_TEST(got[0].at("code").as_string() == "INVALID_MESSAGE", bad);
    }
    BOOST_TEST(srv->room_count() == 0u);
    BOOST_TEST(broker().count("join") == 0u);
    join(alice, "r1", "alice");  // the connection still works
}

BOOST_FIXTURE_TEST_CASE(presence_cannot_grow_metadata_past_the_limit, fixture) {
    auto& alice = joined("r1", "alice", R"({"name":"Alice"})");
    auto& bob = joined("r1", "bob");
    alice.take();
    std::string patch = R"(,"metadata":{"blob":")" + std::string(opts.max_metadata_bytes, 'x') + "\"}";
    alice.send(msg::in_room("presence:update", "r1", patch));
    BOOST_TEST(alice.take_json().at(0).at("code").as_string() == "INVALID_MESSAGE");
    BOOST_TEST(bob.take().empty());
    auto& carol = connect();
    for (auto const& u : users_of(join(carol, "r1", "carol")))
        if (u.at("userId").as_string() == "alice")
            BOOST_TEST(u.at("metadata") == json::parse(R"({"name":"Alice"})"));
}

BOOST_FIXTURE_TEST_CASE(messages_for_rooms_not_joined_touch_nothing, fixture) {
    auto& alice = joined("r1", "alice");
    auto& bob = connect();
    bob.send(msg::in_room("presence:update", "r1", R"(,"metadata":{"x":1})"));
    bob.send(msg::in_room("cursor:leave", "r1"));
    bob.send(msg::in_room("leave", "r1"));
    BOOST_TEST(alice.take().size() == 0u);
    BOOST_TEST(srv->local_member_count("r1") == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace rules_test

namespace negotiation_test {

namespace json = boost::json;
namespace msg = flk::test::msg;
using server_t = flk::basic_flock<flk::testing::memory_transport, flk::testing::mock_broker, flk::json_or_binary_codec>;

// A browser (JSON, no subprotocol) and a native client (binary) in one room.
struct mixed_room {
    boost::asio::io_context io;
    server_t srv{io.get_executor(), quiet()};
    flk::testing::memory_transport::client* browser = nullptr;
    flk::testing::memory_transport::client* native = nullptr;
    flk::binary_codec binary;

    static flk::options quiet() {
        flk::options o;
        o.log = flk::log_level::silent;
        return o;
    }
    mixed_room() {
        srv.start();
        flk::connection_info native_info;
        native_info.subprotocols = {"something.else", "flock.binary.v2"};
        browser = &srv.transport().connect();
        native = &srv.transport().connect(native_info);
        browser->send(msg::join("r", "browser"));
        native->send_binary(binary.encode_client(flk::client::join{"r", "native", {}, {}}));
    }
};

BOOST_AUTO_TEST_SUITE(negotiation)

BOOST_FIXTURE_TEST_CASE(each_client_reads_its_own_format, mixed_room) {
    auto got = native->frames();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST((got[0].kind == flk::frame_kind::binary));
    auto ack = binary.decode_server(got[0].view());
    BOOST_TEST_REQUIRE(ack.has_value());
    BOOST_TEST_REQUIRE(std::holds_alternative<flk::server::join_ack>(*ack));
    BOOST_TEST(std::get<flk::server::join_ack>(*ack).users.at(0).user_id == "browser");
    native->take();

    auto joined = browser->take_json();
    BOOST_TEST_REQUIRE(joined.size() == 2u);  // join:ack, then the native client's user:joined
    BOOST_TEST(joined[1].at("userId").as_string() == "native");

    browser->send(msg::move("r", 0.5, 0.25));
    // By handle: the native client names the sender from what its join:ack said.
    flk::binary_session session;
    BOOST_TEST_REQUIRE(session.decode(got[0].view()).has_value());
    auto moved = session.decode(native->frames().at(0).view());
    BOOST_TEST_REQUIRE(moved.has_value());
    auto const& cu = std::get<flk::server::cursor_updated>(*moved);
    BOOST_TEST(cu.user_id == "browser");
    BOOST_TEST((cu.pos == flk::position{0.5, 0.25}));

    native->send_binary(binary.encode_client(flk::client::cursor_move{"r", {0.75, 0.125}}));
    auto from_native = browser->take_json();
    BOOST_TEST_REQUIRE(from_native.size() == 1u);
    BOOST_TEST(from_native[0].at("position").at("x").as_double() == 0.75);
}

BOOST_FIXTURE_TEST_CASE(a_broadcast_is_encoded_once_per_format, mixed_room) {
    flk::connection_info native_info;
    native_info.subprotocols = {"flock.binary.v2"};
    auto& native2 = srv.transport().connect(native_info);
    native2.send_binary(binary.encode_client(flk::client::join{"r", "native2", {}, {}}));
    auto& browser2 = srv.transport().connect();
    browser2.send(msg::join("r", "browser2"));
    for (auto* c : {browser, native, &native2, &browser2}) c->take();

    flk::testing::memory_transport::client& sender = srv.transport().connect();
    sender.send(msg::join("r", "sender"));
    for (auto* c : {browser, native, &native2, &browser2}) c->take();
    sender.send(msg::move("r", 0.1, 0.1));
    BOOST_TEST(native->frames().at(0).bytes.get() == native2.frames().at(0).bytes.get());
    BOOST_TEST(browser->frames().at(0).bytes.get() == browser2.frames().at(0).bytes.get());
    BOOST_TEST(native->frames().at(0).bytes.get() != browser->frames().at(0).bytes.get());
}

BOOST_FIXTURE_TEST_CASE(the_unreleased_v1_token_is_no_longer_offered, mixed_room) {
    flk::connection_info old_info;
    old_info.subprotocols = {"flock.binary.v1"};
    auto& old = srv.transport().connect(old_info);
    BOOST_TEST(!old.refused());
    old.send(msg::join("r", "old"));  // no subprotocol agreed: it speaks JSON
    auto got = old.take_json();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].at("type").as_string() == "join:ack");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace negotiation_test

namespace handles_test {

// flock.binary.v2 through the core: which handles binary clients are told,
// which frames use them, and that JSON clients in the same rooms notice none
// of it.

namespace json = boost::json;
namespace msg = flk::test::msg;
namespace server = flk::server;
using client = flk::testing::memory_transport::client;

constexpr std::string_view room = "design-review-42";

/// One frame a binary client received, read both ways.
struct received {
    std::string bytes;
    flk::server_message raw;    ///< decode_server: the frame as it stands (handles, or ids)
    flk::server_message named;  ///< through the client's session: ids, no handles
    unsigned tag() const { return static_cast<unsigned char>(bytes.at(0)); }
};

/// A native client: its socket and the session that turns handles into names.
struct native {
    client* socket = nullptr;
    flk::binary_session session;

    /// Every frame received so far; each must be binary and accepted by the session.
    std::vector<received> take() {
        std::vector<received> out;
        for (auto const& f : socket->frames()) {
            BOOST_TEST_REQUIRE((f.kind == flk::frame_kind::binary));
            auto raw = flk::binary_codec().decode_server(f.view());
            BOOST_TEST_REQUIRE(raw.has_value());
            auto named = session.decode(f.view());
            BOOST_TEST_REQUIRE(named.has_value(), "the session refused a frame: a handle it was not told");
            out.push_back({std::string(f.view()), std::move(*raw), std::move(*named)});
        }
        socket->take();
        return out;
    }
    received take_one() {
        auto got = take();
        BOOST_TEST_REQUIRE(got.size() == 1u);
        return got[0];
    }
    void send(flk::client_message const& m) { socket->send_binary(flk::binary_codec().encode_client(m)); }
};

template <class M>
M const& as(flk::server_message const& m) {
    BOOST_TEST_REQUIRE(std::holds_alternative<M>(m));
    return std::get<M>(m);
}

flk::options quiet() {
    flk::options o;
    o.log = flk::log_level::silent;
    return o;
}

template <class Codec>
struct fixture_for {
    using server_t = flk::basic_flock<flk::testing::memory_transport, flk::testing::mock_broker, Codec>;
    boost::asio::io_context io;
    server_t srv{io.get_executor(), quiet()};
    std::deque<native> natives;  // stable addresses
    flk::json_codec json_wire;

    fixture_for() { srv.start(); }
    flk::testing::mock_broker& broker() { return srv.broker(); }

    /// A native client that asked for flock.binary.v2 and sent a join.
    native& native_joins(std::string_view room_id, std::string_view user) {
        flk::connection_info info;
        info.subprotocols = {"flock.binary.v2"};
        auto& n = natives.emplace_back();
        n.socket = &srv.transport().connect(info);
        n.send(flk::client::join{std::string(room_id), std::string(user), {}, {}});
        return n;
    }
    /// A browser: no subprotocol, JSON.
    client& browser_joins(std::string_view room_id, std::string_view user) {
        auto& c = srv.transport().connect();
        c.send(msg::join(room_id, user));
        return c;
    }
};
using fixture = fixture_for<flk::json_or_binary_codec>;

/// The handle a join:ack gave `user`.
flk::handle handle_in(received const& ack, std::string_view user) {
    for (auto const& u : as<server::join_ack>(ack.raw).users)
        if (u.user_id == user) return u.user_handle;
    BOOST_TEST_REQUIRE(false, "no " << user << " in the join:ack");
    return 0;
}

BOOST_AUTO_TEST_SUITE(binary_handles)

BOOST_FIXTURE_TEST_CASE(binary_clients_learn_handles_from_join_ack_and_user_joined, fixture) {
    auto& ada = native_joins(room, "ada");
    auto const ada_ack = ada.take_one();
    auto const room_handle = as<server::join_ack>(ada_ack.raw).room_handle;
    BOOST_TEST(room_handle != 0u);
    BOOST_TEST((ada_ack.named == flk::server_message(server::join_ack{std::string(room), {}})));

    auto& bob = native_joins(room, "bob");
    auto const bob_ack = bob.take_one();
    BOOST_TEST(as<server::join_ack>(bob_ack.raw).room_handle == room_handle);  // the same for every member
    auto const ada_handle = handle_in(bob_ack, "ada");
    BOOST_TEST(ada_handle != 0u);

    auto const joined = ada.take_one();
    BOOST_TEST(joined.tag() == 0x92u);  // user:joined by handle
    auto const& j = as<server::user_joined>(joined.raw);
    BOOST_TEST(j.room_id.empty());
    BOOST_TEST(j.room_handle == room_handle);
    BOOST_TEST(j.user_id == "bob");
    BOOST_TEST(j.user_handle != 0u);
    BOOST_TEST(j.user_handle != ada_handle);
    BOOST_TEST((joined.named == flk::server_message(server::user_joined{std::string(room), "bob", {}})));
    // A third member is told both, with the same handles.
    auto& cy = native_joins(room, "cy");
    auto const cy_ack = cy.take_one();
    BOOST_TEST(handle_in(cy_ack, "ada") == ada_handle);
    BOOST_TEST(handle_in(cy_ack, "bob") == j.user_handle);
}

BOOST_FIXTURE_TEST_CASE(what_a_member_does_goes_by_handle, fixture) {
    auto& ada = native_joins(room, "ada");
    auto& browser = browser_joins(room, "browser");
    ada.take();
    browser.take();
    auto& sender = native_joins(room, "user-1234");
    auto const sender_handle = as<server::user_joined>(ada.take_one().raw).user_handle;
    browser.take();
    auto const room_handle = as<server::join_ack>(sender.take_one().raw).room_handle;

    flk::position const pos{925.0 / 1920, 685.0 / 1080};
    sender.send(flk::client::cursor_move{std::string(room), pos});
    auto const moved = ada.take_one();
    BOOST_TEST(moved.tag() == 0x94u);
    auto const& raw = as<server::cursor_updated>(moved.raw);
    BOOST_TEST(raw.room_handle == room_handle);
    BOOST_TEST(raw.user_handle == sender_handle);
    auto const& cu = as<server::cursor_updated>(moved.named);
    BOOST_TEST(cu.room_id == room);
    BOOST_TEST(cu.user_id == "user-1234");
    BOOST_TEST((cu.pos == pos));
    // tag, room handle, user handle, two doubles, the timestamp: 25 bytes
    // today, under a quarter of what the browser got for the same move.
    auto const ts_bytes = flk::detail::binary_wire::varint_size(flk::detail::binary_wire::zigzag(cu.timestamp));
    BOOST_TEST(moved.bytes.size() == 3u + 16u + ts_bytes);
    auto const text = browser.take();
    BOOST_TEST_REQUIRE(text.size() == 1u);
    BOOST_TEST(text[0].size() == 159u);
    BOOST_TEST(moved.bytes.size() * 4 < text[0].size());

    sender.send(flk::client::presence_update{std::string(room), json::object{{"status", "away"}}});
    auto const presence = ada.take_one();
    BOOST_TEST(presence.tag() == 0x96u);
    BOOST_TEST(as<server::presence_updated>(presence.raw).user_handle == sender_handle);
    BOOST_TEST(as<server::presence_updated>(presence.named).user_id == "user-1234");

    sender.send(flk::client::cursor_leave{std::string(room)});
    auto const removed = ada.take_one();
    BOOST_TEST(removed.tag() == 0x95u);
    BOOST_TEST(as<server::cursor_removed>(removed.raw).user_handle == sender_handle);
    BOOST_TEST(as<server::cursor_removed>(removed.named).user_id == "user-1234");

    sender.send(flk::client::leave{std::string(room)});
    auto const left = ada.take_one();
    BOOST_TEST(left.tag() == 0x93u);
    BOOST_TEST(as<server::user_left>(left.raw).user_handle == sender_handle);
    BOOST_TEST((left.named == flk::server_message(server::user_left{std::string(room), "user-1234"})));
    BOOST_TEST(ada.session.user_count(room) == 1u);  // the browser's handle only
}

BOOST_FIXTURE_TEST_CASE(handles_are_never_reused, fixture) {
    auto& ada = native_joins(room, "ada");
    auto const room_handle = as<server::join_ack>(ada.take_one().raw).room_handle;
    auto& bob = native_joins(room, "bob");
    auto const first = as<server::user_joined>(ada.take_one().raw).user_handle;

    // A re-join without leaving: still present, same handle.
    bob.send(flk::client::join{std::string(room), "bob", {}, {}});
    BOOST_TEST(as<server::user_joined>(ada.take_one().raw).user_handle == first);

    // Bob leaves and comes back: a new handle, and a late frame with the old
    // one is never put down to anyone.
    bob.send(flk::client::leave{std::string(room)});
    BOOST_TEST(as<server::user_left>(ada.take_one().raw).user_handle == first);
    bob.send(flk::client::join{std::string(room), "bob", {}, {}});
    auto const second = as<server::user_joined>(ada.take_one().raw).user_handle;
    BOOST_TEST(second != first);
    flk::binary_codec const wire;
    BOOST_TEST(!ada.session.decode(wire.encode(server::cursor_updated{"", "", {0, 0}, 1, room_handle, first}))
                    .has_value());

    // Bob on a new socket (a reload): user:left, then a new handle again.
    auto& bob_again = native_joins(room, "bob");
    auto const replaced = ada.take();
    BOOST_TEST_REQUIRE(replaced.size() == 2u);
    BOOST_TEST(as<server::user_left>(replaced[0].raw).user_handle == second);
    auto const third = as<server::user_joined>(replaced[1].raw).user_handle;
    BOOST_TEST(third != first);
    BOOST_TEST(third != second);
    BOOST_TEST((bob.socket->close_code() == flk::close_code::replaced));

    // Newcomers never get a handle someone had.
    native_joins(room, "cy");
    auto const cy = as<server::user_joined>(ada.take_one().raw).user_handle;
    for (auto h : {first, second, third}) BOOST_TEST(cy != h);

    // A room emptied and created again, and another room: new room handles.
    bob_again.socket->disconnect();
    for (auto& n : natives) n.socket->disconnect();
    BOOST_TEST(srv.room_count() == 0u);
    auto const again = as<server::join_ack>(native_joins(room, "ada").take_one().raw).room_handle;
    auto const other = as<server::join_ack>(native_joins("lobby", "ada").take_one().raw).room_handle;
    BOOST_TEST(again != room_handle);
    BOOST_TEST(other != room_handle);
    BOOST_TEST(other != again);
}

BOOST_FIXTURE_TEST_CASE(members_on_other_instances_get_handles, fixture) {
    broker().add_remote_member(std::string(room), "zed", json::object{{"name", "Zed"}}, flk::position{0.1, 0.9});
    auto& ada = native_joins(room, "ada");
    auto const ack = ada.take_one();
    auto const room_handle = as<server::join_ack>(ack.raw).room_handle;
    auto const zed = handle_in(ack, "zed");
    BOOST_TEST(zed != 0u);

    broker().inject(room, server::cursor_updated{std::string(room), "zed", {0.5, 0.5}, 123});
    auto moved = ada.take_one();
    BOOST_TEST(moved.tag() == 0x94u);
    BOOST_TEST(as<server::cursor_updated>(moved.raw).user_handle == zed);
    BOOST_TEST((moved.named == flk::server_message(server::cursor_updated{std::string(room), "zed", {0.5, 0.5}, 123})));

    // Handles another instance put on its messages are its own: ours replace them.
    broker().inject(room, server::cursor_updated{std::string(room), "zed", {0.5, 0.5}, 124, 999, 999});
    moved = ada.take_one();
    BOOST_TEST(as<server::cursor_updated>(moved.raw).room_handle == room_handle);
    BOOST_TEST(as<server::cursor_updated>(moved.raw).user_handle == zed);

    broker().add_remote_member(std::string(room), "yan");  // what the other instance does on a join
    broker().inject(room, server::user_joined{std::string(room), "yan", {}});
    auto const joined = ada.take_one();
    BOOST_TEST(joined.tag() == 0x92u);
    auto const yan = as<server::user_joined>(joined.raw).user_handle;
    BOOST_TEST(yan != 0u);
    BOOST_TEST(yan != zed);
    broker().inject(room, server::presence_updated{std::string(room), "yan", json::object{{"s", 1}}});
    auto const presence = ada.take_one();
    BOOST_TEST(presence.tag() == 0x96u);
    BOOST_TEST(as<server::presence_updated>(presence.named).user_id == "yan");

    // A newcomer here is told the same handles.
    auto& bob = native_joins(room, "bob");
    auto const bob_ack = bob.take_one();
    BOOST_TEST(handle_in(bob_ack, "zed") == zed);
    BOOST_TEST(handle_in(bob_ack, "yan") == yan);
    ada.take();

    // Gone elsewhere: its handle retires, and a late message about it goes by name.
    broker().inject(room, server::user_left{std::string(room), "yan"});
    BOOST_TEST(as<server::user_left>(ada.take_one().raw).user_handle == yan);
    broker().inject(room, server::cursor_removed{std::string(room), "yan"});
    auto const late = ada.take_one();
    BOOST_TEST(late.tag() == 0x85u);
    BOOST_TEST((late.named == flk::server_message(server::cursor_removed{std::string(room), "yan"})));
}

BOOST_FIXTURE_TEST_CASE(a_remote_message_about_a_user_never_seen_goes_by_name, fixture) {
    auto& ada = native_joins(room, "ada");
    auto& browser = browser_joins(room, "browser");
    ada.take();
    browser.take();
    // A Node.js instance in the cluster speaks of a user this instance never saw join.
    broker().inject(room, server::cursor_updated{std::string(room), "ghost", {0.5, 0.25}, 123});
    broker().inject(room, server::presence_updated{std::string(room), "ghost", json::object{{"s", 1}}});
    broker().inject(room, server::cursor_removed{std::string(room), "ghost"});
    broker().inject(room, server::user_left{std::string(room), "ghost"});
    auto const got = ada.take();
    BOOST_TEST_REQUIRE(got.size() == 4u);
    std::vector<unsigned> tags;
    for (auto const& r : got) {
        tags.push_back(r.tag());
        BOOST_TEST((r.named == r.raw));  // nothing for the session to resolve
    }
    BOOST_TEST(tags == (std::vector<unsigned>{0x84, 0x86, 0x85, 0x83}), boost::test_tools::per_element());
    auto const& cu = as<server::cursor_updated>(got[0].raw);
    BOOST_TEST(cu.room_id == room);
    BOOST_TEST(cu.user_id == "ghost");
    auto const text = browser.take();
    BOOST_TEST_REQUIRE(text.size() == 4u);
    BOOST_TEST(text[0] ==
               R"({"type":"cursor:updated","roomId":"design-review-42","userId":"ghost","position":{"x":0.5,"y":0.25},"timestamp":123})");
}

BOOST_FIXTURE_TEST_CASE(a_remote_user_first_seen_in_a_later_snapshot_keeps_its_name, fixture) {
    auto& ada = native_joins(room, "ada");
    ada.take();
    // Zed is in the room elsewhere, but no user:joined for it reached this
    // instance: Ada was never told a handle for it.
    broker().add_remote_member(std::string(room), "zed");
    auto& bob = native_joins(room, "bob");
    BOOST_TEST(handle_in(bob.take_one(), "zed") == 0u);
    ada.take();
    broker().inject(room, server::cursor_updated{std::string(room), "zed", {0.5, 0.5}, 123});
    for (auto* n : {&ada, &bob}) {
        auto const got = n->take_one();  // the session would refuse a handle it never heard of
        BOOST_TEST(got.tag() == 0x84u);
        BOOST_TEST(as<server::cursor_updated>(got.named).user_id == "zed");
    }
    // Once a user:joined announces it to everyone, it goes by handle.
    broker().inject(room, server::user_joined{std::string(room), "zed", {}});
    auto const zed = as<server::user_joined>(ada.take_one().raw).user_handle;
    BOOST_TEST(zed != 0u);
    BOOST_TEST(as<server::user_joined>(bob.take_one().raw).user_handle == zed);
    broker().inject(room, server::cursor_updated{std::string(room), "zed", {0.5, 0.5}, 124});
    for (auto* n : {&ada, &bob}) BOOST_TEST(n->take_one().tag() == 0x94u);
}

BOOST_FIXTURE_TEST_CASE(json_clients_in_the_same_room_get_the_same_json, fixture) {
    auto& ada = native_joins(room, "ada");
    auto& bea = browser_joins(room, "bea");
    ada.take();
    auto const ack = bea.take();
    BOOST_TEST_REQUIRE(ack.size() == 1u);
    BOOST_TEST(ack[0] == R"({"type":"join:ack","roomId":"design-review-42","users":[{"userId":"ada","metadata":{}}]})");
    ada.take();

    auto& cy = native_joins(room, "cy");  // a binary sender
    cy.send(flk::client::cursor_move{std::string(room), {0.5, 0.25}});
    cy.send(flk::client::presence_update{std::string(room), json::object{{"status", "away"}}});
    cy.send(flk::client::cursor_leave{std::string(room)});
    cy.send(flk::client::leave{std::string(room)});

    auto const native = ada.take();
    auto const text = bea.take();
    BOOST_TEST_REQUIRE(native.size() == 5u);
    BOOST_TEST_REQUIRE(text.size() == 5u);
    auto const ts = std::to_string(as<server::cursor_updated>(native[1].named).timestamp);
    std::vector<std::string> const expected{
        R"({"type":"user:joined","roomId":"design-review-42","userId":"cy","metadata":{}})",
        R"({"type":"cursor:updated","roomId":"design-review-42","userId":"cy","position":{"x":0.5,"y":0.25},"timestamp":)" +
            ts + "}",
        R"({"type":"presence:updated","roomId":"design-review-42","userId":"cy","metadata":{"status":"away"}})",
        R"({"type":"cursor:removed","roomId":"design-review-42","userId":"cy"})",
        R"({"type":"user:left","roomId":"design-review-42","userId":"cy"})",
    };
    BOOST_TEST(text == expected, boost::test_tools::per_element());
    std::vector<unsigned> const by_handle{0x92, 0x94, 0x96, 0x95, 0x93};
    for (std::size_t i = 0; i < text.size(); ++i) {
        BOOST_TEST_CONTEXT(text[i]) {
            BOOST_TEST(native[i].tag() == by_handle[i]);
            auto const seen_by_json = json_wire.decode_server(text[i]);
            BOOST_TEST_REQUIRE(seen_by_json.has_value());
            BOOST_TEST((native[i].named == *seen_by_json));
        }
    }
    // Handles stay on this instance: what the broker publishes has none.
    BOOST_TEST(!broker().published.empty());
    for (auto const& p : broker().published)
        std::visit(
            [](auto const& m) {
                if constexpr (requires { m.user_handle; }) {
                    BOOST_TEST(m.room_handle == 0u);
                    BOOST_TEST(m.user_handle == 0u);
                }
            },
            p.message);
}

/// What a slow reader gets: its frames go through a send queue, which
/// conflates the cursor updates of one user, then through its session (each
/// must be accepted); returned as JSON.
std::vector<std::string> through_a_send_queue(native& n) {
    flk::detail::send_queue queue(1 << 20);
    for (auto const& f : n.socket->frames()) queue.push(f, flk::detail::send_queue::reader::congested);
    n.socket->take();
    std::vector<std::string> out;
    for (std::size_t i = 0; i < queue.size(); ++i) {
        auto const m = n.session.decode(queue[i].view());
        BOOST_TEST_REQUIRE(m.has_value(), "frame " << i << " uses a handle not announced before it");
        out.push_back(flk::json_codec().encode(*m));
    }
    return out;
}

bool is(std::string const& text, std::string_view type) {
    return text.find(R"("type":")" + std::string(type) + '"') != std::string::npos;
}

BOOST_FIXTURE_TEST_CASE(a_cursor_by_a_new_handle_never_overtakes_the_leave_and_join_before_it, fixture) {
    // A newer cursor of a user replaces an older unsent one, but must not jump
    // ahead of the user:left / user:joined that retire its old handle and
    // announce its new one.
    auto& ada = native_joins(room, "ada");
    auto& bob = native_joins(room, "bob");
    ada.take();
    bob.send(flk::client::cursor_move{std::string(room), {0.1, 0.1}});
    bob.send(flk::client::leave{std::string(room)});
    bob.send(flk::client::join{std::string(room), "bob", {}, {}});
    bob.send(flk::client::cursor_move{std::string(room), {0.2, 0.2}});
    bob.send(flk::client::cursor_move{std::string(room), {0.3, 0.3}});
    auto const seen = through_a_send_queue(ada);
    BOOST_TEST_REQUIRE(seen.size() == 4u);  // the last two moves became one
    BOOST_TEST(is(seen[0], "cursor:updated"));
    BOOST_TEST(is(seen[1], "user:left"));
    BOOST_TEST(is(seen[2], "user:joined"));
    BOOST_TEST(seen[3].find(R"("userId":"bob","position":{"x":0.3,"y":0.3})") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(a_cursor_by_handle_never_overtakes_the_user_joined_announcing_it, fixture) {
    // Zed goes by name (first seen in a snapshot) until a user:joined gives it
    // a handle; its next cursor, by handle, must stay behind that user:joined.
    auto& ada = native_joins(room, "ada");
    ada.take();
    broker().add_remote_member(std::string(room), "zed");
    native_joins(room, "cy");
    ada.take();
    broker().inject(room, server::cursor_updated{std::string(room), "zed", {0.1, 0.1}, 1});
    broker().inject(room, server::user_joined{std::string(room), "zed", {}});
    broker().inject(room, server::cursor_updated{std::string(room), "zed", {0.2, 0.2}, 2});
    BOOST_TEST(ada.socket->frames().back().view().at(0) == '\x94');
    auto const seen = through_a_send_queue(ada);
    BOOST_TEST_REQUIRE(seen.size() == 3u);
    BOOST_TEST(is(seen[0], "cursor:updated"));
    BOOST_TEST(is(seen[1], "user:joined"));
    BOOST_TEST(seen[2].find(R"("userId":"zed","position":{"x":0.2,"y":0.2})") != std::string::npos);

    // The same when such a user joins here: its handle comes with its user:joined.
    broker().add_remote_member(std::string(room), "yan");
    native_joins(room, "dee");  // yan first seen in a snapshot: by name
    ada.take();
    broker().inject(room, server::cursor_updated{std::string(room), "yan", {0.1, 0.1}, 1});
    auto& yan = native_joins(room, "yan");
    yan.send(flk::client::cursor_move{std::string(room), {0.3, 0.3}});
    auto const after = through_a_send_queue(ada);
    BOOST_TEST_REQUIRE(after.size() == 3u);
    BOOST_TEST(is(after[0], "cursor:updated"));
    BOOST_TEST(is(after[1], "user:joined"));
    BOOST_TEST(after[2].find(R"("userId":"yan","position":{"x":0.3,"y":0.3})") != std::string::npos);
}

using binary_only = fixture_for<flk::binary_codec>;

BOOST_FIXTURE_TEST_CASE(a_binary_only_server_uses_handles_too, binary_only) {
    // basic_flock<..., binary_codec>: every client speaks binary, asked or not.
    auto& ada = natives.emplace_back();
    ada.socket = &srv.transport().connect();
    ada.send(flk::client::join{std::string(room), "ada", {}, {}});
    auto& bob = natives.emplace_back();
    bob.socket = &srv.transport().connect();
    bob.send(flk::client::join{std::string(room), "bob", {}, {}});
    BOOST_TEST(handle_in(bob.take_one(), "ada") != 0u);
    ada.take();
    ada.send(flk::client::cursor_move{std::string(room), {0.5, 0.25}});
    auto const moved = bob.take_one();
    BOOST_TEST(moved.tag() == 0x94u);
    BOOST_TEST(as<server::cursor_updated>(moved.named).user_id == "ada");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace handles_test
