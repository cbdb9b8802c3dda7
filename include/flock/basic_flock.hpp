// The protocol rules of a Flock server, with no I/O of their own: rooms,
// members, snapshots, limits. The three policies say how bytes reach clients
// (Transport), how instances share presence (Broker) and how messages are
// spelled (Codec).
//
// Everything runs on one executor, on one thread: the transport and the
// broker call back on it, so no state here needs a lock.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/codec/concept.hpp>
#include <flock/detail/rate_window.hpp>
#include <flock/detail/refusal_log.hpp>
#include <flock/detail/string_map.hpp>
#include <flock/frame.hpp>
#include <flock/metrics.hpp>
#include <flock/options.hpp>
#include <flock/protocol.hpp>
#include <flock/transport/concept.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <concepts>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flk {

/// A room as one instance sees it (basic_flock::local_rooms): for the admin
/// dashboard, never on the hot path.
struct local_room {
    std::string id;
    std::chrono::system_clock::time_point created;  ///< when its first local member arrived
    std::vector<std::pair<std::string, metadata>> members;  ///< (userId, metadata), joined here
};

template <Transport TransportT, Broker BrokerT, Codec CodecT>
class basic_flock final : private transport_events, private broker_events {
public:
    using transport_type = TransportT;
    using broker_type = BrokerT;
    using codec_type = CodecT;

    /// Cursor moves that arrive before their room's join are held this long.
    static constexpr std::chrono::milliseconds pending_cursor_window{500};
    static constexpr std::size_t pending_cursor_limit = 3;
    /// Traffic other than heartbeats refreshes presence at most this often.
    static constexpr std::chrono::seconds touch_interval{1};

    /// Throws config_error when `opts` cannot work. `broker_args` follow the
    /// standard three when the broker takes more (a shard of a memory_hub).
    template <class... BrokerArgs>
        requires std::constructible_from<BrokerT, boost::asio::any_io_executor, options const&, broker_events&,
                                         BrokerArgs...>
    basic_flock(boost::asio::any_io_executor ex, options opts, BrokerArgs&&... broker_args)
        : opts_(validated(std::move(opts))),
          log_(opts_.make_logger()),
          transport_(ex, opts_, *this),
          broker_(ex, opts_, *this, std::forward<BrokerArgs>(broker_args)...),
          heartbeat_ack_{encode(server::heartbeat_ack{}, frame_kind::text),
                         encode(server::heartbeat_ack{}, frame_kind::binary)},
          join_timer_(ex),
          refusal_log_(opts_.refusal_log_interval) {}

    basic_flock(basic_flock const&) = delete;
    basic_flock& operator=(basic_flock const&) = delete;

    /// Connects the broker and starts accepting clients.
    void start() {
        broker_.start();
        transport_.start();
    }

    /// Graceful stop: every member's departure is announced (locally and to the
    /// other instances) and its presence removed, then every socket is closed
    /// with 1001 once its queued frames are sent. `done` runs when all is shut.
    void stop(std::function<void()> done = {}) {
        if (stopping_) {
            // Already stopping: this caller is told once everything is shut too.
            if (!done) return;
            if (stopped_) done();
            else stop_waiters_.push_back(std::move(done));
            return;
        }
        stopping_ = true;
        join_timer_.cancel();
        join_deadlines_.clear();
        for (auto& [room_id, r] : rooms_) {
            while (!r.local.empty()) {
                auto it = r.local.begin();
                std::string user = it->first;
                bool was_joined = it->second.joined;
                r.local.erase(it);
                if (was_joined) {
                    broadcast(room_id, r, server::user_left{room_id, user}, 0, true);
                    broker_.leave(room_id, user);
                }
            }
            broker_.unsubscribe(room_id);
        }
        rooms_.clear();
        for (auto& [id, c] : connections_) c.memberships.clear();
        if (done) stop_waiters_.push_back(std::move(done));
        transport_.stop([this] {
            broker_.stop([this] {
                stopped_ = true;
                for (auto& w : std::exchange(stop_waiters_, {})) w();
            });
        });
    }

    TransportT& transport() noexcept { return transport_; }
    BrokerT& broker() noexcept { return broker_; }
    CodecT const& codec() const noexcept { return codec_; }
    options const& config() const noexcept { return opts_; }

