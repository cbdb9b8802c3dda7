// A transport for unit tests: no sockets. A test opens clients, pushes frames
// into them and reads what the server sent back; time moves only when the
// test says so.
//
// Like a real transport it never calls back into the core from inside
// send() or close(): a close the core asks for is reported (on_close) once
// the call that caused it returns.
#pragma once

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

        /// Every frame received so far, not yet taken. The frames are the
        /// server's own objects, so a test can see that a broadcast was shared.
        std::vector<frame> const& frames() const noexcept { return inbox_; }
        /// Takes the received frames as text.
        std::vector<std::string> take() {
            std::vector<std::string> out;
            for (auto const& f : inbox_) out.emplace_back(f.view());
            inbox_.clear();
            return out;
        }
        /// Takes the received frames parsed as JSON objects (json_codec).
        std::vector<boost::json::object> take_json() {
            std::vector<boost::json::object> out;
            for (auto const& f : inbox_) out.push_back(boost::json::parse(f.view()).as_object());
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

        memory_transport* owner_ = nullptr;
        connection_id id_ = 0;
        bool open_ = true;
        bool refused_ = false;
        std::optional<std::uint16_t> close_code_;
        std::string close_reason_;
        std::vector<frame> inbox_;
    };

    memory_transport(boost::asio::any_io_executor, options const&, transport_events& events)
        : events_(events) {}

    // --- the Transport policy -------------------------------------------------
    void start() {}
    void stop(std::function<void()> done) {
        for (auto& [id, c] : clients_) close(id, close_code::going_away, "server stopping");
        drain();
        if (done) done();
    }
    void send(connection_id id, frame const& f) {
        if (auto* c = find_open(id); c && !c->close_code_) c->inbox_.push_back(f);
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
        auto& c = *clients_.emplace(id, std::make_unique<client>()).first->second;
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
    std::map<connection_id, std::unique_ptr<client>> clients_;
    std::vector<connection_id> closing_;
    connection_id next_id_ = 1;
    steady_time now_ = steady_time{} + std::chrono::hours(1);
};

static_assert(Transport<memory_transport>);

}  // namespace flk::testing
