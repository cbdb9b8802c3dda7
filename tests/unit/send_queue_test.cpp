// flk::detail::send_queue: byte accounting, conflation for congested readers
// only, the in-flight frame.
#include <flock/detail/send_queue.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

namespace send_queue_test {

using flk::frame;
using flk::frame_kind;
using flk::detail::send_queue;
using result = send_queue::push_result;
constexpr auto keeping_up = send_queue::reader::keeping_up;
constexpr auto congested = send_queue::reader::congested;

inline frame cursor(std::uint64_t key, std::string body) {
    return frame::make(std::move(body), frame_kind::text, key, true);
}
inline frame event(std::uint64_t key, std::string body) {
    return frame::make(std::move(body), frame_kind::text, key, false);
}
inline std::string drain(send_queue& q) {
    std::string out;
    while (q.ready()) {
        if (!out.empty()) out += ',';
        out += q.start_write().view();
        q.finish_write();
    }
    return out;
}

}  // namespace send_queue_test

BOOST_AUTO_TEST_SUITE(send_queue_suite)

using namespace send_queue_test;

BOOST_AUTO_TEST_CASE(fifo_and_byte_accounting) {
    send_queue q(100);
    BOOST_TEST(q.empty());
    BOOST_TEST(!q.ready());
    BOOST_TEST((q.push(event(0, "aaa"), keeping_up) == result::queued));
    BOOST_TEST((q.push(event(0, "bb"), keeping_up) == result::queued));
    BOOST_TEST(q.bytes() == 5u);
    BOOST_TEST(q.size() == 2u);
    BOOST_TEST(q.ready());
    auto const& f = q.start_write();
    BOOST_TEST(f.view() == "aaa");
    BOOST_TEST(q.writing());
    BOOST_TEST(!q.ready());
    BOOST_TEST(q.bytes() == 5u);  // the in-flight frame still counts
    q.finish_write();
    BOOST_TEST(q.bytes() == 2u);
    BOOST_TEST(drain(q) == "bb");
    BOOST_TEST(q.empty());
    BOOST_TEST(q.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(shares_payload_instead_of_copying) {
    send_queue a(100), b(100);
    auto f = event(0, "broadcast");
    a.push(f, keeping_up);
    b.push(f, keeping_up);
    BOOST_TEST(f.bytes.use_count() == 3);
    BOOST_TEST(a.start_write().bytes.get() == b.start_write().bytes.get());
}

BOOST_AUTO_TEST_CASE(overflow_refuses_and_leaves_queue_unchanged) {
    send_queue q(10);
    BOOST_TEST((q.push(event(0, "12345"), keeping_up) == result::queued));
    BOOST_TEST((q.push(event(0, "12345"), keeping_up) == result::queued));
    BOOST_TEST(q.bytes() == 10u);
    BOOST_TEST((q.push(event(0, "x"), keeping_up) == result::overflow));
    BOOST_TEST(q.bytes() == 10u);
    BOOST_TEST(q.size() == 2u);
    send_queue small(4);
    BOOST_TEST((small.push(event(0, "12345"), keeping_up) == result::overflow));
    BOOST_TEST(small.empty());
}

BOOST_AUTO_TEST_CASE(conflates_newest_cursor_of_same_key) {
    send_queue q(1000);
    q.push(cursor(1, "a1"), congested);
    q.push(cursor(2, "b1"), congested);
    BOOST_TEST((q.push(cursor(1, "a2"), congested) == result::conflated));
    BOOST_TEST((q.push(cursor(1, "a3"), congested) == result::conflated));
    BOOST_TEST(q.size() == 2u);
    BOOST_TEST(q.bytes() == 4u);
    BOOST_TEST(drain(q) == "a3,b1");
}

BOOST_AUTO_TEST_CASE(conflation_keeps_byte_count_right_with_different_sizes) {
    send_queue q(10);
    q.push(cursor(1, "1234"), congested);
    BOOST_TEST((q.push(cursor(1, "12"), congested) == result::conflated));
    BOOST_TEST(q.bytes() == 2u);
    BOOST_TEST((q.push(cursor(1, "1234567890"), congested) == result::conflated));
    BOOST_TEST(q.bytes() == 10u);
    BOOST_TEST((q.push(cursor(1, "12345678901"), congested) == result::overflow));
    BOOST_TEST(q[0].view() == "1234567890");
}

BOOST_AUTO_TEST_CASE(non_conflatable_frame_of_same_key_stops_the_scan) {
    send_queue q(1000);
    q.push(cursor(1, "move1"), congested);
    q.push(event(1, "removed"), congested);
    // the newest frame of key 1 is an event: the cursor is appended after it
    BOOST_TEST((q.push(cursor(1, "move2"), congested) == result::queued));
    BOOST_TEST((q.push(cursor(1, "move3"), congested) == result::conflated));
    BOOST_TEST(drain(q) == "move1,removed,move3");
}

BOOST_AUTO_TEST_CASE(key_zero_and_non_conflatable_frames_are_never_conflated) {
    send_queue q(1000);
    q.push(cursor(0, "z1"), congested);
    BOOST_TEST((q.push(cursor(0, "z2"), congested) == result::queued));
    q.push(event(5, "e1"), congested);
    BOOST_TEST((q.push(event(5, "e2"), congested) == result::queued));
    BOOST_TEST(drain(q) == "z1,z2,e1,e2");
}

BOOST_AUTO_TEST_CASE(in_flight_frame_is_never_replaced) {
    send_queue q(1000);
    q.push(cursor(1, "old"), congested);
    auto const& w = q.start_write();
    BOOST_TEST(w.view() == "old");
    BOOST_TEST((q.push(cursor(1, "new1"), congested) == result::queued));
    BOOST_TEST((q.push(cursor(1, "new2"), congested) == result::conflated));
    BOOST_TEST(q.size() == 2u);
    q.finish_write();
    BOOST_TEST(drain(q) == "new2");
}

BOOST_AUTO_TEST_CASE(scan_is_bounded) {
    send_queue q(100000, 4);
    q.push(cursor(1, "a1"), congested);
    for (std::uint64_t k = 2; k < 6; ++k) q.push(cursor(k, "x"), congested);
    // key 1 lies 5 entries back, beyond the scan limit of 4: appended
    BOOST_TEST((q.push(cursor(1, "a2"), congested) == result::queued));
    BOOST_TEST(q.size() == 6u);
    // now the newest key-1 frame is at the back: replaced
    BOOST_TEST((q.push(cursor(1, "a3"), congested) == result::conflated));
    BOOST_TEST(drain(q) == "a1,x,x,x,x,a3");
}

BOOST_AUTO_TEST_CASE(drop_unsent_keeps_in_flight_frame) {
    send_queue q(1000);
    q.push(event(0, "first"), congested);
    q.push(event(0, "second"), congested);
    q.push(event(0, "third"), congested);
    auto const& w = q.start_write();
    auto payload = w.bytes;
    q.drop_unsent();
    BOOST_TEST(q.size() == 1u);
    BOOST_TEST(q.bytes() == 5u);
    BOOST_TEST(q.writing());
    BOOST_TEST(q[0].bytes.get() == payload.get());
    q.finish_write();
    BOOST_TEST(q.empty());
    BOOST_TEST(q.bytes() == 0u);
    q.push(event(0, "a"), congested);
    q.drop_unsent();
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(long_running_queue_compacts_and_stays_ordered) {
    send_queue q(1u << 20);
    std::string expected, got;
    int next = 0;
    for (int round = 0; round < 200; ++round) {
        for (int i = 0; i < 3; ++i) {
            auto s = std::to_string(next++);
            q.push(event(0, s), keeping_up);
            expected += s + ',';
        }
        for (int i = 0; i < 2 && q.ready(); ++i) {
            got += std::string(q.start_write().view()) + ',';
            q.finish_write();
        }
    }
    while (q.ready()) {
        got += std::string(q.start_write().view()) + ',';
        q.finish_write();
    }
    BOOST_TEST(got == expected);
    BOOST_TEST(q.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(gather_writer_drops_frames_written_whole_and_pins_a_cut_one) {
    send_queue q(100);
    q.push(cursor(1, "a1"), congested);
    q.push(cursor(2, "b1"), congested);
    q.push(cursor(3, "c1"), congested);
    // one gather write sent the first frame whole and cut the second
    q.finish_write();
    BOOST_TEST(!q.writing());
    q.start_write();
    BOOST_TEST(q.writing());
    // the cut frame is never replaced; a newer one of its key queues behind it
    BOOST_TEST((q.push(cursor(2, "b2"), congested) == result::queued));
    BOOST_TEST((q.push(cursor(3, "c2"), congested) == result::conflated));
    q.drop_unsent();
    BOOST_TEST(q.size() == 1u);
    BOOST_TEST(q[0].view() == "b1");
    BOOST_TEST(q.bytes() == 2u);
    q.finish_write();
    BOOST_TEST(q.empty());
    BOOST_TEST(q.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(a_reader_that_keeps_up_gets_every_cursor_in_order) {
    // 20 moves of one user queued in one turn of the loop: none replaced.
    send_queue q(1000);
    std::string expected;
    for (int i = 0; i < 20; ++i) {
        auto body = "m" + std::to_string(i);
        BOOST_TEST((q.push(cursor(1, body), keeping_up) == result::queued));
        expected += (i ? "," : "") + body;
    }
    BOOST_TEST(q.size() == 20u);
    BOOST_TEST(drain(q) == expected);
}

BOOST_AUTO_TEST_CASE(frames_queued_while_keeping_up_are_conflated_once_congested) {
    send_queue q(1000);
    q.push(cursor(1, "a1"), keeping_up);
    q.push(cursor(1, "a2"), keeping_up);
    q.start_write();  // a write was cut: the reader falls behind
    BOOST_TEST((q.push(cursor(1, "a3"), congested) == result::conflated));
    q.finish_write();
    BOOST_TEST(drain(q) == "a3");
}

BOOST_AUTO_TEST_CASE(a_congested_reader_costs_one_frame_per_user) {
    // A reader that stopped reading: 10,000 moves of 3 users leave 3 frames.
    send_queue q(1000);
    q.push(event(1, "joined"), keeping_up);
    q.start_write();
    for (int i = 0; i < 10000; ++i) q.push(cursor(1 + i % 3, "m" + std::to_string(i)), congested);
    BOOST_TEST(q.size() == 4u);
    BOOST_TEST(q.bytes() <= 6u + 3 * 5);
    q.finish_write();
    BOOST_TEST(drain(q) == "m9999,m9997,m9998");
}

BOOST_AUTO_TEST_SUITE_END()
