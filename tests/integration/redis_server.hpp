// A redis-server for integration tests: FLOCK_TEST_REDIS_URL when set, else
// one started here on a free loopback port (never 6379 by assumption), which
// a test can kill and restart. Plus a small blocking client (hiredis's own
// synchronous API) for tests to look at keys and change settings.
// Under FLOCK_TEST_STRICT=1 (tests/run) a missing Redis fails the test; see
// tests/strict.hpp.
#pragma once

#include "strict.hpp"

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace redis_fixture {

/// A reply of the blocking client, flattened for easy checks.
struct sync_reply {
    int type = REDIS_REPLY_NIL;
    std::string str;
    long long integer = 0;
    std::vector<sync_reply> elements;
    bool is_nil() const { return type == REDIS_REPLY_NIL; }
    bool is_error() const { return type == REDIS_REPLY_ERROR; }
};

/// A blocking Redis client for test assertions (never used by the broker).
class sync_client {
public:
    sync_client(std::string const& host, int port, std::optional<std::string> password = {}, int db = 0) {
        timeval tv{2, 0};
        ctx_.reset(redisConnectWithTimeout(host.c_str(), port, tv));
        if (!ctx_ || ctx_->err)
            throw std::runtime_error("sync_client: cannot connect to redis: " +
                                     std::string(ctx_ ? ctx_->errstr : "out of memory"));
        redisSetTimeout(ctx_.get(), tv);
        if (password) command({"AUTH", *password});
        if (db != 0) command({"SELECT", std::to_string(db)});
    }

    sync_reply command(std::vector<std::string> const& args) {
        std::vector<char const*> argv;
        std::vector<std::size_t> lens;
        for (auto const& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        void* raw = redisCommandArgv(ctx_.get(), static_cast<int>(args.size()), argv.data(), lens.data());
        if (!raw) throw std::runtime_error("sync_client: " + std::string(ctx_->errstr));
        std::unique_ptr<redisReply, void (*)(void*)> r(static_cast<redisReply*>(raw), &freeReplyObject);
        return convert(*r);
    }

    bool exists(std::string const& key) { return command({"EXISTS", key}).integer == 1; }
    std::optional<std::string> hget(std::string const& key, std::string const& field) {
        auto r = command({"HGET", key, field});
        if (r.is_nil()) return std::nullopt;
        return r.str;
    }

private:
    static sync_reply convert(redisReply const& r) {
        sync_reply out;
        out.type = r.type;
        out.integer = r.integer;
        if (r.str) out.str.assign(r.str, r.len);
        for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(convert(*r.element[i]));
        return out;
    }

    struct free_ctx {
        void operator()(redisContext* c) const { redisFree(c); }
    };
    std::unique_ptr<redisContext, free_ctx> ctx_;
};

/// A loopback port nobody listens on right now.
inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        throw std::runtime_error("free_port: bind failed");
    }
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

/// A test CA (dir/ca.crt) and a certificate it signed for localhost and
/// 127.0.0.1 (dir/server.crt, dir/server.key), made with openssl in `dir`
/// (created). False when openssl cannot make them.
inline bool make_test_certificates(std::filesystem::path const& dir) {
    std::filesystem::create_directories(dir);
    std::string const cmd = "cd '" + dir.string() + "' && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt "
        "-days 1 -subj '/CN=flock test CA' && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr "
        "-subj '/CN=localhost' && "
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && "
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 "
        "-extfile ext.cnf";
    return std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()) == 0;
}

/// One redis-server: external (FLOCK_TEST_REDIS_URL) or a child process.
class redis_server {
public:
    /// Starts a private redis-server with `extra` arguments appended.
    /// With `tls`, the port speaks TLS only (give the --tls-* files in `extra`).
    static std::unique_ptr<redis_server> spawn(std::vector<std::string> extra = {}, bool tls = false) {
        auto s = std::unique_ptr<redis_server>(new redis_server());
        s->host_ = "127.0.0.1";
        s->port_ = free_port();
        s->tls_ = tls;
        s->extra_ = std::move(extra);
        for (std::size_t i = 0; i + 1 < s->extra_.size(); ++i)
            if (s->extra_[i] == "--requirepass") s->password_ = s->extra_[i + 1];
        s->start();
        return s;
    }

    /// A private redis-server for a test that reconfigures, kills or restarts
    /// it, or needs TLS. nullptr when none can be started: the test then fails
    /// under FLOCK_TEST_STRICT, or is skipped with a line on stderr.
    static std::unique_ptr<redis_server> spawn_or_skip(std::string_view test, std::vector<std::string> extra = {},
                                                       bool tls = false) {
        try {
            return spawn(std::move(extra), tls);
        } catch (std::exception const& e) {
            flk_test::prerequisite(false, test, std::string("cannot start a private redis-server: ") + e.what());
            return nullptr;
        }
    }

