// The Redis Cluster client (include/flock/detail/redis/cluster/client.hpp)
// against a real local cluster of 3 masters and 3 replicas started by the
// fixture (redis_cluster_fixture.hpp): routing, MOVED/ASK during a slot
// migration, sharded pub/sub across masters, per-master expiry events, and a
// master killed with SIGKILL. The broker on it: redis_cluster_broker_test.cpp.
#include <boost/test/unit_test.hpp>

#include <flock/detail/redis/cluster/client.hpp>

#include "redis_cluster_fixture.hpp"
#include "redis_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace redis_cluster_client_test {

namespace asio = boost::asio;
namespace cl = flk::detail::redis::cluster;
using flk::detail::redis::reply;
using cluster_fixture::local_cluster;
using redis_fixture::run_until;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// The cluster most tests share (the failover test starts its own).
struct client_tests {};
local_cluster* shared_cluster(std::string_view test) { return cluster_fixture::shared_cluster<client_tests>(test); }

std::shared_ptr<cl::client> make_client(asio::io_context& io, std::string const& url) {
    auto u = flk::detail::redis::parse_url(url);
    cl::client_config cfg;
    cfg.connection.connect_timeout = 2000ms;
    return std::make_shared<cl::client>(io.get_executor(), nullptr, u, cfg);
}

/// Starts `c`; true when it found a cluster and loaded the map.
bool start(asio::io_context& io, cl::client& c) {
    std::optional<std::pair<std::string, bool>> result;
    c.async_start([&](std::string const& err, bool is_cluster) { result.emplace(err, is_cluster); });
    BOOST_REQUIRE(run_until(io, [&] { return result.has_value(); }, 10s));
    BOOST_TEST(result->first == "");
    BOOST_TEST(result->second);
    return result->first.empty() && result->second;
}

/// A key (or channel) of the form `prefix{tag-i}suffix` whose slot `want` accepts.
template <class F>
std::string find_key(std::string const& prefix, std::string const& suffix, F want) {
    for (int i = 0;; ++i) {
        auto k = prefix + "{t" + std::to_string(i) + "}" + suffix;
        if (want(cl::key_slot(k))) return k;
    }
}

BOOST_AUTO_TEST_SUITE(redis_cluster_client)

BOOST_AUTO_TEST_CASE(a_redis_without_cluster_support_is_detected) {
    auto& r = redis_fixture::redis_server::shared();
    asio::io_context io;
    auto c = make_client(io, r.url());
    std::optional<std::pair<std::string, bool>> result;
    c->async_start([&](std::string const& err, bool is_cluster) { result.emplace(err, is_cluster); });
    BOOST_REQUIRE(run_until(io, [&] { return result.has_value(); }, 5s));
    BOOST_TEST(result->first == "");
    BOOST_TEST(!result->second);  // the caller keeps its single-Redis mode
    c->close();
}

