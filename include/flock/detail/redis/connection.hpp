// One RESP connection to Redis over an Asio socket, plain TCP or TLS.
//
// - Pipelined: `send` never waits for earlier replies; every command queued
//   during one turn of the event loop leaves in one write.
// - Replies are matched to their commands in order (RESP2 answers in order),
//   except in push mode (the subscriber connection), where every reply goes
//   to one handler.
// - Never blocks: resolve, connect, TLS handshake, AUTH/SELECT are all
//   asynchronous and bounded by the connect timeout.
// - Liveness: an idle connection sends PING; a connection that leaves a
//   command unanswered for the reply timeout is declared dead, so a
//   half-open TCP connection is noticed.
// - Single use: after it closed, make a new one.
//
// All of it runs on one executor (one thread, or a strand).
#pragma once

#include <flock/broker/redis_error.hpp>
#include <flock/detail/redis/resp.hpp>
#include <flock/metrics.hpp>
#include <flock/detail/redis/url.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flk::detail::redis {

namespace asio = boost::asio;

/// Timing of one connection.
struct connection_config {
    std::chrono::milliseconds connect_timeout{5000};  ///< resolve + connect + TLS + AUTH/SELECT
    std::chrono::milliseconds ping_interval{5000};    ///< PING when nothing was sent for this long
    std::chrono::milliseconds reply_timeout{10000};   ///< an unanswered command for this long: dead
    std::string client_name;                           ///< CLIENT SETNAME, when not empty
};

/// What connections count for their broker's metrics (one broker, one thread).
struct connection_stats {
    std::uint64_t commands = 0;    ///< commands sent
    latency_histogram round_trip;  ///< sent -> reply read, on connections not in push mode
};

class connection : public std::enable_shared_from_this<connection> {
public:
    using reply_handler = std::function<void(reply&&)>;
    using push_handler = std::function<void(reply&&)>;
    using close_handler = std::function<void(std::string const& why)>;
    using connect_handler = std::function<void(std::string const& error)>;  ///< empty = connected

    /// `tls` is null for plain TCP; it must outlive the connection.
    connection(asio::any_io_executor ex, asio::ssl::context* tls)
        : ex_(ex), resolver_(ex), tcp_(ex), timer_(ex), tls_ctx_(tls) {}

    connection(connection const&) = delete;
    connection& operator=(connection const&) = delete;

