// deploy/nginx/flock.conf proven: Debian's nginx, run with that file (its
// upstream servers and listen line pointed at loopback ports), in front of
// two flock-server processes on one real redis-server. Clients connect
// through nginx only, from several loopback addresses (ip_hash hashes the
// first three octets of the client's IPv4 address: 127.0.S.1 for several S
// spreads them over both instances).
//
// Proves: clients through nginx see each other's presence and cursors across
// instances; a client reconnecting from the same address lands on the same
// instance; a rolling restart (SIGTERM one instance, start it again) leaves
// no ghost member, and its clients re-join through nginx, both when they come
// back while it is down (nginx sends them to the other instance) and once it
// is up again (ip_hash sends them home).
#include "integration/raw_ws.hpp"
#include "integration/redis_server.hpp"
#include "integration/server_process.hpp"
#include "integration/ws_client.hpp"
#include "messages.hpp"
#include "strict.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace nginx_test {

namespace fs = std::filesystem;
namespace json = boost::json;
namespace rw = flk::test::raw;
namespace msg = flk::test::msg;
using flk::test::server_process;
using namespace std::chrono_literals;

inline std::optional<std::string> nginx_binary() {
    if (char const* e = std::getenv("FLOCK_NGINX_BIN"); e && *e) return std::string(e);
    for (char const* p : {"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"})
        if (::access(p, X_OK) == 0) return std::string(p);
    return std::nullopt;
}

inline fs::path source_dir() {
    if (char const* e = std::getenv("FLOCK_SOURCE_DIR"); e && *e) return e;
#ifdef FLOCK_SOURCE_DIR_DEFAULT
    return FLOCK_SOURCE_DIR_DEFAULT;
#else
    return fs::path(__FILE__).parent_path().parent_path().parent_path();
#endif
}

inline std::uint16_t free_port() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

inline std::string read_file(fs::path const& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

/// Replaces the one occurrence of `from` in `text`; throws when it is not there
/// exactly once (the deploy file changed: the test must change with it).
inline void replace_once(std::string& text, std::string_view from, std::string_view to) {
    auto const at = text.find(from);
    if (at == std::string::npos || text.find(from, at + 1) != std::string::npos)
        throw std::runtime_error("deploy/nginx/flock.conf: expected '" + std::string(from) + "' exactly once");
    text.replace(at, from.size(), to);
}

/// nginx with deploy/nginx/flock.conf, in a private prefix (pid, logs, temp
/// files in a temp directory), in the foreground, listening on loopback.
class nginx_process {
public:
    nginx_process(std::string const& binary, std::uint16_t port, std::uint16_t up1, std::uint16_t up2) : port_(port) {
        dir_ = fs::temp_directory_path() / ("flock-nginx-" + std::to_string(std::random_device{}()));
        fs::create_directories(dir_);
        // Run as root (CI), nginx's workers run as nobody: they must reach the prefix.
        fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
        auto site = read_file(source_dir() / "deploy" / "nginx" / "flock.conf");
        replace_once(site, "listen 80;", "listen 127.0.0.1:" + std::to_string(port) + ";");
        replace_once(site, "server flock-1:8787", "server 127.0.0.1:" + std::to_string(up1));
        replace_once(site, "server flock-2:8787", "server 127.0.0.1:" + std::to_string(up2));
        std::ofstream(dir_ / "flock.conf") << site;
        auto const d = dir_.string();
        std::ofstream(dir_ / "nginx.conf") << "daemon off;\n"
                                              "worker_processes 1;\n"
                                              "pid " << d << "/nginx.pid;\n"
                                              "error_log " << d << "/error.log info;\n"
                                              "events { worker_connections 256; }\n"
                                              "http {\n"
                                              "  access_log " << d << "/access.log;\n"
                                              "  client_body_temp_path " << d << "/client_body;\n"
                                              "  proxy_temp_path " << d << "/proxy;\n"
                                              "  fastcgi_temp_path " << d << "/fastcgi;\n"
                                              "  uwsgi_temp_path " << d << "/uwsgi;\n"
                                              "  scgi_temp_path " << d << "/scgi;\n"
                                              "  include " << d << "/flock.conf;\n"
                                              "}\n";
        std::string bin = binary, p = "-p", pd = d + "/", c = "-c", cf = d + "/nginx.conf", e = "-e",
                    ef = d + "/error.log";
        char* argv[] = {bin.data(), p.data(), pd.data(), c.data(), cf.data(), e.data(), ef.data(), nullptr};
        if (posix_spawn(&pid_, bin.c_str(), nullptr, nullptr, argv, environ) != 0)
            throw std::runtime_error("cannot run " + binary);
        // Up once it accepts: poll the port (nginx prints nothing when it is ready).
        auto const deadline = std::chrono::steady_clock::now() + 10s;
        for (;;) {
            try {
                flk::test::raw_connection probe(port, 1s);
                break;
            } catch (std::exception const&) {
                int status = 0;
                if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                    pid_ = -1;
                    throw std::runtime_error("nginx exited at start: " + error_log());
                }
                if (std::chrono::steady_clock::now() > deadline)
                    throw std::runtime_error("nginx did not listen within 10 s: " + error_log());
                std::this_thread::sleep_for(20ms);
            }
        }
    }
    nginx_process(nginx_process const&) = delete;
    nginx_process& operator=(nginx_process const&) = delete;
    ~nginx_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);  // fast shutdown: closes the proxied WebSockets
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }
    std::uint16_t port() const { return port_; }
    std::string error_log() const { return read_file(dir_ / "error.log"); }

