// The machinery behind flk::websocket_transport: the listener, one
// http_session per accepted TCP connection (plain HTTP routes, keep-alive,
// the upgrade decision) and one ws_session per WebSocket (read loop, bounded
// conflating send queue, orderly close).
//
// Everything runs on the one executor the transport was built with; there are
// no locks. Sessions own a shared_ptr to the server state, so a completion
// that arrives after the transport was destroyed finds the state alive and
// detached (events_ == nullptr) instead of a dangling pointer.
#pragma once

#include <flock/detail/http_util.hpp>
#include <flock/detail/send_queue.hpp>
#include <flock/frame.hpp>
#include <flock/log.hpp>
#include <flock/options.hpp>
#include <flock/protocol.hpp>
#include <flock/transport/concept.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flk::detail {

namespace ws_net = boost::asio;
namespace ws_beast = boost::beast;
namespace ws_http = boost::beast::http;
namespace ws_ws = boost::beast::websocket;
using ws_tcp = boost::asio::ip::tcp;

/// Largest request header accepted before the upgrade (request line + fields).
inline constexpr std::uint32_t max_http_header_bytes = 8 * 1024;
/// Largest request body read (and ignored) on plain HTTP requests.
inline constexpr std::uint64_t max_http_body_bytes = 4 * 1024;
/// A message is read from the socket in steps of at most this many bytes, so
/// memory follows the bytes that really arrived, not a frame header's claim.
inline constexpr std::size_t ws_read_step_bytes = 4 * 1024;
/// Pause before accepting again after an accept error such as EMFILE.
inline constexpr std::chrono::milliseconds accept_backoff{100};

/// "ip:port", "[v6]:port"; IPv4-mapped IPv6 peers are shown as IPv4.
inline std::string format_endpoint(ws_tcp::endpoint const& ep) {
    auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
        addr = ws_net::ip::make_address_v4(ws_net::ip::v4_mapped, addr.to_v6());
    std::string out;
    if (addr.is_v6()) {
        out += '[';
        out += addr.to_string();
        out += ']';
    } else {
        out += addr.to_string();
    }
    out += ':';
    out += std::to_string(ep.port());
    return out;
}

class ws_session;
class http_session;

/// The state shared by the listener and every session.
class ws_server : public std::enable_shared_from_this<ws_server> {
public:
    ws_server(ws_net::any_io_executor ex, options const& opts, transport_events& events)
        : ex_(std::move(ex)),
          opts_(opts),
          log_(opts.make_logger()),
          events_(&events),
          acceptor_(ex_),
          backoff_(ex_) {}

    void start();
    void stop(std::function<void()> done);
    void send(connection_id id, frame const& f);
    void close(connection_id id, std::uint16_t code, std::string_view reason);
    /// The transport is going away: forget the events sink, close everything.
    void detach();

    std::uint16_t port() const noexcept { return port_; }
    std::size_t connection_count() const noexcept { return sessions_.size(); }

    // --- for the sessions ------------------------------------------------------
    ws_net::any_io_executor const& executor() const noexcept { return ex_; }
    options const& opts() const noexcept { return opts_; }
    logger const& log() const noexcept { return log_; }
    transport_events* events() const noexcept { return events_; }
    bool stopping() const noexcept { return stopping_; }

    /// A new WebSocket asks to open: assigns its id, asks the core, registers it.
    std::shared_ptr<ws_session> open_session(ws_tcp::endpoint const& remote, std::string_view target);
    /// Called once by a ws_session whose connection is gone.
    void session_ended(connection_id id);
    /// Called once by an http_session that ended (closed or handed over).
    void http_ended(std::uint64_t key);

private:
    void do_accept();
    void on_accept(boost::system::error_code ec, ws_tcp::socket socket);
    void check_done();

    ws_net::any_io_executor ex_;
    options opts_;
    logger log_;
    transport_events* events_;
    ws_tcp::acceptor acceptor_;
    ws_net::steady_timer backoff_;
    std::unordered_map<connection_id, std::shared_ptr<ws_session>> sessions_;
    std::unordered_map<std::uint64_t, std::weak_ptr<http_session>> http_sessions_;
    std::vector<std::function<void()>> done_;
    connection_id next_id_ = 1;
    std::uint64_t next_http_ = 1;
    std::uint16_t port_ = 0;
    bool started_ = false;
    bool stopping_ = false;
    bool accept_pending_ = false;
    bool backoff_pending_ = false;
};

