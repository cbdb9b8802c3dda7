// The Redis broker's decisions without Redis or sockets: its view of rooms
// and members (detail/redis/membership.hpp), its reconnect backoff
// (detail/redis/reconnect.hpp) and Redis replies as error codes
// (detail/redis/error.hpp). Events in, verdicts out.
#include <flock/broker/redis_error.hpp>
#include <flock/detail/redis/error.hpp>
#include <flock/detail/redis/membership.hpp>
#include <flock/detail/redis/reconnect.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

namespace redis_membership_test {

namespace rk = flk::detail::redis;
using namespace std::chrono_literals;
using flk::server::member;
using clock_t_ = std::chrono::steady_clock;
using ids = std::vector<rk::membership::join_id>;

auto const t0 = clock_t_::time_point{} + 1h;

member m(std::string user, std::optional<flk::position> cursor = {}) {
    member x;
    x.user_id = std::move(user);
    x.cursor = cursor;
    return x;
}

std::vector<std::string> names(std::vector<member> const& ms) {
    std::vector<std::string> out;
    for (auto const& x : ms) out.push_back(x.user_id);
    return out;
}

/// A view following `room`, its SUBSCRIBE confirmed (both channels).
rk::membership following(std::string const& room) {
    rk::membership v;
    v.connection_up();
    BOOST_TEST(v.subscribe(room, true));
    BOOST_TEST(v.subscribe_confirmed(room).empty());
    BOOST_TEST(v.subscribe_confirmed(room).empty());
    BOOST_TEST(v.confirmed(room));
    return v;
}

/// `user` joined through this view (its script answered, nobody else there).
void join(rk::membership& v, std::string const& room, std::string const& user) {
    auto t = v.join_requested(room, user, "{}", "1000", t0);
    BOOST_TEST(!t.parked);
    std::vector<member> none;
    v.join_succeeded(room, user, t.id, none);
}

BOOST_AUTO_TEST_SUITE(redis_membership)

// ---- joins waiting for SUBSCRIBE ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_join_waits_until_both_channels_of_its_room_are_subscribed) {
    rk::membership v;
    v.connection_up();
    BOOST_TEST(v.subscribe("r", true));   // a new room: SUBSCRIBE it
    BOOST_TEST(!v.subscribe("r", true));  // already followed: nothing to send
    auto a = v.join_requested("r", "ada", "{}", "1", t0);
    auto b = v.join_requested("r", "bob", "{}", "2", t0);
    BOOST_TEST(a.parked);
    BOOST_TEST(b.parked);
    BOOST_TEST(v.subscribe_confirmed("r").empty());  // one channel of two
    BOOST_TEST((v.subscribe_confirmed("r") == ids{a.id, b.id}));
    BOOST_TEST(v.subscribe_confirmed("r").empty());  // released once
    // From now on a join into the room runs at once.
    BOOST_TEST(!v.join_requested("r", "cy", "{}", "3", t0).parked);
}

BOOST_AUTO_TEST_CASE(a_join_into_a_room_not_followed_is_not_parked) {
    rk::membership v;
    BOOST_TEST(!v.join_requested("r", "ada", "{}", "1", t0).parked);
}

BOOST_AUTO_TEST_CASE(unsubscribing_releases_the_parked_joins) {
    rk::membership v;
    v.connection_up();
    v.subscribe("r", true);
    auto a = v.join_requested("r", "ada", "{}", "1", t0);
    auto u = v.unsubscribe("r");
    BOOST_TEST(u.was_followed);
    BOOST_TEST((u.released == ids{a.id}));
    BOOST_TEST(!v.following("r"));
    BOOST_TEST(!v.unsubscribe("r").was_followed);
}

