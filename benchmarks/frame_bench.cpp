// Frame-reader micro-benchmarks (Google Benchmark): what the UTF-8 check of
// text messages (RFC 6455, 8.1) costs flk::detail::ws_reader.
//
//   next/text/<message>     one masked client frame through ws_reader::next,
//                           opcode text: unmasked, then validated as UTF-8
//   next/binary/<message>   the same bytes with opcode binary: not validated,
//                           so text - binary is the validation's cost
//   utf8/<message>          flk::detail::is_valid_utf8 alone on the payload
//   copy/<message>          the memcpy of the masked frame that every next/
//                           iteration starts with (it unmasks in place), for
//                           reference: part of both next/ figures
//
// One iteration of next/ is one read that holds exactly one frame, as the
// server handles it: the frame's bytes are copied into the read buffer,
// next() hands out the message, and a second next() finds the read drained
// (need_more). Messages are what the Flock browser client sends; the 60 KB
// presence:update is one large metadata object, once ASCII only (the fast
// path all the way) and once with non-ASCII text throughout (the slow path
// on most bytes; a worst case, not a typical message).
//
// Counters: bytes = payload bytes of one message; bytes_per_second over the
// payload; the time column is ns per frame.
//
// Build: g++ -std=c++20 -O2 -DNDEBUG -Iinclude benchmarks/frame_bench.cpp
//            -lbenchmark -lpthread -o frame_bench
// Run:   ./frame_bench --benchmark_min_time=0.2 --benchmark_repetitions=5
//            --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <flock/detail/utf8.hpp>
#include <flock/detail/ws_frame.hpp>

#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace flk::detail;

constexpr std::size_t max_message_bytes = 64 * 1024;  // flk::options::max_frame_bytes' default
constexpr std::array<unsigned char, 4> mask{0x37, 0xfa, 0x21, 0x3d};

struct sample {
    std::string_view name;
    std::string payload;
};

// A presence:update whose metadata carries a list of ~60,000 bytes (what a
// client might attach: a selection, a shared draft). `label` fills each item's
// label: ASCII, or non-ASCII text.
std::string big_presence(std::string_view label) {
    std::string out = R"({"type":"presence:update","roomId":"design-review-42","metadata":{"status":"editing","items":[)";
    for (int i = 0; out.size() < 60'000 - 120; ++i) {
        if (i > 0) out += ',';
        out += R"({"id":")" + std::to_string(100000 + i) + R"(","label":")";
        out += label;
        out += R"(","x":0.25,"y":0.75})";
    }
    out += "]}}";
    return out;
}

std::vector<sample> samples() {
    return {
        {"cursor:move",
         R"({"type":"cursor:move","roomId":"design-review-42","position":{"x":0.123456,"y":0.654321}})"},
        {"heartbeat", R"({"type":"heartbeat","roomId":"design-review-42"})"},
        {"join(non-ASCII)",
         R"({"type":"join","roomId":"design-review-42","userId":"user-1234",)"
         R"("metadata":{"name":"Zoë 日本","color":"#3b82f6","team":"Ærøskøbing — 東京"}})"},
        {"presence:update(60KB)", big_presence("Quarterly roadmap, draft 3")},
        {"presence:update(60KB,non-ASCII)", big_presence("日本語のメモ Zoë Ærø")},
    };
}

/// A final client frame: header with the mask bit and key, masked payload.
std::string client_frame(ws_opcode op, std::string_view payload) {
    std::string out;
    out += static_cast<char>(0x80 | static_cast<unsigned>(op));
    if (payload.size() < 126) {
        out += static_cast<char>(0x80 | payload.size());
    } else {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>(payload.size() >> 8);
        out += static_cast<char>(payload.size() & 0xFF);
    }
    for (unsigned char m : mask) out += static_cast<char>(m);
    for (std::size_t i = 0; i < payload.size(); ++i)
        out += static_cast<char>(static_cast<unsigned char>(payload[i]) ^ mask[i % 4]);
    return out;
}

void per_message(benchmark::State& state, std::size_t bytes) {
    state.counters["bytes"] = static_cast<double>(bytes);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

void next(benchmark::State& state, std::string const& payload, bool text) {
    std::string const frame = client_frame(text ? ws_opcode::text : ws_opcode::binary, payload);
    std::vector<char> buffer(frame.size());
    ws_reader reader;
    {  // the frame reads back as the payload, text or binary as sent
        std::memcpy(buffer.data(), frame.data(), frame.size());
        std::span<char> in(buffer);
        auto const item = reader.next(in, max_message_bytes);
        if (item.what != ws_reader::result::message || item.text != text || item.payload != payload)
            state.SkipWithError("the frame does not read back");
    }
    for (auto _ : state) {
        std::memcpy(buffer.data(), frame.data(), frame.size());
        std::span<char> in(buffer);
        auto const item = reader.next(in, max_message_bytes);
        benchmark::DoNotOptimize(item);
        auto const rest = reader.next(in, max_message_bytes);  // the read is drained
        benchmark::DoNotOptimize(rest);
    }
    per_message(state, payload.size());
}

void utf8(benchmark::State& state, std::string const& payload) {
    if (!is_valid_utf8(payload)) state.SkipWithError("sample is not UTF-8");
    for (auto _ : state) {
        std::string_view s = payload;
        benchmark::DoNotOptimize(s);
        bool const ok = is_valid_utf8(s);
        benchmark::DoNotOptimize(ok);
    }
    per_message(state, payload.size());
}

void copy(benchmark::State& state, std::string const& payload) {
    std::string const frame = client_frame(ws_opcode::text, payload);
    std::vector<char> buffer(frame.size());
    for (auto _ : state) {
        std::memcpy(buffer.data(), frame.data(), frame.size());
        benchmark::ClobberMemory();
    }
    per_message(state, payload.size());
}

std::string name_of(std::string_view what, std::string_view message) {
    return std::string(what) + "/" + std::string(message);
}

/// For each message, text then binary then the validator alone, side by
/// side (the machine is shared).
void register_all() {
    for (auto const& s : samples()) {
        benchmark::RegisterBenchmark(name_of("next/text", s.name).c_str(),
                                     [p = s.payload](benchmark::State& st) { next(st, p, true); });
        benchmark::RegisterBenchmark(name_of("next/binary", s.name).c_str(),
                                     [p = s.payload](benchmark::State& st) { next(st, p, false); });
        benchmark::RegisterBenchmark(name_of("utf8", s.name).c_str(),
                                     [p = s.payload](benchmark::State& st) { utf8(st, p); });
        benchmark::RegisterBenchmark(name_of("copy", s.name).c_str(),
                                     [p = s.payload](benchmark::State& st) { copy(st, p); });
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
