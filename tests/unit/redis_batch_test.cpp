// FLOCK_REDIS_BATCH_MS: the batch envelope (built and parsed, no Redis
// needed), its channel, and the option.
#include <boost/test/unit_test.hpp>

#include <flock/broker/redis_settings.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/redis/batch.hpp>
#include <flock/detail/redis/keys.hpp>
#include <flock/options.hpp>

#include <boost/json/parse.hpp>

#include <map>
#include <string>

BOOST_AUTO_TEST_SUITE(redis_batch)

namespace rk = flk::detail::redis;

BOOST_AUTO_TEST_CASE(a_batch_carries_its_messages_in_order_with_the_instance_id) {
    rk::batch_builder b;
    BOOST_TEST(b.empty());
    flk::json_codec codec;
    std::string const room = "r:1";
    b.add("id-1", codec.encode(flk::server_message{flk::server::cursor_updated{room, "u", {0.25, 0.5}, 7}}));
    b.add("id-1", codec.encode(flk::server_message{flk::server::cursor_removed{room, "u"}}));
    b.add("id-1", codec.encode(flk::server_message{flk::server::cursor_updated{room, "v", {1e-300, -0.0}, 8}}));
    BOOST_TEST(b.count() == 3u);
    auto text = b.take();
    BOOST_TEST(b.empty());
    BOOST_TEST(b.bytes() == 0u);

    // Valid JSON, without the `message` field of PROTOCOL.md's envelope.
    auto v = boost::json::parse(text);
    BOOST_TEST(v.as_object().at("instanceId").as_string() == "id-1");
    BOOST_TEST(!v.as_object().contains("message"));

    auto parsed = rk::parse_batch(text);
    BOOST_REQUIRE(parsed.has_value());
    BOOST_TEST(parsed->instance_id == "id-1");
    BOOST_REQUIRE(parsed->messages.size() == 3u);
    auto m0 = flk::json_codec::server_from_json(parsed->messages[0]);
    BOOST_REQUIRE(m0.has_value());
    auto const& c0 = std::get<flk::server::cursor_updated>(*m0);
    BOOST_TEST(c0.user_id == "u");
    BOOST_TEST(c0.pos.x == 0.25);
    BOOST_TEST(std::holds_alternative<flk::server::cursor_removed>(*flk::json_codec::server_from_json(parsed->messages[1])));
    auto m2 = flk::json_codec::server_from_json(parsed->messages[2]);
    BOOST_TEST(std::get<flk::server::cursor_updated>(*m2).pos.x == 1e-300);

    // The builder starts over after take().
    b.add("id-2", codec.encode(flk::server_message{flk::server::cursor_removed{room, "w"}}));
    auto again = rk::parse_batch(b.take());
    BOOST_REQUIRE(again.has_value());
    BOOST_TEST(again->instance_id == "id-2");
    BOOST_TEST(again->messages.size() == 1u);
}

BOOST_AUTO_TEST_CASE(what_is_not_a_batch_is_refused) {
    BOOST_TEST(!rk::parse_batch("not json"));
    BOOST_TEST(!rk::parse_batch("[1,2]"));
    BOOST_TEST(!rk::parse_batch(R"({"instanceId":"x","message":{"type":"cursor:removed"}})"));  // an envelope
    BOOST_TEST(!rk::parse_batch(R"({"instanceId":"x","messages":{}})"));
    auto no_id = rk::parse_batch(R"({"messages":[]})");
    BOOST_REQUIRE(no_id.has_value());
    BOOST_TEST(no_id->instance_id.empty());
}

BOOST_AUTO_TEST_CASE(batches_have_a_channel_of_their_own) {
    BOOST_TEST(rk::batch_channel("a:b") == "flock:batch:a:b");
    BOOST_TEST(*rk::room_of_batch_channel("flock:batch:a:b") == "a:b");
    BOOST_TEST(!rk::room_of_batch_channel("flock:broadcast:a"));
    // Neither channel reads as the other, whatever the room id.
    BOOST_TEST(!rk::room_of_channel(rk::batch_channel("x")));
    BOOST_TEST(!rk::room_of_batch_channel(rk::channel("flock:batch:x")));
}

BOOST_AUTO_TEST_CASE(flock_redis_batch_ms_is_read_and_checked) {
    auto read = [](std::map<std::string, std::string> vars) {
        return flk::options::from_env([vars](char const* name) -> char const* {
            auto it = vars.find(name);
            return it == vars.end() ? nullptr : it->second.c_str();
        });
    };
    BOOST_TEST(read({}).redis_batch.count() == 0);
    auto o = read({{"FLOCK_REDIS_BATCH_MS", "20"}});
    BOOST_TEST(o.redis_batch.count() == 20);
    BOOST_TEST(flk::redis_settings::from(o).publish_batch.count() == 20);
    for (char const* bad : {"-1", "2000", "fast"}) {
        try {
            read({{"FLOCK_REDIS_BATCH_MS", bad}});
            BOOST_ERROR("accepted FLOCK_REDIS_BATCH_MS=" << bad);
        } catch (flk::config_error const& e) {
            BOOST_TEST(std::string(e.what()).find("FLOCK_REDIS_BATCH_MS") != std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
