// redis_broker against a real redis-server: several brokers (= instances) on
// one io_context, each with a recording broker_events. Waiting is always
// "run the loop until a condition holds, or fail at a deadline".
#include <boost/test/unit_test.hpp>

#include <flock/broker/redis.hpp>

#include "redis_server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace redis_broker_test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using redis_fixture::heartbeat;
using redis_fixture::redis_server;
using redis_fixture::run_until;

/// What a broker told its core.
struct recorder final : flk::broker_events {
    struct remote_msg {
        std::string room;
        flk::server_message msg;
    };
    std::vector<remote_msg> remote;
    std::vector<std::pair<std::string, std::string>> evicted;

    void on_remote(std::string_view room, flk::server_message const& msg) override {
        remote.push_back({std::string(room), msg});
    }
    void on_evicted(std::string_view room, std::string_view user) override {
        evicted.emplace_back(std::string(room), std::string(user));
    }

    template <class M>
    std::vector<M> of(std::string_view room) const {
        std::vector<M> out;
        for (auto const& r : remote)
            if (r.room == room)
                if (auto const* m = std::get_if<M>(&r.msg)) out.push_back(*m);
        return out;
    }
    template <class M>
    std::size_t count(std::string_view room) const {
        return of<M>(room).size();
    }
    std::size_t evictions(std::string_view room, std::string_view user) const {
        return std::count_if(evicted.begin(), evicted.end(),
                             [&](auto const& e) { return e.first == room && e.second == user; });
    }
};

inline flk::redis_settings fast_settings() {
    flk::redis_settings s;
    s.connect_timeout = 2000ms;
    s.reconnect_min = 50ms;
    s.reconnect_max = 300ms;
    return s;
}

/// One flock instance's broker, with its recorder and its log lines.
struct instance {
    recorder ev;
    std::vector<std::string> logs;
    flk::options opts;
    flk::redis_broker broker;

    instance(asio::io_context& io, std::string const& url, std::chrono::seconds ttl = 30s,
             flk::redis_settings s = fast_settings())
        : opts(make_options(url, ttl, logs)), broker(io.get_executor(), opts, ev, std::move(s)) {}

    static flk::options make_options(std::string const& url, std::chrono::seconds ttl, std::vector<std::string>& logs) {
        flk::options o;
        o.redis_url = url;
        o.presence_ttl = ttl;
        o.log = flk::log_level::info;
        o.log_sink = [&logs](flk::log_level, std::string_view line) { logs.emplace_back(line); };
        return o;
    }

    std::size_t log_count(std::string_view needle) const {
        return std::count_if(logs.begin(), logs.end(),
                             [&](std::string const& l) { return l.find(needle) != std::string::npos; });
    }
    std::string all_logs() const {
        std::string s;
        for (auto const& l : logs) s += l + "\n";
        return s;
    }
};

inline void start_all(asio::io_context& io, std::vector<instance*> const& all) {
    for (auto* i : all) i->broker.start();
    BOOST_REQUIRE_MESSAGE(run_until(io, [&] { return std::all_of(all.begin(), all.end(), [](instance* i) {
                                                  return i->broker.connected();
                                              }); }),
                          "brokers did not connect: " + all.front()->broker.last_error());
}

/// What the core does for a join: subscribe first, join, and once joined
/// announce user:joined to the other instances. Waits for the answer.
inline flk::join_result join(asio::io_context& io, instance& i, std::string const& room, std::string const& user,
                             flk::metadata meta = {}, std::size_t capacity = 10) {
    i.broker.subscribe(room);
    std::optional<flk::join_result> res;
    i.broker.join({room, user, meta, capacity}, [&](flk::join_result r) { res = std::move(r); });
    BOOST_REQUIRE(run_until(io, [&] { return res.has_value(); }));
    if (res->outcome == flk::join_result::status::joined)
        i.broker.publish(room, flk::server::user_joined{room, user, std::move(meta)});
    return std::move(*res);
}

/// A room id no other test (or earlier run on an external server) uses, with
/// ':' in it, since ids may contain any character.
inline std::string unique_room(std::string_view what) {
    static std::mt19937_64 rng{std::random_device{}()};
    return "test:" + std::string(what) + ":" + std::to_string(rng() % 1000000000);
}

inline std::string presence(std::string const& room, std::string const& user) {
    return "flock:presence:" + room + ":" + user;
}
inline std::string cursor(std::string const& room, std::string const& user) {
    return "flock:cursor:" + room + ":" + user;
}
inline std::string members(std::string const& room) { return "flock:room:" + room + ":members"; }

inline bool is_member(redis_fixture::sync_client& c, std::string const& room, std::string const& user) {
    return c.command({"SISMEMBER", members(room), user}).integer == 1;
}

/// Restores notify-keyspace-events when a test that changed it ends.
struct keyspace_events_guard {
    redis_server& server;
    ~keyspace_events_guard() {
        try {
            server.client().command({"CONFIG", "SET", "notify-keyspace-events", "Ex"});
        } catch (...) {
        }
    }
};



BOOST_AUTO_TEST_SUITE(redis_broker)


