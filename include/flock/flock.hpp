// flock: real-time multiplayer cursors and presence.
//
// The umbrella header: the core template, every shipped policy, and aliases
// for the common policy sets. Include the individual headers instead to keep
// a translation unit small (the test policies need no Beast, for instance).
#pragma once

#include <flock/basic_flock.hpp>
#include <flock/broker/memory.hpp>
#include <flock/broker/redis.hpp>
#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/codec/negotiated.hpp>
#include <flock/options.hpp>
#include <flock/protocol.hpp>
#include <flock/sharded_server.hpp>
#include <flock/testing/memory_transport.hpp>
#include <flock/testing/mock_broker.hpp>
#include <flock/transport/websocket.hpp>

namespace flk {

// The ready servers speak JSON to browsers and the binary codec to clients
// that ask for it (subprotocol flock.binary.v2).

/// One process, everything in memory.
using single_node_server = basic_flock<websocket_transport, memory_broker, json_or_binary_codec>;
/// Several instances sharing one Redis.
using redis_scaled_server = basic_flock<websocket_transport, redis_broker, json_or_binary_codec>;

namespace testing {
/// No sockets, no Redis: for unit tests of code built on flock.
using test_server = basic_flock<memory_transport, mock_broker, json_codec>;
}  // namespace testing

}  // namespace flk
