// End to end over real sockets: a private redis-server and two flock-server
// processes (the shipped executable, see server_process.hpp for how it is
// found), with JSON clients and binary `flock.binary.v2` clients side by side.
// Every flow asserts what users see, on both instances and in both formats.
//
// Every client reads all the time (one io_context drives them all), so each
// is a reader that keeps up; each heartbeats its rooms every 500 ms unless
// told to go silent. Every wait is for an event (a message, a close, a log
// line, a key in Redis), with a deadline; never a sleep.
//
// "Exactly once" is checked with a marker: after the event, a member on each
// instance sends a presence:update and the test waits until every reader got
// both markers. A duplicate published before the marker would have arrived
// by then (one channel per room, delivered in order); for evictions the test
// also waits until the room's member set is tidied, after which nothing
// about that user is on its way.
#include <boost/test/unit_test.hpp>
#include <boost/test/results_collector.hpp>

#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/protocol.hpp>

#include "redis_server.hpp"
#include "server_process.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace processes_test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;
using flk::test::server_process;
using redis_fixture::redis_server;

constexpr int ttl_seconds = 2;
constexpr ms heartbeat_every{500};

enum class fmt { json, binary };

inline std::string room_name(std::string_view what) {
    static std::mt19937_64 rng{std::random_device{}()};
    return "e2e:" + std::string(what) + ":" + std::to_string(rng() % 1000000000);
}

class hub;

/// One browser tab (JSON) or native client (binary): keeps every message it
/// receives as the JSON object a JSON client would have received (binary
/// frames go through flk::binary_session, then flk::json_codec).
class client {
public:
    client(hub& h, asio::io_context& io, std::uint16_t port, fmt f, std::string name)
        : hub_(h), ws_(io), timer_(io), format_(f), name_(std::move(name)) {
        connect(io, port);
    }
    client(client const&) = delete;
    client& operator=(client const&) = delete;

    std::string const& name() const { return name_; }
    fmt format() const { return format_; }

    // ---- what it sends -------------------------------------------------------

    void join(std::string const& room, std::string const& user, json::object meta = {}) {
        if (format_ == fmt::json)
            send_json({{"type", "join"}, {"roomId", room}, {"userId", user}, {"metadata", std::move(meta)}});
        else
            send_binary(flk::client::join{room, user, std::move(meta), std::nullopt});
        rooms_.push_back(room);
    }
    void move(std::string const& room, double x, double y) {
        if (format_ == fmt::json)
            send_json({{"type", "cursor:move"}, {"roomId", room}, {"position", {{"x", x}, {"y", y}}}});
        else
            send_binary(flk::client::cursor_move{room, {x, y}});
    }
    void heartbeat(std::string const& room) {
        if (format_ == fmt::json) send_json({{"type", "heartbeat"}, {"roomId", room}});
        else send_binary(flk::client::heartbeat{room});
    }
    void presence(std::string const& room, json::object patch) {
        if (format_ == fmt::json)
            send_json({{"type", "presence:update"}, {"roomId", room}, {"metadata", std::move(patch)}});
        else
            send_binary(flk::client::presence_update{room, std::move(patch)});
    }
    void leave(std::string const& room) {
        if (format_ == fmt::json) send_json({{"type", "leave"}, {"roomId", room}});
        else send_binary(flk::client::leave{room});
        std::erase(rooms_, room);
        if (format_ == fmt::binary) session_.forget(room);
    }
    /// Starts the close handshake (code 1000).
    void close() {
        silent_ = true;
        closing_ = true;
        if (writing_) return;  // closed after the queue drains
        start_close();
    }
    /// Drops the TCP connection without a close handshake, as a killed tab does.
    void drop() {
        silent_ = true;
        closing_ = true;
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
        beast::get_lowest_layer(ws_).socket().close(ignored);
    }
    /// Stops sending anything (heartbeats included), as a frozen tab would;
    /// it still reads.
    void go_silent() { silent_ = true; }

    // ---- what it received ----------------------------------------------------

    std::vector<json::object> const& inbox() const { return inbox_; }
    std::vector<json::object> of(std::string_view type, std::string_view user = {}, std::string_view room = {}) const {
        std::vector<json::object> out;
        for (auto const& m : inbox_) {
            if (m.at("type").as_string() != type) continue;
            if (!user.empty() && (!m.contains("userId") || m.at("userId").as_string() != user)) continue;
            if (!room.empty() && (!m.contains("roomId") || m.at("roomId").as_string() != room)) continue;
            out.push_back(m);
        }
        return out;
    }
    std::size_t count(std::string_view type, std::string_view user = {}, std::string_view room = {}) const {
        return of(type, user, room).size();
    }
    /// Index in the inbox of the first message of `type` about `user`, or npos.
    std::size_t index_of(std::string_view type, std::string_view user) const {
        for (std::size_t i = 0; i < inbox_.size(); ++i)
            if (inbox_[i].at("type").as_string() == type && inbox_[i].contains("userId") &&
                inbox_[i].at("userId").as_string() == user)
                return i;
        return std::string::npos;
    }
    /// x of every cursor:updated of `user`, in arrival order.
    std::vector<double> cursor_xs(std::string_view user, std::string_view room) const {
        std::vector<double> xs;
        for (auto const& m : of("cursor:updated", user, room))
            xs.push_back(m.at("position").at("x").to_number<double>());
        return xs;
    }
    /// Whether a presence:updated from `user` carried {"marker": n}.
    bool got_marker(std::string_view user, int n) const {
        for (auto const& m : of("presence:updated", user))
            if (auto const* v = m.at("metadata").as_object().if_contains("marker"); v && v->to_number<int>() == n)
                return true;
        return false;
    }
    bool closed() const { return closed_; }
    std::optional<std::uint16_t> close_code() const { return close_code_; }
    std::size_t refused_frames() const { return refused_; }
    std::string subprotocol() const { return subprotocol_; }

