// One simulated user: a TCP socket upgraded to WebSocket by hand, then spoken
// to with raw frames. Reads land in the worker's shared 64 KiB buffer and are
// parsed many frames at a time; writes go straight to the socket (non-blocking)
// and only queue when the kernel will not take them.
//
// Asio connects the socket; then it joins the worker's own edge-triggered
// epoll set (flock's ws_poller, as in the server), so that a read costs its
// recv and not also the epoll_ctl with which Asio re-arms a descriptor on
// every wait: a fifth of the generator's CPU, which caps what a machine of
// two cores can measure.
#pragma once

#include "codec.hpp"
#include "options.hpp"
#include "stats.hpp"
#include "target.hpp"
#include "ws_wire.hpp"

#include <flock/detail/ws_poller.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace load {

/// Read-only settings shared by every worker.
struct run_config {
    options const& opts;
    codec const& wire;
    std::vector<target> const& targets;
    std::string run_id;  ///< makes room ids unique to this run
    run_clock const& clock;
    run_control const& control;
};

/// What the connections of one worker thread share.
struct worker_context {
    worker_context(run_config const& c, unsigned seed, flk::detail::ws_poller& p) : cfg(c), poller(p), rng(seed) {}

    run_config const& cfg;
    flk::detail::ws_poller& poller;  ///< the worker's connections, once connected
    worker_stats stats;
    histogram recent_latency;      ///< for the live display
    std::vector<char> buffer;      ///< every read lands here
    std::string payload, wire;     ///< scratch for encoding
    std::mt19937_64 rng;
    std::int64_t read_time_us = 0;  ///< when the bytes being parsed were read
    bool read_in_window = false;

    // Live counts of connections, published for the display.
    std::uint64_t open = 0, joined = 0, failed = 0, unsettled = 0;
};

class connection {
public:
    /// Connection `id` of the run, the worker's `index`-th; `checked`: read
    /// message content. Ids from --connections on are churning users
    /// (--churn), never checked.
    connection(boost::asio::io_context& io, worker_context& ctx, std::uint32_t index, std::uint32_t id, bool checked)
        : ctx_(ctx), socket_(io), index_(index), id_(id), checked_(checked && id < ctx.cfg.opts.connections),
          churner_(id >= ctx.cfg.opts.connections) {
        auto const& o = ctx.cfg.opts;
        if (churner_) {
            room_id_ = "c" + ctx.cfg.run_id + "-" + std::to_string((id - o.connections) / o.room_size);
            mask_key_ = static_cast<std::uint32_t>(ctx.rng());
            return;
        }
        room_base_ = id / o.room_size * o.room_size;
        slot_ = id - room_base_;
        members_ = std::min(o.room_size, o.connections - room_base_);
        if (checked) {
            peers_.resize(members_);
            session_ = ctx.cfg.wire.make_session();
        }
        room_id_ = "r" + ctx.cfg.run_id + "-" + std::to_string(id / o.room_size);
        mask_key_ = static_cast<std::uint32_t>(ctx.rng());
    }

    connection(connection const&) = delete;
    connection& operator=(connection const&) = delete;

    void start(std::int64_t now) {
        state_ = state::connecting;
        deadline_us_ = now + static_cast<std::int64_t>(ctx_.cfg.opts.connect_timeout_s * 1e6);
        auto const& t = ctx_.cfg.targets[id_ % ctx_.cfg.targets.size()];
        socket_.async_connect(t.endpoint, [this, g = generation_](boost::system::error_code ec) {
            if (g == generation_) on_connect(ec);
        });
    }

    /// Called once per schedule period: the user's cursor move and, when
    /// due, its heartbeat. A churning user whose time is up leaves instead,
    /// and comes back at once on a new connection.
    void visit(std::int64_t now) {
        if (churner_ && state_ != state::idle && now >= cycle_at_us_) return cycle(now);
        if (state_ != state::joined) return;
        if (!ctx_.cfg.opts.idle) send_move();
        if (now >= next_heartbeat_us_ && now < ctx_.cfg.control.window_end_us.load(std::memory_order_relaxed)) {
            ctx_.payload.clear();
            ctx_.cfg.wire.encode_heartbeat(ctx_.payload, room_id_);
            ++ctx_.stats.heartbeats_sent;
            next_heartbeat_us_ += heartbeat_interval_us();
            send_frame(ctx_.cfg.wire.frame_opcode(), ctx_.payload);
        }
    }

