// The admin dashboard, on the server's own port (docs/admin.md), with the
// reference server's paths and form fields:
//
//   GET  /admin                    the sign-in form, or the dashboard once signed in
//   POST /admin                    password=...&csrf=...: signs in (session cookie)
//   POST /admin/sign-out           csrf=...: signs out
//   POST /api/admin/close-room     roomId=...&csrf=...: 303 to /admin
//   POST /api/admin/close-all      csrf=...: 303 to /admin
//
// Closing a room does what the reference does: every member gets
// `{"type":"error","code":"INTERNAL_ERROR","message":"room closed by admin"}`
// and its socket is closed (the browser client then reconnects and joins
// again). In Redis mode every flock instance of the cluster closes its own
// sockets (a control message on a flock-only channel, detail/admin_redis.hpp)
// and the dashboard lists the whole cluster: its rooms and members, and every
// flock instance from the record each keeps in Redis (flock/instance_registry.hpp).
//
// Unlike the reference: random session tokens (OpenSSL's CSPRNG) with an
// expiry, HttpOnly SameSite=Strict cookies (Secure behind a trusted TLS
// proxy), a CSRF token in every form, POSTs from another origin refused
// (403), sign-in attempts throttled per client address (429), the password
// compared in constant time, every value HTML-escaped, and a strict
// Content-Security-Policy with X-Frame-Options: DENY.
//
//     auto admin = std::make_shared<flk::admin>(io.get_executor(), flk::admin_options::from_env(), opts);
//     opts.http_routes.push_back(admin->route());   // before the server copies opts
//     flk::sharded_server<S> server(opts);
//     admin->attach(flk::admin_backend_of(server));
//
// Threading: the admin's state (sessions, the throttle, its Redis
// connections) lives on the executor given, one thread. Routes run on the
// shards' threads and only post there; shards are reached by posting to them.
#pragma once

#include <flock/admin_backend.hpp>
#include <flock/basic_flock.hpp>
#include <flock/broker/redis_settings.hpp>
#include <flock/detail/admin_html.hpp>
#include <flock/detail/admin_redis.hpp>
#include <flock/detail/admin_security.hpp>
#include <flock/http.hpp>
#include <flock/log.hpp>
#include <flock/options.hpp>
#include <flock/version.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flk {

/// Settings of the admin dashboard.
struct admin_options {
    /// FLOCK_ADMIN_PASSWORD; unset: no admin at all, every admin path is 404.
    std::optional<std::string> password;
    /// FLOCK_ADMIN_SESSION_TTL_SECONDS: a session ends this long after sign-in.
    std::chrono::seconds session_ttl{8 * 3600};
    /// FLOCK_ADMIN_LOGIN_ATTEMPTS: failed sign-ins allowed per client address
    /// within FLOCK_ADMIN_LOGIN_WINDOW_SECONDS; more are answered 429.
    std::uint32_t login_attempts = 5;
    std::chrono::seconds login_window{300};
    /// FLOCK_TRUSTED_PROXIES: comma-separated peer addresses (exact, e.g.
    /// 127.0.0.1,::1) whose X-Forwarded-Proto and X-Forwarded-For are
    /// believed. Empty: no proxy is, and those headers are ignored.
    std::vector<std::string> trusted_proxies;
    /// How long the dashboard waits for the shards and Redis.
    std::chrono::milliseconds gather_timeout{3000};

