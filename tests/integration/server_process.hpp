// A flock-server child process for end-to-end tests: started with posix_spawn
// and a chosen environment, its stderr (the log) read line by line on a
// thread of its own, so a test can wait for a log line with a deadline
// ("flock-server started ... port=N", "redis connected", ...).
//
//     auto bin = flk::test::flock_server_binary();       // nullopt: not configured
//     flk::test::server_process s(*bin, {{"FLOCK_REDIS_URL", url}, {"FLOCK_THREADS", "1"}});
//     std::uint16_t port = s.port();                      // from the "started" line
//     BOOST_TEST(s.wait_for_lines("redis connected", 1, 10s));
//     s.kill(SIGKILL);                                    // a crash
//
// Where the binary comes from: the environment variable FLOCK_SERVER_BIN,
// else the compile definition FLOCK_SERVER_BIN_DEFAULT (the build system sets
// it to $<TARGET_FILE:flock-server>). With neither, tests that need it are
// skipped with a line on stderr, or fail under FLOCK_TEST_STRICT=1.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace flk::test {

/// The flock-server executable to run, if one is configured and executable.
inline std::optional<std::string> flock_server_binary() {
    std::string path;
    if (char const* e = std::getenv("FLOCK_SERVER_BIN"); e && *e) path = e;
#ifdef FLOCK_SERVER_BIN_DEFAULT
    else path = FLOCK_SERVER_BIN_DEFAULT;
#endif
    if (path.empty() || ::access(path.c_str(), X_OK) != 0) return std::nullopt;
    return path;
}

/// True when FLOCK_TEST_STRICT is set to anything but "" or "0" (as
/// tests/strict.hpp reads it): a missing prerequisite fails instead of skipping.
inline bool strict_mode() {
    char const* s = std::getenv("FLOCK_TEST_STRICT");
    return s && *s && std::string_view(s) != "0";
}

/// Whether `program` is an executable file in a directory of PATH.
inline bool on_path(std::string_view program) {
    char const* path = std::getenv("PATH");
    if (!path) return false;
    std::string_view rest(path);
    while (!rest.empty()) {
        auto const colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        if (dir.empty()) dir = ".";
        if (::access((dir + "/" + std::string(program)).c_str(), X_OK) == 0) return true;
    }
    return false;
}

/// A running flock-server. The destructor stops it (SIGTERM, then SIGKILL
/// after 10 s) and reaps it.
class server_process {
public:
    using env_map = std::map<std::string, std::string>;

    /// Starts `binary` with the caller's environment minus every FLOCK_*
    /// variable, plus `env`. Waits for the "flock-server started" line and
    /// throws (with the log so far) when it does not come within `timeout`.
    server_process(std::string const& binary, env_map const& env,
                   std::chrono::milliseconds timeout = std::chrono::seconds(20), std::string name = "flock-server")
        : name_(std::move(name)) {
        std::vector<std::string> envs;
        for (char** e = environ; e && *e; ++e)
            if (std::strncmp(*e, "FLOCK_", 6) != 0) envs.emplace_back(*e);
        for (auto const& [k, v] : env) envs.push_back(k + "=" + v);
        std::vector<char*> envp;
        for (auto& s : envs) envp.push_back(s.data());
        envp.push_back(nullptr);

        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("server_process: pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        std::string bin = binary;
        char* argv[] = {bin.data(), nullptr};
        pid_t pid = -1;
        int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv, envp.data());
        posix_spawn_file_actions_destroy(&fa);
        ::close(fds[1]);
        if (rc != 0) {
            ::close(fds[0]);
            throw std::runtime_error("server_process: cannot run " + binary + ": " + std::strerror(rc));
        }
        pid_ = pid;
        reader_ = std::thread([this, fd = fds[0]] { read_lines(fd); });

        auto line = wait_for_line("msg=\"flock-server started\"", timeout);
        if (!line) {
            auto log = this->log();
            stop();
            throw std::runtime_error("server_process: " + name_ + " did not start within " +
                                     std::to_string(timeout.count()) + " ms; its log:\n" + log);
        }
        auto p = line->find(" port=");
        if (p == std::string::npos) throw std::runtime_error("server_process: no port in: " + *line);
        port_ = static_cast<std::uint16_t>(std::stoi(line->substr(p + 6)));
    }

