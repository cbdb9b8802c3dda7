// The batch envelope of FLOCK_REDIS_BATCH_MS (flock-only clusters): several
// broadcasts of one room from one instance in one PUBLISH, on the room's
// batch channel `flock:batch:{roomId}` (keys.hpp), never on
// `flock:broadcast:{roomId}`:
//
//   {"instanceId": "<uuid>", "messages": [<server message>, ...]}
//
// in the order the instance sent them. A reference (Node.js) instance
// subscribes to `flock:broadcast:*` channels only, so a batch never reaches
// it: nothing for it to misread, and nothing for its members either (the
// mode is for clusters made of flock instances only, docs/scaling.md).
// No I/O.
#pragma once

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace flk::detail::redis {

/// Builds one batch envelope from encoded server messages (JSON text each).
class batch_builder {
public:
    bool empty() const noexcept { return count_ == 0; }
    std::size_t count() const noexcept { return count_; }
    std::size_t bytes() const noexcept { return text_.size(); }

    void add(std::string_view instance, std::string_view message) {
        if (count_ == 0) {
            text_.reserve(instance.size() + message.size() + 32);
            text_ += R"({"instanceId":")";
            text_ += instance;  // a UUID: nothing to escape
            text_ += R"(","messages":[)";
        } else {
            text_ += ',';
        }
        text_ += message;
        ++count_;
    }

    /// The envelope, closed; the builder is empty again.
    std::string take() {
        text_ += "]}";
        std::string out = std::move(text_);
        text_.clear();
        count_ = 0;
        return out;
    }

private:
    std::string text_;
    std::size_t count_ = 0;
};

/// A parsed batch envelope.
struct batch {
    std::string instance_id;       ///< empty when absent or not a string
    boost::json::array messages;   ///< each a server message (not validated here)
};

/// The envelope in `payload`, or nothing when it is not an object with a
/// `messages` array.
inline std::optional<batch> parse_batch(std::string_view payload) {
    boost::system::error_code ec;
    auto v = boost::json::parse(payload, ec);
    auto* env = v.if_object();
    if (ec || !env) return std::nullopt;
    auto* msgs = env->if_contains("messages");
    if (!msgs || !msgs->is_array()) return std::nullopt;
    batch b;
    if (auto const* id = env->if_contains("instanceId"); id && id->is_string()) b.instance_id = id->get_string();
    b.messages = std::move(msgs->get_array());
    return b;
}

}  // namespace flk::detail::redis