/// One WebSocket connection after the core accepted it.
class ws_session : public std::enable_shared_from_this<ws_session> {
public:
    ws_session(std::shared_ptr<ws_server> srv, connection_id id, ws_tcp::endpoint remote)
        : srv_(std::move(srv)),
          ws_(srv_->executor()),
          queue_(srv_->opts().max_send_queue_bytes),
          remote_(remote),
          id_(id) {}

    /// Takes over the socket and completes the upgrade with `req`.
    void accept(ws_tcp::socket socket, ws_http::request<ws_http::string_body> req);
    void send(frame const& f);
    void request_close(std::uint16_t code, std::string_view reason);
    /// Tears the TCP connection down at once (transport destroyed).
    void abort() noexcept { close_socket(); }

private:
    enum class state : std::uint8_t { created, accepting, open, done };

    /// Allocated only once a close is requested, so open sessions don't pay for it.
    struct pending_close {
        explicit pending_close(ws_net::any_io_executor const& ex) : deadline(ex) {}
        ws_ws::close_reason reason;
        ws_net::steady_timer deadline;
        bool armed = false;
        bool started = false;
    };

    void on_accept(boost::system::error_code ec);
    void pump();
    void on_write(boost::system::error_code ec);
    void arm_close_deadline();
    void read_first();
    void on_read_first(boost::system::error_code ec, std::size_t n);
    void read_rest();
    void on_read_rest(boost::system::error_code ec);
    bool too_big(std::size_t received);
    void deliver(std::string_view payload);
    void start_close();
    void on_close_done(boost::system::error_code ec);
    void release_buffer() noexcept {
        buffer_.clear();
        if (buffer_.capacity() != 0) buffer_.shrink_to_fit();
    }
    void close_socket() noexcept {
        boost::system::error_code ignored;
        auto& sock = ws_beast::get_lowest_layer(ws_);
        if (sock.is_open()) sock.close(ignored);
    }
    void finish(boost::system::error_code ec);

    std::shared_ptr<ws_server> srv_;
    ws_ws::stream<ws_tcp::socket, false> ws_;
    ws_beast::flat_buffer buffer_;
    send_queue queue_;
    std::unique_ptr<ws_http::request<ws_http::string_body>> req_;  // only during the upgrade
    std::unique_ptr<pending_close> close_;
    ws_tcp::endpoint remote_;
    connection_id id_;
    state state_ = state::created;
    bool reading_ = false;  // a read is pending: its end finishes the session
    char first_ = 0;  // the first byte of each message lands here, see read_first()
};

/// One accepted TCP connection until it upgrades or closes.
class http_session : public std::enable_shared_from_this<http_session> {
public:
    http_session(std::shared_ptr<ws_server> srv, ws_tcp::socket socket, std::uint64_t key)
        : srv_(std::move(srv)), stream_(std::move(socket)), key_(key) {
        boost::system::error_code ec;
        remote_ = stream_.socket().remote_endpoint(ec);
    }

    void run() { read_request(); }
    void abort() noexcept {
        boost::system::error_code ignored;
        stream_.socket().close(ignored);
    }

private:
    void read_request();
    void on_read(boost::system::error_code ec);
    void upgrade();
    void respond(ws_http::status status, std::string body, std::string_view content_type, bool keep_alive);
    void on_write(boost::system::error_code ec, bool keep_alive);
    void end();

    std::shared_ptr<ws_server> srv_;
    ws_beast::tcp_stream stream_;
    ws_beast::flat_buffer buffer_{max_http_header_bytes + max_http_body_bytes};
    std::optional<ws_http::request_parser<ws_http::string_body>> parser_;
    ws_http::response<ws_http::string_body> res_;
    ws_tcp::endpoint remote_;
    std::uint64_t key_;
    bool ended_ = false;
};

// ============================================================================
// ws_server

