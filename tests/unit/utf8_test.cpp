// UTF-8 validation: flk::detail::utf8_validator on its own (every class of
// ill-formed sequence, pieces cut anywhere), and ws_reader failing text
// messages and close reasons with 1007 (RFC 6455, 8.1).
#include <flock/detail/utf8.hpp>
#include <flock/detail/ws_frame.hpp>

#include "unit/client_frame.hpp"

#include <boost/test/unit_test.hpp>

#include <span>
#include <string>
#include <vector>

namespace utf8_test {

using flk::detail::is_valid_utf8;
using flk::detail::utf8_validator;
using flk::detail::ws_opcode;
using flk::detail::ws_reader;
using result = ws_reader::result;

// Masked client frames, each with a short payload.
inline std::string masked(ws_opcode op, std::string_view payload, bool fin = true) {
    return flk::test::client_frame(op, payload, fin, "\x0f\xf0\xaa\x55");
}

/// An item copied out of the reader, so it outlives the next call.
struct seen {
    result what;
    bool text;
    std::string payload;
    std::uint16_t code;
};

/// The items a reader makes of `bytes`, up to need_more or its first error.
inline std::vector<seen> read_all(ws_reader& r, std::string& bytes) {
    std::vector<seen> out;
    std::span<char> in(bytes);
    for (;;) {
        auto const item = r.next(in, 1 << 20);
        if (item.what == result::need_more) return out;
        out.push_back({item.what, item.text, std::string(item.payload), item.code});
        if (item.what == result::error || item.what == result::close) return out;
    }
}

// Ill-formed, each for its own reason (Unicode 15, table 3-7; Markus Kuhn's
// UTF-8 decoder stress test).
std::vector<std::string> const ill_formed = {
    "\x80",                  // a lone continuation byte
    "\xBF",
    "\xC0\xAF",              // overlong '/'
    "\xC1\xBF",              // overlong, C1 is never valid
    "\xE0\x80\xAF",          // overlong 3-byte
    "\xE0\x9F\xBF",          // overlong: E0 needs A0..BF
    "\xF0\x8F\xBF\xBF",      // overlong: F0 needs 90..BF
    "\xED\xA0\x80",          // U+D800, a surrogate
    "\xED\xBF\xBF",          // U+DFFF
    "\xF4\x90\x80\x80",      // U+110000, past the last code point
    "\xF5\x80\x80\x80",      // F5..FF never appear
    "\xFF",
    "\xFE",
    "\xC3\x28",              // a lead byte followed by ASCII
    "\xE2\x82\x28",
    "\xF0\x9F\x98",          // cut short (invalid only as a whole)
    "a\xE2\x82",
};

}  // namespace utf8_test

BOOST_AUTO_TEST_SUITE(utf8)

using namespace utf8_test;

BOOST_AUTO_TEST_CASE(well_formed_text_of_every_length_is_accepted) {
    BOOST_TEST(is_valid_utf8(""));
    BOOST_TEST(is_valid_utf8("plain ASCII, long enough to take the eight-byte path twice"));
    BOOST_TEST(is_valid_utf8("\xC2\x80 \xDF\xBF"));                  // U+0080, U+07FF
    BOOST_TEST(is_valid_utf8("\xE0\xA0\x80 \xEF\xBF\xBF \xED\x9F\xBF"));  // U+0800, U+FFFF, U+D7FF
    BOOST_TEST(is_valid_utf8("\xF0\x90\x80\x80 \xF4\x8F\xBF\xBF"));  // U+10000, U+10FFFF
    BOOST_TEST(is_valid_utf8("{\"name\":\"Zo\xC3\xAB \xF0\x9F\x90\xA6 \xE6\x97\xA5\xE6\x9C\xAC\"}"));
}

BOOST_AUTO_TEST_CASE(every_class_of_ill_formed_sequence_is_refused) {
    for (auto const& bad : ill_formed) {
        BOOST_TEST(!is_valid_utf8(bad), "accepted " << bad.size() << " bytes");
        // also behind ASCII long enough for the fast path, and before more text
        BOOST_TEST(!is_valid_utf8("0123456789abcdef" + bad + "tail"));
    }
}

