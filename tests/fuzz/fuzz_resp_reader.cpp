// libFuzzer target: flk::detail::redis::reader (detail/redis/resp.hpp), the
// hiredis reply reader wrapped into flock's owning reply tree, fed in chunks
// as the Redis connection feeds it what each read returned.
//
// Input layout: byte 0 picks the chunk size (1..255 bytes, 0 = all at once);
// the rest is what a Redis server sent.
//
// Checked: the replies (and whether the reader failed) are the same whatever
// the chunking, compared with a second reader fed everything at once; reply
// trees are no deeper than hiredis allows; nothing is taken out after a
// failure; the helpers (is_error_code, ...) run on every reply.
//
// hiredis itself is the system library, not instrumented: coverage figures
// count flock's side only. Array headers that announce more than
// max_announced elements are skipped (see docs/fuzzing.md: hiredis 0.14
// allocates the whole element array up front, which is a known limitation of
// hiredis and not something this target can get past).
#include <flock/detail/redis/resp.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using flk::detail::redis::reader;
using flk::detail::redis::reply;

[[noreturn]] void fail(char const* what) {
    std::fprintf(stderr, "resp reader invariant broken: %s\n", what);
    std::abort();
}
#define CHECK(cond) \
    do {            \
        if (!(cond)) fail(#cond); \
    } while (0)

constexpr unsigned long long max_announced = 1u << 16;

/// Whether some `*<n>` array header announces more than max_announced elements.
bool announces_huge_array(std::string_view s) {
    for (std::size_t at = s.find('*'); at != std::string_view::npos; at = s.find('*', at + 1)) {
        unsigned long long n = 0;
        std::size_t i = at + 1;
        if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
        for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
            n = n * 10 + static_cast<unsigned>(s[i] - '0');
            if (n > max_announced) return true;
        }
    }
    return false;
}

bool same(reply const& a, reply const& b) {
    if (a.type != b.type || a.str != b.str || a.integer != b.integer || a.elements.size() != b.elements.size())
        return false;
    for (std::size_t i = 0; i < a.elements.size(); ++i)
        if (!same(a.elements[i], b.elements[i])) return false;
    return true;
}

int depth(reply const& r) {
    int d = 0;
    for (auto const& e : r.elements) d = std::max(d, depth(e));
    return d + (r.is_array() ? 1 : 0);
}

void inspect(reply const& r) {
    CHECK(r.type != reply::kind::io_error);  // only the connection makes those
    CHECK(depth(r) <= 8);
    CHECK(r.is_error() == (r.type == reply::kind::error));
    if (r.type == reply::kind::nil) CHECK(r.str.empty() && r.elements.empty());
    if (r.type != reply::kind::array) CHECK(r.elements.empty());
    (void)r.is_error_code("NOSCRIPT");
    (void)r.is_error_code("");
}

struct outcome {
    std::vector<reply> replies;
    bool failed = false;
};

outcome run(std::string_view input, std::size_t step) {
    outcome out;
    reader rd;
    for (std::size_t at = 0; at < input.size() && !out.failed;) {
        auto const n = std::min(step, input.size() - at);
        if (!rd.feed(input.data() + at, n)) {
            out.failed = true;
            break;
        }
        at += n;
        while (auto r = rd.next()) {
            inspect(*r);
            out.replies.push_back(std::move(*r));
        }
        if (rd.failed()) {
            out.failed = true;
            CHECK(!rd.error().empty());
            CHECK(!rd.next());  // nothing more after a protocol error
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    if (size < 1) return 0;
    std::size_t const step = data[0] == 0 ? size : data[0];
    std::string_view const input(reinterpret_cast<char const*>(data) + 1, size - 1);
    if (announces_huge_array(input)) return 0;

    auto const chunked = run(input, step);
    auto const whole = run(input, input.size() + 1);
    CHECK(chunked.failed == whole.failed);
    CHECK(chunked.replies.size() == whole.replies.size());
    for (std::size_t i = 0; i < chunked.replies.size(); ++i) CHECK(same(chunked.replies[i], whole.replies[i]));
    return 0;
}
