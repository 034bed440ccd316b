// guardant-probe-bench: throughput, CPU and memory of probe checks run through
// the real engine path (PluginRegistry + CheckRunner + HostRuntime on one
// io_context driven by AsioClock), exactly as guardant-worker wires them.
//
// Modes
//   throughput (default)  N checks of one type/target/config, keeping C in
//       flight until N are done. Reports checks/s, CPU seconds per 1,000
//       checks (getrusage RUSAGE_SELF, user + sys, over the measured run),
//       peak RSS (VmHWM), status and failure-reason counts, latency p50/p99.
//   --hold N  starts N checks at once against a target that never answers
//       (a holding server this program forks, or the target as given) and
//       reports RSS growth per in-flight check.
//   --serve KIND  only runs a holding server (for driving blackbox_exporter
//       into the same situation from bench/run.sh).
//
// Holding servers (127.0.0.1, free port, separate process so that their
// memory and CPU never count as ours):
//   http-hold  accepts every connection, reads the request, never answers.
//   backlog    listens with backlog 0 and never accepts: once the accept
//              queue is full, SYNs are dropped and connects stay in progress
//              (tcp checks are connect-only, so this is what holds them).
// A "{port}" in --target is replaced by the server's port.
//
// Output: one JSON object on stdout. Logs (warnings from the engine) go to
// stderr. Loopback only: the program connects to nothing but --target.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/asio_clock.hpp"
#include "core/logging.hpp"
#include "plugins/host_runtime.hpp"
#include "plugins/plugin_registry.hpp"
#include "results/check_record.hpp"
#include "results/json_text.hpp"
#include "scheduler/check_runner.hpp"

#ifndef GUARDANT_BENCH_PLUGIN_DIR
#define GUARDANT_BENCH_PLUGIN_DIR "plugins"
#endif

namespace ge = guardant::engine;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------- options

struct Options {
  std::string type;
  std::string target;
  std::string config_json = "{}";
  std::vector<std::string> plugin_dirs;
  uint64_t n = 10'000;
  size_t concurrency = 100;
  uint64_t warmup = 0;
  int64_t timeout_ms = 10'000;
  bool records = true;
  double max_seconds = 300;
  std::string label;
  // hold mode
  uint64_t hold = 0;
  std::string hold_server = "auto";  // auto | http-hold | backlog | none
  double settle_seconds = 20;
  // serve mode
  std::string serve;
  int port = 0;
};

[[noreturn]] void usage(int code) {
  (code ? std::cerr : std::cout) << R"(usage:
  guardant-probe-bench --type T --target X [options]            throughput
  guardant-probe-bench --type T --target X --hold N [options]   memory per in-flight check
  guardant-probe-bench --serve http-hold|backlog [--port P] [--max-seconds S]

options:
  --type T            probe type (tcp, web, ping, ...)
  --target X          check target; "{port}" is replaced by the holding server's port
  --config-json J     probe options as JSON (default {})
  --plugin-dir D      plugin directory, repeatable (default: the build's plugins dir)
  -n, --checks N      checks to run (default 10000)
  -c, --concurrency C checks kept in flight (default 100)
  --warmup N          checks run (and not measured) before the measurement (default 0)
  --timeout-ms MS     host deadline per check (default 10000; 120000 in --hold)
  --no-records        do not build the JSON result record of each check
  --max-seconds S     give up after S seconds (default 300)
  --label L           copied into the output
  --hold N            start N checks at once against a target that never answers
  --hold-server K     auto (web: http-hold, tcp: backlog, else none) | http-hold | backlog | none
  --settle-seconds S  how long to wait for N checks to be in flight (default 20)
)";
  std::exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  bool timeout_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "missing value for " << a << "\n";
        usage(2);
      }
      return argv[++i];
    };
    auto num = [&](const std::string& s) -> double {
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end || v < 0) {
        std::cerr << a << ": expected a non-negative number, got '" << s << "'\n";
        usage(2);
      }
      return v;
    };
    if (a == "--type")
      o.type = next();
    else if (a == "--target")
      o.target = next();
    else if (a == "--config-json")
      o.config_json = next();
    else if (a == "--plugin-dir")
      o.plugin_dirs.push_back(next());
    else if (a == "-n" || a == "--checks")
      o.n = static_cast<uint64_t>(num(next()));
    else if (a == "-c" || a == "--concurrency")
      o.concurrency = static_cast<size_t>(num(next()));
    else if (a == "--warmup")
      o.warmup = static_cast<uint64_t>(num(next()));
    else if (a == "--timeout-ms") {
      o.timeout_ms = static_cast<int64_t>(num(next()));
      timeout_set = true;
    } else if (a == "--no-records")
      o.records = false;
    else if (a == "--max-seconds")
      o.max_seconds = num(next());
    else if (a == "--label")
      o.label = next();
    else if (a == "--hold")
      o.hold = static_cast<uint64_t>(num(next()));
    else if (a == "--hold-server")
      o.hold_server = next();
    else if (a == "--settle-seconds")
      o.settle_seconds = num(next());
    else if (a == "--serve")
      o.serve = next();
    else if (a == "--port")
      o.port = static_cast<int>(num(next()));
    else if (a == "-h" || a == "--help")
      usage(0);
    else {
      std::cerr << "unknown argument: " << a << "\n";
      usage(2);
    }
  }
  if (!o.serve.empty()) {
    if (o.serve != "http-hold" && o.serve != "backlog") usage(2);
    return o;
  }
  if (o.type.empty() || o.target.empty()) usage(2);
  if (o.concurrency == 0) o.concurrency = 1;
  if (o.hold && !timeout_set) o.timeout_ms = 120'000;
  if (o.hold_server == "auto")
    o.hold_server = o.type == "web" ? "http-hold" : o.type == "tcp" ? "backlog" : "none";
  if (o.hold_server != "http-hold" && o.hold_server != "backlog" && o.hold_server != "none")
    usage(2);
  if (o.plugin_dirs.empty()) o.plugin_dirs.push_back(GUARDANT_BENCH_PLUGIN_DIR);
  return o;
}

