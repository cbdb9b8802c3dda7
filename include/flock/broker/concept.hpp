// The Broker policy: how instances share presence and broadcasts.
#pragma once

#include <flock/options.hpp>
#include <flock/protocol.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/json/object.hpp>

#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace flk {

/// A user asks to enter a room.
struct join_request {
    std::string room_id;
    std::string user_id;
    metadata meta;
    std::size_t capacity = 0;  ///< members allowed in the room, across the cluster
};

/// The broker's answer to a join_request.
struct join_result {
    enum class status { joined, room_full, failed };
    status outcome = status::failed;
    /// Everyone else in the room (cluster-wide), with their last cursor.
    std::vector<server::member> others;
};

using join_handler = std::function<void(join_result)>;

/// What a broker reports to the core, on the core's executor.
class broker_events {
public:
    /// A message another instance broadcast to a room this instance subscribed.
    virtual void on_remote(std::string_view room_id, server_message const& msg) = 0;
    /// A user's presence expired (no sign of life for the presence TTL). Each
    /// instance hears an eviction once and tells only its own members.
    virtual void on_evicted(std::string_view room_id, std::string_view user_id) = 0;
    /// Whether `user_id` is a member of `room_id` on this instance (joined, or
    /// its join in flight). The core owns this answer, and the decision that a
    /// user:joined from another instance replaced its member ("re-joined
    /// elsewhere"): a broker that keeps its own record of local members asks
    /// here after passing on a user:joined, instead of deciding again. The
    /// default (no member) suits cores that keep no members.
    virtual bool holds_member(std::string_view room_id, std::string_view user_id) const {
        (void)room_id;
        (void)user_id;
        return false;
    }

protected:
    ~broker_events() = default;
};

/// A Broker stores presence (metadata, cursor, TTL), admits joins against the
/// room capacity, relays broadcasts between instances and reports evictions.
///
/// - Built from `(executor, options const&, broker_events&)`.
/// - `join(request, handler)`: admits the user unless the room is full (a user
///   already present is always admitted), writes its presence with the TTL and
///   answers with the others in the room. The handler may run before `join`
///   returns (in-process brokers) or later (network brokers).
/// - `leave` removes a user's presence and cursor at once.
/// - `touch` refreshes the presence TTL; `set_metadata`/`set_cursor`/`clear_cursor` update it.
/// - `publish` hands a broadcast to the other instances (local delivery is the core's job).
/// - `subscribe`/`unsubscribe` while a room has local members.
/// - `health(object&)` adds the broker's fields to `GET /health`.
template <class B>
concept Broker =
    std::constructible_from<B, boost::asio::any_io_executor, options const&, broker_events&> &&
    requires(B& b, B const& cb, join_request req, join_handler h, std::string_view room,
             std::string_view user, metadata const& meta, position pos, std::int64_t ts,
             server_message const& msg, std::function<void()> done, boost::json::object& health) {
        b.start();
        b.stop(std::move(done));
        b.join(std::move(req), std::move(h));
        b.leave(room, user);
        b.touch(room, user);
        b.set_metadata(room, user, meta);
        b.set_cursor(room, user, pos, ts);
        b.clear_cursor(room, user);
        b.publish(room, msg);
        b.subscribe(room);
        b.unsubscribe(room);
        cb.health(health);
    };

}  // namespace flk
