// flock-server: the ready-to-run presence server, configured from FLOCK_*
// environment variables exactly like the reference server. In-memory broker
// unless FLOCK_REDIS_URL is set; one event loop per core unless FLOCK_THREADS
// says otherwise. With FLOCK_ADMIN_PASSWORD set, the admin dashboard is at
// /admin (docs/admin.md).
#include <flock/admin.hpp>
#include <flock/flock.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <exception>

namespace {

template <class Server>
int serve(flk::options opts, flk::admin_options const& admin_opts, std::string_view broker_name) {
    auto log = opts.make_logger();
    boost::asio::io_context io(1);  // the main thread waits for signals and runs the admin
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    auto admin = std::make_shared<flk::admin>(io.get_executor(), admin_opts, opts);
    if (admin->enabled()) opts.http_routes.push_back(admin->route());
    flk::sharded_server<Server> server(opts);
    server.start([&] { boost::asio::post(io, [&] { signals.cancel(); admin->stop(); }); });  // join() rethrows
    if (admin->enabled()) admin->attach(flk::admin_backend_of(server), opts.host + ':' + std::to_string(server.port()));
    log.info("flock-server started",
             {{"host", opts.host},
              {"port", server.port()},
              {"threads", server.size()},
              {"broker", broker_name},
              {"auth", opts.api_keys.empty() ? "open" : "api-keys"},
              {"admin", admin->enabled() ? "/admin" : "off"},
              {"max_room_size", opts.max_room_size},
              {"presence_ttl_s", opts.presence_ttl.count()},
              {"max_messages_per_second", opts.max_messages_per_second},
              {"max_frame_bytes", opts.max_frame_bytes},
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
            admin->stop();
            return;
        }
        stopping = true;
        log.info("stopping", {{"signal", sig}});
        server.stop([&] {
            boost::asio::post(io, [&] {
                signals.cancel();
                admin->stop();
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
    flk::admin_options admin_opts;
    try {
        opts = flk::options::from_env();
        admin_opts = flk::admin_options::from_env(opts);
    } catch (flk::config_error const& e) {
        std::fprintf(stderr, "flock-server: invalid configuration: %s\n", e.what());
        return 2;
    }
    try {
        if (opts.redis_url) return serve<flk::redis_scaled_server>(opts, admin_opts, "redis");
        return serve<flk::single_node_server>(opts, admin_opts, "memory");
    } catch (std::exception const& e) {
        opts.make_logger().error("flock-server failed", {{"error", e.what()}});
        return 1;
    }
}
