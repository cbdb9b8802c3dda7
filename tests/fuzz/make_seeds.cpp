// Writes the seed corpora of the fuzz targets into <dir>/<target>/ (the
// committed tests/fuzz/corpus/). Each seed is built with flock's own encoders
// where flock has one, so the seeds follow the code:
//     cmake --build build/fuzz --target flock-fuzz-seeds
//     build/fuzz/tests/fuzz/flock-fuzz-seeds tests/fuzz/corpus
#include <flock/codec/binary.hpp>
#include <flock/codec/json.hpp>
#include <flock/detail/redis/resp.hpp>
#include <flock/detail/ws_frame.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using namespace flk;
using detail::ws_opcode;

namespace {

fs::path root;

void write(std::string_view target, std::string_view name, std::string_view bytes) {
    auto const dir = root / target;
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// ------------------------------------------------------------- ws-reader

/// A masked client frame, length in its shortest form.
std::string client_frame(ws_opcode op, std::string_view payload, bool fin = true) {
    static constexpr unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    std::string f;
    f += static_cast<char>((fin ? 0x80 : 0) | static_cast<int>(op));
    std::uint64_t const n = payload.size();
    int const len_bytes = n < 126 ? 0 : n <= 0xFFFF ? 2 : 8;
    if (len_bytes == 0) f += static_cast<char>(0x80 | n);
    else f += static_cast<char>(0x80 | (len_bytes == 2 ? 126 : 127));
    for (int i = len_bytes - 1; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xFF);
    f.append(reinterpret_cast<char const*>(mask), 4);
    for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
    return f;
}

/// The ws-reader input: limit byte, cut count and cuts, then the stream.
std::string ws_input(std::uint8_t limit, std::vector<std::uint8_t> cuts, std::string const& stream) {
    std::string s;
    s += static_cast<char>(limit);
    s += static_cast<char>(cuts.size());
    for (auto c : cuts) s += static_cast<char>(c);
    return s + stream;
}

void ws_reader_seeds() {
    constexpr std::uint8_t big = 0x80;  // 1 MiB limit
    std::string const move = R"({"type":"cursor:move","roomId":"r","position":{"x":0.5,"y":0.25}})";
    write("ws-reader", "text", ws_input(big, {}, client_frame(ws_opcode::text, move)));
    write("ws-reader", "binary", ws_input(big, {}, client_frame(ws_opcode::binary, std::string("\x03\x01r", 3) + std::string(16, '\0'))));
    write("ws-reader", "ping-pong", ws_input(big, {}, client_frame(ws_opcode::ping, "hi") + client_frame(ws_opcode::pong, "")));
    write("ws-reader", "close-1000", ws_input(big, {}, client_frame(ws_opcode::close, std::string("\x03\xe8" "bye", 5))));
    write("ws-reader", "close-empty", ws_input(big, {}, client_frame(ws_opcode::close, "")));
    write("ws-reader", "fragmented-with-ping",
          ws_input(big, {40, 90, 200},
                   client_frame(ws_opcode::text, "{\"type\":", false) + client_frame(ws_opcode::ping, "p") +
                       client_frame(ws_opcode::continuation, "\"heartbeat\",", false) +
                       client_frame(ws_opcode::continuation, "\"roomId\":\"r\"}", true)));
    write("ws-reader", "len126", ws_input(big, {128}, client_frame(ws_opcode::binary, std::string(300, 'x'))));
    write("ws-reader", "len127", ws_input(big, {3, 250}, client_frame(ws_opcode::binary, std::string(70000, 'y'))));
    write("ws-reader", "too-big", ws_input(4, {}, client_frame(ws_opcode::text, std::string(40, 'z'))));
    write("ws-reader", "many-frames-cut",
          ws_input(big, {1, 2, 30, 31, 100, 101, 254},
                   client_frame(ws_opcode::text, move) + client_frame(ws_opcode::text, move) +
                       client_frame(ws_opcode::binary, "b") + client_frame(ws_opcode::text, "t", false) +
                       client_frame(ws_opcode::continuation, "u") + client_frame(ws_opcode::close, "\x03\xe9")));
    write("ws-reader", "utf8-text", ws_input(big, {128}, client_frame(ws_opcode::text, "caf\xc3\xa9 \xf0\x9f\x90\xa6")));
    write("ws-reader", "bad-utf8-fragmented",
          ws_input(big, {}, client_frame(ws_opcode::text, "ab\xe2\x82", false) + client_frame(ws_opcode::continuation, "\xac")));
}

// ---------------------------------------------------------- http-upgrade

void http_seeds() {
    std::string const upgrade =
        "GET /?apiKey=k%20ey&room=r HTTP/1.1\r\n"
        "Host: localhost:8787\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n";
    std::string const browser =
        "GET /ws?apiKey=abc HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Pragma: no-cache\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n"
        "Upgrade: websocket\r\n"
        "Origin: https://example.com\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "\r\n";
    std::string const binary =
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: chat, flock.binary.v2\r\nSec-WebSocket-Protocol:\t x , ,y\r\n\r\n";
    std::string const v8 =
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    std::string const health = "GET /health HTTP/1.1\r\nHost: h\r\n\r\n";
    std::string const post =
        "POST /health?x=1#frag HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    std::string const chunked =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    std::string const http10 = "GET /?apiKey HTTP/1.0\r\n\r\n";
    // byte 0: read size (0 = all at once)
    write("http-upgrade", "upgrade", '\0' + upgrade);
    write("http-upgrade", "upgrade-7-byte-reads", '\x07' + upgrade);
    write("http-upgrade", "browser", '\0' + browser);
    write("http-upgrade", "subprotocols", '\x01' + binary);
    write("http-upgrade", "version-8", '\0' + v8);
    write("http-upgrade", "health", '\0' + health);
    write("http-upgrade", "post-body", '\x10' + post);
    write("http-upgrade", "chunked", '\x03' + chunked);
    write("http-upgrade", "http10", '\0' + http10);
}

// -------------------------------------------------------- json/binary

std::vector<client_message> client_messages() {
    metadata meta = boost::json::parse(R"({"name":"Ada","color":"#ff8800","status":"online","n":[1,2.5,-3,true,null],"o":{"k":"\u00e9"}})").as_object();
    return {
        client::join{"room-1", "user-1", meta, std::nullopt},
        client::join{"room-1", "user-2", {}, std::string("secret-key")},
        client::heartbeat{"room-1"},
        client::cursor_move{"room-1", {0.5, 0.25}},
        client::cursor_move{"r", {-1e300, 12345}},
        client::cursor_leave{"room-1"},
        client::presence_update{"room-1", meta},
        client::leave{"room-1"},
    };
}

std::vector<server_message> server_messages(bool handles) {
    metadata meta = boost::json::parse(R"({"name":"Ada","color":"#ff8800"})").as_object();
    handle const rh = handles ? 7 : 0, uh = handles ? 3 : 0;
    server::join_ack ack{"room-1", {}, rh};
    ack.users.push_back({"user-1", meta, position{0.1, 0.2}, uh});
    ack.users.push_back({"user-2", {}, std::nullopt, handles ? handle{4} : handle{0}});
    return {
        ack,
        server::user_joined{"room-1", "user-5", meta, rh, handles ? handle{5} : handle{0}},
        server::user_left{"room-1", "user-2", rh, handles ? handle{4} : handle{0}},
        server::cursor_updated{"room-1", "user-1", {0.75, 0.5}, 1700000000000, rh, uh},
        server::cursor_removed{"room-1", "user-1", rh, uh},
        server::presence_updated{"room-1", "user-1", meta, rh, uh},
        server::heartbeat_ack{},
        server::error{error_code::room_full, "room is full", std::string("room-1")},
        server::error{error_code::rate_limited, "slow down", std::nullopt},
    };
}

std::string kind_name(client_message const& m) {
    static constexpr char const* names[] = {"join", "heartbeat", "cursor-move", "cursor-leave", "presence-update", "leave"};
    return names[m.index()];
}
std::string kind_name(server_message const& m) {
    static constexpr char const* names[] = {"join-ack", "user-joined", "user-left", "cursor-updated",
                                            "cursor-removed", "presence-updated", "heartbeat-ack", "error"};
    return names[m.index()];
}

std::string client_json(client_message const& msg);  // below

void codec_seeds() {
    json_codec const json;
    binary_codec const binary;
    int i = 0;
    for (auto const& m : client_messages()) {
        auto const n = std::to_string(i++) + "-client-" + kind_name(m);
        write("json-codec", n, client_json(m));
        write("binary-codec", n, binary.encode_client(m));
    }
    i = 0;
    for (bool handles : {false, true}) {
        for (auto const& m : server_messages(handles)) {
            auto const n = std::to_string(i++) + "-server-" + kind_name(m) + (handles ? "-by-handle" : "");
            if (!handles) write("json-codec", n, json.encode(m));
            write("binary-codec", n, binary.encode(m));
        }
    }
    // A binary_session conversation: [length][frame] records.
    std::string session;
    for (auto const& m : server_messages(true)) {
        auto const f = binary.encode(m);
        if (f.size() > 255) continue;
        session += static_cast<char>(f.size());
        session += f;
    }
    write("binary-codec", "session-conversation", session);
    write("json-codec", "unknown-type", R"({"type":"dance","roomId":"r"})");
    write("json-codec", "wrong-field", R"({"type":"cursor:move","roomId":"r","position":{"x":"a","y":1}})");
}

std::string client_json(client_message const& msg) {
    // The spelling of tests/messages.hpp, as a browser client writes it.
    return std::visit(
        [](auto const& m) -> std::string {
            using M = std::decay_t<decltype(m)>;
            auto const room = R"("roomId":")" + m.room_id + "\"";
            if constexpr (std::is_same_v<M, client::join>)
                return R"({"type":"join",)" + room + R"(,"userId":")" + m.user_id + R"(","metadata":)" +
                       boost::json::serialize(m.meta) + (m.api_key ? R"(,"apiKey":")" + *m.api_key + "\"" : "") + "}";
            else if constexpr (std::is_same_v<M, client::heartbeat>) return R"({"type":"heartbeat",)" + room + "}";
            else if constexpr (std::is_same_v<M, client::cursor_move>)
                return R"({"type":"cursor:move",)" + room + R"(,"position":{"x":)" +
                       boost::json::serialize(boost::json::value(m.pos.x)) + R"(,"y":)" +
                       boost::json::serialize(boost::json::value(m.pos.y)) + "}}";
            else if constexpr (std::is_same_v<M, client::cursor_leave>) return R"({"type":"cursor:leave",)" + room + "}";
            else if constexpr (std::is_same_v<M, client::presence_update>)
                return R"({"type":"presence:update",)" + room + R"(,"metadata":)" + boost::json::serialize(m.patch) + "}";
            else return R"({"type":"leave",)" + room + "}";
        },
        msg);
}

// ----------------------------------------------------------- resp-reader

void resp_seeds() {
    // byte 0: chunk size (0 = all at once)
    auto w = [](std::string_view name, char step, std::string const& s) { write("resp-reader", name, step + s); };
    w("status", '\0', "+OK\r\n");
    w("error", '\0', "-NOSCRIPT No matching script. Please use EVAL.\r\n");
    w("integer", '\x01', ":1700000000000\r\n:-1\r\n");
    w("bulk", '\x02', "$5\r\nhello\r\n$0\r\n\r\n");
    w("nil", '\0', "$-1\r\n*-1\r\n");
    w("array", '\x03', "*3\r\n$7\r\nmessage\r\n$11\r\nflock:r:ch1\r\n$13\r\n{\"type\":\"x\"}\r\n");
    w("nested", '\x05', "*2\r\n*2\r\n:1\r\n*1\r\n$1\r\na\r\n*0\r\n");
    w("deep", '\0', "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n");
    w("pipeline", '\x04', "+OK\r\n:3\r\n$-1\r\n-ERR wrong\r\n*2\r\n$3\r\nsub\r\n:1\r\n");
    w("bad-type", '\0', "?what\r\n");
    // Commands as flock formats them (what a Redis replying with its input would send).
    std::string_view const args[] = {"EVALSHA", "abc", "1", "flock:room:r", "u\r\n"};
    w("formatted-command", '\x06', detail::redis::format_command(args));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: flock-fuzz-seeds <corpus dir>\n";
        return 2;
    }
    root = argv[1];
    ws_reader_seeds();
    http_seeds();
    codec_seeds();
    resp_seeds();
    std::cout << "seeds written under " << root << "\n";
}