    std::string dump() const {
        std::string out = name_ + (format_ == fmt::json ? " (json)" : " (binary)") + " got:";
        for (auto const& m : inbox_) out += "\n    " + json::serialize(m);
        if (closed_) out += "\n    [closed " + (close_code_ ? std::to_string(*close_code_) : "?") + "]";
        if (refused_) out += "\n    [" + std::to_string(refused_) + " binary frames refused by the session]";
        return out;
    }

private:
    void connect(asio::io_context& io, std::uint16_t port);
    bool run(std::function<bool()> const& pred, ms timeout);

    void send_json(json::object const& o) { enqueue(json::serialize(o)); }
    void send_binary(flk::client_message const& m) { enqueue(flk::binary_codec{}.encode_client(m)); }

    void enqueue(std::string bytes) {
        if (closed_ || closing_) return;
        out_.push_back(std::move(bytes));
        if (!writing_) write_next();
    }

    void write_next() {
        if (out_.empty() || closed_) {
            writing_ = false;
            if (closing_ && !closed_) start_close();
            return;
        }
        writing_ = true;
        ws_.binary(format_ == fmt::binary);
        ws_.async_write(asio::buffer(out_.front()), [this](beast::error_code ec, std::size_t) {
            out_.pop_front();
            if (ec) {
                out_.clear();
                writing_ = false;
                return;
            }
            write_next();
        });
    }

    void start_close() {
        if (close_started_ || closed_) return;
        close_started_ = true;
        ws_.async_close(websocket::close_code::normal, [](beast::error_code) {});
    }

    void read_next() {
        ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
            if (ec) {
                closed_ = true;
                auto const code = static_cast<std::uint16_t>(ws_.reason().code);
                close_code_ = code != 0 ? code : (ec == websocket::error::closed ? 1005 : 1006);
                timer_.cancel();
                return;
            }
            on_message(beast::buffers_to_string(buffer_.data()), ws_.got_text());
            buffer_.consume(buffer_.size());
            read_next();
        });
    }

    void on_message(std::string const& bytes, bool text) {
        json::object o;
        if (format_ == fmt::json) {
            if (!text) {
                ++refused_;
                return;
            }
            boost::system::error_code ec;
            auto v = json::parse(bytes, ec);
            if (ec || !v.is_object()) {
                ++refused_;
                return;
            }
            o = std::move(v.as_object());
        } else {
            auto m = text ? std::nullopt : session_.decode(bytes);
            if (!m) {
                ++refused_;
                return;
            }
            o = json::parse(flk::json_codec{}.encode(*m)).as_object();
        }
        if (o.at("type").as_string() == "heartbeat:ack") return;
        inbox_.push_back(std::move(o));
    }

    void arm_heartbeat() {
        timer_.expires_after(heartbeat_every);
        timer_.async_wait([this](beast::error_code ec) {
            if (ec || closed_) return;
            if (!silent_)
                for (auto const& r : rooms_) heartbeat(r);
            arm_heartbeat();
        });
    }

    hub& hub_;
    websocket::stream<beast::tcp_stream> ws_;
    asio::steady_timer timer_;
    fmt format_;
    std::string name_;
    beast::flat_buffer buffer_;
    std::deque<std::string> out_;
    bool writing_ = false;
    bool closing_ = false;
    bool close_started_ = false;
    bool closed_ = false;
    bool silent_ = false;
    std::optional<std::uint16_t> close_code_;
    std::vector<std::string> rooms_;
    flk::binary_session session_;
    std::vector<json::object> inbox_;
    std::size_t refused_ = 0;
    std::string subprotocol_;
};

/// Owns the io_context and every client; drives them all on the test's thread.
class hub {
public:
    hub() = default;
    hub(hub const&) = delete;
    hub& operator=(hub const&) = delete;
    ~hub() {
        clients_.clear();  // sockets closed; pending handlers die with io_
    }

    client& connect(std::uint16_t port, fmt f, std::string name) {
        clients_.push_back(std::make_unique<client>(*this, io_, port, f, std::move(name)));
        return *clients_.back();
    }

    /// Runs every client until `pred()` holds; false if `timeout` passes first.
    bool run_until(std::function<bool()> const& pred, ms timeout) {
        auto const deadline = clock_type::now() + timeout;
        while (!pred()) {
            auto const now = clock_type::now();
            if (now >= deadline) return false;
            if (io_.stopped()) io_.restart();
            io_.run_one_for(std::min<clock_type::duration>(deadline - now, 20ms));
        }
        return true;
    }

    /// Runs every client for `d` (only to give something that must NOT
    /// happen the chance to show up; never to wait for something).
    void run_for(ms d) {
        run_until([] { return false; }, d);
    }

    std::string dump() const {
        std::string out;
        for (auto const& c : clients_) out += "  " + c->dump() + "\n";
        return out;
    }

private:
    asio::io_context io_;
    std::vector<std::unique_ptr<client>> clients_;
};

inline void client::connect(asio::io_context& io, std::uint16_t port) {
    auto& tcp_layer = beast::get_lowest_layer(ws_);
    beast::error_code ec;
    bool done = false;
    tcp_layer.expires_after(10s);
    tcp_layer.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), [&](beast::error_code e) {
        ec = e;
        done = true;
    });
    if (!run([&] { return done; }, 11s) || ec)
        throw std::runtime_error(name_ + ": connect to port " + std::to_string(port) + " failed: " + ec.message());
    tcp_layer.socket().set_option(tcp::no_delay(true));
    // Not inherited by the processes the test starts later (a restarted
    // redis-server, say): a copy of the fd there would keep the connection
    // open after this client closed it.
    ::fcntl(tcp_layer.socket().native_handle(), F_SETFD, FD_CLOEXEC);
    if (format_ == fmt::binary)
        ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
            req.set(beast::http::field::sec_websocket_protocol, flk::binary_codec::subprotocol);
        }));
    ws_.read_message_max(16 * 1024 * 1024);
    websocket::response_type res;
    done = false;
    ws_.async_handshake(res, "127.0.0.1:" + std::to_string(port), "/", [&](beast::error_code e) {
        ec = e;
        done = true;
    });
    if (!run([&] { return done; }, 11s) || ec)
        throw std::runtime_error(name_ + ": websocket upgrade failed: " + ec.message());
    tcp_layer.expires_never();
    ws_.set_option(websocket::stream_base::timeout{30s, websocket::stream_base::none(), false});
    subprotocol_ = std::string(res[beast::http::field::sec_websocket_protocol]);
    read_next();
    arm_heartbeat();
    (void)io;
}

