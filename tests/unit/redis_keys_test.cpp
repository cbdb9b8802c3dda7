// The Redis key schema and the parsing of expired presence keys: no Redis needed.
#include <boost/test/unit_test.hpp>

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

}  // namespace redis_keys_test