BOOST_AUTO_TEST_CASE(a_lost_connection_fails_the_parked_joins_and_the_next_one_subscribes_again) {
    rk::membership v;
    v.subscribe("r", false);  // down: nothing to send, the next connection subscribes
    auto a = v.join_requested("r", "ada", "{}", "1", t0);
    BOOST_TEST(a.parked);
    BOOST_TEST((v.connection_lost() == ids{a.id}));
    BOOST_TEST(v.connection_lost().empty());
    v.join_failed("r", "ada", a.id);
    BOOST_TEST(v.find_local("r", "ada") == nullptr);

    BOOST_TEST((v.connection_up() == std::vector<std::string>{"r"}));
    auto b = v.join_requested("r", "bob", "{}", "2", t0);
    BOOST_TEST(b.parked);
    v.subscribe_confirmed("r");
    BOOST_TEST((v.subscribe_confirmed("r") == ids{b.id}));
    // A reconnect needs a new confirmation before joins run.
    v.connection_lost();
    v.connection_up();
    BOOST_TEST(!v.confirmed("r"));
    BOOST_TEST(v.join_requested("r", "cy", "{}", "3", t0).parked);
}

// ---- local users ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_failed_join_is_forgotten_unless_a_newer_join_replaced_it) {
    auto v = following("r");
    auto first = v.join_requested("r", "ada", "{\"v\":1}", "1", t0);
    auto second = v.join_requested("r", "ada", "{\"v\":2}", "2", t0);
    v.join_failed("r", "ada", first.id);  // stale: the newer join stays
    BOOST_REQUIRE(v.find_local("r", "ada") != nullptr);
    BOOST_TEST(v.find_local("r", "ada")->meta_json == "{\"v\":2}");
    BOOST_TEST(v.find_local("r", "ada")->pending);
    v.join_failed("r", "ada", second.id);
    BOOST_TEST(v.find_local("r", "ada") == nullptr);
    BOOST_TEST(!v.known("r", "ada"));
}

BOOST_AUTO_TEST_CASE(a_leave_forgets_the_user_and_gives_its_joined_at_for_the_leave_script) {
    auto v = following("r");
    join(v, "r", "ada");
    BOOST_TEST((v.joined_locals() == std::vector<std::pair<std::string, std::string>>{{"r", "ada"}}));
    BOOST_TEST(v.leave("r", "ada") == "1000");
    BOOST_TEST(v.find_local("r", "ada") == nullptr);
    BOOST_TEST(!v.known("r", "ada"));
    BOOST_TEST(v.leave("r", "ada").empty());
}

BOOST_AUTO_TEST_CASE(only_answered_joins_are_announced_at_stop) {
    auto v = following("r");
    join(v, "r", "ada");
    v.join_requested("r", "bob", "{}", "2", t0);  // in flight
    BOOST_TEST((v.joined_locals() == std::vector<std::pair<std::string, std::string>>{{"r", "ada"}}));
}

BOOST_AUTO_TEST_CASE(a_snapshot_takes_the_cursors_this_instance_relayed) {
    auto v = following("r");
    join(v, "r", "me");
    v.find_local("r", "me")->cursor = flk::position{9, 9};
    v.remote_message("r", flk::server::user_joined{"r", "bob", {}});
    v.remote_message("r", flk::server::cursor_updated{"r", "bob", {0.5, 0.25}, 7});
    std::vector<member> others{m("bob", flk::position{0, 0}), m("me", flk::position{1, 1}), m("cy")};
    auto t = v.join_requested("r", "ada", "{}", "3", t0);
    v.join_succeeded("r", "ada", t.id, others);
    BOOST_TEST((others[0].cursor == flk::position{0.5, 0.25}));  // relayed beats Redis's lagging copy
    BOOST_TEST((others[1].cursor == flk::position{9, 9}));       // our own user's latest
    BOOST_TEST(!others[2].cursor);
    BOOST_TEST(!v.find_local("r", "ada")->pending);
    BOOST_TEST(v.known("r", "cy"));  // in the snapshot: known from now on
}

// ---- broadcasts of other instances and "re-joined elsewhere" ----------------------------

