// Every protocol rule of PROTOCOL.md, through the in-memory transport and the
// mock broker: no sockets, no Redis, time moved by hand.
#include <flock/basic_flock.hpp>
#include <flock/codec/json.hpp>
#include <flock/codec/negotiated.hpp>
#include <flock/testing/memory_transport.hpp>
#include <flock/testing/mock_broker.hpp>

#include "messages.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

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
        native_info.subprotocols = {"something.else", "flock.binary.v1"};
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
    auto moved = binary.decode_server(native->frames().at(0).view());
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
    native_info.subprotocols = {"flock.binary.v1"};
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

BOOST_AUTO_TEST_SUITE_END()

}  // namespace negotiation_test
