// The demo page's HTTP route (FLOCK_DEMO=1): files held in memory, served
// through options::http_routes (flock/http.hpp) with their content type, an
// ETag and `Cache-Control: no-cache`, so a browser keeps them and revalidates
// each use with a cheap 304.
//
// flock-server compiles the page's files into itself at build time
// (cmake/embed_files.cmake writes flock_demo_assets.cpp, a table of
// flk::static_file, from examples/demo/ and clients/js/flock.js), so an
// installed binary needs nothing beside it:
//
//     #include <flock/demo.hpp>
//     #include "flock_demo_assets.hpp"   // examples/: std::span<static_file const> demo_assets::files()
//     if (opts.demo) opts.http_routes.push_back(flk::demo_route(flk::demo_assets::files()));
//
// Any program can serve its own files the same way with flk::static_files_route.
#pragma once

#include <flock/http.hpp>

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flk {

/// One file served from memory; the views must outlive the route (static data).
struct static_file {
    std::string_view path;          ///< URL path: "/demo/demo.js"
    std::string_view content_type;  ///< "text/javascript; charset=utf-8"
    std::string_view etag;          ///< a strong validator without quotes (a content hash)
    std::string_view body;
};

namespace detail {

// True when an If-None-Match value lists `etag` (quoted), or is "*".
inline bool etag_matches(std::string_view if_none_match, std::string_view etag) {
    while (!if_none_match.empty()) {
        auto const comma = if_none_match.find(',');
        auto item = if_none_match.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (item.starts_with("W/")) item.remove_prefix(2);  // weak comparison (RFC 9110, 13.1.2)
        if (item == "*") return true;
        if (item.size() == etag.size() + 2 && item.front() == '"' && item.back() == '"' &&
            item.substr(1, etag.size()) == etag)
            return true;
        if (comma == std::string_view::npos) break;
        if_none_match.remove_prefix(comma + 1);
    }
    return false;
}

}  // namespace detail

/// Serves `files` to GET requests of their exact path (the query is ignored),
/// with `aliases` mapping further paths to a file's path ({"/", "/demo/index.html"}).
/// Other requests are declined. Responses carry `Cache-Control: no-cache`, an
/// ETag, `X-Content-Type-Options: nosniff`, and 304 answers a matching
/// If-None-Match.
inline http_route static_files_route(std::span<static_file const> files,
                                     std::vector<std::pair<std::string, std::string>> aliases = {}) {
    return [files, aliases = std::move(aliases)](http_request const& req, http_responder& reply) {
        if (req.method != "GET") return false;
        std::string_view path = req.path;
        for (auto const& [from, to] : aliases)
            if (path == from) path = to;
        for (auto const& f : files) {
            if (f.path != path) continue;
            http_response res;
            std::string const etag = '"' + std::string(f.etag) + '"';
            res.headers = {{"Cache-Control", "no-cache"}, {"ETag", etag}, {"X-Content-Type-Options", "nosniff"}};
            res.content_type = std::string(f.content_type);
            if (detail::etag_matches(req.header("If-None-Match"), f.etag)) {
                res.status = 304;
            } else {
                res.body = std::string(f.body);
            }
            reply(std::move(res));
            return true;
        }
        return false;
    };
}

/// The demo page: `/` and `/demo` answer with `/demo/index.html`, which loads
/// the other files under `/demo/`.
inline http_route demo_route(std::span<static_file const> files) {
    return static_files_route(files, {{"/", "/demo/index.html"}, {"/demo", "/demo/index.html"}});
}

}  // namespace flk
