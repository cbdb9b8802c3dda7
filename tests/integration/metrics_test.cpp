// GET /metrics over real sockets: the counters an operator graphs move when
// users connect, join, move and leave, and the output is valid Prometheus
// text (`promtool check metrics`, from Debian's prometheus package).
#include <flock/flock.hpp>

#include "integration/redis_server.hpp"
#include "integration/ws_client.hpp"
#include "messages.hpp"
#include "strict.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

namespace metrics_test {

namespace msg = flk::test::msg;
using flk::test::ws_client;
using namespace std::chrono_literals;

/// One scrape: series ("name{labels}") to value.
using series = std::map<std::string, double>;

inline series parse(std::string const& body) {
    series out;
    std::size_t pos = 0;
    while (pos < body.size()) {
        auto end = body.find('\n', pos);
        if (end == std::string::npos) end = body.size();
        std::string line = body.substr(pos, end - pos);
        pos = end + 1;
        if (line.empty() || line[0] == '#') continue;
        auto space = line.rfind(' ');
        out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
}

inline bool have_promtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

/// What `promtool check metrics` says of `body`: "" when it passes.
inline std::string promtool_verdict(std::string const& body) {
    auto const dir = std::filesystem::temp_directory_path();
    auto const tag = std::to_string(std::random_device{}());
    auto const in = dir / ("flock-metrics-" + tag + ".txt");
    auto const out = dir / ("flock-promtool-" + tag + ".txt");
    std::ofstream(in) << body;
    int const rc = std::system(("promtool check metrics < '" + in.string() + "' > '" + out.string() + "' 2>&1").c_str());
    std::ifstream f(out);
    std::string said((std::istreambuf_iterator<char>(f)), {});
    std::filesystem::remove(in);
    std::filesystem::remove(out);
    if (rc == 0 && said.empty()) return {};
    return "promtool exit " + std::to_string(rc) + ": " + (said.empty() ? std::string("(nothing)") : said);
}

template <class Server>
struct server_fixture {
    flk::options opts = [] {
        flk::options o;
        o.host = "127.0.0.1";
        o.port = 0;
        o.threads = 2;
        o.log = flk::log_level::silent;
        return o;
    }();
    std::unique_ptr<flk::sharded_server<Server>> srv;

    void start() {
        srv = std::make_unique<flk::sharded_server<Server>>(opts);
        srv->start();
    }
    ~server_fixture() {
        if (!srv) return;
        std::promise<void> done;
        srv->stop([&] { done.set_value(); });
        done.get_future().wait_for(5s);
        srv->join();
    }
    std::uint16_t port() const { return srv->port(); }

    flk::test::http_response get_metrics() { return flk::test::http_get(port(), "/metrics"); }
    series scrape() {
        auto r = get_metrics();
        BOOST_TEST_REQUIRE(r.status == 200);
        return parse(r.body);
    }
    /// Scrapes until `ok` holds (the server counts on its own threads), or 5 s.
    template <class Pred>
    series scrape_until(Pred ok) {
        auto const deadline = std::chrono::steady_clock::now() + 5s;
        for (;;) {
            auto s = scrape();
            if (ok(s) || std::chrono::steady_clock::now() > deadline) return s;
            std::this_thread::sleep_for(10ms);  // polling an HTTP endpoint: nothing to wait on
        }
    }
};

using memory_fixture = server_fixture<flk::single_node_server>;

BOOST_AUTO_TEST_SUITE(metrics)

BOOST_FIXTURE_TEST_CASE(counters_move_as_users_connect_join_move_and_close, memory_fixture) {
    start();
    auto const before = scrape();
    BOOST_TEST(before.at("flock_connections_open") == 0);
    BOOST_TEST(before.at("flock_shards") == 2);

    ws_client a(port());
    a.send_text(msg::join("metrics-room", "alice", R"({"name":"Alice"})"));
    a.read_until_type("join:ack");
    ws_client b(port());
    b.send_text(msg::join("metrics-room", "bob", R"({"name":"Bob"})"));
    b.read_until_type("join:ack");
    a.read_until_type("user:joined");

    auto s = scrape();
    BOOST_TEST(s.at("flock_connections_open") == 2);
    BOOST_TEST(s.at("flock_shard_connections_open{shard=\"0\"}") + s.at("flock_shard_connections_open{shard=\"1\"}") ==
               2);
    BOOST_TEST(s.at("flock_connections_opened_total") == 2);
    BOOST_TEST(s.at("flock_members") == 2);
    BOOST_TEST(s.at("flock_rooms") >= 1);  // one room, counted once per shard holding a member
    BOOST_TEST(s.at("flock_messages_received_total{type=\"join\"}") == 2);
    BOOST_TEST(s.at("flock_messages_sent_total{type=\"join:ack\"}") == 2);
    BOOST_TEST(s.at("flock_messages_sent_total{type=\"user:joined\"}") == 1);
    BOOST_TEST(s.at("flock_join_duration_seconds_count") == 2);
    BOOST_TEST(s.at("flock_join_duration_seconds_bucket{le=\"+Inf\"}") == 2);
    BOOST_TEST(s.at("flock_received_bytes_total") > 0);
    BOOST_TEST(s.at("flock_sent_bytes_total") > 0);

    b.send_text(msg::move("metrics-room", 0.25, 0.75));
    a.read_until_type("cursor:updated");
    b.send_text("not json");  // dropped without an answer
    b.send_text(msg::in_room("heartbeat", "metrics-room"));
    b.read_until_type("heartbeat:ack");  // frames are handled in order: the bad one was counted
    s = scrape();
    BOOST_TEST(s.at("flock_messages_received_total{type=\"cursor:move\"}") == 1);
    BOOST_TEST(s.at("flock_messages_sent_total{type=\"cursor:updated\"}") == 1);
    BOOST_TEST(s.at("flock_messages_received_total{type=\"invalid\"}") == 1);
    BOOST_TEST(s.at("flock_messages_received_total{type=\"heartbeat\"}") == 1);
    BOOST_TEST(s.at("flock_messages_sent_total{type=\"heartbeat:ack\"}") == 1);

    b.close(4100);  // an application code: counted as "other"
    a.read_until_type("user:left");
    s = scrape();
    BOOST_TEST(s.at("flock_connections_open") == 1);
    BOOST_TEST(s.at("flock_members") == 1);
    BOOST_TEST(s.at("flock_connections_closed_total{code=\"other\"}") == 1);
    BOOST_TEST(s.at("flock_messages_sent_total{type=\"user:left\"}") == 1);

    a.close(1000);
    s = scrape_until([](series const& x) { return x.at("flock_connections_open") == 0; });
    BOOST_TEST(s.at("flock_connections_open") == 0);
    BOOST_TEST(s.at("flock_members") == 0);
    BOOST_TEST(s.at("flock_rooms") == 0);
    BOOST_TEST(s.at("flock_connections_closed_total{code=\"1000\"}") == 1);
}

BOOST_FIXTURE_TEST_CASE(refusals_and_drops_are_counted_by_reason, memory_fixture) {
    opts.api_keys = {"right-key"};
    opts.max_messages_per_second = 5;
    start();
    BOOST_TEST(ws_client::upgrade_status(port(), "/?apiKey=wrong-key") == 401);
    ws_client c(port(), "/?apiKey=right-key");
    c.send_text(msg::join("limits", "eve"));
    c.read_until_type("join:ack");
    for (int i = 0; i < 20; ++i) c.send_text(msg::in_room("heartbeat", "limits"));
    BOOST_TEST(c.wait_close() == 1008);
    auto s = scrape_until([](series const& x) { return x.at("flock_connections_open") == 0; });
    BOOST_TEST(s.at("flock_connections_refused_total{reason=\"unauthorized\"}") == 1);
    BOOST_TEST(s.at("flock_rate_limited_total") == 1);
    BOOST_TEST(s.at("flock_connections_closed_total{code=\"1008\"}") == 1);
    BOOST_TEST(s.at("flock_messages_received_total{type=\"heartbeat\"}") < 20);  // those past the limit are not handled
}

BOOST_FIXTURE_TEST_CASE(the_output_passes_promtool, memory_fixture) {
    start();
    ws_client c(port());
    c.send_text(msg::join("promtool", "pat"));
    c.read_until_type("join:ack");
    auto r = get_metrics();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    if (!flk_test::prerequisite(have_promtool(), "promtool check metrics",
                                "promtool is not installed (Debian package prometheus; .ci/install-deps)"))
        return;
    BOOST_TEST(promtool_verdict(r.body) == "");
}

BOOST_FIXTURE_TEST_CASE(a_token_guards_the_endpoint, memory_fixture) {
    opts.metrics_token = "s3cret-token";
    start();
    auto plain = get_metrics();
    BOOST_TEST(plain.status == 401);
    BOOST_TEST(plain.header("WWW-Authenticate") == "Bearer");
    BOOST_TEST(plain.body.find("flock_") == std::string::npos);
    auto ask = [&](std::string const& auth) {
        flk::test::raw_connection raw(port());
        raw.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth + "\r\nConnection: close\r\n\r\n");
        return raw.read_until_closed(5s).value_or("");
    };
    BOOST_TEST(ask("Bearer wrong-token").starts_with("HTTP/1.1 401"));
    auto ok = ask("Bearer s3cret-token");
    BOOST_TEST(ok.starts_with("HTTP/1.1 200"));
    BOOST_TEST(ok.find("flock_connections_open 0") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(flock_metrics_0_turns_it_off, memory_fixture) {
    opts.metrics = false;
    start();
    BOOST_TEST(get_metrics().status == 404);
    BOOST_TEST(flk::test::http_get(port(), "/health").status == 200);
}

using redis_fixture_t = server_fixture<flk::redis_scaled_server>;

BOOST_FIXTURE_TEST_CASE(redis_figures_move_and_pass_promtool, redis_fixture_t) {
    std::string url;
    try {
        url = redis_fixture::redis_server::shared().url();
    } catch (std::exception const& e) {
        flk_test::prerequisite(false, "redis metrics", e.what());
        return;
    }
    opts.redis_url = url;
    opts.threads = 1;
    start();
    server_fixture<flk::redis_scaled_server> other;  // a second instance on the same Redis
    other.opts.redis_url = url;
    other.opts.threads = 1;
    other.start();
    scrape_until([](series const& x) { return x.at("flock_redis_up") == 1; });
    other.scrape_until([](series const& x) { return x.at("flock_redis_up") == 1; });

    auto const room = "metrics-redis-" + std::to_string(std::random_device{}());
    ws_client a(port());
    a.send_text(msg::join(room, "ann"));
    a.read_until_type("join:ack");
    ws_client b(other.port());
    b.send_text(msg::join(room, "ben"));
    b.read_until_type("join:ack");
    a.read_until_type("user:joined");  // came through Redis pub/sub
    auto const received_before = scrape().at("flock_redis_pubsub_received_total");
    b.send_text(msg::move(room, 0.5, 0.5));
    a.read_until_type("cursor:updated");

    auto s = scrape();
    BOOST_TEST(s.at("flock_redis_up") == 1);
    BOOST_TEST(s.at("flock_redis_commands_total") > 0);
    BOOST_TEST(s.at("flock_redis_round_trip_seconds_count") > 0);
    BOOST_TEST(s.at("flock_redis_published_total") >= 1);  // ann's user:joined
    BOOST_TEST(s.at("flock_redis_pubsub_received_total") >= received_before + 1);  // ben's cursor
    BOOST_TEST(s.at("flock_redis_reconnects_total") == 0);
    BOOST_TEST(other.scrape().at("flock_redis_published_total") >= 2);  // ben's user:joined and cursor
    if (!flk_test::prerequisite(have_promtool(), "promtool check metrics (redis)",
                                "promtool is not installed (Debian package prometheus; .ci/install-deps)"))
        return;
    BOOST_TEST(promtool_verdict(get_metrics().body) == "");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace metrics_test
