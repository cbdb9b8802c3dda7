// The Codec policy: how messages are spelled on the wire.
#pragma once

#include <flock/protocol.hpp>

#include <boost/system/result.hpp>

#include <concepts>
#include <string>
#include <string_view>

namespace flk {

/// Why a client frame could not be decoded.
enum class decode_errc {
    invalid_json = 1,  ///< not parseable (or not UTF-8 text)
    not_an_object,     ///< valid JSON but not an object
    missing_type,      ///< no string field `type`
    unknown_type,      ///< a `type` the protocol does not know (dropped silently)
    missing_field,     ///< a required field is absent
    wrong_type,        ///< a field has the wrong JSON type (or a number is not finite)
    wrong_frame_kind,  ///< a binary frame to a text codec, or the reverse
    malformed,         ///< bytes that do not follow the binary layout
};

constexpr std::string_view to_string(decode_errc e) noexcept {
    switch (e) {
    case decode_errc::invalid_json: return "invalid JSON";
    case decode_errc::not_an_object: return "message is not a JSON object";
    case decode_errc::missing_type: return "missing string field 'type'";
    case decode_errc::unknown_type: return "unknown message type";
    case decode_errc::missing_field: return "missing field";
    case decode_errc::wrong_type: return "field has the wrong type";
    case decode_errc::wrong_frame_kind: return "wrong frame kind for this codec";
    case decode_errc::malformed: return "malformed binary message";
    }
    return "decode error";
}

/// A decode failure: what went wrong and, where it applies, which field
/// (`field` points to static storage) and which room the frame named.
struct decode_error {
    decode_errc code{};
    std::string_view field;
    std::string room_id;  ///< when the frame named one, so the error can carry it

    /// Unknown types and unparseable frames are dropped silently, as the
    /// reference server does; a known type with bad fields deserves an answer.
    bool deserves_reply() const noexcept {
        return code == decode_errc::missing_field || code == decode_errc::wrong_type ||
               code == decode_errc::wrong_frame_kind || code == decode_errc::malformed;
    }

    std::string message() const {
        std::string m(to_string(code));
        if (!field.empty()) {
            m += ": ";
            m += field;
        }
        return m;
    }
};

[[noreturn]] inline void throw_exception_from_error(decode_error const& e,
                                                    boost::source_location const&) {
    throw std::invalid_argument(e.message());
}

using decode_result = boost::system::result<client_message, decode_error>;

/// A Codec decodes client frames and encodes server messages.
///
/// - `kind` is the frame kind the codec writes (text or binary).
/// - `decode(bytes, kind)` never throws on bad input; it returns a
///   decode_error instead.
/// - `encode(message)` returns the frame payload; the caller encodes a
///   broadcast once and shares the bytes among all recipients. Server
///   messages carry the core's handles (flk::handle) beside the ids; a codec
///   may send a handle in place of an id (binary_codec) or ignore handles
///   (json_codec). They are the same for every recipient, so the frame is.
/// - `decode_server(bytes)` reads a server message back (used by tests, by
///   the load generator and to relay messages between instances).
template <class C>
concept Codec = std::default_initializable<C> &&
    requires(C const& c, std::string_view bytes, frame_kind kind, server_message const& msg) {
        { C::kind } -> std::convertible_to<frame_kind>;
        { c.decode(bytes, kind) } -> std::same_as<decode_result>;
        { c.encode(msg) } -> std::same_as<std::string>;
        { c.decode_server(bytes) } -> std::same_as<std::optional<server_message>>;
    };

/// A Codec that speaks a second format too, chosen per connection: a client
/// that offers the WebSocket subprotocol `C::subprotocol` gets frames of
/// `C::negotiated_kind`; every other client gets `C::kind`. So one server
/// serves browsers (JSON) and native clients (binary) at once.
template <class C>
concept NegotiatingCodec = Codec<C> && requires(C const& c, server_message const& msg, frame_kind kind) {
    { C::subprotocol } -> std::convertible_to<std::string_view>;
    { C::negotiated_kind } -> std::convertible_to<frame_kind>;
    { c.encode(msg, kind) } -> std::same_as<std::string>;
};

}  // namespace flk
