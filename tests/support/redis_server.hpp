// A real redis-server for tests: started on a free 127.0.0.1 port (or a given
// one) in its own temp dir, no persistence, stopped by the destructor. Also a
// synchronous redis-cli helper to look at the server from outside the client
// under test. Loopback and a unix socket in the temp dir only.
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/process.hpp"

namespace guardant::test {

// The absolute path of a program: /usr/bin/<name> when present, else the
// first hit on $PATH (what `command -v` would say), else the bare name.
inline std::string find_program(const std::string& name) {
  std::string usr = "/usr/bin/" + name;
  if (::access(usr.c_str(), X_OK) == 0) return usr;
  if (const char* path = ::getenv("PATH")) {
    std::string p = path;
    for (size_t start = 0; start <= p.size();) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      std::string candidate = p.substr(start, end - start) + "/" + name;
      if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
      start = end + 1;
    }
  }
  return name;
}

// A redis-cli reply without its trailing newline ("1\n" -> "1").
inline std::string chomp(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

struct RedisServerOptions {
  uint16_t port = 0;              // 0: a free port, kept across restart()
  std::vector<std::string> args;  // extra redis-server arguments, e.g. {"--requirepass", "s"}
  bool unix_socket = false;       // also listen on <dir>/redis.sock
  // When tls_cert_file is set the server speaks TLS only: --tls-port P --port 0.
  std::string tls_cert_file, tls_key_file, tls_ca_file;
  bool tls_auth_clients = false;  // --tls-auth-clients yes|no
  // The client certificate redis-cli presents to a TLS server (default: the
  // server's own certificate, which works when it has no extendedKeyUsage).
  std::string cli_cert_file, cli_key_file;
  // Extra redis-cli arguments for cli() and the startup PING, e.g. {"-a", "secret"}
  // or {"--user", "u", "--pass", "p"}.
  std::vector<std::string> cli_args;
};

class RedisServer {
 public:
  explicit RedisServer(RedisServerOptions options = {}) : opt_(std::move(options)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "guardant-redis-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    port_ = opt_.port ? opt_.port : free_port();
    if (opt_.unix_socket) unix_socket_ = dir_ + "/redis.sock";
    start();
  }
  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }
  const std::string& unix_socket() const { return unix_socket_; }  // empty unless asked for
  const std::string& dir() const { return dir_; }
  bool tls() const { return !opt_.tls_cert_file.empty(); }
  bool running() const { return proc_ != nullptr; }
  // The current run's output (redis logs to stdout).
  std::string log() const { return read_file(log_path_) + read_file(log_path_ + ".err"); }

  // Starts the server (again: same port, same arguments) and waits until it
  // answers PING; throws with the server's log when it does not within 10 s.
  void start() {
    if (proc_) return;
    std::vector<std::string> args{"--save",    "",      "--appendonly", "no",          "--bind",
                                  "127.0.0.1", "--dir", dir_,           "--daemonize", "no"};
    if (tls()) {
      args.insert(args.end(),
                  {"--port", "0", "--tls-port", std::to_string(port_), "--tls-cert-file",
                   opt_.tls_cert_file, "--tls-key-file", opt_.tls_key_file, "--tls-auth-clients",
                   opt_.tls_auth_clients ? "yes" : "no"});
      if (!opt_.tls_ca_file.empty())
        args.insert(args.end(), {"--tls-ca-cert-file", opt_.tls_ca_file});
    } else {
      args.insert(args.end(), {"--port", std::to_string(port_)});
    }
    if (!unix_socket_.empty())
      args.insert(args.end(), {"--unixsocket", unix_socket_, "--unixsocketperm", "700"});
    args.insert(args.end(), opt_.args.begin(), opt_.args.end());
    log_path_ = dir_ + "/redis-" + std::to_string(++runs_) + ".log";
    proc_ = std::make_unique<Process>(find_program("redis-server"), args, log_path_,
                                      log_path_ + ".err");
    if (!proc_->started()) {
      proc_.reset();
      throw std::runtime_error("cannot spawn redis-server");
    }
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < end) {
      if (auto code = proc_->wait(std::chrono::milliseconds(1))) {
        proc_.reset();
        throw std::runtime_error("redis-server exited with " + std::to_string(*code) + ":\n" +
                                 log());
      }
      if (cli("PING") == "PONG\n") return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill();
    throw std::runtime_error("redis-server did not answer PING within 10 s:\n" + log());
  }
  // SIGTERM and wait (SIGKILL after 5 s).
  void stop() {
    if (!proc_) return;
    proc_->signal(SIGTERM);
    if (!proc_->wait(std::chrono::seconds(5))) {
      proc_->signal(SIGKILL);
      proc_->wait(std::chrono::seconds(5));
    }
    proc_.reset();
  }
  // SIGKILL and wait: the server vanishes without closing anything gracefully.
  void kill() {
    if (!proc_) return;
    proc_->signal(SIGKILL);
    proc_->wait(std::chrono::seconds(5));
    proc_.reset();
  }
  void restart() {
    stop();
    start();
  }

  // Runs `redis-cli <connection args> args...` and returns its stdout
  // (raw replies, one per line, e.g. "PONG\n"; "" for nil).
  template <class... A>
  std::string cli(const A&... args) {
    return cli_argv(std::vector<std::string>{std::string(args)...});
  }
  std::string cli_argv(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"-h", "127.0.0.1", "-p", std::to_string(port_)};
    if (tls()) {
      argv.push_back("--tls");
      if (!opt_.tls_ca_file.empty()) argv.insert(argv.end(), {"--cacert", opt_.tls_ca_file});
      if (opt_.tls_auth_clients) {
        argv.insert(argv.end(),
                    {"--cert", opt_.cli_cert_file.empty() ? opt_.tls_cert_file : opt_.cli_cert_file,
                     "--key", opt_.cli_key_file.empty() ? opt_.tls_key_file : opt_.cli_key_file});
      }
    }
    argv.insert(argv.end(), opt_.cli_args.begin(), opt_.cli_args.end());
    argv.push_back("--no-auth-warning");
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(find_program("redis-cli"), argv, dir_, std::chrono::seconds(10)).out;
  }

 private:
  RedisServerOptions opt_;
  std::string dir_;
  uint16_t port_ = 0;
  std::string unix_socket_;
  std::string log_path_;
  int runs_ = 0;
  std::unique_ptr<Process> proc_;
};

}  // namespace guardant::test