BOOST_AUTO_TEST_CASE(a_user_left_of_a_user_not_known_here_is_dropped) {
    auto v = following("r");
    BOOST_TEST(!v.remote_message("r", flk::server::user_left{"r", "ghost"}));
    BOOST_TEST(v.remote_message("r", flk::server::user_joined{"r", "bob", {}}));
    BOOST_TEST(v.known("r", "bob"));
    BOOST_TEST(v.remote_message("r", flk::server::user_left{"r", "bob"}));
    BOOST_TEST(!v.remote_message("r", flk::server::user_left{"r", "bob"}));  // told once
    BOOST_TEST(!v.remote_message("elsewhere", flk::server::user_joined{"elsewhere", "bob", {}}));
}

BOOST_AUTO_TEST_CASE(a_user_the_core_no_longer_holds_after_a_remote_join_is_no_longer_ours) {
    auto v = following("r");
    join(v, "r", "ada");
    v.remote_message("r", flk::server::user_joined{"r", "ada", {}});
    // The core still holds ada (it decided that was not a replacement): kept.
    BOOST_TEST(!v.remote_join_settled("r", "ada", true));
    BOOST_TEST(v.find_local("r", "ada") != nullptr);
    // The core replaced ada's socket: forgotten here, no restore, no leave at stop.
    BOOST_TEST(v.remote_join_settled("r", "ada", false));
    BOOST_TEST(v.find_local("r", "ada") == nullptr);
    BOOST_TEST(v.joined_locals().empty());
    BOOST_TEST(v.known("r", "ada"));  // present, on the other instance
}

BOOST_AUTO_TEST_CASE(a_join_in_flight_is_settled_by_its_answer_not_by_a_remote_join) {
    auto v = following("r");
    auto t = v.join_requested("r", "ada", "{}", "5", t0);
    v.remote_message("r", flk::server::user_joined{"r", "ada", {}});
    BOOST_TEST(!v.remote_join_settled("r", "ada", false));
    BOOST_REQUIRE(v.find_local("r", "ada") != nullptr);
    BOOST_TEST(v.find_local("r", "ada")->seq == t.id);
    // The core then leaves it: the leave script gets its joinedAt.
    BOOST_TEST(v.leave("r", "ada") == "5");
}

// ---- evictions -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(an_expiry_of_our_own_user_is_confirmed_first) {
    auto v = following("r");
    join(v, "r", "ada");
    v.remote_message("r", flk::server::user_joined{"r", "bob", {}});
    BOOST_TEST((v.expired("r", "ada") == rk::membership::expiry::confirm_first));
    BOOST_TEST((v.expired("r", "bob") == rk::membership::expiry::evict));
    BOOST_TEST((v.expired("other", "bob") == rk::membership::expiry::ignore));
}

BOOST_AUTO_TEST_CASE(an_eviction_is_reported_once_whoever_sees_it) {
    auto v = following("r");
    v.remote_message("r", flk::server::user_joined{"r", "bob", {}});
    auto e = v.evict("r", "bob");  // the expired event
    BOOST_TEST(e.report);
    BOOST_TEST(!e.forgot_local);
    BOOST_TEST(v.evicted("r", "bob"));
    BOOST_TEST(!v.known("r", "bob"));
    BOOST_TEST(!v.evict("r", "bob").report);  // the sweep, later
    BOOST_TEST(!v.evict("other", "bob").report);
    // Back (a user:joined): known again, and its next expiry is reported.
    v.remote_message("r", flk::server::user_joined{"r", "bob", {}});
    BOOST_TEST(!v.evicted("r", "bob"));
    BOOST_TEST(v.evict("r", "bob").report);
}

BOOST_AUTO_TEST_CASE(an_evicted_local_user_is_forgotten_but_not_one_whose_join_is_in_flight) {
    auto v = following("r");
    join(v, "r", "ada");
    auto e = v.evict("r", "ada");
    BOOST_TEST(e.report);
    BOOST_TEST(e.forgot_local);
    BOOST_TEST(v.find_local("r", "ada") == nullptr);

    v.join_requested("r", "bob", "{}", "2", t0);
    auto p = v.evict("r", "bob");  // its join is writing a fresh presence
    BOOST_TEST(!p.report);
    BOOST_TEST(v.find_local("r", "bob") != nullptr);
}

