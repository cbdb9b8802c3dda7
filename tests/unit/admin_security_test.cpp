// The admin dashboard's I/O-free parts (detail/admin_security.hpp,
// detail/admin_html.hpp), with time handed in: sessions expire, the sign-in
// throttle lets an address try again once its window has passed, cookies
// and forms parse, trusted proxies are the only ones believed, and markup is
// escaped.
#include <flock/detail/admin_html.hpp>
#include <flock/detail/admin_security.hpp>

#include <boost/test/unit_test.hpp>

#include <set>

namespace admin_security_test {

namespace adm = flk::detail::admin;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(admin_security)

BOOST_AUTO_TEST_CASE(tokens_are_random_hex_and_distinct) {
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) {
        auto t = adm::random_token();
        BOOST_TEST(t.size() == 64u);
        BOOST_TEST(t.find_first_not_of("0123456789abcdef") == std::string::npos);
        seen.insert(t);
    }
    BOOST_TEST(seen.size() == 100u);
}

BOOST_AUTO_TEST_CASE(same_secret_compares_whole_values) {
    BOOST_TEST(adm::same_secret("hunter2", "hunter2"));
    BOOST_TEST(!adm::same_secret("hunter", "hunter2"));
    BOOST_TEST(!adm::same_secret("hunter22", "hunter2"));
    BOOST_TEST(!adm::same_secret("", "hunter2"));
    BOOST_TEST(!adm::same_secret("Hunter2", "hunter2"));
}

BOOST_AUTO_TEST_CASE(sessions_expire_and_sign_out_ends_them) {
    adm::session_store s(60s, 3);
    auto const t0 = adm::steady::time_point{} + 1h;
    auto a = s.create(t0);
    BOOST_TEST(s.find(a, t0 + 59s) != nullptr);
    BOOST_TEST(s.find(a, t0 + 60s) == nullptr);  // expired: gone for good
    BOOST_TEST(s.find(a, t0) == nullptr);
    auto b = s.create(t0);
    auto const* sb = s.find(b, t0);
    BOOST_REQUIRE(sb);
    BOOST_TEST(sb->csrf.size() == 64u);
    BOOST_TEST(sb->csrf != b);
    s.erase(b);
    BOOST_TEST(s.find(b, t0) == nullptr);
    // At most 3: the oldest goes first.
    auto c1 = s.create(t0), c2 = s.create(t0), c3 = s.create(t0), c4 = s.create(t0);
    BOOST_TEST(s.find(c1, t0) == nullptr);
    BOOST_TEST(s.find(c2, t0) != nullptr);
    BOOST_TEST(s.find(c4, t0) != nullptr);
    BOOST_TEST(s.find("", t0) == nullptr);
    (void)c3;
}

BOOST_AUTO_TEST_CASE(the_throttle_holds_an_address_until_its_window_passes) {
    adm::sign_in_throttle t(3, 60s);
    auto const t0 = adm::steady::time_point{} + 1h;
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(t.wait("a", t0 + std::chrono::seconds(i)).count() == 0);
        t.failed("a", t0 + std::chrono::seconds(i));
    }
    BOOST_TEST(t.wait("a", t0 + 3s).count() == 57);  // until the first failure is 60 s old
    BOOST_TEST(t.wait("b", t0 + 3s).count() == 0);   // per address
    BOOST_TEST(t.wait("a", t0 + 60s).count() == 0);  // one failure aged out: one more try
    t.failed("a", t0 + 60s);
    BOOST_TEST(t.wait("a", t0 + 60s).count() > 0);
    t.succeeded("a");
    BOOST_TEST(t.wait("a", t0 + 60s).count() == 0);
}

BOOST_AUTO_TEST_CASE(the_throttle_tracks_a_bounded_number_of_addresses) {
    adm::sign_in_throttle t(1, 60s, 2);
    auto const t0 = adm::steady::time_point{} + 1h;
    t.failed("a", t0);
    t.failed("b", t0 + 1s);
    t.failed("c", t0 + 2s);  // "a" failed longest ago: dropped
    BOOST_TEST(t.wait("a", t0 + 3s).count() == 0);
    BOOST_TEST(t.wait("b", t0 + 3s).count() > 0);
    BOOST_TEST(t.wait("c", t0 + 3s).count() > 0);
}

