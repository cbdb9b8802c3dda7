// The in-process broker: presence lives in this process.
//
// Alone, a memory_broker is the whole story: one event loop, presence in a
// local store, no other instance to reach. Unlike the reference server it
// still evicts a user whose heartbeats stop for the presence TTL, so a
// half-open connection cannot leave a ghost behind.
//
// Several event loops of one process (flk::sharded_server) each run their own
// core and their own memory_broker, joined by a memory_hub. They behave like
// instances sharing a Redis, with message passing instead of a network and
// no state shared between threads:
//
// - Each room's presence lives on one shard, its owner (a hash of the room
//   id). Joins, presence writes and expiry of that room run there, in order,
//   so capacity is checked atomically without a lock.
// - A shard's broadcast goes to the owner, which hands it to every other
//   shard that subscribed the room, as Redis pub/sub does. All traffic about
//   a room passes through its owner, so every shard sees it in one order.
// - Operations for another shard are batched per loop turn: one post per
//   destination carries all of them, so a busy shard pays one cross-thread
//   hand-off per turn rather than one per cursor move.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/detail/contain.hpp>
#include <flock/detail/presence_store.hpp>
#include <flock/detail/string_map.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace flk {

class memory_broker;

/// Joins the memory_brokers of one process's shards. Create it with the
/// number of shards, then one memory_broker per shard index, each on its own
/// executor, before any of them starts. It must outlive them.
class memory_hub {
public:
    explicit memory_hub(std::size_t shards) : shards_(std::max<std::size_t>(shards, 1)) {}
    memory_hub(memory_hub const&) = delete;
    memory_hub& operator=(memory_hub const&) = delete;

    std::size_t size() const noexcept { return shards_.size(); }
    /// The shard that keeps the presence of `room`.
    std::size_t owner_of(std::string_view room) const noexcept {
        return shards_.size() == 1 ? 0 : detail::string_hash{}(room) % shards_.size();
    }

private:
    friend class memory_broker;
    // A shard as the others reach it. Written before the shards' threads
    // start; `life` expires when the shard's broker is destroyed, so a batch
    // posted to it just before finds nothing to run on.
    struct slot {
        memory_broker* broker = nullptr;
        std::weak_ptr<memory_broker*> life;
        boost::asio::any_io_executor ex;
    };
    std::vector<slot> shards_;
};

class memory_broker {
public:
    /// A broker on its own: a hub of one.
    memory_broker(boost::asio::any_io_executor ex, options const& opts, broker_events& events)
        : own_hub_(std::make_unique<memory_hub>(1)), hub_(*own_hub_), shard_(0), ex_(ex), events_(events),
          log_(opts.make_logger()), store_(opts.presence_ttl), timer_(ex), sweep_every_(sweep_period(opts)) {
        hub_.shards_[0] = {this, life_, ex_};
    }

    /// Shard `shard` of `hub`; runs on `ex`, which is this shard's event loop.
    memory_broker(boost::asio::any_io_executor ex, options const& opts, broker_events& events, memory_hub& hub,
                  std::size_t shard)
        : hub_(hub), shard_(shard), ex_(ex), events_(events), log_(opts.make_logger()), store_(opts.presence_ttl),
          timer_(ex), sweep_every_(sweep_period(opts)) {
        if (shard >= hub.size() || hub.shards_[shard].broker != nullptr)
            throw std::invalid_argument("flock: memory_hub shard index taken or out of range");
        hub_.shards_[shard] = {this, life_, ex_};
        outbox_.resize(hub.size());
    }

    ~memory_broker() { hub_.shards_[shard_].broker = nullptr; }

    memory_broker(memory_broker const&) = delete;
    memory_broker& operator=(memory_broker const&) = delete;

    void start() {
        running_ = true;
        arm();
    }
    void stop(std::function<void()> done) {
        running_ = false;
        timer_.cancel();
        pending_joins_.clear();  // their answers would find no one to tell
        if (done) done();
    }

