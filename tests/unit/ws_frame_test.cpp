// flk::detail ws framing (ws_frame.hpp): server headers, close payloads, and
// ws_reader on client frames: masking, the three length forms, many frames
// per read, fragmentation, control frames, every malformed case, limits, and
// a stream cut at every byte boundary.
#include <flock/detail/ws_frame.hpp>

#include "unit/client_frame.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ws_frame_test {

using flk::detail::ws_opcode;
using flk::detail::ws_reader;
using result = ws_reader::result;

inline constexpr std::size_t no_limit = std::size_t(1) << 40;

using flk::test::client_frame;

/// One item, copied out so it outlives the reader's buffers.
struct seen {
    result what;
    bool text;
    std::string payload;
    std::uint16_t code;
    bool operator==(seen const&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, seen const& s) {
    return os << "{" << static_cast<int>(s.what) << (s.text ? " text " : " bin ") << s.payload.size() << "B code "
              << s.code << "}";
}

/// Feeds `bytes` as one read; returns every item up to need_more.
inline std::vector<seen> feed(ws_reader& r, std::string bytes, std::size_t limit = no_limit) {
    std::vector<seen> out;
    std::span<char> in(bytes);
    for (;;) {
        auto const item = r.next(in, limit);
        if (item.what == result::need_more) {
            BOOST_TEST(in.empty());
            return out;
        }
        out.push_back({item.what, item.text, std::string(item.payload), item.code});
        if (item.what == result::error || item.what == result::close) return out;
    }
}

/// A single item from `bytes` fed as one read.
inline seen one(std::string bytes, std::size_t limit = no_limit) {
    ws_reader r;
    auto items = feed(r, std::move(bytes), limit);
    BOOST_REQUIRE_EQUAL(items.size(), 1u);
    return items.front();
}

inline std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
}

inline seen message(std::string payload, bool text = true) { return {result::message, text, std::move(payload), 0}; }

}  // namespace ws_frame_test

BOOST_AUTO_TEST_SUITE(ws_frame_suite)

using namespace ws_frame_test;

BOOST_AUTO_TEST_CASE(server_header_in_all_length_forms) {
    auto const h = [](std::uint64_t n, ws_opcode op = ws_opcode::text) {
        unsigned char buf[flk::detail::ws_max_header_bytes] = {};
        std::size_t const size = flk::detail::write_ws_header(buf, op, n);
        BOOST_TEST(size == flk::detail::ws_header_size(n));
        return std::vector<int>(buf, buf + size);
    };
    BOOST_TEST(h(0) == (std::vector<int>{0x81, 0}));
    BOOST_TEST(h(125, ws_opcode::binary) == (std::vector<int>{0x82, 125}));
    BOOST_TEST(h(126) == (std::vector<int>{0x81, 126, 0, 126}));
    BOOST_TEST(h(65535) == (std::vector<int>{0x81, 126, 0xFF, 0xFF}));
    BOOST_TEST(h(65536) == (std::vector<int>{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}));
    BOOST_TEST(h(0x0102030405060708ull, ws_opcode::close) ==
               (std::vector<int>{0x88, 127, 1, 2, 3, 4, 5, 6, 7, 8}));
    BOOST_TEST(flk::detail::ws_frame_bytes(ws_opcode::pong, "hi") == std::string("\x8A\x02hi", 4));
}

BOOST_AUTO_TEST_CASE(close_payload_cuts_the_reason_on_a_character_boundary) {
    using flk::detail::ws_close_payload;
    BOOST_TEST(ws_close_payload(1000, "bye") == std::string("\x03\xE8" "bye", 5));
    BOOST_TEST(ws_close_payload(1005, "ignored").empty());
    BOOST_TEST(ws_close_payload(4000, std::string(200, 'r')).size() == 125u);
    // 122 ASCII bytes, then a 2-byte character that would straddle byte 123
    std::string const reason = std::string(122, 'r') + "\xC3\xA9" + "tail";
    auto const p = ws_close_payload(1001, reason);
    BOOST_TEST(p.size() == 2u + 122u);
    BOOST_TEST(p.substr(2) == std::string(122, 'r'));
}

BOOST_AUTO_TEST_CASE(close_code_validity) {
    using flk::detail::ws_close_code_is_valid;
    for (std::uint16_t ok : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999})
        BOOST_TEST(ws_close_code_is_valid(ok), ok);
    for (std::uint16_t bad : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535})
        BOOST_TEST(!ws_close_code_is_valid(bad), bad);
}