    /// Gives up on a connection that has not joined by its deadline.
    void check_deadline(std::int64_t now) {
        if (state_ == state::connecting || state_ == state::upgrading || state_ == state::joining)
            if (now > deadline_us_) lose(std::string("timeout while ") + state_name());
    }

    /// The worker's index of the connection and its socket's generation,
    /// as the poller reports them.
    std::uint64_t poll_key() const { return std::uint64_t{generation_} << 32 | index_; }
    static std::uint32_t index_of(std::uint64_t key) { return static_cast<std::uint32_t>(key); }

    /// The poller has news of the socket behind `key`: input (or its end, or
    /// an error, which the read finds), or room to write.
    void on_events(std::uint64_t key, std::uint32_t events) {
        if (key != poll_key() || state_ == state::closed) return;  // a socket of an earlier cycle
        if ((events & EPOLLOUT) && !outbox_.empty()) on_writable();
        if (state_ == state::closed) return;
        // With edge-triggered events, an end of input that came with the last
        // bytes is reported once: read on past short reads to find it.
        bool const ends = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
        if ((events & EPOLLIN) || ends) on_readable(ends);
    }

    /// End of the run: a polite close frame, then the socket goes. One that
    /// has not joined by now counts as failed.
    void shutdown() {
        if (state_ == state::closed) return;
        if (churner_) {
            if (state_ == state::joined) send_frame(ws::opcode::close, ws::close_payload(1000));
            return close_socket();
        }
        if (state_ != state::joined) return lose(std::string("still ") + state_name() + " at the end of the run");
        send_frame(ws::opcode::close, ws::close_payload(1000));
        close_socket();
    }

    // Results, read once the worker has stopped.
    std::uint32_t id() const { return id_; }
    bool churner() const { return churner_; }
    bool checked() const { return checked_; }
    std::uint32_t room_base() const { return room_base_; }
    std::uint32_t slot() const { return slot_; }
    bool joined_before(std::int64_t t) const { return joined_us_ >= 0 && joined_us_ < t; }
    std::uint64_t moves_in_window() const { return moves_in_window_; }
    /// Unique cursor updates sent in the window that came from room member `slot`.
    std::uint64_t delivered_from(std::uint32_t slot) const { return peers_[slot].delivered_in_window; }
    std::uint32_t room_members() const { return members_; }

    /// The longest silence between two cross-instance moves read in the
    /// window (end_us = -1: none came after the last one before `window_end_us`).
    struct silence {
        std::int64_t start_us = -1, end_us = -1, end_sent_us = -1;
        std::int64_t length_us() const { return start_us < 0 ? 0 : end_us - start_us; }
    };
    silence longest_cross_gap(std::int64_t window_end_us) const {
        if (last_cross_us_ >= 0 && window_end_us - last_cross_us_ > cross_gap_.length_us())
            return {last_cross_us_, -1, -1};
        return cross_gap_;
    }

private:
    enum class state : std::uint8_t { idle, connecting, upgrading, joining, joined, closed };

    static constexpr std::size_t read_chunk = 64 * 1024;
    static constexpr std::size_t max_upgrade_response = 16 * 1024;

    char const* state_name() const {
        switch (state_) {
        case state::idle: return "waiting to connect";
        case state::connecting: return "connecting";
        case state::upgrading: return "upgrading";
        case state::joining: return "joining";
        case state::joined: return "joined";
        case state::closed: return "closed";
        }
        return "?";
    }

    std::int64_t heartbeat_interval_us() const {
        return static_cast<std::int64_t>(ctx_.cfg.opts.heartbeat_s * 1e6);
    }

    std::int64_t churn_period_us() const { return static_cast<std::int64_t>(ctx_.cfg.opts.churn_period_s * 1e6); }

    /// A churning user's turn: leave and close politely, then connect and
    /// join again on a new socket.
    void cycle(std::int64_t now) {
        if (state_ == state::joined) {
            ctx_.payload.clear();
            ctx_.cfg.wire.encode_leave(ctx_.payload, room_id_);
            send_frame(ctx_.cfg.wire.frame_opcode(), ctx_.payload);
            send_frame(ws::opcode::close, ws::close_payload(1000));
            ++ctx_.stats.churn_leaves;
        }
        close_socket();
        ++generation_;  // what the old socket still reports is for nobody
        inbox_.clear();
        outbox_.clear();
        fragments_.clear();
        cycle_at_us_ = now + static_cast<std::int64_t>(ctx_.cfg.opts.connect_timeout_s * 1e6);  // if this one hangs
        start(now);
    }

