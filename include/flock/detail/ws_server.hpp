// The machinery behind flk::websocket_transport: the listener, one
// http_session per accepted TCP connection (plain HTTP routes, keep-alive,
// the upgrade request), and the WebSocket connections, which ws_server serves
// itself on plain sockets with the framing of ws_frame.hpp. Beast does the
// HTTP side only.
//
// How bytes move, and why (per connection, Beast's websocket::stream costs
// about 2.6 KB and one write syscall per frame):
// - Events: once upgraded, a connection's socket leaves Asio's reactor for
//   the server's own epoll set (ws_poller.hpp), registered once; Asio waits
//   on that set alone. A message costs its recv, not a recv and a re-arm.
// - Reading: an idle connection holds no buffer. When its socket is
//   readable, the server reads it dry into one scratch buffer shared by all
//   connections and parses every complete frame there; only the bytes of a
//   frame cut by the end of a read are kept, until it completes.
// - Writing: send() only queues (send_queue: shared frames, a byte bound,
//   conflation once the connection is congested) and marks it dirty. One
//   flush per turn of the event loop (after the poller's events, or posted)
//   writes each dirty connection's queue in one
//   gather write (header, payload, header, payload, ...), so under load many
//   frames leave in one syscall; and the flush's small writes, one per
//   connection, go to the kernel together in one io_uring submission
//   (send_batch.hpp; plain send() where io_uring is unavailable or
//   options::io_uring is off). A cut write waits for writability. With a
//   write delay (options::write_delay), cursor frames wait up to that long
//   first, so that more of them share a write; any other frame flushes at
//   once, with the cursors queued before it.
// - Timers: one transport-wide tick pings silent connections, drops those
//   that stay silent and gives up closes that take too long. No connection
//   has a timer of its own.
//
// Everything runs on the one executor the transport was built with; there
// are no locks. Completion handlers hold a shared_ptr to the server and name
// their connection by id, so a completion that arrives after the connection
// ended, or after the transport was destroyed, finds nothing to do.
#pragma once

#include <flock/detail/http_util.hpp>
#include <flock/detail/refusal_log.hpp>
#include <flock/detail/send_batch.hpp>
#include <flock/detail/send_queue.hpp>
#include <flock/detail/ws_poller.hpp>
#include <flock/detail/ws_frame.hpp>
#include <flock/detail/ws_handshake.hpp>
#include <flock/connection_gate.hpp>
#include <flock/frame.hpp>
#include <flock/log.hpp>
#include <flock/metrics.hpp>
#include <flock/options.hpp>
#include <flock/protocol.hpp>
#include <flock/transport/concept.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <sys/ioctl.h>
#if __has_include(<linux/sockios.h>)
#include <linux/sockios.h>  // SIOCOUTQ
#endif
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flk {

/// What a transport refused, by answer, since it started.
struct websocket_refusals {
    std::uint64_t bad_upgrade = 0;        ///< 400 (malformed upgrade), 426 (version), 411 (a chunked body)
    std::uint64_t headers_too_large = 0;  ///< 431
    std::uint64_t unauthorized = 0;       ///< 401: the core refused (a wrong ?apiKey=)
    std::uint64_t origin = 0;             ///< 403: Origin not in FLOCK_ALLOWED_ORIGINS
    std::uint64_t full = 0;               ///< 503: FLOCK_MAX_CONNECTIONS reached
    std::uint64_t address_full = 0;       ///< 503: FLOCK_MAX_CONNECTIONS_PER_IP reached
    /// Not a refusal of an upgrade: open connections closed (1008) because
    /// their socket took no bytes for FLOCK_WRITE_STALL_MS.
    std::uint64_t write_stalls = 0;
};

}  // namespace flk

