// What the admin dashboard (flock/admin.hpp) and the instance registry
// (flock/instance_registry.hpp) read from a server, and how the admin orders
// it: per shard, on the shard's own thread. admin_backend_of() makes one for
// a flk::sharded_server of basic_flock shards.
#pragma once

#include <flock/basic_flock.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk {

/// A server as the admin and the instance registry see it.
struct admin_backend {
    struct shard_report {
        std::size_t connections = 0;
        std::size_t room_count = 0;    ///< rooms with a member on this shard
        std::vector<local_room> rooms; ///< filled only when asked `with_rooms`
        std::string broker;  ///< "memory", "redis"
        bool up = true;
        std::string error;
        std::string instance;  ///< the Redis broker's instanceId
    };
    std::size_t shards = 0;
    /// Calls `done` (from any thread) with shard i's state; its rooms and
    /// their members too when `with_rooms` (a copy of them: the dashboard
    /// wants it, the registry's refresh does not).
    std::function<void(std::size_t i, bool with_rooms, std::function<void(shard_report)> done)> report;
    /// Shard i closes the sockets in `room` ("" = every room), then calls `done` (any thread).
    std::function<void(std::size_t i, std::string room, std::function<void()> done)> close;
};

inline constexpr std::string_view admin_close_message = "room closed by admin";

/// The backend of a flk::sharded_server (of basic_flock shards). It holds a
/// reference: the server must outlive every use.
template <class Sharded>
admin_backend admin_backend_of(Sharded& server) {
    using S = typename Sharded::server_type;
    admin_backend b;
    b.shards = server.size();
    b.report = [&server](std::size_t i, bool with_rooms, std::function<void(admin_backend::shard_report)> done) {
        server.post(i, [with_rooms, done = std::move(done)](std::size_t, S& s) {
            admin_backend::shard_report r;
            r.connections = s.connection_count();
            r.room_count = s.room_count();
            if (with_rooms) r.rooms = s.local_rooms();
            if constexpr (requires { s.broker().connected(); s.broker().instance_id(); }) {
                r.broker = "redis";
                r.up = s.broker().connected();
                r.error = s.broker().last_error();
                r.instance = s.broker().instance_id();
            } else {
                r.broker = "memory";
            }
            done(std::move(r));
        });
    };
    b.close = [&server](std::size_t i, std::string room, std::function<void()> done) {
        server.post(i, [room = std::move(room), done = std::move(done)](std::size_t, S& s) {
            s.close_room(room, std::string(admin_close_message));
            if (done) done();
        });
    };
    return b;
}

}  // namespace flk
