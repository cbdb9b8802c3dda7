// Redis Cluster routing without a cluster: CRC16 key slots and hash tags, the
// slot map from CLUSTER SHARDS / CLUSTER SLOTS replies, MOVED/ASK parsing and
// the routing decision (include/flock/detail/redis/cluster/slots.hpp).
#include <boost/test/unit_test.hpp>

#include <flock/detail/redis/cluster/slots.hpp>

#include <initializer_list>
#include <string>
#include <vector>

namespace redis_cluster_slots_test {

namespace cl = flk::detail::redis::cluster;
using flk::detail::redis::reply;

reply str(std::string s) {
    reply r;
    r.type = reply::kind::string;
    r.str = std::move(s);
    return r;
}
reply num(long long v) {
    reply r;
    r.type = reply::kind::integer;
    r.integer = v;
    return r;
}
reply arr(std::vector<reply> v) {
    reply r;
    r.type = reply::kind::array;
    r.elements = std::move(v);
    return r;
}
reply err(std::string s) {
    reply r;
    r.type = reply::kind::error;
    r.str = std::move(s);
    return r;
}

/// One node of a CLUSTER SHARDS reply, as Redis 7.0 writes it.
reply shard_node(std::string id, int port, std::string role, std::string health = "online",
                 std::string ip = "127.0.0.1") {
    return arr({str("id"), str(std::move(id)), str("port"), num(port), str("ip"), str(ip), str("endpoint"), str(ip),
                str("role"), str(std::move(role)), str("replication-offset"), num(0), str("health"),
                str(std::move(health))});
}
reply shard(std::vector<long long> slots, std::vector<reply> nodes) {
    std::vector<reply> s;
    for (auto v : slots) s.push_back(num(v));
    return arr({str("slots"), arr(std::move(s)), str("nodes"), arr(std::move(nodes))});
}

BOOST_AUTO_TEST_SUITE(redis_cluster_slots)

BOOST_AUTO_TEST_CASE(crc16_is_the_xmodem_checksum_of_the_spec) {
    static_assert(cl::crc16("123456789") == 0x31C3);
    BOOST_TEST(cl::crc16("123456789") == 0x31C3);
    BOOST_TEST(cl::crc16("") == 0);
}

BOOST_AUTO_TEST_CASE(known_key_slots) {
    // Values Redis itself gives (CLUSTER KEYSLOT); the integration test
    // compares many more keys against a real cluster.
    BOOST_TEST(cl::key_slot("foo") == 12182);
    BOOST_TEST(cl::key_slot("bar") == 5061);
    BOOST_TEST(cl::key_slot("hello") == 866);
    BOOST_TEST(cl::key_slot("{user1000}.following") == 3443);
    BOOST_TEST(cl::key_slot("{user1000}.following") == cl::key_slot("{user1000}.followers"));
    BOOST_TEST(cl::key_slot("") == 0);
    static_assert(cl::key_slot("foo") == 12182);
}

BOOST_AUTO_TEST_CASE(hash_tags_follow_the_spec) {
    // The first '{', the first '}' after it, and something between them.
    BOOST_TEST(cl::hash_tag("{user1000}.following") == "user1000");
    BOOST_TEST(cl::hash_tag("foo{bar}{zap}") == "bar");        // only the first tag
    BOOST_TEST(cl::hash_tag("foo{{bar}}zap") == "{bar");       // first '{', first '}' after it
    BOOST_TEST(cl::hash_tag("foo{}{bar}") == "foo{}{bar}");    // empty tag: the whole key
    BOOST_TEST(cl::hash_tag("foo}{bar}") == "bar");            // a '}' before the '{' is not a close
    BOOST_TEST(cl::hash_tag("foo{bar") == "foo{bar");          // never closed
    BOOST_TEST(cl::hash_tag("plain") == "plain");
    BOOST_TEST(cl::key_slot("foo{}{bar}") != cl::key_slot("bar"));
    BOOST_TEST(cl::key_slot("flock:room:{r1}:members") == cl::key_slot("r1"));
    BOOST_TEST(cl::key_slot("flock:presence:{r1}:alice") == cl::key_slot("flock:broadcast:{r1}"));
}

BOOST_AUTO_TEST_CASE(slot_map_from_cluster_shards) {
    // After a failover: 7001 died (health fail, no slots), 7006 took its slots.
    reply r = arr({
        shard({5461, 10922}, {shard_node("b", 7002, "master"), shard_node("e", 7004, "replica")}),
        shard({}, {shard_node("a", 7001, "master", "fail")}),
        shard({0, 5460}, {shard_node("f", 7006, "master")}),
        shard({10923, 16000, 16001, 16383}, {shard_node("c", 7003, "master"), shard_node("g", 7005, "replica")}),
    });
    auto m = cl::slot_map::from_cluster_shards(r);
    BOOST_REQUIRE(m);
    BOOST_TEST(m->complete());
    BOOST_TEST(m->master_for_slot(0)->port == 7006);
    BOOST_TEST(m->master_for_slot(5460)->port == 7006);
    BOOST_TEST(m->master_for_slot(5461)->port == 7002);
    BOOST_TEST(m->master_for_slot(5461)->id == "b");
    BOOST_TEST(m->master_for_slot(16383)->port == 7003);
    BOOST_TEST(m->master_for("foo")->port == 7003);  // 12182
    BOOST_TEST(m->masters().size() == 3u);
    BOOST_TEST(m->nodes().size() == 5u);  // the dead master is not among them
    BOOST_TEST(m->replicas_of(*m->master_for_slot(5461)).at(0).port == 7004);
}

BOOST_AUTO_TEST_CASE(cluster_shards_prefers_the_online_master_and_leaves_gaps) {
    reply r = arr({
        shard({0, 99}, {shard_node("old", 7001, "master", "fail"), shard_node("new", 7004, "master")}),
        shard({200, 299}, {shard_node("x", 7002, "replica")}),  // no master: not covered
    });
    auto m = cl::slot_map::from_cluster_shards(r);
    BOOST_REQUIRE(m);
    BOOST_TEST(m->master_for_slot(50)->port == 7004);
    BOOST_TEST(m->master_for_slot(150) == nullptr);
    BOOST_TEST(m->master_for_slot(250) == nullptr);
    BOOST_TEST(m->covered() == 100u);
    BOOST_TEST(!m->complete());
    BOOST_TEST(!cl::route_for(*m, "foo"));
}

BOOST_AUTO_TEST_CASE(cluster_shards_rejects_malformed_replies) {
    BOOST_TEST(!cl::slot_map::from_cluster_shards(str("x")));
    BOOST_TEST(!cl::slot_map::from_cluster_shards(arr({arr({str("slots")})})));
    BOOST_TEST(!cl::slot_map::from_cluster_shards(arr({shard({0}, {shard_node("a", 1, "master")})})));
    BOOST_TEST(!cl::slot_map::from_cluster_shards(arr({shard({5, 4}, {shard_node("a", 1, "master")})})));
    BOOST_TEST(!cl::slot_map::from_cluster_shards(arr({shard({0, 16384}, {shard_node("a", 1, "master")})})));
    BOOST_TEST(cl::slot_map::from_cluster_shards(arr({}))->covered() == 0u);
}

BOOST_AUTO_TEST_CASE(slot_map_from_cluster_slots) {
    auto node = [](std::string host, int port, std::string id) {
        return arr({str(std::move(host)), num(port), str(std::move(id)), arr({})});
    };
    reply r = arr({
        arr({num(0), num(5460), node("10.0.0.1", 7001, "a"), node("10.0.0.4", 7004, "d")}),
        arr({num(5461), num(10922), node("", 7002, "b")}),  // "": the node that answered
        arr({num(10923), num(16383), node("10.0.0.3", 7003, "c")}),
    });
    auto m = cl::slot_map::from_cluster_slots(r, "10.0.0.9");
    BOOST_REQUIRE(m);
    BOOST_TEST(m->complete());
    BOOST_TEST(m->master_for_slot(6000)->host == "10.0.0.9");
    BOOST_TEST(m->master_for_slot(6000)->port == 7002);
    BOOST_TEST(m->master_for("bar")->port == 7001);  // 5061
    BOOST_TEST(m->master_for("hello")->name() == "10.0.0.1:7001");  // 866
    BOOST_TEST(m->master_for("foo")->id == "c");
    BOOST_TEST(m->replicas_of(*m->master_for("hello")).size() == 1u);
    BOOST_TEST(!cl::slot_map::from_cluster_slots(arr({arr({num(0), num(1)})})));
    BOOST_TEST(!cl::slot_map::from_cluster_slots(arr({arr({num(0), num(1), arr({str("h")})})})));
}

BOOST_AUTO_TEST_CASE(moved_and_ask_are_parsed) {
    auto m = cl::parse_redirect(err("MOVED 3999 127.0.0.1:6381"));
    BOOST_REQUIRE(m);
    BOOST_TEST((m->type == cl::redirect::kind::moved));
    BOOST_TEST(m->slot == 3999);
    BOOST_TEST(m->target.host == "127.0.0.1");
    BOOST_TEST(m->target.port == 6381);

    auto a = cl::parse_redirect(err("ASK 12182 redis-2.example:7000"));
    BOOST_REQUIRE(a);
    BOOST_TEST((a->type == cl::redirect::kind::ask));
    BOOST_TEST(a->target.name() == "redis-2.example:7000");

    auto v6 = cl::parse_redirect(err("MOVED 1 ::1:7002"));
    BOOST_REQUIRE(v6);
    BOOST_TEST(v6->target.host == "::1");
    BOOST_TEST(v6->target.name() == "[::1]:7002");
    BOOST_TEST(cl::parse_redirect(err("MOVED 1 [::1]:7002"))->target.host == "::1");

    auto unknown = cl::parse_redirect(err("MOVED 7 :7003"));  // endpoint unknown: same host
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->target.host.empty());

