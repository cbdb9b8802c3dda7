// flock-load's command line.
#pragma once

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace load {

inline constexpr char const* usage = R"(usage: flock-load [options]

Opens N WebSocket connections to a flock server in rooms of R users; each user
sends cursor:move at H Hz and a heartbeat every 10 s. Each user's moves keep a
phase of their own in the send period, drawn at random (--phase random), as
real users' do; --phase lockstep is the best case, where a room's members send
one right after another and the server can batch a room's fan-out.
After the ramp and a warm-up it measures a steady window, then prints a JSON
result on stdout. A cursor:move carries x = sequence number, y = send time in
µs since the run start, which receivers use for latency, duplicates and gaps.

  --url URL              ws://host:port/path; repeat for a cluster (room members
                         are spread round-robin over the URLs)   [ws://127.0.0.1:8787/]
  --connections N        connections to open                      [100]
  --room-size R          users per room                           [10]
  --hz H                 cursor moves per second per user         [10]
  --phase random|lockstep
                         random: each user's phase in the send period is drawn
                         from --seed (real users); lockstep: connection k of a
                         worker's n sends at k/n of the period, so the members
                         of a room send together (a best case)   [random]
  --seed S               seed of the random phases                [1]
  --churn C              C more users, in rooms of their own, that connect,
                         join, move, leave and disconnect over and over (not
                         counted in delivery or latency)          [0]
  --churn-period S       seconds a churning user stays joined     [5]
  --idle                 join and heartbeat only, no cursor moves
  --heartbeat S          heartbeat interval per user, seconds     [10]
  --ramp-rate R          connections opened per second            [500]
  --warmup S             seconds between the ramp and the window  [2]
  --duration S           measurement window, seconds              [10]
  --drain S              seconds to wait for in-flight messages   [2]
  --threads T            worker threads [CPUs in the affinity mask when it is
                         a subset of the machine, else all CPUs minus one]
  --sample F             fraction of connections whose messages are checked
                         for latency, duplicates and gaps (frames are counted
                         on all)                                  [1]
  --codec json|binary    wire encoding (binary: subprotocol flock.binary.v2) [json]
  --markdown FILE        also write a Markdown summary to FILE
  --gaps-file FILE       with several --url: write, per checked receiver that
                         has room peers on another URL, the longest silence
                         between two of their moves read in the window, as
                         CSV: receiver,start_unix_ms,end_unix_ms,end_sent_unix_ms
                         (the reads around the silence, and when the move that
                         ended it was sent; end empty: none came before the
                         window closed). Cross-instance latency is reported
                         apart (latency_ms_cross_instance) either way
  --label TEXT           a name for this run, copied into the results
  --server-pid PID       also report this process's CPU and RSS over the window
                         (repeatable)
  --on-window CMD        run `sh -c CMD` when the window opens (e.g. perf stat);
                         FLOCK_WINDOW_SECONDS is set for it
  --connect-timeout S    connect + upgrade + join deadline        [10]
  --quiet                no progress line on stderr
  --help
)";

struct options {
    std::vector<std::string> urls;
    std::uint32_t connections = 100;
    std::uint32_t room_size = 10;
    double hz = 10;
    bool idle = false;
    bool lockstep = false;
    std::uint64_t seed = 1;
    std::uint32_t churn = 0;
    double churn_period_s = 5;
    double heartbeat_s = 10;
    double ramp_rate = 500;
    double warmup_s = 2;
    double duration_s = 10;
    double drain_s = 2;
    unsigned threads = 0;
    double sample = 1;
    std::string codec = "json";
    std::string markdown;
    std::string gaps_file;
    std::string label;
    std::vector<int> server_pids;
    std::string on_window;
    double connect_timeout_s = 10;
    bool quiet = false;
    bool help = false;
};

/// One worker per CPU the generator may use: under `taskset -c 1` that is
/// one; without pinning, every CPU but one, left to the server.
inline unsigned default_threads() {
    unsigned const all = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        auto const mine = static_cast<unsigned>(CPU_COUNT(&set));
        if (mine < all) return std::max(1u, mine);
    }
    return std::max(1u, all - 1);
}