namespace flk::detail {

namespace ws_net = boost::asio;
namespace ws_beast = boost::beast;
namespace ws_http = boost::beast::http;
using ws_tcp = boost::asio::ip::tcp;

/// Largest request header accepted before the upgrade (request line + fields).
inline constexpr std::uint32_t max_http_header_bytes = 8 * 1024;
/// Largest request body read (and ignored) on plain HTTP requests; a body is
/// taken with a Content-Length only (see http_session::on_header).
inline constexpr std::uint64_t max_http_body_bytes = 4 * 1024;
/// Pause before accepting again after an accept error such as EMFILE.
inline constexpr std::chrono::milliseconds accept_backoff{100};
/// The scratch buffer every WebSocket read goes into (one per transport).
inline constexpr std::size_t ws_read_buffer_bytes = 64 * 1024;
/// Full reads of one connection before the others get a turn.
inline constexpr int ws_reads_per_turn = 4;
/// Pongs owed beyond this many bytes are not sent: a peer that pings faster
/// than it reads gets answers only to the pings before.
inline constexpr std::size_t ws_max_control_backlog = 1024;

/// "ip:port", "[v6]:port"; IPv4-mapped IPv6 peers are shown as IPv4.
inline std::string format_endpoint(ws_tcp::endpoint const& ep) {
    auto const addr = unmapped(ep.address());
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

/// The client address alone, as the connection limits count it.
inline std::string address_of(ws_tcp::endpoint const& ep) { return unmapped(ep.address()).to_string(); }

/// Where a WebSocket connection is in its life.
enum class ws_state : std::uint8_t {
    opening,     ///< on_open is deciding; nothing is written before it accepts
    open,
    closing,     ///< a close was asked for: the queued frames go out, then our close frame
    close_sent,  ///< our close frame is out: waiting for the peer's close, or EOF
};

/// What a connection needs only now and then: control bytes waiting to go
/// out and the state of a close. Allocated on demand and dropped again while
/// the connection is open and quiet.
struct ws_control {
    std::string out;             ///< written ahead of data: the 101 response, pings, pongs
    std::string close_frame;     ///< our close frame, written after the last queued frame
    std::uint32_t deadline = 0;  ///< the tick from which a close under way is given up
    std::uint16_t code_sent = 0;
    std::uint16_t code_received = 0;
};

/// One WebSocket connection. Kept small: thousands of them sit idle.
struct ws_connection {
    /// The kinds of output, to name the one a write cut short.
    enum class piece : std::uint8_t { none, control, data, close };

    ws_connection(connection_id id, ws_tcp::endpoint remote, std::size_t max_queue_bytes)
        : queue(max_queue_bytes), id(id), remote(remote) {}

    ws_socket socket;  ///< open from the upgrade on
    send_queue queue;
    ws_reader reader;
    std::unique_ptr<ws_control> control;
    connection_id id;
    ws_tcp::endpoint remote;
    std::size_t written = 0;       ///< bytes of the `cut` piece already written
    std::uint32_t heard = 0;       ///< the tick at which bytes last arrived
    std::uint32_t drained = 0;     ///< the tick at which the socket last took bytes, or started refusing them
    std::uint32_t unacked = 0;     ///< bytes the kernel still held for the peer at the last tick that looked
    ws_state state = ws_state::opening;
    piece cut = piece::none;       ///< what a write cut short: it goes on first
    bool dirty = false;            ///< listed for the next flush
    bool held = false;             ///< listed in the write delay's queue (options::write_delay)
    bool awaiting_write = false;   ///< a write was cut: waiting for writability
    bool behind = false;           ///< a write was cut, and what was queued then is not all out yet
    bool ping_sent = false;        ///< pinged since bytes last arrived
    bool peer_closed = false;      ///< the peer's close arrived: ours is the last thing to write
    bool discarding = false;       ///< the input broke the protocol: the rest is read and dropped
    bool input_ends = false;       ///< the poller saw the peer's FIN (or an error): read to it, past short reads
    bool read_posted = false;      ///< its reading goes on in a posted turn: the poller's reports wait for it
    bool gated = false;            ///< counted by the connection gate: leaves it when it ends

    /// Bytes of an earlier write are still unsent: the socket refused part of
    /// a write and has not taken the rest. Only then may stale cursor frames
    /// be replaced (docs/protocol.md, "Slow readers"). Room to write ends it
    /// only once the flush that follows has written the queue out: frames
    /// that arrive between the two are still behind the refused bytes.
    bool congested() const noexcept { return awaiting_write || behind || cut != piece::none; }
};

/// One gather write being put together: its buffers, the frame headers they
/// point into, and what each piece is, to account for a write cut short.
/// One per server, reused: each write is made and accounted for at once.
class ws_gather {
public:
    using piece_kind = ws_connection::piece;
    struct piece {
        piece_kind kind;
        std::size_t size;    ///< bytes of it in this write
        std::size_t offset;  ///< bytes of it written by earlier writes
    };

    /// Buffers in one sendmsg (IOV_MAX is 1024; 64 is what Asio would pass).
    static constexpr std::size_t max_buffers = 64;

    void clear() noexcept { buffer_count_ = piece_count_ = header_count_ = bytes_ = 0; }
    bool empty() const noexcept { return piece_count_ == 0; }
    bool has_room(std::size_t buffers) const noexcept { return buffer_count_ + buffers <= max_buffers; }

    /// `bytes` from `offset` on, in one buffer.
    void add_bytes(piece_kind kind, std::string_view bytes, std::size_t offset) {
        add_buffer(bytes.data() + offset, bytes.size() - offset);
        add_piece(kind, bytes.size() - offset, offset);
    }

    /// A data frame from `offset` on: its header, then its payload, never copied.
    void add_frame(frame const& f, std::size_t offset) {
        auto& header = headers_[header_count_++];
        auto const op = f.kind == frame_kind::text ? ws_opcode::text : ws_opcode::binary;
        std::size_t const header_size = write_ws_header(header.data(), op, f.size());
        std::size_t skip = offset;
        if (skip < header_size) {
            add_buffer(header.data() + skip, header_size - skip);
            skip = 0;
        } else {
            skip -= header_size;
        }
        add_buffer(f.view().data() + skip, f.size() - skip);
        add_piece(piece_kind::data, header_size + f.size() - offset, offset);
    }

    /// A small write goes out as one buffer, copied: the kernel takes a plain
    /// send of cursor frames for less than a sendmsg of their pieces.
    void coalesce() noexcept {
        if (buffer_count_ < 2 || bytes_ > flat_.size()) return;
        char* out = flat_.data();
        for (std::size_t i = 0; i < buffer_count_; ++i)
            out = std::copy_n(static_cast<char const*>(buffers_[i].iov_base), buffers_[i].iov_len, out);
        buffers_[0] = {flat_.data(), bytes_};
        buffer_count_ = 1;
    }

    std::span<iovec const> buffers() const noexcept { return {buffers_.data(), buffer_count_}; }
    std::span<piece const> pieces() const noexcept { return {pieces_.data(), piece_count_}; }
    std::size_t bytes() const noexcept { return bytes_; }

private:
    void add_buffer(void const* data, std::size_t size) {
        buffers_[buffer_count_++] = {const_cast<void*>(data), size};  // sendmsg only reads it
    }
    void add_piece(piece_kind kind, std::size_t size, std::size_t offset) {
        pieces_[piece_count_++] = {kind, size, offset};
        bytes_ += size;
    }

    std::array<iovec, max_buffers> buffers_;
    std::array<char, 4096> flat_;
    std::array<std::array<unsigned char, ws_max_header_bytes>, max_buffers> headers_;
    std::array<piece, max_buffers> pieces_;
    std::size_t buffer_count_ = 0;
    std::size_t piece_count_ = 0;
    std::size_t header_count_ = 0;
    std::size_t bytes_ = 0;
};

class http_session;

/// The listener, the WebSocket connections, and what they share.
class ws_server : public std::enable_shared_from_this<ws_server> {
public:
    ws_server(ws_net::any_io_executor ex, options const& opts, transport_events& events)
        : ex_(std::move(ex)),
          opts_(opts),
          log_(opts.make_logger()),
          events_(&events),
          acceptor_(ex_),
          backoff_(ex_),
          tick_(ex_),
          tick_interval_(tick_interval_for(opts)),
          ping_ticks_(ticks_in(opts.idle_timeout / 2)),
          idle_ticks_(ticks_in(opts.idle_timeout)),
          close_ticks_(ticks_in(opts.handshake_timeout)),
          stall_ticks_(opts.write_stall.count() > 0 ? ticks_in(opts.write_stall) : 0),
          gate_(opts.gate ? opts.gate
                          : opts.max_connections || opts.max_connections_per_ip
                                ? std::make_shared<connection_gate>(opts.max_connections, opts.max_connections_per_ip)
                                : nullptr),
          refusal_log_(opts.refusal_log_interval),
          delay_timer_(ex_),
          poller_(ex_),
          read_buffer_(std::make_unique<char[]>(ws_read_buffer_bytes)) {}

    void start();
    void stop(std::function<void()> done);
    void send(connection_id id, frame const& f);
    void close(connection_id id, std::uint16_t code, std::string_view reason);
    /// The transport is going away: forget the events sink, drop everything.
    void detach();

    std::uint16_t port() const noexcept { return port_; }
    std::size_t connection_count() const noexcept { return connections_.size(); }
    websocket_refusals const& refusals() const noexcept { return refusals_; }
    transport_metrics const& metrics() const noexcept { return metrics_; }

    // --- for the HTTP sessions ----------------------------------------------------
    options const& opts() const noexcept { return opts_; }
    logger const& log() const noexcept { return log_; }
    transport_events* events() const noexcept { return events_; }
    bool stopping() const noexcept { return stopping_; }

    /// A valid WebSocket upgrade request arrived on `stream`: checks its
    /// Origin and the connection limits, then asks the core. When all agree,
    /// takes the socket (and `leftover`, bytes read past the request) and
    /// answers 101, returning 101; else the status to refuse with (403, 503,
    /// 401), already counted and logged.
    ws_http::status upgrade(ws_beast::tcp_stream& stream, ws_http::request<ws_http::string_body> const& req,
                            ws_tcp::endpoint const& remote, ws_beast::flat_buffer& leftover);
    /// Counts a refusal and logs it, at most once per address per interval.
    void refused(std::uint64_t websocket_refusals::*counter, ws_tcp::endpoint const& remote, std::string_view why);
    /// Called once by an http_session that ended (closed or handed over).
    void http_ended(std::uint64_t key);

private:
    using clock = std::chrono::steady_clock;

    static std::chrono::milliseconds tick_interval_for(options const& o) {
        using std::chrono::milliseconds;
        auto shortest = std::min<milliseconds>(o.idle_timeout / 2, o.handshake_timeout);
        if (o.write_stall.count() > 0) shortest = std::min(shortest, o.write_stall);
        return std::clamp<milliseconds>(shortest / 4, milliseconds(10), milliseconds(1000));
    }
    /// Whole ticks that cover `d` (at least one).
    std::uint32_t ticks_in(std::chrono::milliseconds d) const {
        return static_cast<std::uint32_t>(std::max<std::int64_t>(1, (d + tick_interval_ - std::chrono::milliseconds(1)) / tick_interval_));
    }
    bool tick_reached(std::uint32_t deadline) const noexcept {
        return static_cast<std::int32_t>(ticks_ - deadline) >= 0;  // wraps safely
    }

    ws_connection* find(connection_id id) {
        auto it = connections_.find(id);
        return it == connections_.end() ? nullptr : it->second.get();
    }
    ws_control& control_of(ws_connection& c) {
        if (!c.control) c.control = std::make_unique<ws_control>();
        return *c.control;
    }

    // accepting
    void do_accept();
    void on_accept(boost::system::error_code ec, ws_tcp::socket socket);
    open_verdict ask_core(connection_id id, connection_info const& info);
    void begin(ws_connection& c, ws_tcp::socket socket, std::string response, ws_beast::flat_buffer& leftover);
    void check_done();
    // the sockets' events
    void watch();
    void on_events(boost::system::error_code ec);
    // reading
    void on_readable(connection_id id);
    void read_available(ws_connection& c);
    bool take(ws_connection& c, std::span<char> bytes);
    void deliver(ws_connection& c, std::string_view payload, bool text);
    void answer_ping(ws_connection& c, std::string_view payload);
    bool on_peer_close(ws_connection& c, std::uint16_t code);
    void refuse_input(ws_connection& c, std::uint16_t code, std::string_view why);
    // writing
    void mark_dirty(ws_connection& c);
    void hold(ws_connection& c);
    void release_held();
    void arm_delay();
    void flush_dirty();
    void queue_write(ws_connection& c);
    void submit_writes();
    void begin_write(ws_connection& c);
    void write_out(ws_connection& c);
    bool gather(ws_connection& c);
    enum class after_write { more, wait, failed };
    after_write settle(ws_connection& c, std::size_t written, boost::system::error_code const& ec);
    void act(ws_connection& c, after_write next, boost::system::error_code const& ec);
    void written_out(ws_connection& c);
    void account(ws_connection& c, std::size_t written);
    void wait_writable(ws_connection& c);
    void on_writable(ws_connection& c);
    // closing
    void request_close(ws_connection& c, std::uint16_t code, std::string_view reason);
    void finish(ws_connection& c, boost::system::error_code ec);
    // the tick
    bool stalled(ws_connection& c);
    void keep_ticking();
    void arm_tick();
    void on_tick();

    ws_net::any_io_executor ex_;
    options opts_;
    logger log_;
    transport_events* events_;
    ws_tcp::acceptor acceptor_;
    ws_net::steady_timer backoff_;
    ws_net::steady_timer tick_;
    std::chrono::milliseconds tick_interval_;
    std::uint32_t ping_ticks_;   // silence after which a connection is pinged
    std::uint32_t idle_ticks_;   // silence after which it is dropped
    std::uint32_t close_ticks_;  // how long each step of a close may take
    std::uint32_t stall_ticks_;  // how long a socket may take no bytes while frames wait (0: forever)
    std::uint32_t ticks_ = 0;    // the coarse clock every connection is timed by
    std::shared_ptr<connection_gate> gate_;  // null: no connection limits
    refusal_log refusal_log_;
    websocket_refusals refusals_;
    transport_metrics metrics_;  // plain counters: this server's thread alone writes them
    // By id, looked up for every frame sent: an open-addressing table of
    // pointers (a connection stays where it is while the table grows).
    boost::unordered_flat_map<connection_id, std::unique_ptr<ws_connection>> connections_;
    std::unordered_map<std::uint64_t, std::weak_ptr<http_session>> http_sessions_;
    std::vector<connection_id> dirty_;     // connections the next flush writes
    std::vector<connection_id> flushing_;  // the ones the running flush writes
    // The write delay: held connections with the time their cursors are due
    // out. One delay for all, so the queue is in due order.
    std::deque<std::pair<clock::time_point, connection_id>> held_;
    ws_net::steady_timer delay_timer_;
    bool delay_armed_ = false;
    ws_poller poller_;                     // the upgraded connections' sockets
    bool watching_ = false;                // a wait on poller_ is pending
    bool in_events_ = false;               // handling a poll's events: the flush follows them
    std::vector<connection_id> expired_;   // found by the running tick
    std::vector<connection_id> stalled_;   // likewise: their sockets took no bytes for the stall limit
    std::unique_ptr<char[]> read_buffer_;
    ws_gather gather_;
    send_batch batch_;  // a flush's writes, submitted together (when enabled)
    std::vector<std::function<void()>> done_;
    connection_id next_id_ = 1;
    std::uint64_t next_http_ = 1;
    std::uint16_t port_ = 0;
    bool started_ = false;
    bool stopping_ = false;
    bool accept_pending_ = false;
    bool backoff_pending_ = false;
    bool flush_posted_ = false;
    bool ticking_ = false;
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
    void on_header(boost::system::error_code ec);
    void on_read(boost::system::error_code ec);
    void upgrade();
    bool route(ws_http::request<ws_http::string_body> const& req, bool keep_alive);
    void answer(http_response res, bool keep_alive);
    void prepare(ws_http::status status, std::string body, std::string_view content_type, bool keep_alive);
    void write_response(bool keep_alive);
    void respond(ws_http::status status, std::string body, std::string_view content_type, bool keep_alive) {
        prepare(status, std::move(body), content_type, keep_alive);
        write_response(keep_alive);
    }
    void on_write(boost::system::error_code ec, bool keep_alive);
    void drain();
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
// ws_server: accepting, the public operations

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
    if (opts_.reuse_port) {
        acceptor_.set_option(ws_net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
        if (ec) fail("SO_REUSEPORT");
    }
    acceptor_.bind(endpoint, ec);
    if (ec) fail("bind");
    acceptor_.listen(ws_net::socket_base::max_listen_connections, ec);
    if (ec) fail("listen");
    port_ = acceptor_.local_endpoint(ec).port();
    log_.info("listening", {{"host", opts_.host}, {"port", port_}});
    std::string why = "FLOCK_IO_URING=0";
    if (!opts_.io_uring || !batch_.open(why)) log_.info("writes go out with send(), one call each", {{"reason", why}});
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

inline ws_http::status ws_server::upgrade(ws_beast::tcp_stream& stream,
                                          ws_http::request<ws_http::string_body> const& req,
                                          ws_tcp::endpoint const& remote, ws_beast::flat_buffer& leftover) {
    // A page of another site may open a WebSocket here with the user's
    // cookies (cross-site WebSocket hijacking): only listed origins may.
    if (auto const origin = req[ws_http::field::origin];
        !origin.empty() && !opts_.origin_allowed(std::string_view(origin.data(), origin.size()))) {
        refused(&websocket_refusals::origin, remote, "origin not allowed");
        return ws_http::status::forbidden;
    }
    std::string const address = address_of(remote);
    if (gate_) {
        switch (gate_->enter(address)) {
        case connection_gate::verdict::admitted: break;
        case connection_gate::verdict::full:
            refused(&websocket_refusals::full, remote, "FLOCK_MAX_CONNECTIONS reached");
            return ws_http::status::service_unavailable;
        case connection_gate::verdict::address_full:
            refused(&websocket_refusals::address_full, remote, "FLOCK_MAX_CONNECTIONS_PER_IP reached");
            return ws_http::status::service_unavailable;
        }
    }
    connection_id const id = next_id_++;
    auto const target = std::string_view(req.target().data(), req.target().size());
    connection_info const info{format_endpoint(remote), query_param(target, "apiKey"), offered_subprotocols(req)};
    // Registered before on_open, so that send() and close() made inside it count.
    auto& c = *connections_.try_emplace(id, std::make_unique<ws_connection>(id, remote, opts_.max_send_queue_bytes))
                   .first->second;
    c.gated = gate_ != nullptr;
    auto const verdict = ask_core(id, info);
    if (!verdict.accept) {
        if (c.gated) gate_->leave(address);
        connections_.erase(id);
        refused(&websocket_refusals::unauthorized, remote, "refused by the core");
        return ws_http::status::unauthorized;
    }
    stream.expires_never();
    ++metrics_.opened;
    auto const key = req[ws_http::field::sec_websocket_key];
    begin(c, stream.release_socket(), ws_accept_response(std::string_view(key.data(), key.size()), verdict.subprotocol),
          leftover);
    return ws_http::status::switching_protocols;
}

inline void ws_server::refused(std::uint64_t websocket_refusals::*counter, ws_tcp::endpoint const& remote,
                               std::string_view why) {
    ++(refusals_.*counter);
    if (log_.enabled(log_level::info) && refusal_log_.should_log(address_of(remote), clock::now()))
        log_.info("connection refused", {{"remote", format_endpoint(remote)},
                                         {"reason", why},
                                         {"note", "further refusals of this address are not logged for a while"}});
}

inline open_verdict ws_server::ask_core(connection_id id, connection_info const& info) {
    open_verdict verdict;
    try {
        verdict = events_->on_open(id, info);
    } catch (std::exception const& e) {
        log_.error("on_open threw; connection refused", {{"id", id}, {"error", e.what()}});
        return {};
    }
    auto const& offered = info.subprotocols;
    if (!verdict.subprotocol.empty() &&
        std::find(offered.begin(), offered.end(), verdict.subprotocol) == offered.end()) {
        log_.warn("on_open chose a subprotocol the client did not offer; answering with none",
                  {{"id", id}, {"subprotocol", verdict.subprotocol}});
        verdict.subprotocol.clear();
    }
    return verdict;
}

// The core accepted: the 101 goes out ahead of every frame (those queued by
// on_open included), and reading starts.
inline void ws_server::begin(ws_connection& c, ws_tcp::socket socket, std::string response,
                             ws_beast::flat_buffer& leftover) {
    control_of(c).out = std::move(response);
    if (c.state == ws_state::opening) c.state = ws_state::open;
    c.heard = ticks_;
    keep_ticking();
    log_.debug("connection open", {{"id", c.id}, {"remote", format_endpoint(c.remote)}});
    // From here on the socket is the server's own: out of Asio's reactor, into the poller's set.
    boost::system::error_code ec;
    socket.non_blocking(true, ec);
    if (!ec) c.socket = ws_socket(socket.release(ec));
    if (!ec) poller_.add(c.socket, c.id, ec);
    if (ec) {
        finish(c, ec);
        return;
    }
    watch();
    mark_dirty(c);
    // A client may send frames right behind its request, before the 101.
    if (leftover.size() != 0) {
        auto const n = ws_net::buffer_copy(ws_net::buffer(read_buffer_.get(), ws_read_buffer_bytes), leftover.data());
        leftover.consume(n);
        metrics_.bytes_in += n;
        if (!take(c, {read_buffer_.get(), n}) || c.peer_closed) return;
    }
    read_available(c);
}

inline void ws_server::http_ended(std::uint64_t key) {
    http_sessions_.erase(key);
    check_done();
}

inline void ws_server::send(connection_id id, frame const& f) {
    auto* c = find(id);
    if (!c || (c->state != ws_state::opening && c->state != ws_state::open)) return;
    auto const pushed =
        c->queue.push(f, c->congested() ? send_queue::reader::congested : send_queue::reader::keeping_up);
    if (pushed == send_queue::push_result::conflated) ++metrics_.frames_conflated;
    if (pushed == send_queue::push_result::overflow) {
        ++metrics_.send_queue_overflows;
        log_.warn("send queue full; closing", {{"id", id},
                                               {"remote", format_endpoint(c->remote)},
                                               {"queued_bytes", c->queue.bytes()},
                                               {"frame_bytes", f.size()}});
        c->queue.drop_unsent();
        request_close(*c, close_code::try_again_later, "send queue full");
        return;
    }
    // Only cursors wait for the write delay; anything else goes out in this
    // turn's flush, and takes the cursors queued before it along.
    if (f.conflatable && opts_.write_delay.count() > 0) hold(*c);
    else mark_dirty(*c);
}

inline void ws_server::close(connection_id id, std::uint16_t code, std::string_view reason) {
    if (auto* c = find(id)) request_close(*c, code, reason);
}

inline void ws_server::stop(std::function<void()> done) {
    if (done) done_.push_back(std::move(done));
    if (!stopping_) {
        stopping_ = true;
        log_.info("stopping", {{"connections", connections_.size()}});
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        backoff_.cancel();
        // Sessions end (and leave the map) as their aborted operations complete.
        for (auto& [key, weak] : http_sessions_)
            if (auto s = weak.lock()) s->abort();
        for (auto& [id, c] : connections_) request_close(*c, close_code::going_away, "server shutting down");
    }
    check_done();
}

inline void ws_server::check_done() {
    if (!stopping_ || done_.empty()) return;
    if (!connections_.empty() || !http_sessions_.empty() || accept_pending_ || backoff_pending_) return;
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
    tick_.cancel();
    delay_timer_.cancel();
    auto https = std::move(http_sessions_);
    for (auto& [key, weak] : https)
        if (auto s = weak.lock()) s->abort();
    // The sockets close now and the connections go with the server (a read
    // or write still posted finds its socket closed and ends it). A gate
    // shared with other transports stops counting them now.
    poller_.cancel();
    for (auto& [id, c] : connections_) {
        c->socket.close();
        if (c->gated && gate_) gate_->leave(address_of(c->remote));
        c->gated = false;
    }
}

// ============================================================================
// ws_server: the sockets' events

inline void ws_server::watch() {
    if (watching_) return;
    watching_ = true;
    poller_.async_wait([self = shared_from_this()](boost::system::error_code ec) { self->on_events(ec); });
}

// Some sockets have news: input (or its end, or an error, which the read
// finds) and room to write for those waiting for it. The flush that follows
// writes everything their frames queued, in this same turn.
inline void ws_server::on_events(boost::system::error_code ec) {
    watching_ = false;
    if (!ec) {
        in_events_ = true;
        for (epoll_event const& ev : poller_.poll()) {
            auto* c = find(ev.data.u64);
            if (!c) continue;  // ended earlier in this batch
            if ((ev.events & EPOLLOUT) && c->awaiting_write) on_writable(*c);
            if (ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->input_ends = true;
            if ((ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !c->peer_closed && !c->read_posted)
                read_available(*c);
        }
        in_events_ = false;
        if (!dirty_.empty()) flush_dirty();
    }
    // Cancelled when the last connection ended, or by detach(): a connection
    // begun since still needs watching.
    if (events_ && !connections_.empty()) watch();
}

// ============================================================================
// ws_server: reading

inline void ws_server::on_readable(connection_id id) {
    auto* c = find(id);
    if (!c) return;
    c->read_posted = false;
    read_available(*c);
}

// Reads until the socket is drained, handling every complete frame. The
// poller reports the next bytes (edge-triggered: a read that stops short of
// drained must come back, as the posted read does).
inline void ws_server::read_available(ws_connection& c) {
    for (int reads = 0;; ++reads) {
        if (reads == ws_reads_per_turn) {  // not drained yet: go on after the others, once
            c.read_posted = true;
            ws_net::post(ex_, [self = shared_from_this(), id = c.id] { self->on_readable(id); });
            return;
        }
        boost::system::error_code ec;
        std::size_t const n = c.socket.read_some(read_buffer_.get(), ws_read_buffer_bytes, ec);
        if (ec == ws_net::error::would_block) break;
        if (ec) {
            finish(c, ec);
            return;
        }
        c.heard = ticks_;
        c.ping_sent = false;
        metrics_.bytes_in += n;
        if (!take(c, {read_buffer_.get(), n})) return;
        if (c.peer_closed) return;
        // A short read drained the socket, and the poller reports the next
        // bytes; but a FIN that came with the last of them (edge-triggered:
        // in the same event) shows only to the read after.
        if (n < ws_read_buffer_bytes && !c.input_ends) return;
    }
}

// Handles the frames in `bytes`. False when the connection ended meanwhile.
inline bool ws_server::take(ws_connection& c, std::span<char> bytes) {
    using result = ws_reader::result;
    while (!c.discarding) {
        auto const item = c.reader.next(bytes, opts_.max_frame_bytes);
        switch (item.what) {
        case result::need_more: return true;
        case result::message: deliver(c, item.payload, item.text); break;
        case result::ping: answer_ping(c, item.payload); break;
        case result::pong: break;  // any bytes count as a sign of life
        case result::close: return on_peer_close(c, item.code);
        case result::error: refuse_input(c, item.code, item.payload); break;
        }
    }
    return true;
}

inline void ws_server::deliver(ws_connection& c, std::string_view payload, bool text) {
    // After close() the core has made up its mind: later frames are dropped.
    if (c.state != ws_state::open || !events_) return;
    try {
        events_->on_frame(c.id, payload, text ? frame_kind::text : frame_kind::binary);
    } catch (std::exception const& e) {
        log_.error("on_frame threw; closing", {{"id", c.id}, {"error", e.what()}});
        request_close(c, close_code::internal_error, "internal error");
    }
}

inline void ws_server::answer_ping(ws_connection& c, std::string_view payload) {
    if (c.state != ws_state::open && c.state != ws_state::closing) return;
    auto& out = control_of(c).out;
    if (out.size() >= ws_max_control_backlog) return;
    out += ws_frame_bytes(ws_opcode::pong, payload);
    mark_dirty(c);
}

// The peer's close frame. False when that ended the connection.
inline bool ws_server::on_peer_close(ws_connection& c, std::uint16_t code) {
    control_of(c).code_received = code;
    if (c.state == ws_state::close_sent) {  // the answer to ours: the handshake is complete
        finish(c, {});
        return false;
    }
    // It reads no more: drop what waits, answer with its own code (RFC 6455, 5.5.1).
    c.queue.drop_unsent();
    request_close(c, code, {});
    c.peer_closed = true;
    mark_dirty(c);
    return true;
}

// The input broke the protocol, UTF-8 or the size limit: fail the connection
// with `code` and read no further frames. What the frames before the bad one
// were answered with (in the same read, say) still goes out ahead of the
// close frame: they were valid, and the queue is bounded.
inline void ws_server::refuse_input(ws_connection& c, std::uint16_t code, std::string_view why) {
    log_.debug("closing on bad input",
               {{"id", c.id}, {"remote", format_endpoint(c.remote)}, {"code", code}, {"reason", why},
                {"limit", opts_.max_frame_bytes}});
    c.discarding = true;
    request_close(c, code, why);
}

// ============================================================================
// ws_server: writing

inline void ws_server::mark_dirty(ws_connection& c) {
    if (c.dirty || c.awaiting_write) return;
    c.dirty = true;
    dirty_.push_back(c.id);
    if (flush_posted_ || in_events_) return;  // on_events flushes at its end
    // One flush for every connection dirtied in this turn of the loop: the
    // frames queued meanwhile leave together.
    flush_posted_ = true;
    ws_net::post(ex_, [self = shared_from_this()] { self->flush_dirty(); });
}

// The write delay: the connection is written when its first held cursor has
// waited options::write_delay, unless something else flushes it sooner.
inline void ws_server::hold(ws_connection& c) {
    if (c.dirty || c.awaiting_write || c.held) return;  // a write is coming anyway
    c.held = true;
    held_.emplace_back(clock::now() + opts_.write_delay, c.id);
    if (!delay_armed_) arm_delay();
}

// Releases every connection due within an eighth of the delay: one timer
// wake-up serves many connections, and none waits longer than the delay.
inline void ws_server::release_held() {
    auto const until = clock::now() + opts_.write_delay / 8;
    while (!held_.empty() && held_.front().first <= until) {
        if (auto* c = find(held_.front().second)) {
            c->held = false;
            mark_dirty(*c);
        }
        held_.pop_front();
    }
    if (!held_.empty()) arm_delay();
}

inline void ws_server::arm_delay() {
    delay_armed_ = true;
    delay_timer_.expires_at(held_.front().first);
    delay_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        self->delay_armed_ = false;
        if (!ec) self->release_held();
    });
}

inline void ws_server::flush_dirty() {
    flush_posted_ = false;
    std::swap(dirty_, flushing_);
    for (connection_id const id : flushing_) {
        auto* c = find(id);
        if (!c) continue;
        c->dirty = false;
        begin_write(*c);
        if (batch_.enabled()) queue_write(*c);
        else write_out(*c);
    }
    flushing_.clear();
    submit_writes();
}

// A connection's first write of this flush joins the batch. The batch is
// empty whenever the core can be called back (a connection ending, say), so
// nothing changes a queued connection before its result is accounted for.
inline void ws_server::queue_write(ws_connection& c) {
    if (!gather(c) || !batch_.fits(gather_.bytes())) {  // nothing to write (a close may end it), or too much
        connection_id const id = c.id;
        submit_writes();
        if (auto* still = find(id)) write_out(*still);  // the batch's results are handled: look again
        return;
    }
    batch_.add(c.socket.native_handle(), gather_.buffers(), gather_.bytes(), c.id);
    if (batch_.full()) submit_writes();
}

inline void ws_server::submit_writes() {
    if (batch_.empty()) return;
    auto const results = batch_.submit();
    if (!batch_.enabled()) log_.warn("io_uring refused a batch of writes; writes go out with send() from now on");
    // First account for every write, calling nothing back: each connection
    // is still as it was when its write was gathered, so it gathers again
    // into the same pieces. Then act on each.
    std::array<after_write, send_batch::capacity> next;
    for (std::size_t i = 0; i < results.size(); ++i) {
        auto& c = *find(results[i].tag);
        gather(c);
        next[i] = settle(c, results[i].bytes, results[i].ec);
    }
    for (std::size_t i = 0; i < results.size(); ++i)
        if (auto* c = find(results[i].tag)) act(*c, next[i], results[i].ec);
}

// Before a flush writes `c`.
inline void ws_server::begin_write(ws_connection& c) {
    if (!c.congested()) {  // caught up so far: the stall clock starts now, if at all
        c.drained = ticks_;
        c.unacked = 0xFFFFFFFF;
    }
}

// Writes what is queued, in as few gather writes as the buffer limit allows,
// until done or the socket is full.
inline void ws_server::write_out(ws_connection& c) {
    while (gather(c)) {
        gather_.coalesce();
        boost::system::error_code ec;
        std::size_t const n = c.socket.write_some(gather_.buffers(), ec);
        if (auto const next = settle(c, n, ec); next != after_write::more) {
            act(c, next, ec);
            return;
        }
    }
    written_out(c);
}

// One write of what gather_ holds returned `written` bytes, or `ec`: accounts
// for it, calling nothing back.
inline ws_server::after_write ws_server::settle(ws_connection& c, std::size_t written,
                                                boost::system::error_code const& ec) {
    if (written > 0) c.drained = ticks_;
    metrics_.bytes_out += written;
    if (ec == ws_net::error::would_block) return after_write::wait;
    if (ec) return after_write::failed;
    bool const cut = written < gather_.bytes();
    account(c, written);
    return cut ? after_write::wait : after_write::more;
}

inline void ws_server::act(ws_connection& c, after_write next, boost::system::error_code const& ec) {
    switch (next) {
    case after_write::more: write_out(c); break;  // the rest, if any, then the end of the queue
    case after_write::wait: wait_writable(c); break;
    case after_write::failed: finish(c, ec); break;
    }
}

// Everything queued is out.
inline void ws_server::written_out(ws_connection& c) {
    c.behind = false;
    if (c.state == ws_state::close_sent && c.peer_closed) {  // our answer to the peer's close is out
        finish(c, {});
        return;
    }
    if (c.state == ws_state::open && c.control && c.control->out.empty()) c.control.reset();
}

// Puts the next write together: a piece a write cut goes first (frames never
// interleave), then control frames, the queued frames, our close frame.
inline bool ws_server::gather(ws_connection& c) {
    using piece = ws_connection::piece;
    auto& g = gather_;
    g.clear();
    if (c.state == ws_state::close_sent) return false;  // nothing follows our close frame
    auto* ctl = c.control.get();
    std::size_t next = 0;  // the first queued frame not in this write
    switch (c.cut) {
    case piece::close: g.add_bytes(piece::close, ctl->close_frame, c.written); return true;
    case piece::control: g.add_bytes(piece::control, ctl->out, c.written); break;
    case piece::data: g.add_frame(c.queue[0], c.written); next = 1; break;
    case piece::none: break;
    }
    if (c.cut != piece::control && ctl && !ctl->out.empty()) g.add_bytes(piece::control, ctl->out, 0);
    for (; next < c.queue.size() && g.has_room(2); ++next) g.add_frame(c.queue[next], 0);
    if (c.state == ws_state::closing && next == c.queue.size() && g.has_room(1))
        g.add_bytes(piece::close, ctl->close_frame, 0);
    return !g.empty();
}

// `written` bytes of the last gather went out: drop what was sent whole,
// remember where the first unfinished piece was cut.
inline void ws_server::account(ws_connection& c, std::size_t written) {
    using piece = ws_connection::piece;
    for (auto const& p : gather_.pieces()) {
        if (written < p.size) {
            if (written == 0 && p.offset == 0) return;  // not started: nothing to remember
            if (p.kind == piece::data && !c.queue.writing()) c.queue.start_write();  // never replaced now
            c.cut = p.kind;
            c.written = p.offset + written;
            return;
        }
        written -= p.size;
        c.cut = piece::none;
        c.written = 0;
        switch (p.kind) {
        case piece::control: c.control->out.clear(); break;
        case piece::data: c.queue.finish_write(); break;
        case piece::close:
            c.state = ws_state::close_sent;
            c.control->deadline = ticks_ + close_ticks_ + 1;  // the peer has this long to answer
            // Failing the connection (1002, 1009): its input can no longer be
            // parsed, so its close reply would never be recognised. Send FIN
            // after our close frame (the peer then sees close + EOF and ends
            // at once) and drain its input until EOF, so no RST can destroy
            // the close frame before the peer read it.
            if (c.discarding) {
                c.socket.shutdown_send();
            }
            break;
        case piece::none: break;
        }
    }
}

// The poller reports room to write; the recheck makes sure room that came
// before this wait is reported too.
inline void ws_server::wait_writable(ws_connection& c) {
    c.awaiting_write = c.behind = true;
    boost::system::error_code ec;
    poller_.recheck(c.socket, c.id, ec);
    if (ec) finish(c, ec);
}

inline void ws_server::on_writable(ws_connection& c) {
    c.awaiting_write = false;
    mark_dirty(c);  // joins the next flush, with whatever was queued meanwhile
}

// ============================================================================
// ws_server: closing and the tick

inline void ws_server::request_close(ws_connection& c, std::uint16_t code, std::string_view reason) {
    if (c.state != ws_state::opening && c.state != ws_state::open) return;
    auto& ctl = control_of(c);
    ctl.close_frame = ws_frame_bytes(ws_opcode::close, ws_close_payload(code, reason));
    ctl.code_sent = code;
    ctl.deadline = ticks_ + close_ticks_ + 1;  // for the queued frames to drain
    c.state = ws_state::closing;
    mark_dirty(c);
}

// The connection is gone: forget it, tell the core. `c` dies here.
inline void ws_server::finish(ws_connection& c, boost::system::error_code ec) {
    connection_id const id = c.id;
    if (log_.enabled(log_level::debug)) {
        auto const* ctl = c.control.get();
        log_.debug("connection closed", {{"id", id},
                                         {"remote", format_endpoint(c.remote)},
                                         {"code_sent", ctl ? ctl->code_sent : 0},
                                         {"code_received", ctl ? ctl->code_received : 0},
                                         {"error", ec ? ec.message() : std::string("none")}});
    }
    if (c.gated && gate_) gate_->leave(address_of(c.remote));
    {  // by the code of the close handshake; 1006 when there was none
        auto const* ctl = c.control.get();
        std::uint16_t const code = !ctl ? 1006 : ctl->code_sent ? ctl->code_sent : ctl->code_received ? ctl->code_received : 1006;
        metrics_.count_close(code);
    }
    connections_.erase(id);  // closes the socket, which leaves the poller's set
    if (connections_.empty()) {
        tick_.cancel();
        ticking_ = false;
        poller_.cancel();
    }
    if (events_) {
        try {
            events_->on_close(id);
        } catch (std::exception const& e) {
            log_.error("on_close threw", {{"id", id}, {"error", e.what()}});
        }
    }
    check_done();
}

inline void ws_server::keep_ticking() {
    if (ticking_) return;
    ticking_ = true;
    arm_tick();
}

inline void ws_server::arm_tick() {
    tick_.expires_after(tick_interval_);
    tick_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec) self->on_tick();
    });
}

// A congested connection whose socket took no bytes for the stall limit.
// Writability is reported only once a good part of the send buffer is free,
// so a slow reader can drain for seconds between two reports; the bytes the
// kernel still holds for the peer (SIOCOUTQ) shrink as soon as it reads.
inline bool ws_server::stalled(ws_connection& c) {
#ifdef SIOCOUTQ
    int held = 0;
    if (::ioctl(c.socket.native_handle(), SIOCOUTQ, &held) == 0) {
        auto const now_held = static_cast<std::uint32_t>(held);
        if (now_held < c.unacked) c.drained = ticks_;  // the peer read some
        c.unacked = now_held;
    }
#endif
    return ticks_ - c.drained > stall_ticks_;
}

// Every connection's timers in one pass: a comparison of tick counts each.
inline void ws_server::on_tick() {
    ++ticks_;
    expired_.clear();
    for (auto& [id, ptr] : connections_) {
        auto& c = *ptr;
        if (c.state == ws_state::closing || c.state == ws_state::close_sent) {
            if (tick_reached(c.control->deadline)) expired_.push_back(id);
            continue;
        }
        if (c.state != ws_state::open) continue;
        if (stall_ticks_ && c.awaiting_write && stalled(c)) {
            stalled_.push_back(id);
            continue;
        }
        std::uint32_t const silent = ticks_ - c.heard;
        if (silent > idle_ticks_) {
            expired_.push_back(id);
        } else if (silent > ping_ticks_ && !c.ping_sent) {
            c.ping_sent = true;
            control_of(c).out += ws_frame_bytes(ws_opcode::ping, {});
            mark_dirty(c);
        }
    }
    for (connection_id const id : stalled_) {
        auto* c = find(id);
        if (!c) continue;
        ++refusals_.write_stalls;
        if (log_.enabled(log_level::info) && refusal_log_.should_log(address_of(c->remote), clock::now()))
            log_.info("closing a connection that reads nothing", {{"id", id},
                                                                   {"remote", format_endpoint(c->remote)},
                                                                   {"queued_bytes", c->queue.bytes()},
                                                                   {"limit_ms", opts_.write_stall.count()}});
        // Its frames will never be read: drop them, and give the close frame
        // one tick to get out before the connection goes (so the room hears
        // user:left at once, not after a close handshake that cannot happen).
        c->queue.drop_unsent();
        request_close(*c, close_code::policy_violation, "write stalled: the client reads nothing");
        c->control->deadline = ticks_ + 1;
    }
    stalled_.clear();
    for (connection_id const id : expired_) {
        auto* c = find(id);
        if (!c) continue;
        log_.debug(c->state == ws_state::open ? "no answer to ping; dropping connection"
                                              : "close not finished in time; dropping connection",
                   {{"id", id}, {"queued_bytes", c->queue.bytes()}});
        finish(*c, ws_net::error::timed_out);
    }
    if (connections_.empty()) ticking_ = false;
    else arm_tick();
}

// ============================================================================
// http_session

inline void http_session::read_request() {
    parser_.emplace();
    parser_->header_limit(max_http_header_bytes);
    parser_->body_limit(max_http_body_bytes);
    stream_.expires_after(srv_->opts().handshake_timeout);
    ws_http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](boost::system::error_code ec,
                                                                                       std::size_t) {
        self->on_header(ec);
    });
}