inline bool client::run(std::function<bool()> const& pred, ms timeout) { return hub_.run_until(pred, timeout); }

// ---- the cluster: redis-server, two flock-server processes, clients ----------

// The suite runs when a flock-server binary and a redis-server are there;
// otherwise it is skipped with a line on stderr, or, under
// FLOCK_TEST_STRICT=1, runs and fails in the cluster's constructor.
struct need_flock_server {
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        std::string why;
        if (!flk::test::flock_server_binary())
            why = "no flock-server binary (set FLOCK_SERVER_BIN, or build with FLOCK_SERVER_BIN_DEFAULT)";
        else if (!flk::test::on_path("redis-server"))
            why = "no redis-server on PATH";
        if (why.empty() || flk::test::strict_mode()) return true;
        static bool said = false;
        if (!said)
            std::cerr << "SKIPPED: processes (flock-server end to end): " << why
                      << " (set FLOCK_TEST_STRICT=1 to make this a failure)\n";
        said = true;
        boost::test_tools::assertion_result r(false);
        r.message() << why;
        return r;
    }
};

/// FLOCK_E2E_LOG_LEVEL, for a closer look at a failure (default info).
inline std::string log_level() {
    char const* l = std::getenv("FLOCK_E2E_LOG_LEVEL");
    return l && *l ? l : "info";
}

struct cluster_options {
    int threads = 1;
    int ttl = ttl_seconds;
};

struct cluster {
    std::unique_ptr<redis_server> redis;
    std::vector<std::unique_ptr<server_process>> servers;
    std::unique_ptr<hub> clients;  // declared last: destroyed first
    int threads;

    explicit cluster(cluster_options o = {}) : threads(o.threads) {
        auto bin = flk::test::flock_server_binary();
        BOOST_REQUIRE_MESSAGE(bin, "FLOCK_TEST_STRICT: no flock-server binary: set FLOCK_SERVER_BIN or "
                                   "FLOCK_SERVER_BIN_DEFAULT");
        try {
            redis = redis_server::spawn();
        } catch (std::exception const& e) {
            BOOST_FAIL("FLOCK_TEST_STRICT: cannot start a private redis-server: " << e.what());
        }
        for (int i = 0; i < 2; ++i) {
            servers.push_back(std::make_unique<server_process>(
                *bin,
                server_process::env_map{{"FLOCK_PORT", "0"},
                                        {"FLOCK_HOST", "127.0.0.1"},
                                        {"FLOCK_REDIS_URL", redis->url()},
                                        {"FLOCK_PRESENCE_TTL_SECONDS", std::to_string(o.ttl)},
                                        {"FLOCK_THREADS", std::to_string(o.threads)},
                                        {"FLOCK_LOG_LEVEL", log_level()}},
                20s, "s" + std::to_string(i + 1)));
        }
        // Joins fail fast while Redis is not connected yet: wait for every shard.
        for (auto& s : servers)
            BOOST_REQUIRE_MESSAGE(s->wait_for_lines("msg=\"redis connected\"", static_cast<std::size_t>(threads), 10s),
                                  s->name() + " never connected to redis:\n" + s->log());
        clients = std::make_unique<hub>();
    }

    ~cluster() {
        auto const id = boost::unit_test::framework::current_test_case().p_id;
        bool const failed = !boost::unit_test::results_collector.results(id).passed();
        if (failed) {
            std::cerr << "---- clients of the failed case ----\n" << clients->dump();
            for (auto& s : servers) std::cerr << "---- log of " << s->name() << " ----\n" << s->log();
        }
        clients.reset();
        // A graceful stop (SIGTERM) ends with exit status 0, well within the
        // close deadline now that every client is gone (an AddressSanitizer
        // build exits non-zero on a leak).
        for (auto& s : servers) {
            if (s->pid() <= 0) continue;  // killed by the test
            auto const t0 = clock_type::now();
            bool const clean = s->stop();
            auto const took = std::chrono::duration_cast<ms>(clock_type::now() - t0).count();
            auto const st = s->exit_status();
            bool const ok = clean && st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
            BOOST_TEST(ok, s->name() << " stopped on SIGTERM in " << took << " ms, status "
                                     << (st ? std::to_string(*st) : "?") << (clean ? "" : " (killed after 10 s)"));
            if (!ok || took > 3000) std::cerr << "---- log of " << s->name() << " ----\n" << s->log();
        }
    }

    server_process& s1() { return *servers[0]; }
    server_process& s2() { return *servers[1]; }

    client& connect(server_process& s, fmt f, std::string name) {
        auto& c = clients->connect(s.port(), f, std::move(name));
        if (f == fmt::binary) BOOST_REQUIRE_EQUAL(c.subprotocol(), "flock.binary.v2");
        return c;
    }

    bool wait(std::function<bool()> const& pred, ms timeout = 5s) { return clients->run_until(pred, timeout); }

    /// Joins and waits for the join:ack; returns it.
    json::object join(client& c, std::string const& room, std::string const& user, json::object meta = {}) {
        auto const before = c.count("join:ack", {}, room);
        c.join(room, user, std::move(meta));
        BOOST_REQUIRE_MESSAGE(wait([&] { return c.count("join:ack", {}, room) > before; }, 10s),
                              "no join:ack for " + user + "\n" + clients->dump());
        return c.of("join:ack", {}, room).back();
    }

