// Parsing of FLOCK_REDIS_URL: `redis://[[user]:password@]host[:port][/db]`
// and `rediss://...` (TLS); and, for Redis Sentinel,
// `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]`
// (`rediss+sentinel://` with TLS): the sentinels to ask, in order (port 26379
// by default), and the master's name; the user, password and db are the
// master's. No I/O, no hiredis: unit-testable on its own.
#pragma once

#include <flock/options.hpp>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace flk::detail::redis {

/// A host and a port.
struct endpoint {
    std::string host;  ///< a name or an address; IPv6 without brackets
    std::uint16_t port = 0;

    /// host:port, [v6]:port.
    std::string text() const {
        auto h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
        return h + ":" + std::to_string(port);
    }
    friend bool operator==(endpoint const&, endpoint const&) = default;
};

/// Where and how to reach Redis.
struct url {
    bool tls = false;                     ///< rediss://
    std::string host;                     ///< a name or an address; IPv6 without brackets
    std::uint16_t port = 6379;
    std::optional<std::string> user;      ///< ACL user (AUTH user password)
    std::optional<std::string> password;  ///< AUTH password
    int db = 0;                           ///< SELECT db
    /// redis+sentinel://: the sentinels to ask for the master, in order;
    /// empty for a plain URL. `host` and `port` are then unused.
    std::vector<endpoint> sentinels;
    std::string master_name;  ///< redis+sentinel://: the name the sentinels monitor

    bool sentinel() const noexcept { return !sentinels.empty(); }

    /// This URL's credentials, TLS and db, aimed at one server (a master the
    /// sentinels named, or a sentinel).
    url at(endpoint const& e) const {
        url u = *this;
        u.sentinels.clear();
        u.master_name.clear();
        u.host = e.host;
        u.port = e.port;
        return u;
    }

    /// The URL without its password, safe to log.
    std::string redacted() const {
        std::string s = tls ? "rediss" : "redis";
        s += sentinel() ? "+sentinel://" : "://";
        if (user || password) {
            if (user) s += *user;
            if (password) s += ":***";
            s += '@';
        }
        if (sentinel()) {
            for (std::size_t i = 0; i < sentinels.size(); ++i) {
                if (i) s += ',';
                s += sentinels[i].text();
            }
            s += '/';
            s += master_name;
        } else {
            s += endpoint{host, port}.text();
        }
        if (db != 0) {
            s += '/';
            s += std::to_string(db);
        }
        return s;
    }
};

namespace url_detail {

inline int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// %XX decoding of the userinfo part (a password may hold '@', ':' or '/').
inline std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size()) return std::nullopt;
        int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

[[noreturn]] inline void fail(std::string_view why) {
    std::string m = "FLOCK_REDIS_URL ";
    m += why;
    m += " (expected redis://[user:password@]host:port[/db], rediss://..., or "
         "redis+sentinel://[user:password@]host:port[,host:port...]/master[/db])";
    throw config_error(m);
}

}  // namespace url_detail

/// Parses one `host[:port]` or `[v6][:port]`.
inline endpoint parse_host_port(std::string_view authority, std::uint16_t default_port) {
    using url_detail::fail;
    endpoint e;
    e.port = default_port;
    std::string_view port_text;
    if (authority.starts_with('[')) {
        auto close = authority.find(']');
        if (close == std::string_view::npos) fail("has an unterminated [IPv6] host");
        e.host = std::string(authority.substr(1, close - 1));
        auto rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') fail("has text after the [IPv6] host");
            port_text = rest.substr(1);
            if (port_text.empty()) fail("has an empty port");
        }
    } else {
        auto colon = authority.rfind(':');
        if (colon != std::string_view::npos) {
            if (authority.find(':') != colon) fail("has an IPv6 host without [brackets]");
            port_text = authority.substr(colon + 1);
            authority = authority.substr(0, colon);
            if (port_text.empty()) fail("has an empty port");
        }
        e.host = std::string(authority);
    }
    if (e.host.empty()) fail("has no host");
    for (char c : e.host)
        if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '@' || c == ',') fail("has an invalid host");

    if (!port_text.empty()) {
        unsigned v = 0;
        auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
        if (ec != std::errc() || end != port_text.data() + port_text.size() || v == 0 || v > 65535)
            fail("has an invalid port");
        e.port = static_cast<std::uint16_t>(v);
    }
    return e;
}