BOOST_AUTO_TEST_CASE(publish_reaches_every_other_instance_exactly_once) {
    auto& srv = redis_server::shared();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url());
    auto b = std::make_unique<instance>(io, srv.url());
    auto c = std::make_unique<instance>(io, srv.url());
    start_all(io, {a.get(), b.get(), c.get()});
    BOOST_TEST(a->broker.instance_id() != b->broker.instance_id());
    BOOST_TEST(a->broker.instance_id().size() == 36u);
    BOOST_TEST(a->broker.instance_id()[14] == '4');  // UUID v4

    auto room = unique_room("publish");
    BOOST_TEST((join(io, *a, room, "a:1").outcome == flk::join_result::status::joined));
    BOOST_TEST((join(io, *b, room, "b:1").outcome == flk::join_result::status::joined));
    BOOST_TEST((join(io, *c, room, "c:1").outcome == flk::join_result::status::joined));

    a->broker.publish(room, flk::server::cursor_updated{room, "a:1", {0.5, 0.25}, 1234});
    BOOST_REQUIRE(run_until(io, [&] {
        return b->ev.count<flk::server::cursor_updated>(room) >= 1 && c->ev.count<flk::server::cursor_updated>(room) >= 1;
    }));
    // A marker from B: once A and C have it, anything A published before
    // has reached everyone it ever will.
    b->broker.publish(room, flk::server::cursor_removed{room, "b:1"});
    BOOST_REQUIRE(run_until(io, [&] {
        return a->ev.count<flk::server::cursor_removed>(room) == 1 && c->ev.count<flk::server::cursor_removed>(room) == 1;
    }));
    BOOST_TEST(a->ev.count<flk::server::cursor_updated>(room) == 0u);  // never our own
    BOOST_TEST(a->ev.count<flk::server::user_joined>(room) == 2u);  // b:1 and c:1, as the core announced them
    BOOST_TEST(c->ev.count<flk::server::user_joined>(room) == 0u);  // c:1 joined last
    BOOST_TEST(b->ev.count<flk::server::cursor_removed>(room) == 0u);
    BOOST_TEST(b->ev.count<flk::server::cursor_updated>(room) == 1u);
    BOOST_TEST(c->ev.count<flk::server::cursor_updated>(room) == 1u);
    auto m = b->ev.of<flk::server::cursor_updated>(room).front();
    BOOST_TEST(m.room_id == room);
    BOOST_TEST(m.user_id == "a:1");
    BOOST_TEST(m.pos.x == 0.5);
    BOOST_TEST(m.pos.y == 0.25);
    BOOST_TEST(m.timestamp == 1234);

    // Another room's traffic never leaks in; an unsubscribed room is quiet.
    auto other = unique_room("publish-other");
    a->broker.subscribe(other);
    c->broker.unsubscribe(room);
    a->broker.publish(room, flk::server::cursor_updated{room, "a:1", {0.1, 0.1}, 1});
    b->broker.publish(other, flk::server::presence_updated{other, "b:1", {{"k", 1}}});
    BOOST_REQUIRE(run_until(io, [&] { return b->ev.count<flk::server::cursor_updated>(room) == 2; }));
    BOOST_REQUIRE(run_until(io, [&] { return a->ev.count<flk::server::presence_updated>(other) == 1; }));
    BOOST_TEST(a->ev.count<flk::server::presence_updated>(room) == 0u);
    BOOST_TEST(c->ev.count<flk::server::cursor_updated>(room) == 1u);  // unsubscribed: no second one
}

