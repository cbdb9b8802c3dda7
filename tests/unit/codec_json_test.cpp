// flk::json_codec: the wire format of PROTOCOL.md, both directions, and
// every way a hostile or broken client frame is turned into a clear error.
#include <boost/test/unit_test.hpp>

#include <flock/codec/json.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace codec_json_test {

namespace bj = boost::json;
using namespace flk;

inline constexpr json_codec codec{};

decode_result decode(std::string_view text) { return codec.decode(text, frame_kind::text); }

/// The message `text` decodes to, failing the test if it does not.
template <class Message>
Message decode_as(std::string_view text) {
    auto r = decode(text);
    BOOST_TEST_REQUIRE(r.has_value(), text << " -> " << r.error().message());
    BOOST_TEST_REQUIRE(std::holds_alternative<Message>(*r), text);
    return std::get<Message>(*r);
}

decode_error decode_failure(std::string_view text) {
    auto r = decode(text);
    BOOST_TEST_REQUIRE(r.has_error(), text << " decoded although it is malformed");
    return r.error();
}

/// Checks that `text` is refused with `code`, naming `field`.
void expect_error(std::string_view text, decode_errc code, std::string_view field = {}) {
    BOOST_TEST_CONTEXT(text) {
        auto const e = decode_failure(text);
        BOOST_TEST((e.code == code), "got " << to_string(e.code));
        BOOST_TEST(e.field == field);
    }
}


/// encode, then read back with decode_server: must give the same message.
void expect_round_trip(server_message const& m) {
    auto const bytes = codec.encode(m);
    BOOST_TEST_CONTEXT(bytes) {
        auto const back = codec.decode_server(bytes);
        BOOST_TEST_REQUIRE(back.has_value());
        BOOST_TEST((*back == m));
    }
}

