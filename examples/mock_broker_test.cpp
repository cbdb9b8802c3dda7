// A unit test of your own code with flock's test policies: no sockets, no
// Redis. "Your code" here is a tiny app layer, my_app, that builds the
// messages its native client sends and picks the server's settings; the test
// checks them against a real flock core and looks at what the mock broker
// would have shared with the other instances of a cluster.
#define BOOST_TEST_MODULE mock broker example
#include <boost/test/included/unit_test.hpp>

#include <flock/basic_flock.hpp>
#include <flock/codec/json.hpp>
#include <flock/testing/memory_transport.hpp>
#include <flock/testing/mock_broker.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

namespace my_app {

flk::options presence_options() {
    flk::options o;
    o.max_room_size = 3;  // small huddles
    o.log = flk::log_level::silent;
    return o;
}
std::string join(std::string_view room, std::string_view user, std::string_view name) {
    return boost::json::serialize(boost::json::object{
        {"type", "join"}, {"roomId", room}, {"userId", user}, {"metadata", {{"name", name}}}});
}
std::string move(std::string_view room, double x, double y) {
    return boost::json::serialize(
        boost::json::object{{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", x}, {"y", y}}}});
}

}  // namespace my_app

using test_server = flk::basic_flock<flk::testing::memory_transport, flk::testing::mock_broker, flk::json_codec>;

struct huddle {
    boost::asio::io_context io;
    test_server server{io.get_executor(), my_app::presence_options()};
    huddle() { server.start(); }
};

BOOST_FIXTURE_TEST_CASE(our_messages_are_accepted_and_shared_with_the_cluster, huddle) {
    auto& ann = server.transport().connect();
    auto& ben = server.transport().connect();
    ann.send(my_app::join("design-review", "ann", "Ann"));
    ben.send(my_app::join("design-review", "ben", "Ben"));
    ann.send(my_app::move("design-review", 0.5, 0.25));

    auto got = ben.take_json();
    BOOST_TEST_REQUIRE(got.size() == 2u);  // join:ack, then Ann's cursor
    BOOST_TEST(got[1].at("type").as_string() == "cursor:updated");
    BOOST_TEST(got[1].at("position").at("y").as_double() == 0.25);

    // What another instance would receive through the broker.
    auto moves = server.broker().published_of<flk::server::cursor_updated>();
    BOOST_TEST_REQUIRE(moves.size() == 1u);
    BOOST_TEST(moves[0].user_id == "ann");
}

BOOST_FIXTURE_TEST_CASE(our_huddles_hold_three, huddle) {
    for (auto name : {"a", "b", "c"}) server.transport().connect().send(my_app::join("h", name, name));
    auto& late = server.transport().connect();
    late.send(my_app::join("h", "d", "Dee"));
    BOOST_TEST(late.take_json().at(0).at("code").as_string() == "ROOM_FULL");
    BOOST_TEST(!late.is_open());
}

BOOST_FIXTURE_TEST_CASE(a_member_of_another_instance_shows_in_our_snapshot, huddle) {
    server.broker().add_remote_member("h", "remote-rita", {{"name", "Rita"}});
    auto& ann = server.transport().connect();
    ann.send(my_app::join("h", "ann", "Ann"));
    auto ack = ann.take_json().at(0);
    BOOST_TEST(ack.at("users").at(0).at("metadata").at("name").as_string() == "Rita");
}
