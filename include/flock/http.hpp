// Routes of the server's own HTTP: pages and endpoints served on the
// WebSocket port beside `GET /health` (the demo page, the admin dashboard,
// `/metrics`). Plain types, so options.hpp stays free of Beast.
//
//     opts.http_routes.push_back([](flk::http_request const& req, flk::http_responder& reply) {
//         if (req.method != "GET" || req.path != "/hello") return false;  // not mine: next route, else 404
//         reply({.body = "hello\n"});
//         return true;
//     });
//
// A route runs on the event loop of the connection that asked. It may answer
// at once or keep the responder and call it later, from any thread (after a
// Redis round trip, say); it must call it exactly once.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk {

struct http_request {
    std::string method;  ///< "GET", "POST", ...
    std::string target;  ///< as sent: "/admin?x=1"
    std::string path;    ///< target without query and fragment: "/admin"
    std::string query;   ///< after '?', without it; empty when none
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;            ///< at most 4 KiB (larger bodies are refused before routing)
    std::string remote_address;  ///< the peer of the TCP connection ("127.0.0.1"), not X-Forwarded-For

    /// The first header of that name, ASCII case ignored; empty when absent.
    std::string_view header(std::string_view name) const noexcept {
        auto const same = [&](std::string const& n) {
            return std::ranges::equal(n, name, [](char a, char b) { return lower(a) == lower(b); });
        };
        for (auto const& [n, v] : headers)
            if (same(n)) return v;
        return {};
    }

private:
    static constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }
};

// Every member has a default initializer, so that reply({.body = ...}) leaves
// the rest out without -Wmissing-field-initializers.
struct http_response {
    unsigned status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body{};
    /// Further headers (Set-Cookie, Location, Cache-Control, ...); a header
    /// may repeat. Server, Content-Type and Content-Length are set for you.
    std::vector<std::pair<std::string, std::string>> headers{};
};

/// Sends the answer: call it exactly once, from any thread.
using http_responder = std::function<void(http_response)>;

/// Returns false to decline the request; the next route is then tried, and
/// 404 follows the last. Returning true promises a call of the responder.
using http_route = std::function<bool(http_request const&, http_responder&)>;

}  // namespace flk
