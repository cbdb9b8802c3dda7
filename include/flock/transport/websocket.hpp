// flk::websocket_transport: the WebSocket Transport. One TCP port serves
// plain HTTP (`GET /health`) and WebSocket upgrades on any path. Beast reads
// the HTTP requests; the RFC 6455 framing is flock's own (detail/ws_frame.hpp),
// built for fan-out: frames queued on a connection during one turn of the
// event loop leave in one gather write, and an idle connection holds no
// buffers (see detail/ws_server.hpp).
//
//     boost::asio::io_context ioc;
//     flk::websocket_transport t(ioc.get_executor(), opts, events);
//     t.start();              // binds opts.host:opts.port (0 picks a free port), throws on failure
//     ioc.run();
//
// Threading: single-threaded. Every member function, and every call into
// transport_events, runs on the executor given to the constructor (an
// io_context run by one thread). To call it from another thread, post.
//
// Lifetime: destroy it on that thread, or once the io_context no longer
// runs. Destroying it without stop() drops every connection without calling
// on_close; call stop(done) and wait for done for an orderly shutdown.
//
// The protocol, as served: RFC 6455 version 13, no extensions (no
// permessage-deflate); a subprotocol when on_open names one the client
// offered. Messages up to options::max_frame_bytes (fragments reassembled;
// 1009 beyond), protocol errors closed with 1002, pings answered. A
// connection silent for half of options::idle_timeout is pinged and dropped
// after the whole of it. Text messages and close reasons that are not UTF-8
// are closed with 1007. Frames that arrived before a bad one are handled
// and answered before the close frame.
//
// The upgrade is checked strictly (400: not GET over HTTP/1.1, no
// `Connection: upgrade`, a key that is not base64 of 16 bytes; 426: not
// version 13; 431: request headers over 8 KiB), then against
// options::allowed_origins (403) and the connection limits (503).
#pragma once

#include <flock/detail/ws_server.hpp>
#include <flock/frame.hpp>
#include <flock/options.hpp>
#include <flock/transport/concept.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace flk {

class websocket_transport {
public:
    /// Nothing is bound before start(). `events` must outlive the transport.
    websocket_transport(boost::asio::any_io_executor ex, options const& opts, transport_events& events)
        : impl_(std::make_shared<detail::ws_server>(std::move(ex), opts, events)) {}

    websocket_transport(websocket_transport const&) = delete;
    websocket_transport& operator=(websocket_transport const&) = delete;
    websocket_transport(websocket_transport&&) noexcept = default;
    websocket_transport& operator=(websocket_transport&&) = delete;

    ~websocket_transport() {
        if (impl_) impl_->detach();
    }

    /// Binds `host:port` and starts accepting. Throws std::runtime_error naming
    /// the address when it cannot listen. Does nothing after stop().
    void start() { impl_->start(); }

    /// Stops accepting, closes every connection with 1001 (going away) after
    /// its queued frames, and calls `done` (posted, never from inside stop)
    /// once every connection is gone, each with its on_close, and the
    /// listener is closed. Safe before start() and more than once: every
    /// `done` given is called.
    void stop(std::function<void()> done = {}) { impl_->stop(std::move(done)); }

    /// Queues `f` on connection `id`. Unknown, closing or closed ids are
    /// ignored. Past options::max_send_queue_bytes the connection's queue is
    /// dropped and it is closed with 1013 (try again later). Never calls
    /// transport_events.
    void send(connection_id id, frame const& f) { impl_->send(id, f); }

    /// Sends the frames already queued on `id`, then a close frame with
    /// `code` and `reason` (cut to 123 bytes). Later sends are ignored and
    /// later incoming frames are dropped. on_close follows once the
    /// connection is gone (after the close handshake, or at the latest about
    /// two options::handshake_timeout later).
    void close(connection_id id, std::uint16_t code, std::string_view reason) { impl_->close(id, code, reason); }

    steady_time now() const { return std::chrono::steady_clock::now(); }

    /// The port bound by start() (the chosen one when options::port is 0); 0 before.
    std::uint16_t port() const noexcept { return impl_->port(); }

    /// Open WebSocket connections (each one on_open accepted and not yet on_close'd).
    std::size_t connection_count() const noexcept { return impl_->connection_count(); }

    /// Upgrades refused since start(), by answer (400/426, 431, 401, 403, 503).
    websocket_refusals const& refusals() const noexcept { return impl_->refusals(); }

    /// Connections, bytes, conflation and overflows counted since start() (flock/metrics.hpp).
    transport_metrics const& metrics() const noexcept { return impl_->metrics(); }

private:
    std::shared_ptr<detail::ws_server> impl_;
};

static_assert(Transport<websocket_transport>);

}  // namespace flk
