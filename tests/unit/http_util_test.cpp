// flk::detail::target_path / query_param / form_decode: how the WebSocket
// transport reads `?apiKey=` from an upgrade URL.
#include <flock/detail/http_util.hpp>

#include <boost/test/unit_test.hpp>

BOOST_AUTO_TEST_SUITE(http_util_suite)

using flk::detail::form_decode;
using flk::detail::query_param;
using flk::detail::target_path;

BOOST_AUTO_TEST_CASE(path_stops_at_query_or_fragment) {
    BOOST_TEST(target_path("/health") == "/health");
    BOOST_TEST(target_path("/health?x=1") == "/health");
    BOOST_TEST(target_path("/a#frag") == "/a");
    BOOST_TEST(target_path("") == "");
}

BOOST_AUTO_TEST_CASE(decodes_percent_escapes_and_plus) {
    BOOST_TEST(form_decode("a%20b%2Bc%3d") == "a b+c=");
    BOOST_TEST(form_decode("a+b") == "a b");
    BOOST_TEST(form_decode("%e2%82%ac") == "\xe2\x82\xac");
    // malformed escapes stay as they are, like URLSearchParams
    BOOST_TEST(form_decode("100%") == "100%");
    BOOST_TEST(form_decode("%zz%4") == "%zz%4");
    BOOST_TEST(form_decode("%00x").size() == 2u);
}

BOOST_AUTO_TEST_CASE(finds_the_first_parameter_by_name) {
    BOOST_TEST(query_param("/?apiKey=k1", "apiKey").value_or("<none>") == "k1");
    BOOST_TEST(query_param("/ws?a=1&apiKey=k%2F2&apiKey=k3", "apiKey").value_or("<none>") == "k/2");
    BOOST_TEST(query_param("/?apiKey", "apiKey").value_or("<none>") == "");
    BOOST_TEST(query_param("/?apiKey=", "apiKey").value_or("<none>") == "");
    BOOST_TEST(query_param("/?api%4Bey=enc", "apiKey").value_or("<none>") == "enc");
    BOOST_TEST(query_param("/?apiKey=a=b", "apiKey").value_or("<none>") == "a=b");
    BOOST_TEST(query_param("/?apiKey=k#frag", "apiKey").value_or("<none>") == "k");
    BOOST_TEST(!query_param("/?apikey=k", "apiKey"));  // names are case-sensitive
    BOOST_TEST(!query_param("/apiKey=k", "apiKey"));
    BOOST_TEST(!query_param("/?", "apiKey"));
    BOOST_TEST(!query_param("/?&&x", "apiKey"));
}

BOOST_AUTO_TEST_SUITE_END()
