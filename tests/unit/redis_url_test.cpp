// FLOCK_REDIS_URL parsing: no Redis needed.
#include <boost/test/unit_test.hpp>

#include <flock/detail/redis/sentinel.hpp>
#include <flock/detail/redis/url.hpp>

#include <string>

namespace redis_url_test {

inline flk::detail::redis::url parse(std::string const& s) { return flk::detail::redis::parse_url(s); }

inline std::string error_of(std::string const& s) {
    try {
        parse(s);
    } catch (flk::config_error const& e) {
        return e.what();
    }
    return {};
}


BOOST_AUTO_TEST_SUITE(redis_url)


BOOST_AUTO_TEST_CASE(host_port_and_defaults) {
    auto u = parse("redis://localhost:6380");
    BOOST_TEST(!u.tls);
    BOOST_TEST(u.host == "localhost");
    BOOST_TEST(u.port == 6380);
    BOOST_TEST(!u.user);
    BOOST_TEST(!u.password);
    BOOST_TEST(u.db == 0);

    auto d = parse("redis://redis.internal");
    BOOST_TEST(d.host == "redis.internal");
    BOOST_TEST(d.port == 6379);
    BOOST_TEST(parse("redis://h:1/").db == 0);
}

BOOST_AUTO_TEST_CASE(password_user_and_db) {
    auto p = parse("redis://:s3cret@10.0.0.5:6379/2");
    BOOST_TEST(!p.user);
    BOOST_TEST(*p.password == "s3cret");
    BOOST_TEST(p.host == "10.0.0.5");
    BOOST_TEST(p.db == 2);

    auto acl = parse("redis://flock:pa%40ss%3Aw%2Fd@host:7000/15");
    BOOST_TEST(*acl.user == "flock");
    BOOST_TEST(*acl.password == "pa@ss:w/d");
    BOOST_TEST(acl.port == 7000);
    BOOST_TEST(acl.db == 15);

    // Raw '@' and '/' in a password still parse: userinfo ends at the last '@'.
    auto raw = parse("redis://u:p@ss/w@host:1/3");
    BOOST_TEST(*raw.password == "p@ss/w");
    BOOST_TEST(raw.host == "host");
    BOOST_TEST(raw.db == 3);

    // A lone userinfo is a password (redis-cli reads it so).
    auto lone = parse("redis://justapassword@host");
    BOOST_TEST(!lone.user);
    BOOST_TEST(*lone.password == "justapassword");
}

BOOST_AUTO_TEST_CASE(tls_and_ipv6) {
    auto t = parse("rediss://default:pw@cache.example.com:6380");
    BOOST_TEST(t.tls);
    BOOST_TEST(*t.user == "default");
    BOOST_TEST(t.host == "cache.example.com");
    BOOST_TEST(t.port == 6380);

    auto v6 = parse("redis://[::1]:6390/1");
    BOOST_TEST(v6.host == "::1");
    BOOST_TEST(v6.port == 6390);
    BOOST_TEST(v6.db == 1);
    BOOST_TEST(parse("redis://[fe80::1]").port == 6379);
}

BOOST_AUTO_TEST_CASE(redacted_never_shows_the_password) {
    auto u = parse("rediss://flock:topsecret@h:1/4");
    BOOST_TEST(u.redacted() == "rediss://flock:***@h:1/4");
    BOOST_TEST(parse("redis://[::1]:2").redacted() == "redis://[::1]:2");
}

BOOST_AUTO_TEST_CASE(bad_urls_are_config_errors_naming_the_variable) {
    for (auto bad : {"", "http://h:1", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
                     "redis://h:x", "redis://h:", "redis://h/x", "redis://h/-1", "redis://h/1/2",
                     "redis://[::1", "redis://::1:6379", "redis://u:@h", "redis://%zz@h", "redis://h?db=1",
                     "redis://h h:1"}) {
        auto e = error_of(bad);
        BOOST_TEST(!e.empty(), bad);
        BOOST_TEST(e.find("FLOCK_REDIS_URL") == 0u, bad);
    }
    BOOST_TEST(error_of("redis://user:hunter2@h:0").find("hunter2") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(sentinel_urls_list_the_sentinels_and_name_the_master) {
    auto u = parse("redis+sentinel://:pw@s1:26380,s2,[::1]:26381/mymaster/2");
    BOOST_TEST(u.sentinel());
    BOOST_TEST(!u.tls);
    BOOST_REQUIRE(u.sentinels.size() == 3u);
    BOOST_TEST(u.sentinels[0].host == "s1");
    BOOST_TEST(u.sentinels[0].port == 26380);
    BOOST_TEST(u.sentinels[1].host == "s2");
    BOOST_TEST(u.sentinels[1].port == 26379);  // Sentinel's default port
    BOOST_TEST(u.sentinels[2].host == "::1");
    BOOST_TEST(u.master_name == "mymaster");
    BOOST_TEST(u.db == 2);
    BOOST_TEST(*u.password == "pw");
    BOOST_TEST(u.redacted() == "redis+sentinel://:***@s1:26380,s2:26379,[::1]:26381/mymaster/2");

    // Aimed at the master the sentinels named: same credentials and db, no sentinels.
    auto m = u.at({"10.0.0.7", 6390});
    BOOST_TEST(!m.sentinel());
    BOOST_TEST(m.host == "10.0.0.7");
    BOOST_TEST(m.port == 6390);
    BOOST_TEST(*m.password == "pw");
    BOOST_TEST(m.db == 2);
    BOOST_TEST(m.redacted() == "redis://:***@10.0.0.7:6390/2");

    auto t = parse("rediss+sentinel://h/cache");
    BOOST_TEST(t.tls);
    BOOST_TEST(t.db == 0);
    BOOST_TEST(t.master_name == "cache");
    BOOST_TEST(!parse("redis://h:1").sentinel());

    for (auto bad : {"redis+sentinel://h:26379", "redis+sentinel://h:26379/", "redis+sentinel://h,,g/m",
                     "redis+sentinel://,h/m", "redis+sentinel://h:0/m", "redis+sentinel://h/m/x",
                     "redis+sentinel:///m", "sentinel://h/m"}) {
        auto e = error_of(bad);
        BOOST_TEST(!e.empty(), bad);
        BOOST_TEST(e.find("FLOCK_REDIS_URL") == 0u, bad);
    }
}

BOOST_AUTO_TEST_CASE(switch_master_messages_of_our_master_only) {
    using flk::detail::redis::parse_switch_master;
    auto e = parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 6380", "mymaster");
    BOOST_REQUIRE(e.has_value());
    BOOST_TEST(e->host == "10.0.0.2");
    BOOST_TEST(e->port == 6380);
    BOOST_TEST(!parse_switch_master("other 10.0.0.1 6379 10.0.0.2 6380", "mymaster"));
    BOOST_TEST(!parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2", "mymaster"));
    BOOST_TEST(!parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 0", "mymaster"));
    BOOST_TEST(!parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 x", "mymaster"));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_url_test
