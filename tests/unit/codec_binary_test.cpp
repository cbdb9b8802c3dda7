// flk::binary_codec: the byte layout of docs/binary-codec.md, both
// directions, and every way a truncated, overlong or hostile binary frame is
// refused cleanly (run under ASan/UBSan, so a read past the end would fail);
// flk::binary_session: handles learnt, resolved, forgotten and refused.
#include <boost/test/unit_test.hpp>

#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/codec/negotiated.hpp>

#include <boost/json/parse.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iomanip>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
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

/// A handle (or any varint): LEB128.
std::string var(std::uint64_t n) {
    std::string out;
    for (; n >= 0x80; n >>= 7) out += static_cast<char>((n & 0x7f) | 0x80);
    return out + static_cast<char>(n);
}

/// Bytes written as hex pairs, spaces ignored (the examples of the docs).
std::string hex(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        if (text[i] == ' ' || text[i] == '\n') {
            ++i;
            continue;
        }
        out += static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16));
        i += 2;
    }
    return out;
}

std::string to_hex(std::string_view bytes) {
    std::ostringstream o;
    for (unsigned char c : bytes) o << std::hex << std::setw(2) << std::setfill('0') << unsigned(c) << ' ';
    return o.str();
}

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
        // join:ack with handles, and the messages by handle as decode_server
        // reads them: handles, no ids (userId stays in user:joined).
        server::join_ack{"design-review-42",
                         {{"ada", meta(R"({"name":"Ada"})"), position{0.5, 0.25}, 3},
                          {"bob", meta(R"({"name":"Bob","n":3})"), std::nullopt, 200}},
                         7},
        server::user_joined{"", "user-1234", meta(R"({"name":"Ada","color":"#ff0"})"), 7, 4},
        server::user_left{"", "", 7, 4},
        server::cursor_updated{"", "", {0.4817708333333333, 0.6342592592592593}, 1700000000123, 7, 4},
        server::cursor_removed{"", "", 7, 300},
        server::presence_updated{"", "", meta(R"({"status":"away"})"), 70000, 4},
    };
}

/// Messages as the core builds them for one room: ids and handles. What a
/// JSON client makes of them is the same messages without handles.
std::vector<server_message> conversation() {
    return {
        server::join_ack{"design-review-42",
                         {{"ada", meta(R"({"name":"Ada"})"), position{0.5, 0.25}, 1},
                          {"bob", meta("{}"), std::nullopt, 2}},
                         9},
        server::cursor_updated{"design-review-42", "ada", {0.125, 0.5}, 1700000000123, 9, 1},
        server::user_joined{"design-review-42", "cy", meta(R"({"name":"Cy"})"), 9, 3},
        server::presence_updated{"design-review-42", "cy", meta(R"({"status":"away"})"), 9, 3},
        server::cursor_updated{"design-review-42", "cy", {0.75, 0.25}, 1700000000456, 9, 3},
        server::cursor_removed{"design-review-42", "cy", 9, 3},
        server::user_left{"design-review-42", "bob", 9, 2},
        server::cursor_updated{"design-review-42", "zed", {0.5, 0.5}, 1700000000789, 9, 0},  // no handle
        server::heartbeat_ack{},
        server::error{error_code::rate_limited, "slow down", "design-review-42"},
        server::user_left{"design-review-42", "ada", 0, 0},  // by name (a server stopping)
    };
}

/// What a JSON client receives for `m`: the same message, handles cleared.
server_message without_handles(server_message m) {
    std::visit(
        [](auto& x) {
            if constexpr (requires { x.users; }) {
                x.room_handle = 0;
                for (auto& u : x.users) u.user_handle = 0;
            } else if constexpr (requires { x.user_handle; }) {
                x.room_handle = x.user_handle = 0;
            }
        },
        m);
    return m;
}

