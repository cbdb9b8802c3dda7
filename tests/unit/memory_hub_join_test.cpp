// A join racing another shard's join of the same room, through a memory_hub:
// every joiner hears of each newcomer exactly once, by the join:ack snapshot
// or by a later user:joined, never both and never neither; and a stale
// socket's leave from another shard never removes the live user.
//
// The race (seen as a flaky browser scenario d against a 2-shard flock-server):
// the owner admits Ann for shard 0 and answers; before shard 0 has run that
// answer and published Ann's user:joined, Ben's join is admitted by the owner
// with a snapshot that has Ann; then Ann's user:joined, passing through the
// owner, reaches Ben's shard too. Each shard's io_context is run by hand here,
// so every interleaving is explicit.
#include <flock/broker/memory.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace memory_hub_join_test {

// What a core on one shard hears: remote broadcasts, in order.
struct shard_events : flk::broker_events {
    std::vector<flk::server_message> remote;
    void on_remote(std::string_view, flk::server_message const& m) override { remote.push_back(m); }
    void on_evicted(std::string_view, std::string_view) override {}
};

template <std::size_t N>
struct hub_fixture {
    static constexpr std::size_t n = N;
    flk::options opts;
    flk::memory_hub hub{n};
    std::array<boost::asio::io_context, n> io;
    std::array<shard_events, n> events;
    std::vector<std::unique_ptr<flk::memory_broker>> brokers;

    hub_fixture() {
        for (std::size_t i = 0; i < n; ++i)
            brokers.push_back(std::make_unique<flk::memory_broker>(io[i].get_executor(), opts, events[i], hub, i));
        for (auto& b : brokers) b->start();
    }
    flk::memory_broker& shard(std::size_t i) { return *brokers[i]; }

    // Runs shard `i`'s ready work (its hand-offs to others are posted, not run).
    void run(std::size_t i) {
        io[i].poll();
        io[i].restart();
    }
    void settle() {
        for (bool ran = true; ran;) {
            ran = false;
            for (auto& ctx : io) {
                ran = ctx.poll() != 0 || ran;
                ctx.restart();
            }
        }
    }
    std::string room_owned_by(std::size_t owner) {
        for (int i = 0;; ++i)
            if (auto r = "room-" + std::to_string(i); hub.owner_of(r) == owner) return r;
    }

    // A joiner as the core is one: it subscribes the room first, and once its
    // join is answered it publishes its user:joined from the handler. Records
    // its snapshot and how many remote broadcasts its shard had heard by then.
    struct joiner {
        std::optional<flk::join_result> ack;
        std::size_t heard_before_ack = 0;
    };
    void join(std::size_t on, std::string const& room, std::string const& user, joiner& j) {
        shard(on).subscribe(room);
        shard(on).join({room, user, {}, 10}, [this, on, room, user, &j](flk::join_result r) {
            j.heard_before_ack = events[on].remote.size();
            j.ack = std::move(r);
            shard(on).publish(room, flk::server::user_joined{room, user, {}});
        });
    }

    static bool in_snapshot(joiner const& j, std::string_view user) {
        return std::ranges::any_of(j.ack->others, [&](auto const& m) { return m.user_id == user; });
    }
    // user:joined for `user` that shard `on` heard after `j`'s join was answered.
    std::size_t joined_after_ack(std::size_t on, joiner const& j, std::string_view user) const {
        auto const& got = events[on].remote;
        return std::count_if(got.begin() + static_cast<std::ptrdiff_t>(j.heard_before_ack), got.end(),
                             [&](flk::server_message const& m) {
                                 auto* uj = std::get_if<flk::server::user_joined>(&m);
                                 return uj && uj->user_id == user;
                             });
    }
    // `j`, on shard `on`, learns of `user` exactly once.
    void expect_told_once(std::size_t on, joiner const& j, std::string_view user) {
        BOOST_TEST_REQUIRE(j.ack.has_value());
        BOOST_TEST((j.ack->outcome == flk::join_result::status::joined));
        auto told = (in_snapshot(j, user) ? 1u : 0u) + joined_after_ack(on, j, user);
        BOOST_TEST(told == 1u, user << " told " << told << " times (snapshot: " << in_snapshot(j, user) << ")");
    }
};

BOOST_AUTO_TEST_SUITE(memory_hub_join)

