// The errors of flk::redis_broker as error_codes (category "flock.redis"):
// what the broker decides on (reconnect, fall back to EVAL, log once) is the
// code; the sentence with the host, the cause and the advice is only for logs
// and last_error().
#pragma once

#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace flk {

enum class redis_errc {
    // Connecting (the handshake of one connection).
    resolve_failed = 1,  ///< the host name does not resolve
    connect_failed,      ///< TCP connect refused or unreachable
    connect_timeout,     ///< no answer within FLOCK_REDIS_CONNECT_TIMEOUT_MS
    tls_failed,          ///< TLS handshake (certificate, plain port, SNI)
    auth_failed,         ///< AUTH refused, or NOAUTH: a password is needed
    select_failed,       ///< SELECT of the URL's database refused
    handshake_failed,    ///< PING refused, or the connection failed mid-handshake
    no_master,           ///< redis+sentinel://: no sentinel named a reachable master
    // An open connection.
    connection_lost,  ///< closed by Redis, or a read or write failed
    reply_timeout,    ///< no reply within FLOCK_REDIS_REPLY_TIMEOUT_MS
    protocol_error,   ///< not RESP, or a reply to no command
    not_connected,    ///< a command sent while no connection is open
    master_moved,     ///< redis+sentinel://: a sentinel announced a new master
    // Error replies (the first word of the reply).
    read_only_replica,  ///< READONLY: the address leads to a replica now
    no_script,          ///< NOSCRIPT: the script cache was flushed
    out_of_memory,      ///< OOM: maxmemory reached
    busy,               ///< BUSY: a script is running too long
    server_error,       ///< any other error reply
    unexpected_reply,   ///< a reply of a shape flock does not expect
};

namespace detail::redis {

class error_category_impl final : public boost::system::error_category {
public:
    constexpr error_category_impl() noexcept : boost::system::error_category(0x666c6f636b726564ULL) {}
    char const* name() const noexcept override { return "flock.redis"; }
    std::string message(int ev) const override {
        switch (static_cast<redis_errc>(ev)) {
        case redis_errc::resolve_failed: return "cannot resolve the redis host";
        case redis_errc::connect_failed: return "cannot connect to redis";
        case redis_errc::connect_timeout: return "timed out connecting to redis";
        case redis_errc::tls_failed: return "TLS handshake with redis failed";
        case redis_errc::auth_failed: return "redis authentication failed";
        case redis_errc::select_failed: return "redis SELECT failed";
        case redis_errc::handshake_failed: return "handshake with redis failed";
        case redis_errc::no_master: return "no sentinel named a reachable redis master";
        case redis_errc::connection_lost: return "connection to redis lost";
        case redis_errc::reply_timeout: return "redis did not answer in time";
        case redis_errc::protocol_error: return "redis protocol error";
        case redis_errc::not_connected: return "not connected to redis";
        case redis_errc::master_moved: return "the redis master moved (sentinel)";
        case redis_errc::read_only_replica: return "redis is a read-only replica";
        case redis_errc::no_script: return "redis does not have the script";
        case redis_errc::out_of_memory: return "redis is out of memory";
        case redis_errc::busy: return "redis is busy running a script";
        case redis_errc::server_error: return "redis returned an error";
        case redis_errc::unexpected_reply: return "unexpected reply from redis";
        }
        return "unknown flock.redis error";
    }
};

}  // namespace detail::redis

inline boost::system::error_category const& redis_category() noexcept {
    static detail::redis::error_category_impl const c;
    return c;
}

inline boost::system::error_code make_error_code(redis_errc e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

}  // namespace flk

template <>
struct boost::system::is_error_code_enum<flk::redis_errc> : std::true_type {};