/// A session that has read the frames of `messages`, each of which it must accept.
binary_session session_after(std::vector<server_message> const& messages) {
    binary_session s;
    for (auto const& m : messages) BOOST_TEST_REQUIRE(s.decode(codec.encode(m)).has_value());
    return s;
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

BOOST_AUTO_TEST_SUITE(codec_binary)

BOOST_AUTO_TEST_CASE(frames_are_binary_and_selected_by_subprotocol) {
    BOOST_TEST((binary_codec::kind == frame_kind::binary));
    BOOST_TEST(binary_codec::subprotocol == "flock.binary.v2");
    BOOST_TEST(json_or_binary_codec::subprotocol == "flock.binary.v2");
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
    for (unsigned t : {0x00u, 0x07u, 0x7fu, 0x80u, 0x81u, 0x84u, 0x87u, 0x89u, 0x94u, 0xffu}) {
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
    // roomId, room handle, count, then per user: userId, user handle, metadata, cursor.
    server::join_ack const m{"doc",
                             {{"ada", meta(R"({"name":"Ada"})"), position{0.5, 0.25}, 1},
                              {"bob", meta("{}"), std::nullopt, 130}},
                             5};
    BOOST_TEST(codec.encode(m) == tag(0x81) + str("doc") + var(5) + raw({2}) + str("ada") + var(1) +
                                      str(R"({"name":"Ada"})") + raw({1}) + f64(0.5) + f64(0.25) + str("bob") +
                                      raw({0x82, 0x01}) + str("{}") + raw({0}));
    // Without handles (0: none), as a codec used without the core writes it.
    BOOST_TEST(codec.encode(server::join_ack{"r", {}}) == tag(0x81) + str("r") + raw({0}) + raw({0}));
    BOOST_TEST(codec.encode(server::join_ack{"r", {{"u", meta("{}"), std::nullopt}}}) ==
               tag(0x81) + str("r") + raw({0}) + raw({1}) + str("u") + raw({0}) + str("{}") + raw({0}));
}

BOOST_AUTO_TEST_CASE(other_server_layouts_by_name) {
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

BOOST_AUTO_TEST_CASE(cursor_updated_by_handle_is_under_a_quarter_of_its_json_size) {
    // Typical ids and browser positions (clientX / innerWidth) are full doubles.
    server::cursor_updated const m{"design-review-42", "user-1234", {925.0 / 1920, 685.0 / 1080}, 1700000000123,
                                   1, 5};
    auto const binary = codec.encode(m).size();
    auto const text = json.encode(m).size();
    BOOST_TEST_MESSAGE("cursor:updated: JSON " << text << " B, binary by handle " << binary << " B");
    // tag 1 + room handle 1 + user handle 1 + position 16 + timestamp 6
    BOOST_TEST(binary == 25u);
    BOOST_TEST(text == 159u);
    BOOST_TEST(binary * 4 < text);
    // By name, when the core has no handle for the user: tag 1 + roomId 17 + userId 10 + 16 + 6.
    auto by_name = m;
    by_name.user_handle = 0;
    BOOST_TEST(codec.encode(by_name).size() == 50u);
    BOOST_TEST(json.encode(by_name) == json.encode(m));
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
             tag(0x81) + str("r") + raw({0}) + raw({1}) + str("u") + raw({0}) + str("{}") + raw({2}),  // cursor byte
             tag(0x81) + str("r") + raw({0}) + raw({0xff, 0xff, 0xff, 0xff, 0x0f}) + str("u") + raw({0}) + str("{}") +
                 raw({0}),                                                     // a count beyond the frame
             tag(0x81) + str("r") + raw({0}) + raw({2}) + str("u") + raw({0}) + str("{}") + raw({0}),  // 1 of 2
             tag(0x81) + str("r") + raw({0x80, 0x00}) + raw({0}),              // padded room handle
             tag(0x88) + raw({1}) + str("m"),            // error without its roomId byte
         }) {
        BOOST_TEST(!codec.decode_server(bytes).has_value());
    }
}

// ------------------------------------------------------------------ handles

BOOST_AUTO_TEST_CASE(cursor_updated_by_handle_layout) {
    server::cursor_updated const m{"r", "ada", {0.5, 0.125}, 1700000000123, 7, 3};
    BOOST_TEST(codec.encode(m) ==
               tag(0x94) + var(7) + var(3) + f64(0.5) + f64(0.125) + raw({0xf6, 0xa1, 0xab, 0xfe, 0xf9, 0x62}));
}

BOOST_AUTO_TEST_CASE(the_documented_cursor_updated_examples) {
    // docs/binary-codec.md: room design-review-42 (handle 1), user user-1234
    // (handle 5), position (0.5, 0.25), timestamp 1700000000123.
    server::cursor_updated m{"design-review-42", "user-1234", {0.5, 0.25}, 1700000000123, 1, 5};
    auto const by_handle = hex("94 01 05 00 00 00 00 00 00 e0 3f 00 00 00 00 00 00 d0 3f f6 a1 ab fe f9 62");
    BOOST_TEST(by_handle.size() == 25u);
    BOOST_TEST(codec.encode(m) == by_handle, to_hex(codec.encode(m)));
    m.user_handle = 0;
    auto const by_name = hex(
        "84 10 64 65 73 69 67 6e 2d 72 65 76 69 65 77 2d 34 32 09 75 73 65 72 2d 31 32 33 34"
        "00 00 00 00 00 00 e0 3f 00 00 00 00 00 00 d0 3f f6 a1 ab fe f9 62");
    BOOST_TEST(by_name.size() == 50u);
    BOOST_TEST(codec.encode(m) == by_name, to_hex(codec.encode(m)));
}

BOOST_AUTO_TEST_CASE(other_server_layouts_by_handle) {
    // user:joined keeps the userId: it is what the new handle stands for.
    BOOST_TEST(codec.encode(server::user_joined{"r", "u", meta(R"({"a":1})"), 7, 3}) ==
               tag(0x92) + var(7) + var(3) + str("u") + str(R"({"a":1})"));
    BOOST_TEST(codec.encode(server::user_left{"r", "u", 7, 3}) == tag(0x93) + var(7) + var(3));
    BOOST_TEST(codec.encode(server::cursor_removed{"r", "u", 7, 3}) == tag(0x95) + var(7) + var(3));
    BOOST_TEST(codec.encode(server::presence_updated{"r", "u", meta(R"({"s":"away"})"), 7, 3}) ==
               tag(0x96) + var(7) + var(3) + str(R"({"s":"away"})"));
}

BOOST_AUTO_TEST_CASE(a_message_goes_by_handle_only_with_both_handles) {
    for (auto const& [room_handle, user_handle] : std::initializer_list<std::pair<handle, handle>>{{0, 0}, {7, 0}, {0, 3}}) {
        BOOST_TEST_CONTEXT(room_handle << "/" << user_handle) {
            BOOST_TEST(codec.encode(server::cursor_updated{"r", "u", {0, 0}, 1, room_handle, user_handle}) ==
                       tag(0x84) + str("r") + str("u") + f64(0) + f64(0) + raw({2}));
            BOOST_TEST(codec.encode(server::user_left{"r", "u", room_handle, user_handle}) ==
                       tag(0x83) + str("r") + str("u"));
            BOOST_TEST(codec.encode(server::user_joined{"r", "u", meta("{}"), room_handle, user_handle}) ==
                       tag(0x82) + str("r") + str("u") + str("{}"));
        }
    }
}

BOOST_AUTO_TEST_CASE(handles_of_any_size_round_trip) {
    for (handle h : {handle{1}, handle{127}, handle{128}, handle{16383}, handle{16384}, handle{1} << 32,
                     std::numeric_limits<handle>::max()}) {
        BOOST_TEST_CONTEXT(h) {
            expect_round_trip(server::cursor_updated{"", "", {0.5, 0.25}, 1, h, h});
            expect_round_trip(server::user_joined{"", "u", meta("{}"), h, 1});
            expect_round_trip(server::presence_updated{"", "", meta("{}"), 1, h});
            expect_round_trip(server::join_ack{"r", {{"u", meta("{}"), std::nullopt, h}}, h});
        }
    }
    BOOST_TEST(codec.encode(server::user_left{"", "", 128, 16384}) ==
               tag(0x93) + raw({0x80, 0x01}) + raw({0x80, 0x80, 0x01}));
    BOOST_TEST(codec.encode(server::cursor_removed{"", "", 1, std::numeric_limits<handle>::max()}) ==
               tag(0x95) + raw({1}) + raw({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
}

BOOST_AUTO_TEST_CASE(decode_server_gives_the_handles_and_leaves_the_ids_empty) {
    auto const m = codec.decode_server(tag(0x94) + var(7) + var(3) + f64(0.5) + f64(0.25) + var(2));
    BOOST_TEST_REQUIRE(m.has_value());
    auto const& cu = std::get<server::cursor_updated>(*m);
    BOOST_TEST(cu.room_id.empty());
    BOOST_TEST(cu.user_id.empty());
    BOOST_TEST(cu.room_handle == 7u);
    BOOST_TEST(cu.user_handle == 3u);
    BOOST_TEST((cu.pos == position{0.5, 0.25}));
    BOOST_TEST(cu.timestamp == 1);
    // A message the core builds has both: by handle, the ids are not sent.
    auto const back = codec.decode_server(codec.encode(server::cursor_removed{"room", "user", 7, 3}));
    BOOST_TEST_REQUIRE(back.has_value());
    BOOST_TEST((*back == server_message(server::cursor_removed{"", "", 7, 3})));
    // And by name, no handles come back.
    auto const named = codec.decode_server(codec.encode(server::cursor_removed{"room", "user", 7, 0}));
    BOOST_TEST_REQUIRE(named.has_value());
    BOOST_TEST((*named == server_message(server::cursor_removed{"room", "user", 0, 0})));
}

BOOST_AUTO_TEST_CASE(a_frame_by_handle_must_name_both) {
    // Handle 0 means "none": a frame by handle carrying it is malformed.
    for (std::string const& bytes : {
             tag(0x94) + var(0) + var(3) + f64(0) + f64(0) + var(2),
             tag(0x94) + var(7) + var(0) + f64(0) + f64(0) + var(2),
             tag(0x93) + var(0) + var(0),
             tag(0x93) + var(7) + var(0),
             tag(0x92) + var(7) + var(0) + str("u") + str("{}"),
             tag(0x92) + var(0) + var(3) + str("u") + str("{}"),
             tag(0x95) + var(0) + var(1),
             tag(0x96) + var(1) + var(0) + str("{}"),
         }) {
        BOOST_TEST(!codec.decode_server(bytes).has_value(), to_hex(bytes));
        BOOST_TEST(!binary_session().decode(bytes).has_value());
    }
}

BOOST_AUTO_TEST_CASE(malformed_frames_by_handle_are_refused) {
    auto const nan = std::numeric_limits<double>::quiet_NaN();
    for (std::string const& bytes : {
             tag(0x93) + raw({0x81, 0x00}) + var(3),                                       // padded handle
             tag(0x93) + var(1) + raw({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}),
             tag(0x93) + var(1) + raw({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}),  // > 64 bits
             tag(0x93) + var(1) + var(1) + raw({0}),                                        // trailing byte
             tag(0x93) + var(1) + raw({0x80}),                                              // cut in a handle
             tag(0x94) + var(1) + var(1) + f64(nan) + f64(0) + var(2),
             tag(0x94) + var(1) + var(1) + f64(0) + f64(0),                                 // no timestamp
             tag(0x92) + var(1) + var(1) + str("\xc3(") + str("{}"),                        // userId not UTF-8
             tag(0x92) + var(1) + var(1) + str("u"),                                        // no metadata
             tag(0x96) + var(1) + var(1) + str("[1]"),                                      // not an object
             tag(0x96) + var(1) + var(1) + str(R"({"a":1e999})"),
             tag(0x81) + str("r") + var(1) + raw({1}) + str("u") + raw({0x80}) + str("{}") + raw({0}),
         }) {
        BOOST_TEST(!codec.decode_server(bytes).has_value(), to_hex(bytes));
    }
}

BOOST_AUTO_TEST_CASE(json_ignores_handles) {
    // The JSON wire is the same whatever handles a message carries.
    for (auto const& m : conversation()) BOOST_TEST(json.encode(m) == json.encode(without_handles(m)));
    BOOST_TEST(json.encode(server::cursor_updated{"r", "u", {0.5, 0.25}, 1, 7, 3}) ==
               R"({"type":"cursor:updated","roomId":"r","userId":"u","position":{"x":0.5,"y":0.25},"timestamp":1})");
}

// ----------------------------------------------------------- binary_session

BOOST_AUTO_TEST_CASE(a_session_gives_back_what_a_json_client_receives) {
    binary_session s;
    for (auto const& m : conversation()) {
        BOOST_TEST_CONTEXT("message " << m.index() << ": " << json.encode(m)) {
            auto const got = s.decode(codec.encode(m));
            BOOST_TEST_REQUIRE(got.has_value());
            auto const seen_by_json = json.decode_server(json.encode(m));
            BOOST_TEST_REQUIRE(seen_by_json.has_value());
            BOOST_TEST((*got == *seen_by_json));
            BOOST_TEST((*got == without_handles(m)));
        }
    }
}

BOOST_AUTO_TEST_CASE(a_session_resolves_the_handles_of_the_frames) {
    auto s = session_after({conversation()[0]});  // room 9: ada 1, bob 2
    BOOST_TEST(s.room_count() == 1u);
    BOOST_TEST(s.user_count("design-review-42") == 2u);
    auto const frame = codec.encode(server::cursor_updated{"", "", {0.25, 0.75}, 42, 9, 2});
    BOOST_TEST(frame.size() == 1u + 1u + 1u + 16u + 1u);
    auto const m = s.decode(frame);
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST((*m == server_message(server::cursor_updated{"design-review-42", "bob", {0.25, 0.75}, 42})));
}

BOOST_AUTO_TEST_CASE(a_session_refuses_handles_it_was_not_told) {
    auto cursor = [](handle room, handle user) {
        return codec.encode(server::cursor_updated{"", "", {0.5, 0.5}, 1, room, user});
    };
    BOOST_TEST(!binary_session().decode(cursor(9, 1)).has_value());  // nothing known yet
    auto s = session_after({conversation()[0]});                       // room 9: ada 1, bob 2
    BOOST_TEST(!s.decode(cursor(8, 1)).has_value());                  // another room's handle
    BOOST_TEST(!s.decode(cursor(9, 3)).has_value());                  // a user not announced
    BOOST_TEST(!s.decode(codec.encode(server::user_left{"", "", 9, 3})).has_value());
    BOOST_TEST(!s.decode(codec.encode(server::cursor_removed{"", "", 9, 3})).has_value());
    BOOST_TEST(!s.decode(codec.encode(server::presence_updated{"", "", meta("{}"), 9, 3})).has_value());
    BOOST_TEST(!s.decode(codec.encode(server::user_joined{"", "cy", meta("{}"), 8, 3})).has_value());
    BOOST_TEST(!s.decode(codec.encode(server::user_left{"", "", 8, 1})).has_value());
    // Nothing was learnt or forgotten.
    BOOST_TEST(s.user_count("design-review-42") == 2u);
    BOOST_TEST(!s.decode(cursor(8, 3)).has_value());
    auto const m = s.decode(cursor(9, 1));
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(std::get<server::cursor_updated>(*m).user_id == "ada");
}

BOOST_AUTO_TEST_CASE(a_user_who_left_is_forgotten_by_handle_and_by_name) {
    auto s = session_after({conversation()[0]});  // room 9: ada 1, bob 2
    auto const left = s.decode(codec.encode(server::user_left{"", "", 9, 2}));
    BOOST_TEST_REQUIRE(left.has_value());
    BOOST_TEST((*left == server_message(server::user_left{"design-review-42", "bob"})));
    // A late frame with bob's handle is never put down to anyone.
    BOOST_TEST(!s.decode(codec.encode(server::cursor_updated{"", "", {0, 0}, 1, 9, 2})).has_value());
    // A user:left by name (a server stopping) forgets that user's handle too.
    BOOST_TEST(s.decode(codec.encode(server::user_left{"design-review-42", "ada"})).has_value());
    BOOST_TEST(!s.decode(codec.encode(server::cursor_updated{"", "", {0, 0}, 1, 9, 1})).has_value());
    BOOST_TEST(s.user_count("design-review-42") == 0u);
    BOOST_TEST(s.room_count() == 1u);
}

BOOST_AUTO_TEST_CASE(a_new_handle_for_a_user_replaces_the_old_one) {
    auto s = session_after({conversation()[0]});  // room 9: ada 1, bob 2
    BOOST_TEST(s.decode(codec.encode(server::user_joined{"design-review-42", "ada", meta("{}"), 9, 5})).has_value());
    auto const m = s.decode(codec.encode(server::cursor_removed{"", "", 9, 5}));
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(std::get<server::cursor_removed>(*m).user_id == "ada");
    BOOST_TEST(!s.decode(codec.encode(server::cursor_removed{"", "", 9, 1})).has_value());
    BOOST_TEST(s.user_count("design-review-42") == 2u);
    // Announced by name: present again without a handle, so the old one goes.
    BOOST_TEST(s.decode(codec.encode(server::user_joined{"design-review-42", "bob", meta("{}")})).has_value());
    BOOST_TEST(!s.decode(codec.encode(server::cursor_removed{"", "", 9, 2})).has_value());
    BOOST_TEST(s.user_count("design-review-42") == 1u);
}

BOOST_AUTO_TEST_CASE(a_handle_is_never_taken_from_another_user) {
    auto s = session_after({conversation()[0]});  // room 9: ada 1, bob 2
    // bob's handle announced for someone else: refused, and bob keeps it.
    BOOST_TEST(!s.decode(codec.encode(server::user_joined{"", "eve", meta("{}"), 9, 2})).has_value());
    auto m = s.decode(codec.encode(server::cursor_removed{"", "", 9, 2}));
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(std::get<server::cursor_removed>(*m).user_id == "bob");
    // A join:ack that gives one handle to two users is refused and changes nothing.
    BOOST_TEST(!s.decode(codec.encode(server::join_ack{
                             "design-review-42",
                             {{"x", meta("{}"), std::nullopt, 4}, {"y", meta("{}"), std::nullopt, 4}},
                             11}))
                    .has_value());
    BOOST_TEST(s.user_count("design-review-42") == 2u);
    BOOST_TEST(!s.decode(codec.encode(server::cursor_removed{"", "", 11, 4})).has_value());
    // The same user announced again with its own handle (a re-join): accepted.
    m = s.decode(codec.encode(server::user_joined{"", "bob", meta("{}"), 9, 2}));
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST((*m == server_message(server::user_joined{"design-review-42", "bob", meta("{}")})));
}

BOOST_AUTO_TEST_CASE(a_join_ack_replaces_what_the_session_knew_of_its_room) {
    auto s = session_after({conversation()[0]});  // room 9: ada 1, bob 2
    auto user_of = [&](handle room, handle user) -> std::optional<std::string> {
        auto m = s.decode(codec.encode(server::cursor_removed{"", "", room, user}));
        if (!m) return std::nullopt;
        auto const& r = std::get<server::cursor_removed>(*m);
        return r.room_id + "/" + r.user_id;
    };
    // Joined again after the room was gone on the server: a new room handle.
    BOOST_TEST(s.decode(codec.encode(server::join_ack{"design-review-42", {{"bob", meta("{}"), std::nullopt, 1}}, 12}))
                   .has_value());
    BOOST_TEST((user_of(12, 1) == std::optional<std::string>("design-review-42/bob")));
    BOOST_TEST(!user_of(9, 1).has_value());
    BOOST_TEST(!user_of(12, 2).has_value());
    BOOST_TEST(s.room_count() == 1u);
    // Rooms are independent.
    BOOST_TEST(s.decode(codec.encode(server::join_ack{"lobby", {{"ada", meta("{}"), std::nullopt, 1}}, 13})).has_value());
    BOOST_TEST((user_of(13, 1) == std::optional<std::string>("lobby/ada")));
    BOOST_TEST((user_of(12, 1) == std::optional<std::string>("design-review-42/bob")));
    BOOST_TEST(s.room_count() == 2u);
    s.forget("lobby");
    BOOST_TEST(!user_of(13, 1).has_value());
    BOOST_TEST(s.room_count() == 1u);
    // A join:ack without a room handle: that room goes by name from now on.
    BOOST_TEST(s.decode(codec.encode(server::join_ack{"design-review-42", {{"bob", meta("{}"), std::nullopt, 1}}}))
                   .has_value());
    BOOST_TEST(!user_of(12, 1).has_value());
    BOOST_TEST(s.room_count() == 0u);
}

BOOST_AUTO_TEST_CASE(frames_by_name_pass_through_a_session_untouched) {
    binary_session s;
    for (auto const& m : server_samples()) {
        if (codec.encode(m).front() & 0x10) continue;  // the forms by handle (0x9N)
        auto const got = s.decode(codec.encode(m));
        BOOST_TEST_REQUIRE(got.has_value());
        BOOST_TEST((*got == without_handles(m)));
    }
}

BOOST_AUTO_TEST_CASE(a_session_refuses_every_truncation_and_learns_nothing_from_it) {
    binary_session s;
    for (auto const& m : conversation()) {
        auto const whole = codec.encode(m);
        for (std::size_t n = 0; n < whole.size(); ++n) {
            BOOST_TEST_CONTEXT("message " << m.index() << ", first " << n << " of " << whole.size() << " bytes") {
                exact_copy const cut(std::string_view(whole).substr(0, n));
                BOOST_TEST(!s.decode(cut.view()).has_value());
            }
        }
        BOOST_TEST(!s.decode(whole + '\0').has_value());
        // The whole frame still reads as it would have: nothing was learnt or
        // forgotten from the pieces.
        auto const got = s.decode(exact_copy(whole).view());
        BOOST_TEST_REQUIRE(got.has_value());
        BOOST_TEST((*got == without_handles(m)));
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace codec_binary_test
