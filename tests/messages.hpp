// Client messages as a Flock browser client writes them, for the tests.
#pragma once

#include <string>
#include <string_view>

namespace flk::test::msg {

inline std::string join(std::string_view room, std::string_view user, std::string_view meta = "{}",
                        std::string_view extra = "") {
    return R"({"type":"join","roomId":")" + std::string(room) + R"(","userId":")" + std::string(user) +
           R"(","metadata":)" + std::string(meta) + std::string(extra) + "}";
}
/// A message with only a type and a room (heartbeat, leave, cursor:leave),
/// plus `extra` fields spelled as `,"key":value`.
inline std::string in_room(std::string_view type, std::string_view room, std::string_view extra = "") {
    return R"({"type":")" + std::string(type) + R"(","roomId":")" + std::string(room) + "\"" +
           std::string(extra) + "}";
}
inline std::string move(std::string_view room, double x, double y) {
    return in_room("cursor:move", room,
                   R"(,"position":{"x":)" + std::to_string(x) + R"(,"y":)" + std::to_string(y) + "}");
}

}  // namespace flk::test::msg
