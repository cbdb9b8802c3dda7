// Options: the reference's defaults, FLOCK_* variables, and clear errors.
#include <flock/options.hpp>

#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

namespace options_test {

// A fake environment, so tests never touch the real one.
struct env {
    std::map<std::string, std::string> vars;
    flk::options read() const {
        return flk::options::from_env([this](char const* name) -> char const* {
            auto it = vars.find(name);
            return it == vars.end() ? nullptr : it->second.c_str();
        });
    }
    // The message of the config_error reading this environment throws.
    std::string error() const {
        try {
            read();
        } catch (flk::config_error const& e) {
            return e.what();
        }
        return "no error";
    }
};

}  // namespace options_test

using options_test::env;

BOOST_AUTO_TEST_SUITE(options)

BOOST_AUTO_TEST_CASE(defaults_match_the_reference_server) {
    auto o = env{}.read();
    BOOST_TEST(o.port == 8787);
    BOOST_TEST(!o.redis_url.has_value());
    BOOST_TEST(o.api_keys.empty());
    BOOST_TEST(o.presence_ttl.count() == 30);
    BOOST_TEST(o.heartbeat_interval.count() == 10000);
    BOOST_TEST(o.max_messages_per_second == 100u);
    BOOST_TEST(o.max_room_size == 10u);
    BOOST_TEST(!o.admin_password.has_value());
    BOOST_TEST((o.log == flk::log_level::info));
    BOOST_TEST(o.max_frame_bytes == 65536u);
}

BOOST_AUTO_TEST_CASE(limits_for_hostile_clients_are_read) {
    auto d = env{}.read();
    BOOST_TEST(d.allowed_origins.empty());
    BOOST_TEST(d.max_connections == 0u);
    BOOST_TEST(d.max_connections_per_ip == 0u);
    BOOST_TEST(d.join_timeout.count() == 30000);
    BOOST_TEST(d.write_stall.count() == 30000);
    env e{{{"FLOCK_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000"},
           {"FLOCK_MAX_CONNECTIONS", "5000"},
           {"FLOCK_MAX_CONNECTIONS_PER_IP", "20"},
           {"FLOCK_JOIN_TIMEOUT_MS", "0"},
           {"FLOCK_WRITE_STALL_MS", "1500"},
           {"FLOCK_WRITE_DELAY_MS", "20"}}};
    auto o = e.read();
    BOOST_TEST(o.write_delay.count() == 20);
    BOOST_TEST(flk::options{}.write_delay.count() == 0);  // off unless asked for
    env const long_delay{{{"FLOCK_WRITE_DELAY_MS", "1001"}}};
    BOOST_TEST(long_delay.error().starts_with("FLOCK_WRITE_DELAY_MS must be"));
    BOOST_TEST(o.allowed_origins == (std::vector<std::string>{"https://a.example", "http://localhost:3000"}),
               boost::test_tools::per_element());
    BOOST_TEST(o.origin_allowed("HTTPS://A.EXAMPLE"));
    BOOST_TEST(!o.origin_allowed("https://a.example.evil"));
    BOOST_TEST(o.max_connections == 5000u);
    BOOST_TEST(o.max_connections_per_ip == 20u);
    BOOST_TEST(o.join_timeout.count() == 0);
    BOOST_TEST(o.write_stall.count() == 1500);
    env const many{{{"FLOCK_MAX_CONNECTIONS", "many"}}};
    BOOST_TEST(many.error().starts_with("FLOCK_MAX_CONNECTIONS must be"));
    env const none{{{"FLOCK_ALLOWED_ORIGINS", " , "}}};
    BOOST_TEST(none.error().starts_with("FLOCK_ALLOWED_ORIGINS holds no value"));
}

