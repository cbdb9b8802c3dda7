// Two flock instances on one Redis, in one process, and a user on each
// seeing the other: the smallest picture of a cluster.
//
//   redis-server --port 6379 --notify-keyspace-events Ex &
//   build/release/examples/two-instances redis://127.0.0.1:6379
#include <flock/flock.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include <iostream>
#include <thread>

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

// A blocking WebSocket client, enough for a demo.
struct user {
    asio::io_context io;
    websocket::stream<tcp::socket> ws{io};
    user(std::uint16_t port) {
        tcp::resolver resolver(io);
        asio::connect(ws.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
        ws.handshake("127.0.0.1", "/");
    }
    void send(std::string const& text) { ws.write(asio::buffer(text)); }
    std::string receive() {
        boost::beast::flat_buffer buf;
        ws.read(buf);
        return boost::beast::buffers_to_string(buf.data());
    }
};

int main(int argc, char** argv) {
    flk::options opts;
    opts.host = "127.0.0.1";
    opts.port = 0;  // a free port each
    opts.redis_url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379";
    opts.log = flk::log_level::warn;

    asio::io_context io;
    flk::redis_scaled_server east(io.get_executor(), opts), west(io.get_executor(), opts);
    east.start();
    west.start();
    std::thread server_thread([&] { io.run(); });

    user ann(east.transport().port()), ben(west.transport().port());
    ann.send(R"({"type":"join","roomId":"demo","userId":"ann","metadata":{"name":"Ann"}})");
    std::cout << "ann (east) <- " << ann.receive() << '\n';
    ben.send(R"({"type":"join","roomId":"demo","userId":"ben","metadata":{"name":"Ben"}})");
    std::cout << "ben (west) <- " << ben.receive() << "   (ann is on the other instance)\n";
    std::cout << "ann (east) <- " << ann.receive() << '\n';
    ann.send(R"({"type":"cursor:move","roomId":"demo","position":{"x":0.25,"y":0.75}})");
    std::cout << "ben (west) <- " << ben.receive() << '\n';

    asio::post(io, [&] {
        east.stop();
        west.stop();
    });
    server_thread.join();
}
