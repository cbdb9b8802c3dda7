// The admin dashboard (flock/admin.hpp) over real sockets: a flk::sharded_server
// with the admin's route, its admin on a thread of its own as in flock-server,
// real WebSocket clients, and in Redis mode two instances on a real redis-server,
// each with its flk::instance_registry (as flock-server runs one, admin or not);
// the last suite runs two instances on a local Redis Cluster (3 masters, 3
// replicas: integration/redis_cluster_fixture.hpp).
#include <flock/admin.hpp>
#include <flock/detail/redis/cluster/slots.hpp>
#include <flock/detail/redis/keys.hpp>
#include <flock/flock.hpp>
#include <flock/instance_registry.hpp>

#include "integration/redis_cluster_fixture.hpp"
#include "integration/redis_server.hpp"
#include "integration/ws_client.hpp"
#include "messages.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace admin_test {

namespace json = boost::json;
namespace http = boost::beast::http;
using flk::test::ws_client;
using namespace std::chrono_literals;

constexpr char const* password = "correct horse battery staple";

// Tests refresh the instance records quickly, so that a figure is in Redis soon.
flk::registry_options fast_registry() {
    flk::registry_options r;
    r.refresh = 200ms;
    r.ttl = 2s;
    return r;
}

// A server with its admin (and in Redis mode its registry), as
// examples/flock_server.cpp wires them.
template <class Server>
struct instance {
    boost::asio::io_context io{1};
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{io.get_executor()};
    std::thread admin_thread;
    std::shared_ptr<flk::admin> admin;
    std::shared_ptr<flk::instance_registry> registry;
    std::unique_ptr<flk::sharded_server<Server>> srv;

    instance(flk::admin_options a, flk::options o, flk::registry_options r = fast_registry()) {
        o.host = "127.0.0.1";
        o.port = 0;
        o.log = flk::log_level::silent;
        admin = std::make_shared<flk::admin>(io.get_executor(), a, o);
        if (admin->enabled()) o.http_routes.push_back(admin->route());
        if (o.redis_url) registry = std::make_shared<flk::instance_registry>(io.get_executor(), o, r);
        srv = std::make_unique<flk::sharded_server<Server>>(o);
        srv->start();
        auto const name = flk::instance_name(o, srv->port());
        if (admin->enabled()) admin->attach(flk::admin_backend_of(*srv), name);
        if (registry) registry->attach(flk::admin_backend_of(*srv), name);
        admin_thread = std::thread([this] { io.run(); });
        // A readiness check that fails throws from here, where no destructor
        // runs: stop what was started first, or the joinable thread aborts
        // the whole test program instead of failing this test.
        try {
            wait_ready();
        } catch (...) {
            shut_down();
            throw;
        }
    }
    ~instance() { shut_down(); }

    // Ready: the admin hears close orders, every shard's broker is connected,
    // and this instance's record is in Redis.
    void wait_ready() {
        if (admin->enabled()) await([&](auto done) { admin->when_ready(done); }, "the admin ready");
        if constexpr (requires(Server& s) { s.broker().on_state_change(nullptr); }) {
            for (std::size_t i = 0; i < srv->size(); ++i)
                await(
                    [&](auto done) {
                        srv->post(i, [done](std::size_t, Server& s) {
                            if (s.broker().connected()) return done();
                            s.broker().on_state_change([done, told = false](bool is_up, std::string const&) mutable {
                                if (is_up && !std::exchange(told, true)) done();
                            });
                        });
                    },
                    "a shard's broker connected");
        }
        if (registry) published();
    }
    // A graceful stop, in flock-server's order: the record first, then the
    // server. Once only.
    void shut_down() {
        if (!admin_thread.joinable()) return;
        if (registry) await([&](auto done) { registry->stop(done); }, "the registry stopped", false);
        await([&](auto done) { srv->stop(done); }, "the server stopped", false);
        srv->join();
        admin->stop();
        work.reset();
        admin_thread.join();
    }
    // Calls `arm` with a callback and waits up to 10 s for it to be called
    // (the callback may still come later: it holds its own promise). A wait
    // that times out is a failed requirement, or with `required` false only
    // a failed check (in a destructor, which must not throw).
    template <class Arm>
    static void await(Arm&& arm, char const* what, bool required = true) {
        auto p = std::make_shared<std::promise<void>>();
        auto f = p->get_future();
        arm([p, once = std::make_shared<std::once_flag>()] { std::call_once(*once, [&] { p->set_value(); }); });
        bool const ok = f.wait_for(10s) == std::future_status::ready;
        if (required) BOOST_REQUIRE_MESSAGE(ok, "waited 10 s for " << what);
        else BOOST_CHECK_MESSAGE(ok, "waited 10 s for " << what);
    }
    std::uint16_t port() const { return srv->port(); }
    std::string origin() const { return "http://127.0.0.1:" + std::to_string(srv->port()); }
    std::string name() const { return "127.0.0.1:" + std::to_string(srv->port()); }
    // Waits until this instance's record, gathered from now on, is in Redis.
    void published() {
        await([&](auto done) { registry->when_published(done); }, "the record published");
    }
};

