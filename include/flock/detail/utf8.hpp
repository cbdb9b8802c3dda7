// Incremental UTF-8 validation (RFC 3629, as RFC 6455 8.1 requires of text
// messages and close reasons): fed a message piece by piece, it fails at the
// first byte that cannot continue a well-formed sequence, so a fragmented
// message is refused as soon as the bad fragment arrives. ASCII, the bulk of
// Flock's JSON, is skipped eight bytes at a time.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace flk::detail {

class utf8_validator {
public:
    /// Checks the next bytes of the text. False when they break UTF-8; the
    /// validator is then spent (reset() to reuse it).
    bool feed(std::string_view s) noexcept {
        auto const* p = reinterpret_cast<unsigned char const*>(s.data());
        auto const* const end = p + s.size();
        while (p != end) {
            if (need_ == 0) {
                while (end - p >= 8) {  // the ASCII fast path
                    std::uint64_t word;
                    std::memcpy(&word, p, 8);
                    if (word & 0x8080808080808080ull) break;
                    p += 8;
                }
                if (p == end) break;
                unsigned char const b = *p++;
                if (b < 0x80) continue;
                if (!start(b)) return fail();
            } else {
                unsigned char const b = *p++;
                if (b < lo_ || b > hi_) return fail();
                --need_;
                lo_ = 0x80;
                hi_ = 0xBF;
            }
        }
        return true;
    }

    /// True when the bytes so far end on a character boundary.
    bool complete() const noexcept { return need_ == 0; }

    void reset() noexcept {
        need_ = 0;
        lo_ = 0x80;
        hi_ = 0xBF;
    }

private:
    // A lead byte: how many continuation bytes follow, and the range the
    // first of them must lie in (no overlong forms, no surrogates, nothing
    // past U+10FFFF).
    bool start(unsigned char b) noexcept {
        lo_ = 0x80;
        hi_ = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need_ = 1;
        else if (b == 0xE0) need_ = 2, lo_ = 0xA0;
        else if (b == 0xED) need_ = 2, hi_ = 0x9F;
        else if (b >= 0xE1 && b <= 0xEF) need_ = 2;
        else if (b == 0xF0) need_ = 3, lo_ = 0x90;
        else if (b >= 0xF1 && b <= 0xF3) need_ = 3;
        else if (b == 0xF4) need_ = 3, hi_ = 0x8F;
        else return false;
        return true;
    }

    bool fail() noexcept {
        need_ = 0xFF;  // nothing completes it any more
        lo_ = 1;
        hi_ = 0;
        return false;
    }

    std::uint8_t need_ = 0;
    std::uint8_t lo_ = 0x80;
    std::uint8_t hi_ = 0xBF;
};

/// True when `s` is well-formed UTF-8 as a whole.
inline bool is_valid_utf8(std::string_view s) noexcept {
    utf8_validator v;
    return v.feed(s) && v.complete();
}

}  // namespace flk::detail