/// Parses a Redis URL. Throws config_error (naming FLOCK_REDIS_URL, never
/// echoing the password) when it cannot be used.
inline url parse_url(std::string_view text) {
    using url_detail::fail;
    url u;
    bool sentinel = false;
    for (auto [scheme, tls, sent] : {std::tuple{std::string_view("redis://"), false, false},
                                     std::tuple{std::string_view("rediss://"), true, false},
                                     std::tuple{std::string_view("redis+sentinel://"), false, true},
                                     std::tuple{std::string_view("rediss+sentinel://"), true, true}}) {
        if (text.starts_with(scheme)) {
            text.remove_prefix(scheme.size());
            u.tls = tls;
            sentinel = sent;
            break;
        }
        if (scheme == "rediss+sentinel://")
            fail("must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://");
    }

    // Query strings and fragments are not supported: say so rather than
    // silently ignoring settings.
    if (text.find_first_of("?#") != std::string_view::npos) fail("has a query or fragment, which is not supported");

    // The userinfo ends at the last '@' and the authority at the first '/'
    // after it, so a password with a raw '@' or '/' still parses (encoding
    // them as %40 and %2F is the portable spelling).
    std::string_view authority = text, path;
    auto at = text.rfind('@');
    auto slash = text.find('/', at == std::string_view::npos ? 0 : at);
    if (slash != std::string_view::npos) {
        authority = text.substr(0, slash);
        path = text.substr(slash + 1);
    }

    at = authority.rfind('@');
    if (at != std::string_view::npos) {
        auto userinfo = authority.substr(0, at);
        authority.remove_prefix(at + 1);
        auto colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            // `redis://secret@host`: a lone userinfo is the password, as the
            // reference's client (and redis-cli -u) read it.
            auto pw = url_detail::percent_decode(userinfo);
            if (!pw) fail("has a bad %-escape in its password");
            if (!pw->empty()) u.password = std::move(*pw);
        } else {
            auto user = url_detail::percent_decode(userinfo.substr(0, colon));
            auto pw = url_detail::percent_decode(userinfo.substr(colon + 1));
            if (!user || !pw) fail("has a bad %-escape in its user or password");
            if (!user->empty()) u.user = std::move(*user);
            if (!pw->empty()) u.password = std::move(*pw);
            if (u.user && !u.password) fail("names a user without a password");
        }
    }

    if (sentinel) {
        // host[:port],host[:port],.../master[/db]
        while (true) {
            auto comma = authority.find(',');
            auto one = authority.substr(0, comma);
            if (one.empty()) fail("has an empty sentinel address");
            u.sentinels.push_back(parse_host_port(one, 26379));
            if (comma == std::string_view::npos) break;
            authority.remove_prefix(comma + 1);
        }
        auto name_end = path.find('/');
        u.master_name = std::string(path.substr(0, name_end));
        path = name_end == std::string_view::npos ? std::string_view() : path.substr(name_end + 1);
        if (u.master_name.empty()) fail("names no master (redis+sentinel://host:26379/mymaster)");
        for (char c : u.master_name)
            if (static_cast<unsigned char>(c) <= ' ') fail("has an invalid master name");
    } else {
        auto e = parse_host_port(authority, 6379);
        u.host = std::move(e.host);
        u.port = e.port;
    }

    if (!path.empty()) {
        int v = 0;
        auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), v);
        if (ec != std::errc() || end != path.data() + path.size() || v < 0 || v > 1'000'000)
            fail("has an invalid database number");
        u.db = v;
    }
    return u;
}

}  // namespace flk::detail::redis