    void join(join_request req, join_handler handler) {
        auto owner = hub_.owner_of(req.room_id);
        if (owner == shard_) return handler(admit(req, shard_, 0));  // the caller's own call
        auto id = ++last_join_;
        pending_joins_.emplace(id, std::move(handler));
        send(owner, [req = std::move(req), from = shard_, id](memory_broker& o) {
            o.send(from, [id, res = o.admit(req, from, id), owner = o.shard_, r = req.room_id,
                          u = req.user_id](memory_broker& b) mutable {
                if (auto h = b.pending_joins_.extract(id))
                    detail::contain(b.log_, "join handler", [&] { h.mapped()(std::move(res)); });
                // Behind whatever the handler published (its user:joined), in order.
                b.send(owner, [r = std::move(r), u = std::move(u), from = b.shard_, id](memory_broker& o) {
                    o.announced(r, u, from, id);
                });
            });
        });
    }
    void leave(std::string_view room, std::string_view user) {
        at_owner(room, user, [from = shard_](memory_broker& b, std::string_view r, std::string_view u) {
            b.release(r, u, from);
        });
    }
    void touch(std::string_view room, std::string_view user) {
        at_owner(room, user, [](memory_broker& b, std::string_view r, std::string_view u) {
            b.store_.touch(r, u, clock::now());
        });
    }
    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        at_owner(room, user, [meta](memory_broker& b, std::string_view r, std::string_view u) {
            b.store_.set_metadata(r, u, meta);
        });
    }
    void set_cursor(std::string_view room, std::string_view user, position pos, std::int64_t) {
        at_owner(room, user, [pos](memory_broker& b, std::string_view r, std::string_view u) {
            b.store_.set_cursor(r, u, pos);
        });
    }
    void clear_cursor(std::string_view room, std::string_view user) {
        at_owner(room, user, [](memory_broker& b, std::string_view r, std::string_view u) {
            b.store_.set_cursor(r, u, std::nullopt);
        });
    }

    /// Hands a broadcast to the other shards following the room (none when alone).
    void publish(std::string_view room, server_message const& msg) {
        if (hub_.size() == 1) return;
        auto shared = std::make_shared<server_message const>(msg);
        auto owner = hub_.owner_of(room);
        if (owner == shard_) return fan_out(room, shared, shard_);
        send(owner, [r = std::string(room), shared, from = shard_](memory_broker& o) { o.fan_out(r, shared, from); });
    }
    void subscribe(std::string_view room) {
        if (hub_.size() == 1) return;
        send_to_owner(room, [from = shard_](memory_broker& o, std::string const& r) {
            auto& subs = o.subscribers_[r];
            if (std::ranges::find(subs, from) == subs.end()) subs.push_back(from);
        });
    }
    void unsubscribe(std::string_view room) {
        if (hub_.size() == 1) return;
        send_to_owner(room, [from = shard_](memory_broker& o, std::string const& r) {
            auto it = o.subscribers_.find(r);
            if (it == o.subscribers_.end()) return;
            std::erase(it->second, from);
            if (it->second.empty()) o.subscribers_.erase(it);
        });
    }
    void health(boost::json::object&) const {}

    /// Evicts everyone idle at `now` among the rooms this shard owns, and tells
    /// every shard following each room once. The timer calls it; tests may too.
    void expire_idle(std::chrono::steady_clock::time_point now) {
        for (auto const& gone : store_.expire(now)) {
            forget(gone.first, gone.second);
            evicted(gone.first, gone.second);
            for_each_follower(gone.first, shard_, [&](memory_broker& b) {
                send(b.shard_, [gone](memory_broker& s) {
                    if (s.running_) s.evicted(gone.first, gone.second);
                });
            });
        }
    }

    /// The presence this shard owns.
    detail::presence_store const& store() const noexcept { return store_; }