    // ------------------------------------------------------------ opening

    void on_connect(boost::system::error_code ec) {
        if (state_ != state::connecting) return;  // timed out meanwhile
        if (ec) return lose("connect: " + ec.message());
        socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);  // frames are small: no Nagle delay
        socket_.non_blocking(true, ec);
        if (!ec) sock_ = flk::detail::ws_socket(socket_.release(ec));  // from Asio's reactor to the poller
        if (!ec) ctx_.poller.add(sock_, poll_key(), ec);
        if (ec) return lose("connect: " + ec.message());
        state_ = state::upgrading;
        auto const& t = ctx_.cfg.targets[id_ % ctx_.cfg.targets.size()];
        send_raw(ws::upgrade_request(t.host, t.path, ws::make_key(ctx_.rng), ctx_.cfg.wire.subprotocol()));
    }

    /// Consumes the upgrade response; false while it is incomplete or failed.
    bool on_upgrade_response(std::string_view& data) {
        auto const r = ws::parse_upgrade_response(data);
        if (!r.complete) {
            if (data.size() > max_upgrade_response) lose("upgrade: response header too long");
            else inbox_.assign(data);
            return false;
        }
        if (r.status != 101) {
            lose("upgrade: HTTP status " + std::to_string(r.status));
            return false;
        }
        if (r.protocol != ctx_.cfg.wire.subprotocol()) {
            lose("upgrade: server chose subprotocol '" + std::string(r.protocol) + "'");
            return false;
        }
        data.remove_prefix(r.size);
        state_ = state::joining;
        ++ctx_.open;
        if (!churner_) ++ctx_.stats.upgraded;
        ctx_.payload.clear();
        auto const user = "u" + std::to_string(id_);
        ctx_.cfg.wire.encode_join(ctx_.payload, room_id_, user);
        join_sent_us_ = ctx_.cfg.clock.now_us();
        send_frame(ctx_.cfg.wire.frame_opcode(), ctx_.payload);
        return state_ != state::closed;
    }

    void on_joined() {
        auto const now = ctx_.read_time_us;
        if (churner_) {
            state_ = state::joined;
            ++ctx_.stats.churn_joins;
            next_heartbeat_us_ = now + heartbeat_interval_us();
            cycle_at_us_ = now + churn_period_us();
            return;
        }
        state_ = state::joined;
        joined_us_ = now;
        ctx_.stats.join_time.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - join_sent_us_)));
        ++ctx_.joined;
        --ctx_.unsettled;
        next_heartbeat_us_ = now + heartbeat_interval_us();
    }

    // ------------------------------------------------------------ reading

    /// Reads until the socket is drained. A read that does not fill the
    /// buffer took everything there was (as nginx assumes with edge-triggered
    /// epoll): data arriving later raises a new event, so no extra read that
    /// would only say EAGAIN -- unless the input `ends`, whose end must be read.
    void on_readable(bool ends) {
        auto& buf = ctx_.buffer;
        for (;;) {
            auto const carried = inbox_.size();
            if (buf.size() < carried + read_chunk) buf.resize(carried + read_chunk);
            auto const space = buf.size() - carried;
            boost::system::error_code ec;
            auto const n = sock_.read_some(buf.data() + carried, space, ec);
            if (ec == boost::asio::error::would_block) break;
            if (ec == boost::asio::error::eof) return lose("connection closed without a close frame");
            if (ec) return lose("read: " + ec.message());
            std::memcpy(buf.data(), inbox_.data(), carried);
            inbox_.clear();
            ctx_.read_time_us = ctx_.cfg.clock.now_us();
            ctx_.read_in_window = ctx_.cfg.control.in_window(ctx_.read_time_us);
            consume(std::string_view(buf.data(), carried + n));
            if (state_ == state::closed) return;
            if (n < space && !ends) break;
        }
    }

    /// Parses every complete frame in `data`; keeps a partial one for later.
    void consume(std::string_view data) {
        if (state_ == state::upgrading && !on_upgrade_response(data)) return;
        while (!data.empty()) {
            auto const r = ws::parse_frame(data);
            if (r.status == ws::parse_status::incomplete) {
                inbox_.assign(data);
                return;
            }
            if (r.status == ws::parse_status::error) return lose(std::string("protocol error: ") + r.error);
            data.remove_prefix(r.size);
            on_frame(r.f);
            if (state_ == state::closed) return;
        }
    }

    void on_frame(ws::frame const& f) {
        switch (f.op) {
        case ws::opcode::text:
        case ws::opcode::binary:
            if (f.fin) return on_message(f.payload);
            fragments_.assign(f.payload);
            return;
        case ws::opcode::continuation:
            fragments_.append(f.payload);
            if (f.fin) {
                std::string whole;
                whole.swap(fragments_);
                on_message(whole);
            }
            return;
        case ws::opcode::close: {
            auto const code = ws::close_code(f.payload);
            ++ctx_.stats.close_codes[code];
            send_frame(ws::opcode::close, ws::close_payload(code == 1005 ? 1000 : code));
            return lose("closed by the server with " + std::to_string(code));
        }
        case ws::opcode::ping: return send_frame(ws::opcode::pong, f.payload);
        case ws::opcode::pong: return;
        }
        lose("protocol error: unknown opcode");
    }

    void on_message(std::string_view payload) {
        auto& s = ctx_.stats;
        ++s.frames_received;
        if (ctx_.read_in_window) {
            ++s.frames_in_window;
            s.bytes_in_window += payload.size();
        }
        auto const m = ctx_.cfg.wire.parse_frame(payload, checked_, session_.get());
        ++s.by_type[static_cast<std::size_t>(m.type)];
        switch (m.type) {
        case msg_type::cursor_updated:
            if (checked_) check_cursor(m);
            break;
        case msg_type::join_ack:
            if (state_ == state::joining) on_joined();
            break;
        case msg_type::error: ++s.errors[std::string(m.error_code)]; break;
        default: break;
        }
    }

    /// Latency, duplicates and gaps from the probe fields (see codec.hpp).
    void check_cursor(inbound const& m) {
        auto& s = ctx_.stats;
        if (!m.content) {
            ++s.unparsed;
            return;
        }
        std::uint32_t sender = 0;
        auto const uid = m.user_id;
        bool const numbered = uid.size() > 1 && uid[0] == 'u' &&
                              std::from_chars(uid.data() + 1, uid.data() + uid.size(), sender).ec == std::errc{};
        if (!numbered || sender == id_ || sender < room_base_ || sender - room_base_ >= members_) {
            ++s.unexpected_sender;
            return;
        }
        auto const sent_us = static_cast<std::int64_t>(m.y);
        auto const latency = static_cast<std::uint64_t>(std::max<std::int64_t>(0, ctx_.read_time_us - sent_us));
        ctx_.recent_latency.record(latency);
        auto& peer = peers_[sender - room_base_];
        std::uint64_t gap = 0;
        auto const verdict = peer.observe(static_cast<std::uint64_t>(m.x), gap);
        auto const& targets = ctx_.cfg.targets;
        bool const cross = targets.size() > 1 && sender % targets.size() != id_ % targets.size();
        if (cross && ctx_.read_in_window && verdict != sequence_tracker::verdict::duplicate)
            note_cross_delivery(ctx_.read_time_us, sent_us);
        if (!ctx_.cfg.control.in_window(sent_us)) return;
        if (verdict == sequence_tracker::verdict::duplicate) {
            ++s.duplicates;
            return;
        }
        if (verdict == sequence_tracker::verdict::late) ++s.late;
        s.gaps += gap;
        ++peer.delivered_in_window;
        s.latency.record(latency);
        if (cross) s.latency_cross.record(latency);
    }

    /// A cross-instance move read in the window: keeps the longest silence
    /// between two of them (--gaps-file).
    void note_cross_delivery(std::int64_t read_us, std::int64_t sent_us) {
        if (last_cross_us_ >= 0 && read_us - last_cross_us_ > cross_gap_.length_us()) {
            cross_gap_.start_us = last_cross_us_;
            cross_gap_.end_us = read_us;
            cross_gap_.end_sent_us = sent_us;
        }
        last_cross_us_ = read_us;
    }

    // ------------------------------------------------------------ writing

    void send_move() {
        auto const now = ctx_.cfg.clock.now_us();
        ctx_.payload.clear();
        ctx_.cfg.wire.encode_move(ctx_.payload, room_id_, static_cast<double>(seq_++), static_cast<double>(now));
        if (!churner_) {
            ++ctx_.stats.moves_sent;
            if (ctx_.cfg.control.in_window(now)) ++moves_in_window_;
        }
        send_frame(ctx_.cfg.wire.frame_opcode(), ctx_.payload);
    }

    void send_frame(ws::opcode op, std::string_view payload) {
        ctx_.wire.clear();
        ws::append_frame(ctx_.wire, op, payload, mask_key_);
        send_raw(ctx_.wire);
    }

    void send_raw(std::string_view bytes) {
        if (state_ == state::closed) return;
        if (!outbox_.empty()) {
            outbox_.append(bytes);
            return;
        }
        auto const n = write(bytes);
        if (state_ == state::closed || n == bytes.size()) return;
        outbox_.assign(bytes.substr(n));
        wait_writable();
    }

    /// One write of `bytes`: what the socket took (a failure loses the connection).
    std::size_t write(std::string_view bytes) {
        iovec const piece{const_cast<char*>(bytes.data()), bytes.size()};
        boost::system::error_code ec;
        auto const n = sock_.write_some({&piece, 1}, ec);
        if (ec && ec != boost::asio::error::would_block) lose("write: " + ec.message());
        return n;
    }

    /// A write was cut: the poller reports the room to write, also room that
    /// came before it was asked (a fresh report, not only the next edge).
    void wait_writable() {
        boost::system::error_code ec;
        ctx_.poller.recheck(sock_, poll_key(), ec);
        if (ec) lose("write: " + ec.message());
    }

    void on_writable() {
        auto const n = write(outbox_);
        if (state_ == state::closed) return;
        outbox_.erase(0, n);
        if (!outbox_.empty()) wait_writable();
    }

    // ------------------------------------------------------------ closing

    /// The connection is gone: a failure if it never joined, a disconnect after.
    void lose(std::string const& reason) {
        if (state_ == state::closed) return;
        if (churner_) {  // tried again at its next cycle
            ++ctx_.stats.churn_failures[reason];
            cycle_at_us_ = ctx_.cfg.clock.now_us() + churn_period_us();
        } else if (state_ == state::joined) {
            ++ctx_.stats.disconnects[reason];
        } else {
            ++ctx_.stats.failures[reason];
            ++ctx_.failed;
            --ctx_.unsettled;
        }
        close_socket();
    }

    void close_socket() {
        if (state_ == state::joining || state_ == state::joined) --ctx_.open;
        if (state_ == state::joined && !churner_) --ctx_.joined;  // churning users are not counted (on_joined)
        state_ = state::closed;
        sock_.close();  // which also takes it out of the poller's set
        boost::system::error_code ec;
        socket_.close(ec);  // one still connecting
    }

    worker_context& ctx_;
    boost::asio::ip::tcp::socket socket_;  ///< while connecting
    flk::detail::ws_socket sock_;          ///< once connected
    std::uint32_t index_;
    std::uint32_t id_;
    bool checked_;
    bool churner_;
    state state_ = state::idle;
    std::int64_t cycle_at_us_ = 0;  ///< churning users: when to leave (or retry)
    std::uint32_t generation_ = 0;  ///< socket generations: a churning user reconnects
    std::uint32_t room_base_ = 0;
    std::uint32_t slot_ = 0;
    std::uint32_t members_ = 0;  ///< users in this connection's room
    std::uint32_t mask_key_ = 0;
    std::string room_id_;
    std::string inbox_;      ///< a partial frame (or upgrade response) carried to the next read
    std::string outbox_;     ///< bytes the kernel did not take yet
    std::string fragments_;  ///< a fragmented message being reassembled
    std::int64_t deadline_us_ = 0;
    std::int64_t join_sent_us_ = 0;
    std::int64_t joined_us_ = -1;
    std::int64_t next_heartbeat_us_ = 0;
    std::uint64_t seq_ = 0;
    std::uint64_t moves_in_window_ = 0;
    std::int64_t last_cross_us_ = -1;  ///< read time of the last cross-instance move in the window
    silence cross_gap_;
    std::vector<sequence_tracker> peers_;  ///< by room slot; checked connections only
    std::unique_ptr<codec_session> session_;  ///< checked connections, when the codec keeps one
};

}  // namespace load
