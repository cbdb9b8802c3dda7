// A bounded, conflating queue of outgoing frames for one connection. No I/O:
// the transport reads the frames it holds, writes as many as fit in one
// gather write, and tells it which were written.
#pragma once

#include <flock/frame.hpp>

#include <cassert>
#include <cstddef>
#include <utility>
#include <vector>

namespace flk::detail {

/// The frames waiting to be written on one connection.
///
/// - Frames are shared (`flk::frame` holds a reference-counted payload), so
///   queueing one broadcast on many connections copies no bytes.
/// - `bytes()` counts the payload of every frame held, including the one being
///   written; `push` refuses a frame that would take it past the bound.
/// - Conflation is for congested readers only (docs/protocol.md). The
///   transport says, with each push, whether the reader keeps up:
///   - `keeping_up`: the frame is appended, always. A reader that keeps up
///     gets every frame, in order, exactly once, however many are queued in
///     one turn of the event loop.
///   - `congested` (bytes of an earlier write are still unsent): a
///     `conflatable` frame with a nonzero key replaces the newest unsent
///     frame of the same key, if that one is conflatable too and lies within
///     the last `scan_limit` unsent frames. Any non-conflatable frame of the
///     same key (a presence event, say) stops the scan, so the order of
///     events about one key is never changed.
/// - At most one frame is "in flight": the oldest, once start_write() marked
///   it as partly written. It stays alive and counted until `finish_write()`,
///   and is never replaced or dropped by `drop_unsent()`.
///
/// Storage is a vector with a moving head; it is compacted when the dead
/// prefix dominates and released entirely when the queue drains, so an idle
/// connection holds no queue memory at all.
class send_queue {
public:
    enum class push_result {
        queued,      ///< appended at the back
        conflated,   ///< replaced an older unsent frame of the same key
        overflow,    ///< refused: the queue would exceed its byte bound; nothing changed
    };

    /// Whether the reader drains what it is sent; see the class comment.
    enum class reader : bool { keeping_up, congested };

    static constexpr std::size_t default_scan_limit = 64;

    explicit send_queue(std::size_t max_bytes, std::size_t scan_limit = default_scan_limit) noexcept
        : max_bytes_(max_bytes), scan_limit_(scan_limit) {}

    /// Queues `f`; for a congested reader, conflates it with an older frame when allowed.
    push_result push(frame f, reader r) {
        if (r == reader::congested && f.conflatable && f.key != 0) {
            std::size_t const first_unsent = head_ + (in_flight_ ? 1 : 0);
            std::size_t scanned = 0;
            for (std::size_t i = items_.size(); i > first_unsent && scanned < scan_limit_; --i, ++scanned) {
                frame& old = items_[i - 1];
                if (old.key != f.key) continue;
                if (!old.conflatable) break;
                std::size_t const next = bytes_ - old.size() + f.size();
                if (next > max_bytes_) return push_result::overflow;
                bytes_ = next;
                old = std::move(f);
                return push_result::conflated;
            }
        }
        if (f.size() > max_bytes_ - bytes_ || bytes_ > max_bytes_) return push_result::overflow;
        bytes_ += f.size();
        items_.push_back(std::move(f));
        return push_result::queued;
    }

    /// True while a frame is being written.
    bool writing() const noexcept { return in_flight_; }

    /// True when a frame waits and none is being written: call start_write().
    bool ready() const noexcept { return !in_flight_ && head_ < items_.size(); }

    /// Marks the oldest frame as being written and returns it; it stays valid
    /// until finish_write(). Precondition: ready().
    frame const& start_write() noexcept {
        assert(ready());
        in_flight_ = true;
        return items_[head_];
    }

    /// The oldest frame was written whole (or its write failed): drop it.
    /// It need not have been started: a gather write sends several frames
    /// at once and calls this once per frame written, start_write() only for
    /// a frame cut by a partial write. Precondition: !empty().
    void finish_write() {
        assert(!empty());
        in_flight_ = false;
        bytes_ -= items_[head_].size();
        items_[head_] = frame{};
        ++head_;
        if (head_ == items_.size()) {
            release();
        } else if (head_ >= 32 && head_ * 2 >= items_.size()) {
            // Compact: move the live tail to the front, amortised O(1) per frame.
            items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
            head_ = 0;
        }
    }

    /// Drops every frame not yet being written (the in-flight one is kept).
    void drop_unsent() {
        if (in_flight_) {
            std::size_t const keep = items_[head_].size();
            items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(head_) + 1, items_.end());
            bytes_ = keep;
        } else {
            release();
        }
    }

    /// Payload bytes held, the in-flight frame included.
    std::size_t bytes() const noexcept { return bytes_; }
    /// Frames held, the in-flight frame included.
    std::size_t size() const noexcept { return items_.size() - head_; }
    bool empty() const noexcept { return size() == 0; }
    std::size_t max_bytes() const noexcept { return max_bytes_; }

    /// The i-th held frame, oldest first (index 0 is the in-flight one while writing()).
    frame const& operator[](std::size_t i) const noexcept { return items_[head_ + i]; }

private:
    void release() noexcept {
        std::vector<frame>().swap(items_);
        head_ = 0;
        bytes_ = 0;
        in_flight_ = false;
    }

    std::vector<frame> items_;
    std::size_t head_ = 0;
    std::size_t bytes_ = 0;
    std::size_t max_bytes_;
    std::size_t scan_limit_;
    bool in_flight_ = false;
};

}  // namespace flk::detail
