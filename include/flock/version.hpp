// flock's version, as the build files name it (CMakeLists.txt and
// meson.build check at configure time that the three agree).
#pragma once

#include <string_view>

namespace flk {

inline constexpr std::string_view version = "0.1.0";

}  // namespace flk