    std::size_t connection_count() const noexcept { return connections_.size(); }
    /// Connections closed because they sent no join within options::join_timeout.
    std::uint64_t join_timeouts() const noexcept { return join_timeouts_; }
    std::size_t room_count() const noexcept { return rooms_.size(); }
    /// Adds this instance's figures (its transport's and broker's too, when
    /// they count) to `m`. On this instance's executor only: the counters
    /// are plain integers owned by its thread.
    void collect_metrics(metrics_snapshot& m) const {
        m.connections_open += connections_.size();
        m.shard_connections.push_back(connections_.size());
        m.rooms += rooms_.size();
        for (auto const& [id, r] : rooms_)
            m.members += std::count_if(r.local.begin(), r.local.end(), [](auto const& l) { return l.second.joined; });
        core_metrics core = metrics_;
        core.join_timeouts = join_timeouts_;
        m.core.add(core);
        if constexpr (requires { transport_.metrics(); }) m.transport.add(transport_.metrics());
        if constexpr (requires { transport_.refusals(); }) {
            auto const& r = transport_.refusals();
            m.refusals.add({r.bad_upgrade, r.headers_too_large, r.unauthorized, r.origin, r.full, r.address_full,
                            r.write_stalls});
        }
        if constexpr (requires { broker_.collect_metrics(m); }) broker_.collect_metrics(m);
    }

    /// Members of `room` joined on this instance.
    std::size_t local_member_count(std::string_view room) const {
        auto r = rooms_.find(room);
        if (r == rooms_.end()) return 0;
        return std::count_if(r->second.local.begin(), r->second.local.end(),
                             [](auto const& m) { return m.second.joined; });
    }

    /// The rooms with a member joined on this instance, and those members
    /// (but those whose socket is being closed).
    std::vector<local_room> local_rooms() const {
        std::vector<local_room> out;
        for (auto const& [id, r] : rooms_) {
            local_room v{id, r.created, {}};
            for (auto const& [user, m] : r.local)
                if (auto c = connections_.find(m.conn); m.joined && c != connections_.end() && !c->second.closing)
                    v.members.emplace_back(user, m.meta);
            if (!v.members.empty()) out.push_back(std::move(v));
        }
        return out;
    }

    /// An operator closes a room (the admin dashboard): every local socket in
    /// it gets `error INTERNAL_ERROR message`, then is closed (1008), as the
    /// reference does; departures follow as for any closed socket. An empty
    /// `room_id` closes every room. Returns the sockets closed.
    std::size_t close_room(std::string_view room_id, std::string const& message) {
        std::vector<connection_id> conns;
        for (auto const& [id, r] : rooms_)
            if (room_id.empty() || id == room_id)
                for (auto const& [user, m] : r.local) conns.push_back(m.conn);
        std::size_t closed = 0;
        for (auto id : conns)
            if (auto c = connections_.find(id); c != connections_.end() && !c->second.closing) {
                refuse(id, c->second, error_code::internal_error, message, std::nullopt);
                ++closed;
            }
        return closed;
    }

private:
    // A user in a room, on one of this instance's connections.
    struct member {
        connection_id conn = 0;
        frame_kind out = CodecT::kind;  // what its connection reads
        metadata meta;
        bool joined = false;        // false while the broker's answer is awaited
        std::uint64_t join_seq = 0; // tells a current join from a superseded one
        steady_time last_touch{};
        flk::handle user_handle = 0; // its handle in the room (see flk::handle)
    };
    // Handles (flk::handle): the room's own, from an instance-wide counter, and
    // one per user present, from the room's counter. A user keeps its handle
    // while present here, local or remote; after a user:left it gets a new one.
    struct room {
        detail::string_map<member> local;        // by userId
        detail::string_map<flk::handle> remote;  // userIds present on other instances, with
                                                 // their handle (0: none, see snapshot_handle)
        flk::handle id = 0;
        flk::handle last_user_handle = 0;
        std::chrono::system_clock::time_point created = std::chrono::system_clock::now();
    };
    struct pending_cursor {
        std::string room_id;
        position pos;
        steady_time at;
    };
    struct membership {
        std::string room_id;
        std::string user_id;
    };
    struct connection {
        bool authorized = false;
        bool closing = false;
        bool sent_join = false;               // a join got past its checks (see the join timeout)
        frame_kind out = CodecT::kind;        // the format it negotiated
        std::vector<membership> memberships;  // rooms joined or joining
        std::vector<pending_cursor> pending;  // cursor moves waiting for their join
        detail::rate_window rate;
        std::string address;                  // the client's, without the port: refusals are logged per address
    };

    static options validated(options o) {
        o.validate();
        return o;
    }

    // ---- transport_events ------------------------------------------------------