// ---------------------------------------------------------------- process

long status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':')
      return std::strtol(line.c_str() + klen + 1, nullptr, 10);
  return -1;
}

// Bytes the process has allocated with malloc and not freed (all arenas).
// Beside RSS it tells allocations apart from page effects.
long heap_in_use() {
  auto mi = mallinfo2();
  return static_cast<long>(mi.uordblks + mi.hblkhd);
}

size_t open_fds() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (auto* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (ch < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", ch);
          o += b;
        } else {
          o += static_cast<char>(ch);
        }
    }
  }
  return o + "\"";
}

std::string num(double v, int prec = 3) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

std::string json_counts(const std::map<std::string, uint64_t>& m) {
  std::string s = "{";
  for (auto& [k, v] : m) {
    if (s.size() > 1) s += ',';
    s += json_str(k);
    s += ':';
    s += std::to_string(v);
  }
  s += '}';
  return s;
}

// ---------------------------------------------------------------- latency

// Log-bucketed histogram (1% wide buckets, 0.1 µs .. ~1000 s): constant
// memory whatever N is, so it does not inflate the RSS being measured.
class Histogram {
 public:
  void add(double ms) {
    ++count_;
    sum_ += ms;
    if (ms > max_) max_ = ms;
    double us = std::max(ms * 1000.0, kMinUs);
    auto i = static_cast<size_t>(std::log(us / kMinUs) / std::log(kRatio));
    if (i >= buckets_.size()) i = buckets_.size() - 1;
    ++buckets_[i];
  }
  double percentile(double p) const {
    if (!count_) return NAN;
    auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen >= rank)  // geometric middle of the bucket, in ms
        return std::min(kMinUs * std::pow(kRatio, static_cast<double>(i) + 0.5) / 1000.0, max_);
    }
    return max_;
  }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : NAN; }
  double max() const { return count_ ? max_ : NAN; }

 private:
  static constexpr double kMinUs = 0.1;
  static constexpr double kRatio = 1.01;
  std::vector<uint64_t> buckets_ = std::vector<uint64_t>(2600, 0);
  uint64_t count_ = 0;
  double sum_ = 0, max_ = 0;
};

// ---------------------------------------------------------------- holding server

struct ServerCounters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> requests{0};  // http-hold: request headers fully read
  std::atomic<uint64_t> open{0};
};

int listen_loopback(int port, int backlog) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(fd, backlog) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

volatile sig_atomic_t g_stop = 0;
void on_stop_signal(int) {
  g_stop = 1;
}

