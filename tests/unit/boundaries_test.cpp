// Tests at the edges where an off-by-one or an inverted term still passes the
// tests in the middle: the rate window sampled across its whole slide, and the
// presence expiry a re-join must push back (presence_store, memory_broker,
// testing::mock_broker). Each case here was checked against its planted bug
// (see docs/testing.md). The frame length forms at 125/126/65,535/65,536
// bytes are in ws_frame_test.cpp.
#include <flock/broker/memory.hpp>
#include <flock/detail/presence_store.hpp>
#include <flock/detail/refusal_log.hpp>
#include <flock/detail/rate_window.hpp>
#include <flock/testing/mock_broker.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace boundaries_test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct no_events : flk::broker_events {
    std::vector<std::pair<std::string, std::string>> evicted;
    void on_remote(std::string_view, flk::server_message const&) override {}
    void on_evicted(std::string_view room, std::string_view user) override { evicted.emplace_back(room, user); }
};

/// Spins until steady_clock has moved past `t`, so that "later" is strictly later.
inline steady::time_point strictly_after(steady::time_point t) {
    auto now = steady::now();
    while (now <= t) now = steady::now();
    return now;
}

BOOST_AUTO_TEST_SUITE(boundaries)

// --- rate_window ------------------------------------------------------------
//
// Fill one bucket with `limit` messages at t0, then probe at t0 + 1 s + d for
// d in {0.1, 0.5, 0.9}: the previous bucket still overlaps the last second by
// (1 - d), so about (1 - d) * limit of it counts and d * limit new messages fit.
// At 0.5 s both "1 - elapsed" and "elapsed" give the same answer; at 0.1 and
// 0.9 they differ by 0.8 * limit.

/// How many messages fit at t0 + offset after `limit` were sent at t0 (a fresh window each time).
inline std::uint32_t allowed_after_full_bucket(std::chrono::nanoseconds offset, std::uint32_t limit) {
    flk::detail::rate_window w;
    auto const t0 = steady::time_point{} + 1000s;
    for (std::uint32_t i = 0; i < limit; ++i) BOOST_REQUIRE(w.allow(t0, limit));
    BOOST_REQUIRE(!w.allow(t0, limit));  // full, and a refusal is not counted
    std::uint32_t n = 0;
    while (n <= 2 * limit && w.allow(t0 + offset, limit)) ++n;
    return n;
}

BOOST_AUTO_TEST_CASE(rate_window_slides_the_previous_second_out_linearly) {
    constexpr std::uint32_t limit = 100;
    // Inside the first second the bucket is simply full.
    BOOST_TEST(allowed_after_full_bucket(100ms, limit) == 0u);
    BOOST_TEST(allowed_after_full_bucket(500ms, limit) == 0u);
    BOOST_TEST(allowed_after_full_bucket(900ms, limit) == 0u);
    BOOST_TEST(allowed_after_full_bucket(999ms, limit) == 0u);
    // At exactly 1.0 s a new bucket starts and all of the old one still overlaps.
    BOOST_TEST(allowed_after_full_bucket(1000ms, limit) == 0u);
    // 1.1 s: 90% of the old bucket still counts, so about 10 more fit (not 90).
    auto const at_1_1 = allowed_after_full_bucket(1100ms, limit);
    BOOST_TEST(at_1_1 >= 9u);
    BOOST_TEST(at_1_1 <= 10u);
    // 1.5 s: half and half.
    auto const at_1_5 = allowed_after_full_bucket(1500ms, limit);
    BOOST_TEST(at_1_5 >= 49u);
    BOOST_TEST(at_1_5 <= 50u);
    // 1.9 s: 10% of the old bucket left, about 90 fit (not 10).
    auto const at_1_9 = allowed_after_full_bucket(1900ms, limit);
    BOOST_TEST(at_1_9 >= 89u);
    BOOST_TEST(at_1_9 <= 90u);
    // 2 s and later: the old bucket is forgotten.
    BOOST_TEST(allowed_after_full_bucket(2000ms, limit) == limit);
    BOOST_TEST(allowed_after_full_bucket(5000ms, limit) == limit);
}

BOOST_AUTO_TEST_CASE(rate_window_sampled_at_a_steady_rate_never_exceeds_the_limit_in_any_second) {
    // One message every 10 ms asked of a 50/s limit, for 3 s: in every
    // one-second window (sampled at 0.1 s steps) at most 50 are allowed, and
    // once past the first second (the burst that filled it is sliding out)
    // a steady sender is not starved: at least 40 get through per second.
    constexpr std::uint32_t limit = 50;
    flk::detail::rate_window w;
    auto const t0 = steady::time_point{} + 1000s;
    std::vector<std::chrono::milliseconds> allowed_at;
    for (auto t = 0ms; t < 3000ms; t += 10ms)
        if (w.allow(t0 + t, limit)) allowed_at.push_back(t);
    for (auto start = 0ms; start + 1000ms <= 3000ms; start += 100ms) {
        auto const n = std::count_if(allowed_at.begin(), allowed_at.end(),
                                     [&](auto t) { return t >= start && t < start + 1000ms; });
        BOOST_TEST(n <= static_cast<long>(limit), "window at " << start.count() << " ms: " << n);
        if (start >= 1000ms) BOOST_TEST(n >= 40, "window at " << start.count() << " ms: " << n);
    }
}

