// The one translation unit that holds Boost.Test's runner. Every other test
// file includes <boost/test/unit_test.hpp> only.
#define BOOST_TEST_MODULE flock integration tests
#include <boost/test/included/unit_test.hpp>