/// The encoded message parsed by a standard JSON parser, checked to lead
/// with `"type":"<type>"`.
bj::object encoded_object(server_message const& m, std::string_view type) {
    auto const bytes = codec.encode(m);
    BOOST_TEST(bytes.starts_with(R"({"type":")" + std::string(type) + '"'), bytes);
    auto v = bj::parse(bytes);
    BOOST_TEST_REQUIRE(v.is_object(), bytes);
    return v.as_object();
}

metadata meta(std::string_view json) { return bj::parse(json).as_object(); }

/// How a position is spelled inside an encoded cursor:updated.
std::string position_text(position p) {
    auto const bytes = codec.encode(server::cursor_updated{"r", "u", p, 0});
    auto const from = bytes.find(R"("position":)") + std::string_view(R"("position":)").size();
    return bytes.substr(from, bytes.find(R"(,"timestamp")") - from);
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

BOOST_AUTO_TEST_SUITE(codec_json)

// ------------------------------------------------------- client messages

BOOST_AUTO_TEST_CASE(frames_are_text) { BOOST_TEST((json_codec::kind == frame_kind::text)); }

BOOST_AUTO_TEST_CASE(join_with_every_field) {
    auto const m = decode_as<client::join>(
        R"({"type":"join","roomId":"doc-42","userId":"ada",)"
        R"("metadata":{"name":"Ada","color":"#ff0","tags":["a",1],"nested":{"ok":true}},)"
        R"("apiKey":"k-123"})");
    BOOST_TEST(m.room_id == "doc-42");
    BOOST_TEST(m.user_id == "ada");
    BOOST_TEST(m.meta == meta(R"({"name":"Ada","color":"#ff0","tags":["a",1],"nested":{"ok":true}})"));
    BOOST_TEST_REQUIRE(m.api_key.has_value());
    BOOST_TEST(*m.api_key == "k-123");
}

BOOST_AUTO_TEST_CASE(join_without_api_key) {
    auto const m = decode_as<client::join>(
        R"({"type":"join","roomId":"r","userId":"u","metadata":{}})");
    BOOST_TEST(!m.api_key.has_value());
    BOOST_TEST(m.meta.empty());
}

BOOST_AUTO_TEST_CASE(join_with_null_api_key_is_like_none) {
    auto const m = decode_as<client::join>(
        R"({"type":"join","roomId":"r","userId":"u","metadata":{},"apiKey":null})");
    BOOST_TEST(!m.api_key.has_value());
}

BOOST_AUTO_TEST_CASE(heartbeat) {
    BOOST_TEST(decode_as<client::heartbeat>(R"({"type":"heartbeat","roomId":"r1"})").room_id == "r1");
}

BOOST_AUTO_TEST_CASE(cursor_move) {
    auto const m =
        decode_as<client::cursor_move>(R"({"type":"cursor:move","roomId":"r","position":{"x":0.25,"y":0.75}})");
    BOOST_TEST(m.room_id == "r");
    BOOST_TEST(m.pos.x == 0.25);
    BOOST_TEST(m.pos.y == 0.75);
}

BOOST_AUTO_TEST_CASE(cursor_move_accepts_integers_and_relays_out_of_range_values) {
    auto const m = decode_as<client::cursor_move>(
        R"({"type":"cursor:move","roomId":"r","position":{"x":1,"y":-3}})");
    BOOST_TEST(m.pos.x == 1.0);
    BOOST_TEST(m.pos.y == -3.0);
    auto const big = decode_as<client::cursor_move>(
        R"({"type":"cursor:move","roomId":"r","position":{"x":18446744073709551615,"y":0}})");
    BOOST_TEST(big.pos.x == 18446744073709551615.0);
}

BOOST_AUTO_TEST_CASE(cursor_leave) {
    BOOST_TEST(decode_as<client::cursor_leave>(R"({"type":"cursor:leave","roomId":"r2"})").room_id ==
               "r2");
}

BOOST_AUTO_TEST_CASE(presence_update) {
    auto const m = decode_as<client::presence_update>(
        R"({"type":"presence:update","roomId":"r","metadata":{"status":"away"}})");
    BOOST_TEST(m.room_id == "r");
    BOOST_TEST(m.patch == meta(R"({"status":"away"})"));
}

BOOST_AUTO_TEST_CASE(leave) {
    BOOST_TEST(decode_as<client::leave>(R"({"type":"leave","roomId":"r3"})").room_id == "r3");
}

BOOST_AUTO_TEST_CASE(unknown_fields_are_ignored) {
    auto const m = decode_as<client::leave>(
        R"({"sdk":"1.2","type":"leave","extra":{"deep":[1,2,3]},"roomId":"r"})");
    BOOST_TEST(m.room_id == "r");
}

BOOST_AUTO_TEST_CASE(empty_ids_are_left_to_the_core) {
    auto const m = decode_as<client::join>(R"({"type":"join","roomId":"","userId":"","metadata":{}})");
    BOOST_TEST(m.room_id.empty());
    BOOST_TEST(m.user_id.empty());
}

BOOST_AUTO_TEST_CASE(escaped_strings_are_decoded) {
    auto const m = decode_as<client::join>(
        R"({"type":"join","roomId":"a\"b\\c\nd","userId":"Zo\u00eb \ud83d\udc26","metadata":{}})");
    BOOST_TEST(m.room_id == "a\"b\\c\nd");
    BOOST_TEST(m.user_id == "Zo\xc3\xab \xf0\x9f\x90\xa6");
}

BOOST_AUTO_TEST_CASE(large_frames_decode_completely) {
    // Bigger than the stack arena: the parse spills over to the heap.
    std::string const name(10000, 'n');
    auto const m = decode_as<client::join>(R"({"type":"join","roomId":"r","userId":"u","metadata":{"name":")" +
                                           name + R"("}})");
    BOOST_TEST(m.meta.at("name").as_string() == name);
}

