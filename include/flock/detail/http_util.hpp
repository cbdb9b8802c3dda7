// Small, I/O-free helpers for HTTP request targets: path, query parameters,
// percent-decoding, comma-separated lists, client addresses. Used by the
// WebSocket transport.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flk::detail {

/// The path of a request target: everything before '?' or '#'.
constexpr std::string_view target_path(std::string_view target) noexcept {
    auto const end = target.find_first_of("?#");
    return end == std::string_view::npos ? target : target.substr(0, end);
}

constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// Decodes `%XX` escapes and, as in `application/x-www-form-urlencoded` (what
/// WHATWG `URLSearchParams` does), '+' as a space. A '%' not followed by two
/// hex digits is kept as it is, as `URLSearchParams` does.
inline std::string form_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char const c = s[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
                   hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

/// The decoded value of the first query parameter named `name` in a request
/// target (`/path?a=1&apiKey=k`), or nullopt when it is absent. A parameter
/// without '=' has the empty value.
inline std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    auto const q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    auto query = target.substr(q + 1);
    if (auto const hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
    while (!query.empty()) {
        auto const amp = query.find('&');
        auto const pair = query.substr(0, amp);
        auto const eq = pair.find('=');
        auto const key = pair.substr(0, eq);
        if (!pair.empty() && form_decode(key) == name)
            return eq == std::string_view::npos ? std::string() : form_decode(pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

/// The elements of a comma-separated header value (`a, b,c`), spaces and tabs
/// around each trimmed, empty ones skipped. Appends to `out`.
inline void split_comma_list(std::string_view value, std::vector<std::string>& out) {
    while (!value.empty()) {
        auto const comma = value.find(',');
        auto item = value.substr(0, comma);
        auto const first = item.find_first_not_of(" \t");
        if (first != std::string_view::npos) {
            item = item.substr(first, item.find_last_not_of(" \t") - first + 1);
            out.emplace_back(item);
        }
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
}

/// An IPv4-mapped IPv6 address (what an IPv4 client of a dual-stack listener
/// is) as the IPv4 one; any other address as it is.
inline boost::asio::ip::address unmapped(boost::asio::ip::address const& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
    return a;
}

/// An address as flock shows a client's (http_request::remote_address):
/// unmapped, in the short lower-case form. Anything that is not an address
/// is returned as it is.
inline std::string canonical_address(std::string_view text) {
    boost::system::error_code ec;
    auto const addr = boost::asio::ip::make_address(text, ec);
    return ec ? std::string(text) : unmapped(addr).to_string();
}

/// Whether `peer` (a remote_address) is one of the configured `addresses`,
/// however each is written: `::ffff:10.0.0.5` and `10.0.0.5` are one client.
inline bool address_listed(std::vector<std::string> const& addresses, std::string_view peer) {
    return std::ranges::any_of(addresses, [&](std::string const& a) { return canonical_address(a) == peer; });
}

}  // namespace flk::detail