    /// The server most tests share: FLOCK_TEST_REDIS_URL (redis://host:port,
    /// no auth) if set, else a private one started on first use. Under
    /// FLOCK_TEST_STRICT the URL must be set (tests/run always sets it).
    static redis_server& shared() {
        static std::unique_ptr<redis_server> s = [] {
            if (char const* u = std::getenv("FLOCK_TEST_REDIS_URL"); u && *u) {
                auto e = std::unique_ptr<redis_server>(new redis_server());
                e->external_url_ = u;
                std::string_view v(u);
                auto at = v.rfind('@');
                auto hostport = v.substr(at == std::string_view::npos ? v.find("//") + 2 : at + 1);
                hostport = hostport.substr(0, hostport.find('/'));
                auto colon = hostport.rfind(':');
                e->host_ = std::string(hostport.substr(0, colon));
                e->port_ = colon == std::string_view::npos ? 6379 : std::stoi(std::string(hostport.substr(colon + 1)));
                return e;
            }
            if (flk_test::strict())
                throw std::runtime_error("FLOCK_TEST_STRICT: FLOCK_TEST_REDIS_URL is not set (tests/run sets it)");
            return spawn();
        }();
        return *s;
    }

    ~redis_server() { kill(); }

    bool owned() const { return !external_url_; }
    int port() const { return port_; }
    std::string const& host() const { return host_; }

    /// redis://[:password@]host:port[/db]
    std::string url(int db = 0) const {
        if (external_url_ && db == 0) return *external_url_;
        std::string u = "redis://";
        if (password_) u += ":" + *password_ + "@";
        u += host_ + ":" + std::to_string(port_);
        if (db != 0) u += "/" + std::to_string(db);
        return u;
    }

    sync_client client(int db = 0) const { return sync_client(host_, port_, password_, db); }

    /// SIGKILL, as a crash would: no save, no goodbye.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    /// Starts again on the same port, with an empty data set.
    void restart() {
        kill();
        start();
    }

    /// Starts again on the same port, empty, with these `extra` arguments
    /// instead of the first ones (e.g. as a replica of another server).
    void restart(std::vector<std::string> extra) {
        extra_ = std::move(extra);
        restart();
    }

private:
    redis_server() = default;

    void start() {
        if (external_url_) throw std::runtime_error("cannot start an external redis");
        std::vector<std::string> args{"redis-server",
                                      tls_ ? "--tls-port" : "--port",
                                      std::to_string(port_),
                                      "--bind",
                                      "127.0.0.1",
                                      "--save",
                                      "",
                                      "--appendonly",
                                      "no",
                                      "--notify-keyspace-events",
                                      "Ex",
                                      "--loglevel",
                                      "warning",
                                      "--logfile",
                                      "/dev/null",
                                      // A replica's full sync writes dump.rdb even
                                      // with --save '': not into the working directory.
                                      "--dir",
                                      std::filesystem::temp_directory_path().string()};
        if (tls_) args.insert(args.end(), {"--port", "0"});
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t pid = -1;
        if (posix_spawnp(&pid, "redis-server", nullptr, nullptr, argv.data(), environ) != 0)
            throw std::runtime_error("cannot run redis-server (is it installed?)");
        pid_ = pid;
        // Ready when it answers PING (polling a child process we started,
        // not a stand-in for synchronising with the code under test).
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            if (tls_ && tcp_accepts()) return;
            timeval tv{0, 200000};
            redisContext* c = tls_ ? nullptr : redisConnectWithTimeout(host_.c_str(), port_, tv);
            bool ok = c && !c->err;
            if (ok) {
                auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
                ok = r != nullptr;  // +PONG, or -NOAUTH: either way it serves
                if (r) freeReplyObject(r);
            }
            if (c) redisFree(c);
            if (ok) return;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("redis-server exited at start (port " + std::to_string(port_) + ")");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        throw std::runtime_error("redis-server did not start in 10 s");
    }

    bool tcp_accepts() const {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<std::uint16_t>(port_));
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        return ok;
    }

    std::optional<std::string> external_url_;
    bool tls_ = false;
    std::optional<std::string> password_;
    std::string host_;
    int port_ = 0;
    std::vector<std::string> extra_;
    pid_t pid_ = -1;
};

/// Runs `io` until `done()` holds; false if `timeout` passes first.
inline bool run_until(boost::asio::io_context& io, std::function<bool()> const& done,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto guard = boost::asio::make_work_guard(io);
    while (!done()) {
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return false;
        if (io.stopped()) io.restart();
        io.run_one_for(std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(20)));
    }
    return true;
}

/// Calls `beat` now and every 300 ms while alive, as heartbeats would.
struct heartbeat {
    boost::asio::steady_timer timer;
    std::function<void()> beat;
    heartbeat(boost::asio::io_context& io, std::function<void()> f) : timer(io), beat(std::move(f)) { arm(); }
    void arm() {
        beat();
        timer.expires_after(std::chrono::milliseconds(300));
        timer.async_wait([this](boost::system::error_code ec) {
            if (!ec) arm();
        });
    }
    ~heartbeat() { timer.cancel(); }
};

}  // namespace redis_fixture