// Browser scenario d on two shards: Ann on shard 0, Ben on shard 1, which
// owns the room and admits Ben in the window before Ann's user:joined.
BOOST_FIXTURE_TEST_CASE(a_local_join_at_the_owner_inside_another_shards_join_window, hub_fixture<2>) {
    auto room = room_owned_by(1);
    joiner ann, ben;
    join(0, room, "ann", ann);
    run(0);  // shard 0's batch (subscribe, join) goes to the owner
    run(1);  // the owner admits Ann; its answer is posted to shard 0, not yet run
    BOOST_TEST_REQUIRE(!ann.ack.has_value());
    join(1, room, "ben", ben);  // at the owner: answered right away
    BOOST_TEST_REQUIRE(ben.ack.has_value());
    settle();  // shard 0 runs Ann's answer and publishes her user:joined
    BOOST_TEST_REQUIRE(ann.ack.has_value());
    expect_told_once(1, ben, "ann");
    expect_told_once(0, ann, "ben");
    // Once announced, Ann is in every snapshot again.
    joiner cara;
    join(0, room, "cara", cara);
    settle();
    BOOST_TEST(in_snapshot(cara, "ann"));
    BOOST_TEST(in_snapshot(cara, "ben"));
}

// Three shards: the owner admits Ben for shard 1 between admitting Ann for
// shard 0 and Ann's user:joined coming back through it.
BOOST_FIXTURE_TEST_CASE(a_join_from_a_third_shard_inside_the_window, hub_fixture<3>) {
    auto room = room_owned_by(2);
    joiner ann, ben;
    join(0, room, "ann", ann);
    run(0);
    run(2);  // Ann admitted; her answer waits in shard 0's queue
    join(1, room, "ben", ben);
    run(1);
    run(2);  // Ben admitted
    run(1);  // and answered, before shard 0 has run Ann's answer
    BOOST_TEST_REQUIRE(ben.ack.has_value());
    BOOST_TEST_REQUIRE(!ann.ack.has_value());
    settle();
    expect_told_once(1, ben, "ann");
    expect_told_once(0, ann, "ben");
}

// Both on the newcomer's shard: that shard runs Ann's answer (and tells its
// joined members) before Ben is in, so Ben must find Ann in his snapshot,
// as no user:joined of hers will come back to that shard.
BOOST_FIXTURE_TEST_CASE(a_join_on_the_newcomers_own_shard_keeps_it_in_the_snapshot, hub_fixture<2>) {
    auto room = room_owned_by(1);
    joiner ann, ben;
    join(0, room, "ann", ann);
    join(0, room, "ben", ben);  // one batch: the owner admits both in one turn
    settle();
    BOOST_TEST_REQUIRE(ben.ack.has_value());
    BOOST_TEST(in_snapshot(ben, "ann"));
    BOOST_TEST(events[0].remote.empty());  // a shard never hears its own broadcasts back
}

// A newcomer stays out of other shards' snapshots only until its shard has run
// the answer, even when that shard announces nothing (its join was undone).
BOOST_FIXTURE_TEST_CASE(a_newcomer_is_in_snapshots_again_once_its_shard_ran_the_answer, hub_fixture<2>) {
    auto room = room_owned_by(1);
    std::optional<flk::join_result> ann;
    shard(0).join({room, "ann", {}, 10}, [&](flk::join_result r) { ann = std::move(r); });  // publishes nothing
    settle();
    BOOST_TEST_REQUIRE(ann.has_value());
    joiner ben;
    join(1, room, "ben", ben);
    BOOST_TEST(in_snapshot(ben, "ann"));
}

// Browser scenario f on two shards: Ben's client drops a frozen socket on
// shard 0 and re-joins on shard 1, which owns the room; the old socket's
// leave reaches the owner after the new join and must not remove him.
BOOST_FIXTURE_TEST_CASE(a_stale_sockets_leave_from_another_shard_keeps_the_live_user, hub_fixture<2>) {
    auto room = room_owned_by(1);
    joiner old_ben, ben, ann;
    join(0, room, "ben", old_ben);
    settle();
    join(1, room, "ben", ben);  // the new socket, at the owner
    shard(0).leave(room, "ben");  // the old socket's close
    settle();
    BOOST_TEST(shard(1).store().member_count(room) == 1u);
    join(0, room, "ann", ann);
    settle();
    BOOST_TEST_REQUIRE(ann.ack.has_value());
    BOOST_TEST(in_snapshot(ann, "ben"));
    // The live socket's own leave still removes him.
    shard(1).leave(room, "ben");
    settle();
    BOOST_TEST(shard(1).store().member_count(room) == 1u);  // Ann only
    joiner cara;
    join(0, room, "cara", cara);
    settle();
    BOOST_TEST(!in_snapshot(cara, "ben"));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace memory_hub_join_test
