// Compiled against an installed flock: a join through the test policies.
#include <flock/basic_flock.hpp>
#include <flock/codec/json.hpp>
#include <flock/testing/memory_transport.hpp>
#include <flock/testing/mock_broker.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>

int main() {
    boost::asio::io_context io;
    flk::options opts;
    opts.log = flk::log_level::silent;
    flk::basic_flock<flk::testing::memory_transport, flk::testing::mock_broker, flk::json_codec> server(
        io.get_executor(), opts);
    server.start();
    auto& alice = server.transport().connect();
    alice.send(R"({"type":"join","roomId":"r","userId":"alice","metadata":{}})");
    auto got = alice.take_json();
    bool ok = got.size() == 1 && got[0].at("type").as_string() == "join:ack";
    std::puts(ok ? "consumer: joined through an installed flock" : "consumer: join failed");
    return ok ? 0 : 1;
}
