// The primitives of the binary wire format (docs/binary-codec.md): LEB128
// varints, zigzag integers, little-endian IEEE-754 doubles, length-prefixed
// UTF-8 strings, and a bounds-checked reader over one frame. The message
// layouts themselves live in flock/codec/binary.hpp.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace flk::detail::binary_wire {

// ----------------------------------------------------------------- varints

/// A 64-bit value takes at most 10 LEB128 bytes (9 × 7 bits + 1 bit).
inline constexpr std::size_t max_varint_size = 10;

constexpr std::size_t varint_size(std::uint64_t v) noexcept {
    std::size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        ++n;
    }
    return n;
}

/// Writes `v` as unsigned LEB128 (7 bits a byte, low group first, high bit =
/// "more follows"), in its shortest form; returns the end of what it wrote.
inline char* put_varint(char* p, std::uint64_t v) noexcept {
    while (v >= 0x80) {
        *p++ = static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    *p++ = static_cast<char>(v);
    return p;
}

/// Signed to unsigned so that small magnitudes of either sign stay short.
constexpr std::uint64_t zigzag(std::int64_t v) noexcept {
    return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
constexpr std::int64_t unzigzag(std::uint64_t u) noexcept {
    return static_cast<std::int64_t>(u >> 1) ^ -static_cast<std::int64_t>(u & 1);
}

// ----------------------------------------------------------------- doubles

inline constexpr std::size_t f64_size = 8;

/// Writes the 8 bytes of `d`, least significant first, whatever the host.
inline char* put_f64(char* p, double d) noexcept {
    auto bits = std::bit_cast<std::uint64_t>(d);
    if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(p, &bits, f64_size);
    } else {
        for (std::size_t i = 0; i < f64_size; ++i, bits >>= 8) p[i] = static_cast<char>(bits & 0xff);
    }
    return p + f64_size;
}

inline double get_f64(unsigned char const* p) noexcept {
    std::uint64_t bits = 0;
    if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(&bits, p, f64_size);
    } else {
        for (std::size_t i = f64_size; i-- > 0;) bits = (bits << 8) | p[i];
    }
    return std::bit_cast<double>(bits);
}

// ----------------------------------------------------------------- strings

/// Bytes a length-prefixed string takes.
constexpr std::size_t string_size(std::string_view s) noexcept {
    return varint_size(s.size()) + s.size();
}

inline char* put_string(char* p, std::string_view s) noexcept {
    p = put_varint(p, s.size());
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    return p + s.size();
}

/// Whether `s` is well-formed UTF-8 (Unicode table 3-7): no stray
/// continuation bytes, no overlong forms, no surrogates, nothing past
/// U+10FFFF, no sequence cut short. Runs of ASCII go 8 bytes at a time.
inline bool valid_utf8(std::string_view s) noexcept {
    auto const* p = reinterpret_cast<unsigned char const*>(s.data());
    auto const* const end = p + s.size();
    auto const continuation = [](unsigned char c) { return (c & 0xc0) == 0x80; };
    while (p != end) {
        while (end - p >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p, 8);
            if (word & 0x8080808080808080ull) break;
            p += 8;
        }
        if (p == end) break;
        unsigned char const c = *p;
        if (c < 0x80) {
            ++p;
        } else if (c < 0xc2) {  // a continuation byte, or an overlong 2-byte lead
            return false;
        } else if (c < 0xe0) {
            if (end - p < 2 || !continuation(p[1])) return false;
            p += 2;
        } else if (c < 0xf0) {
            if (end - p < 3) return false;
            unsigned char const lo = c == 0xe0 ? 0xa0 : 0x80;  // overlong
            unsigned char const hi = c == 0xed ? 0x9f : 0xbf;  // surrogates
            if (p[1] < lo || p[1] > hi || !continuation(p[2])) return false;
            p += 3;
        } else if (c < 0xf5) {
            if (end - p < 4) return false;
            unsigned char const lo = c == 0xf0 ? 0x90 : 0x80;  // overlong
            unsigned char const hi = c == 0xf4 ? 0x8f : 0xbf;  // beyond U+10FFFF
            if (p[1] < lo || p[1] > hi || !continuation(p[2]) || !continuation(p[3])) return false;
            p += 4;
        } else {
            return false;
        }
    }
    return true;
}