    open_verdict on_open(connection_id id, connection_info const& info) override {
        if (stopping_) return {};
        connection c;
        c.authorized = opts_.api_keys.empty();  // open mode: any key, or none, will do
        if (!c.authorized && info.api_key) {
            if (!opts_.api_key_accepted(*info.api_key)) {
                // The transport counts and logs the 401 it answers.
                log_.debug("connection refused: invalid API key", {{"conn", id}, {"remote", info.remote}});
                return {};
            }
            c.authorized = true;
        }
        open_verdict verdict{true, {}};
        if constexpr (NegotiatingCodec<CodecT>) {
            if (std::ranges::find(info.subprotocols, CodecT::subprotocol) != info.subprotocols.end()) {
                c.out = CodecT::negotiated_kind;
                verdict.subprotocol = CodecT::subprotocol;
            }
        }
        c.address = address_part(info.remote);
        connections_.emplace(id, std::move(c));
        expect_join(id);
        log_.debug("connection opened", {{"conn", id}, {"remote", info.remote}, {"subprotocol", verdict.subprotocol}});
        return verdict;
    }

    void on_frame(connection_id id, std::string_view payload, frame_kind kind) override {
        auto it = connections_.find(id);
        if (it == connections_.end() || it->second.closing) return;
        connection& c = it->second;
        auto now = transport_.now();
        if (!c.rate.allow(now, opts_.max_messages_per_second)) {
            ++metrics_.rate_limited;
            log_refusal(c, "rate limit exceeded", {{"conn", id}});
            refuse(id, c, error_code::rate_limited, "more than " + std::to_string(opts_.max_messages_per_second) +
                                                        " messages per second", {});
            return;
        }
        auto msg = codec_.decode(payload, kind);
        if (!msg) {
            ++metrics_.messages_in.back();
            auto const& e = msg.error();
            log_.debug("message dropped", {{"conn", id}, {"reason", e.message()}});
            if (e.deserves_reply())
                send_error(id, error_code::invalid_message, e.message(),
                           e.room_id.empty() ? std::nullopt : std::optional<std::string>(e.room_id));
            return;
        }
        ++metrics_.messages_in[msg->index()];
        std::visit([&](auto& m) { handle(id, c, m, now); }, *msg);
    }

    void on_close(connection_id id) override {
        auto it = connections_.find(id);
        if (it == connections_.end()) return;
        auto memberships = std::move(it->second.memberships);
        connections_.erase(it);
        for (auto const& m : memberships) depart(id, m.room_id, m.user_id);
        log_.debug("connection closed", {{"conn", id}});
    }

    std::string health() override {
        boost::json::object h{{"status", "ok"}};
        broker_.health(h);
        return boost::json::serialize(h);
    }

    // ---- broker_events ---------------------------------------------------------

    void on_remote(std::string_view room_id, server_message const& msg) override {
        auto r = rooms_.find(room_id);
        if (r == rooms_.end()) return;  // no local member left to tell
        std::visit([&](auto const& m) { relay(r->first, r->second, m); }, msg);
    }

    bool holds_member(std::string_view room_id, std::string_view user_id) const override {
        auto r = rooms_.find(room_id);
        return r != rooms_.end() && r->second.local.contains(user_id);
    }

    void on_evicted(std::string_view room_id, std::string_view user_id) override {
        ++metrics_.evictions;
        auto r = rooms_.find(room_id);
        if (r == rooms_.end()) return;
        room& rm = r->second;
        std::string const& rid = r->first;
        if (auto m = rm.local.find(user_id); m != rm.local.end() && m->second.joined) {
            // One of ours went silent for the whole TTL: gone for everyone, and
            // its socket is closed so a live client re-joins rather than lingering
            // half present.
            auto conn = m->second.conn;
            auto h = m->second.user_handle;
            std::string user(user_id);
            rm.local.erase(m);
            forget_membership(conn, rid);
            log_.info("presence expired", {{"room", rid}, {"user", user}, {"conn", conn}});
            broadcast(rid, rm, server::user_left{rid, user, rm.id, h}, 0, false, key_of(rid, user));
            close(conn, close_code::presence_expired, "presence expired");
        } else if (auto gone = rm.remote.find(user_id); gone != rm.remote.end()) {
            auto h = gone->second;
            rm.remote.erase(gone);
            broadcast(rid, rm, server::user_left{rid, std::string(user_id), rm.id, h}, 0, false, key_of(rid, user_id));
        }
        drop_if_empty(r);
    }

