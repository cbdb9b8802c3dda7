// The admin dashboard's pages, as text: the login form and the dashboard.
// No I/O, no state: flk::admin (flock/admin.hpp) gathers a `dashboard` and
// renders it here. Every value that comes from a client (room ids, user ids,
// metadata) or from Redis goes through html_escape; nothing is ever placed
// in a script, a style or a URL. The pages carry no script at all; the
// refresh is a <meta http-equiv="refresh">, which the Content-Security-Policy
// does not govern, and the one <style> element carries the response's nonce.
#pragma once

#include <flock/protocol.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flk::detail::admin {

/// `&<>"'` and nothing else replaced: safe in element text and in quoted
/// attribute values.
inline std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + s.size() / 8);
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

/// A colour a member's metadata names, if it is a plain one: `#rgb`,
/// `#rrggbb` or a word of letters. Anything else is shown as text only.
inline std::optional<std::string> safe_colour(std::string_view c) {
    auto hex = [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); };
    auto letter = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); };
    if ((c.size() == 4 || c.size() == 7) && c[0] == '#') {
        for (char ch : c.substr(1))
            if (!hex(ch)) return std::nullopt;
        return std::string(c);
    }
    if (c.empty() || c.size() > 20) return std::nullopt;
    for (char ch : c)
        if (!letter(ch)) return std::nullopt;
    return std::string(c);
}

/// "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h".
inline std::string age_text(std::chrono::seconds age) {
    auto s = std::max<std::int64_t>(0, age.count());
    if (s < 60) return std::to_string(s) + " s";
    if (s < 3600) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
    if (s < 86400) return std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min";
    return std::to_string(s / 86400) + " d " + std::to_string(s % 86400 / 3600) + " h";
}

struct member_row {
    std::string user_id;
    metadata meta;
    std::string where;  ///< the instance that holds it, as shown ("this process, shard 1", a UUID, ...)
};

struct room_row {
    std::string id;
    std::chrono::system_clock::time_point created;  ///< first local member, or the earliest joinedAt in Redis
    std::vector<member_row> members;
};

struct shard_row {
    std::size_t index = 0;
    std::size_t connections = 0;
    std::size_t rooms = 0;
    std::string broker;    ///< "memory" or "redis"
    bool up = true;        ///< the broker's connection
    std::string error;     ///< why it is down
    std::string instance;  ///< the Redis broker's instanceId
    bool answered = false; ///< false: the shard did not answer in time
};

/// One flock instance (process) of the cluster, from its record in Redis
/// (this process's row from its live figures).
struct instance_row {
    std::string name;  ///< host:port
    bool this_process = false;
    std::string version;
    std::size_t shards = 0;
    std::size_t shards_up = 0;  ///< shards whose broker is connected to Redis
    std::uint64_t connections = 0;
    std::uint64_t rooms = 0;    ///< rooms with a member there, summed over its shards
    std::string error;          ///< why a shard is down, if one is
    std::optional<std::chrono::microseconds> rtt;
    std::optional<std::chrono::system_clock::time_point> started;
    std::optional<std::chrono::system_clock::time_point> reported;  ///< empty: live (this process)
};

struct dashboard {
    std::string instance_name;  ///< host:port of this process
    std::vector<shard_row> shards;
    std::vector<room_row> rooms;
    bool cluster = false;         ///< rooms and members read from Redis, cluster-wide
    std::vector<std::string> notes;  ///< truncated listing, Redis unreachable, ...
    std::optional<std::chrono::microseconds> redis_rtt;
    std::string redis_state;      ///< empty in memory mode
    bool instances_listed = false;  ///< Redis mode, and the instance records were read
    std::vector<instance_row> instances;
    std::string csrf;
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
};

inline std::string_view style_text() {
    return "body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2430;background:#f6f7f9}"
           "h1{font-size:1.3rem;margin:0 0 1rem}h2{font-size:1.05rem;margin:1.5rem 0 .5rem}"
           "table{border-collapse:collapse;background:#fff;min-width:40rem}"
           "th,td{border:1px solid #d6dae1;padding:.35rem .6rem;text-align:left;vertical-align:top}"
           "th{background:#eef0f4}.stats{display:flex;gap:1rem}.stat{background:#fff;border:1px solid #d6dae1;"
           "padding:.6rem 1rem}.stat b{display:block;font-size:1.4rem}.note{color:#8a4b00}"
           "form.inline{display:inline;margin:0}button{cursor:pointer}.err{color:#a00}"
           "ul.members{margin:0;padding-left:1rem}code{background:#eef0f4;padding:0 .2rem}"
           ".login{background:#fff;border:1px solid #d6dae1;padding:1rem 1.5rem;max-width:22rem}"
           ".bar{display:flex;justify-content:space-between;align-items:center}";
}

