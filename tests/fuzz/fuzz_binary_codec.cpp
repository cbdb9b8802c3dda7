// libFuzzer target: flk::binary_codec (codec/binary.hpp) and the client-side
// flk::binary_session.
//
// The whole input is one frame for:
// - decode (client messages): never throws; a decoded message encodes
//   (encode_client) back to a frame that decodes equal, and survives the JSON
//   spelling too (both codecs accept the same messages);
// - decode_server: never throws; "encoding the result gives the same bytes
//   again" is promised modulo the metadata's JSON spelling, so: encode,
//   decode equal, encode again to the same bytes;
// - a binary frame given as text is refused with wrong_frame_kind.
// The input is also read as a sequence of frames, each [length byte][frame],
// fed to one binary_session: what it gives back has no handles left (every
// id filled in), and what it refuses leaves it knowing no new room.
#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>

#include <boost/json/src.hpp>

#include "round_trip.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

namespace {

using namespace flk;

bool handles_cleared(server_message const& m) {
    return std::visit(
        [](auto const& v) {
            using M = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<M, server::join_ack>) {
                for (auto const& u : v.users)
                    if (u.user_handle != 0) return false;
                return v.room_handle == 0;
            } else if constexpr (requires { v.user_handle; }) {
                return v.room_handle == 0 && v.user_handle == 0;
            } else {
                return true;
            }
        },
        m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace flk::fuzz;
    std::string_view const bytes(reinterpret_cast<char const*>(data), size);
    json_codec const json;
    binary_codec const binary;

    auto const wrong = binary.decode(bytes, frame_kind::text);
    CHECK(!wrong && wrong.error().code == decode_errc::wrong_frame_kind);

    if (auto const m = binary.decode(bytes, frame_kind::binary)) {
        check_client_round_trip(*m, json, binary);
    } else {
        (void)m.error().message();
    }

    if (auto const s = binary.decode_server(bytes)) check_server_round_trip(*s, binary);

    binary_session session;
    std::size_t joins = 0;
    for (std::string_view rest = bytes; !rest.empty();) {
        std::size_t const n = static_cast<unsigned char>(rest.front());
        if (rest.size() - 1 < n) break;
        auto const frame = rest.substr(1, n);
        rest.remove_prefix(1 + n);
        std::size_t const rooms_before = session.room_count();
        auto const msg = session.decode(frame);
        if (!msg) {
            CHECK(session.room_count() <= rooms_before);
            continue;
        }
        CHECK(handles_cleared(*msg));
        if (auto const* ack = std::get_if<server::join_ack>(&*msg)) {
            ++joins;
            CHECK(session.user_count(ack->room_id) <= ack->users.size());
            CHECK(session.room_count() <= joins);
            if (joins % 4 == 3) session.forget(ack->room_id);
        }
        CHECK(session.room_count() <= joins);
    }
    return 0;
}