private:
    fs::path dir_;
    std::uint16_t port_;
    pid_t pid_ = -1;
};

/// One flock-server instance behind nginx, on a port of its own that it keeps
/// across restarts (nginx's upstream names it).
struct instance {
    std::string binary;
    std::string redis_url;
    std::string name;
    std::uint16_t port = free_port();
    std::unique_ptr<server_process> proc;

    instance(std::string bin, std::string url, std::string n)
        : binary(std::move(bin)), redis_url(std::move(url)), name(std::move(n)) {}

    void start() {
        proc = std::make_unique<server_process>(binary,
                                                server_process::env_map{{"FLOCK_HOST", "127.0.0.1"},
                                                                        {"FLOCK_PORT", std::to_string(port)},
                                                                        {"FLOCK_REDIS_URL", redis_url},
                                                                        {"FLOCK_THREADS", "1"},
                                                                        {"FLOCK_LOG_LEVEL", "info"}},
                                                20s, name);
        if (!proc->wait_for_line("redis connected", 10s))
            throw std::runtime_error(name + ": no redis connection: " + proc->log());
    }
    /// A graceful stop begins: members told, sockets closed with 1001.
    void sigterm() { proc->kill(SIGTERM); }
    /// The stop begun by sigterm() finished (its "stopped" line) within 10 s;
    /// then the process is reaped.
    bool exited_cleanly() {
        bool const stopped = proc->wait_for_line("msg=stopped", 10s).has_value();
        return proc->stop(10s) && stopped;
    }
    /// WebSockets open on this instance, read from its own /metrics.
    double open_connections() const {
        auto r = flk::test::http_get(port, "/metrics");
        auto const at = r.body.find("\nflock_connections_open ");
        if (r.status != 200 || at == std::string::npos) throw std::runtime_error(name + ": no metrics");
        return std::stod(r.body.substr(at + 24));
    }
};

/// A browser tab, through nginx, from the loopback address `from`.
struct tab {
    std::unique_ptr<rw::client> c;
    std::string user;
    std::vector<json::object> inbox;

    tab(std::uint16_t port, std::string from, std::string user_id) : user(std::move(user_id)) {
        c = std::make_unique<rw::client>(port, 5s, from);
        c->upgrade("/");
    }
    void send(std::string const& text) { c->send(rw::frame(rw::op::text, text)); }
    /// Joins `room` and returns the userIds of its join:ack.
    std::multiset<std::string> join(std::string const& room) {
        send(msg::join(room, user, R"({"name":")" + user + R"("})"));
        auto ack = next("join:ack");
        std::multiset<std::string> users;
        if (!ack) return users;
        for (auto const& u : ack->at("users").as_array()) users.insert(std::string(u.at("userId").as_string()));
        return users;
    }
    /// The next message of `type` (about `who`, when given); those before it are kept in inbox.
    std::optional<json::object> next(std::string_view type, std::string_view who = {}) {
        auto const deadline = std::chrono::steady_clock::now() + 5s;
        for (;;) {
            auto const now = std::chrono::steady_clock::now();
            if (now >= deadline) return std::nullopt;
            auto f = c->read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
            if (!f) return std::nullopt;
            if (f->opcode == rw::op::close) {
                closed = f->close_code();
                if (!close_sent) c->send(rw::frame(rw::op::close, rw::close_payload(*closed)));  // as a browser answers
                close_sent = true;
                return std::nullopt;
            }
            if (f->opcode != rw::op::text) continue;
            auto o = json::parse(f->payload).as_object();
            if (o.at("type").as_string() == type &&
                (who.empty() || (o.contains("userId") && o.at("userId").as_string() == who)))
                return o;
            inbox.push_back(std::move(o));
        }
    }
    /// Waits for the server's close frame; its code.
    std::optional<std::uint16_t> wait_close() {
        next("(none)");
        return closed;
    }
    void close() {
        c->send(rw::frame(rw::op::close, rw::close_payload(1000)));
        close_sent = true;
    }

    std::optional<std::uint16_t> closed;
    bool close_sent = false;
};

BOOST_AUTO_TEST_SUITE(nginx_deploy)