inline std::string page(std::string_view title, std::string_view nonce, std::string_view body, bool refresh) {
    std::string out = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
    if (refresh) out += "<meta http-equiv=\"refresh\" content=\"10\">";
    out += "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>";
    out += html_escape(title);
    out += "</title><style nonce=\"";
    out += html_escape(nonce);
    out += "\">";
    out += style_text();
    out += "</style></head><body>\n";
    out += body;
    out += "</body></html>\n";
    return out;
}

/// The login form. `message` (escaped) says why the last attempt failed.
inline std::string login_page(std::string_view csrf, std::string_view nonce, std::string_view message = {}) {
    std::string b = "<h1>Flock admin</h1><div class=\"login\"><form method=\"post\" action=\"/admin\">";
    if (!message.empty()) b += "<p class=\"err\" id=\"message\">" + html_escape(message) + "</p>";
    b += "<p><label>Password<br><input type=\"password\" name=\"password\" autocomplete=\"current-password\" "
         "autofocus required></label></p><input type=\"hidden\" name=\"csrf\" value=\"";
    b += html_escape(csrf);
    b += "\"><p><button type=\"submit\">Sign in</button></p></form></div>\n";
    return page("Flock admin: sign in", nonce, b, false);
}

/// A short page for a refusal (403, 401, 429).
inline std::string message_page(std::string_view title, std::string_view text, std::string_view nonce) {
    std::string b = "<h1>" + html_escape(title) + "</h1><p>" + html_escape(text) +
                    "</p><p><a href=\"/admin\">Back to the admin page</a></p>\n";
    return page(title, nonce, b, false);
}

inline std::string hidden_csrf(std::string_view csrf) {
    return "<input type=\"hidden\" name=\"csrf\" value=\"" + html_escape(csrf) + "\">";
}

inline std::string member_item(member_row const& m) {
    std::string s = "<li class=\"member\">";
    auto field = [&](char const* k) -> std::string {
        if (auto it = m.meta.find(k); it != m.meta.end() && it->value().is_string())
            return std::string(it->value().get_string());
        return {};
    };
    auto name = field("name");
    auto colour = field("color");
    if (colour.empty()) colour = field("colour");
    if (auto c = safe_colour(colour))  // a presentation attribute, not a style: the CSP allows it
        s += "<svg width=\"11\" height=\"11\" aria-hidden=\"true\"><rect width=\"11\" height=\"11\" rx=\"2\" fill=\"" +
             html_escape(*c) + "\"/></svg> ";
    s += "<span class=\"name\">" + html_escape(name.empty() ? m.user_id : name) + "</span>";
    s += " <code class=\"user\">" + html_escape(m.user_id) + "</code>";
    if (!colour.empty()) s += " <span class=\"colour\">" + html_escape(colour) + "</span>";
    if (!m.where.empty()) s += " <small class=\"where\">on " + html_escape(m.where) + "</small>";
    s += "</li>";
    return s;
}

