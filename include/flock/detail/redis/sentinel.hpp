// Redis Sentinel, seen from a client (FLOCK_REDIS_URL=redis+sentinel://...):
//
// - resolve(): asks the sentinels, in the URL's order, for the master's
//   address (SENTINEL get-master-addr-by-name); the first that names one
//   wins, once that server, asked with ROLE, says it is a master. A sentinel
//   that does not answer, knows no such master, or names a server that is
//   down or is a replica (a sentinel behind on a failover) is passed over.
// - watch(): one connection to a sentinel (the first that answers, in
//   order), subscribed to `+switch-master`; each switch of our master is
//   reported. When that sentinel goes away, the next one is tried (after a
//   second once all of them failed in a row).
//
// The watch is the fast path only. A client that misses a switch (no
// sentinel reachable at that moment) still follows it: a killed master
// drops its connections, and a demoted one is told by the sentinels to drop
// its clients (CLIENT KILL TYPE normal / pubsub), so the owner reconnects
// and resolves again.
//
// Sentinels are asked without AUTH (a password in the URL is the master's;
// sentinels with requirepass are not supported yet) and without SELECT.
// rediss+sentinel:// uses TLS to the sentinels and to the master alike.
//
// Everything runs on one executor, like connection.hpp, on which it is built.
#pragma once

#include <flock/detail/redis/connection.hpp>
#include <flock/detail/redis/url.hpp>
#include <flock/log.hpp>

#include <boost/asio/steady_timer.hpp>

#include <charconv>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk::detail::redis {

/// Parses the text of a `+switch-master` message, "<name> <old-ip>
/// <old-port> <new-ip> <new-port>", when it is about `master_name`.
inline std::optional<endpoint> parse_switch_master(std::string_view text, std::string_view master_name) {
    std::vector<std::string_view> words;
    while (!text.empty()) {
        auto sp = text.find(' ');
        if (sp != 0) words.push_back(text.substr(0, sp));
        if (sp == std::string_view::npos) break;
        text.remove_prefix(sp + 1);
    }
    if (words.size() != 5 || words[0] != master_name) return std::nullopt;
    unsigned port = 0;
    auto p = words[4];
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port == 0 || port > 65535) return std::nullopt;
    return endpoint{std::string(words[3]), static_cast<std::uint16_t>(port)};
}

class sentinel_client : public std::enable_shared_from_this<sentinel_client> {
public:
    /// `error` empty: `master` is the URL aimed at the master (credentials
    /// and db of the sentinel URL).
    using resolve_handler = std::function<void(std::string const& error, url const& master)>;
    using switch_handler = std::function<void(endpoint const& master)>;

    /// `u` is a redis+sentinel:// URL; `tls` (null for plain TCP) must
    /// outlive this client.
    sentinel_client(asio::any_io_executor ex, url u, asio::ssl::context* tls, connection_config cfg, logger log)
        : ex_(ex), url_(std::move(u)), tls_(tls), cfg_(std::move(cfg)), log_(std::move(log)), retry_(ex) {}

    sentinel_client(sentinel_client const&) = delete;
    sentinel_client& operator=(sentinel_client const&) = delete;

    url const& target() const noexcept { return url_; }

    /// Finds the master; `done` runs once, later, on the executor (not if
    /// stop() came first). A newer resolve() abandons an older one.
    void resolve(resolve_handler done) {
        if (stopped_) return;
        auto r = std::make_shared<resolving>();
        r->done = std::move(done);
        r->gen = ++resolve_gen_;
        close(resolve_conn_);
        ask(r, 0);
    }

    /// Reports every `+switch-master` of our master from now on.
    void watch(switch_handler on_switch) {
        if (stopped_) return;
        on_switch_ = std::move(on_switch);
        watch_next_ = 0;
        watch_failures_ = 0;
        open_watch();
    }