// --- presence expiry after a re-join ----------------------------------------

BOOST_AUTO_TEST_CASE(presence_store_rejoin_pushes_the_expiry_back) {
    flk::detail::presence_store store(10s);
    auto const t0 = steady::time_point{} + 1000s;
    BOOST_REQUIRE((store.join({"r", "u", {}, 10}, t0).outcome == flk::join_result::status::joined));
    BOOST_REQUIRE((store.join({"r", "u", {{"v", 2}}, 10}, t0 + 8s).outcome == flk::join_result::status::joined));
    BOOST_TEST(store.expire(t0 + 10s).empty());  // the first join's expiry no longer applies
    BOOST_TEST(store.find("r", "u") != nullptr);
    BOOST_TEST(store.expire(t0 + 18s - 1ns).empty());
    auto const gone = store.expire(t0 + 18s);  // ttl after the re-join
    BOOST_REQUIRE(gone.size() == 1u);
    BOOST_TEST(gone[0].second == "u");
}

BOOST_AUTO_TEST_CASE(memory_broker_rejoin_pushes_the_expiry_back) {
    boost::asio::io_context io;
    flk::options opts;
    opts.presence_ttl = 30s;
    no_events events;
    flk::memory_broker broker(io.get_executor(), opts, events);
    auto join = [&](flk::metadata meta) {
        std::optional<flk::join_result> out;
        broker.join({"room", "ann", std::move(meta), 10}, [&](flk::join_result r) { out = std::move(r); });
        BOOST_REQUIRE(out.has_value());
        BOOST_REQUIRE((out->outcome == flk::join_result::status::joined));
    };
    join({});
    auto const between = steady::now();  // after the first join's clock reading
    strictly_after(between);
    join({{"name", "Ann again"}});
    // Expired by the first join's deadline, but not by the re-join's.
    broker.expire_idle(between + opts.presence_ttl);
    BOOST_TEST(events.evicted.empty());
    BOOST_TEST(broker.store().find("room", "ann") != nullptr);
    broker.expire_idle(steady::now() + opts.presence_ttl);
    BOOST_TEST(events.evicted.size() == 1u);
}

BOOST_AUTO_TEST_CASE(mock_broker_rejoin_pushes_the_expiry_back) {
    boost::asio::io_context io;
    flk::options opts;
    opts.presence_ttl = 30s;
    no_events events;
    flk::testing::mock_broker broker(io.get_executor(), opts, events);
    broker.join({"room", "ann", {}, 10}, [](flk::join_result) {});
    auto const* e = broker.store().find("room", "ann");
    BOOST_REQUIRE(e != nullptr);
    auto const first = e->expires;
    strictly_after(first - opts.presence_ttl);
    broker.join({"room", "ann", {}, 10}, [](flk::join_result) {});
    e = broker.store().find("room", "ann");
    BOOST_REQUIRE(e != nullptr);
    BOOST_TEST((e->expires > first));
}

// ---- refusal_log: one log line per client address per interval ----------------------

BOOST_AUTO_TEST_CASE(a_refused_address_is_logged_again_once_a_whole_interval_has_passed) {
    flk::detail::refusal_log log(10s);
    steady::time_point const t0{};
    BOOST_TEST(log.should_log("192.0.2.1", t0));
    BOOST_TEST(!log.should_log("192.0.2.1", t0 + 9999ms));  // a flood from one client: one line
    BOOST_TEST(log.should_log("192.0.2.2", t0 + 1s));       // another client has its own line
    BOOST_TEST(log.should_log("192.0.2.1", t0 + 10s));      // exactly one interval later
    BOOST_TEST(!log.should_log("192.0.2.1", t0 + 19s));     // the interval restarts there
    BOOST_TEST(log.should_log("192.0.2.1", t0 + 20s));
}

BOOST_AUTO_TEST_CASE(an_interval_of_zero_logs_every_refusal) {
    flk::detail::refusal_log log(0s);
    steady::time_point const t0{};
    BOOST_TEST(log.should_log("192.0.2.1", t0));
    BOOST_TEST(log.should_log("192.0.2.1", t0));
    BOOST_TEST(log.size() == 0u);  // nothing to remember
}

BOOST_AUTO_TEST_CASE(a_flood_from_many_addresses_stays_bounded_and_is_logged_again_later) {
    flk::detail::refusal_log log(10s);
    steady::time_point const t0{};
    auto const full = flk::detail::refusal_log::max_addresses;
    for (std::size_t i = 0; i < full; ++i) BOOST_REQUIRE(log.should_log("a" + std::to_string(i), t0));
    BOOST_TEST(log.size() == full);
    // Full of addresses seen within the interval: a new one is not logged and
    // not remembered; a remembered one keeps its own interval.
    BOOST_TEST(!log.should_log("new", t0 + 5s));
    BOOST_TEST(log.size() == full);
    BOOST_TEST(!log.should_log("a0", t0 + 5s));
    BOOST_TEST(log.should_log("a0", t0 + 10s));
    // Once the others are older than an interval they are forgotten, and the
    // new address gets its line.
    BOOST_TEST(log.should_log("new", t0 + 11s));
    BOOST_TEST(log.size() == 2u);  // "a0" (renewed at 10 s) and "new"
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace boundaries_test