inline void ws_server::start() {
    if (started_ || stopping_) {
        log_.warn("websocket transport: start() ignored", {{"reason", stopping_ ? "stopped" : "already started"}});
        return;
    }
    started_ = true;
    std::string const where = opts_.host + ':' + std::to_string(opts_.port);
    boost::system::error_code ec;
    ws_tcp::resolver resolver(ex_);
    auto const results = resolver.resolve(opts_.host, std::to_string(opts_.port),
                                          ws_tcp::resolver::passive | ws_tcp::resolver::numeric_service, ec);
    if (ec || results.empty())
        throw std::runtime_error("flock: cannot resolve listen address " + where + ": " +
                                 (ec ? ec.message() : std::string("no address")));
    auto const endpoint = results.begin()->endpoint();
    auto fail = [&](char const* what) {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        throw std::runtime_error(std::string("flock: cannot listen on ") + where + ": " + what + ": " + ec.message());
    };
    acceptor_.open(endpoint.protocol(), ec);
    if (ec) fail("open");
    acceptor_.set_option(ws_net::socket_base::reuse_address(true), ec);
    if (ec) fail("SO_REUSEADDR");
    acceptor_.bind(endpoint, ec);
    if (ec) fail("bind");
    acceptor_.listen(ws_net::socket_base::max_listen_connections, ec);
    if (ec) fail("listen");
    port_ = acceptor_.local_endpoint(ec).port();
    log_.info("listening", {{"host", opts_.host}, {"port", port_}});
    do_accept();
}

inline void ws_server::do_accept() {
    accept_pending_ = true;
    acceptor_.async_accept(ex_, [self = shared_from_this()](boost::system::error_code ec, ws_tcp::socket s) {
        self->on_accept(ec, std::move(s));
    });
}

inline void ws_server::on_accept(boost::system::error_code ec, ws_tcp::socket socket) {
    accept_pending_ = false;
    if (stopping_ || !events_ || !acceptor_.is_open()) {
        check_done();
        return;
    }
    if (ec) {
        log_.warn("accept failed", {{"error", ec.message()}});
        if (ec == ws_net::error::connection_aborted || ec == ws_net::error::connection_reset) {
            do_accept();
            return;
        }
        // EMFILE, ENFILE, ENOBUFS, ...: retrying at once would spin.
        backoff_pending_ = true;
        backoff_.expires_after(accept_backoff);
        backoff_.async_wait([self = shared_from_this()](boost::system::error_code) {
            self->backoff_pending_ = false;
            if (self->stopping_ || !self->events_) {
                self->check_done();
                return;
            }
            self->do_accept();
        });
        return;
    }
    boost::system::error_code ignored;
    socket.set_option(ws_tcp::no_delay(true), ignored);
    auto const key = next_http_++;
    auto s = std::make_shared<http_session>(shared_from_this(), std::move(socket), key);
    http_sessions_.emplace(key, s);
    s->run();
    do_accept();
}

inline std::shared_ptr<ws_session> ws_server::open_session(ws_tcp::endpoint const& remote,
                                                           std::string_view target) {
    connection_id const id = next_id_++;
    connection_info info{format_endpoint(remote), query_param(target, "apiKey"), {}};
    auto s = std::make_shared<ws_session>(shared_from_this(), id, remote);
    // Registered before on_open so that send/close made from inside on_open count.
    sessions_.emplace(id, s);
    bool accepted = false;
    try {
        accepted = events_->on_open(id, info).accept;
    } catch (std::exception const& e) {
        log_.error("on_open threw; connection refused", {{"id", id}, {"error", e.what()}});
    }
    if (!accepted) {
        sessions_.erase(id);
        log_.debug("connection refused", {{"id", id}, {"remote", info.remote}});
        return nullptr;
    }
    return s;
}

inline void ws_server::session_ended(connection_id id) {
    if (sessions_.erase(id) == 0) return;
    if (events_) {
        try {
            events_->on_close(id);
        } catch (std::exception const& e) {
            log_.error("on_close threw", {{"id", id}, {"error", e.what()}});
        }
    }
    check_done();
}

inline void ws_server::http_ended(std::uint64_t key) {
    http_sessions_.erase(key);
    check_done();
}

inline void ws_server::send(connection_id id, frame const& f) {
    if (auto it = sessions_.find(id); it != sessions_.end()) it->second->send(f);
}

inline void ws_server::close(connection_id id, std::uint16_t code, std::string_view reason) {
    if (auto it = sessions_.find(id); it != sessions_.end()) it->second->request_close(code, reason);
}

inline void ws_server::stop(std::function<void()> done) {
    if (done) done_.push_back(std::move(done));
    if (!stopping_) {
        stopping_ = true;
        log_.info("stopping", {{"connections", sessions_.size()}});
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        backoff_.cancel();
        for (auto& [key, weak] : http_sessions_)
            if (auto s = weak.lock()) s->abort();
        for (auto& [id, s] : sessions_) s->request_close(close_code::going_away, "server shutting down");
    }
    check_done();
}