// The header is in: a body, if any, is read only with a Content-Length.
// Chunked bodies are refused unread: no route needs one, and Beast 1.81's
// chunk parser asserts on some trickled trailers (docs/fuzzing.md).
inline void http_session::on_header(boost::system::error_code ec) {
    if (ended_) return;
    if (ec || parser_->is_done()) return on_read(ec);
    if (parser_->chunked()) {
        srv_->refused(&websocket_refusals::bad_upgrade, remote_, "chunked request body");
        respond(ws_http::status::length_required, "chunked request bodies are not accepted\n", "text/plain", false);
        return;
    }
    ws_http::async_read(stream_, buffer_, *parser_,
                        [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_read(ec); });
}

inline void http_session::on_read(boost::system::error_code ec) {
    if (ended_) return;
    if (ec == ws_http::error::header_limit) {
        // RFC 6585: say why rather than reset the connection.
        srv_->refused(&websocket_refusals::headers_too_large, remote_, "request header fields too large");
        respond(ws_http::status::request_header_fields_too_large, "request header fields too large\n", "text/plain",
                false);
        return;
    }
    if (ec) {
        if (ec == ws_beast::error::timeout)
            srv_->log().debug("http request timed out", {{"remote", format_endpoint(remote_)}});
        else if (ec != ws_http::error::end_of_stream && ec != ws_net::error::operation_aborted)
            srv_->log().debug("http read failed", {{"remote", format_endpoint(remote_)}, {"error", ec.message()}});
        end();
        return;
    }
    auto const& req = parser_->get();
    if (asks_for_websocket(req)) {
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
    if (route(req, keep_alive)) return;
    respond(ws_http::status::not_found, "not found\n", "text/plain", keep_alive);
}

// options::http_routes, in order. A route may answer later, from any thread:
// the answer is posted back to this session's loop.
inline bool http_session::route(ws_http::request<ws_http::string_body> const& req, bool keep_alive) {
    auto const& routes = srv_->opts().http_routes;
    if (routes.empty()) return false;
    http_request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.path = std::string(target_path(r.target));
    if (auto const q = r.target.find('?'); q != std::string::npos)
        r.query = r.target.substr(q + 1, r.target.find('#', q) - q - 1);
    for (auto const& f : req) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    r.body = req.body();
    r.remote_address = address_of(remote_);  // an IPv4 client of a dual-stack listener as IPv4
    http_responder reply = [self = shared_from_this(), keep_alive](http_response res) {
        ws_net::post(self->stream_.get_executor(), [self, keep_alive, res = std::move(res)]() mutable {
            self->answer(std::move(res), keep_alive);
        });
    };
    for (auto const& route : routes) {
        bool taken = false;
        try {
            taken = route(r, reply);
        } catch (std::exception const& e) {
            srv_->log().error("http route threw", {{"path", r.path}, {"error", e.what()}});
            respond(ws_http::status::internal_server_error, "internal error\n", "text/plain", false);
            return true;
        }
        if (taken) return true;
    }
    return false;
}

inline void http_session::answer(http_response res, bool keep_alive) {
    if (ended_) return;
    prepare(static_cast<ws_http::status>(res.status), std::move(res.body), res.content_type, keep_alive);
    for (auto& [name, value] : res.headers) res_.insert(name, value);
    write_response(keep_alive);
}

inline void http_session::upgrade() {
    if (srv_->stopping() || !srv_->events()) {
        respond(ws_http::status::service_unavailable, "shutting down\n", "text/plain", false);
        return;
    }
    auto const& req = parser_->get();
    switch (check_ws_upgrade(req)) {
    case ws_upgrade_check::ok: break;
    case ws_upgrade_check::bad_request:
        srv_->refused(&websocket_refusals::bad_upgrade, remote_, "bad websocket upgrade");
        respond(ws_http::status::bad_request, "bad websocket upgrade\n", "text/plain", false);
        return;
    case ws_upgrade_check::unsupported_version:
        srv_->refused(&websocket_refusals::bad_upgrade, remote_, "unsupported websocket version");
        prepare(ws_http::status::upgrade_required, "websocket version 13 only\n", "text/plain", false);
        res_.set(ws_http::field::sec_websocket_version, "13");
        write_response(false);
        return;
    }
    switch (auto const status = srv_->upgrade(stream_, req, remote_, buffer_)) {
    case ws_http::status::switching_protocols:
        parser_.reset();
        ended_ = true;
        srv_->http_ended(key_);
        return;
    case ws_http::status::forbidden: respond(status, "origin not allowed\n", "text/plain", false); return;
    case ws_http::status::service_unavailable:
        respond(status, "too many connections\n", "text/plain", false);
        return;
    default: respond(ws_http::status::unauthorized, "unauthorized\n", "text/plain", false); return;
    }
}

inline void http_session::prepare(ws_http::status status, std::string body, std::string_view content_type,
                                  bool keep_alive) {
    auto const& req = parser_->get();
    res_ = {};
    res_.version(req.version() == 10 ? 10 : 11);  // 11 also for a request cut short
    res_.result(status);
    res_.set(ws_http::field::server, "flock");
    res_.set(ws_http::field::content_type, content_type);
    res_.keep_alive(keep_alive);
    res_.body() = std::move(body);
    res_.prepare_payload();
    if (srv_->log().enabled(log_level::trace))
        srv_->log().trace("http", {{"method", std::string_view(req.method_string().data(), req.method_string().size())},
                                   {"target", std::string_view(req.target().data(), req.target().size())},
                                   {"status", static_cast<unsigned>(status)},
                                   {"remote", format_endpoint(remote_)}});
}

inline void http_session::write_response(bool keep_alive) {
    stream_.expires_after(srv_->opts().handshake_timeout);
    ws_http::async_write(stream_, res_,
                         [self = shared_from_this(), keep_alive](boost::system::error_code ec, std::size_t) {
                             self->on_write(ec, keep_alive);
                         });
}

inline void http_session::on_write(boost::system::error_code ec, bool keep_alive) {
    if (ended_) return;
    if (ec || srv_->stopping()) {
        end();
        return;
    }
    if (!keep_alive) {
        // FIN behind the response, then read until the client's EOF: closing
        // with its unread bytes (a refused request's body or headers) pending
        // would send a RST, which can destroy the response before it is read.
        boost::system::error_code ignored;
        stream_.socket().shutdown(ws_tcp::socket::shutdown_send, ignored);
        buffer_.clear();
        drain();
        return;
    }
    res_ = {};
    read_request();
}

inline void http_session::drain() {
    stream_.expires_after(srv_->opts().handshake_timeout);
    stream_.async_read_some(buffer_.prepare(1024), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
        if (ec || self->ended_) return self->end();  // EOF, the deadline, or stop()
        self->drain();
    });
}

inline void http_session::end() {
    if (ended_) return;
    ended_ = true;
    boost::system::error_code ignored;
    stream_.socket().close(ignored);
    srv_->http_ended(key_);
}

}  // namespace flk::detail
