// Structured log lines: `ts=... level=info msg="..." key=value ...`.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace flk {

enum class log_level { trace, debug, info, warn, error, silent };

constexpr std::string_view to_string(log_level l) noexcept {
    switch (l) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::silent: return "silent";
    }
    return "info";
}

constexpr std::optional<log_level> log_level_from_string(std::string_view s) noexcept {
    for (auto l : {log_level::trace, log_level::debug, log_level::info, log_level::warn,
                   log_level::error, log_level::silent})
        if (to_string(l) == s) return l;
    return std::nullopt;
}

/// One `key=value` pair of a log line. Values are quoted when they need it.
struct log_field {
    std::string_view key;
    std::string value;
    log_field(std::string_view k, std::string_view v) : key(k), value(v) {}
    log_field(std::string_view k, char const* v) : key(k), value(v) {}
    log_field(std::string_view k, std::string const& v) : key(k), value(v) {}
    template <class N>
        requires std::is_arithmetic_v<N>
    log_field(std::string_view k, N n) : key(k), value(std::to_string(n)) {}
};

/// A cheap, copyable logger: a level and a sink for finished lines.
class logger {
public:
    using sink_type = std::function<void(log_level, std::string_view line)>;

    logger() = default;
    explicit logger(log_level level, sink_type sink = {}) : level_(level), sink_(std::move(sink)) {}

    /// This logger, adding `key=value` to every line it writes (after the
    /// line's own fields): `shard=1` on each line of a sharded_server's shard.
    logger with(std::string_view key, std::string_view value) const {
        logger l = *this;
        l.context_ += ' ';
        l.context_ += key;
        l.context_ += '=';
        append_value(l.context_, value);
        return l;
    }

    log_level level() const noexcept { return level_; }
    bool enabled(log_level l) const noexcept { return l >= level_ && l != log_level::silent; }

    void operator()(log_level l, std::string_view msg, std::initializer_list<log_field> fields = {}) const {
        if (!enabled(l)) return;
        std::string line;
        line.reserve(96);
        line += "ts=";
        line += timestamp();
        line += " level=";
        line += to_string(l);
        line += " msg=";
        append_value(line, msg);
        for (auto const& f : fields) {
            line += ' ';
            line += f.key;
            line += '=';
            append_value(line, f.value);
        }
        line += context_;
        if (sink_) {
            sink_(l, line);
        } else {
            line += '\n';
            std::fwrite(line.data(), 1, line.size(), stderr);
        }
    }

    void trace(std::string_view m, std::initializer_list<log_field> f = {}) const { (*this)(log_level::trace, m, f); }
    void debug(std::string_view m, std::initializer_list<log_field> f = {}) const { (*this)(log_level::debug, m, f); }
    void info(std::string_view m, std::initializer_list<log_field> f = {}) const { (*this)(log_level::info, m, f); }
    void warn(std::string_view m, std::initializer_list<log_field> f = {}) const { (*this)(log_level::warn, m, f); }
    void error(std::string_view m, std::initializer_list<log_field> f = {}) const { (*this)(log_level::error, m, f); }

private:
    static std::string timestamp() {
        auto now = std::chrono::system_clock::now();
        auto t = std::chrono::system_clock::to_time_t(now);
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
        std::tm tm{};
        gmtime_r(&t, &tm);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms));
        return buf;
    }

    // Quote values holding spaces, quotes, '=' or control characters so a line
    // stays one line and splits unambiguously, whatever a client put in an id.
    static void append_value(std::string& out, std::string_view v) {
        bool plain = !v.empty();
        for (unsigned char c : v)
            if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) { plain = false; break; }
        if (plain) { out += v; return; }
        out += '"';
        for (unsigned char c : v) {
            if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
            else if (c == '\n') out += "\\n";
            else if (c < ' ' || c == 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02x", c);
                out += buf;
            } else out += char(c);
        }
        out += '"';
    }

    log_level level_ = log_level::info;
    sink_type sink_;
    std::string context_;  // " key=value..." added to every line
};

}  // namespace flk
