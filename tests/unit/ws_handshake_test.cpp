// flk::detail ws_handshake.hpp and split_comma_list: checking an upgrade
// request strictly, the subprotocols it offers, the 101 response.
#include <flock/detail/ws_handshake.hpp>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

namespace ws_handshake_test {

namespace http = boost::beast::http;
using flk::detail::ws_upgrade_check;

/// A GET with the upgrade fields a browser sends, minus those named empty.
inline http::request<http::string_body> upgrade_request(std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==",
                                                        std::string_view version = "13") {
    http::request<http::string_body> req{http::verb::get, "/", 11};
    req.set(http::field::host, "example.com");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    if (!key.empty()) req.set(http::field::sec_websocket_key, key);
    if (!version.empty()) req.set(http::field::sec_websocket_version, version);
    return req;
}

inline std::vector<std::string> split(std::string_view s) {
    std::vector<std::string> out;
    flk::detail::split_comma_list(s, out);
    return out;
}

}  // namespace ws_handshake_test

BOOST_AUTO_TEST_SUITE(ws_handshake_suite)

using namespace ws_handshake_test;

BOOST_AUTO_TEST_CASE(upgrade_checks_follow_rfc_6455) {
    using flk::detail::check_ws_upgrade;
    constexpr std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==";
    BOOST_TEST((check_ws_upgrade(upgrade_request()) == ws_upgrade_check::ok));
    BOOST_TEST((check_ws_upgrade(upgrade_request(key, "")) == ws_upgrade_check::bad_request));
    BOOST_TEST((check_ws_upgrade(upgrade_request(key, "8")) == ws_upgrade_check::unsupported_version));
    BOOST_TEST((check_ws_upgrade(upgrade_request(key, "13, 8")) == ws_upgrade_check::unsupported_version));
    // Only a GET over HTTP/1.1 that asks to upgrade the connection.
    auto http10 = upgrade_request();
    http10.version(10);
    BOOST_TEST((check_ws_upgrade(http10) == ws_upgrade_check::bad_request));
    auto post = upgrade_request();
    post.method(http::verb::post);
    BOOST_TEST((check_ws_upgrade(post) == ws_upgrade_check::bad_request));
    auto no_connection = upgrade_request();
    no_connection.erase(http::field::connection);
    BOOST_TEST((check_ws_upgrade(no_connection) == ws_upgrade_check::bad_request));
    auto listed = upgrade_request();
    listed.set(http::field::connection, "keep-alive, UPGRADE");
    BOOST_TEST((check_ws_upgrade(listed) == ws_upgrade_check::ok));
}

BOOST_AUTO_TEST_CASE(a_key_is_the_base64_of_exactly_16_bytes) {
    using flk::detail::check_ws_upgrade;
    auto check = [](std::string_view key) { return check_ws_upgrade(upgrade_request(key)); };
    BOOST_TEST((check("AAAAAAAAAAAAAAAAAAAAAA==") == ws_upgrade_check::ok));
    BOOST_TEST((check("x3JJHMbDL1EzLkh9GBhXDw==") == ws_upgrade_check::ok));
    BOOST_TEST((check("") == ws_upgrade_check::bad_request));
    BOOST_TEST((check("abc") == ws_upgrade_check::bad_request));
    BOOST_TEST((check(std::string(24, 'k')) == ws_upgrade_check::bad_request));        // no padding: 18 bytes
    BOOST_TEST((check("AAAAAAAAAAAAAAAAAAAA") == ws_upgrade_check::bad_request));      // 15 bytes
    BOOST_TEST((check("AAAAAAAAAAAAAAAAAAAAAAA=") == ws_upgrade_check::bad_request));  // 17 bytes
    BOOST_TEST((check("AAAAAAAAAAAAAAAAAAAA!A==") == ws_upgrade_check::bad_request));  // not base64
    BOOST_TEST((check("AAAAAAAAAAAAAAAAAAAAAA==A") == ws_upgrade_check::bad_request));
}

BOOST_AUTO_TEST_CASE(websocket_requests_are_told_by_their_upgrade_field) {
    using flk::detail::asks_for_websocket;
    BOOST_TEST(asks_for_websocket(upgrade_request()));
    auto other = upgrade_request();
    other.set(http::field::upgrade, "h2c");
    BOOST_TEST(!asks_for_websocket(other));
    other.set(http::field::upgrade, "h2c, WebSocket");
    BOOST_TEST(asks_for_websocket(other));
    other.erase(http::field::upgrade);
    BOOST_TEST(!asks_for_websocket(other));
}

BOOST_AUTO_TEST_CASE(comma_lists_are_split_and_trimmed) {
    BOOST_TEST(split("") == std::vector<std::string>{}, boost::test_tools::per_element());
    BOOST_TEST(split("a") == std::vector<std::string>{"a"}, boost::test_tools::per_element());
    BOOST_TEST(split(" a ,b,\tc\t, ,,d") == (std::vector<std::string>{"a", "b", "c", "d"}),
               boost::test_tools::per_element());
    BOOST_TEST(split("x y, z") == (std::vector<std::string>{"x y", "z"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(subprotocols_from_every_field_in_order) {
    auto req = upgrade_request();
    BOOST_TEST(flk::detail::offered_subprotocols(req).empty());
    req.insert(http::field::sec_websocket_protocol, "flock.binary.v2, chat");
    req.insert(http::field::sec_websocket_protocol, "  superchat ");
    BOOST_TEST(flk::detail::offered_subprotocols(req) == (std::vector<std::string>{"flock.binary.v2", "chat", "superchat"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(accept_response_follows_the_rfc_example) {
    // RFC 6455, 1.3: this key is answered with this accept value.
    auto const r = flk::detail::ws_accept_response("dGhlIHNhbXBsZSBub25jZQ==", {});
    BOOST_TEST(r == "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    "Server: flock\r\n\r\n");
    auto const with = flk::detail::ws_accept_response("dGhlIHNhbXBsZSBub25jZQ==", "chat");
    BOOST_TEST(with.find("\r\nSec-WebSocket-Protocol: chat\r\n") != std::string::npos);
    // Beast's own parser reads it as a valid 101.
    http::response_parser<http::empty_body> p;
    boost::system::error_code ec;
    p.put(boost::asio::buffer(with), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(p.is_header_done());
    BOOST_TEST(p.get().result() == http::status::switching_protocols);
    BOOST_TEST(p.get()[http::field::sec_websocket_accept] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

BOOST_AUTO_TEST_SUITE_END()
