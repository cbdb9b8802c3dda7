// flock-fanout-floor: the least a server can do for flock-load's traffic, as
// a floor to measure flock-server against (docs/benchmarks.md, "The floor").
//
// One thread, raw epoll, non-blocking sockets. It speaks just enough of the
// protocol for flock-load: the WebSocket upgrade, `join` (answered by a bare
// `join:ack`), `heartbeat` (a bare `heartbeat:ack`) and `cursor:move`, which
// it relays as `cursor:updated` to every other member of the room with one
// send() per recipient, the moment it is read. No validation beyond framing,
// no presence, no metadata, no rate limits, no timers, no snapshot: every
// cost flock-server adds for correctness is absent, and what remains is the
// kernel's per-message work that any server pays. Not a server to run.
//
//   FLOCK_PORT=8080 build/release/benchmarks/flock-fanout-floor
#include <flock/detail/ws_frame.hpp>
#include <flock/detail/ws_handshake.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

namespace d = flk::detail;

struct client {
    int fd = -1;
    bool upgraded = false;
    std::string in;       ///< bytes read and not yet consumed
    std::string out;      ///< bytes the kernel did not take yet
    std::string room, user;
};

/// The text of `"key":"value"`'s value, or of `"key":{...}` with its braces.
std::string_view field(std::string_view json, std::string_view key, bool object = false) {
    std::string pattern(1, '"');
    pattern.append(key).append("\":");
    auto at = json.find(pattern);
    if (at == std::string_view::npos) return {};
    at += pattern.size();
    if (object) {
        auto const end = json.find('}', at);
        return end == std::string_view::npos ? std::string_view{} : json.substr(at, end - at + 1);
    }
    if (at >= json.size() || json[at] != '"') return {};
    auto const end = json.find('"', at + 1);
    return end == std::string_view::npos ? std::string_view{} : json.substr(at + 1, end - at - 1);
}

class floor_server {
public:
    explicit floor_server(int port) {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 4096) != 0) {
            std::perror("flock-fanout-floor: listen");
            std::exit(1);
        }
        ep_ = ::epoll_create1(0);
        watch(listener_, EPOLLIN);
    }

    void run() {
        epoll_event events[256];
        for (;;) {
            int const n = ::epoll_wait(ep_, events, 256, -1);
            for (int i = 0; i < n; ++i) {
                int const fd = events[i].data.fd;
                if (fd == listener_) accept_all();
                else if (events[i].events & EPOLLOUT) flush(fd);
                else read_from(fd);
            }
        }
    }

private:
    void watch(int fd, std::uint32_t ev, int op = EPOLL_CTL_ADD) {
        epoll_event e{};
        e.events = ev;
        e.data.fd = fd;
        ::epoll_ctl(ep_, op, fd, &e);
    }

    void accept_all() {
        for (;;) {
            int const fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
            if (fd < 0) return;
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (clients_.size() <= static_cast<std::size_t>(fd)) clients_.resize(fd + 1);
            clients_[fd] = std::make_unique<client>();
            clients_[fd]->fd = fd;
            watch(fd, EPOLLIN);
        }
    }

    void read_from(int fd) {
        auto& c = *clients_[fd];
        char buf[16384];
        auto const n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return drop(fd);
        c.in.append(buf, static_cast<std::size_t>(n));
        if (!c.upgraded) {
            auto const end = c.in.find("\r\n\r\n");
            if (end == std::string::npos) return;
            auto const key_at = c.in.find("Sec-WebSocket-Key: ");
            if (key_at == std::string::npos) return drop(fd);
            auto const key_end = c.in.find("\r\n", key_at);
            auto const key = std::string_view(c.in).substr(key_at + 19, key_end - key_at - 19);
            send_to(c, d::ws_accept_response(key, {}));
            c.upgraded = true;
            c.in.erase(0, end + 4);
        }
        std::size_t used = 0;
        for (;;) {
            d::ws_frame_header h;
            auto const r = d::parse_ws_header(std::span<char const>(c.in.data() + used, c.in.size() - used), h);
            if (r.what != d::ws_header_result::status::complete) {
                if (r.what == d::ws_header_result::status::need_more) break;
                return drop(fd);
            }
            if (c.in.size() - used - h.size < h.payload_size) break;
            auto payload = std::span<char>(c.in.data() + used + h.size, h.payload_size);
            used += h.size + h.payload_size;
            d::ws_unmask(payload, h.mask);
            if (h.opcode == d::ws_opcode::close) return drop(fd);
            if (h.opcode == d::ws_opcode::text) on_message(c, std::string_view(payload.data(), payload.size()));
            if (clients_[fd] == nullptr) return;
        }
        c.in.erase(0, used);
    }

    void on_message(client& c, std::string_view msg) {
        auto const type = field(msg, "type");
        if (type == "cursor:move") {
            auto const& members = rooms_[c.room];
            std::string body = R"({"type":"cursor:updated","roomId":")" + c.room + R"(","userId":")" + c.user +
                               R"(","position":)" + std::string(field(msg, "position", true)) + "}";
            auto const frame = d::ws_frame_bytes(d::ws_opcode::text, body);
            for (int fd : members)
                if (fd != c.fd) send_to(*clients_[fd], frame);
        } else if (type == "heartbeat") {
            send_to(c, d::ws_frame_bytes(d::ws_opcode::text, R"({"type":"heartbeat:ack"})"));
        } else if (type == "join") {
            c.room = field(msg, "roomId");
            c.user = field(msg, "userId");
            rooms_[c.room].push_back(c.fd);
            send_to(c, d::ws_frame_bytes(d::ws_opcode::text, R"({"type":"join:ack","roomId":")" + c.room +
                                                                 R"(","members":[]})"));
        }
    }

    void send_to(client& c, std::string_view bytes) {
        if (!c.out.empty()) {
            c.out.append(bytes);
            return;
        }
        auto const n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        auto const sent = n < 0 ? 0 : static_cast<std::size_t>(n);
        if (sent == bytes.size()) return;
        c.out.assign(bytes.substr(sent));
        watch(c.fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    }

    void flush(int fd) {
        auto& c = *clients_[fd];
        auto const n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) c.out.erase(0, static_cast<std::size_t>(n));
        if (c.out.empty()) watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    }

    void drop(int fd) {
        auto& c = *clients_[fd];
        if (!c.room.empty()) std::erase(rooms_[c.room], fd);
        ::close(fd);
        clients_[fd].reset();
    }

    int listener_ = -1, ep_ = -1;
    std::vector<std::unique_ptr<client>> clients_;  // by descriptor
    std::unordered_map<std::string, std::vector<int>> rooms_;
};

}  // namespace

int main() {
    std::signal(SIGPIPE, SIG_IGN);
    char const* port = std::getenv("FLOCK_PORT");
    floor_server server(port ? std::atoi(port) : 8080);
    server.run();
}
