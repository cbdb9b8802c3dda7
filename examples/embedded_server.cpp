// Embedding flock in your own program: options set in code rather than from
// the environment, log lines routed into your own logging, and the server
// run on a thread of its own next to the rest of your program.
#include <flock/flock.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <iostream>
#include <thread>

int main(int argc, char** argv) {
    flk::options opts;
    opts.port = argc > 1 ? static_cast<std::uint16_t>(std::stoi(argv[1])) : 9000;
    opts.api_keys = {"demo-key"};        // clients add ?apiKey=demo-key or "apiKey" to join
    opts.max_room_size = 25;
    opts.presence_ttl = std::chrono::seconds(20);
    opts.log = flk::log_level::debug;
    opts.log_sink = [](flk::log_level, std::string_view line) { std::clog << "[my-app] " << line << '\n'; };

    boost::asio::io_context io;
    flk::single_node_server presence(io.get_executor(), opts);
    presence.start();
    std::thread presence_thread([&] { io.run(); });
    std::cout << "presence on ws://localhost:" << presence.transport().port() << "/?apiKey=demo-key\n";

    // ... the rest of your program runs here; this one just waits for Ctrl-C.
    boost::asio::io_context app;
    boost::asio::signal_set signals(app, SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) {
        // The server is single-threaded: talk to it on its own thread.
        boost::asio::post(io, [&] { presence.stop(); });
    });
    app.run();
    presence_thread.join();
    std::cout << "presence stopped\n";
}