    void stop() {
        stopped_ = true;
        ++resolve_gen_;
        retry_.cancel();
        close(resolve_conn_);
        close(watch_conn_);
        on_switch_ = nullptr;
    }

private:
    struct resolving {
        resolve_handler done;
        std::uint64_t gen = 0;
        std::string errors;  ///< why each sentinel was passed over
    };

    /// A sentinel's URL: no AUTH, no SELECT (sentinels have no databases).
    url sentinel_url(std::size_t i) const {
        url s = url_.at(url_.sentinels[i]);
        s.user.reset();
        s.password.reset();
        s.db = 0;
        return s;
    }

    connection_config plain_cfg() const {
        auto c = cfg_;
        c.client_name.clear();
        return c;
    }

    static void close(std::shared_ptr<connection>& c) {
        if (c) c->close();
        c.reset();
    }

    bool current(std::shared_ptr<resolving> const& r) const { return !stopped_ && r->gen == resolve_gen_; }

    void pass_over(std::shared_ptr<resolving> const& r, std::size_t i, std::string const& why) {
        if (!r->errors.empty()) r->errors += "; ";
        r->errors += url_.sentinels[i].text() + ": " + why;
        close(resolve_conn_);
        ask(r, i + 1);
    }

    // Sentinel i: SENTINEL get-master-addr-by-name.
    void ask(std::shared_ptr<resolving> r, std::size_t i) {
        if (i == url_.sentinels.size()) {
            auto done = std::move(r->done);
            auto why = "no sentinel named a reachable master '" + url_.master_name + "' (" + r->errors + ")";
            asio::post(ex_, [done = std::move(done), why] {
                if (done) done(why, url{});
            });
            return;
        }
        auto c = std::make_shared<connection>(ex_, tls_);
        resolve_conn_ = c;
        auto w = weak_from_this();
        // The connection holds its handlers: they hold it weakly.
        c->async_connect(sentinel_url(i), plain_cfg(), [w, r, i, wc = std::weak_ptr(c)](std::string const& err) {
            auto self = w.lock();
            auto conn = wc.lock();
            if (!self || !conn || !self->current(r)) return;
            if (!err.empty()) return self->pass_over(r, i, err);
            conn->send({"SENTINEL", "get-master-addr-by-name", self->url_.master_name}, [w, r, i](reply&& rep) {
                auto self = w.lock();
                if (!self || !self->current(r)) return;
                if (rep.is_error()) return self->pass_over(r, i, rep.str);
                unsigned port = 0;
                if (rep.is_array() && rep.elements.size() == 2) {
                    auto const& p = rep.elements[1].str;
                    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
                    if (ec != std::errc() || end != p.data() + p.size() || port > 65535) port = 0;
                }
                if (port == 0) return self->pass_over(r, i, "does not know master '" + self->url_.master_name + "'");
                close(self->resolve_conn_);
                self->verify(r, i, endpoint{rep.elements[0].str, static_cast<std::uint16_t>(port)});
            });
        });
    }

    // The server sentinel i named: is it a master? (ROLE)
    void verify(std::shared_ptr<resolving> r, std::size_t i, endpoint e) {
        auto target = url_.at(e);
        auto c = std::make_shared<connection>(ex_, tls_);
        resolve_conn_ = c;
        auto w = weak_from_this();
        c->async_connect(target, plain_cfg(), [w, r, i, wc = std::weak_ptr(c), target](std::string const& err) {
            auto self = w.lock();
            auto conn = wc.lock();
            if (!self || !conn || !self->current(r)) return;
            if (!err.empty()) return self->pass_over(r, i, "named " + target.redacted() + ": " + err);
            conn->send({"ROLE"}, [w, r, i, target](reply&& rep) {
                auto self = w.lock();
                if (!self || !self->current(r)) return;
                // An ACL user without ROLE: take the sentinel's word (a
                // replica still shows itself by refusing writes, READONLY).
                bool trusted = rep.is_error_code("NOPERM");
                if (rep.is_error() && !trusted)
                    return self->pass_over(r, i, "named " + target.redacted() + ": ROLE: " + rep.str);
                std::string role = trusted ? std::string("master")
                                   : rep.is_array() && !rep.elements.empty() ? rep.elements[0].str
                                                                             : std::string("?");
                if (role != "master")
                    return self->pass_over(r, i, "named " + target.redacted() + ", which is a " + role);
                close(self->resolve_conn_);
                auto done = std::move(r->done);
                if (done) done({}, target);
            });
        });
    }