// ---- sweeps ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_sweep_evicts_the_gone_but_not_those_seen_alive_since_it_started) {
    auto v = following("r");
    v.remote_message("r", flk::server::user_joined{"r", "bob", {}});
    v.remote_message("r", flk::server::user_joined{"r", "cy", {}});
    auto issued = v.sweep_started();
    auto asked = v.known_users("r");
    std::sort(asked.begin(), asked.end());
    BOOST_TEST((asked == std::vector<std::string>{"bob", "cy"}));
    // cy moves while the sweep script runs: its verdict is void.
    v.remote_message("r", flk::server::cursor_updated{"r", "cy", {1, 1}, 1});
    auto verdict = v.sweep_reply("r", issued, {"bob", "cy"}, {});
    BOOST_TEST((verdict.evicted == std::vector<std::string>{"bob"}));
    BOOST_TEST(verdict.fresh.empty());
    BOOST_TEST(v.sweep_reply("gone", issued, {"bob"}, {}).evicted.empty());
}

BOOST_AUTO_TEST_CASE(a_sweep_spares_a_user_whose_join_is_in_flight) {
    auto v = following("r");
    v.join_requested("r", "ada", "{}", "1", t0);
    auto issued = v.sweep_started();
    BOOST_TEST(v.sweep_reply("r", issued, {"ada"}, {}).evicted.empty());
}

BOOST_AUTO_TEST_CASE(a_member_missed_while_disconnected_is_told_after_two_sweeps) {
    auto v = following("r");
    join(v, "r", "ada");
    std::vector<member> live{m("ada"), m("zed", flk::position{2, 3})};
    auto first = v.sweep_reply("r", v.sweep_started(), {}, live);
    BOOST_TEST(first.fresh.empty());  // a user:joined may still be on its way
    BOOST_TEST(v.unconfirmed("r", "zed"));
    BOOST_TEST(!v.unconfirmed("r", "ada"));  // ours
    auto second = v.sweep_reply("r", v.sweep_started(), {}, live);
    BOOST_TEST((names(second.fresh) == std::vector<std::string>{"zed"}));
    BOOST_TEST((second.fresh[0].cursor == flk::position{2, 3}));
    BOOST_TEST(v.known("r", "zed"));
    BOOST_TEST(!v.unconfirmed("r", "zed"));
    BOOST_TEST(v.sweep_reply("r", v.sweep_started(), {}, live).fresh.empty());  // told once
}

BOOST_AUTO_TEST_CASE(a_user_joined_arriving_between_sweeps_makes_the_member_known_not_fresh) {
    auto v = following("r");
    std::vector<member> live{m("zed")};
    v.sweep_reply("r", v.sweep_started(), {}, live);
    v.remote_message("r", flk::server::user_joined{"r", "zed", {}});
    BOOST_TEST(!v.unconfirmed("r", "zed"));
    BOOST_TEST(v.sweep_reply("r", v.sweep_started(), {}, live).fresh.empty());
}

BOOST_AUTO_TEST_CASE(a_reconnect_forgets_what_the_last_sweep_saw) {
    auto v = following("r");
    std::vector<member> live{m("zed")};
    v.sweep_reply("r", v.sweep_started(), {}, live);
    BOOST_TEST(v.unconfirmed("r", "zed"));
    v.connection_lost();
    v.connection_up();
    BOOST_TEST(!v.unconfirmed("r", "zed"));
    BOOST_TEST(v.sweep_reply("r", v.sweep_started(), {}, live).fresh.empty());
}

BOOST_AUTO_TEST_CASE(an_eviction_is_remembered_for_three_sweeps) {
    auto v = following("r");
    v.remote_message("r", flk::server::user_joined{"r", "bob", {}});
    BOOST_TEST(v.evict("r", "bob").report);
    for (int i = 0; i < 3; ++i) {
        v.sweep_reply("r", v.sweep_started(), {"bob"}, {});
        BOOST_TEST(v.evicted("r", "bob"));
        BOOST_TEST(!v.evict("r", "bob").report);
    }
    v.sweep_reply("r", v.sweep_started(), {}, {});
    BOOST_TEST(!v.evicted("r", "bob"));
}

