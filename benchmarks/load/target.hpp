// The servers a run connects to: ws:// URLs resolved once, before the run.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace load {

struct target {
    std::string url;
    std::string host;  ///< the Host header: host[:port] as written in the URL
    std::string path;  ///< request target, "/" at least
    boost::asio::ip::tcp::endpoint endpoint;
};

/// Parses `ws://host[:port][/path]` and resolves the host (first address).
/// Throws std::invalid_argument naming the URL.
inline target resolve_target(std::string const& url) {
    constexpr std::string_view scheme = "ws://";
    auto bad = [&](std::string_view why) { return std::invalid_argument("--url " + url + ": " + std::string(why)); };
    if (!std::string_view(url).starts_with(scheme)) throw bad("only ws:// URLs are supported");
    auto const rest = std::string_view(url).substr(scheme.size());
    auto const slash = rest.find('/');
    target t;
    t.url = url;
    t.host = std::string(rest.substr(0, slash));
    t.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    std::string host = t.host;
    std::string port = "80";
    if (auto const colon = host.rfind(':'); colon != std::string::npos && host.find(']', colon) == std::string::npos) {
        port = host.substr(colon + 1);
        host.resize(colon);
    }
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) throw bad("no host");
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    boost::system::error_code ec;
    auto const results = resolver.resolve(host, port, ec);
    if (ec || results.empty()) throw bad("cannot resolve: " + ec.message());
    t.endpoint = results.begin()->endpoint();
    return t;
}

}  // namespace load