BOOST_AUTO_TEST_CASE(slots_match_redis_and_commands_reach_their_masters) {
    auto* cluster = shared_cluster("cluster routing test");
    if (!cluster) return;
    // CRC16 and hash tags agree with CLUSTER KEYSLOT.
    auto sc = cluster->client(cluster->nodes().front().port);
    for (std::string k : {"foo", "bar", "{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}",
                          "foo{bar}{zap}", "flock:room:{lobby}:members", "", "{}", "}{", "a{b}c"})
        BOOST_TEST(cl::key_slot(k) == sc.command({"CLUSTER", "KEYSLOT", k}).integer, k);
    for (int i = 0; i < 200; ++i) {
        auto k = "key:" + std::to_string(i * 7919);
        BOOST_TEST(cl::key_slot(k) == sc.command({"CLUSTER", "KEYSLOT", k}).integer, k);
    }

    asio::io_context io;
    auto c = make_client(io, cluster->seed_url());
    if (!start(io, *c)) return;
    BOOST_TEST(c->map().complete());
    BOOST_TEST(c->map().masters().size() == 3u);

    // Four keys per master, all sent in one go (pipelined per master).
    std::map<int, std::vector<std::string>> by_master;
    for (int i = 0; by_master.size() < 3 || std::any_of(by_master.begin(), by_master.end(),
                                                         [](auto const& e) { return e.second.size() < 4; });
         ++i) {
        auto k = "route:" + std::to_string(i);
        auto& v = by_master[cluster->master_port(cl::key_slot(k))];
        if (v.size() < 4) v.push_back(k);
    }
    int ok = 0, sent = 0;
    for (auto const& [port, keys] : by_master)
        for (auto const& k : keys) {
            ++sent;
            c->send(k, {"SET", k, "v-" + k}, [&](reply&& r) { ok += r.str == "OK"; });
        }
    BOOST_REQUIRE(run_until(io, [&] { return ok == sent; }, 5s));
    BOOST_TEST(c->command_connections() == 3u);  // one per master
    // Each key is on the master the routing chose: that node serves it
    // (any other would answer MOVED).
    for (auto const& [port, keys] : by_master) {
        auto m = cluster->client(port);
        for (auto const& k : keys) BOOST_TEST(m.command({"GET", k}).str == "v-" + k);
    }

    // A script on a key's master: EVAL when that node lacks it, then EVALSHA.
    static flk::detail::redis::script const script("cluster-test", "return {KEYS[1], ARGV[1], 'cluster-test'}");
    std::vector<reply> answers;
    auto key = by_master.begin()->second.front();
    c->eval(script, {key}, {"a"}, [&](reply&& r) { answers.push_back(std::move(r)); });
    BOOST_REQUIRE(run_until(io, [&] { return answers.size() == 1; }, 5s));
    c->eval(script, {key}, {"b"}, [&](reply&& r) { answers.push_back(std::move(r)); });
    BOOST_REQUIRE(run_until(io, [&] { return answers.size() == 2; }, 5s));
    for (auto const& [r, arg] : {std::pair{&answers[0], "a"}, std::pair{&answers[1], "b"}}) {
        BOOST_REQUIRE(r->elements.size() == 3u);
        BOOST_TEST(r->elements[0].str == key);
        BOOST_TEST(r->elements[1].str == arg);
    }
    BOOST_TEST(cluster->client(by_master.begin()->first).command({"SCRIPT", "EXISTS", script.sha1}).elements.at(0)
                   .integer == 1);
    c->close();
}