    // ---- client messages -------------------------------------------------------

    void handle(connection_id id, connection& c, client::join& j, steady_time now) {
        if (!valid_id(j.room_id) || !valid_id(j.user_id)) {
            send_error(id, error_code::invalid_message,
                       "roomId and userId must be 1 to " + std::to_string(opts_.max_id_length) + " bytes",
                       j.room_id.size() <= opts_.max_id_length ? std::optional(j.room_id) : std::nullopt);
            return;
        }
        if (boost::json::serialize(j.meta).size() > opts_.max_metadata_bytes) {
            send_error(id, error_code::invalid_message, metadata_too_large(), j.room_id);
            return;
        }
        if (!c.authorized) {
            if (!j.api_key || !opts_.api_key_accepted(*j.api_key)) {
                ++metrics_.joins_bad_key;
                log_refusal(c, "join refused: invalid API key", {{"conn", id}, {"room", j.room_id}});
                refuse(id, c, error_code::invalid_api_key, "invalid API key", j.room_id);
                return;
            }
            c.authorized = true;
        }
        if (auto* m = find_membership(c, j.room_id)) {
            if (m->user_id != j.user_id) {
                // The socket changes identity in this room: the old one leaves first.
                std::string old_user = m->user_id;
                forget_membership(id, j.room_id);
                depart(id, j.room_id, old_user);
            } else if (auto* mem = find_member(j.room_id, j.user_id); mem && !mem->joined) {
                return;  // the same join is already in flight
            }
        } else if (c.memberships.size() >= opts_.max_rooms_per_connection) {
            send_error(id, error_code::too_many_rooms,
                       "a connection may join at most " + std::to_string(opts_.max_rooms_per_connection) + " rooms",
                       j.room_id);
            return;
        }

        c.sent_join = true;
        auto [r, created] = rooms_.try_emplace(j.room_id);
        if (created) {
            r->second.id = ++last_room_handle_;
            broker_.subscribe(j.room_id);  // before the join, so no broadcast is missed
        }
        room& rm = r->second;
        std::string const& rid = r->first;
        if (auto old = rm.local.find(j.user_id); old != rm.local.end() && old->second.conn != id) {
            // Same user on a newer socket (refresh, second tab): the old socket is
            // evicted, then the join proceeds as new. The presence stays: it is
            // about to be rewritten by this join.
            auto old_conn = old->second.conn;
            bool was_joined = old->second.joined;
            auto old_handle = old->second.user_handle;
            rm.local.erase(old);
            forget_membership(old_conn, rid);
            if (was_joined)
                broadcast(rid, rm, server::user_left{rid, j.user_id, rm.id, old_handle}, 0, true,
                          key_of(rid, j.user_id));
            close(old_conn, close_code::replaced, "replaced by a newer connection");
        }
        if (!find_membership(c, rid)) c.memberships.push_back({rid, j.user_id});
        auto seq = ++join_seq_;
        auto& mem = rm.local[j.user_id];
        // A user still present (a re-join on the same socket, or one so far on
        // another instance) keeps its handle.
        flk::handle h = mem.user_handle;
        if (!h)
            if (auto remote = rm.remote.find(j.user_id); remote != rm.remote.end()) h = remote->second;
        if (!h) h = ++rm.last_user_handle;
        mem = member{id, c.out, j.meta, false, seq, now, h};
        broker_.join({rid, j.user_id, std::move(j.meta), opts_.max_room_size},
                     [this, id, rid = rid, user = j.user_id, seq, now](join_result res) mutable {
                         joined(id, rid, user, seq, std::move(res), now);
                     });
    }

