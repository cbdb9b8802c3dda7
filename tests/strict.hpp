// What a test does when something it needs is missing (a Redis, TLS tooling,
// a redis-server it can start and stop): under FLOCK_TEST_STRICT=1, which
// tests/run sets, the test fails; otherwise it is skipped, with a line on
// stderr saying what was skipped and why. Never a silent pass.
//
//     if (!flk_test::prerequisite(have_openssl, "TLS test", "openssl cannot make certificates")) return;
#pragma once

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace flk_test {

/// FLOCK_TEST_STRICT is set to something other than "" or "0".
inline bool strict() {
    char const* s = std::getenv("FLOCK_TEST_STRICT");
    return s && *s && std::string_view(s) != "0";
}

/// True when `met`. Otherwise fails the current test in strict mode, or
/// reports the skip on stderr; the caller then returns.
inline bool prerequisite(bool met, std::string_view what, std::string_view why) {
    if (met) return true;
    if (strict())
        BOOST_ERROR("FLOCK_TEST_STRICT: " << what << " cannot run: " << why);
    else
        std::cerr << "SKIPPED: " << what << ": " << why << " (set FLOCK_TEST_STRICT=1 to make this a failure)\n";
    return false;
}

}  // namespace flk_test
