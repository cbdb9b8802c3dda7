// The server side of the WebSocket opening handshake (RFC 6455, 4.2), without
// I/O: checking an upgrade request as Beast's accept does, listing the
// subprotocols it offers, and writing the 101 response.
#pragma once

#include <flock/detail/http_util.hpp>

#include <boost/beast/http/message.hpp>
#include <boost/beast/websocket/detail/hybi13.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace flk::detail {

/// What is wrong, if anything, with a request that asks for a WebSocket
/// (one `boost::beast::websocket::is_upgrade` accepted).
enum class ws_upgrade_check {
    ok,
    bad_request,          ///< no usable Sec-WebSocket-Key or no Sec-WebSocket-Version: 400
    unsupported_version,  ///< a version other than 13: 426 naming 13
};

/// The longest Sec-WebSocket-Key taken: base64 of 16 bytes, as Beast does.
inline constexpr std::size_t ws_max_key_bytes = 24;

inline ws_upgrade_check check_ws_upgrade(boost::beast::http::request_header<> const& req) {
    namespace http = boost::beast::http;
    auto const key = req[http::field::sec_websocket_key];
    if (key.empty() || key.size() > ws_max_key_bytes) return ws_upgrade_check::bad_request;
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