// Runs until g_stop or `max_seconds`. Never answers anything.
void serve_loop(int lfd, const std::string& kind, ServerCounters& c, double max_seconds) {
  const auto until = Clock::now() + std::chrono::duration<double>(max_seconds);
  if (kind == "backlog") {
    while (!g_stop && Clock::now() < until) usleep(100'000);
    return;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  fcntl(lfd, F_SETFL, O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  // Per connection: the last 4 bytes seen (to find the end of the request
  // headers) and whether it was counted.
  std::vector<uint32_t> tail;
  std::vector<char> counted;
  std::vector<epoll_event> events(256);
  char buf[4096];
  while (!g_stop && Clock::now() < until) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          c.accepted.fetch_add(1);
          c.open.fetch_add(1);
          if (static_cast<size_t>(cfd) >= tail.size()) {
            tail.resize(static_cast<size_t>(cfd) * 2 + 64, 0);
            counted.resize(tail.size(), 0);
          }
          tail[static_cast<size_t>(cfd)] = 0;
          counted[static_cast<size_t>(cfd)] = 0;
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP;
          cev.data.fd = cfd;
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      auto idx = static_cast<size_t>(fd);
      ssize_t r;
      bool closed = false;
      while ((r = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t k = 0; k < r; ++k) {
          tail[idx] = (tail[idx] << 8) | static_cast<unsigned char>(buf[k]);
          if (tail[idx] == 0x0d0a0d0a && !counted[idx]) {
            counted[idx] = 1;
            c.requests.fetch_add(1);
          }
        }
      }
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
      if (closed) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        c.open.fetch_sub(1);
      }
    }
  }
  close(ep);
}