    /// Connects, authenticates and selects the database of `u`, then calls
    /// `done` with an empty string, or with a sentence saying what failed.
    void async_connect(url const& u, connection_config cfg, connect_handler done) {
        cfg_ = std::move(cfg);
        url_ = u;
        connect_done_ = std::move(done);
        state_ = state::connecting;
        if (tls_ctx_) tls_ = std::make_unique<tls_stream>(ex_, *tls_ctx_);
        timer_.expires_after(cfg_.connect_timeout);
        timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec || (self->state_ != state::connecting && self->state_ != state::handshaking)) return;
            self->connect_failed("timed out after " + std::to_string(self->cfg_.connect_timeout.count()) +
                                     " ms connecting to " + self->url_.redacted(),
                                 redis_errc::connect_timeout);
        });
        resolver_.async_resolve(
            u.host, std::to_string(u.port),
            [self = shared_from_this()](boost::system::error_code ec, asio::ip::tcp::resolver::results_type res) {
                if (self->state_ != state::connecting) return;
                if (ec)
                    return self->connect_failed("cannot resolve " + self->url_.host + ": " + ec.message(),
                                                redis_errc::resolve_failed);
                asio::async_connect(self->sock(), res,
                                    [self](boost::system::error_code ec2, asio::ip::tcp::endpoint const&) {
                                        self->on_tcp_connected(ec2);
                                    });
            });
    }

    /// Queues one command. `h` gets its reply, or an io_error reply if the
    /// connection fails first (then it runs later, never inside `send`).
    void send(std::span<std::string_view const> args, reply_handler h = {}) {
        if (state_ != state::open && state_ != state::handshaking) {
            if (h)
                asio::post(ex_, [h = std::move(h)]() mutable { h(reply::io_failure("not connected to redis")); });
            return;
        }
        append_command(wbuf_, args);
        if (stats_) ++stats_->commands;
        if (!push_) {
            pending_.push_back(std::move(h));
            if (stats_) sent_at_.push_back(clock::now());
            if (!waiting_since_) waiting_since_ = clock::now();
        }
        last_tx_ = clock::now();
        schedule_flush();
    }
    void send(std::initializer_list<std::string_view> args, reply_handler h = {}) {
        send(std::span<std::string_view const>(args.begin(), args.size()), std::move(h));
    }

    /// From now on every reply goes to `h` (a subscriber connection: RESP2
    /// pub/sub messages and subscribe confirmations are not matched to
    /// commands). Call once the connection is open and nothing is pending.
    void set_push_handler(push_handler h) {
        push_ = std::move(h);
        waiting_since_.reset();
    }

    /// Counts commands and reply round trips into `s` from now on.
    void count_into(std::shared_ptr<connection_stats> s) { stats_ = std::move(s); }

    /// Called once when an open connection fails (not after close()).
    void on_close(close_handler h) { on_close_ = std::move(h); }

    /// Closes now. Pending reply handlers get io_error replies; the close
    /// handler is not called.
    void close() { shutdown("connection closed", false); }

    bool is_open() const noexcept { return state_ == state::open; }
    std::size_t pending() const noexcept { return pending_.size(); }
    /// Why connecting or the open connection failed (none until it does; the
    /// handlers get the sentence for logs).
    boost::system::error_code const& error() const noexcept { return error_; }

