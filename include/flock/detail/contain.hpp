// Calls into the core from an event source (a broker's reply, a timer, a
// message from another shard), with whatever the core throws logged and
// dropped: one bad event must not unwind through io_context::run() and stop
// the whole event loop (every shard, in a sharded_server).
#pragma once

#include <flock/log.hpp>

#include <exception>
#include <string_view>
#include <utility>

namespace flk::detail {

/// Runs `f()`; an exception it throws is logged as "`what` threw" and
/// swallowed. Returns false when `f` threw.
template <class F>
bool contain(logger const& log, std::string_view what, F&& f) {
    try {
        std::forward<F>(f)();
        return true;
    } catch (std::exception const& e) {
        log.error("callback threw; event dropped", {{"callback", what}, {"error", e.what()}});
    } catch (...) {
        log.error("callback threw; event dropped", {{"callback", what}, {"error", "unknown exception"}});
    }
    return false;
}

}  // namespace flk::detail