// --serve: a holding server on its own, for bench/run.sh.
int serve_main(const Options& o) {
  raise_fd_limit();
  int lfd = listen_loopback(o.port, o.serve == "backlog" ? 0 : 4096);
  if (lfd < 0) {
    std::cerr << "cannot listen on 127.0.0.1:" << o.port << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  signal(SIGTERM, on_stop_signal);
  signal(SIGINT, on_stop_signal);
  std::cout << "{\"port\":" << bound_port(lfd) << "}" << std::endl;
  ServerCounters c;
  serve_loop(lfd, o.serve, c, o.max_seconds);
  std::cout << "{\"accepted\":" << c.accepted << ",\"requests\":" << c.requests
            << ",\"open\":" << c.open << "}" << std::endl;
  return 0;
}

// Forks the holding server; its counters live in shared memory.
struct ForkedServer {
  pid_t pid = -1;
  int port = 0;
  ServerCounters* counters = nullptr;

  bool start(const std::string& kind, double max_seconds) {
    void* mem = mmap(nullptr, sizeof(ServerCounters), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return false;
    counters = new (mem) ServerCounters();
    int lfd = listen_loopback(0, kind == "backlog" ? 0 : 4096);
    if (lfd < 0) return false;
    port = bound_port(lfd);
    pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      signal(SIGTERM, on_stop_signal);
      serve_loop(lfd, kind, *counters, max_seconds);
      _exit(0);
    }
    close(lfd);  // the child holds it
    return true;
  }
  void stop() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~ForkedServer() { stop(); }
};

// ---------------------------------------------------------------- the engine

// The same wiring as guardant-worker's EngineCore (engine/worker/worker_app.cpp).
struct Engine {
  boost::asio::io_context io;
  ge::AsioClock clock{io};
  ge::HostRuntime host{io, clock};
  ge::PluginRegistry registry{host};
  uint64_t late = 0, duplicate = 0;

  Engine() {
    host.on_late_completion = [this](const std::string&) { ++late; };
    host.on_duplicate_completion = [this](const std::string&) { ++duplicate; };
  }
  ~Engine() {
    io.restart();
    io.poll();
  }
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {}

  int run() {
    raise_fd_limit();
    ge::configure_logging("warn");
    if (o_.hold && o_.hold_server != "none") {
      if (!server_.start(o_.hold_server, o_.max_seconds + 30)) {
        std::cerr << "cannot start the holding server: " << std::strerror(errno) << "\n";
        return 2;
      }
    }
    target_ = o_.target;
    if (auto p = target_.find("{port}"); p != std::string::npos)
      target_.replace(p, 6, std::to_string(server_.port));

    auto engine = std::make_unique<Engine>();
    e_ = engine.get();
    e_->registry.load_dirs(o_.plugin_dirs);
    if (!e_->registry.has_type(o_.type)) {
      std::cerr << "no loaded plugin provides probe type '" << o_.type << "' (dirs:";
      for (auto& d : o_.plugin_dirs) std::cerr << " " << d;
      std::cerr << "; types:";
      for (auto& t : e_->registry.type_names()) std::cerr << " " << t;
      std::cerr << ")\n";
      for (auto& r : e_->registry.refusals())
        std::cerr << "  refused " << r.path << ": " << r.reason << "\n";
      return 2;
    }
    if (auto p = e_->registry.plugin_for(o_.type)) {
      plugin_ = p->name + " " + p->version;
      record_ctx_.plugin_name = p->name;
      record_ctx_.plugin_version = p->version;
    }
    record_ctx_.probe_type = o_.type;
    record_ctx_.worker_id = "bench";
    record_ctx_.region = "local";
    e_->host.set_loop_thread(std::this_thread::get_id());

    const size_t slots = o_.hold ? o_.hold : o_.concurrency;
    runner_ = std::make_unique<ge::CheckRunner>(e_->registry, e_->clock, slots);
    guard_timer_ = e_->clock.call_after(
        std::chrono::duration_cast<ge::Nanos>(std::chrono::duration<double>(o_.max_seconds)),
        [this] {
          guard_timer_ = 0;
          aborted_ = true;
          stop_all();
        });

    rss_loaded_kib_ = status_kib("VmRSS");
    if (o_.hold)
      start_hold();
    else
      start_throughput();
    e_->io.run();
    if (guard_timer_) e_->clock.cancel(guard_timer_);
    runner_.reset();
    late_ = e_->late;
    engine.reset();
    server_.stop();
    print();
    return aborted_ ? 1 : 0;
  }

 private:
  // ------------------------------------------------------------ throughput
  void start_throughput() {
    if (o_.warmup) {
      phase_total_ = o_.warmup;
      on_phase_done_ = [this] { begin_measured(); };
      refill();
    } else {
      begin_measured();
    }
  }

  void begin_measured() {
    submitted_ = completed_ = 0;
    phase_total_ = o_.n;
    measuring_ = true;
    cpu0_ = cpu_seconds();
    t0_ = Clock::now();
    on_phase_done_ = [this] {
      t1_ = Clock::now();
      cpu1_ = cpu_seconds();
      measuring_ = false;
      stop_all();
    };
    if (o_.n == 0) return on_phase_done_();
    refill();
  }

  // Keeps `concurrency` checks in flight until the phase has submitted all.
  void refill() {
    if (refilling_) return;  // a check refused at start reports synchronously
    refilling_ = true;
    while (!stopping_ && submitted_ < phase_total_ && runner_->in_flight() < o_.concurrency)
      submit_one();
    refilling_ = false;
  }

  void submit_one() {
    ge::CheckJob job;
    job.check_id = "bench:" + std::to_string(++seq_);
    job.type = o_.type;
    job.target = target_;
    job.config_json = o_.config_json;
    job.timeout = std::chrono::milliseconds(o_.timeout_ms);
    ++submitted_;
    runner_->submit(std::move(job), [this](ge::CheckReport r) { on_report(std::move(r)); });
  }

  void on_report(ge::CheckReport r) {
    ++completed_;
    if (measuring_ || o_.hold) account(r);
    if (stopping_) return;
    if (!o_.hold) {
      if (completed_ >= phase_total_) {
        if (on_phase_done_) {
          auto f = std::move(on_phase_done_);
          on_phase_done_ = nullptr;
          f();
        }
        return;
      }
      // Deferred while inside submit() (synchronous refusal) — the loop in
      // refill() picks it up.
      refill();
    }
  }

  void account(const ge::CheckReport& r) {
    ++measured_;
    std::string status = r.refused ? "refused" : std::string(ge::to_string(r.result.status));
    ++status_[status];
    if (r.timed_out) ++timed_out_;
    if (r.result.failure) ++reasons_[r.result.failure->reason];
    latency_.add(r.duration_ms());
    if (o_.records && !r.refused) {
      record_ctx_.service_id = r.job.check_id;
      record_ctx_.checked_at_ms = r.finished_wall_ms;
      record_bytes_ += ge::to_json_text(ge::make_check_record(r.result, record_ctx_)).size();
    }
    if (example_.empty() && !r.result.message.empty()) example_ = r.result.message;
  }

  // ------------------------------------------------------------ hold
  // Baseline (engine up, plugins loaded), then 1% of N in flight, then all N.
  void start_hold() {
    base_fds_ = open_fds();
    // Let the loop run once so lazy plugin state settles before the baseline.
    e_->clock.call_after(std::chrono::milliseconds(50), [this] {
      rss_baseline_kib_ = status_kib("VmRSS");
      heap_baseline_ = heap_in_use();
      first_k_ = std::max<uint64_t>(1, o_.hold / 100);
      hold_stage(first_k_, [this] {
        rss_k_kib_ = status_kib("VmRSS");
        heap_k_ = heap_in_use();
        inflight_k_ = runner_->in_flight();
        hold_stage(o_.hold, [this] {
          rss_n_kib_ = status_kib("VmRSS");
          heap_n_ = heap_in_use();
          inflight_n_ = runner_->in_flight();
          hwm_at_hold_kib_ = status_kib("VmHWM");
          server_requests_ = server_.counters ? server_.counters->requests.load() : 0;
          server_accepted_ = server_.counters ? server_.counters->accepted.load() : 0;
          fds_at_hold_ = open_fds() - base_fds_;
          stop_all();
        });
      });
    });
  }

  // Submits up to `total` checks and waits until they are in flight (the
  // server saw them, or their sockets exist) and RSS is stable.
  void hold_stage(uint64_t total, std::function<void()> then) {
    while (submitted_ < total) submit_one();
    stage_start_ = Clock::now();
    stable_samples_ = 0;
    last_rss_ = -1;
    stage_then_ = std::move(then);
    stage_total_ = total;
    sample_hold();
  }

  void sample_hold() {
    e_->clock.call_after(std::chrono::milliseconds(100), [this] {
      if (stopping_) return;
      const uint64_t expect = stage_total_ - std::min(stage_total_, completed_);
      bool ready = runner_->in_flight() >= expect;
      if (o_.hold_server == "http-hold")
        ready = ready && server_.counters->requests.load() + completed_ >= stage_total_;
      else if (o_.hold_server == "backlog")
        ready = ready && open_fds() - base_fds_ + completed_ >= stage_total_;
      long rss = status_kib("VmRSS");
      stable_samples_ = (ready && rss == last_rss_) ? stable_samples_ + 1 : 0;
      last_rss_ = rss;
      bool timed_out =
          Clock::now() - stage_start_ > std::chrono::duration<double>(o_.settle_seconds);
      if (stable_samples_ >= 3 || timed_out) {
        if (timed_out) settled_ = false;
        auto f = std::move(stage_then_);
        f();
      } else {
        sample_hold();
      }
    });
  }

  // ------------------------------------------------------------ end
  void stop_all() {
    if (stopping_) return;
    stopping_ = true;
    // Closing the holding server ends the held checks (they fail at once);
    // whatever is still running after a second is abandoned.
    server_.stop();
    // Held checks are expected to be abandoned here: no warning for that.
    if (o_.hold) ge::configure_logging("error");
    runner_->drain(std::chrono::seconds(2), [this] { e_->io.stop(); });
  }

  void print() {
    std::ostringstream j;
    j << "{\"mode\":" << json_str(o_.hold ? "hold" : "throughput");
    if (!o_.label.empty()) j << ",\"label\":" << json_str(o_.label);
    j << ",\"type\":" << json_str(o_.type) << ",\"target\":" << json_str(target_)
      << ",\"config\":" << json_str(o_.config_json) << ",\"plugin\":" << json_str(plugin_)
      << ",\"records\":" << (o_.records ? "true" : "false") << ",\"timeout_ms\":" << o_.timeout_ms;
    if (o_.hold) {
      const double per = inflight_n_ ? static_cast<double>(rss_n_kib_ - rss_baseline_kib_) /
                                           static_cast<double>(inflight_n_)
                                     : NAN;
      const double marginal = inflight_n_ > inflight_k_
                                  ? static_cast<double>(rss_n_kib_ - rss_k_kib_) /
                                        static_cast<double>(inflight_n_ - inflight_k_)
                                  : NAN;
      j << ",\"hold\":" << o_.hold << ",\"hold_server\":" << json_str(o_.hold_server)
        << ",\"settled\":" << (settled_ ? "true" : "false") << ",\"in_flight\":" << inflight_n_
        << ",\"server_accepted\":" << server_accepted_
        << ",\"server_requests\":" << server_requests_ << ",\"sockets\":" << fds_at_hold_
        << ",\"rss_loaded_kib\":" << rss_loaded_kib_
        << ",\"rss_baseline_kib\":" << rss_baseline_kib_ << ",\"rss_first_kib\":" << rss_k_kib_
        << ",\"in_flight_first\":" << inflight_k_ << ",\"rss_all_kib\":" << rss_n_kib_
        << ",\"peak_rss_kib\":" << hwm_at_hold_kib_ << ",\"rss_per_inflight_kib\":" << num(per, 2)
        << ",\"marginal_rss_per_inflight_kib\":" << num(marginal, 2)
        << ",\"heap_baseline_bytes\":" << heap_baseline_ << ",\"heap_all_bytes\":" << heap_n_
        << ",\"heap_per_inflight_bytes\":"
        << num(inflight_n_ ? static_cast<double>(heap_n_ - heap_baseline_) /
                                 static_cast<double>(inflight_n_)
                           : NAN,
               0)
        << ",\"marginal_heap_per_inflight_bytes\":"
        << num(inflight_n_ > inflight_k_ ? static_cast<double>(heap_n_ - heap_k_) /
                                               static_cast<double>(inflight_n_ - inflight_k_)
                                         : NAN,
               0);
    } else {
      const double secs = std::chrono::duration<double>(t1_ - t0_).count();
      const double cpu = cpu1_ - cpu0_;
      j << ",\"checks\":" << measured_ << ",\"concurrency\":" << o_.concurrency
        << ",\"warmup\":" << o_.warmup << ",\"elapsed_s\":" << num(secs, 4)
        << ",\"checks_per_s\":" << num(measured_ / secs, 1) << ",\"cpu_s\":" << num(cpu, 4)
        << ",\"cpu_s_per_1000\":"
        << num(measured_ ? cpu * 1000.0 / static_cast<double>(measured_) : NAN, 4)
        << ",\"cpu_util\":" << num(cpu / secs, 3) << ",\"rss_loaded_kib\":" << rss_loaded_kib_
        << ",\"peak_rss_kib\":" << status_kib("VmHWM");
    }
    j << ",\"status\":" << json_counts(status_) << ",\"reasons\":" << json_counts(reasons_)
      << ",\"timed_out\":" << timed_out_ << ",\"late_completions\":" << late_
      << ",\"latency_ms\":{\"p50\":" << num(latency_.percentile(50))
      << ",\"p90\":" << num(latency_.percentile(90)) << ",\"p99\":" << num(latency_.percentile(99))
      << ",\"max\":" << num(latency_.max()) << ",\"mean\":" << num(latency_.mean()) << "}"
      << ",\"record_bytes\":" << record_bytes_ << ",\"example_message\":" << json_str(example_)
      << ",\"aborted\":" << (aborted_ ? "true" : "false") << "}";
    std::cout << j.str() << std::endl;
  }

  const Options& o_;
  std::string target_;
  std::string plugin_;
  ForkedServer server_;
  Engine* e_ = nullptr;
  std::unique_ptr<ge::CheckRunner> runner_;
  ge::RecordContext record_ctx_;
  ge::Clock::TimerId guard_timer_ = 0;

  uint64_t seq_ = 0, submitted_ = 0, completed_ = 0, phase_total_ = 0, measured_ = 0;
  bool measuring_ = false, refilling_ = false, stopping_ = false, aborted_ = false;
  std::function<void()> on_phase_done_;
  Clock::time_point t0_{}, t1_{};
  double cpu0_ = 0, cpu1_ = 0;

  std::map<std::string, uint64_t> status_, reasons_;
  uint64_t timed_out_ = 0, record_bytes_ = 0, late_ = 0;
  Histogram latency_;
  std::string example_;

  // hold
  size_t base_fds_ = 0, fds_at_hold_ = 0;
  long rss_loaded_kib_ = 0, rss_baseline_kib_ = 0, rss_k_kib_ = 0, rss_n_kib_ = 0,
       hwm_at_hold_kib_ = 0;
  uint64_t first_k_ = 0, inflight_k_ = 0, inflight_n_ = 0, server_requests_ = 0,
           server_accepted_ = 0;
  long heap_baseline_ = 0, heap_k_ = 0, heap_n_ = 0;
  uint64_t stage_total_ = 0;
  Clock::time_point stage_start_{};
  int stable_samples_ = 0;
  long last_rss_ = -1;
  bool settled_ = true;
  std::function<void()> stage_then_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (!o.serve.empty()) return serve_main(o);
  Bench b(o);
  return b.run();
}
