// The admin dashboard's defences, with no I/O: random tokens, sessions with
// an expiry, the sign-in throttle, the password check, form parsing, cookies,
// the same-origin check and trusted proxies. flk::admin (flock/admin.hpp)
// uses them on its own executor, one thread: nothing here takes a lock.
#pragma once

#include <flock/detail/http_util.hpp>
#include <flock/http.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flk::detail::admin {

using steady = std::chrono::steady_clock;

/// `bytes` random bytes from OpenSSL's CSPRNG, as lowercase hex. Throws when
/// the generator fails (it never hands out a predictable token).
inline std::string random_token(std::size_t bytes = 32) {
    std::vector<unsigned char> buf(bytes);
    if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
        throw std::runtime_error("flock admin: the random generator failed");
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (auto b : buf) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

/// True when `guess` equals `secret`. Both are hashed (SHA-256) first and the
/// digests compared with CRYPTO_memcmp, so the time taken depends on neither
/// how much of the secret was guessed nor its length.
inline bool same_secret(std::string_view guess, std::string_view secret) {
    auto digest = [](std::string_view s) {
        std::array<unsigned char, 32> d{};
        unsigned len = 0;
        if (EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
            throw std::runtime_error("flock admin: SHA-256 failed");
        return d;
    };
    auto const a = digest(guess), b = digest(secret);
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

/// The value of `name` in an application/x-www-form-urlencoded body.
inline std::optional<std::string> form_field(std::string_view body, std::string_view name) {
    std::string target = "?";
    target += body;
    return query_param(target, name);
}

/// The value of cookie `name` in a Cookie header ("a=1; b=2").
inline std::optional<std::string> cookie(std::string_view header, std::string_view name) {
    while (!header.empty()) {
        auto const semi = header.find(';');
        auto pair = header.substr(0, semi);
        while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
        auto const eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == name) return std::string(pair.substr(eq + 1));
        if (semi == std::string_view::npos) break;
        header.remove_prefix(semi + 1);
    }
    return std::nullopt;
}

/// A Set-Cookie value: HttpOnly, SameSite=Strict, Path=/, plus Secure when
/// the request came over TLS. A zero `max_age` deletes the cookie.
inline std::string set_cookie(std::string_view name, std::string_view value, std::chrono::seconds max_age,
                              bool secure) {
    std::string c(name);
    c += '=';
    c += value;
    c += "; Path=/; Max-Age=" + std::to_string(max_age.count()) + "; HttpOnly; SameSite=Strict";
    if (secure) c += "; Secure";
    return c;
}

/// "https://Host:1" -> "https://host:1": scheme and host compared without case.
inline std::string lower_ascii(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

/// The origin (scheme://host[:port]) of an absolute URL such as a Referer;
/// empty when it is not one.
inline std::string origin_of_url(std::string_view url) {
    auto const scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos || scheme_end == 0) return {};
    auto const host_end = url.find_first_of("/?#", scheme_end + 3);
    return lower_ascii(url.substr(0, host_end));
}

/// Who sent a request, and how, once trusted proxies are taken into account.
struct client_view {
    std::string address;  ///< the client's address: the proxy's X-Forwarded-For entry, else the peer
    bool secure = false;  ///< came over TLS (X-Forwarded-Proto: https from a trusted proxy)
    std::string origin;   ///< this server's own origin as the client sees it: scheme://Host
};

/// Requests from these peer addresses may say, in X-Forwarded-Proto and
/// X-Forwarded-For, how and from whom they came. Anyone else's such headers
/// are ignored: a client cannot claim TLS or another address.
inline client_view view_of(http_request const& req, std::vector<std::string> const& trusted_proxies) {
    client_view v;
    v.address = req.remote_address;
    bool const trusted = address_listed(trusted_proxies, req.remote_address);
    if (trusted) {
        v.secure = lower_ascii(req.header("x-forwarded-proto")) == "https";
        // The last entry is the one the trusted proxy added: the peer it saw.
        std::vector<std::string> hops;
        split_comma_list(req.header("x-forwarded-for"), hops);
        if (!hops.empty()) v.address = hops.back();
    }
    v.origin = (v.secure ? "https://" : "http://") + lower_ascii(req.header("host"));
    return v;
}

/// A POST is from this server's own pages when its Origin, or without one
/// its Referer, is this server's origin. A request carrying neither comes from
/// no browser (browsers send Origin on every cross-origin POST); the CSRF
/// token still guards it.
inline bool same_origin_post(http_request const& req, client_view const& v) {
    auto const origin = req.header("origin");
    if (!origin.empty()) return lower_ascii(origin) == v.origin;
    auto const referer = req.header("referer");
    if (!referer.empty()) return origin_of_url(referer) == v.origin;
    return true;
}

/// Signed-in admins: random tokens with an absolute expiry, each with its
/// own CSRF token. At most `max_sessions`; the oldest goes first.
class session_store {
public:
    struct session {
        std::string csrf;
        steady::time_point expires;
    };

    session_store(std::chrono::seconds ttl, std::size_t max_sessions = 256) : ttl_(ttl), max_(max_sessions) {}

    std::chrono::seconds ttl() const noexcept { return ttl_; }

    /// A new session; returns its token.
    std::string create(steady::time_point now) {
        prune(now);
        while (sessions_.size() >= max_ && !order_.empty()) {
            sessions_.erase(order_.front());
            order_.pop_front();
        }
        auto token = random_token();
        sessions_[token] = {random_token(), now + ttl_};
        order_.push_back(token);
        return token;
    }

    /// The live session of `token`, or null (unknown, signed out or expired).
    session const* find(std::string_view token, steady::time_point now) {
        if (token.empty()) return nullptr;
        auto it = sessions_.find(std::string(token));
        if (it == sessions_.end()) return nullptr;
        if (it->second.expires <= now) {
            erase(it->first);
            return nullptr;
        }
        return &it->second;
    }

    void erase(std::string token) {  // a copy: it may be the map's own key
        sessions_.erase(token);
        std::erase(order_, token);
    }

    std::size_t size() const noexcept { return sessions_.size(); }

private:
    void prune(steady::time_point now) {
        while (!order_.empty()) {
            auto it = sessions_.find(order_.front());
            if (it != sessions_.end() && it->second.expires > now) break;
            if (it != sessions_.end()) sessions_.erase(it);
            order_.pop_front();
        }
    }

    std::chrono::seconds ttl_;
    std::size_t max_;
    std::unordered_map<std::string, session> sessions_;
    std::deque<std::string> order_;  // creation order, so expiry order too
};

/// Failed sign-ins per client address: past `limit` failures within
/// `window`, every attempt from that address is refused (429) until the
/// oldest failure is older than the window. Bounded memory: at most
/// `max_addresses` addresses tracked, the least recently failed dropped.
class sign_in_throttle {
public:
    sign_in_throttle(std::uint32_t limit, std::chrono::seconds window, std::size_t max_addresses = 10000)
        : limit_(limit), window_(window), max_(max_addresses) {}

    /// How long `address` must wait before trying again; zero when it may now.
    std::chrono::seconds wait(std::string const& address, steady::time_point now) {
        auto it = failures_.find(address);
        if (it == failures_.end()) return std::chrono::seconds(0);
        auto& f = it->second;
        while (!f.empty() && now - f.front() >= window_) f.pop_front();
        if (f.empty()) {
            failures_.erase(it);
            return std::chrono::seconds(0);
        }
        if (f.size() < limit_) return std::chrono::seconds(0);
        auto const left = std::chrono::ceil<std::chrono::seconds>(f.front() + window_ - now);
        return std::max(left, std::chrono::seconds(1));
    }

    void failed(std::string const& address, steady::time_point now) {
        if (!failures_.contains(address) && failures_.size() >= max_) {
            // Drop the address whose last failure is oldest.
            auto oldest = std::ranges::min_element(failures_, {}, [](auto const& e) { return e.second.back(); });
            failures_.erase(oldest);
        }
        auto& f = failures_[address];
        f.push_back(now);
        while (f.size() > limit_) f.pop_front();
    }

    void succeeded(std::string const& address) { failures_.erase(address); }

private:
    std::uint32_t limit_;
    std::chrono::seconds window_;
    std::size_t max_;
    std::unordered_map<std::string, std::deque<steady::time_point>> failures_;
};

}  // namespace flk::detail::admin
