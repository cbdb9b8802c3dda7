// The Redis key schema and the parsing of expired presence keys: no Redis needed.
#include <boost/test/unit_test.hpp>

#include <flock/detail/redis/cluster/slots.hpp>
#include <flock/detail/redis/keys.hpp>

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace redis_keys_test {

using hits = std::vector<std::pair<std::string, std::string>>;

inline hits parse(std::string_view key, std::set<std::string, std::less<>> const& rooms) {
    hits out;
    for (auto [r, u] : flk::detail::redis::parse_presence_key(
             key, [&](std::string_view room) { return rooms.find(room) != rooms.end(); }))
        out.emplace_back(r, u);
    return out;
}


BOOST_AUTO_TEST_SUITE(redis_keys)

namespace rk = flk::detail::redis;

BOOST_AUTO_TEST_CASE(schema_of_protocol_md) {
    BOOST_TEST(rk::presence_key("r1", "u1") == "flock:presence:r1:u1");
    BOOST_TEST(rk::cursor_key("r1", "u1") == "flock:cursor:r1:u1");
    BOOST_TEST(rk::members_key("r1") == "flock:room:r1:members");
    BOOST_TEST(rk::channel("r1") == "flock:broadcast:r1");
    BOOST_TEST(rk::expired_channel(0) == "__keyevent@0__:expired");
    BOOST_TEST(rk::expired_channel(3) == "__keyevent@3__:expired");
    BOOST_TEST(*rk::room_of_channel("flock:broadcast:a:b") == "a:b");
    BOOST_TEST(!rk::room_of_channel("flock:other:a"));
}

BOOST_AUTO_TEST_CASE(expired_keys_are_split_by_known_rooms_not_at_the_first_colon) {
    BOOST_TEST((parse("flock:presence:doc:42:alice", {"doc:42"}) == hits{{"doc:42", "alice"}}));
    BOOST_TEST((parse("flock:presence:doc:user:with:colons", {"doc"}) == hits{{"doc", "user:with:colons"}}));
    BOOST_TEST((parse("flock:presence:plain:bob", {"plain", "other"}) == hits{{"plain", "bob"}}));
    // Rooms this instance does not follow, and keys of other kinds, are ignored.
    BOOST_TEST(parse("flock:presence:elsewhere:bob", {"plain"}).empty());
    BOOST_TEST(parse("flock:cursor:plain:bob", {"plain"}).empty());
    BOOST_TEST(parse("flock:presence:plain", {"plain"}).empty());
    // Crafted ids can make one key name two (room, user) pairs; both are gone.
    BOOST_TEST((parse("flock:presence:a:b:c", {"a", "a:b"}) == hits{{"a", "b:c"}, {"a:b", "c"}}));
    BOOST_TEST((parse("flock:presence::x", {""}) == hits{{"", "x"}}));
}

BOOST_AUTO_TEST_SUITE_END()

// Cluster mode (key_schema(true)): every name of a room carries the room as
// a hash tag, so a room's keys, scripts and sharded channel share one slot.
BOOST_AUTO_TEST_SUITE(redis_cluster_keys)

namespace rk = flk::detail::redis;
rk::key_schema const tagged(true);

hits parse_tagged(std::string_view key, std::set<std::string, std::less<>> const& rooms) {
    hits out;
    for (auto [r, u] :
         tagged.parse_presence(key, [&](std::string_view room) { return rooms.find(room) != rooms.end(); }))
        out.emplace_back(r, u);
    return out;
}

BOOST_AUTO_TEST_CASE(names_are_tagged_by_room) {
    BOOST_TEST(tagged.presence("lobby", "ann") == "flock:presence:{lobby}:ann");
    BOOST_TEST(tagged.presence_prefix_of("lobby") == "flock:presence:{lobby}:");
    BOOST_TEST(tagged.cursor("lobby", "ann") == "flock:cursor:{lobby}:ann");
    BOOST_TEST(tagged.cursor_prefix_of("lobby") == "flock:cursor:{lobby}:");
    BOOST_TEST(tagged.members("lobby") == "flock:room:{lobby}:members");
    BOOST_TEST(tagged.channel("lobby") == "flock:broadcast:{lobby}");
    BOOST_TEST(tagged.batch_channel("lobby") == "flock:batch:{lobby}");
    // Untagged: PROTOCOL.md's names, exactly.
    rk::key_schema const original;
    BOOST_TEST(original.presence("lobby", "ann") == rk::presence_key("lobby", "ann"));
    BOOST_TEST(original.members("lobby") == rk::members_key("lobby"));
    BOOST_TEST(original.channel("lobby") == rk::channel("lobby"));
}

BOOST_AUTO_TEST_CASE(every_name_of_a_room_has_one_slot_whatever_the_id) {
    // Ids with braces: '}' first would make an empty tag (the whole key
    // hashed, each key on its own slot) were it not escaped.
    for (std::string room : {"lobby", "}", "}x", "}}", "\\", "\\}", "{", "{x}", "a}b", "a:b", "x{y}z", "\\x"}) {
        auto const slot = flk::detail::redis::cluster::key_slot(tagged.members(room));
        BOOST_TEST_CONTEXT("room " << room) {
            for (auto const& name : {tagged.presence(room, "u1"), tagged.presence(room, "}u{"), tagged.cursor(room, "u1"),
                                     tagged.presence_prefix_of(room) + "u2", tagged.channel(room),
                                     tagged.batch_channel(room)})
                BOOST_TEST(flk::detail::redis::cluster::key_slot(name) == slot);
        }
    }
    BOOST_TEST(tagged.members("}x") == "flock:room:{\\}x}:members");
    BOOST_TEST(tagged.members("\\x") == "flock:room:{\\\\x}:members");
}

BOOST_AUTO_TEST_CASE(channels_give_their_room_back) {
    for (std::string room : {"lobby", "}", "}x", "\\", "\\x", "a}b", "{x}", "a:b"}) {
        BOOST_TEST(tagged.room_of_channel(tagged.channel(room)).value_or("?") == room);
        BOOST_TEST(tagged.room_of_batch_channel(tagged.batch_channel(room)).value_or("?") == room);
        BOOST_TEST(!tagged.room_of_channel(tagged.batch_channel(room)));
    }
    BOOST_TEST(!tagged.room_of_channel("flock:broadcast:lobby"));     // an untagged name
    BOOST_TEST(!tagged.room_of_channel("flock:broadcast:{\\y}"));  // never written: '\\' escapes only '}' and '\\'
}

BOOST_AUTO_TEST_CASE(expired_keys_are_split_at_a_followed_room) {
    BOOST_TEST(parse_tagged(tagged.presence("lobby", "ann"), {"lobby"}) == (hits{{"lobby", "ann"}}));
    BOOST_TEST(parse_tagged(tagged.presence("lobby", "ann"), {"other"}).empty());
    BOOST_TEST(parse_tagged(rk::presence_key("lobby", "ann"), {"lobby"}).empty());  // an untagged key
    // "}:" inside ids: each candidate is tried against the followed rooms.
    auto key = tagged.presence("a}:b", "c}:d");
    BOOST_TEST(parse_tagged(key, {"a}:b"}) == (hits{{"a}:b", "c}:d"}}));
    BOOST_TEST(parse_tagged(key, {"a", "a}:b}:c"}) == (hits{{"a", "b}:c}:d"}, {"a}:b}:c", "d"}}));
    BOOST_TEST(parse_tagged(tagged.presence("}x", "u"), {"}x"}) == (hits{{"}x", "u"}}));
}

// The admin's SCAN of `flock:room:*:members` names rooms by their member-set
// keys: every room id round-trips through the key of its schema, and keys of
// the other schema (or of other kinds) name no room.
BOOST_AUTO_TEST_CASE(member_set_keys_name_their_room_in_both_schemas) {
    rk::key_schema const plain;
    for (std::string room : {"lobby", "doc:42", "", "}x", "\\x", "a}b{c", "x:members", "{y}"}) {
        BOOST_TEST_CONTEXT(room) {
            auto const pk = plain.members(room), tk = tagged.members(room);
            auto p = plain.room_of_members(pk);
            auto t = tagged.room_of_members(tk);
            BOOST_TEST((p && *p == room));
            BOOST_TEST((t && *t == room));
        }
    }
    BOOST_TEST(tagged.members("lobby") == "flock:room:{lobby}:members");
    BOOST_TEST(tagged.members("}x") == "flock:room:{\\}x}:members");
    // An untagged key on a cluster, a tag never written, other kinds of keys.
    BOOST_TEST(!tagged.room_of_members("flock:room:lobby:members"));
    BOOST_TEST(!tagged.room_of_members("flock:room:{}x}:members"));
    BOOST_TEST(!tagged.room_of_members("flock:room:{\\x}:members"));
    BOOST_TEST(!tagged.room_of_members("flock:room:{lobby}"));
    BOOST_TEST(!plain.room_of_members("flock:presence:lobby:members"));
    BOOST_TEST(!plain.room_of_members("flock:room:lobby"));
    BOOST_TEST(*plain.room_of_members("flock:room:{lobby}:members") == "{lobby}");  // a plain room id with braces
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_keys_test