BOOST_AUTO_TEST_CASE(cookies_and_form_fields_parse) {
    BOOST_TEST(adm::cookie("a=1; flock_admin=xyz; b=2", "flock_admin").value_or("?") == "xyz");
    BOOST_TEST(!adm::cookie("xflock_admin=1", "flock_admin"));
    BOOST_TEST(adm::form_field("roomId=a%26b+c&csrf=t", "roomId").value_or("?") == "a&b c");
    BOOST_TEST(adm::form_field("roomId=a%26b+c&csrf=t", "csrf").value_or("?") == "t");
    BOOST_TEST(!adm::form_field("roomId=a", "csrf"));
    BOOST_TEST(adm::set_cookie("n", "v", 10s, true) == "n=v; Path=/; Max-Age=10; HttpOnly; SameSite=Strict; Secure");
}

BOOST_AUTO_TEST_CASE(only_trusted_proxies_are_believed) {
    flk::http_request r;
    r.remote_address = "10.0.0.5";
    r.headers = {{"Host", "Flock.Example"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-For", "1.2.3.4, 5.6.7.8"}};
    auto untrusted = adm::view_of(r, {});
    BOOST_TEST(!untrusted.secure);
    BOOST_TEST(untrusted.address == "10.0.0.5");
    BOOST_TEST(untrusted.origin == "http://flock.example");
    auto trusted = adm::view_of(r, {"10.0.0.5"});
    BOOST_TEST(trusted.secure);
    BOOST_TEST(trusted.address == "5.6.7.8");  // the entry the proxy added
    BOOST_TEST(trusted.origin == "https://flock.example");

    r.headers.emplace_back("Origin", "https://flock.example");
    BOOST_TEST(adm::same_origin_post(r, trusted));
    BOOST_TEST(!adm::same_origin_post(r, untrusted));
    r.headers.pop_back();
    r.headers.emplace_back("Referer", "https://FLOCK.example/admin?x");
    BOOST_TEST(adm::same_origin_post(r, trusted));
    r.headers.back().second = "https://flock.example.evil.com/admin";
    BOOST_TEST(!adm::same_origin_post(r, trusted));
}

// FLOCK_TRUSTED_PROXIES and FLOCK_METRICS_ALLOW name clients however the
// operator writes them; the peer of a dual-stack listener's IPv4 client is
// shown as IPv4 (websocket_transport_test checks that side).
BOOST_AUTO_TEST_CASE(listed_addresses_match_however_they_are_written) {
    using flk::detail::address_listed;
    BOOST_TEST(address_listed({"::ffff:10.0.0.5"}, "10.0.0.5"));
    BOOST_TEST(address_listed({"10.0.0.5"}, "10.0.0.5"));
    BOOST_TEST(address_listed({"FD00:0:0::5"}, "fd00::5"));
    BOOST_TEST(!address_listed({"10.0.0.0/8"}, "10.0.0.5"));  // no ranges
    BOOST_TEST(!address_listed({"10.0.0.50", "::1"}, "10.0.0.5"));
    BOOST_TEST(!address_listed({}, "10.0.0.5"));
    flk::http_request r;
    r.remote_address = "127.0.0.1";
    r.headers = {{"X-Forwarded-Proto", "https"}};
    BOOST_TEST(adm::view_of(r, {"::ffff:127.0.0.1"}).secure);  // as docs/admin.md once said to write it
}

BOOST_AUTO_TEST_CASE(markup_is_escaped_and_colours_are_plain_or_text) {
    BOOST_TEST(adm::html_escape(R"(<a href="x" onclick='y'>&</a>)") ==
               "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    BOOST_TEST(adm::safe_colour("#e4572e").value_or("") == "#e4572e");
    BOOST_TEST(adm::safe_colour("#abc").value_or("") == "#abc");
    BOOST_TEST(adm::safe_colour("rebeccapurple").value_or("") == "rebeccapurple");
    BOOST_TEST(!adm::safe_colour("red\" onload=\"x"));
    BOOST_TEST(!adm::safe_colour("url(javascript:x)"));
    BOOST_TEST(!adm::safe_colour("#12345g"));
    BOOST_TEST(adm::age_text(42s) == "42 s");
    BOOST_TEST(adm::age_text(185s) == "3 min 5 s");
    BOOST_TEST(adm::age_text(7800s) == "2 h 10 min");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace admin_security_test
