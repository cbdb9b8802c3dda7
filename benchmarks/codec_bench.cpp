// Codec micro-benchmarks (Google Benchmark): json_codec vs binary_codec.
//
//   encode/<codec>/<server message>         one server message to its frame payload
//   decode/<codec>/<client message>         one client frame to a message (server side)
//   decode_server/<codec>/<server message>  one server frame back (clients, relays);
//       for binary, the frame as it stands: handles are not turned into ids
//   session/binary/<server message>         one server frame through a
//       flk::binary_session that knows the handles: what a native client
//       pays to get the message a JSON client gets
//   broadcast/<codec>/<shared|naive>/<n>    one cursor:updated to n recipients:
//       shared: encode once into a flk::frame, push that frame (a shared_ptr
//               copy) onto each recipient's queue, as flock does;
//       naive:  serialise once per recipient (the reference server's way).
//
// Counters: bytes = encoded size of one message; bytes_per_second; allocs =
// heap allocations per message (operator new is counted below); for
// broadcasts, items_per_second = deliveries per second.
//
// Build: g++ -std=c++20 -O2 -DNDEBUG -Iinclude benchmarks/codec_bench.cpp
//            -lboost_json -lbenchmark -lpthread -o codec_bench
// Run:   ./codec_bench --benchmark_min_time=0.2
#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/frame.hpp>

#include <benchmark/benchmark.h>

#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// ------------------------------------------------- counting allocations
// The benchmark runs on one thread; a plain counter is enough.

namespace {
std::uint64_t allocations = 0;
}

