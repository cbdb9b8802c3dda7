// The Redis broker's view of its rooms and members, without I/O: the broker
// (broker_impl.hpp) feeds it what happened (a join asked for, a SUBSCRIBE
// confirmed, the join script's answer, a broadcast of another instance, an
// expired-key event, a sweep's answer, the connection lost or back) and
// gets back what to do (send the join now or park it, tell the core or drop
// the message, report an eviction, confirm it first). Unit-tested in
// tests/unit/redis_membership_test.cpp.
//
// Who is who, per room:
// - local users: what the core told this broker (its joins), with what a
//   restore needs; `pending` until the join script answers;
// - known users: those this instance told its core about, with the stamp of
//   the last sign of them (a sign newer than a sweep voids its verdict);
// - unconfirmed users: live in Redis but unknown here, seen by one sweep;
//   told to the core when the next sweep still sees them;
// - evicted users: reported evicted, so an expiry seen twice (keyspace
//   event and sweep) is reported once.
#pragma once

#include <flock/detail/string_map.hpp>
#include <flock/protocol.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace flk::detail::redis {

/// What the broker keeps of a user the core joined through it.
struct local_user {
    std::string meta_json;
    std::string joined_at;  ///< ms since the epoch, as stored in the hash
    std::optional<position> cursor;
    std::int64_t cursor_ts = 0;
    std::chrono::steady_clock::time_point cursor_written_at{};  ///< last HSET of the cursor
    bool cursor_written = false;  ///< a cursor hash of this session is (being) written
    std::chrono::steady_clock::time_point ttl_refreshed_at{};
    bool pending = false;  ///< join script not answered yet
    std::uint64_t seq = 0;
};

class membership {
public:
    using clock = std::chrono::steady_clock;
    using join_id = std::uint64_t;

    // ---- local users -----------------------------------------------------------

    local_user* find_local(std::string_view room, std::string_view user) {
        auto rm = locals_.find(room);
        if (rm == locals_.end()) return nullptr;
        auto u = rm->second.find(user);
        return u == rm->second.end() ? nullptr : &u->second;
    }

    /// Calls f(room, user, local_user&) for every local user.
    template <class F>
    void for_each_local(F&& f) {
        for (auto& [room, users] : locals_)
            for (auto& [user, lu] : users) f(room, user, lu);
    }

    /// The local users whose join has been answered (the core's members).
    std::vector<std::pair<std::string, std::string>> joined_locals() const {
        std::vector<std::pair<std::string, std::string>> out;
        for (auto const& [room, members] : locals_)
            for (auto const& [user, lu] : members)
                if (!lu.pending) out.emplace_back(room, user);
        return out;
    }

    // ---- joins -----------------------------------------------------------------

    struct join_ticket {
        join_id id = 0;
        /// Parked until the room's SUBSCRIBE is confirmed (subscribe_confirmed,
        /// unsubscribed or connection_lost releases it), so no broadcast sent
        /// after the snapshot can be missed. Else: run the join script now.
        bool parked = false;
    };
    /// The core asks to join `user` (replacing whatever was kept of it).
    join_ticket join_requested(std::string const& room, std::string const& user, std::string meta_json,
                               std::string joined_at, clock::time_point now) {
        auto id = ++join_seq_;
        auto& lu = locals_[room][user];
        lu = local_user{};
        lu.meta_json = std::move(meta_json);
        lu.joined_at = std::move(joined_at);
        lu.ttl_refreshed_at = now;
        lu.pending = true;
        lu.seq = id;
        join_ticket t{id, false};
        auto rs = rooms_.find(room);
        if (rs == rooms_.end()) return t;
        mark_known(rs->second, user);
        if (!rs->second.confirmed) {
            rs->second.waiting.push_back(id);
            t.parked = true;
        }
        return t;
    }