private:
    using clock = std::chrono::steady_clock;
    using tls_stream = asio::ssl::stream<asio::ip::tcp::socket>;
    enum class state { idle, connecting, handshaking, open, closed };

    /// The TCP socket: ours, or the one inside the TLS stream.
    asio::ip::tcp::socket& sock() noexcept { return tls_ ? tls_->next_layer() : tcp_; }

    template <class F>
    void with_stream(F&& f) {
        if (tls_)
            f(*tls_);
        else
            f(tcp_);
    }

    void on_tcp_connected(boost::system::error_code ec) {
        if (state_ != state::connecting) return;
        if (ec) return connect_failed("cannot connect to " + url_.redacted() + ": " + ec.message(), redis_errc::connect_failed);
        boost::system::error_code ignored;
        sock().set_option(asio::ip::tcp::no_delay(true), ignored);
        sock().set_option(asio::socket_base::keep_alive(true), ignored);
        if (!tls_) return start_handshake();

        boost::system::error_code addr_ec;
        asio::ip::make_address(url_.host, addr_ec);
        if (addr_ec) {  // a name, not an address: send SNI
            if (!SSL_set_tlsext_host_name(tls_->native_handle(), url_.host.c_str()))
                return connect_failed("cannot set TLS SNI for " + url_.host, redis_errc::tls_failed);
        }
        tls_->set_verify_callback(asio::ssl::host_name_verification(url_.host));
        tls_->async_handshake(asio::ssl::stream_base::client,
                              [self = shared_from_this()](boost::system::error_code ec2) {
                                  if (self->state_ != state::connecting) return;
                                  if (ec2) {
                                      std::string why = ec2.message();
                                      if (ec2.category() == asio::error::get_ssl_category()) {
                                          auto v = SSL_get_verify_result(self->tls_->native_handle());
                                          if (v != X509_V_OK)
                                              why += std::string(" (certificate: ") +
                                                     X509_verify_cert_error_string(v) + ")";
                                      }
                                      if (ec2 == asio::ssl::error::stream_truncated ||
                                          ERR_GET_REASON(ec2.value()) == SSL_R_WRONG_VERSION_NUMBER)
                                          why += " (a plain, non-TLS port? then use redis://)";
                                      return self->connect_failed("TLS handshake with " + self->url_.redacted() +
                                                                      " failed: " + why,
                                                                  redis_errc::tls_failed);
                                  }
                                  self->start_handshake();
                              });
    }

    // AUTH, SELECT, CLIENT SETNAME, PING: pipelined, answered in order.
    void start_handshake() {
        state_ = state::handshaking;
        start_read();
        auto self = shared_from_this();
        if (url_.password) {
            auto on_auth = [self](reply&& r) {
                if (r.is_error() && self->state_ == state::handshaking) {
                    std::string why = "redis authentication failed";
                    if (self->url_.user) why += " for user '" + *self->url_.user + "'";
                    self->connect_failed(why + ": " + r.str, redis_errc::auth_failed);
                }
            };
            if (url_.user)
                send({"AUTH", *url_.user, *url_.password}, on_auth);
            else
                send({"AUTH", *url_.password}, on_auth);
        }
        if (url_.db != 0) {
            auto db = std::to_string(url_.db);
            send({"SELECT", db}, [self](reply&& r) {
                if (r.is_error() && self->state_ == state::handshaking)
                    self->connect_failed("redis SELECT " + std::to_string(self->url_.db) + " failed: " + r.str,
                                         redis_errc::select_failed);
            });
        }
        if (!cfg_.client_name.empty()) send({"CLIENT", "SETNAME", cfg_.client_name}, [](reply&&) {});
        send({"PING"}, [self](reply&& r) {
            if (self->state_ != state::handshaking) return;
            if (r.is_error_code("NOAUTH"))
                return self->connect_failed("redis requires a password (NOAUTH): put it in the URL, "
                                            "redis://:password@host:port",
                                            redis_errc::auth_failed);
            if (r.is_error()) return self->connect_failed("redis refused PING: " + r.str, redis_errc::handshake_failed);
            self->state_ = state::open;
            self->timer_.cancel();
            self->last_rx_ = clock::now();
            self->arm_liveness();
            auto done = std::move(self->connect_done_);
            if (done) done({});
        });
    }

    void connect_failed(std::string why, redis_errc code = redis_errc::connect_failed) {
        if (state_ != state::connecting && state_ != state::handshaking) return;
        error_ = code;
        auto done = std::move(connect_done_);
        shutdown(why, false);
        if (done) done(why.empty() ? std::string("connection failed") : why);
    }

    void start_read() {
        with_stream([this](auto& s) {
            s.async_read_some(asio::buffer(rbuf_),
                              [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                                  self->on_read(ec, n);
                              });
        });
    }

    void on_read(boost::system::error_code ec, std::size_t n) {
        if (state_ != state::open && state_ != state::handshaking) return;
        if (ec) {
            if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
                return fail("redis closed the connection");
            return fail("connection to redis lost: " + ec.message());
        }
        last_rx_ = clock::now();
        if (!reader_.feed(rbuf_.data(), n)) return fail("redis protocol error: " + reader_.error(), redis_errc::protocol_error);
        auto self = shared_from_this();  // a handler may drop the last owner
        while (state_ == state::open || state_ == state::handshaking) {
            auto r = reader_.next();
            if (!r) {
                if (reader_.failed()) return fail("redis protocol error: " + reader_.error(), redis_errc::protocol_error);
                break;
            }
            if (push_) {
                push_(std::move(*r));
            } else if (pending_.empty()) {
                return fail("redis sent a reply to no command", redis_errc::protocol_error);
            } else {
                auto h = std::move(pending_.front());
                pending_.pop_front();
                if (!sent_at_.empty()) {
                    if (stats_) stats_->round_trip.observe(clock::now() - sent_at_.front());
                    sent_at_.pop_front();
                }
                if (h) h(std::move(*r));
            }
        }
        if (state_ != state::open && state_ != state::handshaking) return;
        if (push_ || pending_.empty())
            waiting_since_.reset();
        else
            waiting_since_ = clock::now();
        start_read();
    }

    void schedule_flush() {
        if (writing_ || flush_posted_) return;
        flush_posted_ = true;
        asio::post(ex_, [self = shared_from_this()] {
            self->flush_posted_ = false;
            self->flush();
        });
    }

    void flush() {
        if (writing_ || wbuf_.empty()) return;
        if (state_ != state::open && state_ != state::handshaking) return;
        writing_ = true;
        obuf_.swap(wbuf_);
        wbuf_.clear();
        with_stream([this](auto& s) {
            asio::async_write(s, asio::buffer(obuf_),
                              [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                                  self->writing_ = false;
                                  self->obuf_.clear();
                                  if (self->state_ != state::open && self->state_ != state::handshaking) return;
                                  if (ec) return self->fail("writing to redis failed: " + ec.message());
                                  self->flush();
                              });
        });
    }

    void arm_liveness() {
        auto tick = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000),
                                                        std::min(cfg_.ping_interval, cfg_.reply_timeout));
        timer_.expires_after(tick);
        timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec || self->state_ != state::open) return;
            auto now = clock::now();
            if (self->waiting_since_ && now - *self->waiting_since_ > self->cfg_.reply_timeout)
                return self->fail("redis did not answer for " + std::to_string(self->cfg_.reply_timeout.count()) +
                                      " ms",
                                  redis_errc::reply_timeout);
            if (now - self->last_tx_ >= self->cfg_.ping_interval) {
                self->send({"PING"}, [](reply&&) {});
                if (self->push_ && !self->waiting_since_) self->waiting_since_ = now;
            }
            self->arm_liveness();
        });
    }

    void fail(std::string why, redis_errc code = redis_errc::connection_lost) {
        if (state_ == state::connecting || state_ == state::handshaking) {
            if (!tls_) why += " (if the server expects TLS, use rediss://)";
            return connect_failed("handshake with " + url_.redacted() + " failed: " + why, redis_errc::handshake_failed);
        }
        error_ = code;
        auto h = std::move(on_close_);
        bool was_open = state_ == state::open;
        shutdown(why, true);
        if (was_open && h) h(why);
    }

    void shutdown(std::string const& why, bool /*failed*/) {
        if (state_ == state::closed) return;
        state_ = state::closed;
        boost::system::error_code ignored;
        timer_.cancel();
        resolver_.cancel();
        sock().shutdown(asio::socket_base::shutdown_both, ignored);
        sock().close(ignored);
        wbuf_.clear();
        sent_at_.clear();
        if (pending_.empty()) return;
        // Failed commands hear of it from the event loop, never from inside
        // the caller of close().
        asio::post(ex_, [pending = std::move(pending_), why]() mutable {
            for (auto& h : pending)
                if (h) h(reply::io_failure(why));
        });
        pending_.clear();
    }

    asio::any_io_executor ex_;
    asio::ip::tcp::resolver resolver_;
    asio::ip::tcp::socket tcp_;  // plain TCP only
    std::unique_ptr<tls_stream> tls_;
    asio::steady_timer timer_;  // connect timeout, then liveness ticks
    asio::ssl::context* tls_ctx_;
    url url_;
    connection_config cfg_;
    state state_ = state::idle;
    boost::system::error_code error_;

    connect_handler connect_done_;
    close_handler on_close_;
    push_handler push_;

    reader reader_;
    std::array<char, 16 * 1024> rbuf_{};
    std::string wbuf_, obuf_;
    bool writing_ = false, flush_posted_ = false;
    std::deque<reply_handler> pending_;
    std::deque<clock::time_point> sent_at_;  // of the pending commands, when counted
    std::shared_ptr<connection_stats> stats_;

    clock::time_point last_rx_{}, last_tx_{};
    std::optional<clock::time_point> waiting_since_;
};

}  // namespace flk::detail::redis