    /// Each of `senders` sends a presence:update {"marker": n}; waits until
    /// every reader has all of them (see the top of this file).
    void markers(std::vector<std::pair<client*, std::string>> const& senders, std::vector<client*> const& readers,
                 std::string const& room, int n) {
        for (auto& [c, user] : senders) c->presence(room, {{"marker", n}});
        BOOST_REQUIRE_MESSAGE(wait([&] {
            for (auto* r : readers)
                for (auto& [c, user] : senders)
                    if (r != c && !r->got_marker(user, n)) return false;
            return true;
        }, 10s), "markers did not arrive\n" + clients->dump());
    }

    /// Polls Redis (a state we cannot subscribe to) while the clients run.
    bool wait_redis(std::function<bool(redis_fixture::sync_client&)> const& pred, ms timeout = 10s) {
        auto cli = redis->client();
        return wait([&] { return pred(cli); }, timeout);
    }
};

/// The users of a join:ack, sorted.
inline std::vector<std::string> users_of(json::object const& ack) {
    std::vector<std::string> ids;
    for (auto const& u : ack.at("users").as_array()) ids.emplace_back(u.at("userId").as_string());
    std::sort(ids.begin(), ids.end());
    return ids;
}
inline std::optional<json::object> member_of(json::object const& ack, std::string_view user) {
    for (auto const& u : ack.at("users").as_array())
        if (u.at("userId").as_string() == user) return u.as_object();
    return std::nullopt;
}

/// Four members, one of each kind on each instance: ann (JSON) and dan
/// (binary) on s1, bea (binary) and cal (JSON) on s2, each joined after the
/// previous one was announced to everyone.
struct four {
    client& ann;
    client& bea;
    client& cal;
    client& dan;
    std::vector<client*> all() { return {&ann, &bea, &cal, &dan}; }
};
inline four populate(cluster& k, std::string const& room) {
    four f{k.connect(k.s1(), fmt::json, "ann"), k.connect(k.s2(), fmt::binary, "bea"),
           k.connect(k.s2(), fmt::json, "cal"), k.connect(k.s1(), fmt::binary, "dan")};
    std::vector<std::pair<client*, std::string>> members{
        {&f.ann, "ann"}, {&f.bea, "bea"}, {&f.cal, "cal"}, {&f.dan, "dan"}};
    for (std::size_t i = 0; i < members.size(); ++i) {
        client* c = members[i].first;
        std::string const& user = members[i].second;  // not a structured binding: clang 14 cannot capture one
        k.join(*c, room, user, {{"name", user}});
        BOOST_REQUIRE_MESSAGE(k.wait([&] {
            for (std::size_t j = 0; j < i; ++j)
                if (members[j].first->count("user:joined", user, room) < 1) return false;
            return true;
        }), user + " was not announced to everyone\n" + k.clients->dump());
    }
    return f;
}

inline std::vector<double> iota_xs(int n, double step, double first) {
    std::vector<double> xs;
    for (int i = 0; i < n; ++i) xs.push_back(first + i * step);
    return xs;
}

BOOST_AUTO_TEST_SUITE(processes, *boost::unit_test::precondition(need_flock_server{}))