BOOST_AUTO_TEST_CASE(join_snapshot_is_cluster_wide_and_follows_the_schema) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url());
    auto b = std::make_unique<instance>(io, srv.url());
    auto c = std::make_unique<instance>(io, srv.url());
    start_all(io, {a.get(), b.get(), c.get()});
    auto room = unique_room("snapshot");

    flk::metadata alice_meta{{"name", "Alice"}, {"color", "#f00"}};
    auto ra = join(io, *a, room, "alice", alice_meta);
    BOOST_REQUIRE((ra.outcome == flk::join_result::status::joined));
    BOOST_TEST(ra.others.empty());
    a->broker.set_cursor(room, "alice", {0.1, 0.2}, 99);
    BOOST_REQUIRE(run_until(io, [&] { return cli.exists(cursor(room, "alice")); }));

    // The schema of PROTOCOL.md, readable by a Node.js instance.
    BOOST_TEST(*cli.hget(cursor(room, "alice"), "x") == "0.1");
    BOOST_TEST(*cli.hget(cursor(room, "alice"), "y") == "0.2");
    BOOST_TEST(*cli.hget(cursor(room, "alice"), "timestamp") == "99");
    auto meta = boost::json::parse(*cli.hget(presence(room, "alice"), "metadata"));
    BOOST_TEST((meta == boost::json::value(alice_meta)));
    auto joined_at = std::stoll(*cli.hget(presence(room, "alice"), "joinedAt"));
    BOOST_TEST(joined_at > 1'600'000'000'000LL);
    BOOST_TEST(*cli.hget(presence(room, "alice"), "instance") == a->broker.instance_id());
    auto ttl = cli.command({"TTL", presence(room, "alice")}).integer;
    BOOST_TEST((ttl > 0 && ttl <= 30));
    BOOST_TEST(cli.command({"TTL", cursor(room, "alice")}).integer > 0);
    BOOST_TEST(is_member(cli, room, "alice"));

    auto rb = join(io, *b, room, "bob", {{"name", "Bob"}});
    BOOST_REQUIRE((rb.outcome == flk::join_result::status::joined));
    BOOST_REQUIRE(rb.others.size() == 1u);
    BOOST_TEST(rb.others[0].user_id == "alice");
    BOOST_TEST((rb.others[0].meta == alice_meta));
    BOOST_REQUIRE(rb.others[0].cursor.has_value());
    BOOST_TEST(rb.others[0].cursor->x == 0.1);
    BOOST_TEST(rb.others[0].cursor->y == 0.2);

    // A user written the way a Node.js instance writes one, and a stale set
    // entry (its presence expired, the set was never tidied).
    cli.command({"HSET", presence(room, "node:user"), "metadata", R"({"name":"Node"})", "joinedAt", "1"});
    cli.command({"EXPIRE", presence(room, "node:user"), "30"});
    cli.command({"SADD", members(room), "node:user", "ghost"});
    cli.command({"HSET", cursor(room, "node:user"), "x", "0.5", "y", "0.75", "timestamp", "1"});
    cli.command({"EXPIRE", cursor(room, "node:user"), "30"});

    auto rc = join(io, *c, room, "carol");
    BOOST_REQUIRE((rc.outcome == flk::join_result::status::joined));
    std::vector<std::string> ids;
    for (auto const& m : rc.others) ids.push_back(m.user_id);
    std::sort(ids.begin(), ids.end());
    BOOST_TEST((ids == std::vector<std::string>{"alice", "bob", "node:user"}));
    for (auto const& m : rc.others) {
        if (m.user_id == "node:user") {
            BOOST_TEST((m.meta == flk::metadata{{"name", "Node"}}));
            BOOST_REQUIRE(m.cursor.has_value());
            BOOST_TEST(m.cursor->y == 0.75);
        }
        if (m.user_id == "bob") BOOST_TEST(!m.cursor.has_value());
    }
    BOOST_TEST(!is_member(cli, room, "ghost"));  // tidied

    // An envelope from a Node.js instance reaches every flock instance; junk does not.
    cli.command({"PUBLISH", "flock:broadcast:" + room, "not json"});
    cli.command({"PUBLISH", "flock:broadcast:" + room, R"({"instanceId":"x","message":{"type":"nope"}})"});
    cli.command({"PUBLISH", "flock:broadcast:" + room,
                 R"({"instanceId":"node-1","message":{"type":"presence:updated","roomId":")" + room +
                     R"(","userId":"node:user","metadata":{"status":"away"}}})"});
    BOOST_REQUIRE(run_until(io, [&] {
        return a->ev.count<flk::server::presence_updated>(room) == 1 &&
               b->ev.count<flk::server::presence_updated>(room) == 1 &&
               c->ev.count<flk::server::presence_updated>(room) == 1;
    }));
    BOOST_TEST((a->ev.of<flk::server::presence_updated>(room)[0].patch == flk::metadata{{"status", "away"}}));

    // set_metadata replaces the stored object; a leave removes every key at once.
    b->broker.set_metadata(room, "bob", {{"name", "Bobby"}});
    b->broker.set_cursor(room, "bob", {0.3, 0.3}, 5);
    BOOST_REQUIRE(run_until(io, [&] { return cli.exists(cursor(room, "bob")); }));
    BOOST_TEST((boost::json::parse(*cli.hget(presence(room, "bob"), "metadata")) ==
                boost::json::value(flk::metadata{{"name", "Bobby"}})));
    b->broker.clear_cursor(room, "bob");
    BOOST_REQUIRE(run_until(io, [&] { return !cli.exists(cursor(room, "bob")); }));
    a->broker.leave(room, "alice");
    BOOST_REQUIRE(run_until(io, [&] { return !cli.exists(presence(room, "alice")); }));
    BOOST_TEST(!cli.exists(cursor(room, "alice")));
    BOOST_TEST(!is_member(cli, room, "alice"));

    boost::json::object health;
    a->broker.health(health);
    BOOST_TEST(health.at("redis").as_string() == "up");
}

BOOST_AUTO_TEST_CASE(capacity_holds_across_instances_under_racing_joins) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url());
    auto b = std::make_unique<instance>(io, srv.url());
    start_all(io, {a.get(), b.get()});

    for (int round = 0; round < 20; ++round) {
        auto room = unique_room("capacity");
        a->broker.subscribe(room);
        b->broker.subscribe(room);
        std::optional<flk::join_result> ra, rb;
        a->broker.join({room, "ann", {}, 1}, [&](flk::join_result r) { ra = std::move(r); });
        b->broker.join({room, "ben", {}, 1}, [&](flk::join_result r) { rb = std::move(r); });
        BOOST_REQUIRE(run_until(io, [&] { return ra && rb; }));
        using st = flk::join_result::status;
        int joined = (ra->outcome == st::joined) + (rb->outcome == st::joined);
        int full = (ra->outcome == st::room_full) + (rb->outcome == st::room_full);
        BOOST_TEST(joined == 1);
        BOOST_TEST(full == 1);
        auto loser = ra->outcome == st::joined ? "ben" : "ann";
        auto winner = ra->outcome == st::joined ? "ann" : "ben";
        BOOST_TEST(!cli.exists(presence(room, loser)));
        BOOST_TEST(!is_member(cli, room, loser));

        if (round == 0) {
            // A user already present is always admitted, even into a full room.
            auto& w = ra->outcome == st::joined ? *a : *b;
            BOOST_TEST((join(io, w, room, winner, {}, 1).outcome == st::joined));
            auto& l = ra->outcome == st::joined ? *b : *a;
            BOOST_TEST((join(io, l, room, winner, {}, 1).outcome == st::joined));  // same user, other instance
            BOOST_TEST((join(io, l, room, loser, {}, 1).outcome == st::room_full));
        }
        a->broker.leave(room, "ann");
        b->broker.leave(room, "ben");
        a->broker.unsubscribe(room);
        b->broker.unsubscribe(room);
    }
}

