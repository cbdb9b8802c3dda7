// RESP through hiredis (detail/redis/resp.hpp): what flock sends is what Redis
// reads, byte for byte, and what Redis answers comes out whole, however the
// bytes are split, with a broken stream reported rather than guessed at.
#include <flock/detail/redis/resp.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>
#include <vector>

BOOST_AUTO_TEST_SUITE(redis_resp)

namespace rk = flk::detail::redis;
using namespace std::string_literals;

BOOST_AUTO_TEST_CASE(a_command_is_a_resp_array_of_bulk_strings_binary_safe) {
    std::vector<std::string_view> args{"HSET", "flock:presence:r", "u", std::string_view("a\0\r\nb", 5)};
    BOOST_TEST(rk::format_command(args) ==
               "*4\r\n$4\r\nHSET\r\n$16\r\nflock:presence:r\r\n$1\r\nu\r\n$5\r\na\0\r\nb\r\n"s);
}

BOOST_AUTO_TEST_CASE(a_command_of_many_arguments_is_formatted_whole) {
    // More arguments than the formatter's on-stack arrays hold (an HMGET of a
    // large room, a cursor flush of many users).
    std::vector<std::string> owned;
    for (int i = 0; i < 40; ++i) owned.push_back("field-" + std::to_string(i));
    std::vector<std::string_view> args{"HMGET", "key"};
    for (auto const& s : owned) args.emplace_back(s);
    auto const wire = rk::format_command(args);
    std::string expected = "*42\r\n$5\r\nHMGET\r\n$3\r\nkey\r\n";
    for (auto const& s : owned) expected += "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
    BOOST_TEST(wire == expected);
}

BOOST_AUTO_TEST_CASE(replies_split_anywhere_come_out_whole_and_in_order) {
    std::string const wire = "+OK\r\n:42\r\n$-1\r\n*2\r\n$5\r\nhello\r\n*1\r\n-ERR nested\r\n-NOSCRIPT gone\r\n";
    rk::reader r;
    std::vector<rk::reply> got;
    for (char c : wire) {  // one byte at a time: the worst split a socket can make
        BOOST_REQUIRE(r.feed(&c, 1));
        while (auto reply = r.next()) got.push_back(std::move(*reply));
    }
    BOOST_TEST(!r.failed());
    BOOST_REQUIRE(got.size() == 5u);
    BOOST_TEST((got[0].type == rk::reply::kind::status && got[0].str == "OK"));
    BOOST_TEST((got[1].type == rk::reply::kind::integer && got[1].integer == 42));
    BOOST_TEST(got[2].is_nil());
    BOOST_REQUIRE(got[3].is_array());
    BOOST_REQUIRE(got[3].elements.size() == 2u);
    BOOST_TEST(got[3].elements[0].str == "hello");
    BOOST_TEST(got[3].elements[1].elements.at(0).is_error_code("ERR"));
    BOOST_TEST(got[4].is_error_code("NOSCRIPT"));
    BOOST_TEST(!got[4].is_error_code("NOSCRIP"));  // a code is a whole first word
}

BOOST_AUTO_TEST_CASE(a_stream_that_is_not_resp_is_reported_not_guessed_at) {
    rk::reader r;
    std::string const junk = "HTTP/1.1 400 Bad Request\r\n";  // a port that is not Redis
    r.feed(junk.data(), junk.size());
    BOOST_TEST(!r.next().has_value());
    BOOST_TEST(r.failed());
    BOOST_TEST(!r.error().empty());
}

BOOST_AUTO_TEST_SUITE_END()
