// flk::binary_codec: the byte layout of docs/binary-codec.md, both
// directions, and every way a truncated, overlong or hostile binary frame is
// refused cleanly (run under ASan/UBSan, so a read past the end would fail).
#include <boost/test/unit_test.hpp>

#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>

#include <boost/json/parse.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace codec_binary_test {

namespace bj = boost::json;
using namespace flk;

inline constexpr binary_codec codec{};
inline constexpr json_codec json{};

decode_result decode(std::string_view bytes) { return codec.decode(bytes, frame_kind::binary); }

// ----------------------------------------------- frames built by hand
// Independent of the codec's own writer, so the tests pin the documented
// layout rather than whatever the encoder happens to do.

std::string raw(std::initializer_list<unsigned> bytes) {
    std::string s;
    for (auto b : bytes) s += static_cast<char>(b);
    return s;
}

/// A string field: its length in LEB128, then its bytes.
std::string str(std::string_view s) {
    std::string out;
    auto n = s.size();
    for (; n >= 0x80; n >>= 7) out += static_cast<char>((n & 0x7f) | 0x80);
    out += static_cast<char>(n);
    return out + std::string(s);
}

/// A float64, least significant byte first.
std::string f64(double d) {
    auto bits = std::bit_cast<std::uint64_t>(d);
    std::string s;
    for (int i = 0; i < 8; ++i, bits >>= 8) s += static_cast<char>(bits & 0xff);
    return s;
}

std::string tag(unsigned t) { return raw({t}); }

metadata meta(std::string_view text) { return bj::parse(text).as_object(); }

/// Metadata: its JSON text as a string field.
std::string meta_field(std::string_view json_text) { return str(json_text); }

/// The message a frame decodes to, failing the test if it does not.
template <class Message>
Message decode_as(std::string_view bytes) {
    auto r = decode(bytes);
    BOOST_TEST_REQUIRE(r.has_value(), "decode failed: " << r.error().message());
    BOOST_TEST_REQUIRE(std::holds_alternative<Message>(*r));
    return std::get<Message>(*r);
}

decode_error decode_failure(std::string_view bytes) {
    auto r = decode(bytes);
    BOOST_TEST_REQUIRE(r.has_error(), "a malformed frame decoded");
    return r.error();
}

/// Checks that `bytes` is refused with `code`, naming `field`.
void expect_error(std::string_view bytes, decode_errc code, std::string_view field = {},
                  std::string_view room = {}) {
    auto const e = decode_failure(bytes);
    BOOST_TEST((e.code == code), "got " << to_string(e.code) << " (" << e.field << ")");
    BOOST_TEST(e.field == field);
    BOOST_TEST(e.room_id == room);
}

/// A copy of `bytes` in a heap block of exactly its size, so that ASan
/// reports any read past the end of the frame.
struct exact_copy {
    explicit exact_copy(std::string_view bytes)
        : data(std::make_unique<char[]>(bytes.size() ? bytes.size() : 1)), size(bytes.size()) {
        if (size) std::memcpy(data.get(), bytes.data(), size);
    }
    std::string_view view() const { return {data.get(), size}; }
    std::unique_ptr<char[]> data;
    std::size_t size;
};

/// encode, then decode_server: the same message, and re-encoding the result
/// gives the same bytes (one spelling per message).
void expect_round_trip(server_message const& m) {
    auto const bytes = codec.encode(m);
    auto const back = codec.decode_server(bytes);
    BOOST_TEST_REQUIRE(back.has_value());
    BOOST_TEST((*back == m));
    BOOST_TEST(codec.encode(*back) == bytes);
}

/// encode_client, then decode: the same message.
void expect_round_trip(client_message const& m) {
    auto const bytes = codec.encode_client(m);
    auto const r = decode(bytes);
    BOOST_TEST_REQUIRE(r.has_value(), r.error().message());
    BOOST_TEST((*r == m));
    BOOST_TEST(codec.encode_client(*r) == bytes);
}

// -------------------------------------------- samples of every message

std::string const unicode = "Zo\xc3\xab \xe2\x82\xac \xf0\x9f\x90\xa6 \"q\" \\ \n\t\x01";