inline void ws_server::check_done() {
    if (!stopping_ || done_.empty()) return;
    if (!sessions_.empty() || !http_sessions_.empty() || accept_pending_ || backoff_pending_) return;
    // Always posted: stop() never calls `done` from inside itself.
    ws_net::post(ex_, [callbacks = std::move(done_)]() {
        for (auto const& cb : callbacks) cb();
    });
    done_.clear();
}

inline void ws_server::detach() {
    events_ = nullptr;
    stopping_ = true;
    done_.clear();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    backoff_.cancel();
    auto https = std::move(http_sessions_);
    for (auto& [key, weak] : https)
        if (auto s = weak.lock()) s->abort();
    auto sessions = std::move(sessions_);
    for (auto& [id, s] : sessions) s->abort();
}

// ============================================================================
// ws_session

inline void ws_session::accept(ws_tcp::socket socket, ws_http::request<ws_http::string_body> req) {
    auto const& o = srv_->opts();
    ws_beast::get_lowest_layer(ws_) = std::move(socket);
    // The message limit is checked here (too_big()), not by Beast: Beast's own
    // check fails the connection through a teardown that stops draining after
    // one read (Beast 1.81), so the peer's close reply meets a closed socket
    // and the peer sees a reset instead of 1009. async_close drains properly.
    ws_.read_message_max(0);
    ws_.auto_fragment(false);
    ws_.set_option(ws_ws::stream_base::timeout{o.handshake_timeout, o.idle_timeout, true});
    ws_.set_option(ws_ws::stream_base::decorator(
        [](ws_ws::response_type& res) { res.set(ws_http::field::server, "flock"); }));
    state_ = state::accepting;
    req_ = std::make_unique<ws_http::request<ws_http::string_body>>(std::move(req));
    ws_.async_accept(*req_, [self = shared_from_this()](boost::system::error_code ec) { self->on_accept(ec); });
}

inline void ws_session::on_accept(boost::system::error_code ec) {
    req_.reset();
    if (state_ == state::done) return;
    if (ec) {
        finish(ec);
        return;
    }
    state_ = state::open;
    srv_->log().debug("connection open", {{"id", id_}, {"remote", format_endpoint(remote_)}});
    read_first();
    pump();
}

inline void ws_session::send(frame const& f) {
    if (state_ == state::done || close_) return;
    if (queue_.push(f) == send_queue::push_result::overflow) {
        srv_->log().warn("send queue full; closing",
                         {{"id", id_}, {"remote", format_endpoint(remote_)}, {"queued_bytes", queue_.bytes()},
                          {"frame_bytes", f.size()}});
        queue_.drop_unsent();
        request_close(close_code::try_again_later, "send queue full");
        return;
    }
    pump();
}

inline void ws_session::request_close(std::uint16_t code, std::string_view reason) {
    if (state_ == state::done || close_) return;
    close_ = std::make_unique<pending_close>(srv_->executor());
    close_->reason.code = code;
    // A close frame's payload is at most 125 bytes: 2 for the code, 123 for the
    // reason, cut on a UTF-8 character boundary.
    std::size_t n = std::min<std::size_t>(reason.size(), 123);
    while (n < reason.size() && n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
    close_->reason.reason.assign(reason.data(), n);
    pump();
}

inline void ws_session::pump() {
    if (state_ != state::open || queue_.writing()) {
        if (close_ && state_ == state::open) arm_close_deadline();
        return;
    }
    if (queue_.ready()) {
        frame const& f = queue_.start_write();
        ws_.binary(f.kind == frame_kind::binary);
        ws_.async_write(ws_net::buffer(f.view().data(), f.size()),
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_write(ec); });
        if (close_) arm_close_deadline();
        return;
    }
    if (close_ && !close_->started) start_close();
}

inline void ws_session::start_close() {
    close_->started = true;
    close_->deadline.cancel();  // from here on Beast's close timeout (handshake_timeout) applies
    ws_.async_close(close_->reason,
                    [self = shared_from_this()](boost::system::error_code ec) { self->on_close_done(ec); });
}

inline void ws_session::on_close_done(boost::system::error_code ec) {
    if (state_ == state::done) return;
    // Beast tore the connection down. A pending read ends with it and
    // finishes the session; without one (after a too-big message) finish here.
    if (!reading_) finish(ec);
    else if (ec) close_socket();
}

inline void ws_session::on_write(boost::system::error_code ec) {
    queue_.finish_write();
    if (state_ == state::done) return;
    if (ec) {
        close_socket();  // the read loop ends and finishes the session
        return;
    }
    pump();
}

