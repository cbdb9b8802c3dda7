// Presence of one process's rooms: the state an in-process broker keeps
// (metadata, last cursor, expiry per user per room). No I/O, no clock of its
// own: callers pass the time, so tests can drive expiry by hand.
#pragma once

#include <flock/broker/concept.hpp>
#include <flock/detail/string_map.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flk::detail {

class presence_store {
public:
    using time_point = std::chrono::steady_clock::time_point;

    struct entry {
        metadata meta;
        std::optional<position> cursor;
        time_point expires;
    };

    explicit presence_store(std::chrono::steady_clock::duration ttl) : ttl_(ttl) {}

    /// Admits the user unless the room is full; a user already present is always admitted.
    join_result join(join_request const& req, time_point now) {
        auto& users = rooms_[req.room_id];
        auto self = users.find(req.user_id);
        if (self == users.end() && users.size() >= req.capacity) {
            if (users.empty()) rooms_.erase(req.room_id);
            return {join_result::status::room_full, {}};
        }
        join_result result{join_result::status::joined, {}};
        result.others.reserve(users.size());
        for (auto const& [user, e] : users)
            if (user != req.user_id) result.others.push_back({user, e.meta, e.cursor});
        if (self == users.end()) self = users.emplace(req.user_id, entry{}).first;
        self->second.meta = req.meta;
        self->second.expires = now + ttl_;
        return result;
    }

    bool leave(std::string_view room, std::string_view user) {
        auto r = rooms_.find(room);
        if (r == rooms_.end()) return false;
        auto u = r->second.find(user);
        if (u == r->second.end()) return false;
        r->second.erase(u);
        if (r->second.empty()) rooms_.erase(r);
        return true;
    }

    void touch(std::string_view room, std::string_view user, time_point now) {
        if (auto* e = find(room, user)) e->expires = now + ttl_;
    }
    void set_metadata(std::string_view room, std::string_view user, metadata const& meta) {
        if (auto* e = find(room, user)) e->meta = meta;
    }
    void set_cursor(std::string_view room, std::string_view user, std::optional<position> pos) {
        if (auto* e = find(room, user)) e->cursor = pos;
    }

    /// Removes every user whose presence expired by `now` and returns them as (room, user).
    std::vector<std::pair<std::string, std::string>> expire(time_point now) {
        std::vector<std::pair<std::string, std::string>> gone;
        for (auto r = rooms_.begin(); r != rooms_.end();) {
            auto& users = r->second;
            for (auto u = users.begin(); u != users.end();) {
                if (u->second.expires <= now) {
                    gone.emplace_back(r->first, u->first);
                    u = users.erase(u);
                } else {
                    ++u;
                }
            }
            r = users.empty() ? rooms_.erase(r) : std::next(r);
        }
        return gone;
    }

    entry* find(std::string_view room, std::string_view user) {
        auto r = rooms_.find(room);
        if (r == rooms_.end()) return nullptr;
        auto u = r->second.find(user);
        return u == r->second.end() ? nullptr : &u->second;
    }
    entry const* find(std::string_view room, std::string_view user) const {
        return const_cast<presence_store*>(this)->find(room, user);
    }
    std::size_t room_count() const noexcept { return rooms_.size(); }
    std::size_t member_count(std::string_view room) const {
        auto r = rooms_.find(room);
        return r == rooms_.end() ? 0 : r->second.size();
    }

private:
    std::chrono::steady_clock::duration ttl_;
    string_map<string_map<entry>> rooms_;
};

}  // namespace flk::detail
