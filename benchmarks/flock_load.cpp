// flock-load: a load generator for flock servers. See `flock-load --help`,
// benchmarks/load/codec.hpp for what a cursor:move carries, and
// docs/benchmarks.md for how the figures are used.
//
// Threads: one per worker (each with its own io_context and an interleaved
// share of the connections) plus this main thread, which runs the phases
// (ramp, warm-up, window, drain), draws the progress line and, once the
// workers have stopped, adds everything up.
#include "load/codec.hpp"
#include "load/options.hpp"
#include "load/report.hpp"
#include "load/stats.hpp"
#include "load/target.hpp"
#include "load/worker.hpp"

#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace load;
namespace bj = boost::json;

// ------------------------------------------------------------ the process

/// Raises the descriptor limit to the hard limit; warns if N will not fit.
void raise_file_limit(std::uint32_t connections) {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    constexpr rlim_t spare = 32;  // stdio, epoll, eventfds, the resolver
    if (lim.rlim_max != RLIM_INFINITY && connections + spare > lim.rlim_max)
        std::fprintf(stderr,
                     "flock-load: warning: %u connections need about %llu descriptors but the hard limit "
                     "(ulimit -Hn) is %llu: connections past it will fail\n",
                     connections, static_cast<unsigned long long>(connections + spare),
                     static_cast<unsigned long long>(lim.rlim_max));
}

double own_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto seconds = [](timeval t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return seconds(u.ru_utime) + seconds(u.ru_stime);
}

/// Another process's CPU seconds (user + system) and resident set.
struct process_sample {
    bool ok = false;
    double cpu_s = 0;
    std::uint64_t rss_kib = 0;
};

process_sample sample_process(int pid) {
    process_sample s;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), {});
    auto const paren = text.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return s;
    std::istringstream fields(text.substr(paren + 2));
    std::string skip;
    for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt: fields 3-13
    double utime = 0, stime = 0;
    fields >> utime >> stime;
    s.cpu_s = (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
        if (line.starts_with("VmRSS:")) s.rss_kib = std::stoull(line.substr(6));
    s.ok = static_cast<bool>(fields);
    return s;
}

/// Starts `sh -c cmd` with FLOCK_WINDOW_SECONDS set; 0 if it could not.
/// The child gets stdio only: holding the run's sockets would keep them open.
pid_t spawn_hook(std::string const& cmd, double window_s) {
    setenv("FLOCK_WINDOW_SECONDS", std::to_string(window_s).c_str(), 1);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    pid_t pid = 0;
    char const* argv[] = {"sh", "-c", cmd.c_str(), nullptr};
    auto const rc = posix_spawn(&pid, "/bin/sh", &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        std::fprintf(stderr, "flock-load: cannot start --on-window command\n");
        return 0;
    }
    return pid;
}

std::string make_run_id() {
    std::random_device rd;
    char buf[16];
    std::snprintf(buf, sizeof buf, "%06x", rd() & 0xffffff);
    return buf;
}

// ------------------------------------------------------------ the run

/// Figures taken at one instant, to subtract over the window.
struct snapshot {
    std::int64_t at_us = 0;
    std::int64_t unix_ms = 0;
    double own_cpu_s = 0;
    std::vector<process_sample> servers;
};

/// The main thread's side of the run: phases and the progress line.
class supervisor {
public:
    supervisor(options const& o, run_clock const& clock, run_control& control,
               std::vector<std::unique_ptr<worker>>& workers)
        : o_(o), clock_(clock), control_(control), workers_(workers) {}

    /// Ramp, warm-up, window, drain; then tells the workers to stop.
    void run() {
        wait_for_ramp();
        auto const now = clock_.now_us();
        auto const start = now + static_cast<std::int64_t>(o_.warmup_s * 1e6);
        auto const end = start + static_cast<std::int64_t>(o_.duration_s * 1e6);
        control_.window_start_us = start;
        control_.window_end_us = end;
        wait_until(start, "warmup");
        window_start = take_snapshot();
        if (!o_.on_window.empty()) hook_ = spawn_hook(o_.on_window, o_.duration_s);
        wait_until(end, "measure");
        window_end = take_snapshot();
        wait_until(end + static_cast<std::int64_t>(o_.drain_s * 1e6), "drain");
        control_.stop = true;
        if (!o_.quiet) std::fputc('\n', stderr);
    }