inline void ws_session::arm_close_deadline() {
    if (!close_ || close_->armed || close_->started) return;
    close_->armed = true;
    close_->deadline.expires_after(srv_->opts().handshake_timeout);
    close_->deadline.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->state_ == state::done || !self->close_ || self->close_->started) return;
        self->srv_->log().debug("queued frames not drained before the close deadline; dropping connection",
                                {{"id", self->id_}, {"queued_bytes", self->queue_.bytes()}});
        self->close_socket();
    });
}

// Reading. An idle connection waits with a one-byte buffer (`first_`), so it
// holds no heap buffer at all; only once a message starts arriving is a
// buffer sized to it, and it is released again after the message.
inline void ws_session::read_first() {
    reading_ = true;
    ws_.async_read_some(ws_net::buffer(&first_, 1),
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                            self->on_read_first(ec, n);
                        });
}

inline void ws_session::on_read_first(boost::system::error_code ec, std::size_t n) {
    reading_ = false;
    if (ec) {
        finish(ec);
        return;
    }
    if (state_ == state::done) return;
    if (ws_.is_message_done()) {
        deliver(std::string_view(&first_, n));
        return;
    }
    if (too_big(n)) return;
    buffer_.reserve(n + std::min(ws_.read_size_hint(std::size_t{256}), ws_read_step_bytes));
    if (n != 0) {
        auto mb = buffer_.prepare(n);
        *static_cast<char*>(mb.data()) = first_;
        buffer_.commit(n);
    }
    read_rest();
}

inline void ws_session::read_rest() {
    reading_ = true;
    ws_.async_read_some(buffer_, ws_read_step_bytes,
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                            self->on_read_rest(ec);
                        });
}

inline void ws_session::on_read_rest(boost::system::error_code ec) {
    reading_ = false;
    if (ec) {
        finish(ec);
        return;
    }
    if (state_ == state::done) return;
    if (!ws_.is_message_done()) {
        if (!too_big(buffer_.size())) read_rest();
        return;
    }
    if (buffer_.size() > srv_->opts().max_frame_bytes) {
        too_big(buffer_.size());
        return;
    }
    auto const data = buffer_.cdata();
    deliver(std::string_view(static_cast<char const*>(data.data()), data.size()));
}

// Called mid-message with the bytes received so far: when the message will
// be longer than options::max_frame_bytes, stops reading and closes with
// 1009 at once (queued frames are dropped). Returns true then.
inline bool ws_session::too_big(std::size_t received) {
    auto const limit = srv_->opts().max_frame_bytes;
    // Mid-message, read_size_hint(1) is what is left of the current frame (1 when
    // a fragment ended and more follow): all the size the frames announced so far.
    if (!ws_.is_message_done() && received + ws_.read_size_hint(std::size_t{1}) <= limit) return false;
    if (ws_.is_message_done() && received <= limit) return false;
    srv_->log().debug("message too big; closing",
                      {{"id", id_}, {"remote", format_endpoint(remote_)}, {"limit", limit}});
    release_buffer();
    queue_.drop_unsent();
    if (!close_) {
        close_ = std::make_unique<pending_close>(srv_->executor());
        close_->reason.code = close_code::too_big;
        close_->reason.reason = "message too big";
    }
    // If a close is already under way it finishes the session; else start one
    // now (Beast waits for a write in flight). Either way no read is pending,
    // so the close completion finishes the session.
    if (!close_->started) start_close();
    return true;
}

inline void ws_session::deliver(std::string_view payload) {
    auto* events = srv_->events();
    // After close() the core has made up its mind: later frames are dropped.
    if (events && !close_) {
        try {
            events->on_frame(id_, payload, ws_.got_text() ? frame_kind::text : frame_kind::binary);
        } catch (std::exception const& e) {
            srv_->log().error("on_frame threw; closing", {{"id", id_}, {"error", e.what()}});
            request_close(close_code::internal_error, "internal error");
        }
    }
    release_buffer();
    if (state_ != state::done) read_first();
}

inline void ws_session::finish(boost::system::error_code ec) {
    if (state_ == state::done) return;
    bool const was_open = state_ == state::open;
    state_ = state::done;
    close_socket();
    queue_.drop_unsent();
    release_buffer();
    req_.reset();
    std::uint16_t sent = 0;
    if (close_) {
        sent = static_cast<std::uint16_t>(close_->reason.code);
        close_->deadline.cancel();
    }
    auto const& log = srv_->log();
    if (log.enabled(log_level::debug)) {
        auto const received = static_cast<std::uint16_t>(ws_.reason().code);
        bool const clean = ec == ws_ws::error::closed;
        log.debug(was_open ? "connection closed" : "connection failed during upgrade",
                  {{"id", id_},
                   {"remote", format_endpoint(remote_)},
                   {"code_sent", sent},
                   {"code_received", received},
                   {"error", clean ? std::string("none") : ec.message()}});
    }
    srv_->session_ended(id_);
}