private:
    using clock = std::chrono::steady_clock;
    using operation = std::function<void(memory_broker&)>;

    static clock::duration sweep_period(options const& opts) {
        return std::clamp<clock::duration>(opts.presence_ttl / 10, std::chrono::milliseconds(100),
                                           std::chrono::seconds(1));
    }

    // At the owner: the join, and its snapshot. A user admitted for another
    // shard stays out of the snapshots of joiners on other shards until that
    // shard has run the join's handler: the core publishes the user:joined
    // from it, and that broadcast comes through here later, to every shard
    // following the room. A joiner admitted meanwhile would otherwise both
    // find the user in its snapshot and then hear the user:joined. A joiner
    // on the newcomer's own shard keeps it: that shard runs the two answers
    // in order, so the newcomer's user:joined goes out before this joiner is
    // in, and only the snapshot tells it.
    join_result admit(join_request const& req, std::size_t from, std::uint64_t id) {
        auto res = store_.join(req, clock::now());
        if (res.outcome != join_result::status::joined) return res;
        auto& room = holders_[req.room_id];
        std::erase_if(res.others, [&](server::member const& m) {
            auto u = room.find(m.user_id);
            return u != room.end() && !u->second.announced && u->second.shard != from;
        });
        room[req.user_id] = {from, id, from == shard_};
        return res;
    }
    // At the owner: shard `from` has run the answer to its join `id` of `user`
    // (unless a newer join replaced it), so the user is in every snapshot.
    void announced(std::string_view room, std::string_view user, std::size_t from, std::uint64_t id) {
        if (auto* h = holder(room, user); h && h->shard == from && h->join == id) h->announced = true;
    }
    // At the owner: shard `from` leaves `user`, unless the user has joined on
    // another shard since (a stale socket's close never removes the live
    // user; Redis mode compares joinedAt for the same reason).
    void release(std::string_view room, std::string_view user, std::size_t from) {
        if (auto* h = holder(room, user); h && h->shard != from) return;
        store_.leave(room, user);
        forget(room, user);
    }
    void forget(std::string_view room, std::string_view user) {
        auto r = holders_.find(room);
        if (r == holders_.end()) return;
        if (auto u = r->second.find(user); u != r->second.end()) r->second.erase(u);
        if (r->second.empty()) holders_.erase(r);
    }
    struct holding {
        std::size_t shard = 0;   // the shard whose member holds the presence
        std::uint64_t join = 0;  // that shard's join id (0: the owner's own)
        bool announced = false;  // that shard has run the join's answer
    };
    holding* holder(std::string_view room, std::string_view user) {
        auto r = holders_.find(room);
        if (r == holders_.end()) return nullptr;
        auto u = r->second.find(user);
        return u == r->second.end() ? nullptr : &u->second;
    }

    // Runs `apply(broker, room, user)` on the shard that owns the room: right
    // here when that is this shard (always, when alone), else in its next batch.
    template <class Apply>
    void at_owner(std::string_view room, std::string_view user, Apply apply) {
        auto owner = hub_.owner_of(room);
        if (owner == shard_) return apply(*this, room, user);
        send(owner, [r = std::string(room), u = std::string(user), apply](memory_broker& o) { apply(o, r, u); });
    }
    template <class Apply>
    void send_to_owner(std::string_view room, Apply apply) {
        auto owner = hub_.owner_of(room);
        if (owner == shard_) return apply(*this, std::string(room));
        send(owner, [r = std::string(room), apply](memory_broker& o) { apply(o, r); });
    }

    // The core hears of a broadcast or an eviction; what it throws stays here.
    void remote(std::string_view room, server_message const& msg) {
        detail::contain(log_, "on_remote", [&] { events_.on_remote(room, msg); });
    }
    void evicted(std::string_view room, std::string_view user) {
        detail::contain(log_, "on_evicted", [&] { events_.on_evicted(room, user); });
    }

    // At the owner: every shard following the room but `from` hears the broadcast.
    void fan_out(std::string_view room, std::shared_ptr<server_message const> const& msg, std::size_t from) {
        if (from != shard_ && running_) remote(room, *msg);
        for_each_follower(room, from, [&](memory_broker& b) {
            send(b.shard_, [r = std::string(room), msg](memory_broker& s) {
                if (s.running_) s.remote(r, *msg);
            });
        });
    }
    // Shards other than this one and `skip` that subscribed `room`.
    template <class F>
    void for_each_follower(std::string_view room, std::size_t skip, F f) {
        auto it = subscribers_.find(room);
        if (it == subscribers_.end()) return;
        for (auto s : it->second)
            if (s != shard_ && s != skip) f(*hub_.shards_[s].broker);
    }

    // Queues `op` for shard `to`; the queues leave at the end of this loop turn.
    void send(std::size_t to, operation op) {
        if (to == shard_) return op(*this);
        outbox_[to].push_back(std::move(op));
        if (flush_pending_) return;
        flush_pending_ = true;
        boost::asio::post(ex_, [life = std::weak_ptr(life_)] {
            if (auto self = life.lock()) (*self)->flush();
        });
    }
    void flush() {
        flush_pending_ = false;
        for (std::size_t to = 0; to < outbox_.size(); ++to) {
            if (outbox_[to].empty()) continue;
            auto const& dest = hub_.shards_[to];
            boost::asio::post(dest.ex, [life = dest.life, ops = std::exchange(outbox_[to], {})]() {
                auto self = life.lock();
                if (!self) return;  // that shard is gone
                for (auto const& op : ops) op(**self);
            });
        }
    }

    void arm() {
        timer_.expires_after(sweep_every_);
        timer_.async_wait([life = std::weak_ptr(life_)](boost::system::error_code ec) {
            auto self = life.lock();
            if (ec || !self || !(*self)->running_) return;
            (*self)->expire_idle(clock::now());
            (*self)->arm();
        });
    }

    // Posted work and timers hold this weakly, never a raw `this`.
    std::shared_ptr<memory_broker*> life_ = std::make_shared<memory_broker*>(this);
    std::unique_ptr<memory_hub> own_hub_;  // only when alone
    memory_hub& hub_;
    std::size_t shard_;
    boost::asio::any_io_executor ex_;
    broker_events& events_;
    logger log_;
    detail::presence_store store_;                              // rooms this shard owns
    detail::string_map<std::vector<std::size_t>> subscribers_;  // of rooms this shard owns
    // Of rooms this shard owns: who holds each user's presence, by room and user.
    detail::string_map<detail::string_map<holding>> holders_;
    std::vector<std::vector<operation>> outbox_;                // per destination shard
    bool flush_pending_ = false;
    std::unordered_map<std::uint64_t, join_handler> pending_joins_;  // asked of another shard
    std::uint64_t last_join_ = 0;
    boost::asio::steady_timer timer_;
    clock::duration sweep_every_;
    bool running_ = false;
};

static_assert(Broker<memory_broker>);

}  // namespace flk
