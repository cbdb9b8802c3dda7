// flock's single-node server over real loopback WebSockets: the flows a
// browser client goes through, driven by a Beast client.
#include <flock/flock.hpp>

#include "integration/raw_ws.hpp"
#include "integration/ws_client.hpp"
#include "messages.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <future>
#include <mutex>
#include <memory>
#include <thread>

namespace server_test {

namespace json = boost::json;
namespace msg = flk::test::msg;
namespace rw = flk::test::raw;
using flk::test::ws_client;
using namespace std::chrono_literals;

// A flock server on 127.0.0.1 and a free port, run by a thread of its own.
struct running_server {
    boost::asio::io_context io;
    std::unique_ptr<flk::single_node_server> server;
    std::thread thread;
    std::uint16_t port = 0;

    explicit running_server(flk::options opts) {
        opts.host = "127.0.0.1";
        opts.port = 0;
        server = std::make_unique<flk::single_node_server>(io.get_executor(), opts);
        server->start();
        port = server->transport().port();
        thread = std::thread([this] { io.run(); });
    }
    // Runs `f` on the server's thread and returns what it returns.
    template <class F>
    auto run(F f) -> decltype(f()) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        boost::asio::post(io, [&task] { task(); });
        return result.get();
    }
    // Graceful stop, waited for.
    void stop() {
        if (!thread.joinable()) return;
        boost::asio::post(io, [this] { server->stop(); });
        thread.join();
    }
    ~running_server() { stop(); }
};

flk::options quiet() {
    flk::options o;
    o.log = flk::log_level::silent;
    return o;
}


struct fixture {
    flk::options opts = quiet();
    std::unique_ptr<running_server> srv = std::make_unique<running_server>(opts);

    void restart() { srv = std::make_unique<running_server>(opts); }
    std::unique_ptr<ws_client> connect(std::string target = "/") {
        return std::make_unique<ws_client>(srv->port, target);
    }
    // Connects and joins; returns the client with the join:ack read.
    std::unique_ptr<ws_client> joined(std::string_view room, std::string_view user, std::string_view meta = "{}",
                                      json::object* ack = nullptr) {
        auto c = connect();
        c->send_text(msg::join(room, user, meta));
        auto got = c->read_json();
        BOOST_TEST_REQUIRE(got.at("type").as_string() == "join:ack");
        if (ack) *ack = got;
        return c;
    }
};


// A raw client (the test writes every byte) joined to `room` as `user`.
std::unique_ptr<rw::client> raw_joined(std::uint16_t port, std::string_view room, std::string_view user) {
    auto c = std::make_unique<rw::client>(port);
    c->upgrade();
    c->send(rw::frame(rw::op::text, msg::join(room, user)));
    auto ack = c->read_frame();
    BOOST_TEST_REQUIRE(ack.has_value());
    BOOST_TEST_REQUIRE(json::parse(ack->payload).at("type").as_string() == "join:ack");
    return c;
}

// The frames of `n` cursor moves with x = first, first + step, ...
std::string moves(std::string_view room, int n, double first, double step) {
    std::string out;
    for (int i = 0; i < n; ++i) out += rw::frame(rw::op::text, msg::move(room, first + i * step, 0));
    return out;
}

double x_of(json::object const& m) { return m.at("position").at("x").to_number<double>(); }


BOOST_AUTO_TEST_SUITE(server)

BOOST_FIXTURE_TEST_CASE(a_burst_in_one_write_reaches_every_prompt_reader_whole_and_in_order, fixture) {
    auto alice = raw_joined(srv->port, "r", "alice");
    auto bob = joined("r", "bob");
    auto carol = joined("r", "carol");
    BOOST_TEST(bob->read_until_type("user:joined").at("userId").as_string() == "carol");
    alice->send(moves("r", 20, 0.01, 0.01));  // 20 frames, one write: one read, one loop turn
    for (auto* reader : {bob.get(), carol.get()}) {
        for (int i = 1; i <= 20; ++i) {
            auto m = reader->read_json();
            BOOST_TEST_REQUIRE(m.at("type").as_string() == "cursor:updated");
            BOOST_TEST(std::abs(x_of(m) - i * 0.01) < 1e-9, "move " << i << " arrived as x=" << x_of(m));
        }
        // Nothing else was queued before the heartbeat's answer.
        reader->send_text(msg::in_room("heartbeat", "r"));
        BOOST_TEST(reader->read_json().at("type").as_string() == "heartbeat:ack");
    }
}

