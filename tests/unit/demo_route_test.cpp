// The demo page's route (flock/demo.hpp): files from memory with their content
// type, ETag and Cache-Control, 304 on a matching If-None-Match, the `/` and
// `/demo` aliases, and every other request declined.
#include <flock/demo.hpp>

#include <boost/test/unit_test.hpp>

#include <optional>
#include <string>

namespace demo_route_test {

constexpr flk::static_file files[] = {
    {"/demo/index.html", "text/html; charset=utf-8", "aaaa1111", "<!doctype html>"},
    {"/demo/flock.js", "text/javascript; charset=utf-8", "bbbb2222", "export {}"},
};

// Runs the route; nullopt when it declined.
std::optional<flk::http_response> get(flk::http_route const& route, std::string method, std::string path,
                                      std::string if_none_match = {}) {
    flk::http_request req;
    req.method = std::move(method);
    req.path = path;
    req.target = path + "?room=x";
    req.query = "room=x";
    if (!if_none_match.empty()) req.headers.emplace_back("if-none-match", if_none_match);
    std::optional<flk::http_response> answer;
    int calls = 0;
    flk::http_responder reply = [&](flk::http_response r) {
        ++calls;
        answer = std::move(r);
    };
    bool const taken = route(req, reply);
    BOOST_TEST(calls == (taken ? 1 : 0));  // a taken request is answered exactly once
    return answer;
}

std::string header(flk::http_response const& r, std::string const& name) {
    for (auto const& [n, v] : r.headers)
        if (n == name) return v;
    return "(none)";
}

BOOST_AUTO_TEST_SUITE(demo_route)

BOOST_AUTO_TEST_CASE(serves_each_file_with_its_type_etag_and_cache_control) {
    auto route = flk::demo_route(files);
    auto js = get(route, "GET", "/demo/flock.js");
    BOOST_TEST_REQUIRE(js.has_value());
    BOOST_TEST(js->status == 200u);
    BOOST_TEST(js->content_type == "text/javascript; charset=utf-8");
    BOOST_TEST(js->body == "export {}");
    BOOST_TEST(header(*js, "ETag") == "\"bbbb2222\"");
    BOOST_TEST(header(*js, "Cache-Control") == "no-cache");
    BOOST_TEST(header(*js, "X-Content-Type-Options") == "nosniff");
}

BOOST_AUTO_TEST_CASE(root_and_demo_are_the_page_whatever_the_query) {
    auto route = flk::demo_route(files);
    for (auto const* path : {"/", "/demo", "/demo/index.html"}) {
        auto page = get(route, "GET", path);
        BOOST_TEST_REQUIRE(page.has_value(), path);
        BOOST_TEST(page->body == "<!doctype html>", path);
        BOOST_TEST(page->content_type == "text/html; charset=utf-8", path);
    }
}

BOOST_AUTO_TEST_CASE(a_matching_etag_gets_304_without_a_body) {
    auto route = flk::demo_route(files);
    for (auto const* inm : {"\"bbbb2222\"", "W/\"bbbb2222\"", "\"old\", \"bbbb2222\"", "*"}) {
        auto r = get(route, "GET", "/demo/flock.js", inm);
        BOOST_TEST_REQUIRE(r.has_value());
        BOOST_TEST(r->status == 304u, inm);
        BOOST_TEST(r->body.empty(), inm);
        BOOST_TEST(header(*r, "ETag") == "\"bbbb2222\"");
    }
    for (auto const* inm : {"\"aaaa1111\"", "bbbb2222", "\"bbbb222\"", "\"bbbb22222\""}) {
        auto r = get(route, "GET", "/demo/flock.js", inm);
        BOOST_TEST_REQUIRE(r.has_value());
        BOOST_TEST(r->status == 200u, inm);
        BOOST_TEST(r->body == "export {}", inm);
    }
}

BOOST_AUTO_TEST_CASE(declines_other_paths_and_methods) {
    auto route = flk::demo_route(files);
    BOOST_TEST(!get(route, "GET", "/health").has_value());
    BOOST_TEST(!get(route, "GET", "/demo/").has_value());
    BOOST_TEST(!get(route, "GET", "/demo/missing.js").has_value());
    BOOST_TEST(!get(route, "GET", "/flock.js").has_value());
    BOOST_TEST(!get(route, "POST", "/").has_value());
    BOOST_TEST(!get(route, "HEAD", "/").has_value());
    // Without the aliases, / is not served.
    BOOST_TEST(!get(flk::static_files_route(files), "GET", "/").has_value());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace demo_route_test