flk::admin_options admin_opts(std::optional<std::string> pw = password) {
    flk::admin_options a;
    a.password = std::move(pw);
    return a;
}

flk::options shard_opts(std::uint32_t threads = 2) {
    flk::options o;
    o.threads = threads;
    return o;
}

// A browser's view of the admin: its cookies, the page's CSRF token, its Origin.
struct browser {
    std::uint16_t port;
    std::map<std::string, std::string> cookies;
    std::vector<std::pair<std::string, std::string>> extra;  // sent with every request
    std::string csrf;

    explicit browser(std::uint16_t p) : port(p) {}

    flk::test::http_response request(http::verb v, std::string const& target, std::string body = {},
                                     std::vector<std::pair<std::string, std::string>> headers = {}) {
        flk::test::http_client c(port);
        std::string jar;
        for (auto const& [k, val] : cookies) jar += (jar.empty() ? "" : "; ") + k + "=" + val;
        if (!jar.empty()) headers.emplace_back("Cookie", jar);
        if (v == http::verb::post) headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
        for (auto const& h : extra) headers.push_back(h);
        auto r = c.request(v, target, std::move(body), false, headers);
        auto range = r.headers.equal_range("set-cookie");
        for (auto it = range.first; it != range.second; ++it) {
            std::string sc(it->value());
            auto eq = sc.find('='), semi = sc.find(';');
            auto name = sc.substr(0, eq), value = sc.substr(eq + 1, semi - eq - 1);
            if (sc.find("Max-Age=0") != std::string::npos) cookies.erase(name);
            else cookies[name] = value;
        }
        if (auto p = r.body.find("name=\"csrf\" value=\""); p != std::string::npos) {
            p += 19;
            csrf = r.body.substr(p, r.body.find('"', p) - p);
        }
        return r;
    }
    flk::test::http_response get(std::string const& target = "/admin") { return request(http::verb::get, target); }
    flk::test::http_response post(std::string const& target, std::string const& body,
                                  std::vector<std::pair<std::string, std::string>> headers = {}) {
        if (headers.empty()) headers.emplace_back("Origin", "http://127.0.0.1:" + std::to_string(port));
        return request(http::verb::post, target, body, std::move(headers));
    }
    static std::string enc(std::string_view s) {
        std::string out;
        for (unsigned char c : s) {
            if (std::isalnum(c)) out += static_cast<char>(c);
            else {
                char buf[4];
                std::snprintf(buf, sizeof buf, "%%%02X", c);
                out += buf;
            }
        }
        return out;
    }
    flk::test::http_response sign_in(std::string const& pw = password) {
        get();  // the sign-in form: its CSRF token and cookie
        return post("/admin", "password=" + enc(pw) + "&csrf=" + csrf);
    }
    bool signed_in() {
        auto r = get();
        return r.status == 200 && r.body.find("id=\"active-rooms\"") != std::string::npos;
    }
};

std::string join_msg(std::string const& room, std::string const& user, json::object meta) {
    return json::serialize(json::object{{"type", "join"}, {"roomId", room}, {"userId", user}, {"metadata", meta}});
}

std::unique_ptr<ws_client> joined(std::uint16_t port, std::string const& room, std::string const& user,
                                  json::object meta = {}) {
    auto c = std::make_unique<ws_client>(port);
    c->send_text(join_msg(room, user, std::move(meta)));
    c->read_until_type("join:ack");
    return c;
}

// The member gets exactly the reference's error, then its socket is closed.
void expect_closed_by_admin(ws_client& c, std::string const& who) {
    BOOST_TEST_CONTEXT(who) {
        auto e = c.read_until_type("error");
        BOOST_TEST(json::serialize(e) == R"({"type":"error","code":"INTERNAL_ERROR","message":"room closed by admin"})");
        BOOST_TEST(c.wait_close().has_value());
    }
}