    /// Reaps the --on-window command (it is expected to have ended).
    void reap_hook() {
        if (hook_ > 0) waitpid(hook_, nullptr, 0);
    }

    snapshot window_start, window_end;

private:
    struct live_totals {
        std::uint64_t open = 0, joined = 0, failed = 0, unsettled = 0, sent = 0, received = 0;
    };

    live_totals totals() {
        live_totals t;
        for (auto& w : workers_) {
            auto& p = w->progress();
            t.open += p.open.load(std::memory_order_relaxed);
            t.joined += p.joined.load(std::memory_order_relaxed);
            t.failed += p.failed.load(std::memory_order_relaxed);
            t.unsettled += p.unsettled.load(std::memory_order_relaxed);
            t.sent += p.sent.load(std::memory_order_relaxed);
            t.received += p.received.load(std::memory_order_relaxed);
        }
        return t;
    }

    /// Until every connection has joined or failed. Deadlines guarantee that,
    /// the cap is a safety net.
    void wait_for_ramp() {
        auto const cap = static_cast<std::int64_t>(
            (o_.connections / o_.ramp_rate + o_.connect_timeout_s + 5) * 1e6);
        while (clock_.now_us() < cap) {
            sleep_step("ramp");
            if (totals().unsettled == 0) return;
        }
    }

    void wait_until(std::int64_t t_us, char const* phase) {
        while (clock_.now_us() < t_us) sleep_step(phase, t_us);
    }