BOOST_AUTO_TEST_SUITE_END()

// ---- reconnect and backoff ---------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(redis_reconnect)

BOOST_AUTO_TEST_CASE(delays_double_from_the_minimum_to_the_maximum_plus_the_jitter) {
    std::vector<long long> jitter_max;
    rk::reconnect_policy p(100ms, 1000ms, 2000ms, [&](long long max) {
        jitter_max.push_back(max);
        return max;  // the most jitter allowed
    });
    std::vector<long long> delays;
    for (int i = 0; i < 6; ++i) delays.push_back(p.connect_failed(flk::redis_errc::connect_failed, "x").retry_in.count());
    BOOST_TEST((jitter_max == std::vector<long long>{20, 40, 80, 160, 200, 200}));
    BOOST_TEST((delays == std::vector<long long>{120, 240, 480, 960, 1200, 1200}));
}

BOOST_AUTO_TEST_CASE(a_connection_restarts_the_backoff_and_a_loss_retries_after_the_minimum) {
    rk::reconnect_policy p(100ms, 1000ms, 2000ms, [](long long) { return 0; });
    p.connect_failed(flk::redis_errc::connect_failed, "a");
    p.connect_failed(flk::redis_errc::connect_failed, "a");
    BOOST_TEST(!p.up());
    BOOST_TEST(!p.connected(t0).reconnect);  // the first connection
    BOOST_TEST(p.up());
    BOOST_TEST(!p.error());
    BOOST_TEST(p.message().empty());
    auto lost = p.lost(flk::redis_errc::connection_lost, "gone");
    BOOST_TEST(lost.counts);
    BOOST_TEST(lost.retry_in.count() == 100);
    BOOST_TEST(!p.lost(flk::redis_errc::connection_lost, "again").counts);  // one loss, reported twice
    BOOST_TEST(p.message() == "gone");
    BOOST_TEST(p.connect_failed(flk::redis_errc::connect_failed, "b").retry_in.count() == 200);
    BOOST_TEST(p.connected(t0).reconnect);
}

BOOST_AUTO_TEST_CASE(a_new_master_from_the_sentinels_is_tried_after_the_minimum_again) {
    rk::reconnect_policy p(100ms, 1000ms, 2000ms, [](long long) { return 0; });
    for (int i = 0; i < 4; ++i) p.connect_failed(flk::redis_errc::connect_failed, "old master");
    BOOST_TEST(p.connect_failed(flk::redis_errc::connect_failed, "old master").retry_in.count() == 1000);
    p.reset_backoff();
    BOOST_TEST(p.connect_failed(flk::redis_errc::connect_failed, "new master").retry_in.count() == 100);
}

BOOST_AUTO_TEST_CASE(a_failure_is_reported_once_per_distinct_cause) {
    rk::reconnect_policy p(100ms, 1000ms, 2000ms, [](long long) { return 0; });
    auto a = p.connect_failed(flk::redis_errc::connect_failed, "refused");
    BOOST_TEST(a.first_report);
    BOOST_TEST(!a.was_up);
    BOOST_TEST(!p.connect_failed(flk::redis_errc::connect_failed, "refused").first_report);
    BOOST_TEST(p.connect_failed(flk::redis_errc::connect_timeout, "refused").first_report);
    BOOST_TEST(p.connect_failed(flk::redis_errc::connect_timeout, "timed out").first_report);
    BOOST_TEST((p.error() == flk::redis_errc::connect_timeout));
    p.connected(t0);
    p.lost(flk::redis_errc::connection_lost, "gone");
    auto b = p.connect_failed(flk::redis_errc::connect_failed, "refused");
    BOOST_TEST(b.first_report);
    BOOST_TEST(b.was_up);  // "unavailable, retrying", not "cannot connect"
}