// The Instances table's row of `name`, or "" when it is not listed.
std::string instance_row(std::string const& page, std::string const& name) {
    auto p = page.find("<tr class=\"instance\" data-instance=\"" + name + "\"");
    if (p == std::string::npos) return {};
    return page.substr(p, page.find("</tr>", p) - p);
}

std::string connections_cell(std::string const& row) {
    auto const tag = std::string("<td class=\"connections\">");
    auto p = row.find(tag);
    if (p == std::string::npos) return {};
    p += tag.size();
    return row.substr(p, row.find('<', p) - p);
}

std::size_t count(std::string const& hay, std::string const& needle) {
    std::size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
}

BOOST_AUTO_TEST_SUITE(admin)

BOOST_AUTO_TEST_CASE(without_a_password_every_admin_path_is_404) {
    instance<flk::single_node_server> s(admin_opts(std::nullopt), shard_opts(1));
    browser b(s.port());
    for (auto const* path : {"/admin", "/admin/", "/admin/sign-out", "/api/admin/close-room", "/api/admin/close-all"}) {
        BOOST_TEST_CONTEXT(path) {
            BOOST_TEST(b.get(path).status == 404);
            BOOST_TEST(b.post(path, "password=&csrf=&roomId=r").status == 404);
        }
    }
    BOOST_TEST(b.get("/health").status == 200);
}

BOOST_AUTO_TEST_CASE(sign_in_sets_a_random_httponly_strict_cookie_and_pages_carry_a_strict_csp) {
    instance<flk::single_node_server> s(admin_opts(), shard_opts());
    browser b(s.port());
    auto form = b.get();
    BOOST_TEST(form.status == 200);
    BOOST_TEST(form.body.find("name=\"password\"") != std::string::npos);
    BOOST_TEST(form.header("x-frame-options") == "DENY");
    auto csp = form.header("content-security-policy");
    BOOST_TEST(csp.find("default-src 'none'") != std::string::npos);
    BOOST_TEST(csp.find("frame-ancestors 'none'") != std::string::npos);
    BOOST_TEST(csp.find("unsafe-inline") == std::string::npos);
    BOOST_TEST(form.body.find("<script") == std::string::npos);

    auto in = b.sign_in();
    BOOST_TEST(in.status == 303);
    BOOST_TEST(in.header("location") == "/admin");
    auto sc = std::string(in.headers.equal_range("set-cookie").first->value());
    BOOST_TEST(sc.find("HttpOnly") != std::string::npos);
    BOOST_TEST(sc.find("SameSite=Strict") != std::string::npos);
    BOOST_TEST(sc.find("Secure") == std::string::npos);  // plain HTTP, no trusted proxy
    auto token = b.cookies["flock_admin"];
    BOOST_TEST(token.size() == 64u);
    BOOST_TEST(token.find(json::serialize(json::value(password))) == std::string::npos);
    BOOST_TEST(b.signed_in());

    browser other(s.port());  // a second sign-in gets another token
    other.sign_in();
    BOOST_TEST(other.cookies["flock_admin"] != token);

    // Sign out: the token is dead even if replayed.
    BOOST_TEST(b.post("/admin/sign-out", "csrf=" + b.csrf).status == 303);
    BOOST_TEST(!b.signed_in());
    b.cookies["flock_admin"] = token;
    BOOST_TEST(!b.signed_in());
    BOOST_TEST(other.signed_in());
}

BOOST_AUTO_TEST_CASE(markup_in_room_ids_and_user_names_is_shown_inert) {
    instance<flk::single_node_server> s(admin_opts(), shard_opts());
    std::string const room = "<script>alert('room')</script>\"><img src=x onerror=alert(1)>";
    std::string const user = "u\" onmouseover=\"alert(2)";
    json::object meta{{"name", "</code><script>alert(3)</script>"}, {"color", "red\" onload=\"alert(4)"}};
    auto c = joined(s.port(), room, user, meta);

    browser b(s.port());
    b.sign_in();
    auto page = b.get();
    BOOST_TEST(page.status == 200);
    BOOST_TEST(page.body.find("<script") == std::string::npos);
    BOOST_TEST(page.body.find("<img") == std::string::npos);
    BOOST_TEST(page.body.find("onerror=alert") != std::string::npos);  // as text...
    BOOST_TEST(page.body.find("\" onmouseover=") == std::string::npos);  // ...never breaking out of an attribute
    BOOST_TEST(page.body.find("\" onload=") == std::string::npos);
    BOOST_TEST(page.body.find("&lt;script&gt;alert(&#39;room&#39;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;") !=
               std::string::npos);
    BOOST_TEST(page.body.find("u&quot; onmouseover=&quot;alert(2)") != std::string::npos);
    BOOST_TEST(page.body.find("&lt;/code&gt;&lt;script&gt;alert(3)&lt;/script&gt;") != std::string::npos);
    BOOST_TEST(page.body.find("fill=") == std::string::npos);  // not a plain colour: no swatch, text only
    // The escaped room id still closes that very room.
    BOOST_TEST(b.post("/api/admin/close-room", "roomId=" + browser::enc(room) + "&csrf=" + b.csrf).status == 303);
    expect_closed_by_admin(*c, "the member of the oddly named room");
}

