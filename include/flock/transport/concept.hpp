// The Transport policy: how bytes reach clients.
#pragma once

#include <flock/frame.hpp>
#include <flock/options.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flk {

/// Identifies one client connection for the lifetime of a transport. Never reused.
using connection_id = std::uint64_t;

/// What a transport knows about a connection when it opens.
struct connection_info {
    std::string remote;                     ///< peer address, for logs
    std::optional<std::string> api_key;     ///< `?apiKey=` of the upgrade URL, when present
    std::vector<std::string> subprotocols;  ///< offered in Sec-WebSocket-Protocol, in order
};

/// The core's answer to a connection request.
struct open_verdict {
    bool accept = false;
    std::string subprotocol;  ///< one of those offered, echoed in the upgrade response; empty for none
};

/// What a transport reports to the core. All calls happen on the executor the
/// transport was built with; none may be made after `on_close` for that id.
class transport_events {
public:
    /// A client asks to connect. A refusal is answered with HTTP 401.
    virtual open_verdict on_open(connection_id id, connection_info const& info) = 0;
    /// A complete message arrived.
    virtual void on_frame(connection_id id, std::string_view payload, frame_kind kind) = 0;
    /// The connection is gone, whoever closed it. Sends to `id` are ignored from now on.
    virtual void on_close(connection_id id) = 0;
    /// The body of `GET /health`, a JSON object.
    virtual std::string health() = 0;

protected:
    ~transport_events() = default;
};

using steady_time = std::chrono::steady_clock::time_point;

/// A Transport accepts connections and moves frames.
///
/// - Built from `(executor, options const&, transport_events&)`.
/// - `start()` begins accepting; `stop(done)` stops accepting, closes every
///   connection with 1001 after its queued frames, and calls `done` once all are gone.
/// - `send(id, frame)` queues a frame; it never blocks and never calls back
///   into transport_events synchronously. Unknown ids are ignored.
/// - `close(id, code, reason)` sends the queued frames, then a close frame.
/// - `now()` is the clock the core measures windows and timeouts with
///   (the test transport's clock is moved by hand).
template <class T>
concept Transport =
    std::constructible_from<T, boost::asio::any_io_executor, options const&, transport_events&> &&
    requires(T& t, connection_id id, frame const& f, std::uint16_t code, std::string_view reason,
             std::function<void()> done) {
        t.start();
        t.stop(std::move(done));
        t.send(id, f);
        t.close(id, code, reason);
        { t.now() } -> std::same_as<steady_time>;
    };

}  // namespace flk