inline std::string dashboard_page(dashboard const& d, std::string_view nonce) {
    std::size_t users = 0;
    for (auto const& r : d.rooms) users += r.members.size();
    std::string b;
    b += "<div class=\"bar\"><h1>Flock admin</h1><form class=\"inline\" method=\"post\" action=\"/admin/sign-out\">" +
         hidden_csrf(d.csrf) + "<button type=\"submit\" id=\"sign-out\">Sign out</button></form></div>\n";
    char avg[32];
    std::snprintf(avg, sizeof avg, "%.1f", d.rooms.empty() ? 0.0 : double(users) / double(d.rooms.size()));
    b += "<div class=\"stats\"><div class=\"stat\"><b id=\"active-rooms\">" + std::to_string(d.rooms.size()) +
         "</b>active rooms</div><div class=\"stat\"><b id=\"connected-users\">" + std::to_string(users) +
         "</b>connected users</div><div class=\"stat\"><b id=\"average-per-room\">" + avg +
         "</b>average per room</div></div>\n";
    b += std::string("<p>") + (d.cluster ? "Rooms and members of the whole cluster, read from Redis." :
                                           "Rooms and members of this process.") +
         " The page refreshes every 10 s.</p>\n";
    for (auto const& n : d.notes) b += "<p class=\"note\">" + html_escape(n) + "</p>\n";

    b += "<h2>This instance</h2><table id=\"instance\"><tr><th>shard</th><th>connections</th><th>rooms here</th>"
         "<th>broker</th><th>instance id</th></tr>\n";
    std::size_t conns = 0;
    for (auto const& s : d.shards) {
        conns += s.connections;
        b += "<tr><td>" + std::to_string(s.index) + "</td>";
        if (!s.answered) {
            b += "<td colspan=\"4\" class=\"note\">did not answer in time</td></tr>\n";
            continue;
        }
        b += "<td>" + std::to_string(s.connections) + "</td><td>" + std::to_string(s.rooms) + "</td><td>" +
             html_escape(s.broker) + (s.up ? " up" : " <span class=\"err\">down</span>");
        if (!s.error.empty()) b += " (" + html_escape(s.error) + ")";
        b += "</td><td>" + (s.instance.empty() ? std::string("none (one process)") : "<code>" + html_escape(s.instance) + "</code>") +
             "</td></tr>\n";
    }
    b += "</table>\n<p>" + html_escape(d.instance_name) + ": " + std::to_string(d.shards.size()) + " shard(s), " +
         std::to_string(conns) + " connection(s)";
    if (!d.redis_state.empty()) {
        b += "; Redis " + html_escape(d.redis_state);
        if (d.redis_rtt) {
            char rtt[32];
            std::snprintf(rtt, sizeof rtt, "%.2f", double(d.redis_rtt->count()) / 1000.0);
            b += std::string(", round trip <span id=\"redis-rtt\">") + rtt + " ms</span>";
        }
    }
    b += ".</p>\n";

    if (d.instances_listed) {
        b += "<h2>Instances</h2><table id=\"instances\"><tr><th>instance</th><th>connections</th><th>rooms here</th>"
             "<th>shards</th><th>Redis</th><th>round trip</th><th>up for</th><th>reported</th><th>version</th></tr>\n";
        std::uint64_t all = 0;
        for (auto const& i : d.instances) {
            all += i.connections;
            b += "<tr class=\"instance\" data-instance=\"" + html_escape(i.name) + "\"><td><code>" +
                 html_escape(i.name) + "</code>" + (i.this_process ? " (this process)" : "") +
                 "</td><td class=\"connections\">" + std::to_string(i.connections) + "</td><td>" +
                 std::to_string(i.rooms) + "</td><td>" + std::to_string(i.shards) + "</td><td>";
            if (i.shards_up == i.shards) b += "up";
            else b += "<span class=\"err\">" + std::to_string(i.shards - i.shards_up) + " of " +
                      std::to_string(i.shards) + " down</span>";
            if (!i.error.empty()) b += " (" + html_escape(i.error) + ")";
            b += "</td><td>";
            if (i.rtt) {
                char rtt[32];
                std::snprintf(rtt, sizeof rtt, "%.2f ms", double(i.rtt->count()) / 1000.0);
                b += rtt;
            } else {
                b += "&ndash;";
            }
            b += "</td><td>" +
                 (i.started ? age_text(std::chrono::duration_cast<std::chrono::seconds>(d.now - *i.started))
                            : std::string("&ndash;")) +
                 "</td><td>" +
                 (i.reported ? age_text(std::chrono::duration_cast<std::chrono::seconds>(d.now - *i.reported)) + " ago"
                             : std::string("now")) +
                 "</td><td>" + html_escape(i.version) + "</td></tr>\n";
        }
        b += "</table>\n<p>" + std::to_string(d.instances.size()) + " flock instance(s), <span id=\"cluster-connections\">" +
             std::to_string(all) +
             "</span> connection(s). Each instance rewrites its record every few seconds; one that stopped leaves "
             "the list at once, one that died when its record expires. Reference (Node.js) servers are not "
             "listed.</p>\n";
    }

    b += "<h2>Rooms</h2>";
    b += "<form class=\"inline\" method=\"post\" action=\"/api/admin/close-all\">" + hidden_csrf(d.csrf) +
         "<button type=\"submit\" id=\"close-all\">Close all rooms</button></form>\n";
    if (d.rooms.empty()) {
        b += "<p id=\"no-rooms\">No active rooms.</p>\n";
    } else {
        b += "<table id=\"rooms\"><tr><th>room</th><th>members</th><th>age</th><th></th></tr>\n";
        for (auto const& r : d.rooms) {
            b += "<tr class=\"room\" data-room=\"" + html_escape(r.id) + "\"><td><code class=\"room-id\">" +
                 html_escape(r.id) + "</code></td><td>" + std::to_string(r.members.size()) +
                 "<ul class=\"members\">";
            for (auto const& m : r.members) b += member_item(m);
            b += "</ul></td><td>" +
                 age_text(std::chrono::duration_cast<std::chrono::seconds>(d.now - r.created)) +
                 "</td><td><form class=\"inline\" method=\"post\" action=\"/api/admin/close-room\">" +
                 hidden_csrf(d.csrf) + "<input type=\"hidden\" name=\"roomId\" value=\"" + html_escape(r.id) +
                 "\"><button type=\"submit\" class=\"close-room\">Close room</button></form></td></tr>\n";
        }
        b += "</table>\n";
    }
    b += "<p><small>Closing a room sends each member <code>error INTERNAL_ERROR \"room closed by admin\"</code> "
         "and closes its socket; the browser client reconnects and joins again.</small></p>\n";
    return page("Flock admin", nonce, b, true);
}

}  // namespace flk::detail::admin