BOOST_AUTO_TEST_CASE(api_keys_are_matched_exactly_whatever_their_length) {
    flk::options o;
    o.api_keys = {"secret-key", "k2"};
    BOOST_TEST(o.api_key_accepted("secret-key"));
    BOOST_TEST(o.api_key_accepted("k2"));
    for (auto guess : {"", "s", "secret-ke", "secret-keyy", "secret-kez", "SECRET-KEY", "k", "k2k2", "secret-keysecret-key"})
        BOOST_TEST(!o.api_key_accepted(guess), guess);
}

BOOST_AUTO_TEST_CASE(every_variable_is_read) {
    env e{{{"FLOCK_PORT", "9000"},
           {"FLOCK_HOST", "127.0.0.1"},
           {"FLOCK_REDIS_URL", "redis://localhost:6380/2"},
           {"FLOCK_API_KEYS", "alpha, beta,,gamma"},
           {"FLOCK_PRESENCE_TTL_SECONDS", "5"},
           {"FLOCK_HEARTBEAT_INTERVAL_MS", "2500"},
           {"FLOCK_MAX_MESSAGES_PER_SECOND", "50"},
           {"FLOCK_MAX_ROOM_SIZE", "3"},
           {"FLOCK_ADMIN_PASSWORD", "s3cret"},
           {"FLOCK_LOG_LEVEL", "debug"},
           {"FLOCK_MAX_FRAME_BYTES", "4096"},
           {"FLOCK_MAX_METADATA_BYTES", "512"},
           {"FLOCK_MAX_ID_LENGTH", "64"},
           {"FLOCK_MAX_ROOMS_PER_CONNECTION", "4"},
           {"FLOCK_MAX_SEND_QUEUE_BYTES", "8192"},
           {"FLOCK_HANDSHAKE_TIMEOUT_MS", "1500"},
           {"FLOCK_IDLE_TIMEOUT_MS", "20000"},
           {"FLOCK_THREADS", "3"},
           {"FLOCK_DEMO", "1"}}};
    auto o = e.read();
    BOOST_TEST(o.port == 9000);
    BOOST_TEST(o.host == "127.0.0.1");
    BOOST_TEST(*o.redis_url == "redis://localhost:6380/2");
    BOOST_TEST(o.api_keys == (std::vector<std::string>{"alpha", "beta", "gamma"}));
    BOOST_TEST(o.presence_ttl.count() == 5);
    BOOST_TEST(o.heartbeat_interval.count() == 2500);
    BOOST_TEST(o.max_messages_per_second == 50u);
    BOOST_TEST(o.max_room_size == 3u);
    BOOST_TEST(*o.admin_password == "s3cret");
    BOOST_TEST((o.log == flk::log_level::debug));
    BOOST_TEST(o.max_frame_bytes == 4096u);
    BOOST_TEST(o.max_metadata_bytes == 512u);
    BOOST_TEST(o.max_id_length == 64u);
    BOOST_TEST(o.max_rooms_per_connection == 4u);
    BOOST_TEST(o.max_send_queue_bytes == 8192u);
    BOOST_TEST(o.handshake_timeout.count() == 1500);
    BOOST_TEST(o.idle_timeout.count() == 20000);
    BOOST_TEST(o.threads == 3u);
    BOOST_TEST(o.demo);
}

BOOST_AUTO_TEST_CASE(empty_variables_keep_the_default) {
    auto o = env{{{"FLOCK_PORT", ""}, {"FLOCK_LOG_LEVEL", ""}}}.read();
    BOOST_TEST(o.port == 8787);
    BOOST_TEST(o.threads == 0u);  // one event loop per core
    BOOST_TEST(!o.demo);          // production servers do not serve the demo page
    BOOST_TEST((!env{{{"FLOCK_DEMO", "false"}}}.read().demo));
    BOOST_TEST((env{{{"FLOCK_DEMO", "true"}}}.read().demo));
    BOOST_TEST(o.io_uring);  // writes batched where the kernel allows it
    BOOST_TEST((!env{{{"FLOCK_IO_URING", "0"}}}.read().io_uring));
}