BOOST_AUTO_TEST_CASE(masked_text_and_binary_messages) {
    BOOST_TEST(one(client_frame(ws_opcode::text, "hello")) == message("hello"));
    std::string const bin("\x00\x01\xFF\x80", 4);
    BOOST_TEST(one(client_frame(ws_opcode::binary, bin, true, std::string_view("\xFF\x00\xAA\x55", 4))) == message(bin, false));
    BOOST_TEST(one(client_frame(ws_opcode::text, "")) == message(""));
}

BOOST_AUTO_TEST_CASE(every_length_form) {
    for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(125), std::size_t(126), std::size_t(127),
                          std::size_t(65535), std::size_t(65536), std::size_t(200000)}) {
        auto const p = pattern(n);
        BOOST_TEST(one(client_frame(ws_opcode::binary, p)) == message(p, false), "length " << n);
    }
}

// The edges of the three length forms (7-bit up to 125, 16-bit 126..65,535,
// 64-bit from 65,536), every form at every edge, for the header the server
// writes and the header a client sends: a length in a longer form than it
// needs is a protocol error, in its own form it is read whole. Catches
// `<= 0xFFFF` turned into `< 0xFFFF` on either side.
BOOST_AUTO_TEST_CASE(every_length_form_at_its_edges) {
    using flk::detail::parse_ws_header;
    using flk::detail::ws_frame_header;
    using status = flk::detail::ws_header_result::status;
    struct edge {
        std::size_t n;
        int shortest;  // length bytes of the shortest form: 0, 2 or 8
    };
    for (auto const [n, shortest] : {edge{125, 0}, edge{126, 2}, edge{65535, 2}, edge{65536, 8}}) {
        // Server side: the header size and the length bytes.
        unsigned char buf[flk::detail::ws_max_header_bytes] = {};
        std::size_t const size = flk::detail::write_ws_header(buf, ws_opcode::binary, n);
        BOOST_TEST(size == std::size_t(2 + shortest), "server header for " << n);
        BOOST_TEST(flk::detail::ws_header_size(n) == size, "ws_header_size(" << n << ")");
        std::uint64_t written = shortest == 0 ? buf[1] : 0;
        BOOST_TEST(int(buf[1]) == (shortest == 0 ? int(n) : shortest == 2 ? 126 : 127), "length byte for " << n);
        for (int i = 0; i < shortest; ++i) written = (written << 8) | buf[2 + i];
        BOOST_TEST(written == n, "server length for " << n);

        // Client side: each form, only the shortest accepted.
        auto const p = pattern(n);
        for (int form : {0, 2, 8}) {
            if (form == 0 && n > 125) continue;  // does not fit 7 bits
            if (form == 2 && n > 0xFFFF) continue;  // does not fit 16 bits
            auto const bytes = client_frame(ws_opcode::binary, p, true, "\x12\x34\x56\x78", form);
            ws_frame_header h;
            auto const r = parse_ws_header(std::span<char const>(bytes), h);
            if (form == shortest) {
                BOOST_TEST((r.what == status::complete), n << " in " << form << " length bytes");
                BOOST_TEST(h.payload_size == n);
                BOOST_TEST(h.size == std::size_t(2 + form + 4));
                BOOST_TEST(one(bytes) == message(p, false), n << " in " << form << " length bytes");
            } else {
                BOOST_TEST((r.what == status::bad), n << " in " << form << " length bytes");
                BOOST_TEST(r.error == "length not in shortest form", n << " in " << form << " length bytes");
                auto const s = one(bytes);
                BOOST_TEST((s.what == result::error), n << " in " << form << " length bytes");
                BOOST_TEST(s.code == 1002);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(many_frames_in_one_read_keep_their_order) {
    std::string bytes;
    std::vector<seen> expected;
    for (int i = 0; i < 100; ++i) {
        bytes += client_frame(ws_opcode::text, std::to_string(i));
        expected.push_back(message(std::to_string(i)));
    }
    ws_reader r;
    BOOST_TEST(feed(r, bytes) == expected, boost::test_tools::per_element());
    BOOST_TEST(r.held_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(fragments_are_reassembled_around_control_frames) {
    std::string const bytes = client_frame(ws_opcode::text, "Hel", false) +
                              client_frame(ws_opcode::ping, "p1") +
                              client_frame(ws_opcode::continuation, "", false) +
                              client_frame(ws_opcode::pong, "") +
                              client_frame(ws_opcode::continuation, "lo") +
                              client_frame(ws_opcode::binary, "next");
    ws_reader r;
    std::vector<seen> const expected{{result::ping, false, "p1", 0}, {result::pong, false, "", 0}, message("Hello"),
                                     message("next", false)};
    BOOST_TEST(feed(r, bytes) == expected, boost::test_tools::per_element());
    BOOST_TEST(r.held_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(fragmented_binary_message_keeps_its_kind) {
    ws_reader r;
    auto const items = feed(r, client_frame(ws_opcode::binary, "ab", false) + client_frame(ws_opcode::continuation, "cd"));
    BOOST_TEST(items == std::vector<seen>{message("abcd", false)}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(close_frames) {
    BOOST_TEST(one(client_frame(ws_opcode::close, std::string("\x03\xE8" "bye", 5))) ==
               (seen{result::close, false, "bye", 1000}));
    BOOST_TEST(one(client_frame(ws_opcode::close, "")) == (seen{result::close, false, "", 1005}));
    BOOST_TEST(one(client_frame(ws_opcode::close, std::string("\x0F\xA0", 2))) == (seen{result::close, false, "", 4000}));
    BOOST_TEST(one(client_frame(ws_opcode::close, "x")).code == 1002);
    BOOST_TEST((one(client_frame(ws_opcode::close, "x")).what == result::error));
    BOOST_TEST(one(client_frame(ws_opcode::close, std::string("\x03\xED", 2))).code == 1002);  // 1005 is not sendable
    BOOST_TEST(one(client_frame(ws_opcode::close, std::string("\x00\x01", 2))).code == 1002);
}

BOOST_AUTO_TEST_CASE(control_payload_of_125_bytes_is_fine) {
    BOOST_TEST(one(client_frame(ws_opcode::ping, pattern(125))) == (seen{result::ping, false, pattern(125), 0}));
}

BOOST_AUTO_TEST_CASE(malformed_frames_are_protocol_errors) {
    auto const error = [](std::string bytes) {
        auto const s = one(std::move(bytes));
        BOOST_TEST((s.what == result::error));
        BOOST_TEST(s.code == 1002);
        return s.payload;
    };
    std::string f = client_frame(ws_opcode::text, "x");
    for (char rsv : {'\x40', '\x20', '\x10'}) {
        std::string g = f;
        g[0] = static_cast<char>(g[0] | rsv);
        BOOST_TEST(error(g) == "reserved bits set");
    }
    for (int op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
        std::string g = f;
        g[0] = static_cast<char>(0x80 | op);
        BOOST_TEST(error(g) == "unknown opcode", "opcode " << op);
    }
    BOOST_TEST(error(std::string("\x81\x01x", 3)) == "unmasked client frame");
    BOOST_TEST(error(client_frame(ws_opcode::ping, "x", false)) == "fragmented control frame");
    BOOST_TEST(error(client_frame(ws_opcode::close, "", false)) == "fragmented control frame");
    BOOST_TEST(error(client_frame(ws_opcode::ping, pattern(126))) == "control frame too long");
    BOOST_TEST(error(client_frame(ws_opcode::text, "short", true, "\x01\x02\x03\x04", 2)) == "length not in shortest form");
    BOOST_TEST(error(client_frame(ws_opcode::text, pattern(300), true, "\x01\x02\x03\x04", 8)) ==
               "length not in shortest form");
    BOOST_TEST(error(std::string("\x82\xFF\x80\0\0\0\0\0\0\0\1\2\3\4", 14)) == "length too large");
    BOOST_TEST(error(client_frame(ws_opcode::continuation, "x")) == "continuation without a message");
    BOOST_TEST(error(client_frame(ws_opcode::text, "a", false) + client_frame(ws_opcode::text, "b")) ==
               "new message inside a fragmented one");
    BOOST_TEST(error(client_frame(ws_opcode::text, "a", false) + client_frame(ws_opcode::binary, "b")) ==
               "new message inside a fragmented one");
}

BOOST_AUTO_TEST_CASE(a_message_over_the_limit_is_refused_from_its_header) {
    BOOST_TEST(one(client_frame(ws_opcode::text, pattern(1024)), 1024) == message(pattern(1024)));
    // only the header has arrived: refused at once, nothing kept
    std::string const big = client_frame(ws_opcode::text, pattern(2000)).substr(0, 8);
    auto const s = one(big, 1024);
    BOOST_TEST((s.what == result::error));
    BOOST_TEST(s.code == 1009);
    BOOST_TEST(s.payload == "message too big");
    // fragments: each small, the sum too big
    ws_reader r;
    auto const items = feed(r, client_frame(ws_opcode::text, pattern(600), false) +
                                   client_frame(ws_opcode::continuation, pattern(425)), 1024);
    BOOST_REQUIRE_EQUAL(items.size(), 1u);
    BOOST_TEST(items[0].code == 1009);
    // the sum exactly at the limit is fine
    ws_reader ok;
    auto const fine = feed(ok, client_frame(ws_opcode::text, pattern(600), false) +
                                   client_frame(ws_opcode::continuation, pattern(424)), 1024);
    BOOST_TEST(fine == std::vector<seen>{message(pattern(600) + pattern(424))}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(control_frames_do_not_count_against_the_limit) {
    ws_reader r;
    auto const items = feed(r, client_frame(ws_opcode::text, pattern(128), false) + client_frame(ws_opcode::ping, pattern(100)) +
                                   client_frame(ws_opcode::continuation, ""), 128);
    BOOST_REQUIRE_EQUAL(items.size(), 2u);
    BOOST_TEST((items[0].what == result::ping));
    BOOST_TEST(items[1] == message(pattern(128)));
}

BOOST_AUTO_TEST_CASE(a_stream_cut_at_every_frame_boundary) {
    // Every kind of frame, a fragmented message with a ping inside, and all three length forms.
    std::vector<std::string> const frames{client_frame(ws_opcode::text, "first"),
                                          client_frame(ws_opcode::binary, pattern(300), true, "\xA1\xB2\xC3\xD4"),
                                          client_frame(ws_opcode::text, "frag", false),
                                          client_frame(ws_opcode::ping, "mid"),
                                          client_frame(ws_opcode::continuation, "mented"),
                                          client_frame(ws_opcode::binary, pattern(70000), true, "\x01\x02\x03\x04"),
                                          client_frame(ws_opcode::pong, ""),
                                          client_frame(ws_opcode::text, ""),
                                          client_frame(ws_opcode::close, std::string("\x03\xE8" "end", 5))};
    std::string stream;
    std::vector<std::size_t> boundaries;
    for (auto const& f : frames) {
        boundaries.push_back(stream.size());
        stream += f;
    }
    std::vector<seen> const expected{message("first"),
                                     message(pattern(300), false),
                                     {result::ping, false, "mid", 0},
                                     message("fragmented"),
                                     message(pattern(70000), false),
                                     {result::pong, false, "", 0},
                                     message(""),
                                     {result::close, false, "end", 1000}};
    ws_reader whole;
    BOOST_TEST(feed(whole, stream) == expected, boost::test_tools::per_element());

    // Every cut within 20 bytes of a frame start (every header split, every
    // length form), and every 997th byte inside the long payloads; cutting
    // all 70 KB byte by byte adds nothing but minutes under the sanitizers.
    std::vector<std::size_t> cuts;
    for (auto b : boundaries)
        for (std::size_t c = b > 20 ? b - 20 : 1; c <= b + 20 && c < stream.size(); ++c) cuts.push_back(c);
    for (std::size_t c = 1; c < stream.size(); c += 997) cuts.push_back(c);
    for (auto cut : cuts) {
        ws_reader r;
        auto got = feed(r, stream.substr(0, cut));
        BOOST_TEST(r.held_bytes() <= cut);
        auto rest = feed(r, stream.substr(cut));
        got.insert(got.end(), rest.begin(), rest.end());
        if (got != expected) {
            BOOST_ERROR("stream cut at byte " << cut << " read differently");
            break;
        }
    }
}

BOOST_AUTO_TEST_CASE(a_stream_fed_one_byte_at_a_time) {
    std::string const stream = client_frame(ws_opcode::text, "ab", false) + client_frame(ws_opcode::ping, "p") +
                               client_frame(ws_opcode::continuation, "cd") +
                               client_frame(ws_opcode::binary, pattern(130));
    ws_reader r;
    std::vector<seen> got;
    for (char c : stream) {
        auto items = feed(r, std::string(1, c));
        got.insert(got.end(), items.begin(), items.end());
    }
    std::vector<seen> const expected{{result::ping, false, "p", 0}, message("abcd"), message(pattern(130), false)};
    BOOST_TEST(got == expected, boost::test_tools::per_element());
    BOOST_TEST(r.held_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(nothing_is_held_once_everything_is_consumed) {
    ws_reader r;
    std::string const f = client_frame(ws_opcode::text, pattern(500));
    BOOST_TEST(feed(r, f.substr(0, 100)).empty());
    BOOST_TEST(r.held_bytes() == 100u);
    BOOST_TEST(feed(r, f.substr(100)) == std::vector<seen>{message(pattern(500))}, boost::test_tools::per_element());
    // the message was handed out of the held block; the next call frees it
    BOOST_TEST(feed(r, "").empty());
    BOOST_TEST(r.held_bytes() == 0u);
    BOOST_TEST(sizeof(ws_reader) == sizeof(void*));
}

BOOST_AUTO_TEST_SUITE_END()