    /// Sleeps up to 100 ms (not past `limit_us`), redrawing the progress line
    /// every second.
    void sleep_step(char const* phase, std::int64_t limit_us = run_control::never) {
        auto const now = clock_.now_us();
        std::this_thread::sleep_until(clock_.at(std::min(now + 100'000, limit_us)));
        if (clock_.now_us() >= next_display_us_) display(phase);
    }

    void display(char const* phase) {
        auto const now = clock_.now_us();
        auto const t = totals();
        histogram recent;
        for (auto& w : workers_) {
            auto& p = w->progress();
            std::lock_guard lock(p.mutex);
            recent.merge(p.recent_latency);
            p.recent_latency.clear();
        }
        auto const cpu = own_cpu_seconds();
        auto const dt = static_cast<double>(now - last_display_us_) / 1e6;
        if (!o_.quiet && last_display_us_ > 0)
            std::fprintf(stderr,
                         "\r%-7s %5.0fs | conns %llu open, %llu joined, %llu failed | sent %.0f/s | recv %.0f/s "
                         "| p99 %.2f ms | cpu %.0f%%   ",
                         phase, static_cast<double>(now) / 1e6, static_cast<unsigned long long>(t.open),
                         static_cast<unsigned long long>(t.joined), static_cast<unsigned long long>(t.failed),
                         static_cast<double>(t.sent - last_.sent) / dt,
                         static_cast<double>(t.received - last_.received) / dt,
                         ms(recent.percentile(0.99)), (cpu - last_cpu_s_) / dt * 100);
        last_ = t;
        last_cpu_s_ = cpu;
        last_display_us_ = now;
        next_display_us_ = now + 1'000'000;
    }

    snapshot take_snapshot() const {
        snapshot s;
        s.at_us = clock_.now_us();
        s.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
        s.own_cpu_s = own_cpu_seconds();
        for (int pid : o_.server_pids) s.servers.push_back(sample_process(pid));
        return s;
    }

    options const& o_;
    run_clock const& clock_;
    run_control& control_;
    std::vector<std::unique_ptr<worker>>& workers_;
    live_totals last_;
    double last_cpu_s_ = 0;
    std::int64_t last_display_us_ = 0;
    std::int64_t next_display_us_ = 0;
    pid_t hook_ = 0;
};

// ------------------------------------------------------------ the results

struct delivery_tally {
    std::uint64_t receivers = 0;  ///< checked connections joined before the window
    std::uint64_t expected = 0;
    std::uint64_t delivered = 0;
    std::uint64_t moves_in_window = 0;
    std::uint64_t joined_at_start = 0;
};

/// Expected = for each checked receiver joined before the window, the moves
/// its room peers (also joined by then) sent in the window; delivered = the
/// unique ones of those that arrived, whenever they arrived before the end.
delivery_tally tally_delivery(std::vector<std::unique_ptr<worker>> const& workers, std::uint32_t n,
                              std::int64_t window_start) {
    std::vector<connection const*> by_id(n);
    for (auto const& w : workers)
        for (auto const& c : w->connections())
            if (!c->churner()) by_id[c->id()] = c.get();
    delivery_tally d;
    for (auto const* c : by_id) {
        if (!c->joined_before(window_start)) continue;
        ++d.joined_at_start;
        d.moves_in_window += c->moves_in_window();
        if (!c->checked()) continue;
        ++d.receivers;
        for (std::uint32_t slot = 0; slot < c->room_members(); ++slot) {
            auto const* peer = by_id[c->room_base() + slot];
            if (slot == c->slot() || !peer->joined_before(window_start)) continue;
            d.expected += peer->moves_in_window();
            d.delivered += c->delivered_from(slot);
        }
    }
    return d;
}

template <class Map>
bj::object to_object(Map const& m) {
    bj::object o;
    for (auto const& [k, v] : m) {
        if constexpr (std::is_integral_v<std::decay_t<decltype(k)>>) o[std::to_string(k)] = v;
        else o[k] = v;
    }
    return o;
}

bj::object make_result(options const& o, worker_stats const& s,
                       delivery_tally const& d, supervisor const& sup) {
    auto const window_s = static_cast<double>(sup.window_end.at_us - sup.window_start.at_us) / 1e6;
    auto const per_s = [&](std::uint64_t v) { return rounded(static_cast<double>(v) / window_s, 1); };
    bj::array urls;
    for (auto const& u : o.urls) urls.emplace_back(u);
    bj::object by_type;
    for (std::size_t i = 0; i < msg_type_count; ++i) by_type[msg_type_names[i]] = s.by_type[i];
    auto const ratio = d.expected ? static_cast<double>(d.delivered) / static_cast<double>(d.expected) : 0.0;
    auto const cpu_cores = (sup.window_end.own_cpu_s - sup.window_start.own_cpu_s) / window_s;
    bj::array servers;
    for (std::size_t i = 0; i < o.server_pids.size(); ++i) {
        auto const& a = sup.window_start.servers[i];
        auto const& b = sup.window_end.servers[i];
        servers.push_back(bj::object{{"pid", o.server_pids[i]},
                                     {"ok", a.ok && b.ok},
                                     {"cpu_cores", rounded((b.cpu_s - a.cpu_s) / window_s, 3)},
                                     {"rss_kib_window_start", a.rss_kib},
                                     {"rss_kib_window_end", b.rss_kib}});
    }
    auto const hb_acks = s.by_type[static_cast<std::size_t>(msg_type::heartbeat_ack)];
    return bj::object{
        {"label", o.label},
        {"params",
         {{"urls", urls},
          {"connections", o.connections},
          {"room_size", o.room_size},
          {"hz", o.idle ? 0.0 : o.hz},
          {"idle", o.idle},
          {"heartbeat_s", o.heartbeat_s},
          {"ramp_rate", o.ramp_rate},
          {"warmup_s", o.warmup_s},
          {"duration_s", o.duration_s},
          {"drain_s", o.drain_s},
          {"threads", o.threads},
          {"sample", o.sample},
          {"codec", o.codec},
          {"phase", o.lockstep ? "lockstep" : "random"},
          {"seed", o.seed},
          {"churn", o.churn},
          {"churn_period_s", o.churn_period_s}}},
        {"churn",
         {{"joins", s.churn_joins}, {"leaves", s.churn_leaves}, {"failures", to_object(s.churn_failures)}}},
        {"connections",
         {{"attempted", o.connections},
          {"upgraded", s.upgraded},
          {"joined", s.join_time.count()},
          {"joined_at_window_start", d.joined_at_start},
          {"failed", o.connections - s.join_time.count()},
          {"failures", to_object(s.failures)},
          {"disconnects", to_object(s.disconnects)}}},
        {"join_ms", percentiles_ms(s.join_time)},
        {"window",
         {{"seconds", rounded(window_s, 3)},
          {"start_unix_ms", sup.window_start.unix_ms},
          {"end_unix_ms", sup.window_end.unix_ms}}},
        {"sent",
         {{"moves", s.moves_sent},
          {"moves_in_window", d.moves_in_window},
          {"moves_per_s", per_s(d.moves_in_window)},
          {"heartbeats", s.heartbeats_sent}}},
        {"received",
         {{"frames", s.frames_received},
          {"frames_in_window", s.frames_in_window},
          {"frames_per_s", per_s(s.frames_in_window)},
          {"bytes_per_s", per_s(s.bytes_in_window)},
          {"by_type", by_type}}},
        {"delivery",
         {{"checked_receivers", d.receivers},
          {"expected", d.expected},
          {"delivered", d.delivered},
          {"ratio", rounded(ratio, 6)},
          {"duplicates", s.duplicates},
          {"gaps", s.gaps},
          {"late", s.late},
          {"unexpected_sender", s.unexpected_sender},
          {"unparsed", s.unparsed}}},
        {"latency_ms", percentiles_ms(s.latency)},
        {"latency_ms_cross_instance", percentiles_ms(s.latency_cross)},
        {"heartbeats", {{"sent", s.heartbeats_sent}, {"acked", hb_acks}}},
        {"close_codes", to_object(s.close_codes)},
        {"errors", to_object(s.errors)},
        {"generator",
         {{"threads", o.threads},
          {"cpu_cores", rounded(cpu_cores, 3)},
          {"cpu_per_thread", rounded(cpu_cores / o.threads, 3)}}},
        {"servers", servers}};
}

std::uint64_t cross_count(bj::object const& r) {
    return r.at("latency_ms_cross_instance").at("count").to_number<std::uint64_t>();
}

/// --gaps-file: per checked receiver with peers on another URL, its longest
/// silence between two cross-instance moves read in the window.
bool write_gaps(std::string const& path, std::vector<std::unique_ptr<worker>> const& workers,
                snapshot const& start, std::int64_t window_end_us) {
    std::ofstream f(path);
    f << "receiver,start_unix_ms,end_unix_ms,end_sent_unix_ms\n";
    auto unix_ms = [&](std::int64_t us) {
        return us < 0 ? std::string() : std::to_string(start.unix_ms + (us - start.at_us) / 1000);
    };
    for (auto const& w : workers)
        for (auto const& c : w->connections()) {
            if (!c->checked() || c->room_members() < 2) continue;
            auto const g = c->longest_cross_gap(window_end_us);
            if (g.start_us < 0) continue;  // no cross-instance move read in the window
            f << c->id() << ',' << unix_ms(g.start_us) << ',' << unix_ms(g.end_us) << ','
              << unix_ms(g.end_sent_us) << '\n';
        }
    return static_cast<bool>(f);
}

std::string markdown_summary(bj::object const& r) {
    auto num = [](bj::value const& v) {
        std::string out;
        write_json(out, v);
        return out;
    };
    auto const& p = r.at("params").as_object();
    auto const& c = r.at("connections").as_object();
    auto const& d = r.at("delivery").as_object();
    auto const& l = r.at("latency_ms").as_object();
    auto const& j = r.at("join_ms").as_object();
    auto const& g = r.at("generator").as_object();
    std::string md = "| figure | value |\n|---|---|\n";
    auto row = [&](std::string_view name, std::string const& value) {
        md.append("| ").append(name).append(" | ").append(value).append(" |\n");
    };
    if (!r.at("label").as_string().empty()) row("run", std::string(r.at("label").as_string()));
    row("target", num(p.at("urls")) + ", codec " + std::string(p.at("codec").as_string()));
    row("connections", num(c.at("joined")) + " joined of " + num(c.at("attempted")) + " (" + num(c.at("failed")) +
                           " failed), rooms of " + num(p.at("room_size")));
    row("traffic", num(p.at("hz")) + " Hz per user: " + num(r.at("sent").at("moves_per_s")) + " moves/s sent, " +
                       num(r.at("received").at("frames_per_s")) + " frames/s received");
    row("delivery ratio", num(d.at("ratio")) + " (" + num(d.at("delivered")) + " of " + num(d.at("expected")) + "; " +
                              num(d.at("duplicates")) + " duplicates, " + num(d.at("gaps")) + " gaps)");
    row("latency p50 / p90 / p99 / p99.9 / max", num(l.at("p50")) + " / " + num(l.at("p90")) + " / " +
                                                     num(l.at("p99")) + " / " + num(l.at("p99_9")) + " / " +
                                                     num(l.at("max")) + " ms");
    if (cross_count(r) > 0) {
        auto const& x = r.at("latency_ms_cross_instance").as_object();
        row("cross-instance latency p50 / p99 / max",
            num(x.at("p50")) + " / " + num(x.at("p99")) + " / " + num(x.at("max")) + " ms");
    }
    row("join time p50 / p99 / max", num(j.at("p50")) + " / " + num(j.at("p99")) + " / " + num(j.at("max")) + " ms");
    row("close codes received", num(r.at("close_codes")));
    row("generator CPU", num(g.at("cpu_cores")) + " cores over " + num(g.at("threads")) + " threads");
    for (auto const& s : r.at("servers").as_array())
        row("server " + num(s.at("pid")), num(s.at("cpu_cores")) + " cores, RSS " +
                                              num(s.at("rss_kib_window_end")) + " KiB at the window end");
    return md;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    try {
        o = parse_options(argc, argv);
    } catch (std::exception const& e) {
        std::fprintf(stderr, "flock-load: %s\n\n%s", e.what(), usage);
        return 2;
    }
    if (o.help) {
        std::fputs(usage, stdout);
        return 0;
    }
    std::string error;
    auto const wire = make_codec(o.codec, error);
    if (!wire) {
        std::fprintf(stderr, "flock-load: %s\n", error.c_str());
        return 2;
    }
    std::vector<target> targets;
    try {
        for (auto const& u : o.urls) targets.push_back(resolve_target(u));
    } catch (std::exception const& e) {
        std::fprintf(stderr, "flock-load: %s\n", e.what());
        return 2;
    }
    raise_file_limit(o.connections + o.churn);

    run_clock clock;
    run_control control;
    run_config const cfg{o, *wire, targets, make_run_id(), clock, control};
    std::vector<std::unique_ptr<worker>> workers;
    for (unsigned t = 0; t < o.threads; ++t) {
        std::vector<std::uint32_t> ids;
        for (std::uint32_t id = t; id < o.connections + o.churn; id += o.threads) ids.push_back(id);
        workers.push_back(std::make_unique<worker>(cfg, t, ids));
    }
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
    // Under a real-time policy (benchmarks/run with FLOCK_CHRT), a saturated
    // worker would never yield to this thread, which times the window: put
    // it one priority above the workers.
    if (int const policy = sched_getscheduler(0); policy == SCHED_FIFO || policy == SCHED_RR) {
        sched_param p{};
        sched_getparam(0, &p);
        p.sched_priority = std::min(p.sched_priority + 1, sched_get_priority_max(policy));
        pthread_setschedparam(pthread_self(), policy, &p);
    }

    supervisor sup(o, clock, control, workers);
    sup.run();
    for (auto& t : threads) t.join();
    sup.reap_hook();

    worker_stats total;
    for (auto const& w : workers) total.merge(w->stats());
    auto const delivery = tally_delivery(workers, o.connections, control.window_start_us.load());
    auto const result = make_result(o, total, delivery, sup);
    std::string json;
    write_json(json, result);
    std::cout << json << '\n';
    if (!o.gaps_file.empty() && !write_gaps(o.gaps_file, workers, sup.window_start, control.window_end_us.load())) {
        std::fprintf(stderr, "flock-load: cannot write %s\n", o.gaps_file.c_str());
        return 1;
    }
    if (!o.markdown.empty()) {
        std::ofstream md(o.markdown);
        md << markdown_summary(result);
        if (!md) {
            std::fprintf(stderr, "flock-load: cannot write %s\n", o.markdown.c_str());
            return 1;
        }
    }
    return 0;
}
