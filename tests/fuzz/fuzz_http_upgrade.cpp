// libFuzzer target: the HTTP side of the WebSocket upgrade. Beast's
// request_parser<string_body> with the limits of detail/ws_server.hpp, fed in
// reads, then what the server does with a parsed request: is_upgrade,
// check_ws_upgrade, offered_subprotocols (detail/ws_handshake.hpp),
// target_path and query_param (detail/http_util.hpp), keep_alive, and
// ws_accept_response for an accepted upgrade.
//
// Input layout: byte 0 picks the read size (1..256 bytes, 0 = all at once);
// the rest is what a client sent on the socket.
//
// Checked: a request accepted by check_ws_upgrade has a key of 1..24 bytes and
// version 13; offered subprotocols are non-empty, trimmed, comma-free and
// free of CR/LF; target_path is a prefix of the target without '?' or '#';
// query_param finds nothing without a '?'; the 101 response, echoing the
// first subprotocol offered (the transport concept allows echoing any), is
// one well-formed header block: exactly its own CRLFs, a 28-character accept.
#include <flock/detail/http_util.hpp>
#include <flock/detail/ws_handshake.hpp>
#include <flock/detail/ws_server.hpp>  // max_http_header_bytes, max_http_body_bytes

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace http = boost::beast::http;

[[noreturn]] void fail(char const* what) {
    std::fprintf(stderr, "http upgrade invariant broken: %s\n", what);
    std::abort();
}
#define CHECK(cond) \
    do {            \
        if (!(cond)) fail(#cond); \
    } while (0)

std::size_t count(std::string_view s, std::string_view needle) {
    std::size_t n = 0;
    for (auto at = s.find(needle); at != std::string_view::npos; at = s.find(needle, at + 1)) ++n;
    return n;
}

void check_request(http::request<http::string_body> const& req) {
    namespace d = flk::detail;
    auto const target = std::string_view(req.target().data(), req.target().size());
    auto const path = d::target_path(target);
    CHECK(target.substr(0, path.size()) == path);
    CHECK(path.find_first_of("?#") == std::string_view::npos);
    auto const key_param = d::query_param(target, "apiKey");
    if (target.find('?') == std::string_view::npos) CHECK(!key_param);
    (void)d::query_param(target, "");
    (void)req.keep_alive();
    (void)boost::beast::websocket::is_upgrade(req);

    auto const offered = d::offered_subprotocols(req);
    for (auto const& p : offered) {
        CHECK(!p.empty());
        CHECK(p.find(',') == std::string::npos);
        CHECK(p.front() != ' ' && p.front() != '\t' && p.back() != ' ' && p.back() != '\t');
        CHECK(p.find_first_of("\r\n") == std::string::npos);
    }

    auto const verdict = d::check_ws_upgrade(req);
    auto const key = req[http::field::sec_websocket_key];
    if (verdict != d::ws_upgrade_check::ok) return;
    CHECK(!key.empty() && key.size() <= 24);  // base64 of 16 bytes at most
    CHECK(req[http::field::sec_websocket_version] == "13");
    std::string_view const sub = offered.empty() ? std::string_view() : std::string_view(offered.front());
    auto const res = d::ws_accept_response(std::string_view(key.data(), key.size()), sub);
    CHECK(res.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(res.ends_with("\r\n\r\n"));
    CHECK(count(res, "\r\n\r\n") == 1);
    CHECK(count(res, "\n") == (sub.empty() ? 6u : 7u));
    CHECK(count(res, "\r") == count(res, "\n"));
    auto const accept = res.find("Sec-WebSocket-Accept: ");
    CHECK(accept != std::string::npos);
    CHECK(res.find("\r\n", accept) == accept + 22 + 28);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    if (size < 1) return 0;
    std::size_t const step = data[0] == 0 ? size : data[0];
    std::string_view const input(reinterpret_cast<char const*>(data) + 1, size - 1);

    http::request_parser<http::string_body> parser;
    parser.header_limit(flk::detail::max_http_header_bytes);
    parser.body_limit(flk::detail::max_http_body_bytes);

    // As http_session does: the header, then a body only when it has a
    // Content-Length (a chunked one is refused unread). What the parser did
    // not take stays buffered and the next read is appended to it.
    std::string buffer;
    std::size_t fed = 0;
    boost::beast::error_code ec;
    while (!parser.is_done() && !(parser.is_header_done() && parser.chunked())) {
        if (fed < input.size()) {
            auto const n = std::min(step, input.size() - fed);
            buffer.append(input.substr(fed, n));
            fed += n;
        }
        auto const used = parser.put(boost::asio::buffer(buffer), ec);
        CHECK(used <= buffer.size());
        buffer.erase(0, used);
        if (ec == http::error::need_more || (!ec && used == 0)) {
            ec = {};
            if (fed < input.size()) continue;
            if (!parser.got_some()) return 0;  // as http::read: end_of_stream
            parser.put_eof(ec);                // the client closed its side
            break;
        }
        if (ec) return 0;
    }
    if (ec || !parser.is_header_done()) return 0;
    if (!parser.is_done()) return 0;
    check_request(parser.get());
    return 0;
}