BOOST_AUTO_TEST_CASE(client_from_json_reads_a_value_parsed_elsewhere) {
    // The result owns its data: the value's memory may go right after.
    decode_result r = decode_error{};
    {
        bj::monotonic_resource arena;
        auto const v = bj::parse(
            R"({"type":"presence:update","roomId":"r","metadata":{"long status text, longer than SSO":"x"}})",
            &arena);
        r = json_codec::client_from_json(v);
    }
    BOOST_TEST_REQUIRE(r.has_value());
    auto const& m = std::get<client::presence_update>(*r);
    BOOST_TEST(m.patch.at("long status text, longer than SSO").as_string() == "x");
}

// -------------------------------------------------- malformed client frames

BOOST_AUTO_TEST_CASE(unparseable_frames_are_invalid_json_and_dropped) {
    for (std::string_view text : {"", "{", R"({"type":"leave","roomId":"r"} trailing)", "{type:'leave'}",
                                  "\xff\xfe", "{\"type\":\"leave\",\"roomId\":\"r\xc3\"}",
                                  "{\"type\":\"leave\",\"roomId\":\"\xed\xa0\x80\"}"}) {
        BOOST_TEST_CONTEXT(text) {
            auto const e = decode_failure(text);
            BOOST_TEST((e.code == decode_errc::invalid_json));
            BOOST_TEST(!e.deserves_reply());
        }
    }
}

BOOST_AUTO_TEST_CASE(non_objects_are_refused_without_crashing) {
    for (std::string_view text : {"null", "[]", "42", R"("str")", "true", R"([{"type":"leave","roomId":"r"}])"})
        expect_error(text, decode_errc::not_an_object);
}

BOOST_AUTO_TEST_CASE(type_must_be_a_string) {
    expect_error(R"({"roomId":"r"})", decode_errc::missing_type);
    expect_error(R"({"type":42,"roomId":"r"})", decode_errc::missing_type);
    expect_error(R"({"type":null,"roomId":"r"})", decode_errc::missing_type);
}

BOOST_AUTO_TEST_CASE(unknown_types_are_dropped_silently) {
    for (std::string_view text : {R"({"type":"cursor:teleport","roomId":"r"})", R"({"type":"JOIN","roomId":"r"})",
                                  R"({"type":"","roomId":"r"})"}) {
        BOOST_TEST_CONTEXT(text) {
            auto const e = decode_failure(text);
            BOOST_TEST((e.code == decode_errc::unknown_type));
            BOOST_TEST(!e.deserves_reply());
            BOOST_TEST(e.room_id == "r");
        }
    }
}

BOOST_AUTO_TEST_CASE(missing_fields_are_named) {
    expect_error(R"({"type":"heartbeat"})", decode_errc::missing_field, "roomId");
    expect_error(R"({"type":"leave"})", decode_errc::missing_field, "roomId");
    expect_error(R"({"type":"cursor:leave"})", decode_errc::missing_field, "roomId");
    expect_error(R"({"type":"join","roomId":"r","metadata":{}})", decode_errc::missing_field, "userId");
    expect_error(R"({"type":"join","roomId":"r","userId":"u"})", decode_errc::missing_field, "metadata");
    expect_error(R"({"type":"presence:update","roomId":"r"})", decode_errc::missing_field, "metadata");
    expect_error(R"({"type":"cursor:move","roomId":"r"})", decode_errc::missing_field, "position");
    expect_error(R"({"type":"cursor:move","roomId":"r","position":{"y":1}})", decode_errc::missing_field,
                 "position.x");
    expect_error(R"({"type":"cursor:move","roomId":"r","position":{"x":1}})", decode_errc::missing_field,
                 "position.y");
}

