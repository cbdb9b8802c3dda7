// libFuzzer target: flk::detail::ws_reader (detail/ws_frame.hpp), the RFC 6455
// reader of client frames, fragmentation state included.
//
// Input layout (see docs/fuzzing.md):
//   byte 0      the message size limit: (b & 0x7f) * 4 bytes, or 1 MiB when the
//               top bit is set (so both "too big" and long messages are reached)
//   byte 1      k = (b & 7): how many cuts split the stream into reads
//   bytes 2..   k cut points, one byte each (a fraction of the stream length)
//   the rest    the bytes a client sent
//
// Each read gets its own heap block, freed once the reader has handed out
// everything from it, so ASan sees any view or tail that outlives its read.
// Checked on every item:
//   - views (payloads) are readable, and lie inside the current read when they
//     point into it; messages are within the limit, control payloads <= 125
//   - `in` only shrinks from the front and is empty on need_more
//   - held_bytes() on need_more <= the largest incomplete frame plus the
//     fragments so far (limit + 14-byte header + 125)
//   - after error or close nothing more is fed (the reader is spent)
//   - the items are the same whatever the cuts: the stream is also fed in one
//     read to a second reader and both sequences must match.
#include <flock/detail/ws_frame.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace {

using flk::detail::ws_reader;
using result = ws_reader::result;

struct seen {
    result what;
    bool text;
    std::string payload;
    std::uint16_t code;
    bool operator==(seen const&) const = default;
};

[[noreturn]] void fail(char const* what) {
    std::fprintf(stderr, "ws_reader invariant broken: %s\n", what);
    std::abort();
}
#define CHECK(cond) \
    do {            \
        if (!(cond)) fail(#cond); \
    } while (0)

volatile unsigned sink;

void touch(std::string_view v) {
    unsigned s = 0;
    for (char c : v) s += static_cast<unsigned char>(c);
    sink = s;
}

/// Feeds `reads` in order; returns the items and whether the reader was spent.
std::vector<seen> run(std::vector<std::string> const& reads, std::size_t limit) {
    ws_reader reader;
    std::vector<seen> out;
    for (auto const& r : reads) {
        // A fresh exact-size heap block per read; freed at the end of the read.
        std::unique_ptr<char[]> block(new char[r.size() ? r.size() : 1]);
        std::copy(r.begin(), r.end(), block.get());
        char* const lo = block.get();
        char* const hi = lo + r.size();
        std::span<char> in(lo, r.size());
        for (;;) {
            char* const before = in.data();
            std::size_t const before_size = in.size();
            auto const item = reader.next(in, limit);
            // `in` is consumed from the front, never grows.
            CHECK(in.size() <= before_size);
            CHECK(in.empty() || (in.data() >= before && in.data() + in.size() == before + before_size));
            touch(item.payload);
            if (item.payload.data() >= lo && item.payload.data() < hi)
                CHECK(item.payload.data() + item.payload.size() <= hi);
            switch (item.what) {
            case result::need_more:
                CHECK(in.empty());
                CHECK(item.payload.empty());
                CHECK(reader.held_bytes() <= limit + 14 + 125);
                break;
            case result::message:
                CHECK(item.payload.size() <= limit);
                break;
            case result::ping:
            case result::pong:
                CHECK(item.payload.size() <= 125);
                break;
            case result::close:
                CHECK(item.payload.size() <= 123);
                CHECK(item.code == flk::detail::ws_close_no_status ? item.payload.empty()
                                                                    : flk::detail::ws_close_code_is_valid(item.code));
                break;
            case result::error:
                CHECK(!item.payload.empty());  // says why
                CHECK(item.code >= 1000 && item.code <= 1011);
                break;
            }
            if (item.what == result::need_more) break;
            out.push_back({item.what, item.text, std::string(item.payload), item.code});
            if (item.what == result::error || item.what == result::close) return out;  // spent
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    if (size < 2) return 0;
    std::size_t const limit = (data[0] & 0x80) ? (std::size_t(1) << 20) : std::size_t(data[0] & 0x7f) * 4;
    std::size_t const k = data[1] & 7;
    if (size < 2 + k) return 0;
    std::string const stream(reinterpret_cast<char const*>(data) + 2 + k, size - 2 - k);

    std::vector<std::size_t> cuts;
    for (std::size_t i = 0; i < k; ++i) cuts.push_back(stream.size() * data[2 + i] / 255);
    std::sort(cuts.begin(), cuts.end());
    std::vector<std::string> reads;
    std::size_t at = 0;
    for (std::size_t c : cuts) {
        reads.push_back(stream.substr(at, c - at));  // empty reads too: next() must take them
        at = c;
    }
    reads.push_back(stream.substr(at));

    auto const cut = run(reads, limit);
    auto const whole = run({stream}, limit);
    if (cut != whole) fail("items depend on where the reads were cut");
    return 0;
}