BOOST_AUTO_TEST_CASE(pieces_cut_anywhere_give_the_verdict_of_the_whole) {
    std::vector<std::string> samples = ill_formed;
    samples.push_back("caf\xC3\xA9 \xF0\x9F\x90\xA6 \xE6\x97\xA5 0123456789");
    for (auto const& s : samples) {
        bool const whole = is_valid_utf8(s);
        for (std::size_t cut = 0; cut <= s.size(); ++cut) {
            utf8_validator v;
            bool const ok = v.feed(s.substr(0, cut)) && v.feed(s.substr(cut)) && v.complete();
            BOOST_TEST(ok == whole);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_failed_validator_stays_failed_until_reset) {
    utf8_validator v;
    BOOST_TEST(!v.feed("\xFF"));
    BOOST_TEST(!v.feed("a"));
    BOOST_TEST(!v.complete());
    v.reset();
    BOOST_TEST(v.feed("a"));
    BOOST_TEST(v.complete());
}

BOOST_AUTO_TEST_CASE(a_text_frame_that_is_not_utf8_fails_with_1007) {
    ws_reader r;
    std::string bytes = masked(ws_opcode::text, "{\"a\":\"ok\"}") + masked(ws_opcode::text, "\xED\xA0\x80");
    auto items = read_all(r, bytes);
    BOOST_TEST_REQUIRE(items.size() == 2u);
    BOOST_TEST((items[0].what == result::message));  // the frame before it is handed out
    BOOST_TEST((items[1].what == result::error));
    BOOST_TEST(items[1].code == 1007);
}

BOOST_AUTO_TEST_CASE(binary_frames_are_not_checked) {
    ws_reader r;
    std::string bytes = masked(ws_opcode::binary, "\xFF\xFE\x00");
    auto items = read_all(r, bytes);
    BOOST_TEST_REQUIRE(items.size() == 1u);
    BOOST_TEST((items[0].what == result::message));
    BOOST_TEST(!items[0].text);
}

BOOST_AUTO_TEST_CASE(a_character_split_across_fragments_is_accepted) {
    ws_reader r;
    // U+1F426 split 1 + 3 bytes over two fragments, a ping between them.
    std::string bytes = masked(ws_opcode::text, "bird \xF0", false) + masked(ws_opcode::ping, "p") +
                        masked(ws_opcode::continuation, "\x9F\x90\xA6!");
    auto items = read_all(r, bytes);
    BOOST_TEST_REQUIRE(items.size() == 2u);
    BOOST_TEST((items[0].what == result::ping));
    BOOST_TEST((items[1].what == result::message));
    BOOST_TEST(items[1].payload == "bird \xF0\x9F\x90\xA6!");
}

BOOST_AUTO_TEST_CASE(a_bad_fragment_fails_at_once_not_at_the_end) {
    ws_reader r;
    std::string first = masked(ws_opcode::text, "ok \xC3", false);
    BOOST_TEST(read_all(r, first).empty());
    std::string second = masked(ws_opcode::continuation, "\x28 bad", false);  // C3 28: no message end yet
    auto items = read_all(r, second);
    BOOST_TEST_REQUIRE(items.size() == 1u);
    BOOST_TEST((items[0].what == result::error));
    BOOST_TEST(items[0].code == 1007);
}

BOOST_AUTO_TEST_CASE(a_message_that_ends_inside_a_character_fails) {
    ws_reader r;
    std::string bytes = masked(ws_opcode::text, "abc", false) + masked(ws_opcode::continuation, "\xE2\x82");
    auto items = read_all(r, bytes);
    BOOST_TEST_REQUIRE(items.size() == 1u);
    BOOST_TEST((items[0].what == result::error));
    BOOST_TEST(items[0].code == 1007);
}

BOOST_AUTO_TEST_CASE(a_close_reason_that_is_not_utf8_fails_with_1007) {
    ws_reader good;
    std::string ok = masked(ws_opcode::close, std::string("\x03\xE8", 2) + "bye \xC3\xA9");
    auto items = read_all(good, ok);
    BOOST_TEST_REQUIRE(items.size() == 1u);
    BOOST_TEST((items[0].what == result::close));
    BOOST_TEST(items[0].code == 1000);

    ws_reader bad;
    std::string bytes = masked(ws_opcode::close, std::string("\x03\xE8", 2) + "\xC3");
    items = read_all(bad, bytes);
    BOOST_TEST_REQUIRE(items.size() == 1u);
    BOOST_TEST((items[0].what == result::error));
    BOOST_TEST(items[0].code == 1007);
}

BOOST_AUTO_TEST_SUITE_END()
