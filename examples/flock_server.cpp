// flock-server: the ready-to-run presence server, configured from FLOCK_*
// environment variables exactly like the reference server. In-memory broker
// unless FLOCK_REDIS_URL is set; one event loop per core unless FLOCK_THREADS
// says otherwise.
#include <flock/flock.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <exception>

namespace {

template <class Server>
int serve(flk::options const& opts, std::string_view broker_name) {
    auto log = opts.make_logger();
    boost::asio::io_context io(1);  // the main thread only waits for signals
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    flk::sharded_server<Server> server(opts);
    server.start([&] { boost::asio::post(io, [&] { signals.cancel(); }); });  // join() rethrows
    log.info("flock-server started",
             {{"host", opts.host},
              {"port", server.port()},
              {"threads", server.size()},
              {"broker", broker_name},
              {"auth", opts.api_keys.empty() ? "open" : "api-keys"},
              {"max_room_size", opts.max_room_size},
              {"presence_ttl_s", opts.presence_ttl.count()},
              {"max_messages_per_second", opts.max_messages_per_second},
              {"max_frame_bytes", opts.max_frame_bytes},
              {"metrics", !opts.metrics ? "off" : opts.metrics_token ? "/metrics (bearer token)" : "/metrics"},
              {"log_level", to_string(opts.log)}});

    // First signal: graceful stop (members told, sockets closed with 1001).
    // A second one while stopping: leave at once.
    bool stopping = false;
    std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (stopping) {
            log.warn("second signal, exiting now", {{"signal", sig}});
            server.halt();
            signals.cancel();
            return;
        }
        stopping = true;
        log.info("stopping", {{"signal", sig}});
        server.stop([&] {
            boost::asio::post(io, [&] {
                signals.cancel();
                log.info("stopped");
            });
        });
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);
    io.run();
    server.join();
    return 0;
}

}  // namespace

int main() {
    flk::options opts;
    try {
        opts = flk::options::from_env();
    } catch (flk::config_error const& e) {
        std::fprintf(stderr, "flock-server: invalid configuration: %s\n", e.what());
        return 2;
    }
    try {
        if (opts.redis_url) return serve<flk::redis_scaled_server>(opts, "redis");
        return serve<flk::single_node_server>(opts, "memory");
    } catch (std::exception const& e) {
        opts.make_logger().error("flock-server failed", {{"error", e.what()}});
        return 1;
    }
}