// FLOCK_WRITE_DELAY_MS: cursors wait up to the delay, everything else goes
// at once and takes the held cursors along, in order.
namespace write_delay {

// The next text frame's JSON (a ping may come first on a slow machine).
json::object next_json(rw::client& c) {
    for (;;) {
        auto f = c.read_frame();
        BOOST_TEST_REQUIRE(f.has_value(), "no frame");
        if (f->opcode == 0x9) continue;
        BOOST_TEST_REQUIRE(f->opcode == 0x1u, f->describe());
        return json::parse(f->payload).as_object();
    }
}

void expect_cursors(rw::client& reader, std::initializer_list<double> xs) {
    for (double x : xs) {
        auto m = next_json(reader);
        BOOST_TEST_REQUIRE(m.at("type").as_string() == "cursor:updated");
        BOOST_TEST(std::abs(x_of(m) - x) < 1e-9, "expected x=" << x << ", got " << x_of(m));
    }
}

}  // namespace write_delay

BOOST_FIXTURE_TEST_CASE(a_write_delay_holds_cursors_for_about_the_delay_and_delivers_them_whole_in_order, fixture) {
    opts.write_delay = 300ms;
    restart();
    auto alice = raw_joined(srv->port, "r", "alice");
    auto bob = raw_joined(srv->port, "r", "bob");
    BOOST_TEST(write_delay::next_json(*alice).at("type").as_string() == "user:joined");  // presence: not held
    auto const sent = std::chrono::steady_clock::now();
    alice->send(moves("r", 4, 0.1, 0.1));
    write_delay::expect_cursors(*bob, {0.1, 0.2, 0.3, 0.4});
    // Held, not written in the turn they were sent in: released no earlier
    // than 7/8 of the delay (a lower bound, which load cannot break).
    BOOST_TEST((std::chrono::steady_clock::now() - sent >= 260ms));
}

BOOST_FIXTURE_TEST_CASE(a_write_delay_never_holds_presence_acks_errors_or_closes, fixture) {
    opts.write_delay = 1000ms;  // the longest allowed: anything that waited for it would show
    restart();
    auto alice = raw_joined(srv->port, "r", "alice");
    auto bob = raw_joined(srv->port, "r", "bob");
    BOOST_TEST(write_delay::next_json(*alice).at("type").as_string() == "user:joined");
    auto const waited_less_than_the_delay = [start = std::chrono::steady_clock::now()] {
        return std::chrono::steady_clock::now() - start < 900ms;
    };
    // Moves, then a presence update, in one write: bob gets the moves (held
    // for him) and then the presence, together and at once.
    alice->send(moves("r", 3, 0.1, 0.1) +
                rw::frame(rw::op::text, msg::in_room("presence:update", "r", R"(,"metadata":{"status":"away"})")));
    write_delay::expect_cursors(*bob, {0.1, 0.2, 0.3});
    BOOST_TEST(write_delay::next_json(*bob).at("type").as_string() == "presence:updated");
    // An acknowledgement is not held either.
    bob->send(rw::frame(rw::op::text, msg::in_room("heartbeat", "r")));
    BOOST_TEST(write_delay::next_json(*bob).at("type").as_string() == "heartbeat:ack");
    // Nor an error: a move without a position is answered at once.
    bob->send(rw::frame(rw::op::text, R"({"type":"cursor:move","roomId":"r"})"));
    BOOST_TEST(write_delay::next_json(*bob).at("type").as_string() == "error");
    BOOST_TEST(waited_less_than_the_delay());
    // Nor a close: moves held for bob, then the server stops. Alice's ack
    // proves the moves were queued for bob before the stop.
    alice->send(moves("r", 2, 0.7, 0.1) + rw::frame(rw::op::text, msg::in_room("heartbeat", "r")));
    BOOST_TEST(write_delay::next_json(*alice).at("type").as_string() == "heartbeat:ack");
    auto const stopping = std::chrono::steady_clock::now();
    std::thread stopper([&] { srv->stop(); });
    write_delay::expect_cursors(*bob, {0.7, 0.8});
    auto close = bob->read_frame();
    BOOST_TEST_REQUIRE(close.has_value());
    BOOST_TEST(close->close_code() == 1001u, close->describe());
    BOOST_TEST((std::chrono::steady_clock::now() - stopping < 900ms));
    stopper.join();
}