    /// Join `id` failed (Redis down, an error, or the room full): forgotten,
    /// unless a newer join of the user replaced it.
    void join_failed(std::string const& room, std::string const& user, join_id id) {
        auto rm = locals_.find(room);
        if (rm == locals_.end()) return;
        auto u = rm->second.find(user);
        if (u == rm->second.end() || u->second.seq != id) return;
        rm->second.erase(u);
        if (rm->second.empty()) locals_.erase(rm);
        if (auto r = rooms_.find(room); r != rooms_.end()) r->second.known.erase(user);
    }

    /// Join `id` is in, with `others` in its snapshot: they become known, and
    /// their cursors are what this instance relayed (see merge_relayed_cursors).
    void join_succeeded(std::string const& room, std::string const& user, join_id id,
                        std::vector<server::member>& others) {
        merge_relayed_cursors(room, others);
        if (auto* lu = find_local(room, user); lu && lu->seq == id) lu->pending = false;
        if (auto rs = rooms_.find(room); rs != rooms_.end())
            for (auto const& m : others) mark_known(rs->second, m.user_id);
    }

    /// The core leaves `user`: forgotten here. Returns the joinedAt of its
    /// join (empty if none is kept), which the leave script compares.
    std::string leave(std::string_view room, std::string_view user) {
        std::string joined_at;
        forget_local(room, user, &joined_at);
        if (auto r = rooms_.find(room); r != rooms_.end()) r->second.known.erase(std::string(user));
        return joined_at;
    }

    // ---- subscriptions ---------------------------------------------------------

    bool following(std::string_view room) const { return rooms_.contains(room); }

    /// The core follows `room`. True: a new room, to SUBSCRIBE (when `up`:
    /// else the next connection subscribes it).
    bool subscribe(std::string_view room, bool up) {
        auto [it, fresh] = rooms_.try_emplace(std::string(room));
        if (!fresh) return false;
        if (up) acks_[it->first] += 2;  // one per channel
        return true;
    }

    struct unsubscribed {
        bool was_followed = false;
        std::vector<join_id> released;  ///< parked joins: nothing to wait for any more
    };
    unsubscribed unsubscribe(std::string_view room) {
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return {};
        unsubscribed u{true, std::move(it->second.waiting)};
        rooms_.erase(it);
        return u;
    }

    /// Redis confirmed the SUBSCRIBE of one of `room`'s two channels. Returns
    /// the parked joins to run now (once both are confirmed).
    std::vector<join_id> subscribe_confirmed(std::string_view room) {
        auto a = acks_.find(room);
        if (a != acks_.end() && --a->second > 0) return {};
        if (a != acks_.end()) acks_.erase(a);
        auto it = rooms_.find(room);
        if (it == rooms_.end() || it->second.confirmed) return {};
        it->second.confirmed = true;
        return std::exchange(it->second.waiting, {});
    }

    bool confirmed(std::string_view room) const {
        auto it = rooms_.find(room);
        return it != rooms_.end() && it->second.confirmed;
    }

    /// A new connection: every followed room is to be subscribed again (and
    /// confirmed again); what a sweep saw before is stale.
    std::vector<std::string> connection_up() {
        acks_.clear();
        std::vector<std::string> rooms;
        for (auto& [room, st] : rooms_) {
            st.confirmed = false;
            st.unconfirmed.clear();
            acks_[room] += 2;
            rooms.push_back(room);
        }
        return rooms;
    }

    /// The connection is gone: the parked joins fail.
    std::vector<join_id> connection_lost() {
        acks_.clear();
        std::vector<join_id> failed;
        for (auto& [room, st] : rooms_) {
            st.confirmed = false;
            for (auto id : st.waiting) failed.push_back(id);
            st.waiting.clear();
        }
        return failed;
    }

    // ---- broadcasts of other instances -------------------------------------------

