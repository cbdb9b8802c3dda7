// RESP through hiredis 0.14: its command formatter and its reply reader, and
// nothing else of it (no hiredis context, no hiredis I/O). Replies are copied
// into a small owning tree so that hiredis objects never escape this file.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flk::detail::redis {

/// One RESP2 reply, or `io_error` when the connection failed before the
/// reply arrived (the command may or may not have run).
struct reply {
    enum class kind { string, array, integer, nil, status, error, io_error };
    kind type = kind::nil;
    std::string str;  ///< string, status, error, io_error text
    long long integer = 0;
    std::vector<reply> elements;

    bool is_error() const noexcept { return type == kind::error || type == kind::io_error; }
    bool is_string() const noexcept { return type == kind::string || type == kind::status; }
    bool is_array() const noexcept { return type == kind::array; }
    bool is_nil() const noexcept { return type == kind::nil; }

    /// An error reply whose first word is `code` (e.g. "NOSCRIPT", "NOAUTH").
    bool is_error_code(std::string_view code) const noexcept {
        return type == kind::error && std::string_view(str).starts_with(code) &&
               (str.size() == code.size() || str[code.size()] == ' ');
    }

    static reply io_failure(std::string why) {
        reply r;
        r.type = kind::io_error;
        r.str = std::move(why);
        return r;
    }

    static reply from_hiredis(redisReply const& h) {
        reply r;
        switch (h.type) {
        case REDIS_REPLY_STRING: r.type = kind::string; break;
        case REDIS_REPLY_STATUS: r.type = kind::status; break;
        case REDIS_REPLY_ERROR: r.type = kind::error; break;
        case REDIS_REPLY_INTEGER: r.type = kind::integer; r.integer = h.integer; return r;
        case REDIS_REPLY_ARRAY:
            r.type = kind::array;
            r.elements.reserve(h.elements);
            for (std::size_t i = 0; i < h.elements; ++i) r.elements.push_back(from_hiredis(*h.element[i]));
            return r;
        default: r.type = kind::nil; return r;
        }
        if (h.str != nullptr) r.str.assign(h.str, h.len);
        return r;
    }
};

/// Appends one command, RESP-encoded by hiredis, to `out`.
inline void append_command(std::string& out, std::span<std::string_view const> args) {
    constexpr std::size_t small = 16;
    char const* argv_small[small];
    std::size_t len_small[small];
    std::vector<char const*> argv_big;
    std::vector<std::size_t> len_big;
    char const** argv = argv_small;
    std::size_t* lens = len_small;
    if (args.size() > small) {
        argv_big.resize(args.size());
        len_big.resize(args.size());
        argv = argv_big.data();
        lens = len_big.data();
    }
    for (std::size_t i = 0; i < args.size(); ++i) {
        argv[i] = args[i].data();
        lens[i] = args[i].size();
    }
    char* cmd = nullptr;
    int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv, lens);
    if (n < 0 || cmd == nullptr) throw std::bad_alloc();
    std::unique_ptr<char, void (*)(char*)> guard(cmd, redisFreeCommand);
    out.append(cmd, static_cast<std::size_t>(n));
}

inline std::string format_command(std::span<std::string_view const> args) {
    std::string s;
    append_command(s, args);
    return s;
}

/// Incremental reply parser: feed bytes as they come, take whole replies out.
class reader {
public:
    reader() : r_(redisReaderCreate(), &redisReaderFree) {
        if (!r_) throw std::bad_alloc();
    }

    /// False on a protocol error (see error()); the connection is unusable then.
    bool feed(char const* data, std::size_t n) {
        return redisReaderFeed(r_.get(), data, n) == REDIS_OK;
    }

    /// The next whole reply; nullopt when more bytes are needed, or on a
    /// protocol error (failed() tells which).
    std::optional<reply> next() {
        void* raw = nullptr;
        if (redisReaderGetReply(r_.get(), &raw) != REDIS_OK) {
            failed_ = true;
            return std::nullopt;
        }
        if (raw == nullptr) return std::nullopt;
        std::unique_ptr<redisReply, void (*)(void*)> owned(static_cast<redisReply*>(raw), &freeReplyObject);
        return reply::from_hiredis(*owned);
    }

    bool failed() const noexcept { return failed_ || r_->err != 0; }
    std::string error() const { return r_->errstr; }

private:
    std::unique_ptr<redisReader, void (*)(redisReader*)> r_;
    bool failed_ = false;
};

}  // namespace flk::detail::redis