BOOST_FIXTURE_TEST_CASE(the_three_moves_before_a_join_reach_a_prompt_reader_in_order, fixture) {
    auto bob = joined("r", "bob");
    rw::client alice(srv->port);
    alice.upgrade();
    // Five moves and the join, in one write: the join lands in the same turn
    // as the replay of the last three.
    alice.send(moves("r", 5, 0.1, 0.1) + rw::frame(rw::op::text, msg::join("r", "alice")));
    BOOST_TEST(bob->read_json().at("type").as_string() == "user:joined");
    for (double x : {0.3, 0.4, 0.5}) {
        auto m = bob->read_json();
        BOOST_TEST_REQUIRE(m.at("type").as_string() == "cursor:updated");
        BOOST_TEST(std::abs(x_of(m) - x) < 1e-9);
    }
    bob->send_text(msg::in_room("heartbeat", "r"));
    BOOST_TEST(bob->read_json().at("type").as_string() == "heartbeat:ack");
}

BOOST_FIXTURE_TEST_CASE(a_reader_that_stops_reading_gets_the_newest_cursor_and_stays_bounded, fixture) {
    opts.max_messages_per_second = 1'000'000;
    restart();
    // Long ids make every frame about 300 bytes, so the kernel's buffers
    // (a few MB on loopback) fill sooner.
    std::string const room(100, 'r');
    auto alice = raw_joined(srv->port, room, std::string(100, 'a'));
    auto slow = raw_joined(srv->port, room, "slow");
    // Its next text frame; it was silent long enough to be pinged, perhaps.
    auto next_text = [&] {
        for (;;) {
            auto f = slow->read_frame(10s);
            BOOST_TEST_REQUIRE(f.has_value());
            if (f->opcode == rw::op::ping) continue;
            BOOST_TEST_REQUIRE(f->opcode == rw::op::text, "got " << *f);
            return json::parse(f->payload).as_object();
        }
    };
    BOOST_TEST_REQUIRE(json::parse(alice->read_frame()->payload).at("type").as_string() == "user:joined");
    // About 12 MB of moves, 12 times what the reader's queue may hold
    // (FLOCK_MAX_SEND_QUEUE_BYTES), while it reads nothing.
    int const n = 40'000;
    for (int sent = 0; sent < n; sent += 1000) alice->send(moves(room, 1000, (sent + 1) * 1e-5, 1e-5));
    alice->send(rw::frame(rw::op::text, msg::in_room("presence:update", room, R"(,"metadata":{"status":"away"})")));
    alice->send(rw::frame(rw::op::text, msg::move(room, 0.9, 0.9)));
    // The reader comes back: it is still connected, gets fewer moves than
    // were sent, in order, the presence event, and the newest position last.
    int cursors = 0, presences = 0;
    double last_x = 0;
    for (;;) {
        auto m = next_text();
        if (m.at("type").as_string() == "presence:updated") {
            ++presences;
            continue;
        }
        BOOST_TEST_REQUIRE(m.at("type").as_string() == "cursor:updated");
        ++cursors;
        BOOST_TEST_REQUIRE(x_of(m) > last_x, "out of order: " << x_of(m) << " after " << last_x);
        last_x = x_of(m);
        if (last_x == 0.9) break;
    }
    BOOST_TEST(presences == 1);
    BOOST_TEST(cursors < n);  // conflated while it did not read
    BOOST_TEST(cursors > 1);
    alice->send(rw::frame(rw::op::text, msg::move(room, 0.95, 0.95)));
    BOOST_TEST(x_of(next_text()) == 0.95);  // reading again: every move
}

// The status an upgrade with the header lines `extra` is answered with.
int upgrade_status(std::uint16_t port, std::string_view extra = {}) {
    rw::client c(port);
    c.send(rw::upgrade_request("/", rw::random_key(), extra));
    return c.read_http_response().status;
}