// Out of line, so that GCC does not see new/delete pairs become malloc/free.
[[gnu::noinline]] void* operator new(std::size_t n) {
    ++allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace flk;

// ----------------------------------------------------------- messages
// Typical values: ids like the browser SDK's, positions as a browser computes
// them (clientX / innerWidth: full doubles), small metadata, a room of 10.
// Server messages carry handles as the core sets them (room 1, the sender
// 10); the JSON codec ignores them. "by-name" is the binary fallback for a
// user the core has no handle for.

constexpr std::string_view room = "design-review-42";
constexpr std::string_view user = "user-1234";
constexpr position pos{925.0 / 1920, 685.0 / 1080};
constexpr std::int64_t now_ms = 1700000000123;
constexpr handle room_handle = 1;
constexpr handle user_handle = 10;

metadata user_meta(int i) {
    return boost::json::parse(R"({"name":"User )" + std::to_string(1000 + i) + R"(","color":"#3b82f6"})")
        .as_object();
}

struct server_sample {
    std::string_view name;
    server_message message;
};

/// The snapshot of the other 9 members of the room, handles 1 to 9.
server::join_ack snapshot() {
    server::join_ack ack{std::string(room), {}, room_handle};
    for (int i = 0; i < 9; ++i)
        ack.users.push_back({"user-" + std::to_string(1000 + i), user_meta(i), position{0.25 + i * 0.05, 0.5},
                             static_cast<handle>(i + 1)});
    return ack;
}

server::user_joined joined() {
    return {std::string(room), std::string(user), user_meta(234), room_handle, user_handle};
}

std::vector<server_sample> server_samples() {
    std::string const r(room), u(user);
    return {
        {"cursor:updated", server::cursor_updated{r, u, pos, now_ms, room_handle, user_handle}},
        {"cursor:updated(by-name)", server::cursor_updated{r, u, pos, now_ms}},
        {"heartbeat:ack", server::heartbeat_ack{}},
        {"cursor:removed", server::cursor_removed{r, u, room_handle, user_handle}},
        {"presence:updated",
         server::presence_updated{r, u, boost::json::parse(R"({"status":"away"})").as_object(), room_handle,
                                  user_handle}},
        {"user:joined", joined()},
        {"user:left", server::user_left{r, u, room_handle, user_handle}},
        {"join:ack(9)", snapshot()},
        {"error", server::error{error_code::rate_limited, "rate limit exceeded", std::nullopt}},
    };
}

struct client_sample {
    std::string_view name;
    std::string json;     ///< as the browser SDK writes it
    client_message message;  ///< encoded with binary_codec::encode_client
};

std::vector<client_sample> client_samples() {
    std::string const r(room);
    return {
        {"cursor:move",
         R"({"type":"cursor:move","roomId":")" + r + R"(","position":{"x":0.4817708333333333,"y":0.6342592592592593}})",
         client::cursor_move{r, pos}},
        {"heartbeat", R"({"type":"heartbeat","roomId":")" + r + R"("})", client::heartbeat{r}},
        {"cursor:leave", R"({"type":"cursor:leave","roomId":")" + r + R"("})", client::cursor_leave{r}},
        {"presence:update", R"({"type":"presence:update","roomId":")" + r + R"(","metadata":{"status":"away"}})",
         client::presence_update{r, boost::json::parse(R"({"status":"away"})").as_object()}},
        {"join",
         R"({"type":"join","roomId":")" + r + R"(","userId":"user-1234","metadata":{"name":"User 1234","color":"#3b82f6"}})",
         client::join{r, std::string(user), user_meta(234), std::nullopt}},
        {"leave", R"({"type":"leave","roomId":")" + r + R"("})", client::leave{r}},
    };
}

// ------------------------------------------------------------ helpers

/// Sets the per-message counters after a loop that handled one message of
/// `bytes` bytes per iteration and made `allocs` allocations in all.
void per_message(benchmark::State& state, std::size_t bytes, std::uint64_t allocs) {
    auto const n = static_cast<double>(state.iterations());
    state.counters["bytes"] = static_cast<double>(bytes);
    state.counters["allocs"] = n > 0 ? static_cast<double>(allocs) / n : 0;
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

template <class Codec>
void encode(benchmark::State& state, server_message const& m) {
    Codec const codec;
    std::size_t bytes = codec.encode(m).size();
    auto const before = allocations;
    for (auto _ : state) {
        auto out = codec.encode(m);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    per_message(state, bytes, allocations - before);
}

template <class Codec>
void decode(benchmark::State& state, std::string const& frame) {
    Codec const codec;
    if (!codec.decode(frame, Codec::kind).has_value()) state.SkipWithError("sample does not decode");
    auto const before = allocations;
    for (auto _ : state) {
        auto r = codec.decode(frame, Codec::kind);
        benchmark::DoNotOptimize(r);
    }
    per_message(state, frame.size(), allocations - before);
}

template <class Codec>
void decode_server(benchmark::State& state, std::string const& frame) {
    Codec const codec;
    if (!codec.decode_server(frame).has_value()) state.SkipWithError("sample does not decode");
    auto const before = allocations;
    for (auto _ : state) {
        auto r = codec.decode_server(frame);
        benchmark::DoNotOptimize(r);
    }
    per_message(state, frame.size(), allocations - before);
}

/// A native client's decode: through a session that was told the handles
/// (the snapshot and the sender's user:joined). user:left is left out: it
/// retires the handle, so the same frame cannot be read twice.
void session_decode(benchmark::State& state, std::string const& frame) {
    binary_codec const codec;
    binary_session session;
    if (!session.decode(codec.encode(snapshot())) || !session.decode(codec.encode(joined())) ||
        !session.decode(frame))
        state.SkipWithError("sample does not decode");
    auto const before = allocations;
    for (auto _ : state) {
        auto r = session.decode(frame);
        benchmark::DoNotOptimize(r);
    }
    per_message(state, frame.size(), allocations - before);
}

/// One cursor:updated broadcast to `recipients` per-connection queues. The
/// queues are emptied each iteration (after their write, a connection
/// releases its frames), so releasing the frames is part of the cost.
template <class Codec>
void broadcast(benchmark::State& state, bool shared, std::size_t recipients) {
    Codec const codec;
    server_message const m =
        server::cursor_updated{std::string(room), std::string(user), pos, now_ms, room_handle, user_handle};
    std::vector<std::vector<frame>> queues(recipients);
    for (auto& q : queues) q.reserve(4);
    std::uint64_t const key = 42;
    auto const before = allocations;
    for (auto _ : state) {
        if (shared) {
            auto const f = frame::make(codec.encode(m), Codec::kind, key, true);
            for (auto& q : queues) q.push_back(f);
        } else {
            for (auto& q : queues) q.push_back(frame::make(codec.encode(m), Codec::kind, key, true));
        }
        benchmark::ClobberMemory();
        for (auto& q : queues) q.clear();
    }
    auto const n = static_cast<double>(state.iterations());
    state.counters["bytes"] = static_cast<double>(codec.encode(m).size());
    state.counters["allocs"] = n > 0 ? static_cast<double>(allocations - before) / n : 0;
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(recipients));
}

std::string name_of(std::string_view what, std::string_view codec, std::string_view message) {
    return std::string(what) + "/" + std::string(codec) + "/" + std::string(message);
}

/// Every benchmark for JSON immediately followed by the same for binary, so
/// each pair runs side by side (the machine is shared).
void register_all() {
    json_codec const json;
    binary_codec const bin;
    for (auto const& s : server_samples()) {
        benchmark::RegisterBenchmark(name_of("encode", "json", s.name).c_str(),
                                     [m = s.message](benchmark::State& st) { encode<json_codec>(st, m); });
        benchmark::RegisterBenchmark(name_of("encode", "binary", s.name).c_str(),
                                     [m = s.message](benchmark::State& st) { encode<binary_codec>(st, m); });
    }
    for (auto const& s : client_samples()) {
        benchmark::RegisterBenchmark(name_of("decode", "json", s.name).c_str(),
                                     [f = s.json](benchmark::State& st) { decode<json_codec>(st, f); });
        benchmark::RegisterBenchmark(
            name_of("decode", "binary", s.name).c_str(),
            [f = bin.encode_client(s.message)](benchmark::State& st) { decode<binary_codec>(st, f); });
    }
    for (auto const& s : server_samples()) {
        benchmark::RegisterBenchmark(
            name_of("decode_server", "json", s.name).c_str(),
            [f = json.encode(s.message)](benchmark::State& st) { decode_server<json_codec>(st, f); });
        benchmark::RegisterBenchmark(
            name_of("decode_server", "binary", s.name).c_str(),
            [f = bin.encode(s.message)](benchmark::State& st) { decode_server<binary_codec>(st, f); });
        if (s.name != "user:left")
            benchmark::RegisterBenchmark(name_of("session", "binary", s.name).c_str(),
                                         [f = bin.encode(s.message)](benchmark::State& st) { session_decode(st, f); });
    }
    for (std::size_t n : {9u, 99u}) {
        for (bool shared : {true, false}) {
            auto const way = std::string(shared ? "shared/" : "naive/") + std::to_string(n);
            benchmark::RegisterBenchmark(name_of("broadcast", "json", way).c_str(),
                                         [=](benchmark::State& st) { broadcast<json_codec>(st, shared, n); });
            benchmark::RegisterBenchmark(name_of("broadcast", "binary", way).c_str(),
                                         [=](benchmark::State& st) { broadcast<binary_codec>(st, shared, n); });
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