    void joined(connection_id id, std::string const& room_id, std::string const& user_id, std::uint64_t seq,
                join_result res, steady_time asked) {
        auto r = rooms_.find(room_id);
        member* mem = nullptr;
        if (r != rooms_.end())
            if (auto m = r->second.local.find(user_id); m != r->second.local.end() && m->second.join_seq == seq)
                mem = &m->second;
        if (!mem) {
            // The joiner left, closed or was replaced meanwhile. Undo the join
            // unless the same user has joined again since.
            bool user_here = r != rooms_.end() && r->second.local.contains(user_id);
            if (res.outcome == join_result::status::joined && !user_here && !stopping_)
                broker_.leave(room_id, user_id);
            return;
        }
        room& rm = r->second;
        auto c = connections_.find(id);
        if (res.outcome != join_result::status::joined) {
            rm.local.erase(user_id);
            if (c != connections_.end()) {
                forget_membership(id, room_id);
                if (res.outcome == join_result::status::room_full) {
                    ++metrics_.joins_room_full;
                    log_refusal(c->second, "join refused: room full", {{"conn", id}, {"room", room_id}});
                    refuse(id, c->second, error_code::room_full, "room is full", room_id);
                } else {
                    ++metrics_.joins_failed;
                    log_.warn("join failed: presence store unavailable", {{"conn", id}, {"room", room_id}});
                    send_error(id, error_code::internal_error, "presence store unavailable, try again", room_id);
                    close(id, close_code::try_again_later, "presence store unavailable");
                }
            }
            drop_if_empty(r);
            return;
        }

        mem->joined = true;
        rm.remote.erase(user_id);
        bool const others_here = std::ranges::any_of(
            rm.local, [&](auto const& m) { return m.second.joined && m.first != user_id; });
        for (auto& other : res.others) other.user_handle = snapshot_handle(rm, other.user_id, others_here);
        log_.debug("joined", {{"conn", id}, {"room", room_id}, {"user", user_id}});
        transport_.send(id, encode(server::join_ack{room_id, std::move(res.others), rm.id}, mem->out));
        count_sent<server::join_ack>();
        metrics_.join_latency.observe(transport_.now() - asked);
        broadcast(room_id, rm, server::user_joined{room_id, user_id, mem->meta, rm.id, mem->user_handle}, id, true,
                  key_of(room_id, user_id));
        if (c != connections_.end()) replay_pending(id, c->second, room_id);
    }

    void handle(connection_id id, connection& c, client::heartbeat const& h, steady_time now) {
        transport_.send(id, heartbeat_ack_[index(c.out)]);
        count_sent<server::heartbeat_ack>();
        if (auto* mem = joined_member(id, c, h.room_id)) touch(h.room_id, find_membership(c, h.room_id)->user_id, *mem, now, true);
    }

    void handle(connection_id id, connection& c, client::cursor_move const& m, steady_time now) {
        auto* mem = joined_member(id, c, m.room_id);
        if (!mem) {
            // Clients may send moves before their join lands: keep the freshest few.
            if (c.pending.size() == pending_cursor_limit) c.pending.erase(c.pending.begin());
            c.pending.push_back({m.room_id, m.pos, now});
            return;
        }
        move_cursor(id, c, m.room_id, *mem, m.pos, now);
    }

    void handle(connection_id id, connection& c, client::cursor_leave const& m, steady_time now) {
        std::erase_if(c.pending, [&](pending_cursor const& p) { return p.room_id == m.room_id; });
        auto* mem = joined_member(id, c, m.room_id);
        if (!mem) return;
        auto const& user = find_membership(c, m.room_id)->user_id;
        touch(m.room_id, user, *mem, now, false);
        broker_.clear_cursor(m.room_id, user);
        auto& rm = room_of(m.room_id);
        broadcast(m.room_id, rm, server::cursor_removed{m.room_id, user, rm.id, mem->user_handle}, id, true,
                  key_of(m.room_id, user));
    }

    void handle(connection_id id, connection& c, client::presence_update& p, steady_time now) {
        auto* mem = joined_member(id, c, p.room_id);
        if (!mem) return;
        metadata merged = mem->meta;
        for (auto const& [k, v] : p.patch) merged[k] = v;
        if (boost::json::serialize(merged).size() > opts_.max_metadata_bytes) {
            send_error(id, error_code::invalid_message, metadata_too_large(), p.room_id);
            return;
        }
        mem->meta = std::move(merged);
        auto const& user = find_membership(c, p.room_id)->user_id;
        touch(p.room_id, user, *mem, now, false);
        broker_.set_metadata(p.room_id, user, mem->meta);
        auto& rm = room_of(p.room_id);
        broadcast(p.room_id, rm, server::presence_updated{p.room_id, user, std::move(p.patch), rm.id, mem->user_handle},
                  id, true, key_of(p.room_id, user));
    }

    void handle(connection_id id, connection& c, client::leave const& l, steady_time) {
        std::erase_if(c.pending, [&](pending_cursor const& p) { return p.room_id == l.room_id; });
        auto* m = find_membership(c, l.room_id);
        if (!m) return;
        std::string user = std::move(m->user_id);
        forget_membership(id, l.room_id);
        depart(id, l.room_id, user);
    }

    // ---- remote broadcasts -----------------------------------------------------
    // Relayed with this instance's handles (see ours()), never the sender's.