// A user who joins again (a second tab, a reconnect) gets a fresh presence TTL:
// the join script writes EXPIRE every time, not only for a new member.
// Time passing is simulated by shortening the TTL in Redis, not by waiting.
BOOST_AUTO_TEST_CASE(rejoin_refreshes_the_presence_ttl) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url(), 30s);
    auto b = std::make_unique<instance>(io, srv.url(), 30s);
    start_all(io, {a.get(), b.get()});
    auto room = unique_room("rejoin");
    BOOST_REQUIRE((join(io, *a, room, "ann").outcome == flk::join_result::status::joined));
    BOOST_REQUIRE(cli.command({"TTL", presence(room, "ann")}).integer > 5);
    for (auto* again : {a.get(), b.get()}) {  // on the same instance, then on another
        // As if 27 of the 30 s had passed without a heartbeat.
        BOOST_REQUIRE(cli.command({"EXPIRE", presence(room, "ann"), "3"}).integer == 1);
        BOOST_REQUIRE((join(io, *again, room, "ann").outcome == flk::join_result::status::joined));
        auto const ttl = cli.command({"TTL", presence(room, "ann")}).integer;
        BOOST_TEST((ttl > 3 && ttl <= 30), "TTL after a re-join: " << ttl);
        BOOST_TEST(is_member(cli, room, "ann"));
    }
}

BOOST_AUTO_TEST_CASE(idle_user_is_evicted_on_every_subscribed_instance) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url(), 1s);
    auto b = std::make_unique<instance>(io, srv.url(), 1s);
    auto c = std::make_unique<instance>(io, srv.url(), 1s);
    start_all(io, {a.get(), b.get(), c.get()});
    auto room = unique_room("ttl");  // holds ':' on purpose
    c->broker.subscribe(room);  // a follower with no member of its own

    BOOST_REQUIRE((join(io, *a, room, "idle:user").outcome == flk::join_result::status::joined));
    a->broker.set_cursor(room, "idle:user", {0.5, 0.5}, 1);
    BOOST_REQUIRE((join(io, *b, room, "bob").outcome == flk::join_result::status::joined));
    heartbeat hb(io, [&] { b->broker.touch(room, "bob"); });

    BOOST_REQUIRE_MESSAGE(run_until(io, [&] {
        return a->ev.evictions(room, "idle:user") >= 1 && b->ev.evictions(room, "idle:user") >= 1 &&
               c->ev.evictions(room, "idle:user") >= 1;
    }, 6000ms), "eviction not reported everywhere");
    BOOST_TEST(!cli.exists(presence(room, "idle:user")));
    BOOST_REQUIRE(run_until(io, [&] { return !cli.exists(cursor(room, "idle:user")); }));  // its own TTL
    // A sweep tidies the set entry the expiry left behind.
    BOOST_REQUIRE(run_until(io, [&] { return !is_member(cli, room, "idle:user"); }, 10000ms));
    for (auto* i : {a.get(), b.get(), c.get()}) {
        BOOST_TEST(i->ev.evictions(room, "idle:user") == 1u);
        BOOST_TEST(i->ev.evictions(room, "bob") == 0u);
        BOOST_TEST(i->ev.count<flk::server::user_left>(room) == 0u);  // evictions are never republished
    }
    BOOST_TEST(cli.exists(presence(room, "bob")));

    // A Node.js instance republishes evictions as user:left (the reference's
    // duplicate): dropped, the user is already gone here. A marker published
    // after it on the same connection shows it was processed.
    cli.command({"PUBLISH", "flock:broadcast:" + room,
                 R"({"instanceId":"node-1","message":{"type":"user:left","roomId":")" + room +
                     R"(","userId":"idle:user"}})"});
    cli.command({"PUBLISH", "flock:broadcast:" + room,
                 R"({"instanceId":"node-1","message":{"type":"cursor:removed","roomId":")" + room +
                     R"(","userId":"marker"}})"});
    BOOST_REQUIRE(run_until(io, [&] { return c->ev.count<flk::server::cursor_removed>(room) == 1; }));
    for (auto* i : {a.get(), b.get(), c.get()}) BOOST_TEST(i->ev.count<flk::server::user_left>(room) == 0u);
}

BOOST_AUTO_TEST_CASE(expired_events_alone_evict_in_the_selected_database) {
    auto& srv = redis_server::shared();
    asio::io_context io;
    auto s = fast_settings();
    s.sweep_interval = std::chrono::hours(1);  // no safety net: the events must do it
    auto a = std::make_unique<instance>(io, srv.url(5), 1s, s);
    auto b = std::make_unique<instance>(io, srv.url(5), 1s, s);
    start_all(io, {a.get(), b.get()});
    auto room = unique_room("db5");
    BOOST_REQUIRE((join(io, *a, room, "gone:soon").outcome == flk::join_result::status::joined));
    BOOST_REQUIRE((join(io, *b, room, "bob").outcome == flk::join_result::status::joined));
    heartbeat hb(io, [&] { b->broker.touch(room, "bob"); });
    auto cli5 = srv.client(5);
    BOOST_TEST(cli5.exists(presence(room, "gone:soon")));
    BOOST_REQUIRE(run_until(io, [&] {
        return a->ev.evictions(room, "gone:soon") == 1 && b->ev.evictions(room, "gone:soon") == 1;
    }, 5000ms));
    BOOST_TEST(!cli5.exists(presence(room, "gone:soon")));
    BOOST_TEST(b->ev.evictions(room, "bob") == 0u);
}

