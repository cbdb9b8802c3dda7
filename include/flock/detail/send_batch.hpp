// Many connections' writes in one system call (io_uring).
//
// A flush writes each dirty connection once. Made one send() at a time, each
// write pays a system call of its own, and on a virtual machine that entry
// and exit is a good part of what a small loopback send costs the kernel.
// Here a flush's small writes are copied into one arena, queued as io_uring
// sends, and submitted with one io_uring_enter. MSG_DONTWAIT makes each send
// complete during that call, as send() would: bytes taken, a short count, or
// EAGAIN; nothing is left in flight once submit() returns, so the caller
// handles each result as it would a send()'s.
//
// Built when FLOCK_WITH_IO_URING is defined (the build defines it when
// liburing is found) and used when the kernel allows it (io_uring can be
// disabled by sysctl or a seccomp filter, and sends need Linux 5.6);
// otherwise enabled() is false and the server writes with send(). A batch
// the ring takes only part of is finished with send(), and so is every
// batch after it.
#pragma once

#include <flock/detail/ws_poller.hpp>

#include <boost/system/error_code.hpp>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include <sys/socket.h>
#include <sys/uio.h>

#if defined(FLOCK_WITH_IO_URING)
#include <liburing.h>
#endif

namespace flk::detail {

class send_batch {
public:
    /// Writes one submission carries at most.
    static constexpr std::size_t capacity = 256;
    /// Bytes of one write it takes at most; a larger write is made on its own.
    static constexpr std::size_t max_write = 4096;

    /// What one write did: `bytes` sent, or `ec` (would_block when the socket
    /// took nothing).
    struct result {
        std::uint64_t tag;
        std::size_t bytes;
        boost::system::error_code ec;
    };

    send_batch() = default;
    send_batch(send_batch const&) = delete;
    send_batch& operator=(send_batch const&) = delete;
    ~send_batch() { close(); }

    /// Sets up the ring. False when this build or this kernel has no io_uring,
    /// or one that cannot send; `why` then says which.
    bool open(std::string& why) {
#if defined(FLOCK_WITH_IO_URING)
        if (enabled_) return true;
        int const r = ::io_uring_queue_init(capacity, &ring_, 0);
        if (r < 0) {
            why = std::string("io_uring_setup: ") + std::strerror(-r);
            return false;
        }
        // Linux 5.1 to 5.5 have io_uring but no send (nor the probe): such a
        // ring would refuse every write.
        io_uring_probe* probe = ::io_uring_get_probe_ring(&ring_);
        bool const sends = probe && ::io_uring_opcode_supported(probe, IORING_OP_SEND);
        if (probe) ::io_uring_free_probe(probe);
        if (!sends) {
            ::io_uring_queue_exit(&ring_);
            why = "this kernel's io_uring cannot send (Linux 5.6 or later can)";
            return false;
        }
        arena_ = std::make_unique<char[]>(arena_bytes);
        enabled_ = true;
        return true;
#else
        why = "built without liburing";
        return false;
#endif
    }

    bool enabled() const noexcept { return enabled_; }
    bool empty() const noexcept { return count_ == 0; }
    /// True when a write of `bytes` may join a batch (a larger one is made on its own).
    static constexpr bool fits(std::size_t bytes) noexcept { return bytes <= max_write; }
    /// True when another write might not fit: submit() before adding one.
    bool full() const noexcept { return count_ == capacity || used_ + max_write > arena_bytes; }

    /// Queues a write of `buffers` (`bytes` in all, at most max_write; the
    /// batch not full) to `fd`, copied, so they may change once this returns.
    void add(int fd, std::span<iovec const> buffers, std::size_t bytes, std::uint64_t tag) noexcept {
        char* const start = arena_.get() + used_;
        char* out = start;
        for (auto const& b : buffers) out = static_cast<char*>(std::memcpy(out, b.iov_base, b.iov_len)) + b.iov_len;
        writes_[count_++] = {fd, start, bytes, tag};
        used_ += bytes;
    }

    /// Sends everything queued and returns each write's result, in the order
    /// queued (valid until the next submit).
    std::span<result const> submit() noexcept {
        std::size_t const n = std::exchange(count_, 0);
        used_ = 0;
        if (n > 0) send_all(n);
        refuse_at_ = no_refusal;
        return {results_.data(), n};
    }