BOOST_FIXTURE_TEST_CASE(only_listed_origins_may_open_a_websocket, fixture) {
    opts.allowed_origins = {"https://app.example.com", "http://localhost:3000"};
    restart();
    BOOST_TEST(upgrade_status(srv->port, "Origin: https://evil.example.net\r\n") == 403);
    BOOST_TEST(upgrade_status(srv->port, "Origin: https://app.example.com.evil.net\r\n") == 403);
    BOOST_TEST(upgrade_status(srv->port, "Origin: null\r\n") == 403);
    BOOST_TEST(upgrade_status(srv->port, "Origin: https://app.example.com\r\n") == 101);
    BOOST_TEST(upgrade_status(srv->port, "Origin: HTTP://LOCALHOST:3000\r\n") == 101);
    BOOST_TEST(upgrade_status(srv->port) == 101);  // no Origin: not a browser page
    auto const& refused = srv->server->transport().refusals();
    BOOST_TEST(srv->run([&] { return refused.origin; }) == 3u);
}

BOOST_FIXTURE_TEST_CASE(connections_past_the_limits_get_503, fixture) {
    opts.max_connections = 3;
    opts.max_connections_per_ip = 2;
    restart();
    auto a = joined("r", "a");
    auto b = joined("r", "b");
    // A third from the same address: the per-address limit.
    BOOST_TEST(upgrade_status(srv->port) == 503);
    // From another loopback address the total limit still has room for one.
    auto from = [&](char const* address) {
        auto c = std::make_unique<rw::client>(srv->port, rw::client::default_timeout, address);
        c->send(rw::upgrade_request("/", rw::random_key()));
        int const status = c->read_http_response().status;
        return std::pair{std::move(c), status};
    };
    auto [c, c_status] = from("127.0.0.2");
    BOOST_TEST(c_status == 101);
    BOOST_TEST(from("127.0.0.3").second == 503);  // the total limit
    auto const counts = srv->run([&] { return srv->server->transport().refusals(); });
    BOOST_TEST(counts.address_full == 1u);
    BOOST_TEST(counts.full == 1u);
    // A place frees when a connection ends.
    b.reset();
    BOOST_TEST(a->read_until_type("user:left").at("userId").as_string() == "b");
    BOOST_TEST(upgrade_status(srv->port) == 101);
}

BOOST_FIXTURE_TEST_CASE(a_socket_that_never_joins_is_closed_with_4002, fixture) {
    opts.join_timeout = 300ms;
    restart();
    auto idle = connect();
    auto member = joined("r", "m");
    BOOST_TEST(idle->wait_close(5s).value_or(0) == 4002);
    // One that joined in time stays, and so does its membership.
    member->send_text(msg::in_room("heartbeat", "r"));
    BOOST_TEST(member->read_json().at("type").as_string() == "heartbeat:ack");
    BOOST_TEST(srv->run([&] { return srv->server->join_timeouts(); }) == 1u);
}

BOOST_FIXTURE_TEST_CASE(refusals_are_logged_once_per_address_per_interval, fixture) {
    auto lines = std::make_shared<std::vector<std::string>>();
    auto mu = std::make_shared<std::mutex>();
    opts.log = flk::log_level::info;
    opts.log_sink = [lines, mu](flk::log_level, std::string_view line) {
        std::lock_guard lk(*mu);
        lines->emplace_back(line);
    };
    opts.allowed_origins = {"https://app.example.com"};
    restart();
    for (int i = 0; i < 20; ++i) BOOST_TEST(upgrade_status(srv->port, "Origin: https://evil.example\r\n") == 403);
    BOOST_TEST(srv->run([&] { return srv->server->transport().refusals().origin; }) == 20u);
    std::lock_guard lk(*mu);
    BOOST_TEST(std::ranges::count_if(*lines, [](auto const& l) { return l.find("connection refused") != std::string::npos; }) == 1);
}

