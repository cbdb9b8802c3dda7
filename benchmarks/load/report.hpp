// Writing results: indented JSON (numbers in their shortest form, not
// Boost.JSON's 1.5E0 style) and a Markdown summary.
#pragma once

#include "histogram.hpp"

#include <boost/json/value.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace load {

/// `v` rounded to `digits` decimals, for figures meant to be read.
inline double rounded(double v, int digits) {
    auto const scale = std::pow(10.0, digits);
    return std::round(v * scale) / scale;
}

/// A microsecond value in milliseconds (exact to the µs).
inline double ms(std::uint64_t us) { return static_cast<double>(us) / 1000.0; }

inline boost::json::object percentiles_ms(histogram const& h) {
    return {{"count", h.count()},
            {"p50", ms(h.percentile(0.50))},
            {"p90", ms(h.percentile(0.90))},
            {"p99", ms(h.percentile(0.99))},
            {"p99_9", ms(h.percentile(0.999))},
            {"max", ms(h.max())},
            {"mean", rounded(h.mean() / 1000.0, 3)}};
}

namespace detail {

inline void write_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    out += '"';
}

template <class T>
void write_number(std::string& out, T v) {
    char buf[32];
    auto const r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

}  // namespace detail

inline void write_json(std::string& out, boost::json::value const& v, int indent = 0) {
    namespace bj = boost::json;
    auto newline = [&](int level) {
        out += '\n';
        out.append(static_cast<std::size_t>(level) * 2, ' ');
    };
    switch (v.kind()) {
    case bj::kind::null: out += "null"; break;
    case bj::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case bj::kind::int64: detail::write_number(out, v.get_int64()); break;
    case bj::kind::uint64: detail::write_number(out, v.get_uint64()); break;
    case bj::kind::double_:
        if (std::isfinite(v.get_double())) detail::write_number(out, v.get_double());
        else out += "null";
        break;
    case bj::kind::string: detail::write_json_string(out, v.get_string()); break;
    case bj::kind::array: {
        auto const& a = v.get_array();
        out += '[';
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (i) out += ", ";
            write_json(out, a[i], indent);
        }
        out += ']';
        break;
    }
    case bj::kind::object: {
        auto const& o = v.get_object();
        if (o.empty()) {
            out += "{}";
            break;
        }
        out += '{';
        bool first = true;
        for (auto const& kv : o) {
            if (!first) out += ',';
            first = false;
            newline(indent + 1);
            detail::write_json_string(out, kv.key());
            out += ": ";
            write_json(out, kv.value(), indent + 1);
        }
        newline(indent);
        out += '}';
        break;
    }
    }
}

}  // namespace load