BOOST_AUTO_TEST_CASE(cross_origin_or_tokenless_posts_are_refused) {
    instance<flk::single_node_server> s(admin_opts(), shard_opts());
    auto c = joined(s.port(), "kept", "ann");
    browser b(s.port());
    b.sign_in();
    b.get();
    auto const body = "roomId=kept&csrf=" + b.csrf;
    BOOST_TEST(b.post("/api/admin/close-room", body, {{"Origin", "http://evil.example"}}).status == 403);
    BOOST_TEST(b.post("/api/admin/close-all", "csrf=" + b.csrf, {{"Origin", "null"}}).status == 403);
    BOOST_TEST(b.post("/api/admin/close-room", body, {{"Referer", "http://evil.example/page"}}).status == 403);
    BOOST_TEST(b.post("/api/admin/close-room", "roomId=kept").status == 403);                 // no token
    BOOST_TEST(b.post("/api/admin/close-room", "roomId=kept&csrf=" + std::string(64, '0')).status == 403);
    // A page of another site cannot sign in either (login CSRF).
    BOOST_TEST(b.post("/admin", "password=x&csrf=" + b.csrf, {{"Origin", "http://evil.example"}}).status == 403);
    BOOST_TEST(c->got_nothing_for(200ms));  // nothing was closed
    // The same request from the server's own page goes through.
    BOOST_TEST(b.post("/api/admin/close-room", body, {{"Referer", s.origin() + "/admin"}}).status == 303);
    expect_closed_by_admin(*c, "ann");
}