    // ---- the watch -------------------------------------------------------------------

    void open_watch() {
        if (stopped_) return;
        close(watch_conn_);
        auto i = watch_next_;
        auto c = std::make_shared<connection>(ex_, tls_);
        watch_conn_ = c;
        auto w = weak_from_this();
        c->async_connect(sentinel_url(i), plain_cfg(), [w, wc = std::weak_ptr(c), i](std::string const& err) {
            auto self = w.lock();
            auto conn = wc.lock();
            if (!self || !conn || self->stopped_ || self->watch_conn_ != conn) return;
            if (!err.empty()) return self->watch_failed(i, err);
            conn->on_close([w, wc, i](std::string const& why) {
                auto self = w.lock();
                if (self && !self->stopped_ && self->watch_conn_ == wc.lock()) self->watch_failed(i, why);
            });
            conn->set_push_handler([w, i](reply&& r) {
                if (auto self = w.lock()) self->on_watch_push(i, std::move(r));
            });
            conn->send({"SUBSCRIBE", "+switch-master"});
        });
    }

    void on_watch_push(std::size_t i, reply&& r) {
        if (stopped_ || !r.is_array() || r.elements.size() != 3) return;
        auto const& kind = r.elements[0].str;
        if (kind == "subscribe") {
            watch_failures_ = 0;
            if (watch_error_logged_) log_.info("sentinel: watching for failovers again",
                                               {{"sentinel", url_.sentinels[i].text()}});
            watch_error_logged_ = false;
            return;
        }
        if (kind != "message" || r.elements[1].str != "+switch-master") return;
        auto e = parse_switch_master(r.elements[2].str, url_.master_name);
        if (!e) return;
        log_.warn("sentinel: the master has switched", {{"sentinel", url_.sentinels[i].text()},
                                                        {"master", url_.master_name},
                                                        {"address", e->text()}});
        if (on_switch_) {
            auto h = on_switch_;  // may stop() us
            h(*e);
        }
    }

    void watch_failed(std::size_t i, std::string const& why) {
        close(watch_conn_);
        if (!watch_error_logged_)
            log_.warn("sentinel: lost the failover watch, trying the next sentinel",
                      {{"sentinel", url_.sentinels[i].text()}, {"error", why}});
        watch_error_logged_ = true;
        watch_next_ = (i + 1) % url_.sentinels.size();
        // Straight on to the next one, but once every sentinel failed in a
        // row, once a second.
        if (++watch_failures_ < url_.sentinels.size()) {
            asio::post(ex_, [w = weak_from_this()] {
                if (auto self = w.lock()) self->open_watch();
            });
            return;
        }
        watch_failures_ = 0;
        retry_.expires_after(std::chrono::seconds(1));
        retry_.async_wait([w = weak_from_this()](boost::system::error_code ec) {
            if (ec) return;
            if (auto self = w.lock()) self->open_watch();
        });
    }

    asio::any_io_executor ex_;
    url url_;
    asio::ssl::context* tls_;
    connection_config cfg_;
    logger log_;
    asio::steady_timer retry_;
    bool stopped_ = false;

    std::uint64_t resolve_gen_ = 0;
    std::shared_ptr<connection> resolve_conn_;

    switch_handler on_switch_;
    std::shared_ptr<connection> watch_conn_;
    std::size_t watch_next_ = 0, watch_failures_ = 0;
    bool watch_error_logged_ = false;
};

}  // namespace flk::detail::redis