BOOST_AUTO_TEST_CASE(a_member_missed_while_disconnected_is_healed_by_the_sweep) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto s = fast_settings();
    s.sweep_interval = 200ms;
    auto b = std::make_unique<instance>(io, srv.url(), 30s, s);
    start_all(io, {b.get()});
    auto room = unique_room("heal");
    BOOST_REQUIRE((join(io, *b, room, "bob").outcome == flk::join_result::status::joined));

    // zoe joined on another instance while B was away: her user:joined never came.
    cli.command({"HSET", presence(room, "zoe"), "metadata", R"({"name":"Zoe"})", "joinedAt", "1", "instance", "x"});
    cli.command({"EXPIRE", presence(room, "zoe"), "30"});
    cli.command({"HSET", cursor(room, "zoe"), "x", "0.25", "y", "0.5", "timestamp", "1"});
    cli.command({"EXPIRE", cursor(room, "zoe"), "30"});
    cli.command({"SADD", members(room), "zoe"});
    BOOST_REQUIRE(run_until(io, [&] { return b->ev.count<flk::server::user_joined>(room) == 1; }, 10000ms));
    auto j = b->ev.of<flk::server::user_joined>(room)[0];
    BOOST_TEST(j.user_id == "zoe");
    BOOST_TEST((j.meta == flk::metadata{{"name", "Zoe"}}));
    BOOST_REQUIRE(b->ev.count<flk::server::cursor_updated>(room) == 1u);
    BOOST_TEST(b->ev.of<flk::server::cursor_updated>(room)[0].pos.x == 0.25);

    // ...and her leaving unannounced (keys deleted, no event) is seen too.
    cli.command({"DEL", presence(room, "zoe"), cursor(room, "zoe")});
    BOOST_REQUIRE(run_until(io, [&] { return b->ev.evictions(room, "zoe") == 1; }, 10000ms));
    BOOST_TEST(b->ev.count<flk::server::user_joined>(room) == 1u);
    BOOST_TEST(b->ev.evictions(room, "bob") == 0u);
}

BOOST_AUTO_TEST_CASE(sweep_evicts_when_expired_events_are_missing) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    keyspace_events_guard restore{srv};
    cli.command({"CONFIG", "SET", "notify-keyspace-events", ""});
    asio::io_context io;
    auto s = fast_settings();
    s.enable_keyspace_events = false;  // leave the server as the test set it
    auto a = std::make_unique<instance>(io, srv.url(), 1s, s);
    auto b = std::make_unique<instance>(io, srv.url(), 1s, s);
    start_all(io, {a.get(), b.get()});
    BOOST_REQUIRE(run_until(io, [&] { return a->log_count("expired-key events are off") == 1; }));
    BOOST_TEST((a->broker.sweep_interval() == 1000ms));

    auto room = unique_room("sweep");
    BOOST_REQUIRE((join(io, *a, room, "quiet").outcome == flk::join_result::status::joined));
    BOOST_REQUIRE((join(io, *b, room, "bob").outcome == flk::join_result::status::joined));
    heartbeat hb(io, [&] { b->broker.touch(room, "bob"); });
    // TTL 1 s + sweep every 1 s: gone within about 2 s, everywhere.
    BOOST_REQUIRE_MESSAGE(run_until(io, [&] {
        return a->ev.evictions(room, "quiet") == 1 && b->ev.evictions(room, "quiet") == 1;
    }, 5000ms), "the sweep did not evict");
    BOOST_TEST(!is_member(cli, room, "quiet"));
    BOOST_TEST(b->ev.evictions(room, "bob") == 0u);
}

BOOST_AUTO_TEST_CASE(broker_turns_expired_events_on) {
    // A private server: the test reconfigures it, which it must not do to a shared one.
    auto srv = redis_server::spawn_or_skip("redis_broker/broker_turns_expired_events_on");
    if (!srv) return;
    auto cli = srv->client();
    cli.command({"CONFIG", "SET", "notify-keyspace-events", "K$"});
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv->url());
    start_all(io, {a.get()});
    BOOST_REQUIRE(run_until(io, [&] { return a->log_count("enabled redis expired-key events") == 1; }));
    auto flags = cli.command({"CONFIG", "GET", "notify-keyspace-events"}).elements.at(1).str;
    BOOST_TEST(flags.find('E') != std::string::npos);
    BOOST_TEST(flags.find('x') != std::string::npos);
    BOOST_TEST(flags.find('K') != std::string::npos);  // what was on stays on
}