    void relay(std::string const& room_id, room& rm, server::user_joined const& m) {
        flk::handle h = replaced_elsewhere(room_id, rm, m.user_id);
        auto& known = rm.remote[m.user_id];
        if (h) known = h;
        else if (!known) known = ++rm.last_user_handle;  // announced right here
        broadcast(room_id, rm, ours(m, rm, known), 0, false, key_of(room_id, m.user_id));
    }
    // "This user re-joined on another instance" is decided here, and only
    // here: a user:joined from another instance for a user with a socket here
    // (joined, or its join in flight) means that socket was replaced. It goes
    // without touching the shared presence (the new instance's now), and the
    // user, present all along, keeps its handle (returned; 0 if none here).
    // A broker keeping its own record of our members follows this verdict
    // through holds_member() (the Redis broker: detail/redis/membership.hpp).
    flk::handle replaced_elsewhere(std::string const& room_id, room& rm, std::string const& user_id) {
        auto mine = rm.local.find(user_id);
        if (mine == rm.local.end()) return 0;
        auto conn = mine->second.conn;
        auto h = mine->second.user_handle;
        rm.local.erase(mine);
        forget_membership(conn, room_id);
        close(conn, close_code::replaced, "replaced by a newer connection");
        return h;
    }
    void relay(std::string const& room_id, room& rm, server::user_left const& m) {
        if (rm.local.contains(m.user_id)) return;  // an old socket elsewhere; the user is live here
        flk::handle h = 0;
        if (auto gone = rm.remote.find(m.user_id); gone != rm.remote.end()) {
            h = gone->second;
            rm.remote.erase(gone);
        }
        broadcast(room_id, rm, ours(m, rm, h), 0, false, key_of(room_id, m.user_id));
    }
    void relay(std::string const& room_id, room& rm, server::cursor_updated const& m) {
        broadcast(room_id, rm, ours(m, rm, announced_handle(rm, m.user_id)), 0, false, key_of(room_id, m.user_id),
                  true);
    }
    void relay(std::string const& room_id, room& rm, server::cursor_removed const& m) {
        broadcast(room_id, rm, ours(m, rm, announced_handle(rm, m.user_id)), 0, false, key_of(room_id, m.user_id));
    }
    void relay(std::string const& room_id, room& rm, server::presence_updated const& m) {
        broadcast(room_id, rm, ours(m, rm, announced_handle(rm, m.user_id)), 0, false, key_of(room_id, m.user_id));
    }
    template <class M>
    void relay(std::string const&, room&, M const&) {}  // not a broadcast: join:ack, errors, acks

    // ---- helpers ---------------------------------------------------------------

    void move_cursor(connection_id id, connection& c, std::string const& room_id, member& mem, position pos,
                     steady_time now) {
        auto const& user = find_membership(c, room_id)->user_id;
        auto ts = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
        touch(room_id, user, mem, now, false);
        broker_.set_cursor(room_id, user, pos, ts);
        auto& rm = room_of(room_id);
        broadcast(room_id, rm, server::cursor_updated{room_id, user, pos, ts, rm.id, mem.user_handle}, id, true,
                  key_of(room_id, user), true);
    }

    void replay_pending(connection_id id, connection& c, std::string const& room_id) {
        auto now = transport_.now();
        std::vector<pending_cursor> due;
        std::erase_if(c.pending, [&](pending_cursor& p) {
            if (now - p.at > pending_cursor_window) return true;  // too old to matter
            if (p.room_id != room_id) return false;
            due.push_back(std::move(p));
            return true;
        });
        for (auto const& p : due)
            if (auto* mem = joined_member(id, c, room_id)) move_cursor(id, c, room_id, *mem, p.pos, now);
    }

    // Any message is proof of life; heartbeats always refresh, the rest at most
    // once per touch_interval so a busy cursor costs the broker little.
    void touch(std::string const& room_id, std::string const& user, member& mem, steady_time now, bool always) {
        if (!always && now - mem.last_touch < touch_interval) return;
        mem.last_touch = now;
        broker_.touch(room_id, user);
    }

    // The member `user` leaves `room`: presence removed, others told.
    void depart(connection_id id, std::string const& room_id, std::string const& user) {
        auto r = rooms_.find(room_id);
        if (r == rooms_.end()) return;
        auto m = r->second.local.find(user);
        if (m == r->second.local.end() || m->second.conn != id) return;  // replaced meanwhile
        bool was_joined = m->second.joined;
        auto h = m->second.user_handle;
        r->second.local.erase(m);
        if (was_joined) {
            // A join still in flight is undone when its answer arrives.
            broadcast(r->first, r->second, server::user_left{r->first, user, r->second.id, h}, 0, true,
                      key_of(room_id, user));
            broker_.leave(room_id, user);
        }
        log_.debug("left", {{"conn", id}, {"room", room_id}, {"user", user}});
        drop_if_empty(r);
    }