    static admin_options from_env(options const& o, options::env_getter const& get = [](char const* n) {
        return std::getenv(n);
    }) {
        admin_options a;
        a.password = o.admin_password;
        auto var = [&](char const* name) -> std::optional<std::string> {
            char const* v = get(name);
            if (v == nullptr || *v == '\0') return std::nullopt;
            return std::string(v);
        };
        auto number = [&](char const* name, std::string const& v, unsigned long min) {
            char* end = nullptr;
            errno = 0;
            unsigned long n = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || errno != 0 || n < min || n > 100000000ul || v[0] == '-')
                throw config_error(std::string(name) + " must be a whole number from " + std::to_string(min) +
                                   ", got '" + v + "'");
            return n;
        };
        if (auto v = var("FLOCK_ADMIN_SESSION_TTL_SECONDS"))
            a.session_ttl = std::chrono::seconds(number("FLOCK_ADMIN_SESSION_TTL_SECONDS", *v, 1));
        if (auto v = var("FLOCK_ADMIN_LOGIN_ATTEMPTS"))
            a.login_attempts = static_cast<std::uint32_t>(number("FLOCK_ADMIN_LOGIN_ATTEMPTS", *v, 1));
        if (auto v = var("FLOCK_ADMIN_LOGIN_WINDOW_SECONDS"))
            a.login_window = std::chrono::seconds(number("FLOCK_ADMIN_LOGIN_WINDOW_SECONDS", *v, 1));
        if (auto v = var("FLOCK_TRUSTED_PROXIES")) detail::split_comma_list(*v, a.trusted_proxies);
        return a;
    }
};

/// The admin dashboard. Make it with std::make_shared.
class admin : public std::enable_shared_from_this<admin> {
public:
    /// `server_opts` gives FLOCK_REDIS_URL (then the dashboard reads the
    /// cluster and orders close-room cluster-wide), the port and the logger.
    admin(boost::asio::any_io_executor ex, admin_options a, options const& server_opts)
        : ex_(ex), opts_(std::move(a)), log_(server_opts.make_logger().with("component", "admin")),
          sessions_(opts_.session_ttl), throttle_(opts_.login_attempts, opts_.login_window),
          process_(detail::admin::random_token(16)) {
        if (server_opts.redis_url && opts_.password)
            redis_ = std::make_shared<detail::admin::cluster_reader>(ex_, *server_opts.redis_url,
                                                                     redis_settings::from(server_opts), process_, log_);
    }

    admin(admin const&) = delete;
    admin& operator=(admin const&) = delete;

    bool enabled() const noexcept { return opts_.password.has_value(); }

    /// The route to add to options::http_routes. Without a password it
    /// declines everything: every admin path is then 404 like any other.
    http_route route() {
        return [w = weak_from_this(), on = enabled()](http_request const& req, http_responder& reply) {
            if (!on || !is_admin_path(req.path)) return false;
            auto self = w.lock();
            if (!self) return false;
            boost::asio::post(self->ex_, [self, req, reply]() mutable { self->handle(req, reply); });
            return true;
        };
    }

    /// The server to show and to order; call before it takes requests (until
    /// then the admin answers 503). `instance_name` is shown (host:port).
    void attach(admin_backend b, std::string instance_name) {
        boost::asio::post(ex_, [self = shared_from_this(), b = std::move(b), n = std::move(instance_name)]() mutable {
            self->backend_ = std::move(b);
            self->instance_name_ = std::move(n);
            if (self->redis_)
                self->redis_->start([w = self->weak_from_this()](std::string const& room) {
                    if (auto s = w.lock()) s->close_local(room, {});
                });
        });
    }

    /// Runs `f` (on the admin's executor) once the admin is attached and, in
    /// Redis mode, hears other instances' close orders.
    void when_ready(std::function<void()> f) {
        boost::asio::post(ex_, [self = shared_from_this(), f = std::move(f)]() mutable {
            if (self->redis_) self->redis_->when_subscribed(std::move(f));
            else f();
        });
    }

    /// Closes the admin's Redis connections; pending requests are dropped.
    void stop() {
        boost::asio::post(ex_, [self = shared_from_this()] {
            if (self->redis_) self->redis_->stop();
            self->backend_.reset();
        });
    }

    static bool is_admin_path(std::string_view p) {
        return p == "/admin" || p.starts_with("/admin/") || p == "/api/admin" || p.starts_with("/api/admin/");
    }

private:
    using steady = std::chrono::steady_clock;
    static constexpr std::string_view session_cookie = "flock_admin";
    static constexpr std::string_view login_cookie = "flock_admin_login";