BOOST_AUTO_TEST_CASE(wrong_passwords_are_throttled_per_client_address) {
    auto a = admin_opts();
    a.login_attempts = 3;
    a.trusted_proxies = {"127.0.0.1"};  // so that X-Forwarded-For names the client
    instance<flk::single_node_server> s(a, shard_opts(1));
    browser guesser(s.port());
    guesser.extra = {{"X-Forwarded-For", "203.0.113.7"}};
    for (int i = 0; i < 3; ++i) BOOST_TEST(guesser.sign_in("guess").status == 401);
    auto refused = guesser.sign_in();  // even the right password, now
    BOOST_TEST(refused.status == 429);
    BOOST_TEST(!refused.header("retry-after").empty());
    BOOST_TEST(!guesser.signed_in());

    browser other(s.port());  // another address is not held back
    other.extra = {{"X-Forwarded-For", "203.0.113.8"}};
    BOOST_TEST(other.sign_in().status == 303);
    BOOST_TEST(other.signed_in());

    // An untrusted peer's X-Forwarded-* are ignored: no Secure claim, its own address.
    auto b = admin_opts();
    instance<flk::single_node_server> plain(b, shard_opts(1));
    browser liar(plain.port());
    liar.extra = {{"X-Forwarded-Proto", "https"}};
    auto in = liar.sign_in();
    BOOST_TEST(std::string(in.headers.equal_range("set-cookie").first->value()).find("Secure") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(behind_a_trusted_tls_proxy_cookies_are_secure) {
    auto a = admin_opts();
    a.trusted_proxies = {"127.0.0.1"};
    instance<flk::single_node_server> s(a, shard_opts(1));
    browser b(s.port());
    b.extra = {{"X-Forwarded-Proto", "https"}};
    b.get();
    auto in = b.post("/admin", "password=" + browser::enc(password) + "&csrf=" + b.csrf,
                     {{"Origin", "https://127.0.0.1:" + std::to_string(s.port())}});
    BOOST_TEST(in.status == 303);
    BOOST_TEST(std::string(in.headers.equal_range("set-cookie").first->value()).find("; Secure") != std::string::npos);
    // Over TLS, the plain-HTTP origin is another origin.
    BOOST_TEST(b.signed_in());  // the dashboard's CSRF token
    BOOST_TEST(b.post("/api/admin/close-all", "csrf=" + b.csrf, {{"Origin", s.origin()}}).status == 403);
}

BOOST_AUTO_TEST_CASE(an_expired_session_is_refused) {
    auto a = admin_opts();
    a.session_ttl = 1s;
    instance<flk::single_node_server> s(a, shard_opts(1));
    auto c = joined(s.port(), "r", "ann");
    browser b(s.port());
    auto const signed_at = std::chrono::steady_clock::now();
    b.sign_in();
    BOOST_TEST(b.signed_in());
    auto const csrf = b.csrf;
    // Nothing to await but the clock: the session's end.
    std::this_thread::sleep_until(signed_at + a.session_ttl + 50ms);
    auto page = b.get();
    BOOST_TEST(page.status == 200);
    BOOST_TEST(page.body.find("name=\"password\"") != std::string::npos);  // the sign-in form again
    BOOST_TEST(page.body.find("ann") == std::string::npos);
    BOOST_TEST(b.post("/api/admin/close-all", "csrf=" + csrf).status == 401);
    BOOST_TEST(c->got_nothing_for(200ms));
}

BOOST_AUTO_TEST_CASE(close_room_sends_the_error_then_closes_on_every_shard) {
    instance<flk::single_node_server> s(admin_opts(), shard_opts(2));
    json::object ann{{"name", "Ann"}, {"color", "#e4572e"}};
    std::vector<std::unique_ptr<ws_client>> doomed;
    for (int i = 0; i < 4; ++i) doomed.push_back(joined(s.port(), "doomed", "u" + std::to_string(i), ann));
    auto kept = joined(s.port(), "kept", "ben", {{"name", "Ben"}});

    browser b(s.port());
    b.sign_in();
    auto page = b.get();
    BOOST_TEST(page.body.find("id=\"active-rooms\">2<") != std::string::npos);
    BOOST_TEST(page.body.find("id=\"connected-users\">5<") != std::string::npos);
    BOOST_TEST(page.body.find("id=\"average-per-room\">2.5<") != std::string::npos);
    BOOST_TEST(count(page.body, "fill=\"#e4572e\"") == 4u);  // Ann's colour, as a swatch
    BOOST_TEST(page.body.find("<meta http-equiv=\"refresh\" content=\"10\">") != std::string::npos);

    auto r = b.post("/api/admin/close-room", "roomId=doomed&csrf=" + b.csrf);
    BOOST_TEST(r.status == 303);
    BOOST_TEST(r.header("location") == "/admin");
    for (std::size_t i = 0; i < doomed.size(); ++i) expect_closed_by_admin(*doomed[i], "u" + std::to_string(i));
    BOOST_TEST(kept->got_nothing_for(200ms));
    page = b.get();
    BOOST_TEST(page.body.find("data-room=\"doomed\"") == std::string::npos);
    BOOST_TEST(page.body.find("data-room=\"kept\"") != std::string::npos);

    BOOST_TEST(b.post("/api/admin/close-all", "csrf=" + b.csrf).status == 303);
    expect_closed_by_admin(*kept, "ben");
    BOOST_TEST(b.get().body.find("id=\"no-rooms\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(in_redis_mode_the_cluster_is_listed_and_close_room_acts_on_every_instance) {
    // A database of its own: the listing below scans it whole.
    auto& redis = redis_fixture::redis_server::shared();
    redis.client(11).command({"FLUSHDB"});
    auto o = shard_opts(1);
    o.redis_url = redis.url(11);
    instance<flk::redis_scaled_server> one(admin_opts(), o), two(admin_opts(), o);
    auto const tag = flk::detail::admin::random_token(4);
    auto const room = "admin-" + tag, other = "admin-kept-" + tag;
    auto x = joined(one.port(), room, "x", {{"name", "Xena"}});
    auto y = joined(two.port(), room, "y", {{"name", "Yann"}});
    auto z = joined(two.port(), other, "z", {{"name", "Zoe"}});
    x->read_until_type("user:joined");  // y is in x's view: both are in Redis

    browser b(one.port());
    b.sign_in();
    auto page = b.get();
    BOOST_TEST(page.body.find("whole cluster") != std::string::npos);
    BOOST_TEST(page.body.find("round trip") != std::string::npos);
    auto row = page.body.substr(page.body.find("data-room=\"" + room + "\""));
    row = row.substr(0, row.find("</tr>"));
    BOOST_TEST(row.find("Xena") != std::string::npos);
    BOOST_TEST(row.find("on this process") != std::string::npos);
    BOOST_TEST(row.find("Yann") != std::string::npos);
    BOOST_TEST(row.find("on instance ") != std::string::npos);  // held by the other instance
    BOOST_TEST(page.body.find("data-room=\"" + other + "\"") != std::string::npos);

    BOOST_TEST(b.post("/api/admin/close-room", "roomId=" + room + "&csrf=" + b.csrf).status == 303);
    expect_closed_by_admin(*x, "x, on this instance");
    expect_closed_by_admin(*y, "y, on the other instance");
    BOOST_TEST(z->got_nothing_for(200ms));
    // The other instance removes y's presence once its socket is gone; the
    // dashboard follows (each answer is awaited; bounded).
    bool gone = false;
    for (int i = 0; i < 50 && !gone; ++i) {
        auto p = b.get().body;
        gone = p.find("data-room=\"" + room + "\"") == std::string::npos;
        if (!gone) std::this_thread::sleep_for(20ms);
    }
    BOOST_TEST(gone);
}

BOOST_AUTO_TEST_CASE(in_redis_mode_every_instance_is_listed_with_its_connections_until_it_stops) {
    auto& redis = redis_fixture::redis_server::shared();
    auto rc = redis.client(12);
    rc.command({"FLUSHDB"});
    auto o = shard_opts(2);
    o.redis_url = redis.url(12);
    instance<flk::redis_scaled_server> a(admin_opts(), o);
    auto ob = shard_opts(1);
    ob.redis_url = o.redis_url;
    auto b = std::make_unique<instance<flk::redis_scaled_server>>(admin_opts(std::nullopt), ob);  // no admin
    BOOST_TEST(!b->admin->enabled());
    BOOST_TEST(browser(b->port()).get().status == 404);

    auto a1 = joined(a.port(), "lobby", "a1", {{"name", "Ann"}});
    auto b1 = joined(b->port(), "lobby", "b1", {{"name", "Bob"}});
    auto b2 = joined(b->port(), "lobby", "b2", {{"name", "Bea"}});
    auto b3 = joined(b->port(), "side", "b3");
    b->published();  // B's record now counts its three connections

    browser admin(a.port());
    admin.sign_in();
    auto page = admin.get().body;
    auto const row_a = instance_row(page, a.name()), row_b = instance_row(page, b->name());
    BOOST_TEST(row_a.find("(this process)") != std::string::npos);
    BOOST_TEST(count(page, "data-instance=") == 2u);  // A's own record is not listed twice
    BOOST_TEST(connections_cell(row_a) == "1");
    BOOST_TEST(row_b.find("(this process)") == std::string::npos);
    BOOST_TEST(connections_cell(row_b) == "3");
    BOOST_TEST(row_b.find(std::string(flk::version)) != std::string::npos);
    BOOST_TEST(page.find("id=\"cluster-connections\">4<") != std::string::npos);
    // A member held by B is named by B's name.
    auto room = page.substr(page.find("data-room=\"lobby\""));
    room = room.substr(0, room.find("</tr>"));
    auto bob = room.substr(room.find("Bob"));
    BOOST_TEST(bob.substr(0, bob.find("</li>")).find("on instance " + b->name()) != std::string::npos);

    // B stops gracefully: its record goes before it does.
    auto const b_key = b->registry->key();
    BOOST_TEST(rc.exists(b_key));
    auto const b_name = b->name();
    auto stopping = std::async(std::launch::async, [&] { b.reset(); });
    for (auto* c : {b1.get(), b2.get(), b3.get()}) BOOST_TEST(c->wait_close() == std::optional<std::uint16_t>(1001));
    stopping.get();
    BOOST_TEST(!rc.exists(b_key));
    page = admin.get().body;
    BOOST_TEST(instance_row(page, b_name).empty());
    BOOST_TEST(!instance_row(page, a.name()).empty());
}

BOOST_AUTO_TEST_CASE(a_crashed_instance_leaves_the_list_when_its_record_expires_and_records_are_escaped) {
    auto& redis = redis_fixture::redis_server::shared();
    auto rc = redis.client(12);
    rc.command({"FLUSHDB"});
    // A record written by something else, with markup, and an index entry
    // whose record is long gone.
    std::string const evil = "<script>alert(1)</script>\" onmouseover=\"x";
    rc.command({"SET", "flock:instance:forged",
                json::serialize(json::object{{"id", "forged"}, {"name", evil}, {"version", "<b>9</b>"},
                                             {"shards", json::array{json::object{{"instanceId", "i"},
                                                                                 {"connections", 7},
                                                                                 {"up", false},
                                                                                 {"error", "<i>down</i>"}}}}}),
                "PX", "60000"});
    rc.command({"SADD", "flock:instances", "forged", "vanished"});

    auto o = shard_opts(1);
    o.redis_url = redis.url(12);
    instance<flk::redis_scaled_server> a(admin_opts(), o);
    auto r = fast_registry();
    r.refresh = 100ms;
    r.ttl = 1s;
    instance<flk::redis_scaled_server> b(admin_opts(std::nullopt), o, r);

    browser admin(a.port());
    admin.sign_in();
    auto page = admin.get().body;
    BOOST_TEST(!instance_row(page, b.name()).empty());
    BOOST_TEST(page.find("<script") == std::string::npos);
    BOOST_TEST(page.find("<b>9") == std::string::npos);
    BOOST_TEST(page.find("<i>down") == std::string::npos);
    BOOST_TEST(page.find("\" onmouseover=") == std::string::npos);
    auto const forged = instance_row(page, "&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;x");
    BOOST_TEST(connections_cell(forged) == "7");
    BOOST_TEST(forged.find("&lt;i&gt;down&lt;/i&gt;") != std::string::npos);
    // The index entry without a record was dropped by that read.
    BOOST_TEST(rc.command({"SISMEMBER", "flock:instances", "vanished"}).integer == 0);

    // B dies: no DEL. Its record expires within its TTL, and then it is not listed.
    auto p = std::make_shared<std::promise<void>>();
    auto halted = p->get_future();
    b.registry->halt([p] { p->set_value(); });
    BOOST_REQUIRE(halted.wait_for(10s) == std::future_status::ready);
    auto const halted_at = std::chrono::steady_clock::now();
    BOOST_TEST(rc.exists(b.registry->key()));
    BOOST_TEST(!instance_row(admin.get().body, b.name()).empty());  // still there: it may be alive
    // Nothing to await but Redis's clock: poll the page, bounded.
    bool gone = false;
    while (!gone && std::chrono::steady_clock::now() < halted_at + r.ttl + 5s) {
        gone = instance_row(admin.get().body, b.name()).empty();
        if (!gone) std::this_thread::sleep_for(50ms);
    }
    BOOST_TEST(gone);
    BOOST_TEST(rc.command({"SISMEMBER", "flock:instances", b.registry->id()}).integer == 0);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- on a Redis Cluster ------------------------------------------------------------

/// The cluster of this suite, started once (a few seconds); the last test
/// kills one of its masters.
struct admin_cluster_tag {};
cluster_fixture::local_cluster* admin_cluster(std::string_view test) {
    return cluster_fixture::shared_cluster<admin_cluster_tag>(test);
}

flk::detail::redis::key_schema const tagged(true);

/// The port of the master that holds `key`.
int master_of_key(cluster_fixture::local_cluster const& c, std::string const& key) {
    return c.master_port(flk::detail::redis::cluster::key_slot(key));
}

/// A fresh room id whose keys live on a master `want` accepts.
template <class F>
std::string room_where(cluster_fixture::local_cluster const& c, std::string const& prefix, F want) {
    auto const tag = flk::detail::admin::random_token(4);
    for (int i = 0;; ++i) {
        auto room = prefix + tag + "-" + std::to_string(i);
        if (want(master_of_key(c, tagged.members(room)))) return room;
    }
}

// The room list's row of `room`, or "" when it is not listed.
std::string room_listing(std::string const& page, std::string const& room) {
    auto p = page.find("data-room=\"" + room + "\"");
    if (p == std::string::npos) return {};
    return page.substr(p, page.find("</tr>", p) - p);
}

BOOST_AUTO_TEST_SUITE(admin_on_a_redis_cluster)

BOOST_AUTO_TEST_CASE(rooms_members_and_instances_of_every_master_are_listed_and_closes_reach_every_instance) {
    auto* cluster = admin_cluster("admin_on_a_redis_cluster");
    if (!cluster) return;
    auto o = shard_opts(1);
    o.redis_url = cluster->seed_url();
    instance<flk::redis_scaled_server> one(admin_opts(), o);
    auto two = std::make_unique<instance<flk::redis_scaled_server>>(admin_opts(), o);

    // Rooms whose keys live on two different masters.
    auto const r1 = room_where(*cluster, "adm-c1-", [](int) { return true; });
    int const m1 = master_of_key(*cluster, tagged.members(r1));
    auto const r2 = room_where(*cluster, "adm-c2-", [&](int port) { return port != m1; });
    auto x = joined(one.port(), r1, "x", {{"name", "Xena"}});
    auto y = joined(two->port(), r1, "y", {{"name", "Yann"}});
    auto z = joined(two->port(), r2, "z", {{"name", "Zoe"}});
    x->read_until_type("user:joined");  // y is in x's view: both are in Redis
    two->published();                     // two's record counts y and z

    // The instances' records and the index are in the cluster, each on the
    // master of its slot.
    auto const two_key = two->registry->key();
    BOOST_TEST(cluster->client(master_of_key(*cluster, two_key)).exists(two_key));

    browser b(one.port());
    b.sign_in();
    auto page = b.get().body;
    BOOST_TEST(page.find("whole cluster") != std::string::npos);
    auto const row1 = room_listing(page, r1), row2 = room_listing(page, r2);
    BOOST_TEST(row1.find("Xena") != std::string::npos);
    BOOST_TEST(row1.find("on this process") != std::string::npos);
    BOOST_TEST(row1.find("Yann") != std::string::npos);
    BOOST_TEST(row1.find("on instance " + two->name()) != std::string::npos);
    BOOST_TEST(row2.find("Zoe") != std::string::npos);
    BOOST_TEST(row2.find("on instance " + two->name()) != std::string::npos);
    BOOST_TEST(count(page, "data-instance=") == 2u);
    BOOST_TEST(instance_row(page, one.name()).find("(this process)") != std::string::npos);
    BOOST_TEST(connections_cell(instance_row(page, two->name())) == "2");
    BOOST_TEST(page.find("Listing cut short") == std::string::npos);
    BOOST_TEST(page.find("SCAN failed") == std::string::npos);
    BOOST_TEST(page.find("records failed") == std::string::npos);

    // A close ordered at one reaches the member held by two.
    BOOST_TEST(b.post("/api/admin/close-room", "roomId=" + r1 + "&csrf=" + b.csrf).status == 303);
    expect_closed_by_admin(*x, "x, on this instance");
    expect_closed_by_admin(*y, "y, on the other instance");
    BOOST_TEST(z->got_nothing_for(200ms));
    bool gone = false;  // two removes y's presence once its socket is gone (bounded poll)
    for (int i = 0; i < 50 && !gone; ++i) {
        gone = room_listing(b.get().body, r1).empty();
        if (!gone) std::this_thread::sleep_for(20ms);
    }
    BOOST_TEST(gone);

    // two stops gracefully: its record and its index entry go before it does.
    auto const two_id = two->registry->id(), two_name = two->name();
    auto stopping = std::async(std::launch::async, [&] { two.reset(); });
    BOOST_TEST(z->wait_close() == std::optional<std::uint16_t>(1001));
    stopping.get();
    BOOST_TEST(!cluster->client(master_of_key(*cluster, two_key)).exists(two_key));
    auto const index = std::string(flk::detail::instances_index_key);
    BOOST_TEST(cluster->client(master_of_key(*cluster, index)).command({"SISMEMBER", index, two_id}).integer == 0);
    page = b.get().body;
    BOOST_TEST(instance_row(page, two_name).empty());
    BOOST_TEST(!instance_row(page, one.name()).empty());
}

// Both admins subscribe to close orders on the URL's node. Killed, that
// master's replica takes over its slots, and each admin subscribes again on
// another master: orders from one instance reach the other again.
BOOST_AUTO_TEST_CASE(close_orders_reach_every_instance_again_after_the_urls_node_dies) {
    auto* cluster = admin_cluster("admin_on_a_redis_cluster");
    if (!cluster) return;
    int const seed = cluster->nodes().front().port;
    BOOST_REQUIRE(cluster->role(seed) == "master");
    auto o = shard_opts(1);
    o.redis_url = cluster->seed_url();
    instance<flk::redis_scaled_server> one(admin_opts(), o), two(admin_opts(), o);
    browser b(two.port());
    b.sign_in();
    b.get();

    cluster->kill(seed);
    // A close ordered at two reaches one's member once both are subscribed
    // again and the cluster serves every slot; nothing to await from here
    // but that, so each try waits a moment for its member to be closed.
    bool closed = false;
    auto const deadline = std::chrono::steady_clock::now() + 20s;
    for (int i = 0; !closed && std::chrono::steady_clock::now() < deadline; ++i) {
        auto const room = room_where(*cluster, "adm-k" + std::to_string(i) + "-", [&](int port) { return port != seed && port > 0; });
        std::unique_ptr<ws_client> m;
        try {
            m = joined(one.port(), room, "m");
        } catch (std::exception const&) {
            continue;  // the join waits for the failover
        }
        BOOST_TEST(b.post("/api/admin/close-room", "roomId=" + room + "&csrf=" + b.csrf).status == 303);
        closed = m->wait_close(500ms).has_value();
    }
    BOOST_TEST(closed);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace admin_test