    template <class It>
    void drop_if_empty(It r) {
        if (!r->second.local.empty()) return;
        broker_.unsubscribe(r->first);
        rooms_.erase(r);
    }

    // Sends `msg` to every joined local member of the room but `except`,
    // encoding it once, and hands it to the other instances when `publish`,
    // without handles: those are this instance's own.
    template <class M>
    void broadcast(std::string const& room_id, room& rm, M msg, connection_id except, bool publish,
                   std::uint64_t key = 0, bool conflatable = false) {
        std::array<frame, 2> frames;  // encoded at most once per format
        std::uint64_t sent = 0;
        for (auto const& [user, m] : rm.local) {
            if (!m.joined || m.conn == except) continue;
            auto& f = frames[index(m.out)];
            if (!f.bytes) f = encode(msg, m.out, key, conflatable);
            transport_.send(m.conn, f);
            ++sent;
        }
        count_sent<M>(sent);
        if (publish) {
            msg.room_handle = msg.user_handle = 0;
            broker_.publish(room_id, std::move(msg));
        }
    }

    // Server messages queued, by type (flock/metrics.hpp).
    template <class M>
    void count_sent(std::uint64_t n = 1) noexcept {
        metrics_.messages_out[detail::variant_index_v<M, server_message>] += n;
    }

    // ---- handles ---------------------------------------------------------------

    // The handle of a user listed in the join:ack of a newcomer. A remote user
    // this instance knows no handle for gets one only if no other local member
    // is joined: those were never told it (no user:joined reached them), so
    // its messages must keep its name until a user:joined announces one.
    static flk::handle snapshot_handle(room& rm, std::string const& user, bool others_here) {
        if (auto l = rm.local.find(user); l != rm.local.end()) return l->second.user_handle;
        auto& h = rm.remote[user];
        if (!h && !others_here) h = ++rm.last_user_handle;
        return h;
    }

    // The handle every joined member has been told for `user`, 0 if none: a
    // joined local member's, else a remote one's. A local join in flight is
    // announced only once it lands.
    static flk::handle announced_handle(room const& rm, std::string_view user) {
        if (auto l = rm.local.find(user); l != rm.local.end() && l->second.joined) return l->second.user_handle;
        if (auto r = rm.remote.find(user); r != rm.remote.end()) return r->second;
        return 0;
    }

    // A remote message as this instance relays it: with its own handles.
    template <class M>
    static M ours(M m, room const& rm, flk::handle user) {
        m.room_handle = rm.id;
        m.user_handle = user;
        return m;
    }

    // The room of a joined member: it exists while the member does.
    room& room_of(std::string_view room_id) { return rooms_.find(room_id)->second; }

    frame encode(server_message const& msg, frame_kind kind, std::uint64_t key = 0, bool conflatable = false) const {
        if constexpr (NegotiatingCodec<CodecT>)
            return frame::make(codec_.encode(msg, kind), kind, key, conflatable);
        else
            return frame::make(codec_.encode(msg), CodecT::kind, key, conflatable);
    }
    static constexpr std::size_t index(frame_kind k) noexcept { return static_cast<std::size_t>(k); }

    // Frames about one user in one room share a key, so a send queue can drop
    // a stale cursor for a newer one of the same user.
    static std::uint64_t key_of(std::string_view room_id, std::string_view user_id) {
        std::size_t h = std::hash<std::string_view>{}(room_id);
        h ^= std::hash<std::string_view>{}(user_id) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        return h == 0 ? 1 : h;
    }

    // ---- the join timeout --------------------------------------------------------
    // Not the transport's: only the core knows what a join is. Deadlines are
    // kept in opening order, so they expire from the front, and one timer
    // serves them all.

    void expect_join(connection_id id) {
        if (opts_.join_timeout.count() <= 0) return;
        join_deadlines_.push_back({std::chrono::steady_clock::now() + opts_.join_timeout, id});
        if (join_deadlines_.size() == 1) arm_join_timer();
    }

