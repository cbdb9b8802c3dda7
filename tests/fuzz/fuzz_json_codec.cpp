// libFuzzer target: flk::json_codec (codec/json.hpp) on one text frame.
//
// - decode (client messages): never throws; a decoded message is written back
//   as JSON (the spelling of docs/protocol.md, built here with flock's own
//   json_writer) and must decode to an equal message; it must also survive
//   the binary codec (encode_client, decode) unchanged: both codecs promise to
//   accept the same messages and metadata.
// - decode_server: never throws; encode(message) must be valid JSON that
//   decodes to an equal message, and encoding that gives the same bytes.
// - a text frame given as binary is refused with wrong_frame_kind.
//
// Boost.JSON is compiled into this target (boost/json/src.hpp) so that the
// parser is instrumented too and guides the fuzzer.
#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/json_writer.hpp>

#include <boost/json/src.hpp>

#include "round_trip.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace flk::fuzz;
    std::string_view const bytes(reinterpret_cast<char const*>(data), size);
    flk::json_codec const json;
    flk::binary_codec const binary;

    auto const wrong = json.decode(bytes, flk::frame_kind::binary);
    CHECK(!wrong && wrong.error().code == flk::decode_errc::wrong_frame_kind);

    if (auto const m = json.decode(bytes, flk::frame_kind::text)) {
        check_client_round_trip(*m, json, binary);
    } else {
        auto const& e = m.error();
        CHECK(e.code >= flk::decode_errc::invalid_json && e.code <= flk::decode_errc::malformed);
        (void)e.message();
        (void)e.deserves_reply();
    }

    if (auto const s = json.decode_server(bytes)) check_server_round_trip(*s, json);
    return 0;
}