BOOST_FIXTURE_TEST_CASE(a_reader_that_stops_reading_is_closed_after_the_write_stall_limit, fixture) {
    opts.write_stall = 1s;
    opts.max_messages_per_second = 1'000'000;
    restart();
    std::string const room(100, 'r');
    auto alice = raw_joined(srv->port, room, std::string(100, 'a'));
    auto watcher = joined(room, "watcher");
    auto stalled = raw_joined(srv->port, room, "stalled");  // heartbeats, never reads
    BOOST_TEST(watcher->read_until_type("user:joined").at("userId").as_string() == "stalled");
    // Moves keep coming while the watcher reads them all and the stalled
    // client goes on heartbeating (so the idle timeout is not what closes it).
    int batch = 0, left = 0, moves_seen = 0;
    auto const give_up = std::chrono::steady_clock::now() + 60s;
    while (left == 0 && std::chrono::steady_clock::now() < give_up) {
        alice->send(moves(room, 500, 0.001 * (batch % 500), 1e-6));
        stalled->send(rw::frame(rw::op::text, msg::in_room("heartbeat", room)));
        ++batch;
        for (int got = 0; got < 500;) {
            auto m = watcher->read_json(10s);
            if (m.at("type").as_string() == "cursor:updated") {
                ++got;
                ++moves_seen;
            } else if (m.at("type").as_string() == "user:left") {
                BOOST_TEST(m.at("userId").as_string() == "stalled");
                ++left;
            }
        }
    }
    BOOST_TEST_REQUIRE(left == 1, "not closed within 60 s; " << moves_seen << " moves relayed");
    // Exactly once, and the others go on.
    watcher->send_text(msg::in_room("heartbeat", room));
    for (;;) {
        auto m = watcher->read_json();
        if (m.at("type").as_string() == "heartbeat:ack") break;
        BOOST_TEST(m.at("type").as_string() != "user:left");
    }
    BOOST_TEST(srv->run([&] { return srv->server->transport().refusals().write_stalls; }) == 1u);
    BOOST_TEST(srv->run([&] { return srv->server->local_member_count(room); }) == 2u);
}

BOOST_FIXTURE_TEST_CASE(a_reader_that_reads_slowly_but_steadily_is_never_cut, fixture) {
    opts.write_stall = 2s;
    opts.max_messages_per_second = 1'000'000;
    restart();
    std::string const room(100, 'r');
    auto alice = raw_joined(srv->port, room, std::string(100, 'a'));
    auto slow = raw_joined(srv->port, room, "slow");
    BOOST_TEST_REQUIRE(json::parse(alice->read_frame()->payload).at("type").as_string() == "user:joined");
    // Far more than it can read: its socket's buffers fill, then it reads a
    // frame a millisecond (about 300 KB/s) for twice the stall limit.
    for (int i = 0; i < 20; ++i) alice->send(moves(room, 1000, 0.001 * i, 1e-6));
    auto const until = std::chrono::steady_clock::now() + 4s;
    int frames = 0;
    while (std::chrono::steady_clock::now() < until) {
        auto f = slow->read_frame(5s);
        BOOST_TEST_REQUIRE(f.has_value());
        BOOST_TEST_REQUIRE(f->opcode != rw::op::close, "closed: " << *f);
        ++frames;
        if (frames % 200 == 0) alice->send(moves(room, 1000, 0.5, 1e-6));  // keep it busy
        std::this_thread::sleep_for(1ms);  // the slow reader's pace (the load model, not a wait)
    }
    BOOST_TEST(srv->run([&] { return srv->server->transport().refusals().write_stalls; }) == 0u);
    BOOST_TEST(srv->run([&] { return srv->server->local_member_count(room); }) == 2u);
}

BOOST_FIXTURE_TEST_CASE(health_and_unknown_paths, fixture) {
    auto ok = flk::test::http_get(srv->port, "/health");
    BOOST_TEST(ok.status == 200);
    BOOST_TEST(ok.content_type == "application/json");
    BOOST_TEST(json::parse(ok.body) == json::parse(R"({"status":"ok"})"));
    BOOST_TEST(flk::test::http_get(srv->port, "/nope").status == 404);
}