BOOST_AUTO_TEST_CASE(invalid_values_name_the_variable) {
    auto check = [](char const* var, char const* value) {
        auto msg = env{{{var, value}}}.error();
        BOOST_TEST(msg.find(var) != std::string::npos, var << '=' << value << " -> " << msg);
        BOOST_TEST(msg.find(value) != std::string::npos, msg);
    };
    check("FLOCK_PORT", "http");
    check("FLOCK_PORT", "70000");
    check("FLOCK_PORT", "80x");
    check("FLOCK_PRESENCE_TTL_SECONDS", "-5");
    check("FLOCK_PRESENCE_TTL_SECONDS", "0");
    check("FLOCK_HEARTBEAT_INTERVAL_MS", "1.5");
    check("FLOCK_MAX_MESSAGES_PER_SECOND", "0");
    check("FLOCK_MAX_ROOM_SIZE", "ten");
    check("FLOCK_LOG_LEVEL", "loud");
    check("FLOCK_MAX_FRAME_BYTES", "16");
    check("FLOCK_IDLE_TIMEOUT_MS", "99999999999999999999999");
    check("FLOCK_THREADS", "all");
    check("FLOCK_THREADS", "5000");
    check("FLOCK_DEMO", "yes");
    check("FLOCK_IO_URING", "off");
}

BOOST_AUTO_TEST_CASE(metrics_settings) {
    auto d = env{{}}.read();
    BOOST_TEST(d.metrics);  // on by default (docs/metrics.md)
    BOOST_TEST(!d.metrics_token);
    BOOST_TEST(d.metrics_allow.empty());
    auto o = env{{{"FLOCK_METRICS", "0"}, {"FLOCK_METRICS_TOKEN", "t0ken"}, {"FLOCK_METRICS_ALLOW", "127.0.0.1, 10.0.0.5"}}}
                 .read();
    BOOST_TEST(!o.metrics);
    BOOST_TEST(*o.metrics_token == "t0ken");
    BOOST_TEST(o.metrics_allow == (std::vector<std::string>{"127.0.0.1", "10.0.0.5"}));
    auto bad = env{{{"FLOCK_METRICS", "maybe"}}}.error();
    BOOST_TEST(bad.find("FLOCK_METRICS") != std::string::npos, bad);
}

BOOST_AUTO_TEST_CASE(inconsistent_values_are_refused) {
    auto no_keys = env{{{"FLOCK_API_KEYS", ",,"}}}.error();
    BOOST_TEST(no_keys.find("FLOCK_API_KEYS") != std::string::npos);
    auto tiny_queue = env{{{"FLOCK_MAX_SEND_QUEUE_BYTES", "1000"}}}.error();
    BOOST_TEST(tiny_queue.find("FLOCK_MAX_SEND_QUEUE_BYTES") != std::string::npos);
    flk::options o;
    o.presence_ttl = std::chrono::seconds(0);
    BOOST_CHECK_THROW(o.validate(), flk::config_error);
}

BOOST_AUTO_TEST_CASE(log_fields_end_every_line_and_are_quoted_when_needed) {
    std::vector<std::string> lines;
    flk::options o;
    o.log = flk::log_level::info;
    o.log_sink = [&](flk::log_level, std::string_view line) { lines.emplace_back(line); };
    o.log_fields = {{"shard", "1"}, {"site", "eu west"}};
    auto log = o.make_logger();
    log.info("listening", {{"port", 8787}});
    log.debug("not at info");
    BOOST_TEST_REQUIRE(lines.size() == 1u);
    auto const& line = lines[0];
    BOOST_TEST(line.find(" msg=listening port=8787 shard=1 site=\"eu west\"") != std::string::npos, line);
    BOOST_TEST(line.ends_with("site=\"eu west\""), line);
}

BOOST_AUTO_TEST_SUITE_END()
