// Appending JSON values to a std::string, for encoders that know the shape of
// what they write and so need no DOM.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/serializer.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace flk::detail {

/// Appends `s` as a JSON string: quoted, with `"`, `\` and control characters
/// escaped. The bytes are copied as they are otherwise, so `s` must already
/// be UTF-8 (everything a codec decoded is).
inline void write_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    std::size_t run = 0;  // start of the bytes not yet copied
    for (std::size_t i = 0; i < s.size(); ++i) {
        auto const c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(s.data() + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    out.append(s.data() + run, s.size() - run);
    out += '"';
}

/// Appends `n` in decimal.
inline void write_int(std::string& out, std::int64_t n) {
    char buf[24];
    auto const r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
}

/// Appends `d` in its shortest round-trip form (0.5, not 5E-1). JSON has no
/// infinity or NaN; they are written as `null`, as JSON.stringify does, so
/// the output stays parseable whatever the caller hands in.
inline void write_double(std::string& out, double d) {
    if (!std::isfinite(d)) {
        out += "null";
        return;
    }
    char buf[32];
    auto const r = std::to_chars(buf, buf + sizeof buf, d);
    out.append(buf, r.ptr);
}

/// Appends an arbitrary JSON object (user metadata) with Boost.JSON's
/// serializer, streamed through a stack buffer so no temporary string is made.
inline void write_object(std::string& out, boost::json::object const& obj) {
    boost::json::serializer sr;
    sr.reset(&obj);
    char buf[512];
    while (!sr.done()) {
        auto const chunk = sr.read(buf, sizeof buf);
        out.append(chunk.data(), chunk.size());
    }
}

}  // namespace flk::detail