BOOST_AUTO_TEST_CASE(stale_owner_leaving_keeps_the_live_users_presence) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url());
    auto b = std::make_unique<instance>(io, srv.url());
    auto c = std::make_unique<instance>(io, srv.url());
    start_all(io, {a.get(), b.get(), c.get()});
    auto room = unique_room("owner");

    BOOST_REQUIRE((join(io, *a, room, "dana").outcome == flk::join_result::status::joined));
    c->broker.subscribe(room);
    BOOST_REQUIRE((join(io, *c, room, "carl").outcome == flk::join_result::status::joined));
    // dana refreshes her tab and lands on instance B; A's socket is stale.
    auto rb = join(io, *b, room, "dana");
    BOOST_REQUIRE((rb.outcome == flk::join_result::status::joined));
    BOOST_TEST(rb.others.size() == 1u);  // carl; never herself
    BOOST_TEST(*cli.hget(presence(room, "dana"), "instance") == b->broker.instance_id());

    // The stale socket closes on A: the core announces and leaves, in that order.
    a->broker.publish(room, flk::server::user_left{room, "dana"});
    a->broker.leave(room, "dana");
    a->broker.publish(room, flk::server::cursor_removed{room, "marker"});  // after A's commands
    BOOST_REQUIRE(run_until(io, [&] { return c->ev.count<flk::server::cursor_removed>(room) == 1; }));
    BOOST_TEST(c->ev.count<flk::server::user_left>(room) == 0u);  // not announced
    BOOST_TEST(cli.exists(presence(room, "dana")));
    BOOST_TEST(is_member(cli, room, "dana"));

    // The live owner leaving does remove her, and is announced.
    b->broker.publish(room, flk::server::user_left{room, "dana"});
    b->broker.leave(room, "dana");
    BOOST_REQUIRE(run_until(io, [&] { return c->ev.count<flk::server::user_left>(room) == 1; }));
    BOOST_REQUIRE(run_until(io, [&] { return !cli.exists(presence(room, "dana")); }));
    BOOST_TEST(!is_member(cli, room, "dana"));
}

BOOST_AUTO_TEST_CASE(survives_redis_restart_and_restores_the_cluster_view) {
    auto srv = redis_server::spawn_or_skip("redis_broker/survives_redis_restart_and_restores_the_cluster_view");
    if (!srv) return;
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv->url());
    auto b = std::make_unique<instance>(io, srv->url());
    start_all(io, {a.get(), b.get()});
    auto room = unique_room("restart");
    BOOST_REQUIRE((join(io, *a, room, "alice", {{"name", "Alice"}}).outcome == flk::join_result::status::joined));
    BOOST_REQUIRE((join(io, *b, room, "bob").outcome == flk::join_result::status::joined));
    a->broker.set_cursor(room, "alice", {0.7, 0.8}, 7);
    {
        auto cli = srv->client();
        BOOST_REQUIRE(run_until(io, [&] { return cli.exists(cursor(room, "alice")); }));
    }

    srv->kill();
    BOOST_REQUIRE(run_until(io, [&] { return !a->broker.connected() && !b->broker.connected(); }));
    boost::json::object health;
    a->broker.health(health);
    BOOST_TEST(health.at("redis").as_string() == "down");
    // The loss, or a reconnect attempt refused since.
    BOOST_TEST((a->broker.last_error_code() == flk::redis_errc::connection_lost ||
                a->broker.last_error_code() == flk::redis_errc::connect_failed),
               a->broker.last_error_code().message());

    // While down: joins fail at once (answered while Redis is still down, not
    // held until it returns), writes are dropped, nothing crashes.
    std::optional<flk::join_result> r;
    a->broker.join({room, "late", {}, 10}, [&](flk::join_result res) { r = std::move(res); });
    BOOST_REQUIRE(run_until(io, [&] { return r.has_value(); }));
    BOOST_TEST((r->outcome == flk::join_result::status::failed));
    BOOST_TEST(!a->broker.connected());
    a->broker.publish(room, flk::server::cursor_updated{room, "alice", {0.9, 0.1}, 8});
    a->broker.set_cursor(room, "alice", {0.9, 0.1}, 8);
    a->broker.set_metadata(room, "alice", {{"name", "Alice 2"}});
    a->broker.touch(room, "alice");
    // Let a few reconnect attempts fail.
    BOOST_REQUIRE(run_until(io, [&] { return a->log_count("redis unavailable") + a->log_count("cannot connect") >= 1; }));

    srv->restart();  // empty: the data is gone
    BOOST_REQUIRE_MESSAGE(run_until(io, [&] { return a->broker.connected() && b->broker.connected(); }, 10000ms),
                          a->all_logs());
    BOOST_TEST(!a->broker.last_error_code());
    auto cli = srv->client();
    BOOST_REQUIRE(run_until(io, [&] {
        return cli.exists(presence(room, "alice")) && cli.exists(presence(room, "bob")) &&
               cli.exists(cursor(room, "alice"));
    }));
    BOOST_TEST((boost::json::parse(*cli.hget(presence(room, "alice"), "metadata")) ==
                boost::json::value(flk::metadata{{"name", "Alice 2"}})));
    BOOST_TEST(*cli.hget(cursor(room, "alice"), "x") == "0.9");
    BOOST_TEST(is_member(cli, room, "alice"));
    BOOST_TEST(is_member(cli, room, "bob"));
    BOOST_TEST(cli.command({"TTL", presence(room, "alice")}).integer > 0);

    // Subscriptions are back, both ways.
    b->broker.publish(room, flk::server::cursor_updated{room, "bob", {0.2, 0.2}, 9});
    a->broker.publish(room, flk::server::cursor_updated{room, "alice", {0.4, 0.4}, 10});
    BOOST_REQUIRE(run_until(io, [&] {
        return a->ev.count<flk::server::cursor_updated>(room) == 1 && b->ev.count<flk::server::cursor_updated>(room) == 1;
    }));
    auto rc = join(io, *a, room, "carol");
    BOOST_REQUIRE((rc.outcome == flk::join_result::status::joined));
    BOOST_TEST(rc.others.size() == 2u);

    // Logged once each, not per attempt; no eviction of anyone still connected.
    BOOST_TEST(a->log_count("redis connection lost") == 1u);
    BOOST_TEST(a->log_count("redis reconnected") == 1u);
    BOOST_TEST(a->log_count("redis unavailable") <= 1u);
    BOOST_TEST(a->ev.evicted.empty());
    BOOST_TEST(b->ev.evicted.empty());
    a->broker.health(health);
    BOOST_TEST(health.at("redis").as_string() == "up");
}

