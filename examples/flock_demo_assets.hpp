// The demo page's files (examples/demo/ and clients/js/flock.js), compiled
// into flock-server: flock_demo_assets.cpp is generated at build time by
// cmake/embed_files.cmake (from CMake and from Meson).
#pragma once

#include <flock/demo.hpp>

#include <span>

namespace flk::demo_assets {

/// "/demo/index.html", "/demo/demo.js", "/demo/demo.css", "/demo/flock.js".
std::span<flk::static_file const> files();

}  // namespace flk::demo_assets