    struct reply_ctx {
        http_responder reply;
        detail::admin::client_view client;
        std::string nonce = detail::admin::random_token(16);
    };

    // ---- requests -------------------------------------------------------------------

    void handle(http_request const& req, http_responder& reply) {
        reply_ctx ctx{std::move(reply), detail::admin::view_of(req, opts_.trusted_proxies)};
        try {
            dispatch(req, ctx);
        } catch (std::exception const& e) {
            log_.error("admin request failed", {{"path", req.path}, {"error", e.what()}});
            send(ctx, 500, detail::admin::message_page("Error", "The admin page failed; see the server log.", ctx.nonce));
        }
    }

    void dispatch(http_request const& req, reply_ctx& ctx) {
        auto const now = steady::now();
        if (!backend_) return send(ctx, 503, detail::admin::message_page("Starting", "Try again shortly.", ctx.nonce));
        auto const cookies = req.header("cookie");
        auto const token = detail::admin::cookie(cookies, session_cookie).value_or("");
        auto const* session = sessions_.find(token, now);

        if (req.method == "GET" && req.path == "/admin") {
            if (session) return show_dashboard(std::move(ctx), session->csrf);
            return show_login(ctx, {}, 200);
        }
        if (req.method != "POST" || !(req.path == "/admin" || req.path == "/admin/sign-out" ||
                                      req.path == "/api/admin/close-room" || req.path == "/api/admin/close-all"))
            return send(ctx, 404, detail::admin::message_page("Not found", "No such admin page.", ctx.nonce));

        // Every POST: from this server's own pages, and with a CSRF token.
        if (!detail::admin::same_origin_post(req, ctx.client)) {
            log_.warn("admin: cross-origin POST refused",
                      {{"path", req.path}, {"origin", req.header("origin")}, {"remote", ctx.client.address}});
            return send(ctx, 403, detail::admin::message_page("Forbidden", "Cross-origin request refused.", ctx.nonce));
        }
        auto const csrf = detail::admin::form_field(req.body, "csrf").value_or("");

        if (req.path == "/admin") return sign_in(req, ctx, csrf, cookies, now);

        if (!session)
            return send(ctx, 401, detail::admin::message_page("Signed out", "Your session has ended; sign in again.",
                                                              ctx.nonce));
        if (csrf.empty() || !detail::admin::same_secret(csrf, session->csrf))
            return send(ctx, 403, detail::admin::message_page("Forbidden", "Missing or wrong CSRF token.", ctx.nonce));

        if (req.path == "/admin/sign-out") {
            sessions_.erase(token);
            return redirect(ctx, {detail::admin::set_cookie(session_cookie, "", std::chrono::seconds(0), ctx.client.secure)});
        }
        std::string room;
        if (req.path == "/api/admin/close-room") {
            room = detail::admin::form_field(req.body, "roomId").value_or("");
            if (room.empty())
                return send(ctx, 400, detail::admin::message_page("Bad request", "roomId is missing.", ctx.nonce));
        }
        log_.info(room.empty() ? "admin: close-all" : "admin: close-room", {{"room", room}, {"remote", ctx.client.address}});
        if (redis_) redis_->publish_close(room);
        // Redirect once every shard has closed its sockets, so the dashboard
        // that follows no longer lists them.
        close_local(room, [self = shared_from_this(), ctx = std::move(ctx)]() mutable { self->redirect(ctx, {}); });
    }