    BOOST_TEST(!cl::parse_redirect(err("MOVED 16384 h:1")));
    BOOST_TEST(!cl::parse_redirect(err("MOVED x h:1")));
    BOOST_TEST(!cl::parse_redirect(err("MOVED 1 h")));
    BOOST_TEST(!cl::parse_redirect(err("MOVED 1 h:0")));
    BOOST_TEST(!cl::parse_redirect(err("MOVED 1")));
    BOOST_TEST(!cl::parse_redirect(err("ERR MOVED 1 h:1")));
    BOOST_TEST(!cl::parse_redirect(str("MOVED 1 h:1")));  // not an error reply
    BOOST_TEST(!cl::parse_redirect(err("TRYAGAIN Multiple keys request during rehashing of slot")));
}

BOOST_AUTO_TEST_CASE(routing_follows_the_map_moved_and_ask) {
    auto m = cl::slot_map::from_cluster_shards(arr({
        shard({0, 8191}, {shard_node("a", 7001, "master")}),
        shard({8192, 16383}, {shard_node("b", 7002, "master")}),
    }));
    BOOST_REQUIRE(m);
    // A key and its sharded channel with the same tag go to the same master.
    auto k = cl::route_for(*m, "flock:room:{lobby}:members");
    auto c = cl::route_for(*m, "flock:broadcast:{lobby}");
    BOOST_REQUIRE(k);
    BOOST_REQUIRE(c);
    BOOST_TEST(k->node.name() == c->node.name());
    BOOST_TEST(!k->asking);

    // "foo" (12182) is on 7002; an ASK sends this one command elsewhere...
    BOOST_TEST(cl::route_for(*m, "foo")->node.port == 7002);
    auto ask = cl::parse_redirect(err("ASK 12182 127.0.0.1:7003"));
    auto r = cl::route_for(*m, "foo", ask);
    BOOST_TEST(r->node.port == 7003);
    BOOST_TEST(r->asking);
    BOOST_TEST(cl::route_for(*m, "foo")->node.port == 7002);  // ...and changes nothing

    // ...a MOVED changes the map for that slot only.
    auto before = *m;
    m->apply_moved(12182, cl::parse_redirect(err("MOVED 12182 127.0.0.1:7003"))->target);
    BOOST_TEST(cl::route_for(*m, "foo")->node.port == 7003);
    BOOST_TEST(m->master_for_slot(12181)->port == 7002);
    BOOST_TEST(m->masters().size() == 3u);
    BOOST_TEST(!m->same_routing(before));
    m->apply_moved(12182, cl::node_address{"127.0.0.1", 7002, ""});
    BOOST_TEST(m->same_routing(before));
    BOOST_TEST(m->masters().size() == 2u);  // 7003 serves nothing any more
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_cluster_slots_test