    server_process(server_process const&) = delete;
    server_process& operator=(server_process const&) = delete;

    ~server_process() { stop(); }

    std::uint16_t port() const noexcept { return port_; }
    pid_t pid() const noexcept { return pid_; }
    std::string const& name() const noexcept { return name_; }

    /// Sends `sig`; with SIGKILL also reaps the child (a crash: no goodbye).
    void kill(int sig) {
        if (pid_ <= 0) return;
        ::kill(pid_, sig);
        if (sig == SIGKILL) reap(std::chrono::seconds(10));
    }

    /// SIGTERM (graceful stop), SIGKILL if still there after `grace`; reaps.
    /// True when it exited by itself within `grace` (or had already been reaped).
    bool stop(std::chrono::milliseconds grace = std::chrono::seconds(10)) {
        bool clean = true;
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            if (!reap(grace)) {
                clean = false;
                ::kill(pid_, SIGKILL);
                reap(std::chrono::seconds(10));
            }
        }
        if (reader_.joinable()) reader_.join();
        return clean;
    }

    /// The exit status as waitpid() gave it, once reaped.
    std::optional<int> exit_status() const { return status_; }

    /// The first log line (from the start) containing `needle`, once it exists.
    std::optional<std::string> wait_for_line(std::string_view needle, std::chrono::milliseconds timeout) {
        std::optional<std::string> found;
        wait_for([&] {
            for (auto const& l : lines_)
                if (l.find(needle) != std::string::npos) {
                    found = l;
                    return true;
                }
            return false;
        }, timeout);
        return found;
    }

    /// True once at least `n` log lines contain `needle`.
    bool wait_for_lines(std::string_view needle, std::size_t n, std::chrono::milliseconds timeout) {
        return wait_for([&] { return count_locked(needle) >= n; }, timeout);
    }

    std::size_t count_lines(std::string_view needle) {
        std::lock_guard lk(mu_);
        return count_locked(needle);
    }

    /// Everything logged so far.
    std::string log() {
        std::lock_guard lk(mu_);
        std::string out;
        for (auto const& l : lines_) out += "  [" + name_ + "] " + l + '\n';
        return out;
    }

private:
    std::size_t count_locked(std::string_view needle) const {
        std::size_t n = 0;
        for (auto const& l : lines_)
            if (l.find(needle) != std::string::npos) ++n;
        return n;
    }

    template <class Pred>
    bool wait_for(Pred pred, std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return pred() || eof_; }) && pred();
    }

    void read_lines(int fd) {
        std::string partial;
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            partial.append(buf, static_cast<std::size_t>(n));
            std::size_t nl;
            while ((nl = partial.find('\n')) != std::string::npos) {
                {
                    std::lock_guard lk(mu_);
                    lines_.push_back(partial.substr(0, nl));
                }
                partial.erase(0, nl + 1);
                cv_.notify_all();
            }
        }
        ::close(fd);
        std::lock_guard lk(mu_);
        if (!partial.empty()) lines_.push_back(partial);
        eof_ = true;
        cv_.notify_all();
    }

    // Waits for the child to exit (waitpid has no timeout: poll it, a child
    // process of ours, every 10 ms).
    bool reap(std::chrono::milliseconds timeout) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            int status = 0;
            pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_ || (r < 0 && errno == ECHILD)) {
                status_ = status;
                pid_ = -1;
                return true;
            }
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    std::string name_;
    pid_t pid_ = -1;
    std::uint16_t port_ = 0;
    std::optional<int> status_;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
    bool eof_ = false;
};

}  // namespace flk::test