    /// A message another instance broadcast to `room`: true to tell the core,
    /// false to drop it (a user:left of a user not in the room as this
    /// instance knows it: already evicted here, or never seen).
    bool remote_message(std::string_view room, server_message const& msg) {
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return false;
        auto& st = it->second;
        bool deliver = true;
        std::visit(
            [&](auto const& m) {
                using M = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<M, server::user_left>) {
                    // (A Node.js instance republishes evictions.)
                    if (st.known.erase(m.user_id) == 0) deliver = false;
                    st.relayed_cursors.erase(m.user_id);
                } else if constexpr (std::is_same_v<M, server::user_joined>) {
                    mark_known(st, m.user_id);
                } else if constexpr (std::is_same_v<M, server::cursor_updated> ||
                                     std::is_same_v<M, server::cursor_removed> ||
                                     std::is_same_v<M, server::presence_updated>) {
                    if (auto k = st.known.find(m.user_id); k != st.known.end()) k->second = ++stamp_;
                    if constexpr (std::is_same_v<M, server::cursor_updated>) st.relayed_cursors[m.user_id] = m.pos;
                    if constexpr (std::is_same_v<M, server::cursor_removed>) st.relayed_cursors.erase(m.user_id);
                }
            },
            msg);
        return deliver;
    }

    /// `user` joined on another instance and the core has been told. Whether
    /// that replaced this instance's member is the core's decision (see
    /// basic_flock::replaced_elsewhere): `core_holds` is its answer afterwards.
    /// A user the core no longer holds is no longer ours to write back (no
    /// restore, no leave at stop, no cursor write) -- unless its join is
    /// still in flight: the join's answer settles that one. True if the local
    /// user was forgotten.
    bool remote_join_settled(std::string_view room, std::string_view user, bool core_holds) {
        if (core_holds) return false;
        auto* lu = find_local(room, user);
        if (!lu || lu->pending) return false;
        forget_local(room, user, nullptr);
        return true;
    }

    // ---- evictions -------------------------------------------------------------

    enum class expiry { ignore, confirm_first, evict };
    /// An expired-key event for `user`'s presence in `room`. One of ours
    /// (confirm_first): the reply to a re-join on the command connection may
    /// have overtaken the event; evict only if the key is still gone once the
    /// commands sent so far have run (EXISTS).
    expiry expired(std::string_view room, std::string_view user) {
        if (!following(room)) return expiry::ignore;
        return find_local(room, user) ? expiry::confirm_first : expiry::evict;
    }

    struct eviction {
        bool report = false;        ///< tell the core (on_evicted)
        bool forgot_local = false;  ///< a local user was forgotten (drop its cursor write)
    };
    /// `user`'s presence in `room` is gone (an expiry event, confirmed, or a
    /// sweep): reported once.
    eviction evict(std::string const& room, std::string const& user) {
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return {};
        auto& st = it->second;
        auto* lu = find_local(room, user);
        // Both the expired event and a sweep can see the same expiry.
        if (!st.known.contains(user) && st.evicted.contains(user) && !lu) return {};
        eviction e;
        if (lu) {
            if (lu->pending) return {};  // its join is writing a fresh presence
            forget_local(room, user, nullptr);
            e.forgot_local = true;
        }
        st.known.erase(user);
        st.unconfirmed.erase(user);
        st.relayed_cursors.erase(user);
        st.evicted[user] = sweeps_;
        e.report = true;
        return e;
    }

    // ---- sweeps ----------------------------------------------------------------

    /// A sweep starts: its stamp (signs of life newer than it void its
    /// verdicts); then known_users(room) for each followed room.
    std::uint64_t sweep_started() {
        ++sweeps_;
        return stamp_;
    }

    std::vector<std::string> rooms() const {
        std::vector<std::string> out;
        out.reserve(rooms_.size());
        for (auto const& [room, st] : rooms_) out.push_back(room);
        return out;
    }

    /// The users the sweep of `room` asks about (besides the member set).
    std::vector<std::string> known_users(std::string_view room) const {
        std::vector<std::string> out;
        if (auto it = rooms_.find(room); it != rooms_.end())
            for (auto const& [user, stamp] : it->second.known) out.push_back(user);
        return out;
    }

    struct sweep_verdict {
        std::vector<std::string> evicted;  ///< to evict() (which reports each once)
        /// Live members unknown here for two sweeps in a row: a user:joined
        /// missed while disconnected. Tell the core (user:joined, and the
        /// cursor if any); they are known from now on.
        std::vector<server::member> fresh;
    };
    /// The sweep script's answer for `room` (sweep stamp `issued`): the users
    /// whose presence is gone, and the live members.
    sweep_verdict sweep_reply(std::string const& room, std::uint64_t issued, std::vector<std::string> const& gone,
                              std::vector<server::member> live) {
        sweep_verdict v;
        auto it = rooms_.find(room);
        if (it == rooms_.end()) return v;
        auto& st = it->second;
        for (auto const& user : gone) {
            auto k = st.known.find(user);
            if (k != st.known.end() && k->second > issued) continue;  // seen alive since
            if (auto* lu = find_local(room, user); lu && lu->pending) continue;
            v.evicted.push_back(user);
        }
        std::erase_if(st.evicted, [this](auto const& e) { return e.second + 3 < sweeps_; });
        string_set still_unknown;
        for (auto& m : live) {
            if (st.known.contains(m.user_id) || find_local(room, m.user_id)) continue;
            still_unknown.insert(m.user_id);
            if (st.unconfirmed.contains(m.user_id)) v.fresh.push_back(std::move(m));
        }
        for (auto const& m : v.fresh) still_unknown.erase(m.user_id);
        st.unconfirmed = std::move(still_unknown);
        for (auto const& m : v.fresh) mark_known(st, m.user_id);
        return v;
    }

    // ---- observers (tests, metrics) ----------------------------------------------

    bool known(std::string_view room, std::string_view user) const {
        auto it = rooms_.find(room);
        return it != rooms_.end() && it->second.known.contains(user);
    }
    bool unconfirmed(std::string_view room, std::string_view user) const {
        auto it = rooms_.find(room);
        return it != rooms_.end() && it->second.unconfirmed.contains(user);
    }
    bool evicted(std::string_view room, std::string_view user) const {
        auto it = rooms_.find(room);
        return it != rooms_.end() && it->second.evicted.contains(user);
    }

