// A local Redis Cluster for integration tests: 3 masters and 3 replicas, each
// `redis-server --cluster-enabled yes` on free loopback ports (client and
// bus port both chosen free, --cluster-port) in a temporary directory, joined
// by `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`,
// with a short cluster-node-timeout (1000 ms) so a killed master's replica is
// promoted within seconds. With a certificate directory
// (redis_fixture::make_test_certificates) each node also listens with TLS on
// a port of its own, and the cluster bus and replication use TLS
// (--tls-cluster, --tls-replication), as a managed cluster with in-transit
// encryption does. Torn down (SIGKILL, directory removed) by the destructor.
#pragma once

#include "redis_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cluster_fixture {

using redis_fixture::sync_client;
using redis_fixture::sync_reply;

class local_cluster {
public:
    struct node {
        int port = 0, bus_port = 0;
        int tls_port = 0;  ///< 0 unless started with certificates
        pid_t pid = -1;
    };

    /// Starts the cluster and waits until every node says cluster_state:ok and
    /// every replica is in sync; throws with the reason when it cannot.
    static std::unique_ptr<local_cluster> start(int masters = 3, int replicas = 1,
                                                std::filesystem::path certificates = {}) {
        auto c = std::unique_ptr<local_cluster>(new local_cluster());
        c->certificates_ = std::move(certificates);
        std::string tmpl = (std::filesystem::temp_directory_path() / "flock-cluster-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        c->dir_ = tmpl;
        for (int i = 0; i < masters * (1 + replicas); ++i) {
            node n;
            n.port = redis_fixture::free_port();
            do n.bus_port = redis_fixture::free_port();
            while (n.bus_port == n.port);
            if (!c->certificates_.empty()) {
                do n.tls_port = redis_fixture::free_port();
                while (n.tls_port == n.port || n.tls_port == n.bus_port);
            }
            c->nodes_.push_back(n);
            c->spawn(c->nodes_.back());
        }
        for (auto const& n : c->nodes_) c->wait_ping(n);
        std::vector<std::string> args{"redis-cli", "--cluster", "create"};
        for (auto const& n : c->nodes_) args.push_back("127.0.0.1:" + std::to_string(n.port));
        args.insert(args.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
        int rc = c->run(args, c->dir_ + "/create.log");
        if (rc != 0) throw std::runtime_error("redis-cli --cluster create failed (exit " + std::to_string(rc) + ")");
        if (!c->wait_ok(std::chrono::seconds(20))) throw std::runtime_error("the cluster did not reach cluster_state:ok");
        return c;
    }

    ~local_cluster() {
        for (auto& n : nodes_) kill(n.port);
        std::error_code ignored;
        if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
    }

    std::vector<node> const& nodes() const { return nodes_; }
    std::string seed_url() const { return "redis://127.0.0.1:" + std::to_string(nodes_.front().port); }
    /// The first node's TLS port, by name (the certificate is for localhost).
    std::string tls_seed_url() const { return "rediss://localhost:" + std::to_string(nodes_.front().tls_port); }
    sync_client client(int port) const { return sync_client("127.0.0.1", port); }

    bool alive(int port) const {
        for (auto const& n : nodes_)
            if (n.port == port) return n.pid > 0;
        return false;
    }

    /// SIGKILL, as a crash would.
    void kill(int port) {
        for (auto& n : nodes_)
            if (n.port == port && n.pid > 0) {
                ::kill(n.pid, SIGKILL);
                int status = 0;
                ::waitpid(n.pid, &status, 0);
                n.pid = -1;
            }
    }

    std::string node_id(int port) const { return client(port).command({"CLUSTER", "MYID"}).str; }

    /// The port of the master serving `slot`, as a live node sees it.
    int master_port(int slot) const {
        for (auto const& n : nodes_) {
            if (n.pid <= 0) continue;
            auto r = client(n.port).command({"CLUSTER", "SLOTS"});
            for (auto const& range : r.elements)
                if (range.elements.size() >= 3 && range.elements[0].integer <= slot &&
                    slot <= range.elements[1].integer)
                    return static_cast<int>(range.elements[2].elements.at(1).integer);
            return -1;
        }
        return -1;
    }

    /// The ports of the masters serving slots, as a live node sees it.
    std::vector<int> master_ports() const {
        std::vector<int> out;
        for (auto const& n : nodes_) {
            if (n.pid <= 0) continue;
            for (auto const& range : client(n.port).command({"CLUSTER", "SLOTS"}).elements) {
                int p = static_cast<int>(range.elements.at(2).elements.at(1).integer);
                if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
            }
            break;
        }
        return out;
    }

    std::string role(int port) const {
        auto r = client(port).command({"ROLE"});
        return r.elements.empty() ? std::string() : r.elements[0].str;
    }

    /// Polls the live nodes (external processes, not the code under test)
    /// until all say cluster_state:ok with every slot served, and every
    /// replica's link to its master is up.
    bool wait_ok(std::chrono::milliseconds timeout) const {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (all_ok()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }

private:
    local_cluster() = default;

    bool all_ok() const {
        try {
            for (auto const& n : nodes_) {
                if (n.pid <= 0) continue;
                auto c = client(n.port);
                auto info = c.command({"CLUSTER", "INFO"}).str;
                if (info.find("cluster_state:ok") == std::string::npos ||
                    info.find("cluster_slots_ok:16384") == std::string::npos)
                    return false;
                auto repl = c.command({"INFO", "replication"}).str;
                if (repl.find("role:slave") != std::string::npos &&
                    repl.find("master_link_status:up") == std::string::npos)
                    return false;
            }
            return true;
        } catch (std::exception const&) {
            return false;
        }
    }

    void spawn(node& n) {
        auto p = std::to_string(n.port);
        std::vector<std::string> args{"redis-server", "--port", p, "--cluster-port", std::to_string(n.bus_port),
                                      "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                                      "--cluster-config-file", "nodes-" + p + ".conf",
                                      "--cluster-node-timeout", "1000", "--appendonly", "no", "--save", "",
                                      "--dir", dir_, "--notify-keyspace-events", "Ex",
                                      "--loglevel", "warning", "--logfile", dir_ + "/" + p + ".log"};
        if (!certificates_.empty()) {
            auto const file = [&](char const* name) { return (certificates_ / name).string(); };
            args.insert(args.end(), {"--tls-port", std::to_string(n.tls_port), "--tls-cluster", "yes",
                                     "--tls-replication", "yes", "--tls-cert-file", file("server.crt"),
                                     "--tls-key-file", file("server.key"), "--tls-ca-cert-file", file("ca.crt"),
                                     "--tls-auth-clients", "no"});
        }
        n.pid = spawn_process(args, "/dev/null");
    }

    void wait_ping(node const& n) const {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            try {
                if (client(n.port).command({"PING"}).str == "PONG") return;
            } catch (std::exception const&) {
            }
            int status = 0;
            if (::waitpid(n.pid, &status, WNOHANG) == n.pid)
                throw std::runtime_error("redis-server exited at start (port " + std::to_string(n.port) + ")");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        throw std::runtime_error("redis-server did not start in 10 s");
    }

    static pid_t spawn_process(std::vector<std::string> args, std::string const& out) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        pid_t pid = -1;
        int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) throw std::runtime_error(std::string("cannot run ") + argv[0] + " (is it installed?)");
        return pid;
    }

    int run(std::vector<std::string> args, std::string const& out) {
        pid_t pid = spawn_process(std::move(args), out);
        int status = 0;
        ::waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    std::string dir_;
    std::filesystem::path certificates_;
    std::vector<node> nodes_;
};

/// A cluster started on first use and kept for the rest of the run, one per
/// `Tag` (a file whose last test kills a master has its own); null when it
/// cannot start (then the test fails under FLOCK_TEST_STRICT, or is skipped).
template <class Tag>
local_cluster* shared_cluster(std::string_view test) {
    static std::unique_ptr<local_cluster> c;
    static std::string error;
    if (!c && error.empty()) {
        try {
            c = local_cluster::start();
        } catch (std::exception const& e) {
            error = e.what();
        }
    }
    if (!c) flk_test::prerequisite(false, test, "cannot start a local Redis Cluster: " + error);
    return c.get();
}

}  // namespace cluster_fixture
