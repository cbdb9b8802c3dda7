// An encoded server message, ready to be queued on any number of connections.
#pragma once

#include <flock/protocol.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace flk {

/// One immutable, reference-counted encoded message. A broadcast is encoded
/// once and the same frame is queued on every recipient.
struct frame {
    std::shared_ptr<std::string const> bytes;
    frame_kind kind = frame_kind::text;

    /// Identifies the (room, user) a frame is about, 0 for none. A send queue
    /// may replace an unsent `conflatable` frame with a newer one of the same
    /// key (a newer cursor position makes the older one worthless), as long
    /// as no other frame of that key was queued after it.
    std::uint64_t key = 0;
    bool conflatable = false;

    std::size_t size() const noexcept { return bytes ? bytes->size() : 0; }
    std::string_view view() const noexcept { return bytes ? std::string_view(*bytes) : std::string_view(); }

    static frame make(std::string payload, frame_kind kind, std::uint64_t key = 0,
                      bool conflatable = false) {
        return frame{std::make_shared<std::string const>(std::move(payload)), kind, key, conflatable};
    }
};

}  // namespace flk