    void sign_in(http_request const& req, reply_ctx& ctx, std::string const& csrf, std::string_view cookies,
                 steady::time_point now) {
        auto const expected = detail::admin::cookie(cookies, login_cookie).value_or("");
        if (expected.empty() || csrf.empty() || !detail::admin::same_secret(csrf, expected))
            return send(ctx, 403, detail::admin::message_page("Forbidden", "Missing or wrong CSRF token; reload the "
                                                                           "sign-in page.", ctx.nonce));
        auto const& who = ctx.client.address;
        if (auto wait = throttle_.wait(who, now); wait.count() > 0) {
            log_.warn("admin: sign-in throttled", {{"remote", who}});
            return show_login(ctx, "Too many failed attempts; try again in " + std::to_string(wait.count()) + " s.",
                              429, {{"Retry-After", std::to_string(wait.count())}});
        }
        auto const password = detail::admin::form_field(req.body, "password").value_or("");
        if (!detail::admin::same_secret(password, *opts_.password)) {
            throttle_.failed(who, now);
            log_.warn("admin: wrong password", {{"remote", who}});
            return show_login(ctx, "Wrong password.", 401);
        }
        throttle_.succeeded(who);
        auto token = sessions_.create(now);
        log_.info("admin: signed in", {{"remote", who}});
        redirect(ctx, {detail::admin::set_cookie(session_cookie, token, sessions_.ttl(), ctx.client.secure),
                       detail::admin::set_cookie(login_cookie, "", std::chrono::seconds(0), ctx.client.secure)});
    }

    // ---- answers --------------------------------------------------------------------