    /// For tests: the next submit() hands the kernel write `index` with an
    /// operation it does not know, as a ring that cannot send refuses a send.
    void refuse_in_next_submit(std::size_t index) noexcept { refuse_at_ = index; }

private:
    struct queued_write {
        int fd;
        char const* data;
        std::size_t size;
        std::uint64_t tag;
    };
    static constexpr std::size_t arena_bytes = 64 * 1024;
    static constexpr std::size_t no_refusal = capacity;

    void set_result(std::size_t i, long r) noexcept {
        results_[i].tag = writes_[i].tag;
        results_[i].bytes = r > 0 ? static_cast<std::size_t>(r) : 0;
        results_[i].ec = r >= 0 ? boost::system::error_code() : socket_error(static_cast<int>(-r));
    }

    // Write `i` with a send() of its own.
    void send_one(std::size_t i) noexcept {
        ssize_t r;
        do r = ::send(writes_[i].fd, writes_[i].data, writes_[i].size, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        set_result(i, r < 0 ? -errno : r);
    }

#if defined(FLOCK_WITH_IO_URING)
    void send_all(std::size_t n) noexcept {
        if (!enabled_) {  // closed by an earlier batch
            for (std::size_t i = 0; i < n; ++i) send_one(i);
            return;
        }
        for (std::size_t i = 0; i < n; ++i) {
            io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);  // never null: the ring holds `capacity`
            ::io_uring_prep_send(sqe, writes_[i].fd, writes_[i].data, writes_[i].size, MSG_NOSIGNAL | MSG_DONTWAIT);
            ::io_uring_sqe_set_data64(sqe, i);
            if (i == refuse_at_) sqe->opcode = 0xff;
        }
        int r;
        do r = ::io_uring_submit_and_wait(&ring_, static_cast<unsigned>(n));
        while (r == -EINTR);
        // The kernel takes the sends in order, and stops early at one it
        // refuses (whose completion says so) or when it runs short of memory;
        // then it does not wait for the rest. Each send it took completed in
        // the submit (MSG_DONTWAIT); a wait covers a completion not yet posted.
        std::size_t const taken = n - ::io_uring_sq_ready(&ring_);
        std::array<bool, capacity> seen{}, redo{};
        bool fall_back = taken < n;
        for (std::size_t reaped = 0; reaped < taken; ++reaped) {
            io_uring_cqe* cqe = nullptr;
            int w;
            do w = ::io_uring_wait_cqe(&ring_, &cqe);
            while (w == -EINTR);
            if (w < 0) {  // the ring is broken: what the sends still unseen did is unknown
                for (std::size_t i = 0; i < taken; ++i)
                    if (!seen[i]) set_result(i, w);
                fall_back = true;
                break;
            }
            auto const i = static_cast<std::size_t>(::io_uring_cqe_get_data64(cqe));
            seen[i] = true;
            // A send the ring refused was not made: send() makes it. (A TCP
            // send itself never fails with these.)
            if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP)
                redo[i] = fall_back = true;
            else
                set_result(i, cqe->res);
            ::io_uring_cqe_seen(&ring_, cqe);
        }
        if (!fall_back) return;
        // From now on, send() (the server sees enabled() turn false and says
        // so); closing the ring drops the sends it did not take. A batch holds
        // one write per socket, so making them now keeps each socket's order.
        close();
        for (std::size_t i = 0; i < n; ++i)
            if (i >= taken || redo[i]) send_one(i);
    }

    void close() noexcept {
        if (enabled_) ::io_uring_queue_exit(&ring_);
        enabled_ = false;
    }

    io_uring ring_{};
#else
    void send_all(std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i) send_one(i);
    }
    void close() noexcept {}
#endif

    bool enabled_ = false;
    std::unique_ptr<char[]> arena_;
    std::size_t used_ = 0;
    std::size_t count_ = 0;
    std::array<queued_write, capacity> writes_{};
    std::array<result, capacity> results_{};
    std::size_t refuse_at_ = no_refusal;  ///< refuse_in_next_submit()
};

}  // namespace flk::detail