    void arm_join_timer() {
        join_timer_.expires_at(join_deadlines_.front().first);
        join_timer_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;  // cancelled: stopping, or the core is gone
            on_join_deadline();
        });
    }

    void on_join_deadline() {
        auto const now = std::chrono::steady_clock::now();
        while (!join_deadlines_.empty() && join_deadlines_.front().first <= now) {
            auto const id = join_deadlines_.front().second;
            join_deadlines_.pop_front();
            auto c = connections_.find(id);
            if (c == connections_.end() || c->second.sent_join || c->second.closing) continue;
            log_.debug("no join in time; closing", {{"conn", id}});
            ++join_timeouts_;
            close(id, close_code::join_timeout, "no join within the join timeout");
        }
        if (!join_deadlines_.empty()) arm_join_timer();
    }

    // ---- errors and refusals -----------------------------------------------------

    // "1.2.3.4:5678" -> "1.2.3.4", "[::1]:80" -> "::1".
    static std::string address_part(std::string_view remote) {
        auto const colon = remote.rfind(':');
        if (colon != std::string_view::npos && colon > 0 && remote.find(':') != colon) {  // IPv6
            if (remote.front() == '[' && remote[colon - 1] == ']') return std::string(remote.substr(1, colon - 2));
            return std::string(remote);
        }
        return std::string(remote.substr(0, colon));
    }

    // A refused client is logged at most once per address per interval.
    void log_refusal(connection const& c, std::string_view what,
                     std::initializer_list<log_field> fields) {
        if (log_.enabled(log_level::info) && refusal_log_.should_log(c.address, std::chrono::steady_clock::now()))
            log_.info(what, fields);
    }

    void send_error(connection_id id, error_code code, std::string message, std::optional<std::string> room_id) {
        auto c = connections_.find(id);
        auto kind = c == connections_.end() ? CodecT::kind : c->second.out;
        transport_.send(id, encode(server::error{code, std::move(message), std::move(room_id)}, kind));
        count_sent<server::error>();
    }
    // An error the protocol answers by closing the socket.
    void refuse(connection_id id, connection& c, error_code code, std::string message,
                std::optional<std::string> room_id) {
        send_error(id, code, std::move(message), std::move(room_id));
        c.closing = true;
        transport_.close(id, close_code::policy_violation, to_string(code));
    }
    void close(connection_id id, std::uint16_t code, std::string_view reason) {
        if (auto c = connections_.find(id); c != connections_.end()) c->second.closing = true;
        transport_.close(id, code, reason);
    }

    static membership* find_membership(connection& c, std::string_view room_id) {
        for (auto& m : c.memberships)
            if (m.room_id == room_id) return &m;
        return nullptr;
    }
    void forget_membership(connection_id id, std::string_view room_id) {
        if (auto c = connections_.find(id); c != connections_.end())
            std::erase_if(c->second.memberships, [&](membership const& m) { return m.room_id == room_id; });
    }
    member* find_member(std::string_view room_id, std::string_view user_id) {
        auto r = rooms_.find(room_id);
        if (r == rooms_.end()) return nullptr;
        auto m = r->second.local.find(user_id);
        return m == r->second.local.end() ? nullptr : &m->second;
    }
    // This connection's member in the room, once its join has landed.
    member* joined_member(connection_id id, connection& c, std::string_view room_id) {
        auto* ms = find_membership(c, room_id);
        if (!ms) return nullptr;
        auto* mem = find_member(room_id, ms->user_id);
        return mem && mem->conn == id && mem->joined ? mem : nullptr;
    }

    bool valid_id(std::string const& s) const { return !s.empty() && s.size() <= opts_.max_id_length; }
    std::string metadata_too_large() const {
        return "metadata larger than " + std::to_string(opts_.max_metadata_bytes) + " bytes";
    }

    options opts_;
    logger log_;
    CodecT codec_;
    TransportT transport_;
    BrokerT broker_;
    std::array<frame, 2> heartbeat_ack_;  // the same bytes for every ack, per format
    std::unordered_map<connection_id, connection> connections_;
    detail::string_map<room> rooms_;
    flk::handle last_room_handle_ = 0;  // room handles are never reused while this instance lives
    std::uint64_t join_seq_ = 0;
    bool stopping_ = false;
    bool stopped_ = false;
    std::vector<std::function<void()>> stop_waiters_;
    boost::asio::steady_timer join_timer_;
    std::deque<std::pair<std::chrono::steady_clock::time_point, connection_id>> join_deadlines_;
    std::uint64_t join_timeouts_ = 0;
    detail::refusal_log refusal_log_;
    core_metrics metrics_;  // plain counters: this instance's thread alone writes them
};

}  // namespace flk