// ============================================================================
// http_session

inline void http_session::read_request() {
    parser_.emplace();
    parser_->header_limit(max_http_header_bytes);
    parser_->body_limit(max_http_body_bytes);
    stream_.expires_after(srv_->opts().handshake_timeout);
    ws_http::async_read(stream_, buffer_, *parser_,
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_read(ec); });
}

inline void http_session::on_read(boost::system::error_code ec) {
    if (ended_) return;
    if (ec) {
        if (ec == ws_beast::error::timeout)
            srv_->log().debug("http request timed out", {{"remote", format_endpoint(remote_)}});
        else if (ec != ws_http::error::end_of_stream && ec != ws_net::error::operation_aborted)
            srv_->log().debug("http read failed", {{"remote", format_endpoint(remote_)}, {"error", ec.message()}});
        end();
        return;
    }
    auto const& req = parser_->get();
    if (ws_ws::is_upgrade(req)) {
        upgrade();
        return;
    }
    bool const keep_alive = req.keep_alive();
    auto const path = target_path(std::string_view(req.target().data(), req.target().size()));
    if (req.method() == ws_http::verb::get && path == "/health") {
        std::string body;
        try {
            if (auto* events = srv_->events()) body = events->health();
        } catch (std::exception const& e) {
            srv_->log().error("health() threw", {{"error", e.what()}});
            respond(ws_http::status::internal_server_error, "{\"status\":\"error\"}", "application/json", false);
            return;
        }
        respond(ws_http::status::ok, std::move(body), "application/json", keep_alive);
        return;
    }
    respond(ws_http::status::not_found, "not found\n", "text/plain", keep_alive);
}

inline void http_session::upgrade() {
    if (srv_->stopping() || !srv_->events()) {
        respond(ws_http::status::service_unavailable, "shutting down\n", "text/plain", false);
        return;
    }
    auto const& req = parser_->get();
    auto session = srv_->open_session(remote_, std::string_view(req.target().data(), req.target().size()));
    if (!session) {
        respond(ws_http::status::unauthorized, "unauthorized\n", "text/plain", false);
        return;
    }
    stream_.expires_never();
    // Bytes after the request stay unread: a client must wait for the 101
    // before it sends frames (RFC 6455, 4.1).
    session->accept(stream_.release_socket(), parser_->release());
    parser_.reset();
    ended_ = true;
    srv_->http_ended(key_);
}

inline void http_session::respond(ws_http::status status, std::string body, std::string_view content_type,
                                  bool keep_alive) {
    auto const& req = parser_->get();
    res_ = {};
    res_.version(req.version());
    res_.result(status);
    res_.set(ws_http::field::server, "flock");
    res_.set(ws_http::field::content_type, content_type);
    res_.keep_alive(keep_alive);
    res_.body() = std::move(body);
    res_.prepare_payload();
    stream_.expires_after(srv_->opts().handshake_timeout);
    if (srv_->log().enabled(log_level::trace))
        srv_->log().trace("http", {{"method", std::string_view(req.method_string().data(), req.method_string().size())},
                                   {"target", std::string_view(req.target().data(), req.target().size())},
                                   {"status", static_cast<unsigned>(status)},
                                   {"remote", format_endpoint(remote_)}});
    ws_http::async_write(stream_, res_,
                         [self = shared_from_this(), keep_alive](boost::system::error_code ec, std::size_t) {
                             self->on_write(ec, keep_alive);
                         });
}

inline void http_session::on_write(boost::system::error_code ec, bool keep_alive) {
    if (ended_) return;
    if (ec || !keep_alive || srv_->stopping()) {
        boost::system::error_code ignored;
        stream_.socket().shutdown(ws_tcp::socket::shutdown_send, ignored);
        end();
        return;
    }
    res_ = {};
    read_request();
}

inline void http_session::end() {
    if (ended_) return;
    ended_ = true;
    boost::system::error_code ignored;
    stream_.socket().close(ignored);
    srv_->http_ended(key_);
}

}  // namespace flk::detail