    void send(reply_ctx& ctx, unsigned status, std::string body, std::vector<std::pair<std::string, std::string>> extra = {}) {
        http_response r;
        r.status = status;
        r.content_type = "text/html; charset=utf-8";
        r.body = std::move(body);
        r.headers = {
            {"Content-Security-Policy", "default-src 'none'; style-src 'nonce-" + ctx.nonce +
                                            "'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                            "base-uri 'none'"},
            {"X-Frame-Options", "DENY"},
            {"X-Content-Type-Options", "nosniff"},
            {"Referrer-Policy", "same-origin"},
            {"Cache-Control", "no-store"},
        };
        for (auto& h : extra) r.headers.push_back(std::move(h));
        if (auto reply = std::exchange(ctx.reply, nullptr)) reply(std::move(r));
    }

    void redirect(reply_ctx& ctx, std::vector<std::string> cookies) {
        std::vector<std::pair<std::string, std::string>> h{{"Location", "/admin"}};
        for (auto& c : cookies) h.emplace_back("Set-Cookie", std::move(c));
        send(ctx, 303, {}, std::move(h));
    }

    void show_login(reply_ctx& ctx, std::string const& message, unsigned status,
                    std::vector<std::pair<std::string, std::string>> extra = {}) {
        auto csrf = detail::admin::random_token();
        extra.emplace_back("Set-Cookie", detail::admin::set_cookie(login_cookie, csrf, std::chrono::seconds(3600),
                                                                   ctx.client.secure));
        send(ctx, status, detail::admin::login_page(csrf, ctx.nonce, message), std::move(extra));
    }

    // Gathers every shard (and Redis), then answers; whatever has not answered
    // within gather_timeout is shown as such.
    void show_dashboard(reply_ctx ctx, std::string csrf) {
        struct gather {
            reply_ctx ctx;
            detail::admin::dashboard d;
            std::vector<admin_backend::shard_report> reports;
            std::optional<detail::admin::cluster_view> cluster;
            std::size_t waiting = 0;
            boost::asio::steady_timer timer;
            bool done = false;
        };
        auto g = std::make_shared<gather>(gather{std::move(ctx), {}, {}, {}, 0, boost::asio::steady_timer(ex_), false});
        g->d.csrf = std::move(csrf);
        g->d.instance_name = instance_name_;
        g->d.shards.resize(backend_->shards);
        g->reports.resize(backend_->shards);
        g->waiting = backend_->shards + (redis_ ? 1 : 0);
        auto self = shared_from_this();
        auto finish = [self, g] {
            if (g->done) return;
            g->done = true;
            g->timer.cancel();
            self->render_dashboard(g->ctx, g->d, g->reports, g->cluster);
        };
        g->timer.expires_after(opts_.gather_timeout);
        g->timer.async_wait([finish](boost::system::error_code ec) {
            if (!ec) finish();
        });
        for (std::size_t i = 0; i < backend_->shards; ++i) {
            g->d.shards[i].index = i;
            backend_->report(i, true, [self, g, i, finish](admin_backend::shard_report r) {
                boost::asio::post(self->ex_, [g, i, finish, r = std::move(r)]() mutable {
                    if (g->done) return;
                    g->d.shards[i].answered = true;
                    g->reports[i] = std::move(r);
                    if (--g->waiting == 0) finish();
                });
            });
        }
        if (redis_)
            redis_->read([g, finish](detail::admin::cluster_view v) {
                if (g->done) return;
                g->cluster = std::move(v);
                if (--g->waiting == 0) finish();
            });
        if (g->waiting == 0) finish();
    }

    void render_dashboard(reply_ctx& ctx, detail::admin::dashboard& d, std::vector<admin_backend::shard_report>& reports,
                          std::optional<detail::admin::cluster_view>& cluster) {
        using detail::admin::member_row;
        using detail::admin::room_row;
        // Which instance ids are this process's shards, and who is listed here.
        std::vector<std::pair<std::string, std::size_t>> ours;
        std::vector<std::pair<std::string, std::string>> local_members;  // (instance, room \0 user)
        std::vector<room_row> local;
        for (std::size_t i = 0; i < d.shards.size(); ++i) {
            auto& s = d.shards[i];
            if (!s.answered) continue;
            auto& r = reports[i];
            s.connections = r.connections;
            s.rooms = r.room_count;
            s.broker = r.broker;
            s.up = r.up;
            s.error = r.error;
            s.instance = r.instance;
            if (!r.instance.empty()) ours.emplace_back(r.instance, i);
            for (auto& lr : r.rooms) {
                auto it = std::ranges::find(local, lr.id, &room_row::id);
                if (it == local.end()) {
                    local.push_back({lr.id, lr.created, {}});
                    it = local.end() - 1;
                } else if (lr.created < it->created) {
                    it->created = lr.created;
                }
                for (auto& [user, meta] : lr.members) {
                    local_members.emplace_back(r.instance, lr.id + '\0' + user);
                    it->members.push_back({user, std::move(meta), shard_label(i, d.shards.size())});
                }
            }
        }
        if (!redis_) {
            d.rooms = std::move(local);
        } else {
            d.redis_state = redis_->up() ? "up" : "down";
            if (cluster) {
                d.redis_rtt = cluster->rtt;
                for (auto& n : cluster->notes) d.notes.push_back(std::move(n));
            } else {
                d.notes.push_back("Redis did not answer within " + std::to_string(opts_.gather_timeout.count()) + " ms.");
            }
            if (cluster && cluster->instances_ok) list_instances(d, *cluster, ours);
            if (cluster && cluster->ok) {
                d.cluster = true;
                for (auto& r : cluster->rooms) {
                    std::erase_if(r.members, [&](member_row& m) {
                        auto mine = std::ranges::find(ours, m.where, &std::pair<std::string, std::size_t>::first);
                        if (mine == ours.end()) {
                            m.where = m.where.empty() ? "a reference (Node.js) instance" : "instance " + where_of(*cluster, m.where);
                            return false;
                        }
                        // Held here: the shard's own view is the truth (a
                        // socket being closed is gone already).
                        bool listed = std::ranges::find(local_members, std::pair(m.where, r.id + '\0' + m.user_id)) !=
                                      local_members.end();
                        m.where = shard_label(mine->second, d.shards.size());
                        return !listed;
                    });
                }
                std::erase_if(cluster->rooms, [](room_row const& r) { return r.members.empty(); });
                d.rooms = std::move(cluster->rooms);
            } else {
                d.notes.push_back("Showing this process's rooms only.");
                d.rooms = std::move(local);
            }
        }
        std::ranges::sort(d.rooms, {}, &room_row::id);
        for (auto& r : d.rooms) std::ranges::sort(r.members, {}, &member_row::user_id);
        d.now = std::chrono::system_clock::now();
        send(ctx, 200, detail::admin::dashboard_page(d, ctx.nonce));
    }

    // The Instances table: this process from its live figures (just
    // gathered), every other flock instance from its record in Redis.
    void list_instances(detail::admin::dashboard& d, detail::admin::cluster_view const& cluster,
                        std::vector<std::pair<std::string, std::size_t>> const& ours) const {
        using detail::admin::instance_row;
        using sys = std::chrono::system_clock;
        auto at = [](std::int64_t ms) { return sys::time_point(std::chrono::milliseconds(ms)); };
        d.instances_listed = true;
        instance_row me;
        me.name = instance_name_;
        me.this_process = true;
        me.version = std::string(version);
        me.shards = d.shards.size();
        for (auto const& s : d.shards) {
            if (!s.answered) {
                if (me.error.empty()) me.error = "shard " + std::to_string(s.index) + " did not answer in time";
                continue;
            }
            me.connections += s.connections;
            me.rooms += s.rooms;
            if (s.up) ++me.shards_up;
            else if (me.error.empty()) me.error = s.error;
        }
        me.rtt = cluster.rtt;
        me.started = started_;
        std::vector<instance_row> others;
        for (auto const& rec : cluster.instances) {
            bool const mine = std::ranges::any_of(ours, [&](auto const& o) { return rec.shard_of(o.first).has_value(); });
            if (mine) {  // our own record: only when we started, the rest is live
                if (rec.started_at > 0) me.started = at(rec.started_at);
                continue;
            }
            instance_row r;
            r.name = rec.name.empty() ? rec.id : rec.name;
            r.version = rec.version;
            r.shards = rec.shards.size();
            r.shards_up = rec.shards_up();
            r.connections = rec.connections();
            r.rooms = rec.rooms();
            for (auto const& s : rec.shards)
                if (!s.up && !s.error.empty()) {
                    r.error = s.error;
                    break;
                }
            if (rec.rtt_us) r.rtt = std::chrono::microseconds(*rec.rtt_us);
            if (rec.started_at > 0) r.started = at(rec.started_at);
            r.reported = at(rec.updated_at);
            others.push_back(std::move(r));
        }
        std::ranges::sort(others, {}, &instance_row::name);
        d.instances.push_back(std::move(me));
        for (auto& r : others) d.instances.push_back(std::move(r));
    }

    // How a member's holder is named: the instance's name (and its shard)
    // from its record, else its raw instanceId.
    static std::string where_of(detail::admin::cluster_view const& cluster, std::string const& instance) {
        for (auto const& rec : cluster.instances)
            if (auto i = rec.shard_of(instance)) {
                auto name = rec.name.empty() ? rec.id : rec.name;
                return rec.shards.size() > 1 ? name + ", shard " + std::to_string(*i) : name;
            }
        return instance;
    }

    static std::string shard_label(std::size_t i, std::size_t n) {
        return n > 1 ? "this process, shard " + std::to_string(i) : "this process";
    }

    // Every shard closes its sockets in `room` ("" = all); `done` runs on the
    // admin's executor once all have.
    void close_local(std::string const& room, std::function<void()> done) {
        if (!backend_) return;
        auto left = std::make_shared<std::size_t>(backend_->shards);
        auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
        for (std::size_t i = 0; i < backend_->shards; ++i)
            backend_->close(i, room, [self = shared_from_this(), left, shared_done] {
                boost::asio::post(self->ex_, [left, shared_done] {
                    if (--*left == 0 && *shared_done) (*shared_done)();
                });
            });
    }

    boost::asio::any_io_executor ex_;
    admin_options opts_;
    logger log_;
    detail::admin::session_store sessions_;
    detail::admin::sign_in_throttle throttle_;
    std::string process_;
    std::optional<admin_backend> backend_;
    std::string instance_name_;
    std::shared_ptr<detail::admin::cluster_reader> redis_;
    std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
};

}  // namespace flk
