// The bytes of a WebSocket frame as a client sends it (masked), for the unit
// tests of the frame reader.
#pragma once

#include <flock/detail/ws_frame.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace flk::test {

/// A client frame: masked with `mask`, the length in its shortest form
/// unless `len_bytes` (0, 2 or 8) forces one.
inline std::string client_frame(flk::detail::ws_opcode op, std::string_view payload, bool fin = true,
                                std::string_view mask = "\x12\x34\x56\x78", int len_bytes = -1) {
    std::string f;
    f += static_cast<char>((fin ? 0x80 : 0) | static_cast<int>(op));
    std::uint64_t const n = payload.size();
    if (len_bytes < 0) len_bytes = n < 126 ? 0 : n <= 0xFFFF ? 2 : 8;
    if (len_bytes == 0) f += static_cast<char>(0x80 | n);
    else f += static_cast<char>(0x80 | (len_bytes == 2 ? 126 : 127));
    for (int i = len_bytes - 1; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xFF);
    f += mask;
    for (std::size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
    return f;
}

}  // namespace flk::test