namespace detail {

template <class T>
T number(std::string_view flag, std::string_view text) {
    T v{};
    auto const r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec != std::errc{} || r.ptr != text.data() + text.size())
        throw std::invalid_argument(std::string(flag) + ": not a number: '" + std::string(text) + "'");
    return v;
}

inline void check(bool ok, std::string_view what) {
    if (!ok) throw std::invalid_argument(std::string(what));
}

}  // namespace detail

/// Parses `--flag value` and `--flag=value`; throws std::invalid_argument.
inline options parse_options(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string_view value;
        bool has_value = false;
        if (auto const eq = arg.find('='); eq != std::string_view::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_value = true;
        }
        auto next = [&]() -> std::string_view {
            if (has_value) return value;
            if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
            return argv[++i];
        };
        using detail::number;
        if (arg == "--url") o.urls.emplace_back(next());
        else if (arg == "--connections") o.connections = number<std::uint32_t>(arg, next());
        else if (arg == "--room-size") o.room_size = number<std::uint32_t>(arg, next());
        else if (arg == "--hz") o.hz = number<double>(arg, next());
        else if (arg == "--idle") o.idle = true;
        else if (arg == "--phase") {
            auto const v = next();
            if (v != "random" && v != "lockstep") throw std::invalid_argument("--phase must be random or lockstep");
            o.lockstep = v == "lockstep";
        }
        else if (arg == "--seed") o.seed = number<std::uint64_t>(arg, next());
        else if (arg == "--churn") o.churn = number<std::uint32_t>(arg, next());
        else if (arg == "--churn-period") o.churn_period_s = number<double>(arg, next());
        else if (arg == "--heartbeat") o.heartbeat_s = number<double>(arg, next());
        else if (arg == "--ramp-rate") o.ramp_rate = number<double>(arg, next());
        else if (arg == "--warmup") o.warmup_s = number<double>(arg, next());
        else if (arg == "--duration") o.duration_s = number<double>(arg, next());
        else if (arg == "--drain") o.drain_s = number<double>(arg, next());
        else if (arg == "--threads") o.threads = number<unsigned>(arg, next());
        else if (arg == "--sample") o.sample = number<double>(arg, next());
        else if (arg == "--codec") o.codec = next();
        else if (arg == "--markdown") o.markdown = next();
        else if (arg == "--gaps-file") o.gaps_file = next();
        else if (arg == "--label") o.label = next();
        else if (arg == "--server-pid") o.server_pids.push_back(number<int>(arg, next()));
        else if (arg == "--on-window") o.on_window = next();
        else if (arg == "--connect-timeout") o.connect_timeout_s = number<double>(arg, next());
        else if (arg == "--quiet") o.quiet = true;
        else if (arg == "--help" || arg == "-h") o.help = true;
        else throw std::invalid_argument("unknown option " + std::string(arg));
    }
    if (o.urls.empty()) o.urls.emplace_back("ws://127.0.0.1:8787/");
    if (o.threads == 0) o.threads = default_threads();
    using detail::check;
    check(o.connections > 0, "--connections must be at least 1");
    check(o.room_size >= 1, "--room-size must be at least 1");
    check(o.hz > 0 && o.hz <= 1000, "--hz must be in (0, 1000]");
    check(o.heartbeat_s > 0, "--heartbeat must be positive");
    check(o.ramp_rate > 0, "--ramp-rate must be positive");
    check(o.duration_s > 0 && o.warmup_s >= 0 && o.drain_s >= 0, "--duration must be positive, --warmup and --drain not negative");
    check(o.sample > 0 && o.sample <= 1, "--sample must be in (0, 1]");
    check(o.connect_timeout_s > 0, "--connect-timeout must be positive");
    check(o.churn_period_s > 0, "--churn-period must be positive");
    o.threads = std::min(o.threads, o.connections + o.churn);
    return o;
}

}  // namespace load