BOOST_AUTO_TEST_CASE(wrong_types_are_named) {
    expect_error(R"({"type":"leave","roomId":7})", decode_errc::wrong_type, "roomId");
    expect_error(R"({"type":"heartbeat","roomId":null})", decode_errc::wrong_type, "roomId");
    expect_error(R"({"type":"join","roomId":"r","userId":["u"],"metadata":{}})", decode_errc::wrong_type,
                 "userId");
    expect_error(R"({"type":"join","roomId":"r","userId":"u","metadata":[]})", decode_errc::wrong_type,
                 "metadata");
    expect_error(R"({"type":"join","roomId":"r","userId":"u","metadata":{},"apiKey":123})",
                 decode_errc::wrong_type, "apiKey");
    expect_error(R"({"type":"presence:update","roomId":"r","metadata":"away"})", decode_errc::wrong_type,
                 "metadata");
    expect_error(R"({"type":"presence:update","roomId":"r","metadata":null})", decode_errc::wrong_type,
                 "metadata");
    expect_error(R"({"type":"cursor:move","roomId":"r","position":[0.1,0.2]})", decode_errc::wrong_type,
                 "position");
    expect_error(R"({"type":"cursor:move","roomId":"r","position":{"x":"0.5","y":0.5}})",
                 decode_errc::wrong_type, "position.x");
    expect_error(R"({"type":"cursor:move","roomId":"r","position":{"x":0.5,"y":null}})",
                 decode_errc::wrong_type, "position.y");
}

BOOST_AUTO_TEST_CASE(the_first_bad_field_is_reported) {
    expect_error(R"({"type":"join"})", decode_errc::missing_field, "roomId");
    expect_error(R"({"type":"join","roomId":"r","userId":1})", decode_errc::wrong_type, "userId");
}

BOOST_AUTO_TEST_CASE(non_finite_numbers_are_refused) {
    // Boost.JSON reads numbers beyond double's range as infinity.
    expect_error(R"({"type":"cursor:move","roomId":"r","position":{"x":1e999,"y":0}})",
                 decode_errc::wrong_type, "position.x");
    expect_error(R"({"type":"cursor:move","roomId":"r","position":{"x":0,"y":-1e999}})",
                 decode_errc::wrong_type, "position.y");
    // Infinity in metadata would be relayed as `Infinity`, which is not JSON.
    expect_error(R"({"type":"presence:update","roomId":"r","metadata":{"a":[{"b":1e999}]}})",
                 decode_errc::wrong_type, "metadata");
}

BOOST_AUTO_TEST_CASE(malformed_known_messages_deserve_a_reply_naming_the_room) {
    auto const e = decode_failure(R"({"type":"cursor:move","roomId":"room-9","position":{"x":"a","y":0}})");
    BOOST_TEST(e.deserves_reply());
    BOOST_TEST(e.room_id == "room-9");
    BOOST_TEST(e.message() == "field has the wrong type: position.x");
}

BOOST_AUTO_TEST_CASE(room_id_is_only_filled_when_readable) {
    BOOST_TEST(decode_failure(R"({"type":"leave","roomId":7})").room_id.empty());
    BOOST_TEST(decode_failure(R"({"roomId":"r"})").room_id == "r");
    BOOST_TEST(decode_failure("[]").room_id.empty());
}

BOOST_AUTO_TEST_CASE(binary_frames_are_the_wrong_kind) {
    auto const r = codec.decode(R"({"type":"leave","roomId":"r"})", frame_kind::binary);
    BOOST_TEST_REQUIRE(r.has_error());
    BOOST_TEST((r.error().code == decode_errc::wrong_frame_kind));
}

BOOST_AUTO_TEST_CASE(nesting_is_bounded) {
    // The root object and `metadata` take two of the 32 levels allowed.
    auto const join = [](std::string const& inside) {
        return R"({"type":"join","roomId":"r","userId":"u","metadata":{"deep":)" + inside + "}}";
    };
    BOOST_TEST(decode(join(nested_arrays(30))).has_value());
    expect_error(join(nested_arrays(31)), decode_errc::invalid_json);
    expect_error(nested_arrays(100000), decode_errc::invalid_json);
}

// -------------------------------------------------------- server messages