BOOST_AUTO_TEST_CASE(start_errors_are_reported) {
    asio::io_context io;
    auto start_error = [&](std::string const& url) {
        auto c = make_client(io, url);
        std::optional<std::string> error;
        c->async_start([&](std::string const& err, bool) { error = err; });
        BOOST_REQUIRE(run_until(io, [&] { return error.has_value(); }, 5s));
        c->close();
        return *error;
    };
    // Nothing listens there.
    BOOST_TEST(start_error("redis://127.0.0.1:" + std::to_string(redis_fixture::free_port())) != "");
    // A cluster has database 0 only.
    BOOST_TEST(start_error("redis://127.0.0.1:6379/2").find("database 0") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(ask_during_a_migration_and_moved_after_it_are_followed) {
    auto* cluster = shared_cluster("cluster MOVED/ASK test");
    if (!cluster) return;
    asio::io_context io;
    auto c = make_client(io, cluster->seed_url());
    if (!start(io, *c)) return;

    std::string const old_key = "{mig}:old", new_key = "{mig}:new";
    int slot = cl::key_slot(old_key);
    int from = cluster->master_port(slot);
    int to = -1;
    for (int p : cluster->master_ports())
        if (p != from) to = p;
    BOOST_REQUIRE(to > 0);
    auto src = cluster->client(from), dst = cluster->client(to);
    auto from_id = cluster->node_id(from), to_id = cluster->node_id(to);

    std::optional<reply> r1;
    c->send(old_key, {"SET", old_key, "1"}, [&](reply&& r) { r1 = std::move(r); });
    // A sharded channel in the same slot, subscribed on `from`.
    std::string const channel = "flock:broadcast:{mig}";
    std::vector<std::string> messages;
    c->on_message([&](std::string const&, std::string const& m) { messages.push_back(m); });
    c->ssubscribe(channel);
    BOOST_REQUIRE(run_until(io, [&] { return r1 && c->subscribed_at(channel); }, 5s));
    BOOST_TEST(r1->str == "OK");
    BOOST_TEST(c->subscribed_at(channel)->port == from);

    // Slot migrating from -> to: keys not on `from` any more are answered ASK.
    BOOST_TEST(dst.command({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", from_id}).str == "OK");
    BOOST_TEST(src.command({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", to_id}).str == "OK");
    std::optional<reply> r2, r3;
    c->send(new_key, {"SET", new_key, "2"}, [&](reply&& r) { r2 = std::move(r); });
    c->send(old_key, {"GET", old_key}, [&](reply&& r) { r3 = std::move(r); });  // still on `from`
    BOOST_REQUIRE(run_until(io, [&] { return r2 && r3; }, 5s));
    BOOST_TEST(r2->str == "OK");
    BOOST_TEST(r3->str == "1");
    BOOST_TEST(dst.command({"ASKING"}).str == "OK");
    BOOST_TEST(dst.command({"GET", new_key}).str == "2");  // followed the ASK to `to`
    BOOST_TEST(!src.exists(new_key));
    BOOST_TEST(c->map().master_for_slot(slot)->port == from);  // an ASK leaves the map alone

    // Move the key, give the slot to `to` everywhere: `from` now says MOVED.
    auto mig = src.command({"MIGRATE", "127.0.0.1", std::to_string(to), "", "0", "5000", "KEYS", old_key});
    BOOST_TEST(mig.str == "OK");
    for (int p : cluster->master_ports())
        BOOST_TEST(cluster->client(p).command({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", to_id}).str ==
                   "OK");
    auto loads = c->map_loads();
    std::optional<reply> r4;
    c->send(old_key, {"GET", old_key}, [&](reply&& r) { r4 = std::move(r); });
    BOOST_REQUIRE(run_until(io, [&] { return r4.has_value(); }, 5s));
    BOOST_TEST(r4->str == "1");
    BOOST_TEST(c->map().master_for_slot(slot)->port == to);
    BOOST_REQUIRE(run_until(io, [&] { return c->map_loads() > loads; }, 5s));  // and the whole map reloaded
    BOOST_TEST(c->map().master_for_slot(slot)->port == to);

    // `from` dropped the channel's subscribers when it lost the slot
    // (sunsubscribe): the client subscribed again on `to`, and hears it once.
    BOOST_REQUIRE(run_until(io, [&] {
        auto at = c->subscribed_at(channel);
        return at && at->port == to;
    }, 5s));
    std::optional<reply> published;
    c->spublish(channel, "after the move", [&](reply&& r) { published = std::move(r); });
    c->spublish(channel, "end");
    BOOST_REQUIRE(run_until(io, [&] { return messages.size() >= 2; }, 5s));
    BOOST_TEST(published->integer == 1);
    BOOST_TEST(messages == (std::vector<std::string>{"after the move", "end"}), boost::test_tools::per_element());

    // Put the slot back for the other tests.
    BOOST_TEST(src.command({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", to_id}).str == "OK");
    BOOST_TEST(dst.command({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", from_id}).str == "OK");
    BOOST_TEST(dst.command({"MIGRATE", "127.0.0.1", std::to_string(from), "", "0", "5000", "KEYS", old_key, new_key})
                   .str == "OK");
    for (int p : cluster->master_ports())
        cluster->client(p).command({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", from_id});
    BOOST_TEST(cluster->wait_ok(10s));
    c->close();
}

BOOST_AUTO_TEST_CASE(sharded_pubsub_delivers_exactly_once_across_masters) {
    auto* cluster = shared_cluster("cluster sharded pub/sub test");
    if (!cluster) return;
    asio::io_context io;
    auto a = make_client(io, cluster->seed_url());
    auto b = make_client(io, cluster->seed_url());
    if (!start(io, *a) || !start(io, *b)) return;

    // Two rooms' channels on two different masters.
    auto ch_a = find_key("flock:broadcast:", "", [](int) { return true; });
    int master_a = cluster->master_port(cl::key_slot(ch_a));
    auto ch_b = find_key("flock:broadcast:", "", [&](int s) { return cluster->master_port(s) != master_a; });
    int master_b = cluster->master_port(cl::key_slot(ch_b));

    std::vector<std::string> got_a, got_b;  // what a (subscribed to ch_a) and b received
    a->on_message([&](std::string const& ch, std::string const& m) { got_a.push_back(ch + "|" + m); });
    b->on_message([&](std::string const& ch, std::string const& m) { got_b.push_back(ch + "|" + m); });
    a->ssubscribe(ch_a);
    b->ssubscribe(ch_b);
    BOOST_REQUIRE(run_until(io, [&] { return a->subscribed_at(ch_a) && b->subscribed_at(ch_b); }, 5s));
    BOOST_TEST(a->subscribed_at(ch_a)->port == master_a);
    BOOST_TEST(b->subscribed_at(ch_b)->port == master_b);
    auto numsub = [&](int port, std::string const& ch) {
        return cluster->client(port).command({"PUBSUB", "SHARDNUMSUB", ch}).elements.at(1).integer;
    };
    BOOST_TEST(numsub(master_a, ch_a) == 1);  // on the owner, and nowhere else
    BOOST_TEST(numsub(master_b, ch_a) == 0);

    constexpr int n = 50;
    int receivers_a = 0, receivers_b = 0, replies = 0;
    for (int i = 0; i < n; ++i) {
        b->spublish(ch_a, std::to_string(i), [&](reply&& r) { receivers_a += r.integer, ++replies; });
        a->spublish(ch_b, std::to_string(i), [&](reply&& r) { receivers_b += r.integer, ++replies; });
    }
    b->spublish(ch_a, "end");
    a->spublish(ch_b, "end");
    BOOST_REQUIRE(run_until(io, [&] { return got_a.size() == n + 1 && got_b.size() == n + 1; }, 5s));
    BOOST_TEST(replies == 2 * n);
    BOOST_TEST(receivers_a == n);  // each SPUBLISH reached exactly one subscriber
    BOOST_TEST(receivers_b == n);
    std::vector<std::string> want_a, want_b;
    for (int i = 0; i < n; ++i) want_a.push_back(ch_a + "|" + std::to_string(i));
    for (int i = 0; i < n; ++i) want_b.push_back(ch_b + "|" + std::to_string(i));
    want_a.push_back(ch_a + "|end");
    want_b.push_back(ch_b + "|end");
    BOOST_TEST(got_a == want_a, boost::test_tools::per_element());  // once each, in order
    BOOST_TEST(got_b == want_b, boost::test_tools::per_element());

    // Unsubscribed: Redis forgets it (polled there), and a publish reaches nobody.
    b->sunsubscribe(ch_b);
    BOOST_REQUIRE(run_until(io, [&] { return numsub(master_b, ch_b) == 0; }, 5s));
    std::optional<reply> nobody;
    a->spublish(ch_b, "after", [&](reply&& r) { nobody = std::move(r); });
    BOOST_REQUIRE(run_until(io, [&] { return nobody.has_value(); }, 5s));
    BOOST_TEST(nobody->integer == 0);
    BOOST_TEST(got_b.size() == std::size_t(n + 1));
    a->close();
    b->close();
}

BOOST_AUTO_TEST_CASE(expiry_events_come_from_every_master) {
    auto* cluster = shared_cluster("cluster expiry events test");
    if (!cluster) return;
    asio::io_context io;
    auto c = make_client(io, cluster->seed_url());
    std::set<int> watching;
    std::map<std::string, int> expired;  // key -> port it was reported from
    c->on_subscribed([&](std::string const& ch, cl::node_address const& at) {
        if (ch == "__keyevent@0__:expired") watching.insert(at.port);
    });
    c->on_expired([&](std::string const& key, cl::node_address const& from) { expired[key] = from.port; });
    c->watch_expired();
    if (!start(io, *c)) return;
    BOOST_REQUIRE(run_until(io, [&] { return watching.size() == 3; }, 5s));

    std::map<std::string, int> want;
    for (int port : cluster->master_ports()) {
        auto k = find_key("ttl:", "", [&](int s) { return cluster->master_port(s) == port; });
        want[k] = port;
        c->send(k, {"SET", k, "x", "PX", "30"});
    }
    BOOST_REQUIRE(run_until(io, [&] { return expired.size() >= want.size(); }, 5s));
    BOOST_TEST(expired == want);
    c->close();
}

BOOST_AUTO_TEST_CASE(a_killed_master_is_replaced_and_the_client_recovers) {
    std::unique_ptr<local_cluster> cluster;
    std::string why;
    try {
        cluster = local_cluster::start();
    } catch (std::exception const& e) {
        why = e.what();
    }
    if (!flk_test::prerequisite(cluster != nullptr, "cluster failover test", "cannot start a local cluster: " + why))
        return;

    asio::io_context io;
    auto sub = make_client(io, cluster->seed_url());  // an instance with a member in the room
    auto pub = make_client(io, cluster->seed_url());  // another instance broadcasting into it
    std::vector<std::string> log;
    auto t_kill = clock_type::time_point::max();
    auto since_kill = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t_kill); };
    sub->on_log([&](std::string const& s) {
        if (t_kill != clock_type::time_point::max()) log.push_back(std::to_string(since_kill().count()) + " ms: " + s);
    });
    if (!start(io, *sub) || !start(io, *pub)) return;

    auto ch = find_key("flock:broadcast:", "", [](int) { return true; });
    auto key = find_key("flock:room:", ":members", [&](int s) { return s == cl::key_slot(ch); });
    int victim = cluster->master_port(cl::key_slot(ch));

    std::vector<long> received;
    std::optional<clock_type::time_point> t_resubscribed, t_command, t_message;
    std::optional<cl::node_address> resubscribed_at;
    long first_seq_after_kill = -1;
    sub->on_message([&](std::string const&, std::string const& m) {
        long seq = std::stol(m);
        received.push_back(seq);
        if (first_seq_after_kill >= 0 && seq >= first_seq_after_kill && !t_message) t_message = clock_type::now();
    });
    sub->on_subscribed([&](std::string const& c, cl::node_address const& at) {
        if (c == ch && t_kill != clock_type::time_point::max() && !t_resubscribed) {
            t_resubscribed = clock_type::now();
            resubscribed_at = at;
        }
    });
    sub->ssubscribe(ch);
    BOOST_REQUIRE(run_until(io, [&] { return sub->subscribed_at(ch).has_value(); }, 5s));

    // Load: every 10 ms one SPUBLISH from `pub` and one SADD from `sub`.
    long seq = 0;
    int cmd_errors = 0, pub_errors = 0;
    asio::steady_timer tick(io);
    std::function<void()> beat = [&] {
        pub->spublish(ch, std::to_string(seq++), [&](reply&& r) { pub_errors += r.is_error(); });
        sub->send(key, {"SADD", key, "m" + std::to_string(seq)}, [&, sent = clock_type::now()](reply&& r) {
            if (r.is_error()) ++cmd_errors;
            else if (t_kill != clock_type::time_point::max() && sent > t_kill && !t_command) t_command = clock_type::now();
        });
        tick.expires_after(10ms);
        tick.async_wait([&](boost::system::error_code ec) {
            if (!ec) beat();
        });
    };
    beat();
    BOOST_REQUIRE(run_until(io, [&] { return received.size() >= 20; }, 5s));

    t_kill = clock_type::now();
    first_seq_after_kill = seq;
    cluster->kill(victim);
    bool recovered = run_until(io, [&] { return t_resubscribed && t_command && t_message; }, 20s);
    tick.cancel();
    for (auto const& l : log) BOOST_TEST_MESSAGE("failover: " << l);
    BOOST_REQUIRE(recovered);

    auto ms = [&](clock_type::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t - t_kill).count();
    };
    std::cerr << "cluster failover gap (SIGKILL of the master -> ...): first successful command " << ms(*t_command)
              << " ms, re-subscribed " << ms(*t_resubscribed) << " ms, first message delivered " << ms(*t_message)
              << " ms (cluster-node-timeout 1000 ms; " << cmd_errors << " commands and " << pub_errors
              << " publishes failed meanwhile)\n";
    BOOST_TEST(resubscribed_at->port != victim);
    BOOST_TEST(cluster->role(resubscribed_at->port) == "master");  // the promoted replica
    BOOST_TEST(sub->map().master_for(ch)->port == resubscribed_at->port);
    // Nothing twice. Commands and publishes sent while the master was down
    // waited and went out in order; one refused during the election
    // (CLUSTERDOWN) and retried may be overtaken: counted, not asserted.
    std::set<long> distinct(received.begin(), received.end());
    BOOST_TEST(distinct.size() == received.size());
    int overtaken = 0;
    for (std::size_t i = 1; i < received.size(); ++i) overtaken += received[i] < received[i - 1];
    std::cerr << "  " << received.size() << " messages received, none twice, " << overtaken
              << " out of order\n";

    // The promoted master's expiry events reach us too.
    std::set<int> watching;
    std::optional<std::string> expired;
    sub->on_subscribed([&](std::string const& c, cl::node_address const& at) {
        if (c == "__keyevent@0__:expired") watching.insert(at.port);
    });
    sub->on_expired([&](std::string const& k, cl::node_address const& from) {
        if (from.port == resubscribed_at->port) expired = k;
    });
    sub->watch_expired();
    BOOST_REQUIRE(run_until(io, [&] { return watching.count(resubscribed_at->port) == 1; }, 5s));
    std::optional<reply> set;
    sub->send(key + ":ttl", {"SET", key + ":ttl", "x", "PX", "30"}, [&](reply&& r) { set = std::move(r); });
    BOOST_REQUIRE(run_until(io, [&] { return expired.has_value(); }, 5s));
    BOOST_TEST(set->str == "OK");
    BOOST_TEST(*expired == key + ":ttl");
    sub->close();
    pub->close();
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_cluster_client_test
