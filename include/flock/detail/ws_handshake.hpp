// The server side of the WebSocket opening handshake (RFC 6455, 4.2), without
// I/O: checking an upgrade request strictly (method, version, Connection,
// the key's form), listing the subprotocols it offers, and writing the 101
// response.
#pragma once

#include <flock/detail/http_util.hpp>

#include <boost/beast/http/message.hpp>
#include <boost/beast/websocket/detail/hybi13.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace flk::detail {

/// What is wrong, if anything, with a request that asks for a WebSocket
/// (one whose Upgrade field names `websocket`, see asks_for_websocket).
enum class ws_upgrade_check {
    ok,
    bad_request,          ///< not a GET over HTTP/1.1 with Connection: upgrade, or no valid key or version: 400
    unsupported_version,  ///< a version other than 13: 426 naming 13
};

/// True when `token` is one of the comma-separated tokens of `value`,
/// compared without case (`Connection: keep-alive, Upgrade`).
inline bool has_token(std::string_view value, std::string_view token) {
    std::vector<std::string> items;
    split_comma_list(value, items);
    return std::ranges::any_of(items, [&](std::string const& item) {
        return std::ranges::equal(item, token, [](char a, char b) {
            auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
            return lower(a) == lower(b);
        });
    });
}

/// The client wants a WebSocket: its Upgrade field names `websocket`.
/// Such a request is never served as plain HTTP: it is upgraded or refused.
inline bool asks_for_websocket(boost::beast::http::request_header<> const& req) {
    auto const up = req[boost::beast::http::field::upgrade];
    return has_token(std::string_view(up.data(), up.size()), "websocket");
}

/// A Sec-WebSocket-Key must be the base64 of exactly 16 bytes (RFC 6455,
/// 4.1): 22 base64 digits and "==".
inline bool is_valid_ws_key(std::string_view key) noexcept {
    if (key.size() != 24 || key.substr(22) != "==") return false;
    return std::ranges::all_of(key.substr(0, 22), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    });
}

/// Checks an upgrade request as RFC 6455, 4.2.1 asks: a GET over HTTP/1.1
/// or later, `Connection: upgrade`, a valid key and version 13.
inline ws_upgrade_check check_ws_upgrade(boost::beast::http::request_header<> const& req) {
    namespace http = boost::beast::http;
    if (req.method() != http::verb::get || req.version() < 11) return ws_upgrade_check::bad_request;
    auto const connection = req[http::field::connection];
    if (!has_token(std::string_view(connection.data(), connection.size()), "upgrade"))
        return ws_upgrade_check::bad_request;
    auto const key = req[http::field::sec_websocket_key];
    if (!is_valid_ws_key(std::string_view(key.data(), key.size()))) return ws_upgrade_check::bad_request;
    auto const version = req[http::field::sec_websocket_version];
    if (version.empty()) return ws_upgrade_check::bad_request;
    if (version != "13") return ws_upgrade_check::unsupported_version;
    return ws_upgrade_check::ok;
}

/// The subprotocols a request offers, in order, from every Sec-WebSocket-Protocol field.
inline std::vector<std::string> offered_subprotocols(boost::beast::http::request_header<> const& req) {
    std::vector<std::string> out;
    auto [it, end] = req.equal_range(boost::beast::http::field::sec_websocket_protocol);
    for (; it != end; ++it) split_comma_list(std::string_view(it->value().data(), it->value().size()), out);
    return out;
}

/// The 101 response that accepts the upgrade whose Sec-WebSocket-Key is
/// `key`, naming `subprotocol` unless it is empty. Sec-WebSocket-Accept is
/// computed by Beast's own helper (SHA-1 and base64 of key + the RFC's GUID).
inline std::string ws_accept_response(std::string_view key, std::string_view subprotocol) {
    boost::beast::websocket::detail::sec_ws_accept_type accept;
    boost::beast::websocket::detail::make_sec_ws_accept(accept, {key.data(), key.size()});
    std::string r =
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ";
    r.append(accept.data(), accept.size());
    if (!subprotocol.empty()) {
        r += "\r\nSec-WebSocket-Protocol: ";
        r += subprotocol;
    }
    r += "\r\nServer: flock\r\n\r\n";
    return r;
}

}  // namespace flk::detail
