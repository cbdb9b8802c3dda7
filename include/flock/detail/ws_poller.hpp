// The WebSocket connections' sockets, watched by the server itself.
//
// Asio re-arms a descriptor with an epoll_ctl on every async_wait, so a
// connection read through it costs two system calls per message: the recv and
// the epoll_ctl (an async_read_some swaps the epoll_ctl for a speculative recv
// that fails with EAGAIN; same cost). Here each connection's socket leaves
// Asio's reactor once upgraded and joins an epoll set of the server's own,
// edge-triggered, registered once for input and for room to write. Asio
// watches only that set's descriptor: one wait per turn of the loop, however
// many connections it reports. A message then costs its recv, as in a
// hand-written epoll server.
//
// Linux only (epoll).
#pragma once

#include <flock/transport/concept.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <array>
#include <cerrno>
#include <cstddef>
#include <span>
#include <utility>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace flk::detail {

/// What a failed socket call's errno means to the server: would_block when
/// the socket cannot take or give bytes now, else the system error.
inline boost::system::error_code socket_error(int e) noexcept {
    if (e == EAGAIN || e == EWOULDBLOCK) return boost::asio::error::would_block;
    return {e, boost::system::system_category()};
}

/// An upgraded connection's socket: a non-blocking descriptor that flock
/// reads and writes with plain system calls. Closing it also takes it out of
/// the epoll set.
class ws_socket {
public:
    ws_socket() = default;
    explicit ws_socket(int fd) noexcept : fd_(fd) {}
    ws_socket(ws_socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    ws_socket& operator=(ws_socket&& other) noexcept {
        if (this != &other) {
            close();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    ws_socket(ws_socket const&) = delete;
    ws_socket& operator=(ws_socket const&) = delete;
    ~ws_socket() { close(); }

    int native_handle() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }

    /// Up to `size` bytes. would_block when there are none, eof when the peer
    /// closed its side.
    std::size_t read_some(void* data, std::size_t size, boost::system::error_code& ec) noexcept {
        for (;;) {
            ssize_t const n = ::recv(fd_, data, size, 0);
            if (n > 0) {
                ec.clear();
                return static_cast<std::size_t>(n);
            }
            if (n == 0) ec = boost::asio::error::eof;
            else if (errno == EINTR) continue;
            else ec = socket_error(errno);
            return 0;
        }
    }

    /// One write, gathered unless `buffers` is one; would_block when the
    /// socket takes nothing now.
    std::size_t write_some(std::span<iovec const> buffers, boost::system::error_code& ec) noexcept {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(buffers.data());
        msg.msg_iovlen = buffers.size();
        for (;;) {
            // MSG_NOSIGNAL: a peer gone away is an error here, not SIGPIPE.
            ssize_t const n = buffers.size() == 1 ? ::send(fd_, buffers[0].iov_base, buffers[0].iov_len, MSG_NOSIGNAL)
                                                  : ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
            if (n >= 0) {
                ec.clear();
                return static_cast<std::size_t>(n);
            }
            if (errno == EINTR) continue;
            ec = socket_error(errno);
            return 0;
        }
    }

    void shutdown_send() noexcept { ::shutdown(fd_, SHUT_WR); }

    void close() noexcept {
        if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    }

private:
    int fd_ = -1;
};

/// The epoll set of a server's connections, each known by its id (never by
/// address: an event may name a connection that ended earlier in the batch).
class ws_poller {
public:
    /// Events one poll takes; more wait for the next turn of the loop.
    static constexpr int batch = 256;

    explicit ws_poller(boost::asio::any_io_executor const& ex) : set_(ex) {
        int const fd = ::epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0)
            throw boost::system::system_error({errno, boost::system::system_category()}, "epoll_create1");
        set_.assign(fd);
    }

    /// Watches `s` from now on, until it closes.
    void add(ws_socket const& s, connection_id id, boost::system::error_code& ec) noexcept {
        control(EPOLL_CTL_ADD, s, id, ec);
    }

    /// Asks for a fresh report of `s`: an event comes at once if it can
    /// already take bytes. For a write cut short, so no edge can be missed.
    void recheck(ws_socket const& s, connection_id id, boost::system::error_code& ec) noexcept {
        control(EPOLL_CTL_MOD, s, id, ec);
    }

    /// Calls `handler(error_code)` once a watched socket has news.
    template <class Handler>
    void async_wait(Handler&& handler) {
        set_.async_wait(boost::asio::posix::stream_descriptor::wait_read, std::forward<Handler>(handler));
    }

    void cancel() noexcept {
        boost::system::error_code ignored;
        set_.cancel(ignored);
    }

    /// The events ready now, without blocking.
    std::span<epoll_event const> poll() noexcept {
        int n;
        do n = ::epoll_wait(set_.native_handle(), events_.data(), batch, 0);
        while (n < 0 && errno == EINTR);
        return {events_.data(), n > 0 ? static_cast<std::size_t>(n) : 0};
    }

private:
    void control(int op, ws_socket const& s, connection_id id, boost::system::error_code& ec) noexcept {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = id;
        if (::epoll_ctl(set_.native_handle(), op, s.native_handle(), &ev) == 0) ec.clear();
        else ec = {errno, boost::system::system_category()};
    }

    boost::asio::posix::stream_descriptor set_;
    std::array<epoll_event, batch> events_{};
};

}  // namespace flk::detail