BOOST_AUTO_TEST_CASE(join_ack_lists_members_and_omits_unknown_cursors) {
    server::join_ack const m{"doc",
                             {{"ada", meta(R"({"name":"Ada"})"), position{0.5, 0.25}},
                              {"bob", meta(R"({"name":"Bob","n":3})"), std::nullopt}}};
    auto const o = encoded_object(m, "join:ack");
    BOOST_TEST(o == bj::parse(R"({"type":"join:ack","roomId":"doc","users":[
        {"userId":"ada","metadata":{"name":"Ada"},"cursor":{"x":0.5,"y":0.25}},
        {"userId":"bob","metadata":{"name":"Bob","n":3}}]})").as_object());
    BOOST_TEST(!o.at("users").as_array().at(1).as_object().contains("cursor"));
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(join_ack_into_an_empty_room) {
    server::join_ack const m{"r", {}};
    BOOST_TEST(codec.encode(m) == R"({"type":"join:ack","roomId":"r","users":[]})");
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(user_joined) {
    server::user_joined const m{"r", "ada", meta(R"({"name":"Ada","cursorColor":"#f00"})")};
    BOOST_TEST(encoded_object(m, "user:joined") ==
               bj::parse(R"({"type":"user:joined","roomId":"r","userId":"ada",
                             "metadata":{"name":"Ada","cursorColor":"#f00"}})").as_object());
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(user_left) {
    server::user_left const m{"r", "ada"};
    BOOST_TEST(codec.encode(m) == R"({"type":"user:left","roomId":"r","userId":"ada"})");
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(cursor_updated) {
    server::cursor_updated const m{"r", "ada", {0.5, 0.125}, 1700000000123};
    BOOST_TEST(codec.encode(m) ==
               R"({"type":"cursor:updated","roomId":"r","userId":"ada","position":{"x":0.5,"y":0.125},"timestamp":1700000000123})");
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(cursor_removed) {
    server::cursor_removed const m{"r", "ada"};
    BOOST_TEST(codec.encode(m) == R"({"type":"cursor:removed","roomId":"r","userId":"ada"})");
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(presence_updated_carries_the_patch) {
    server::presence_updated const m{"r", "ada", meta(R"({"status":"away","typing":false})")};
    BOOST_TEST(encoded_object(m, "presence:updated") ==
               bj::parse(R"({"type":"presence:updated","roomId":"r","userId":"ada",
                             "metadata":{"status":"away","typing":false}})").as_object());
    expect_round_trip(m);
}

BOOST_AUTO_TEST_CASE(heartbeat_ack_has_only_a_type) {
    BOOST_TEST(codec.encode(server::heartbeat_ack{}) == R"({"type":"heartbeat:ack"})");
    expect_round_trip(server::heartbeat_ack{});
}

BOOST_AUTO_TEST_CASE(errors_carry_their_code_and_a_room_only_when_known) {
    server::error const plain{error_code::room_full, "room is full", std::nullopt};
    BOOST_TEST(codec.encode(plain) == R"({"type":"error","code":"ROOM_FULL","message":"room is full"})");
    expect_round_trip(plain);

    server::error const routed{error_code::invalid_message, "missing field: roomId", "r"};
    BOOST_TEST(encoded_object(routed, "error") ==
               bj::parse(R"({"type":"error","code":"INVALID_MESSAGE",
                             "message":"missing field: roomId","roomId":"r"})").as_object());
    expect_round_trip(routed);

    for (auto c : {error_code::invalid_api_key, error_code::rate_limited, error_code::internal_error,
                   error_code::too_many_rooms})
        expect_round_trip(server::error{c, "m", std::nullopt});
}

BOOST_AUTO_TEST_CASE(strings_are_escaped) {
    std::string const tricky = "say \"hi\" \\ back\\slash\nnew\rline\ttab \x01\x1f\x7f Zo\xc3\xab \xf0\x9f\x90\xa6";
    server::user_left const m{tricky, tricky};
    auto const bytes = codec.encode(m);
    BOOST_TEST(bytes.find('\n') == std::string::npos);
    BOOST_TEST(bytes.find("\\u0001") != std::string::npos);
    BOOST_TEST(bytes.find("\\u001f") != std::string::npos);
    auto const o = bj::parse(bytes).as_object();
    BOOST_TEST(o.at("roomId").as_string() == tricky);
    BOOST_TEST(o.at("userId").as_string() == tricky);
    expect_round_trip(m);
    expect_round_trip(server::user_joined{"r", tricky, meta(R"({"name":"a\"b\\c\u0002"})")});
    expect_round_trip(server::error{error_code::internal_error, tricky, tricky});
}

BOOST_AUTO_TEST_CASE(doubles_print_in_shortest_form) {
    BOOST_TEST(position_text({0.5, 0.123456789}) == R"({"x":0.5,"y":0.123456789})");
    BOOST_TEST(position_text({1.0, 0.0}) == R"({"x":1,"y":0})");
    BOOST_TEST(position_text({0.1 + 0.2, -0.75}) == R"({"x":0.30000000000000004,"y":-0.75})");
}

BOOST_AUTO_TEST_CASE(doubles_round_trip_exactly) {
    for (double d : {1.0 / 3, 0.1 + 0.2, 1e-7, 5e-324, 1.7976931348623157e308, -123456.789, 2e20})
        expect_round_trip(server::cursor_updated{"r", "u", {d, -d}, 1});
}

BOOST_AUTO_TEST_CASE(non_finite_positions_still_give_valid_json) {
    // JSON has no infinity or NaN; like JSON.stringify, the codec writes null.
    auto const inf = std::numeric_limits<double>::infinity();
    BOOST_TEST(position_text({inf, std::nan("")}) == R"({"x":null,"y":null})");
    bj::error_code ec;
    bj::parse(codec.encode(server::cursor_updated{"r", "u", {-inf, 0}, 1}), ec);
    BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(timestamps_are_full_int64) {
    expect_round_trip(server::cursor_updated{"r", "u", {0, 0}, std::numeric_limits<std::int64_t>::max()});
    expect_round_trip(server::cursor_updated{"r", "u", {0, 0}, -1});
}

// ---------------------------------------- server messages from other servers

BOOST_AUTO_TEST_CASE(decode_server_refuses_what_is_not_a_server_message) {
    for (std::string_view text :
         {"", "null", "[]", R"({"roomId":"r"})", R"({"type":"join","roomId":"r"})",
          R"({"type":"user:left","roomId":"r"})", R"({"type":"cursor:updated","roomId":"r","userId":"u",
             "position":{"x":0,"y":0},"timestamp":"now"})",
          R"({"type":"join:ack","roomId":"r","users":[{"userId":"u"}]})",
          R"({"type":"join:ack","roomId":"r","users":[42]})", R"({"type":"error","message":"no code"})"}) {
        BOOST_TEST(!codec.decode_server(text).has_value(), text);
    }
}

BOOST_AUTO_TEST_CASE(unknown_error_codes_become_internal_error) {
    auto const m = codec.decode_server(R"({"type":"error","code":"QUOTA_EXCEEDED","message":"slow down"})");
    BOOST_TEST_REQUIRE(m.has_value());
    auto const& e = std::get<server::error>(*m);
    BOOST_TEST((e.code == error_code::internal_error));
    BOOST_TEST(e.message == "slow down");
    BOOST_TEST(!e.room_id.has_value());
}

BOOST_AUTO_TEST_CASE(a_null_cursor_from_another_server_means_none) {
    auto const m = codec.decode_server(
        R"({"type":"join:ack","roomId":"r","users":[{"userId":"u","metadata":{},"cursor":null}]})");
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(!std::get<server::join_ack>(*m).users.at(0).cursor.has_value());
}

BOOST_AUTO_TEST_CASE(server_from_json_reads_a_broker_envelope) {
    server::cursor_updated const sent{"r", "ada", {0.5, 0.5}, 42};
    auto const envelope = R"({"instanceId":"6f1c","message":)" + codec.encode(sent) + "}";
    std::optional<server_message> got;
    {
        bj::monotonic_resource arena;
        auto const v = bj::parse(envelope, &arena);
        got = json_codec::server_from_json(v.as_object().at("message"));
    }
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST((*got == server_message(sent)));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace codec_json_test
