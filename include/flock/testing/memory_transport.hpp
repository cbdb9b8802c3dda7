// A transport for unit tests: no sockets. A test opens clients, pushes frames
// into them and reads what the server sent back; time moves only when the
// test says so.
//
// Like a real transport it never calls back into the core from inside
// send() or close(): a close the core asks for is reported (on_close) once
// the call that caused it returns. And it queues as the WebSocket transport
// does, through the same detail::send_queue: frames wait in the client's
// queue until the test reads them, a reader that keeps up gets every frame,
// and one that stopped reading (stop_reading()) is congested, so its stale
// cursor frames are conflated and its queue is bounded (1013 past it).
#pragma once

#include <flock/detail/send_queue.hpp>
#include <flock/transport/concept.hpp>

#include <boost/json/parse.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flk::testing {

class memory_transport {
public:
    class client {
    public:
        connection_id id() const noexcept { return id_; }
        /// False once closed, by either side, or when the server refused it.
        bool is_open() const noexcept { return open_; }
        bool refused() const noexcept { return refused_; }
        /// The close code the server sent, if it closed this client.
        std::optional<std::uint16_t> close_code() const noexcept { return close_code_; }
        std::string const& close_reason() const noexcept { return close_reason_; }

        /// Sends a text frame to the server.
        void send(std::string_view text) { push(text, frame_kind::text); }
        void send_binary(std::string_view bytes) { push(bytes, frame_kind::binary); }
        /// The client goes away (TCP reset, tab closed).
        void disconnect() {
            if (!open_) return;
            open_ = false;
            owner_->events_.on_close(id_);
            owner_->drain();
        }

        /// The client stops reading its socket: what the server sends stays
        /// in its send queue, and the connection counts as congested.
        void stop_reading() noexcept { reading_ = false; }
        /// It reads again: the next frames()/take() gets what was queued.
        void resume_reading() noexcept { reading_ = true; }
        /// Frames waiting in the server's send queue for this client.
        std::size_t queued() const noexcept { return queue_.size(); }

        /// Every frame received so far, not yet taken. The frames are the
        /// server's own objects, so a test can see that a broadcast was shared.
        std::vector<frame> const& frames() {
            read();
            return inbox_;
        }
        /// Takes the received frames as text.
        std::vector<std::string> take() {
            std::vector<std::string> out;
            for (auto const& f : frames()) out.emplace_back(f.view());
            inbox_.clear();
            return out;
        }
        /// Takes the received frames parsed as JSON objects (json_codec).
        std::vector<boost::json::object> take_json() {
            std::vector<boost::json::object> out;
            for (auto const& f : frames()) out.push_back(boost::json::parse(f.view()).as_object());
            inbox_.clear();
            return out;
        }

    private:
        friend class memory_transport;
        void push(std::string_view bytes, frame_kind kind) {
            if (!open_) return;
            owner_->events_.on_frame(id_, bytes, kind);
            owner_->drain();
        }

        explicit client(std::size_t max_queue_bytes) : queue_(max_queue_bytes) {}

        // The socket takes what the queue holds, in order, while reading.
        void read() {
            while (reading_ && queue_.ready()) {
                inbox_.push_back(queue_.start_write());
                queue_.finish_write();
            }
        }

        memory_transport* owner_ = nullptr;
        connection_id id_ = 0;
        bool open_ = true;
        bool refused_ = false;
        bool reading_ = true;
        std::optional<std::uint16_t> close_code_;
        std::string close_reason_;
        detail::send_queue queue_;
        std::vector<frame> inbox_;
    };

    memory_transport(boost::asio::any_io_executor, options const& opts, transport_events& events)
        : events_(events), max_queue_bytes_(opts.max_send_queue_bytes) {}

    // --- the Transport policy -------------------------------------------------
    void start() {}
    void stop(std::function<void()> done) {
        for (auto& [id, c] : clients_) close(id, close_code::going_away, "server stopping");
        drain();
        if (done) done();
    }
    void send(connection_id id, frame const& f) {
        auto* c = find_open(id);
        if (!c || c->close_code_) return;
        using reader = detail::send_queue::reader;
        if (c->queue_.push(f, c->reading_ ? reader::keeping_up : reader::congested) ==
            detail::send_queue::push_result::overflow) {
            c->queue_.drop_unsent();
            close(id, close_code::try_again_later, "send queue full");
        }
    }
    void close(connection_id id, std::uint16_t code, std::string_view reason) {
        auto* c = find_open(id);
        if (!c || c->close_code_) return;
        c->close_code_ = code;
        c->close_reason_ = reason;
        closing_.push_back(id);
    }
    steady_time now() const noexcept { return now_; }

    // --- what a test does -----------------------------------------------------
    /// Opens a client; check refused() when API keys are configured.
    client& connect(connection_info info = {}) {
        auto id = next_id_++;
        auto& c = *clients_.emplace(id, std::unique_ptr<client>(new client(max_queue_bytes_))).first->second;
        c.owner_ = this;
        c.id_ = id;
        if (!events_.on_open(id, info).accept) {
            c.open_ = false;
            c.refused_ = true;
        }
        return c;
    }
    /// Moves the transport's clock forward.
    void advance(std::chrono::steady_clock::duration d) { now_ += d; }
    /// The body the transport would answer `GET /health` with.
    std::string health() { return events_.health(); }

private:
    client* find_open(connection_id id) {
        auto it = clients_.find(id);
        return it != clients_.end() && it->second->open_ ? it->second.get() : nullptr;
    }
    // Reports the closes the core asked for, after the call that asked returned.
    void drain() {
        while (!closing_.empty()) {
            auto id = closing_.front();
            closing_.erase(closing_.begin());
            if (auto* c = find_open(id)) {
                c->open_ = false;
                events_.on_close(id);
            }
        }
    }

    transport_events& events_;
    std::size_t max_queue_bytes_;
    std::map<connection_id, std::unique_ptr<client>> clients_;
    std::vector<connection_id> closing_;
    connection_id next_id_ = 1;
    steady_time now_ = steady_time{} + std::chrono::hours(1);
};

static_assert(Transport<memory_transport>);

}  // namespace flk::testing