BOOST_AUTO_TEST_CASE(two_instances_behind_the_deploy_nginx_config) {
    auto const nginx = nginx_binary();
    if (!flk_test::prerequisite(nginx.has_value(), "nginx deploy test",
                                "nginx is not installed (Debian package nginx; .ci/install-deps)"))
        return;
    auto const bin = flk::test::flock_server_binary();
    if (!flk_test::prerequisite(bin.has_value(), "nginx deploy test", "no flock-server binary (FLOCK_SERVER_BIN)"))
        return;
    std::string url;
    try {
        url = redis_fixture::redis_server::shared().url();
    } catch (std::exception const& e) {
        flk_test::prerequisite(false, "nginx deploy test", e.what());
        return;
    }

    instance one(*bin, url, "flock-1");
    instance two(*bin, url, "flock-2");
    one.start();
    two.start();
    nginx_process proxy(*nginx, free_port(), one.port, two.port);
    BOOST_TEST_REQUIRE(flk::test::http_get(proxy.port(), "/health").status == 200);
    BOOST_TEST(flk::test::http_get(proxy.port(), "/metrics").status == 404);  // kept for the scraper

    // Which instance each loopback subnet lands on: one address per instance.
    std::map<int, std::string> address_on;  // 1 or 2 -> "127.0.S.1"
    for (int s = 1; s <= 32 && address_on.size() < 2; ++s) {
        auto const from = "127.0." + std::to_string(s) + ".1";
        auto const before1 = one.open_connections(), before2 = two.open_connections();
        tab probe(proxy.port(), from, "probe");
        int const on = one.open_connections() > before1 ? 1 : two.open_connections() > before2 ? 2 : 0;
        BOOST_TEST_REQUIRE(on != 0);
        address_on.try_emplace(on, from);
        probe.close();
        probe.wait_close();
    }
    BOOST_TEST_REQUIRE(address_on.size() == 2u, "ip_hash sent 32 client subnets to one instance");
    auto const addr1 = address_on.at(1), addr2 = address_on.at(2);

    // Presence and cursors across instances, through nginx.
    auto const room = "nginx-" + std::to_string(std::random_device{}());
    tab alice(proxy.port(), addr1, "alice");
    BOOST_TEST(alice.join(room).empty());
    tab bob(proxy.port(), addr2, "bob");
    BOOST_TEST(bob.join(room) == (std::multiset<std::string>{"alice"}));
    BOOST_TEST_REQUIRE(alice.next("user:joined", "bob").has_value());
    bob.send(msg::move(room, 0.25, 0.5));
    auto cursor = alice.next("cursor:updated", "bob");
    BOOST_TEST_REQUIRE(cursor.has_value());
    BOOST_TEST(cursor->at("position").at("x").to_number<double>() == 0.25);
    alice.send(msg::in_room("presence:update", room, R"(,"metadata":{"status":"typing"})"));
    BOOST_TEST(bob.next("presence:updated", "alice").has_value());

    // Sticky: alice reconnects from the same address and lands on instance 1 again.
    for (int i = 0; i < 3; ++i) {
        alice.close();
        alice.wait_close();
        BOOST_TEST(bob.next("user:left", "alice").has_value());
        auto const before = one.open_connections();
        alice = tab(proxy.port(), addr1, "alice");
        BOOST_TEST(one.open_connections() == before + 1);
        BOOST_TEST(alice.join(room) == (std::multiset<std::string>{"bob"}));
        BOOST_TEST(bob.next("user:joined", "alice").has_value());
    }

    // Rolling restart of instance 2, whose client comes back once it is up:
    // ip_hash sends it home, and nobody is listed twice or left behind.
    two.sigterm();
    BOOST_TEST(bob.wait_close() == 1001);  // answered, as a browser does: the server may finish
    BOOST_TEST(alice.next("user:left", "bob").has_value());
    BOOST_TEST(two.exited_cleanly());
    two.start();
    bob = tab(proxy.port(), addr2, "bob");
    BOOST_TEST(two.open_connections() == 1);
    BOOST_TEST(bob.join(room) == (std::multiset<std::string>{"alice"}));
    BOOST_TEST(alice.next("user:joined", "bob").has_value());

    // Rolling restart of instance 1, whose client reconnects while it is down:
    // nginx sends it to instance 2, where it re-joins.
    one.sigterm();
    BOOST_TEST(alice.wait_close() == 1001);
    BOOST_TEST(bob.next("user:left", "alice").has_value());
    BOOST_TEST(one.exited_cleanly());
    auto const before = two.open_connections();
    alice = tab(proxy.port(), addr1, "alice");
    BOOST_TEST(two.open_connections() == before + 1);
    BOOST_TEST(alice.join(room) == (std::multiset<std::string>{"bob"}));
    BOOST_TEST(bob.next("user:joined", "alice").has_value());
    one.start();

    // No ghosts: a newcomer on each instance sees exactly the two of them.
    tab carol(proxy.port(), addr1, "carol");  // instance 1 again, if nginx retries it; else 2: either way
    BOOST_TEST(carol.join(room) == (std::multiset<std::string>{"alice", "bob"}));
    auto dave_from = addr2;
    tab dave(proxy.port(), dave_from, "dave");
    BOOST_TEST(dave.join(room) == (std::multiset<std::string>{"alice", "bob", "carol"}));
    BOOST_TEST(proxy.error_log().find("[emerg]") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace nginx_test