BOOST_AUTO_TEST_CASE(authentication_errors_are_clear_and_do_not_hang) {
    auto srv = redis_server::spawn_or_skip("redis_broker/authentication_errors_are_clear_and_do_not_hang",
                                           {"--requirepass", "s3cret"});
    if (!srv) return;
    auto port = std::to_string(srv->port());
    srv->client().command({"ACL", "SETUSER", "flockuser", "on", ">pw", "~*", "&*", "+@all"});
    asio::io_context io;

    auto expect_error = [&](std::string const& url, std::string const& needle) {
        using flk::redis_errc;
        auto i = std::make_unique<instance>(io, url);
        i->broker.start();
        // start() does not wait: nothing is known until the loop runs.
        BOOST_TEST(i->broker.last_error().empty());
        BOOST_TEST(!i->broker.connected());
        BOOST_REQUIRE_MESSAGE(run_until(io, [&] { return !i->broker.last_error().empty(); }, 3000ms), url);
        BOOST_TEST(!i->broker.connected());
        BOOST_TEST_MESSAGE(i->broker.last_error());
        BOOST_TEST(i->broker.last_error().find(needle) != std::string::npos, i->broker.last_error());
        BOOST_TEST((i->broker.last_error_code() == redis_errc::auth_failed), i->broker.last_error_code().message());
        BOOST_TEST(i->log_count("level=error msg=\"cannot connect to redis") == 1u, i->all_logs());
        BOOST_TEST(i->all_logs().find("s3cret") == std::string::npos);  // never log the password
        BOOST_TEST(i->all_logs().find("wrong") == std::string::npos);
    };
    expect_error("redis://:wrong@127.0.0.1:" + port, "authentication failed");
    expect_error("redis://flockuser:wrong@127.0.0.1:" + port, "authentication failed for user 'flockuser'");
    expect_error("redis://127.0.0.1:" + port, "requires a password");

    // The right password, an ACL user, and a database other than 0.
    auto ok = std::make_unique<instance>(io, "redis://:s3cret@127.0.0.1:" + port + "/2");
    auto acl = std::make_unique<instance>(io, "redis://flockuser:pw@127.0.0.1:" + port + "/2");
    start_all(io, {ok.get(), acl.get()});
    auto room = unique_room("db");
    BOOST_REQUIRE((join(io, *ok, room, "u").outcome == flk::join_result::status::joined));
    auto r = join(io, *acl, room, "v");
    BOOST_TEST(r.others.size() == 1u);
    auto cli2 = redis_fixture::sync_client("127.0.0.1", srv->port(), std::string("s3cret"), 2);
    BOOST_TEST(cli2.exists(presence(room, "u")));
    BOOST_TEST(!srv->client().exists(presence(room, "u")));  // not in db 0
}

BOOST_AUTO_TEST_CASE(unreachable_redis_gives_a_clear_error_and_does_not_hang) {
    asio::io_context io;
    auto s = fast_settings();
    s.connect_timeout = 500ms;
    auto refused = std::make_unique<instance>(io, "redis://127.0.0.1:" + std::to_string(redis_fixture::free_port()),
                                              30s, s);
    // A port that accepts connections and never says a word.
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto blackhole = std::make_unique<instance>(
        io, "redis://127.0.0.1:" + std::to_string(silent.local_endpoint().port()), 30s, s);
    auto unknown = std::make_unique<instance>(io, "redis://no-such-host.invalid:6379", 30s, s);
    for (auto* i : {refused.get(), blackhole.get(), unknown.get()}) i->broker.start();
    BOOST_REQUIRE(run_until(io, [&] {
        return !refused->broker.last_error().empty() && !blackhole->broker.last_error().empty() &&
               !unknown->broker.last_error().empty();
    }, 10000ms));
    BOOST_TEST_MESSAGE(refused->broker.last_error());
    BOOST_TEST_MESSAGE(blackhole->broker.last_error());
    BOOST_TEST_MESSAGE(unknown->broker.last_error());
    BOOST_TEST(refused->broker.last_error().find("cannot connect to redis://127.0.0.1:") != std::string::npos);
    BOOST_TEST(blackhole->broker.last_error().find("timed out after 500 ms") != std::string::npos);
    BOOST_TEST((unknown->broker.last_error().find("cannot resolve no-such-host.invalid") != std::string::npos ||
                unknown->broker.last_error().find("timed out") != std::string::npos));
    // The same causes as codes (what a program decides on).
    BOOST_TEST((refused->broker.last_error_code() == flk::redis_errc::connect_failed));
    BOOST_TEST((blackhole->broker.last_error_code() == flk::redis_errc::connect_timeout));
    BOOST_TEST((unknown->broker.last_error_code() == flk::redis_errc::resolve_failed ||
                unknown->broker.last_error_code() == flk::redis_errc::connect_timeout));

    // Joins fail at once; stop completes although Redis was never reached.
    std::optional<flk::join_result> r;
    refused->broker.join({"r", "u", {}, 10}, [&](flk::join_result res) { r = std::move(res); });
    BOOST_REQUIRE(run_until(io, [&] { return r.has_value(); }, 10000ms));
    BOOST_TEST((r->outcome == flk::join_result::status::failed));
    int stopped = 0;
    for (auto* i : {refused.get(), blackhole.get(), unknown.get()}) i->broker.stop([&] { ++stopped; });
    BOOST_REQUIRE(run_until(io, [&] { return stopped == 3; }, 10000ms));
    // Retries went on quietly: one error line per instance.
    BOOST_TEST(refused->log_count("level=error") == 1u, refused->all_logs());
}

