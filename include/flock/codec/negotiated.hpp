// One server for browsers and native clients: JSON text frames for every
// client that asks for nothing (the existing browser client), the compact
// binary codec for clients that offer the WebSocket subprotocol
// `flock.binary.v2`.
#pragma once

#include <flock/codec/binary.hpp>
#include <flock/codec/concept.hpp>
#include <flock/codec/json.hpp>

#include <string>
#include <string_view>

namespace flk {

class json_or_binary_codec {
public:
    static constexpr frame_kind kind = frame_kind::text;
    static constexpr frame_kind negotiated_kind = frame_kind::binary;
    static constexpr std::string_view subprotocol = binary_codec::subprotocol;

    /// A frame is read by its own kind, whatever the connection negotiated.
    decode_result decode(std::string_view bytes, frame_kind k) const {
        return k == frame_kind::binary ? binary_.decode(bytes, k) : json_.decode(bytes, k);
    }
    std::string encode(server_message const& msg) const { return json_.encode(msg); }
    std::string encode(server_message const& msg, frame_kind k) const {
        return k == frame_kind::binary ? binary_.encode(msg) : json_.encode(msg);
    }
    /// JSON messages are objects; a binary message never starts with '{'.
    std::optional<server_message> decode_server(std::string_view bytes) const {
        return !bytes.empty() && bytes.front() == '{' ? json_.decode_server(bytes) : binary_.decode_server(bytes);
    }

private:
    json_codec json_;
    binary_codec binary_;
};

static_assert(NegotiatingCodec<json_or_binary_codec>);

}  // namespace flk