BOOST_AUTO_TEST_CASE(join_snapshot_across_instances) {
    cluster k;
    auto const room = room_name("snapshot");
    auto& ann = k.connect(k.s1(), fmt::json, "ann");
    BOOST_TEST(k.join(ann, room, "ann", {{"name", "Ann"}, {"color", "#f00"}}).at("users").as_array().empty());
    ann.move(room, 0.25, 0.75);
    // Only snapshots read the stored cursor: wait until it is stored.
    BOOST_REQUIRE(k.wait_redis([&](auto& cli) { return cli.exists("flock:cursor:" + room + ":ann"); }));

    // A binary joiner on the other instance: ann, her metadata and her cursor.
    auto& bea = k.connect(k.s2(), fmt::binary, "bea");
    auto ack = k.join(bea, room, "bea", {{"name", "Bea"}});
    BOOST_TEST((users_of(ack) == std::vector<std::string>{"ann"}));
    auto a = member_of(ack, "ann");
    BOOST_REQUIRE(a);
    BOOST_TEST(json::serialize(a->at("metadata")) == R"({"name":"Ann","color":"#f00"})");
    BOOST_REQUIRE(a->contains("cursor"));
    BOOST_TEST(a->at("cursor").at("x").to_number<double>() == 0.25);
    BOOST_TEST(a->at("cursor").at("y").to_number<double>() == 0.75);
    BOOST_REQUIRE(k.wait([&] { return ann.count("user:joined", "bea") == 1; }));
    BOOST_TEST(json::serialize(ann.of("user:joined", "bea")[0].at("metadata")) == R"({"name":"Bea"})");

    // A JSON joiner on s2 and a binary joiner on s1 see everyone, cluster-wide.
    auto& cal = k.connect(k.s2(), fmt::json, "cal");
    auto ack_c = k.join(cal, room, "cal", {{"name", "Cal"}});
    BOOST_TEST((users_of(ack_c) == std::vector<std::string>{"ann", "bea"}));
    BOOST_REQUIRE(member_of(ack_c, "ann") && member_of(ack_c, "ann")->contains("cursor"));
    BOOST_TEST(member_of(ack_c, "ann")->at("cursor").at("x").to_number<double>() == 0.25);
    BOOST_TEST(!member_of(ack_c, "bea")->contains("cursor"));
    auto& dan = k.connect(k.s1(), fmt::binary, "dan");
    auto ack_d = k.join(dan, room, "dan", {{"name", "Dan"}});
    BOOST_TEST((users_of(ack_d) == std::vector<std::string>{"ann", "bea", "cal"}));
    BOOST_TEST(json::serialize(member_of(ack_d, "cal")->at("metadata")) == R"({"name":"Cal"})");
    BOOST_REQUIRE(member_of(ack_d, "ann") && member_of(ack_d, "ann")->contains("cursor"));
    BOOST_TEST(member_of(ack_d, "ann")->at("cursor").at("y").to_number<double>() == 0.75);
    // cal's user:joined reaches ann (s1) through Redis and dan's locally:
    // the two instances' events have no order between them, so wait for both.
    BOOST_REQUIRE(k.wait([&] {
        return ann.count("user:joined", "dan") == 1 && bea.count("user:joined", "dan") == 1 &&
               cal.count("user:joined", "dan") == 1 && ann.count("user:joined", "cal") >= 1 &&
               bea.count("user:joined", "cal") >= 1;
    }));
    BOOST_TEST(ann.count("user:joined", "cal") == 1u);
    BOOST_TEST(bea.count("user:joined", "cal") == 1u);
    // The binary clients could resolve every frame they were sent.
    for (auto* c : {&ann, &bea, &cal, &dan}) BOOST_TEST(c->refused_frames() == 0u, c->name());
}

// A burst of 20 moves, back to back, from bea (binary, s2): every other
// member, on both instances and in both formats, gets all 20, in order, once.
void cursor_burst(int threads) {
    cluster k({.threads = threads});
    auto const room = room_name("burst");
    auto f = populate(k, room);
    auto const want = iota_xs(20, 1.0 / 64, 1.0 / 64);  // exact in binary and in JSON text
    for (double x : want) f.bea.move(room, x, 0.5);
    std::vector<client*> readers{&f.ann, &f.cal, &f.dan};
    BOOST_REQUIRE_MESSAGE(k.wait([&] {
        for (auto* r : readers)
            if (r->count("cursor:updated", "bea", room) < want.size()) return false;
        return true;
    }), "not every reader got 20 cursor:updated\n" + k.clients->dump());
    k.markers({{&f.bea, "bea"}, {&f.ann, "ann"}}, f.all(), room, 1);
    for (auto* r : readers) {
        BOOST_TEST(r->cursor_xs("bea", room) == want, r->name() + " (in order, exactly once)");
        std::int64_t last = 0;
        for (auto const& m : r->of("cursor:updated", "bea", room)) {
            BOOST_TEST(m.at("position").at("y").to_number<double>() == 0.5);
            auto ts = m.at("timestamp").to_number<std::int64_t>();
            BOOST_TEST(ts >= last);
            last = ts;
        }
        BOOST_TEST(r->refused_frames() == 0u, r->name());
    }
    BOOST_TEST(f.bea.count("cursor:updated") == 0u);  // never echoed
}

BOOST_AUTO_TEST_CASE(cursor_burst_reaches_every_reader_in_order_exactly_once) { cursor_burst(1); }

BOOST_AUTO_TEST_CASE(cursor_burst_two_threads_per_server) { cursor_burst(2); }

// Three moves sent before the join's ack are replayed after it, in order,
// to every member on both instances and in both formats.
void early_cursor_moves(int threads) {
    cluster k({.threads = threads});
    auto const room = room_name("early");
    auto f = populate(k, room);
    for (auto const& who : {std::tuple{&k.s1(), fmt::json, "eve"}, std::tuple{&k.s2(), fmt::binary, "fay"}}) {
        auto* srv = std::get<0>(who);
        auto const format = std::get<1>(who);
        std::string const name = std::get<2>(who);  // not a structured binding: clang 14 cannot capture one
        auto& c = k.connect(*srv, format, name);
        c.join(room, name);
        c.move(room, 0.7, 0.1);  // all on the wire before the join:ack can come back
        c.move(room, 0.8, 0.2);
        c.move(room, 0.9, 0.3);
        BOOST_REQUIRE(k.wait([&] { return c.count("join:ack") == 1; }));
        std::vector<double> const want{0.7, 0.8, 0.9};
        bool const all = k.wait([&] {
            for (auto* r : f.all())
                if (r->count("cursor:updated", name, room) < 3) return false;
            return true;
        });
        BOOST_TEST(all, "not every member got " << name << "'s 3 early moves");
        for (auto* r : f.all()) {
            BOOST_TEST(r->cursor_xs(name, room) == want, r->name() + " got " + name + "'s early moves");
            // The newcomer is announced before its cursor (a binary client needs the handle first).
            BOOST_TEST(r->index_of("user:joined", name) < r->index_of("cursor:updated", name),
                       r->name() + ": user:joined " + name + " before its cursor");
        }
        BOOST_TEST(c.count("cursor:updated", name) == 0u);
    }
}

BOOST_AUTO_TEST_CASE(early_cursor_moves_replayed_after_join) { early_cursor_moves(1); }

BOOST_AUTO_TEST_CASE(early_cursor_moves_two_threads_per_server) { early_cursor_moves(2); }

// ann moves once; bea (other instance) sees it; cal joins there right away
// (well within the 100 ms cursor write throttle): cal's snapshot has the cursor.
BOOST_AUTO_TEST_CASE(late_joiner_sees_the_cursor) {
    cluster k;
    auto const room = room_name("late");
    auto& ann = k.connect(k.s1(), fmt::json, "ann");
    auto& bea = k.connect(k.s2(), fmt::binary, "bea");
    auto& cal = k.connect(k.s2(), fmt::json, "cal");
    auto& dan = k.connect(k.s2(), fmt::binary, "dan");
    k.join(ann, room, "ann", {{"name", "Ann"}});
    k.join(bea, room, "bea");
    BOOST_REQUIRE(k.wait([&] { return ann.count("user:joined", "bea") == 1; }));
    ann.move(room, 0.125, 0.375);
    BOOST_REQUIRE(k.wait([&] { return bea.count("cursor:updated", "ann") == 1; }));
    auto const seen = clock_type::now();
    cal.join(room, "cal");
    dan.join(room, "dan");
    BOOST_REQUIRE(k.wait([&] { return cal.count("join:ack") == 1 && dan.count("join:ack") == 1; }));
    BOOST_TEST_MESSAGE("joins answered " << std::chrono::duration_cast<ms>(clock_type::now() - seen).count()
                                         << " ms after bea saw the cursor");
    for (auto* c : {&cal, &dan}) {
        auto a = member_of(c->of("join:ack")[0], "ann");
        BOOST_REQUIRE_MESSAGE(a, c->name() + "'s join:ack lacks ann");
        BOOST_TEST(a->contains("cursor"), c->name() + "'s join:ack has ann's cursor");
        if (a->contains("cursor")) {
            BOOST_TEST(a->at("cursor").at("x").to_number<double>() == 0.125);
            BOOST_TEST(a->at("cursor").at("y").to_number<double>() == 0.375);
        }
    }
}

BOOST_AUTO_TEST_CASE(presence_update_merges) {
    cluster k;
    auto const room = room_name("presence");
    auto f = populate(k, room);
    f.ann.presence(room, {{"status", "away"}, {"color", "#0f0"}});
    BOOST_REQUIRE(k.wait([&] {
        return f.bea.count("presence:updated", "ann") == 1 && f.cal.count("presence:updated", "ann") == 1 &&
               f.dan.count("presence:updated", "ann") == 1;
    }));
    for (auto* r : {&f.bea, &f.cal, &f.dan})  // the patch only
        BOOST_TEST(json::serialize(r->of("presence:updated", "ann")[0].at("metadata")) ==
                       R"({"status":"away","color":"#0f0"})",
                   r->name());
    f.bea.presence(room, {{"status", "busy"}});
    BOOST_REQUIRE(k.wait([&] {
        return f.ann.count("presence:updated", "bea") == 1 && f.cal.count("presence:updated", "bea") == 1 &&
               f.dan.count("presence:updated", "bea") == 1;
    }));
    BOOST_TEST(json::serialize(f.ann.of("presence:updated", "bea")[0].at("metadata")) == R"({"status":"busy"})");
    BOOST_TEST(f.ann.count("presence:updated", "ann") == 0u);  // not echoed
    // Later joiners, on both instances and in both formats: the merged objects.
    for (auto [srv, format, name] : {std::tuple{&k.s2(), fmt::binary, "eve"}, std::tuple{&k.s1(), fmt::json, "fay"}}) {
        auto& c = k.connect(*srv, format, name);
        auto ack = k.join(c, room, name);
        auto a = member_of(ack, "ann");
        auto b = member_of(ack, "bea");
        BOOST_REQUIRE(a);
        BOOST_REQUIRE(b);
        BOOST_TEST(json::serialize(a->at("metadata")) == R"({"name":"ann","status":"away","color":"#0f0"})", name);
        BOOST_TEST(json::serialize(b->at("metadata")) == R"({"name":"bea","status":"busy"})", name);
    }
}

BOOST_AUTO_TEST_CASE(leave_and_close_seen_once_everywhere) {
    cluster k;
    auto const room = room_name("leave");
    auto f = populate(k, room);
    auto& eve = k.connect(k.s1(), fmt::json, "eve");
    auto& fay = k.connect(k.s2(), fmt::binary, "fay");
    k.join(eve, room, "eve");
    k.join(fay, room, "fay");
    BOOST_REQUIRE(k.wait([&] { return f.bea.count("user:joined", "eve") == 1 && eve.count("user:joined", "fay") == 1; }));
    auto const t0 = clock_type::now();
    f.cal.leave(room);  // s2, JSON: a leave message
    f.dan.close();      // s1, binary: a close handshake
    fay.drop();         // s2, binary: the TCP connection dropped, no close frame
    std::vector<client*> stay{&f.ann, &f.bea, &eve};
    BOOST_REQUIRE_MESSAGE(k.wait([&] {
        for (auto* r : stay)
            if (r->count("user:left", "cal") < 1 || r->count("user:left", "dan") < 1 ||
                r->count("user:left", "fay") < 1)
                return false;
        return true;
    }), "user:left missing\n" + k.clients->dump());
    // At once, not after the TTL.
    BOOST_TEST(std::chrono::duration_cast<ms>(clock_type::now() - t0).count() < ttl_seconds * 1000 / 2);
    BOOST_REQUIRE(k.wait([&] { return f.dan.closed(); }));
    k.markers({{&f.ann, "ann"}, {&f.bea, "bea"}}, stay, room, 1);
    for (auto* r : stay) {
        BOOST_TEST(r->count("user:left", "cal") == 1u, r->name());
        BOOST_TEST(r->count("user:left", "dan") == 1u, r->name());
        BOOST_TEST(r->count("user:left", "fay") == 1u, r->name());
        BOOST_TEST(r->count("user:left") == 3u, r->name());
    }
    // The leaver is not told about itself. (It may hear of dan or fay: their
    // departures on the other instance race its own leave through Redis.)
    BOOST_TEST(f.cal.count("user:left", "cal") == 0u);
    auto cli = k.redis->client();
    BOOST_TEST(!cli.exists("flock:presence:" + room + ":cal"));
    BOOST_TEST(!cli.exists("flock:presence:" + room + ":dan"));
    BOOST_TEST(cli.command({"SISMEMBER", "flock:room:" + room + ":members", "dan"}).integer == 0);
    // Well past the TTL: no eviction of the departed shows up later.
    k.clients->run_for(ms(ttl_seconds * 1000 + 1200));
    for (auto* r : stay) BOOST_TEST(r->count("user:left") == 3u, r->name() + " after the TTL");
}

// A client that stops sending: user:left once for everyone after about the
// TTL, and its socket is closed with 4001.
BOOST_AUTO_TEST_CASE(silent_client_evicted_once_after_ttl) {
    cluster k;
    auto const room = room_name("silent");
    auto f = populate(k, room);
    auto& gus = k.connect(k.s1(), fmt::json, "gus");
    auto& hal = k.connect(k.s2(), fmt::binary, "hal");
    k.join(gus, room, "gus");
    k.join(hal, room, "hal");
    BOOST_REQUIRE(k.wait([&] { return f.ann.count("user:joined", "hal") == 1 && f.bea.count("user:joined", "hal") == 1; }));
    auto const t0 = clock_type::now();
    gus.go_silent();
    hal.go_silent();
    BOOST_REQUIRE_MESSAGE(k.wait([&] {
        for (auto* r : f.all())
            if (r->count("user:left", "gus") < 1 || r->count("user:left", "hal") < 1) return false;
        return true;
    }, ms(ttl_seconds * 1000 + 6000)), "no eviction\n" + k.clients->dump());
    auto const took = std::chrono::duration_cast<ms>(clock_type::now() - t0);
    BOOST_TEST_MESSAGE("evicted after " << took.count() << " ms (TTL " << ttl_seconds << " s)");
    BOOST_TEST(took.count() >= ttl_seconds * 1000 - heartbeat_every.count() - 100);
    BOOST_REQUIRE(k.wait([&] { return gus.closed() && hal.closed(); }));
    BOOST_TEST(gus.close_code().value_or(0) == flk::close_code::presence_expired);
    BOOST_TEST(hal.close_code().value_or(0) == flk::close_code::presence_expired);
    BOOST_REQUIRE(k.wait_redis([&](auto& cli) {
        return cli.command({"SISMEMBER", "flock:room:" + room + ":members", "gus"}).integer == 0 &&
               cli.command({"SISMEMBER", "flock:room:" + room + ":members", "hal"}).integer == 0;
    }));
    k.markers({{&f.ann, "ann"}, {&f.bea, "bea"}}, f.all(), room, 1);
    k.clients->run_for(1200ms);  // one more sweep on each instance
    for (auto* r : f.all()) {
        BOOST_TEST(r->count("user:left", "gus") == 1u, r->name());
        BOOST_TEST(r->count("user:left", "hal") == 1u, r->name());
        BOOST_TEST(r->count("user:left") == 2u, r->name());
    }
}

// kill -9 of s1: its users (ann, dan) leave for the members on s2 exactly
// once, after about the TTL.
BOOST_AUTO_TEST_CASE(killed_server_users_leave_once_after_ttl) {
    cluster k;
    auto const room = room_name("crash");
    auto f = populate(k, room);
    auto& eve = k.connect(k.s2(), fmt::binary, "eve");
    k.join(eve, room, "eve");
    BOOST_REQUIRE(k.wait([&] { return f.ann.count("user:joined", "eve") == 1 && f.dan.count("user:joined", "eve") == 1; }));
    auto const t0 = clock_type::now();
    k.s1().kill(SIGKILL);
    BOOST_REQUIRE(k.wait([&] { return f.ann.closed() && f.dan.closed(); }));
    std::vector<client*> stay{&f.bea, &f.cal, &eve};
    BOOST_REQUIRE_MESSAGE(k.wait([&] {
        for (auto* r : stay)
            if (r->count("user:left", "ann") < 1 || r->count("user:left", "dan") < 1) return false;
        return true;
    }, ms(ttl_seconds * 1000 + 6000)), "no eviction of s1's users\n" + k.clients->dump());
    auto const took = std::chrono::duration_cast<ms>(clock_type::now() - t0);
    BOOST_TEST_MESSAGE("s1's users left " << took.count() << " ms after the kill (TTL " << ttl_seconds << " s)");
    BOOST_TEST(took.count() >= ttl_seconds * 1000 - heartbeat_every.count() - 100);
    BOOST_REQUIRE(k.wait_redis([&](auto& cli) {
        return cli.command({"SISMEMBER", "flock:room:" + room + ":members", "ann"}).integer == 0 &&
               cli.command({"SISMEMBER", "flock:room:" + room + ":members", "dan"}).integer == 0;
    }));
    k.markers({{&f.bea, "bea"}}, stay, room, 1);
    k.clients->run_for(1200ms);  // one more sweep
    for (auto* r : stay) {
        BOOST_TEST(r->count("user:left", "ann") == 1u, r->name());
        BOOST_TEST(r->count("user:left", "dan") == 1u, r->name());
        BOOST_TEST(r->count("user:left") == 2u, r->name());
        BOOST_TEST(r->refused_frames() == 0u, r->name());
    }
    // Those still here keep talking.
    f.cal.move(room, 0.5, 0.5);
    BOOST_REQUIRE(k.wait([&] { return f.bea.count("cursor:updated", "cal") == 1 && eve.count("cursor:updated", "cal") == 1; }));
}

// ann, connected on s1, joins again on s2 (a refresh landing elsewhere): the
// old socket is closed with 4000, the others see ann stay (a new user:joined,
// no user:left), and the old socket's close does not remove her.
BOOST_AUTO_TEST_CASE(duplicate_join_across_instances) {
    cluster k;
    auto const room = room_name("dup");
    auto f = populate(k, room);
    std::vector<client*> others{&f.bea, &f.cal, &f.dan};
    std::map<client*, std::size_t> joined_before;  // what each knew of ann so far
    for (auto* r : others) joined_before[r] = r->count("user:joined", "ann");
    auto& ann2 = k.connect(k.s2(), fmt::json, "ann2");
    auto ack = k.join(ann2, room, "ann", {{"name", "ann"}, {"tab", 2}});
    BOOST_TEST((users_of(ack) == std::vector<std::string>{"bea", "cal", "dan"}));
    BOOST_REQUIRE(k.wait([&] { return f.ann.closed(); }));
    BOOST_TEST(f.ann.close_code().value_or(0) == flk::close_code::replaced);
    BOOST_REQUIRE_MESSAGE(k.wait([&] {
        for (auto* r : others)
            if (r->count("user:joined", "ann") < joined_before[r] + 1) return false;
        return true;
    }), "the new socket's join was not announced\n" + k.clients->dump());
    // The old socket's close has landed on s1 (it closed it); markers from
    // both instances make sure anything it published has arrived.
    k.markers({{&f.dan, "dan"}, {&f.cal, "cal"}}, {&f.bea, &f.cal, &f.dan, &ann2}, room, 1);
    for (auto* r : others) {
        BOOST_TEST(r->count("user:left", "ann") == 0u, r->name() + ": no user:left for the live user");
        BOOST_TEST(r->count("user:joined", "ann") == joined_before[r] + 1, r->name() + ": announced once more");
        BOOST_TEST(json::serialize(r->of("user:joined", "ann").back().at("metadata")) == R"({"name":"ann","tab":2})",
                   r->name());
    }
    auto cli = k.redis->client();
    BOOST_TEST(cli.exists("flock:presence:" + room + ":ann"));
    // The live ann is heard everywhere (dan, binary, resolves her new handle).
    ann2.move(room, 0.5, 0.25);
    BOOST_REQUIRE(k.wait([&] {
        return f.bea.count("cursor:updated", "ann") == 1 && f.cal.count("cursor:updated", "ann") == 1 &&
               f.dan.count("cursor:updated", "ann") == 1;
    }));
    for (auto* r : others) BOOST_TEST(r->refused_frames() == 0u, r->name());
    // A later joiner on the old instance sees her; after the TTL she is still there.
    k.clients->run_for(ms(ttl_seconds * 1000 + 1200));
    auto& eve = k.connect(k.s1(), fmt::binary, "eve");
    auto ack2 = k.join(eve, room, "eve");
    BOOST_TEST((users_of(ack2) == std::vector<std::string>{"ann", "bea", "cal", "dan"}));
    BOOST_TEST(json::serialize(member_of(ack2, "ann")->at("metadata")) == R"({"name":"ann","tab":2})");
    for (auto* r : others) BOOST_TEST(r->count("user:left", "ann") == 0u, r->name() + " after the TTL");
}

// Redis killed and started again on the same port, empty, with clients on
// both instances: presence is restored and everything flows again.
BOOST_AUTO_TEST_CASE(redis_restart_with_clients_connected) {
    cluster k;
    auto const room = room_name("restart");
    auto f = populate(k, room);
    f.ann.move(room, 0.3, 0.3);
    BOOST_REQUIRE(k.wait([&] { return f.dan.count("cursor:updated", "ann") == 1 && f.bea.count("cursor:updated", "ann") == 1; }));

    k.redis->kill();
    for (auto* s : {&k.s1(), &k.s2()})
        BOOST_REQUIRE_MESSAGE(s->wait_for_lines("msg=\"redis connection lost", 1, 10s), s->name() + ":\n" + s->log());
    // Local delivery goes on.
    f.ann.move(room, 0.4, 0.4);
    BOOST_REQUIRE(k.wait([&] { return f.dan.count("cursor:updated", "ann") == 2; }));

    auto const t0 = clock_type::now();
    auto since = [&] { return std::chrono::duration_cast<ms>(clock_type::now() - t0).count(); };
    k.redis->restart();
    BOOST_TEST_MESSAGE("redis restarted after " << since() << " ms");
    for (auto* s : {&k.s1(), &k.s2()})
        BOOST_REQUIRE_MESSAGE(s->wait_for_lines("msg=\"redis reconnected\"", 1, 15s), s->name() + ":\n" + s->log());
    BOOST_TEST_MESSAGE("both reconnected after " << since() << " ms");
    BOOST_REQUIRE_MESSAGE(k.wait_redis([&](auto& cli) {
        for (auto const* u : {"ann", "bea", "cal", "dan"})
            if (!cli.exists("flock:presence:" + room + ":" + u) ||
                cli.command({"SISMEMBER", "flock:room:" + room + ":members", u}).integer != 1)
                return false;
        return true;
    }), "presence not restored");
    BOOST_TEST_MESSAGE("presence restored after " << since() << " ms");
    // Cross-instance cursors and presence flow again.
    f.bea.move(room, 0.9, 0.1);
    f.cal.presence(room, {{"status", "back"}});
    BOOST_REQUIRE_MESSAGE(k.wait([&] {
        return f.ann.count("cursor:updated", "bea") == 1 && f.dan.count("cursor:updated", "bea") == 1 &&
               f.cal.count("cursor:updated", "bea") == 1 && f.ann.count("presence:updated", "cal") == 1 &&
               f.dan.count("presence:updated", "cal") == 1 && f.bea.count("presence:updated", "cal") == 1;
    }), "no cross-instance traffic after the restart\n" + k.clients->dump());
    f.ann.move(room, 0.6, 0.6);
    BOOST_REQUIRE(k.wait([&] { return f.bea.count("cursor:updated", "ann") >= 2 && f.cal.count("cursor:updated", "ann") >= 2; }));
    BOOST_REQUIRE(k.wait_redis([&](auto& cli) {
        return cli.hget("flock:cursor:" + room + ":ann", "x") == std::optional<std::string>("0.6");
    }, 5s));
    // A later joiner on either instance sees the whole room, with ann's last cursor.
    auto& eve = k.connect(k.s2(), fmt::binary, "eve");
    auto ack = k.join(eve, room, "eve");
    BOOST_TEST((users_of(ack) == std::vector<std::string>{"ann", "bea", "cal", "dan"}));
    if (auto a = member_of(ack, "ann"); a && a->contains("cursor"))
        BOOST_TEST(a->at("cursor").at("x").to_number<double>() == 0.6);
    else
        BOOST_TEST(false, "eve's join:ack has ann's cursor");
    BOOST_TEST(json::serialize(member_of(ack, "cal")->at("metadata")) == R"({"name":"cal","status":"back"})");
    for (auto* r : f.all()) {
        BOOST_TEST(r->count("user:left") == 0u, r->name() + ": nobody left");
        BOOST_TEST(r->refused_frames() == 0u, r->name());
    }
    // Departures work as before: a close handshake on s2, a dropped socket on s1.
    f.cal.close();
    f.dan.drop();
    BOOST_TEST(k.wait([&] {
        for (auto* r : {&f.ann, &f.bea, &eve})
            if (r->count("user:left", "cal") != 1 || r->count("user:left", "dan") != 1) return false;
        return true;
    }, 1500ms), "cal and dan left at once after the restart\n" + k.clients->dump());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace processes_test