BOOST_AUTO_TEST_CASE(stop_removes_and_announces_remaining_users) {
    auto& srv = redis_server::shared();
    auto cli = srv.client();
    asio::io_context io;
    auto a = std::make_unique<instance>(io, srv.url());
    auto b = std::make_unique<instance>(io, srv.url());
    start_all(io, {a.get(), b.get()});
    auto room = unique_room("stop");
    BOOST_REQUIRE((join(io, *a, room, "alice").outcome == flk::join_result::status::joined));
    BOOST_REQUIRE((join(io, *b, room, "bob").outcome == flk::join_result::status::joined));
    bool done = false;
    a->broker.stop([&] { done = true; });
    BOOST_REQUIRE(run_until(io, [&] { return done; }));
    BOOST_TEST(!cli.exists(presence(room, "alice")));
    BOOST_TEST(!is_member(cli, room, "alice"));
    BOOST_REQUIRE(run_until(io, [&] { return b->ev.count<flk::server::user_left>(room) == 1; }));
    BOOST_TEST(b->ev.of<flk::server::user_left>(room)[0].user_id == "alice");
    BOOST_TEST(!a->broker.connected());
    std::optional<flk::join_result> r;
    a->broker.join({room, "x", {}, 10}, [&](flk::join_result res) { r = std::move(res); });
    BOOST_REQUIRE(run_until(io, [&] { return r.has_value(); }));
    BOOST_TEST((r->outcome == flk::join_result::status::failed));
    BOOST_TEST(cli.exists(presence(room, "bob")));
}

BOOST_AUTO_TEST_CASE(tls_with_certificate_verification) {
    namespace fs = std::filesystem;
    auto dir = fs::temp_directory_path() / ("flock-redis-tls-" + std::to_string(::getpid()));
    if (!flk_test::prerequisite(redis_fixture::make_test_certificates(dir),
                                "redis_broker/tls_with_certificate_verification",
                                "openssl cannot make test certificates"))
        return;
    auto d = dir.string();
    auto srv = redis_server::spawn_or_skip("redis_broker/tls_with_certificate_verification (redis-server with TLS)",
                                           {"--tls-cert-file", d + "/server.crt", "--tls-key-file",
                                            d + "/server.key", "--tls-ca-cert-file", d + "/ca.crt",
                                            "--tls-auth-clients", "no"},
                                           true);
    if (!srv) return;
    auto port = std::to_string(srv->port());
    asio::io_context io;
    auto s = fast_settings();
    s.ca_file = d + "/ca.crt";
    auto by_name = std::make_unique<instance>(io, "rediss://localhost:" + port, 30s, s);
    auto by_ip = std::make_unique<instance>(io, "rediss://127.0.0.1:" + port, 30s, s);
    start_all(io, {by_name.get(), by_ip.get()});
    auto room = unique_room("tls");
    BOOST_REQUIRE((join(io, *by_name, room, "t1").outcome == flk::join_result::status::joined));
    auto r = join(io, *by_ip, room, "t2");
    BOOST_TEST(r.others.size() == 1u);
    by_name->broker.publish(room, flk::server::user_left{room, "t1"});
    BOOST_REQUIRE(run_until(io, [&] { return by_ip->ev.count<flk::server::user_left>(room) == 1; }));

    // Without our CA the server is not trusted: a clear error, no connection.
    auto untrusted = std::make_unique<instance>(io, "rediss://localhost:" + port, 30s, fast_settings());
    untrusted->broker.start();
    BOOST_REQUIRE(run_until(io, [&] { return !untrusted->broker.last_error().empty(); }, 10000ms));
    BOOST_TEST_MESSAGE(untrusted->broker.last_error());
    BOOST_TEST(untrusted->broker.last_error().find("TLS handshake") != std::string::npos);
    BOOST_TEST(untrusted->broker.last_error().find("certificate") != std::string::npos);
    BOOST_TEST((untrusted->broker.last_error_code() == flk::redis_errc::tls_failed));
    BOOST_TEST(!untrusted->broker.connected());

    // Plain RESP to a TLS port fails (and says so) rather than hanging.
    auto plain = std::make_unique<instance>(io, "redis://127.0.0.1:" + port, 30s, [] {
        auto p = fast_settings();
        p.connect_timeout = 500ms;
        return p;
    }());
    plain->broker.start();
    BOOST_REQUIRE(run_until(io, [&] { return !plain->broker.last_error().empty(); }, 10000ms));
    BOOST_TEST_MESSAGE(plain->broker.last_error());
    BOOST_TEST(plain->broker.last_error().find("handshake with redis://127.0.0.1:" + port) != std::string::npos);
    BOOST_TEST((plain->broker.last_error_code() == flk::redis_errc::handshake_failed));
    std::error_code ec;
    fs::remove_all(dir, ec);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_broker_test