std::vector<client_message> client_samples() {
    return {
        client::join{"design-review-42", "user-1234", meta(R"({"name":"Ada","color":"#ff0"})"), "k-1"},
        client::join{"r", "u", {}, std::nullopt},
        client::heartbeat{"design-review-42"},
        client::cursor_move{"design-review-42", {0.4817708333333333, 0.6342592592592593}},
        client::cursor_leave{"design-review-42"},
        client::presence_update{"design-review-42", meta(R"({"status":"away"})")},
        client::leave{"design-review-42"},
    };
}

std::vector<server_message> server_samples() {
    return {
        server::join_ack{"design-review-42",
                         {{"ada", meta(R"({"name":"Ada"})"), position{0.5, 0.25}},
                          {"bob", meta(R"({"name":"Bob","n":3})"), std::nullopt}}},
        server::join_ack{"r", {}},
        server::user_joined{"design-review-42", "user-1234", meta(R"({"name":"Ada","color":"#ff0"})")},
        server::user_left{"design-review-42", "user-1234"},
        server::cursor_updated{"design-review-42", "user-1234", {0.4817708333333333, 0.6342592592592593},
                               1700000000123},
        server::cursor_removed{"design-review-42", "user-1234"},
        server::presence_updated{"design-review-42", "user-1234", meta(R"({"status":"away"})")},
        server::heartbeat_ack{},
        server::error{error_code::room_full, "room is full", std::nullopt},
        server::error{error_code::invalid_message, "missing field: roomId", "design-review-42"},
    };
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

BOOST_AUTO_TEST_SUITE(codec_binary)

BOOST_AUTO_TEST_CASE(frames_are_binary_and_selected_by_subprotocol) {
    BOOST_TEST((binary_codec::kind == frame_kind::binary));
    BOOST_TEST(binary_codec::subprotocol == "flock.binary.v1");
}

// ----------------------------------------- client frames, built by hand

BOOST_AUTO_TEST_CASE(join_with_api_key) {
    auto const m = decode_as<client::join>(tag(0x01) + str("doc-42") + str("ada") +
                                           meta_field(R"({"name":"Ada","tags":["a",1]})") +
                                           raw({1}) + str("k-123"));
    BOOST_TEST(m.room_id == "doc-42");
    BOOST_TEST(m.user_id == "ada");
    BOOST_TEST(m.meta == meta(R"({"name":"Ada","tags":["a",1]})"));
    BOOST_TEST_REQUIRE(m.api_key.has_value());
    BOOST_TEST(*m.api_key == "k-123");
}

BOOST_AUTO_TEST_CASE(join_without_api_key) {
    auto const m = decode_as<client::join>(tag(0x01) + str("r") + str("u") + meta_field("{}") + raw({0}));
    BOOST_TEST(!m.api_key.has_value());
    BOOST_TEST(m.meta.empty());
}

BOOST_AUTO_TEST_CASE(heartbeat) {
    BOOST_TEST(decode_as<client::heartbeat>(tag(0x02) + str("r1")).room_id == "r1");
}

BOOST_AUTO_TEST_CASE(cursor_move_is_tag_room_and_two_doubles) {
    auto const frame = tag(0x03) + str("r") + f64(0.25) + f64(0.75);
    BOOST_TEST(frame.size() == 1u + 2u + 16u);
    auto const m = decode_as<client::cursor_move>(frame);
    BOOST_TEST(m.room_id == "r");
    BOOST_TEST(m.pos.x == 0.25);
    BOOST_TEST(m.pos.y == 0.75);
}

BOOST_AUTO_TEST_CASE(cursor_move_relays_positions_bit_for_bit) {
    // Out of range, subnormal, huge, negative zero: relayed as given.
    for (double d : {1.0 / 3, 0.1 + 0.2, -3.0, 5e-324, 1.7976931348623157e308, -0.0, 123456789.0}) {
        auto const m = decode_as<client::cursor_move>(tag(0x03) + str("r") + f64(d) + f64(-d));
        BOOST_TEST(std::bit_cast<std::uint64_t>(m.pos.x) == std::bit_cast<std::uint64_t>(d));
        BOOST_TEST(std::bit_cast<std::uint64_t>(m.pos.y) == std::bit_cast<std::uint64_t>(-d));
    }
}

BOOST_AUTO_TEST_CASE(cursor_leave) {
    BOOST_TEST(decode_as<client::cursor_leave>(tag(0x04) + str("r2")).room_id == "r2");
}

BOOST_AUTO_TEST_CASE(presence_update) {
    auto const m = decode_as<client::presence_update>(tag(0x05) + str("r") + meta_field(R"({"status":"away"})"));
    BOOST_TEST(m.room_id == "r");
    BOOST_TEST(m.patch == meta(R"({"status":"away"})"));
}

BOOST_AUTO_TEST_CASE(leave) { BOOST_TEST(decode_as<client::leave>(tag(0x06) + str("r3")).room_id == "r3"); }

BOOST_AUTO_TEST_CASE(empty_ids_are_left_to_the_core) {
    auto const m = decode_as<client::join>(tag(0x01) + str("") + str("") + meta_field("{}") + raw({0}));
    BOOST_TEST(m.room_id.empty());
    BOOST_TEST(m.user_id.empty());
}

BOOST_AUTO_TEST_CASE(valid_utf8_of_every_length_is_accepted) {
    // 1- to 4-byte sequences, including the edges of each range.
    for (std::string_view s : {"plain ascii, longer than eight bytes", "\xc2\x80", "\xdf\xbf",
                               "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
                               "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "Zo\xc3\xab \xf0\x9f\x90\xa6 ok"}) {
        BOOST_TEST_CONTEXT(s) {
            BOOST_TEST(decode_as<client::leave>(tag(0x06) + str(s)).room_id == s);
        }
    }
    // NUL is a character like any other (JSON can carry it as \u0000).
    BOOST_TEST(decode_as<client::leave>(tag(0x06) + str(std::string_view("a\0b", 3))).room_id.size() == 3u);
}

BOOST_AUTO_TEST_CASE(long_strings_take_multi_byte_lengths) {
    std::string const room(300, 'r');  // length 300 = 0xac 0x02
    auto const m = decode_as<client::heartbeat>(tag(0x02) + raw({0xac, 0x02}) + room);
    BOOST_TEST(m.room_id == room);
    BOOST_TEST(codec.encode_client(client::heartbeat{room}) == tag(0x02) + raw({0xac, 0x02}) + room);
}

// --------------------------------------------------- client round trips

BOOST_AUTO_TEST_CASE(every_client_message_round_trips) {
    for (auto const& m : client_samples()) expect_round_trip(m);
    expect_round_trip(client::join{unicode, unicode, meta(R"({"name":"a\"b\\c\u0002\u00eb"})"), unicode});
    std::string const big(20000, 'x');  // metadata over 16 KiB: a 3-byte length
    expect_round_trip(client::presence_update{big, meta(R"({"note":")" + big + R"("})")});
}

// ------------------------------------------------- malformed client frames

BOOST_AUTO_TEST_CASE(an_empty_frame_has_no_type_and_is_dropped) {
    auto const e = decode_failure("");
    BOOST_TEST((e.code == decode_errc::missing_type));
    BOOST_TEST(!e.deserves_reply());
}

BOOST_AUTO_TEST_CASE(unknown_tags_are_dropped_silently) {
    // Unassigned bytes, and server tags sent by a client.
    for (unsigned t : {0x00u, 0x07u, 0x7fu, 0x80u, 0x81u, 0x84u, 0x87u, 0x89u, 0xffu}) {
        BOOST_TEST_CONTEXT(t) {
            auto const e = decode_failure(tag(t) + str("r"));
            BOOST_TEST((e.code == decode_errc::unknown_type));
            BOOST_TEST(!e.deserves_reply());
        }
    }
}

BOOST_AUTO_TEST_CASE(text_frames_are_the_wrong_kind) {
    auto const r = codec.decode(tag(0x06) + str("r"), frame_kind::text);
    BOOST_TEST_REQUIRE(r.has_error());
    BOOST_TEST((r.error().code == decode_errc::wrong_frame_kind));
    // ... and a JSON text sent in a binary frame is not a binary message.
    BOOST_TEST(decode(R"({"type":"leave","roomId":"r"})").has_error());
}

BOOST_AUTO_TEST_CASE(every_truncation_of_every_client_message_is_refused) {
    for (auto const& m : client_samples()) {
        auto const whole = codec.encode_client(m);
        BOOST_TEST_REQUIRE(decode(exact_copy(whole).view()).has_value());
        for (std::size_t n = 1; n < whole.size(); ++n) {
            BOOST_TEST_CONTEXT("message " << m.index() << ", first " << n << " of " << whole.size()
                                          << " bytes") {
                exact_copy const cut(std::string_view(whole).substr(0, n));
                auto const r = decode(cut.view());
                BOOST_TEST_REQUIRE(r.has_error());
                BOOST_TEST((r.error().code == decode_errc::malformed));
                BOOST_TEST(r.error().deserves_reply());
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(trailing_bytes_are_refused) {
    for (auto const& m : client_samples()) {
        auto const e = decode_failure(codec.encode_client(m) + '\0');
        BOOST_TEST((e.code == decode_errc::malformed));
        BOOST_TEST(e.field == "trailing bytes");
    }
}

BOOST_AUTO_TEST_CASE(a_truncated_field_is_named_with_its_room) {
    expect_error(tag(0x03) + str("room-9") + f64(0.5), decode_errc::malformed, "position.y", "room-9");
    expect_error(tag(0x03) + str("room-9"), decode_errc::malformed, "position.x", "room-9");
    expect_error(tag(0x01) + str("room-9") + str("u"), decode_errc::malformed, "metadata", "room-9");
    expect_error(tag(0x01) + str("room-9") + str("u") + meta_field("{}"), decode_errc::malformed, "apiKey",
                 "room-9");
    expect_error(tag(0x02), decode_errc::malformed, "roomId");
}

BOOST_AUTO_TEST_CASE(string_lengths_beyond_the_frame_are_refused) {
    expect_error(tag(0x06) + raw({5}) + "abc", decode_errc::malformed, "roomId");
    expect_error(tag(0x06) + raw({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}) + "abc",
                 decode_errc::malformed, "roomId");
    expect_error(tag(0x01) + str("r") + raw({100}) + "u" + meta_field("{}") + raw({0}), decode_errc::malformed,
                 "userId", "r");
    expect_error(tag(0x05) + str("r") + raw({50}) + "{}", decode_errc::malformed, "metadata", "r");
}

BOOST_AUTO_TEST_CASE(overlong_and_padded_varints_are_refused) {
    // More than 10 bytes; a 10th byte with bits beyond 64; a length of 1
    // padded to two bytes (each value has exactly one spelling).
    expect_error(tag(0x06) + raw({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}),
                 decode_errc::malformed, "roomId");
    expect_error(tag(0x06) + raw({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}),
                 decode_errc::malformed, "roomId");
    expect_error(tag(0x06) + raw({0x81, 0x00}) + "r", decode_errc::malformed, "roomId");
    expect_error(tag(0x06) + raw({0x80, 0x80, 0x00}), decode_errc::malformed, "roomId");
    expect_error(tag(0x06) + raw({0x80}), decode_errc::malformed, "roomId");
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_refused_before_it_reaches_a_browser) {
    for (std::string_view bad : {"\x80", "ab\xbf", "\xc0\xaf", "\xc1\xbf", "\xc3", "\xc3(", "\xe0\x80\xaf",
                                 "\xe2\x82", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80",
                                 "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xfe", "\xff",
                                 "eight ok\xf0\x9f\x90"}) {
        BOOST_TEST_CONTEXT(bad.size() << " bytes") {
            expect_error(tag(0x06) + str(bad), decode_errc::wrong_type, "roomId");
            expect_error(tag(0x01) + str("r") + str(bad) + meta_field("{}") + raw({0}), decode_errc::wrong_type,
                         "userId", "r");
            expect_error(tag(0x01) + str("r") + str("u") + meta_field("{}") + raw({1}) + str(bad),
                         decode_errc::wrong_type, "apiKey", "r");
            expect_error(tag(0x05) + str("r") + meta_field(R"({"s":")" + std::string(bad) + R"("})"),
                         decode_errc::wrong_type, "metadata", "r");
        }
    }
}

BOOST_AUTO_TEST_CASE(non_finite_positions_are_refused) {
    auto const inf = std::numeric_limits<double>::infinity();
    auto const nan = std::numeric_limits<double>::quiet_NaN();
    for (double bad : {inf, -inf, nan, -nan}) {
        expect_error(tag(0x03) + str("r") + f64(bad) + f64(0.5), decode_errc::wrong_type, "position.x", "r");
        expect_error(tag(0x03) + str("r") + f64(0.5) + f64(bad), decode_errc::wrong_type, "position.y", "r");
    }
}

BOOST_AUTO_TEST_CASE(metadata_must_be_one_json_object_of_finite_numbers) {
    for (std::string_view bad : {"", "[]", "null", "42", R"("name")", "{", R"({"a":1} {})", "{} x",
                                 "{'a':1}", R"({"a":1e999})", R"({"a":[{"b":-1e999}]})", "{,}"}) {
        BOOST_TEST_CONTEXT(bad) {
            expect_error(tag(0x05) + str("r") + meta_field(bad), decode_errc::wrong_type, "metadata", "r");
            expect_error(tag(0x01) + str("r") + str("u") + meta_field(bad) + raw({0}), decode_errc::wrong_type,
                         "metadata", "r");
        }
    }
}

BOOST_AUTO_TEST_CASE(metadata_nesting_matches_the_json_codec) {
    // The same metadata is accepted, or refused, by both codecs.
    for (int depth : {29, 30, 31, 1000}) {
        auto const text = R"({"deep":)" + nested_arrays(depth) + "}";
        BOOST_TEST_CONTEXT(depth) {
            auto const by_json = json.decode(R"({"type":"presence:update","roomId":"r","metadata":)" + text + "}",
                                             frame_kind::text);
            auto const by_binary = decode(tag(0x05) + str("r") + meta_field(text));
            BOOST_TEST(by_binary.has_value() == by_json.has_value());
            BOOST_TEST(by_binary.has_value() == (depth <= 30));
        }
    }
}

BOOST_AUTO_TEST_CASE(presence_bytes_other_than_0_and_1_are_refused) {
    expect_error(tag(0x01) + str("r") + str("u") + meta_field("{}") + raw({2}) + str("k"), decode_errc::malformed,
                 "apiKey", "r");
}

BOOST_AUTO_TEST_CASE(malformed_known_messages_deserve_a_reply_naming_the_room) {
    auto const e = decode_failure(tag(0x03) + str("room-9") + f64(std::nan("")) + f64(0));
    BOOST_TEST(e.deserves_reply());
    BOOST_TEST(e.room_id == "room-9");
    BOOST_TEST(e.message() == "field has the wrong type: position.x");
}

BOOST_AUTO_TEST_CASE(decoded_strings_are_safe_to_relay_as_json) {
    // What a binary client sends reaches browsers through the JSON codec.
    auto const m = decode_as<client::join>(codec.encode_client(
        client::join{unicode, unicode, meta(R"({"name":"\u0001\"x\"\\"})"), std::nullopt}));
    auto const text = json.encode(server::user_joined{m.room_id, m.user_id, m.meta});
    bj::error_code ec;
    auto const v = bj::parse(text, ec);
    BOOST_TEST_REQUIRE(!ec);
    BOOST_TEST(v.at("userId").as_string() == unicode);
    BOOST_TEST(v.at("metadata") == bj::value(m.meta));
}

// -------------------------------------------------------- server messages

BOOST_AUTO_TEST_CASE(every_server_message_round_trips) {
    for (auto const& m : server_samples()) expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(cursor_updated_layout) {
    // 1700000000123 zigzagged is 3400000000246: 6 LEB128 bytes.
    server::cursor_updated const m{"r", "ada", {0.5, 0.125}, 1700000000123};
    BOOST_TEST(codec.encode(m) == tag(0x84) + str("r") + str("ada") + f64(0.5) + f64(0.125) +
                                      raw({0xf6, 0xa1, 0xab, 0xfe, 0xf9, 0x62}));
}

BOOST_AUTO_TEST_CASE(join_ack_layout) {
    server::join_ack const m{"doc",
                             {{"ada", meta(R"({"name":"Ada"})"), position{0.5, 0.25}},
                              {"bob", meta("{}"), std::nullopt}}};
    BOOST_TEST(codec.encode(m) == tag(0x81) + str("doc") + raw({2}) + str("ada") + str(R"({"name":"Ada"})") +
                                      raw({1}) + f64(0.5) + f64(0.25) + str("bob") + str("{}") + raw({0}));
    BOOST_TEST(codec.encode(server::join_ack{"r", {}}) == tag(0x81) + str("r") + raw({0}));
}

BOOST_AUTO_TEST_CASE(other_server_layouts) {
    BOOST_TEST(codec.encode(server::user_joined{"r", "u", meta(R"({"a":1})")}) ==
               tag(0x82) + str("r") + str("u") + str(R"({"a":1})"));
    BOOST_TEST(codec.encode(server::user_left{"r", "u"}) == tag(0x83) + str("r") + str("u"));
    BOOST_TEST(codec.encode(server::cursor_removed{"r", "u"}) == tag(0x85) + str("r") + str("u"));
    BOOST_TEST(codec.encode(server::presence_updated{"r", "u", meta(R"({"s":"away"})")}) ==
               tag(0x86) + str("r") + str("u") + str(R"({"s":"away"})"));
    BOOST_TEST(codec.encode(server::heartbeat_ack{}) == tag(0x87));
    BOOST_TEST(codec.encode(server::error{error_code::room_full, "full", std::nullopt}) ==
               tag(0x88) + raw({1}) + str("full") + raw({0}));
    BOOST_TEST(codec.encode(server::error{error_code::rate_limited, "slow", "r"}) ==
               tag(0x88) + raw({2}) + str("slow") + raw({1}) + str("r"));
}

BOOST_AUTO_TEST_CASE(every_error_code_has_its_own_byte) {
    std::vector<std::uint8_t> seen;
    for (auto c : {error_code::invalid_api_key, error_code::room_full, error_code::rate_limited,
                   error_code::internal_error, error_code::invalid_message, error_code::too_many_rooms}) {
        auto const bytes = codec.encode(server::error{c, "m", std::nullopt});
        seen.push_back(static_cast<std::uint8_t>(bytes.at(1)));
        expect_round_trip(server::error{c, "m", std::nullopt});
    }
    BOOST_TEST(seen == (std::vector<std::uint8_t>{0, 1, 2, 3, 4, 5}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(unknown_error_codes_become_internal_error) {
    auto const m = codec.decode_server(tag(0x88) + raw({200}) + str("slow down") + raw({0}));
    BOOST_TEST_REQUIRE(m.has_value());
    auto const& e = std::get<server::error>(*m);
    BOOST_TEST((e.code == error_code::internal_error));
    BOOST_TEST(e.message == "slow down");
}

BOOST_AUTO_TEST_CASE(strings_and_metadata_of_any_size_round_trip) {
    std::string const long_id(200, 'u');
    std::string const huge(70000, 'h');  // metadata text over 64 KiB: a 3-byte length
    expect_round_trip(server::user_left{unicode, long_id});
    expect_round_trip(server::user_joined{"r", unicode, meta(R"({"name":"a\"b\\c\u0002","n":-1.5e300})")});
    expect_round_trip(server::presence_updated{"r", "u", meta(R"({"note":")" + huge + R"("})")});
    expect_round_trip(server::error{error_code::internal_error, unicode, unicode});
    // Lengths on the edge of one and two varint bytes.
    for (std::size_t n : {126u, 127u, 128u, 129u, 16383u, 16384u}) {
        expect_round_trip(server::cursor_removed{std::string(n, 'r'), std::string(n, 'u')});
        auto const note = std::string(n > 12 ? n - 12 : 0, 'n');
        expect_round_trip(server::presence_updated{"r", "u", meta(R"({"note":")" + note + R"("})")});
    }
}

BOOST_AUTO_TEST_CASE(metadata_with_every_json_kind_round_trips) {
    expect_round_trip(server::join_ack{
        "r",
        {{"u", meta(R"({"s":"\u0000\u001f\"\\/","i":-9223372036854775808,"u":18446744073709551615,)"
                    R"("d":-1.7976931348623157e308,"t":true,"f":false,"n":null,"a":[[],{},[1,{"x":[0.1]}]]})"),
          position{1.0 / 3, -0.0}}}});
}

BOOST_AUTO_TEST_CASE(positions_and_timestamps_are_exact) {
    for (double d : {1.0 / 3, 0.1 + 0.2, 1e-7, 5e-324, 1.7976931348623157e308, -123456.789, 2e20})
        expect_round_trip(server::cursor_updated{"r", "u", {d, -d}, 1});
    for (std::int64_t t : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1700000000123},
                           std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()})
        expect_round_trip(server::cursor_updated{"r", "u", {0, 0}, t});
}

BOOST_AUTO_TEST_CASE(equal_messages_encode_to_identical_bytes) {
    auto const a = server_samples();
    auto const b = server_samples();
    for (std::size_t i = 0; i < a.size(); ++i) BOOST_TEST(codec.encode(a[i]) == codec.encode(b[i]));
    auto const c = client_samples();
    auto const d = client_samples();
    for (std::size_t i = 0; i < c.size(); ++i) BOOST_TEST(codec.encode_client(c[i]) == codec.encode_client(d[i]));
}

// ------------------------------------------------------------------ sizes

BOOST_AUTO_TEST_CASE(cursor_updated_is_under_a_third_of_its_json_size) {
    // Typical ids and browser positions (clientX / innerWidth) are full doubles.
    server::cursor_updated const m{"design-review-42", "user-1234", {925.0 / 1920, 685.0 / 1080}, 1700000000123};
    auto const binary = codec.encode(m).size();
    auto const text = json.encode(m).size();
    BOOST_TEST_MESSAGE("cursor:updated: JSON " << text << " B, binary " << binary << " B");
    // tag 1 + roomId 17 + userId 10 + position 16 + timestamp 6
    BOOST_TEST(binary == 50u);
    BOOST_TEST(text == 159u);
    BOOST_TEST(binary * 3 < text);
}

BOOST_AUTO_TEST_CASE(every_message_is_smaller_than_its_json) {
    // Metadata is JSON text in both, so messages carrying it gain less.
    auto const samples = server_samples();
    for (std::size_t i = 0; i < samples.size(); ++i) {
        BOOST_TEST_CONTEXT("server sample " << i) {
            BOOST_TEST(codec.encode(samples[i]).size() < json.encode(samples[i]).size());
        }
    }
}

// ------------------------------------------------ server frames refused

BOOST_AUTO_TEST_CASE(every_truncation_of_every_server_message_is_refused) {
    for (auto const& m : server_samples()) {
        auto const whole = codec.encode(m);
        for (std::size_t n = 0; n < whole.size(); ++n) {
            BOOST_TEST_CONTEXT("message " << m.index() << ", first " << n << " of " << whole.size()
                                          << " bytes") {
                exact_copy const cut(std::string_view(whole).substr(0, n));
                BOOST_TEST(!codec.decode_server(cut.view()).has_value());
            }
        }
        BOOST_TEST(!codec.decode_server(whole + '\0').has_value());
    }
}

BOOST_AUTO_TEST_CASE(decode_server_refuses_what_is_not_a_server_message) {
    auto const nan = std::numeric_limits<double>::quiet_NaN();
    for (std::string const& bytes : {
             std::string(),
             tag(0x03) + str("r") + f64(0) + f64(0),      // a client message
             tag(0x89),                                    // unknown tag
             tag(0x84) + str("r") + str("u") + f64(nan) + f64(0) + raw({0}),
             tag(0x84) + str("r") + str("\xff") + f64(0) + f64(0) + raw({0}),
             tag(0x84) + str("r") + str("u") + f64(0) + f64(0) +
                 raw({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}),  // > 64 bits
             tag(0x82) + str("r") + str("u") + str("[]"),
             tag(0x81) + str("r") + raw({1}) + str("u") + str("{}") + raw({2}),  // bad cursor byte
             tag(0x81) + str("r") + raw({0xff, 0xff, 0xff, 0xff, 0x0f}) + str("u") + str("{}") + raw({0}),
             tag(0x88) + raw({1}) + str("m"),            // error without its roomId byte
         }) {
        BOOST_TEST(!codec.decode_server(bytes).has_value());
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace codec_binary_test