private:
    struct room_state {
        string_map<std::uint64_t> known;
        string_set unconfirmed;
        /// With the sweep count when reported: kept for three sweeps.
        string_map<std::uint64_t> evicted;
        /// The last position relayed here of each remote user with a cursor.
        string_map<position> relayed_cursors;
        bool confirmed = false;        ///< SUBSCRIBE acknowledged
        std::vector<join_id> waiting;  ///< joins parked until then
    };

    void mark_known(room_state& st, std::string const& user) {
        st.known[user] = ++stamp_;
        st.unconfirmed.erase(user);
        st.evicted.erase(user);
    }

    void forget_local(std::string_view room, std::string_view user, std::string* joined_at) {
        auto rm = locals_.find(room);
        if (rm == locals_.end()) return;
        if (auto u = rm->second.find(user); u != rm->second.end()) {
            if (joined_at) *joined_at = std::move(u->second.joined_at);
            rm->second.erase(u);
        }
        if (rm->second.empty()) locals_.erase(rm);
    }

    // A snapshot read from Redis may lag the cursors this instance has
    // relayed (coalesced writes): the relayed position, or our own user's,
    // is what the room has seen, so it wins.
    void merge_relayed_cursors(std::string const& room, std::vector<server::member>& members) {
        auto rs = rooms_.find(room);
        auto lr = locals_.find(room);
        for (auto& m : members) {
            if (lr != locals_.end())
                if (auto u = lr->second.find(m.user_id); u != lr->second.end() && u->second.cursor) {
                    m.cursor = u->second.cursor;
                    continue;
                }
            if (rs != rooms_.end())
                if (auto c = rs->second.relayed_cursors.find(m.user_id); c != rs->second.relayed_cursors.end())
                    m.cursor = c->second;
        }
    }

    string_map<string_map<local_user>> locals_;  ///< room -> user -> what the core told us
    string_map<room_state> rooms_;               ///< followed rooms
    string_map<int> acks_;                       ///< SUBSCRIBE confirmations still due, per room
    std::uint64_t join_seq_ = 0, stamp_ = 0, sweeps_ = 0;
};

}  // namespace flk::detail::redis