BOOST_FIXTURE_TEST_CASE(join_cursor_presence_leave, fixture) {
    auto alice = joined("room-1", "alice", R"({"name":"Alice","color":"#e91e63"})");
    json::object ack;
    auto bob = joined("room-1", "bob", R"({"name":"Bob"})", &ack);
    BOOST_TEST(ack.at("users").as_array().size() == 1u);
    BOOST_TEST(ack.at("users").at(0).at("metadata").at("name").as_string() == "Alice");

    auto joined_msg = alice->read_json();
    BOOST_TEST(joined_msg.at("type").as_string() == "user:joined");
    BOOST_TEST(joined_msg.at("userId").as_string() == "bob");

    alice->send_text(msg::move("room-1", 0.25, 0.5));
    auto moved = bob->read_json();
    BOOST_TEST(moved.at("type").as_string() == "cursor:updated");
    BOOST_TEST(moved.at("userId").as_string() == "alice");
    BOOST_TEST(moved.at("position").at("x").to_number<double>() == 0.25);
    BOOST_TEST(moved.at("timestamp").is_number());

    bob->send_text(msg::in_room("presence:update", "room-1", R"(,"metadata":{"status":"away"})"));
    auto presence = alice->read_json();
    BOOST_TEST(presence.at("type").as_string() == "presence:updated");
    BOOST_TEST(presence.at("metadata") == json::parse(R"({"status":"away"})"));

    alice->send_text(msg::in_room("cursor:leave", "room-1"));
    BOOST_TEST(bob->read_json().at("type").as_string() == "cursor:removed");

    alice->send_text(msg::in_room("heartbeat", "room-1"));
    BOOST_TEST(alice->read_json() == json::parse(R"({"type":"heartbeat:ack"})"));

    bob->send_text(msg::in_room("leave", "room-1"));
    auto left = alice->read_json();
    BOOST_TEST(left == json::parse(R"({"type":"user:left","roomId":"room-1","userId":"bob"})"));
    BOOST_TEST(alice->got_nothing_for(100ms));  // nothing was echoed to the sender
}

BOOST_FIXTURE_TEST_CASE(closing_a_socket_is_a_leave, fixture) {
    auto alice = joined("r", "alice");
    auto bob = joined("r", "bob");
    alice->read_until_type("user:joined");
    bob.reset();
    auto left = alice->read_until_type("user:left");
    BOOST_TEST(left.at("userId").as_string() == "bob");
}

BOOST_FIXTURE_TEST_CASE(one_socket_many_rooms, fixture) {
    auto alice = joined("r1", "alice");
    alice->send_text(msg::join("r2", "alice"));
    BOOST_TEST(alice->read_json().at("roomId").as_string() == "r2");
    auto bob = joined("r1", "bob");
    auto carol = joined("r2", "carol");
    alice->send_text(msg::move("r2", 0.1, 0.2));
    auto got = carol->read_until_type("cursor:updated");
    BOOST_TEST(got.at("roomId").as_string() == "r2");
    BOOST_TEST(bob->got_nothing_for(100ms));
}

BOOST_FIXTURE_TEST_CASE(a_second_tab_replaces_the_first, fixture) {
    auto alice = joined("r", "alice");
    auto bob1 = joined("r", "bob");
    alice->read_until_type("user:joined");
    auto bob2 = joined("r", "bob");
    BOOST_TEST((bob1->wait_close() == flk::close_code::replaced));
    BOOST_TEST(alice->read_json().at("type").as_string() == "user:left");
    BOOST_TEST(alice->read_json().at("type").as_string() == "user:joined");
    bob2->send_text(msg::move("r", 0.5, 0.5));
    BOOST_TEST(alice->read_json().at("type").as_string() == "cursor:updated");
}

BOOST_FIXTURE_TEST_CASE(flooding_is_rate_limited, fixture) {
    opts.max_messages_per_second = 20;
    restart();
    auto bob = joined("r", "bob");
    auto alice = joined("r", "alice");
    for (int i = 0; i < 30; ++i) alice->send_text(msg::move("r", 0.5, 0.5));
    auto err = alice->read_until_type("error");
    BOOST_TEST(err.at("code").as_string() == "RATE_LIMITED");
    BOOST_TEST((alice->wait_close() == flk::close_code::policy_violation));
    BOOST_TEST(bob->read_until_type("user:left").at("userId").as_string() == "alice");
}

BOOST_FIXTURE_TEST_CASE(a_full_room_refuses_and_closes, fixture) {
    opts.max_room_size = 1;
    restart();
    auto alice = joined("r", "alice");
    auto bob = connect();
    bob->send_text(msg::join("r", "bob"));
    BOOST_TEST(bob->read_json().at("code").as_string() == "ROOM_FULL");
    BOOST_TEST((bob->wait_close() == flk::close_code::policy_violation));
    alice->send_text(msg::in_room("heartbeat", "r"));
    BOOST_TEST(alice->read_json().at("type").as_string() == "heartbeat:ack");
}

BOOST_FIXTURE_TEST_CASE(api_keys_in_the_join_or_the_url, fixture) {
    opts.api_keys = {"secret"};
    restart();
    auto anon = connect();
    anon->send_text(msg::join("r", "anon"));
    BOOST_TEST(anon->read_json().at("code").as_string() == "INVALID_API_KEY");
    BOOST_TEST((anon->wait_close() == flk::close_code::policy_violation));

    auto keyed = connect();
    keyed->send_text(R"({"type":"join","roomId":"r","userId":"k","metadata":{},"apiKey":"secret"})");
    BOOST_TEST(keyed->read_json().at("type").as_string() == "join:ack");

    auto by_url = connect("/?apiKey=secret");
    by_url->send_text(msg::join("r", "u"));
    BOOST_TEST(by_url->read_json().at("type").as_string() == "join:ack");

    BOOST_TEST(ws_client::upgrade_status(srv->port, "/?apiKey=wrong") == 401);
}

BOOST_FIXTURE_TEST_CASE(bad_input_is_dropped_and_nothing_else_breaks, fixture) {
    opts.max_frame_bytes = 1024;
    restart();
    auto alice = joined("r", "alice");
    auto bob = joined("r", "bob");
    alice->read_until_type("user:joined");

    for (auto bad : {"{oops", "null", "[1,2]", R"({"type":"teleport","roomId":"r"})"}) bob->send_text(bad);
    bob->send_text(R"({"type":"cursor:move","roomId":"r","position":{"x":"far","y":0}})");
    BOOST_TEST(bob->read_json().at("code").as_string() == "INVALID_MESSAGE");
    // A binary frame on a JSON connection is read as binary: a cut cursor:move (tag 0x03, a
    // 5-byte roomId that never comes) is malformed and answered.
    bob->send_binary(std::string("\x03\x05", 2));
    BOOST_TEST(bob->read_json().at("code").as_string() == "INVALID_MESSAGE");
    BOOST_TEST(alice->got_nothing_for(100ms));

    // An oversized frame costs only its sender the connection.
    bob->send_text(std::string(2048, ' '));
    BOOST_TEST((bob->wait_close() == flk::close_code::too_big));
    BOOST_TEST(alice->read_until_type("user:left").at("userId").as_string() == "bob");
    alice->send_text(msg::in_room("heartbeat", "r"));
    BOOST_TEST(alice->read_json().at("type").as_string() == "heartbeat:ack");
}

BOOST_FIXTURE_TEST_CASE(a_silent_user_is_evicted_after_the_ttl, fixture) {
    opts.presence_ttl = 1s;
    restart();
    auto ghost = joined("r", "ghost");
    auto alice = joined("r", "alice");
    // Alice keeps heartbeating while she waits; the ghost sends nothing.
    std::optional<json::object> left;
    for (int i = 0; i < 40 && !left; ++i) {
        alice->send_text(msg::in_room("heartbeat", "r"));
        while (auto m = alice->read(100ms)) {
            auto msg = json::parse(*m).as_object();
            if (msg.at("type").as_string() == "user:left") {
                left = msg;
                break;
            }
        }
    }
    BOOST_TEST_REQUIRE(left.has_value());
    BOOST_TEST(left->at("userId").as_string() == "ghost");
    BOOST_TEST((ghost->wait_close() == flk::close_code::presence_expired));
}

BOOST_FIXTURE_TEST_CASE(graceful_stop_closes_with_going_away, fixture) {
    auto alice = joined("r", "alice");
    auto bob = joined("r", "bob");
    alice->read_until_type("user:joined");
    srv->stop();
    BOOST_TEST((alice->wait_close() == flk::close_code::going_away));
    BOOST_TEST((bob->wait_close() == flk::close_code::going_away));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace server_test