BOOST_AUTO_TEST_CASE(sweeps_wait_for_the_restore_grace_after_a_reconnect_only) {
    rk::reconnect_policy p(100ms, 1000ms, 2000ms, [](long long) { return 0; });
    p.connected(t0);
    BOOST_TEST(p.may_sweep(t0));  // the first connection restores nothing
    p.lost(flk::redis_errc::connection_lost, "gone");
    p.connected(t0 + 10s);
    BOOST_TEST(!p.may_sweep(t0 + 11s));
    BOOST_TEST(p.may_sweep(t0 + 12s));
}

BOOST_AUTO_TEST_CASE(the_default_jitter_stays_within_a_fifth) {
    rk::reconnect_policy p(100ms, 100ms, 0ms);
    for (int i = 0; i < 50; ++i) {
        auto d = p.connect_failed(flk::redis_errc::connect_failed, "x").retry_in.count();
        BOOST_TEST((d >= 100 && d <= 120), d);
    }
}

BOOST_AUTO_TEST_SUITE_END()

// ---- errors as codes -----------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(redis_error)

rk::reply error_reply(std::string text) {
    rk::reply r;
    r.type = rk::reply::kind::error;
    r.str = std::move(text);
    return r;
}

BOOST_AUTO_TEST_CASE(an_error_reply_becomes_the_code_of_its_first_word) {
    BOOST_TEST((rk::error_of(error_reply("READONLY You can't write against a read only replica.")) ==
                flk::redis_errc::read_only_replica));
    BOOST_TEST((rk::error_of(error_reply("NOSCRIPT No matching script.")) == flk::redis_errc::no_script));
    BOOST_TEST((rk::error_of(error_reply("OOM command not allowed")) == flk::redis_errc::out_of_memory));
    BOOST_TEST((rk::error_of(error_reply("BUSY Redis is busy running a script")) == flk::redis_errc::busy));
    BOOST_TEST((rk::error_of(error_reply("NOAUTH Authentication required.")) == flk::redis_errc::auth_failed));
    BOOST_TEST((rk::error_of(error_reply("ERR unknown command")) == flk::redis_errc::server_error));
    BOOST_TEST((rk::error_of(error_reply("NOSCRIPTS not a code")) == flk::redis_errc::server_error));
    BOOST_TEST((rk::error_of(rk::reply::io_failure("not connected")) == flk::redis_errc::connection_lost));
    rk::reply ok;
    ok.type = rk::reply::kind::status;
    ok.str = "OK";
    BOOST_TEST(!rk::error_of(ok));
}

BOOST_AUTO_TEST_CASE(the_codes_have_a_category_and_a_message) {
    boost::system::error_code ec = flk::redis_errc::reply_timeout;
    BOOST_TEST(std::string(ec.category().name()) == "flock.redis");
    BOOST_TEST(ec.message() == "redis did not answer in time");
    BOOST_TEST((ec == flk::redis_errc::reply_timeout));
    BOOST_TEST((ec != flk::redis_errc::connection_lost));
}

BOOST_AUTO_TEST_CASE(every_code_has_a_message_of_its_own_for_the_log) {
    // last_error() and the log print these: a code without a case of its own
    // would print the "unknown" fallback, or another code's sentence.
    std::set<std::string> messages;
    int const first = static_cast<int>(flk::redis_errc::resolve_failed);
    int const last = static_cast<int>(flk::redis_errc::unexpected_reply);
    for (int e = first; e <= last; ++e) {
        auto const text = flk::redis_category().message(e);
        BOOST_TEST_CONTEXT("code " << e) {
            BOOST_TEST(text.find("redis") != std::string::npos);
            BOOST_TEST(text.find("unknown") == std::string::npos);
        }
        messages.insert(text);
    }
    BOOST_TEST(messages.size() == std::size_t(last - first + 1));
    BOOST_TEST(flk::redis_category().message(last + 1) == "unknown flock.redis error");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace redis_membership_test