// ------------------------------------------------------ JSON size bound

/// At least as many characters as Boost.JSON's serializer writes for any
/// number (its own bound, detail::max_number_chars, is 27).
inline constexpr std::size_t number_bound = 32;

/// An upper bound on the serialized size of a JSON string: quotes, plus at
/// most 6 characters (`\u00XX`) for a control character and 2 for `"`/`\`.
inline std::size_t json_size_bound(boost::json::string_view s) noexcept {
    std::size_t n = 2 + s.size();
    for (char ch : s) {
        auto const c = static_cast<unsigned char>(ch);
        if (c < 0x20)
            n += 5;
        else if (c == '"' || c == '\\')
            n += 1;
    }
    return n;
}

inline std::size_t json_size_bound(boost::json::object const& o) noexcept;

/// An upper bound on the size of `v` serialized by Boost.JSON, found without
/// formatting anything, so an encoder can reserve its output once.
inline std::size_t json_size_bound(boost::json::value const& v) noexcept {
    namespace bj = boost::json;
    switch (v.kind()) {
    case bj::kind::null: return 4;
    case bj::kind::bool_: return 5;
    case bj::kind::int64:
    case bj::kind::uint64:
    case bj::kind::double_: return number_bound;
    case bj::kind::string: return json_size_bound(bj::string_view(v.get_string()));
    case bj::kind::array: {
        auto const& a = v.get_array();
        std::size_t n = 2 + a.size();  // brackets, commas (one spare)
        for (auto const& e : a) n += json_size_bound(e);
        return n;
    }
    case bj::kind::object: return json_size_bound(v.get_object());
    }
    return number_bound;
}

inline std::size_t json_size_bound(boost::json::object const& o) noexcept {
    std::size_t n = 2 + 2 * o.size();  // braces, colons, commas (one spare)
    for (auto const& kv : o) n += json_size_bound(kv.key()) + json_size_bound(kv.value());
    return n;
}

// ------------------------------------------------------------------ reader

/// Reads primitives from one frame, never past its end. Every read either
/// succeeds and advances, or fails and leaves the reader where it was.
class reader {
public:
    explicit reader(std::string_view bytes) noexcept
        : p_(reinterpret_cast<unsigned char const*>(bytes.data())), end_(p_ + bytes.size()) {}

    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    bool at_end() const noexcept { return p_ == end_; }

    bool byte(std::uint8_t& out) noexcept {
        if (p_ == end_) return false;
        out = *p_++;
        return true;
    }

    /// A shortest-form LEB128 value of at most 64 bits. Refuses a value cut
    /// short by the end of the frame, an 11th byte, bits beyond 64, and a
    /// padded form (a last byte of 0 after the first): each value has exactly
    /// one spelling.
    bool varint(std::uint64_t& out) noexcept {
        if (p_ != end_ && *p_ < 0x80) {  // lengths, counts: almost always one byte
            out = *p_++;
            return true;
        }
        std::uint64_t v = 0;
        auto const* p = p_;
        for (unsigned i = 0; i < max_varint_size; ++i) {
            if (p == end_) return false;
            unsigned char const b = *p++;
            if (i == max_varint_size - 1 && b > 1) return false;
            v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
            if (!(b & 0x80)) {
                if (b == 0 && i > 0) return false;
                out = v;
                p_ = p;
                return true;
            }
        }
        return false;
    }

    bool f64(double& out) noexcept {
        if (remaining() < f64_size) return false;
        out = get_f64(p_);
        p_ += f64_size;
        return true;
    }

    /// A varint length and that many bytes, viewed in place.
    bool bytes(std::string_view& out) noexcept {
        auto const* const start = p_;
        std::uint64_t n = 0;
        if (!varint(n) || n > remaining()) {
            p_ = start;
            return false;
        }
        out = std::string_view(reinterpret_cast<char const*>(p_), static_cast<std::size_t>(n));
        p_ += n;
        return true;
    }

private:
    unsigned char const* p_;
    unsigned char const* end_;
};

}  // namespace flk::detail::binary_wire
