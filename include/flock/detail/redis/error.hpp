// A Redis reply as an error_code of flk::redis_errc (broker/redis_error.hpp):
// the broker decides on the code, and logs the reply's text.
#pragma once

#include <flock/broker/redis_error.hpp>
#include <flock/detail/redis/resp.hpp>

#include <boost/system/error_code.hpp>

#include <string_view>

namespace flk::detail::redis {

/// No error for a reply that is not an error; the code of an error reply
/// (by its first word) or of an I/O failure otherwise.
inline boost::system::error_code error_of(reply const& r) noexcept {
    if (r.type == reply::kind::io_error) return redis_errc::connection_lost;
    if (r.type != reply::kind::error) return {};
    if (r.is_error_code("READONLY")) return redis_errc::read_only_replica;
    if (r.is_error_code("NOSCRIPT")) return redis_errc::no_script;
    if (r.is_error_code("OOM")) return redis_errc::out_of_memory;
    if (r.is_error_code("BUSY")) return redis_errc::busy;
    if (r.is_error_code("NOAUTH") || r.is_error_code("WRONGPASS")) return redis_errc::auth_failed;
    return redis_errc::server_error;
}

}  // namespace flk::detail::redis
