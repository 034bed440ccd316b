#include "worker/worker_app.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <set>

#include "core/asio_clock.hpp"
#include "core/logging.hpp"
#include "fleet/worker_registry.hpp"
#include "http/health_server.hpp"
#include "metrics/worker_metrics.hpp"
#include "plugins/plugin_registry.hpp"
#include "ratelimit/nest_rate_limiter.hpp"
#include "results/check_record.hpp"
#include "results/json_lines_sink.hpp"
#include "results/json_text.hpp"
#include "results/result_persister.hpp"
#include "scheduler/check_runner.hpp"
#include "scheduler/standalone_scheduler.hpp"
#include "worker/queue_check_handler.hpp"

#ifndef GUARDANT_INSTALL_PLUGIN_DIR
#define GUARDANT_INSTALL_PLUGIN_DIR "/usr/lib/guardant/plugins"
#endif

namespace guardant::engine {
namespace fs = std::filesystem;

std::vector<std::string> default_plugin_dirs() {
  std::vector<std::string> dirs{GUARDANT_INSTALL_PLUGIN_DIR};
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // Build tree: build/engine/guardant-worker next to build/plugins.
    auto build_dir = exe.parent_path().parent_path() / "plugins";
    if (fs::is_directory(build_dir, ec)) dirs.push_back(build_dir.string());
  }
  return dirs;
}

namespace {

// The parts every mode needs: one loop, its clock, the plugin host.
struct EngineCore {
  boost::asio::io_context io;
  AsioClock clock{io};
  HostRuntime host{io, clock};
  WorkerMetrics metrics;
  PluginRegistry registry{host};

  EngineCore() {
    host.on_late_completion = [this](const std::string& type) {
      metrics.late_completion(type);
      logger("scheduler")->debug("late completion of a {} check dropped", type);
    };
    host.on_duplicate_completion = [](const std::string& type) {
      logger("plugins")->warn("a {} check was completed twice; the second result was dropped",
                              type);
    };
  }

  // Deliver what is still posted (plugin completions, the C++ layer's
  // deferred deletes) before the registry unloads plugins. Runners abandon
  // their checks when destroyed, so nothing is delivered into them.
  ~EngineCore() {
    io.restart();
    io.poll();
  }

  void load_plugins(const Config& config) {
    auto dirs = config.plugins.dirs.empty() ? default_plugin_dirs() : config.plugins.dirs;
    registry.load_dirs(dirs);
    for (size_t i = 0; i < registry.refusals().size(); ++i) metrics.plugin_refused();
    metrics.set_plugins_loaded(registry.plugins().size());
  }

  // Loaded probe types, narrowed by worker.capabilities / WORKER_CAPABILITIES.
  std::vector<std::string> capabilities(const Config& config) const {
    auto loaded = registry.type_names();
    if (config.worker.capabilities.empty()) return loaded;
    std::vector<std::string> out;
    for (const auto& c : config.worker.capabilities) {
      if (registry.has_type(c))
        out.push_back(c);
      else
        logger("plugins")->warn("capability '{}' is configured but no loaded plugin provides it",
                                c);
    }
    return out;
  }
};

std::string describe_refusals(const PluginRegistry& registry) {
  std::string s;
  for (auto& r : registry.refusals()) s += "\n  refused " + r.path + ": " + r.reason;
  return s;
}

// Metrics and slot gauges from the runner's events.
class MetricsObserver final : public CheckObserver {
 public:
  explicit MetricsObserver(WorkerMetrics& m) : m_(m) {}
  void on_slots_changed(size_t in_flight, size_t total) override {
    m_.set_in_flight(in_flight);
    m_.set_slots(total);
  }
  void on_finished(const CheckReport& r) override {
    if (r.refused) {
      m_.check_refused(r.job.type, r.refused->code);
      return;
    }
    if (r.timed_out) m_.check_timed_out(r.job.type);
    m_.check_finished(r.job.type, to_string(r.result.status), r.duration_ms() / 1000.0);
  }

 private:
  WorkerMetrics& m_;
};

boost::json::array to_json(const std::vector<std::string>& v) {
  boost::json::array a;
  for (auto& s : v) a.emplace_back(s);
  return a;
}

boost::json::array plugins_json(const PluginRegistry& registry) {
  boost::json::array a;
  for (auto& p : registry.plugins()) {
    boost::json::array types;
    for (auto& t : p.types) types.emplace_back(t.name);
    a.push_back(boost::json::object{
        {"name", p.name},
        {"version", p.version},
        {"abi", std::to_string(p.abi_major) + "." + std::to_string(p.abi_minor)},
        {"types", std::move(types)},
        {"path", p.path}});
  }
  return a;
}

// "{capability}" in a queue name stands for each capability of this worker,
// so producers can route by probe type ("monitoring:{capability}" becomes
// "monitoring:web", "monitoring:tcp" ...). "{region}" was expanded with the
// config.
std::vector<std::string> expand_capability_queues(const std::vector<std::string>& names,
                                                  const std::vector<std::string>& caps) {
  std::vector<std::string> out;
  auto add = [&](std::string n) {
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(std::move(n));
  };
  const std::string placeholder = "{capability}";
  for (const auto& name : names) {
    if (name.find(placeholder) == std::string::npos) {
      add(name);
      continue;
    }
    for (const auto& cap : caps) {
      std::string n = name;
      for (auto pos = n.find(placeholder); pos != std::string::npos;
           pos = n.find(placeholder, pos + cap.size()))
        n.replace(pos, placeholder.size(), cap);
      add(n);
    }
  }
  return out;
}

RecordContext record_context(const Config& config, const PluginRegistry& registry,
                             const std::string& type) {
  RecordContext ctx;
  ctx.worker_id = config.worker.id;
  ctx.region = config.worker.region;
  ctx.probe_type = type;
  if (auto p = registry.plugin_for(type)) {
    ctx.plugin_name = p->name;
    ctx.plugin_version = p->version;
  }
  return ctx;
}

}  // namespace

// What differs between standalone and queue mode; the rest of run() (health
// server, signals, drain, the loop) is shared.
struct ModeHooks {
  std::string name;
  std::function<void()> start;
  // Stop taking work and finish what is in flight; `done` once drained.
  std::function<void(std::function<void()> done)> drain;
  std::function<void(boost::json::object&)> add_health;
  std::function<std::optional<Readiness>()> not_ready;  // nullopt: ready
};

int WorkerApp::run() {
  auto log = logger("worker");
  EngineCore core;
  core.load_plugins(config_);
  auto caps = core.capabilities(config_);
  // Refuse to start without a probe type the config depends on.
  for (const auto& t : config_.plugins.required) {
    if (std::find(caps.begin(), caps.end(), t) == caps.end()) {
      log->critical(
          "probe type '{}' is required by the config but no loaded plugin provides it "
          "(capabilities: [{}]){}",
          t, fmt::join(caps, ", "), describe_refusals(core.registry));
      return 1;
    }
  }

  MetricsObserver observer(core.metrics);
  CheckRunner runner(core.registry, core.clock, config_.worker.concurrency, &observer);
  core.metrics.set_slots(runner.slots());
  ModeHooks mode;

  // Standalone mode: monitors from the config, results as JSON Lines.
  std::optional<JsonLinesSink> sink;
  std::set<std::string> invalid_reported;
  std::unique_ptr<StandaloneScheduler> scheduler;
  // Queue mode: jobs from Redis.
  std::unique_ptr<QueueCheckHandler> handler;
  std::unique_ptr<QueueMetricsObserver> queue_observer;
  std::unique_ptr<QueueWorker> queue;
  std::vector<std::string> queue_names;
  // The fleet connection (worker registry, per-nest rate limits), declared
  // before what uses it so it outlives them.
  std::unique_ptr<redis::RedisConnection> fleet_redis;
  std::unique_ptr<NestRateLimiter> limiter;
  std::unique_ptr<WorkerRegistry> worker_registry;
  // Results beside the returnvalue: Redis stream + status with the spool.
  std::unique_ptr<redis::RedisConnection> results_redis;
  std::unique_ptr<ResultPersister> persister;
  bool registered = false;
  int exit_code = 0;

  if (config_.mode == WorkerMode::Standalone) {
    auto opened =
        JsonLinesSink::open(config_.results.jsonl_path.empty() ? "-" : config_.results.jsonl_path);
    if (!opened) {
      log->critical("{}", opened.error().message);
      return 1;
    }
    sink.emplace(std::move(opened.value()));
    scheduler = std::make_unique<StandaloneScheduler>(
        core.clock, runner, config_.monitors,
        std::chrono::milliseconds(config_.worker.default_timeout_ms),
        [&](const MonitorSettings& m, const CheckReport& r) {
          if (r.refused && r.refused->code == "shutting_down") return;
          if (r.refused && invalid_reported.insert(m.id).second)
            log->error("monitor {} (line {}): check refused: {}", m.id, m.line, r.refused->message);
          auto ctx = record_context(config_, core.registry, m.type);
          ctx.service_id = m.id;
          ctx.nest_id = m.nest_id;
          ctx.checked_at_ms = r.finished_wall_ms;
          if (auto st = sink->write(make_check_record(r.result, ctx)); !st)
            log->error("{}", st.error().message);
        });
    mode.name = "standalone";
    mode.start = [&] {
      log->info(
          "worker {} (region {}) started in standalone mode: {} monitor(s), {} slot(s), "
          "capabilities [{}]",
          config_.worker.id, config_.worker.region, config_.monitors.size(), runner.slots(),
          fmt::join(caps, ", "));
      scheduler->start();
    };
    mode.drain = [&](std::function<void()> done) {
      scheduler->stop();
      runner.drain(std::chrono::milliseconds(config_.worker.drain_timeout_ms), std::move(done));
    };
    mode.add_health = [&](boost::json::object& h) {
      h["monitors"] = config_.monitors.size();
      h["redis"] = nullptr;
    };
    mode.not_ready = [] { return std::optional<Readiness>(); };
  } else {
    if (caps.empty()) {
      log->critical("queue mode needs at least one probe type, but no plugin loaded{}",
                    describe_refusals(core.registry));
      return 1;
    }
    queue_names = expand_capability_queues(config_.queue.names, caps);
    fleet_redis = std::make_unique<redis::RedisConnection>(
        core.io, core.clock, config_.redis, "guardant:fleet:" + config_.worker.id, "fleet");
    limiter =
        std::make_unique<NestRateLimiter>(*fleet_redis, config_.limits, &core.metrics.registry());
    const int64_t process_started_ms = core.clock.wall_ms();
    worker_registry =
        std::make_unique<WorkerRegistry>(*fleet_redis, core.clock, [&, process_started_ms] {
          WorkerRecord r;
          r.id = config_.worker.id;
          r.region = config_.worker.region;
          r.version = GUARDANT_VERSION;
          r.host = local_host_name();
          r.pid = ::getpid();
          r.capabilities = caps;
          for (auto& p : core.registry.plugins()) {
            boost::json::array types;
            for (auto& t : p.types) types.emplace_back(t.name);
            r.plugins.push_back(boost::json::object{
                {"name", p.name}, {"version", p.version}, {"types", std::move(types)}});
          }
          r.concurrency = static_cast<uint32_t>(runner.slots());
          r.in_flight = static_cast<uint32_t>(runner.in_flight());
          r.started_at_ms = process_started_ms;
          return r;
        });
    handler =
        std::make_unique<QueueCheckHandler>(config_, core.registry, runner, caps, limiter.get());
    results_redis = std::make_unique<redis::RedisConnection>(
        core.io, core.clock, config_.redis, "guardant:results:" + config_.worker.id, "results");
    persister = std::make_unique<ResultPersister>(core.io, core.clock, *results_redis,
                                                  config_.results, &core.metrics.registry());
    if (auto st = persister->open(); !st)
      log->error("result spool: {}; results wait in memory while Redis is away",
                 st.error().message);
    results_redis->on_ready([&] { persister->on_redis_ready(); });
    if (!config_.results.jsonl_path.empty()) {
      auto opened = JsonLinesSink::open(config_.results.jsonl_path);
      if (!opened) {
        log->critical("{}", opened.error().message);
        return 1;
      }
      sink.emplace(std::move(opened.value()));
    }
    handler->on_record = [&](const QueueJob& job, const CheckSpec& spec,
                             boost::json::object record) {
      if (sink)
        if (auto st = sink->write(record); !st) log->error("{}", st.error().message);
      // One key per job attempt: a result flushed again after a crash is
      // not written twice.
      persister->persist({job.queue + ":" + job.id + ":" + std::to_string(job.attempts_started),
                          spec.nest_id, spec.service_id, std::move(record)});
    };
    queue_observer = std::make_unique<QueueMetricsObserver>(core.metrics.registry());
    QueueWorkerOptions options;
    options.worker_name = config_.worker.id;
    options.concurrency = config_.worker.concurrency;
    options.lock_duration = std::chrono::milliseconds(config_.queue.lock_duration_ms);
    options.stalled_interval = std::chrono::milliseconds(config_.queue.stalled_interval_ms);
    options.max_stalled_count = config_.queue.max_stalled_count;
    queue =
        std::make_unique<QueueWorker>(core.io, core.clock, config_.redis, config_.queue.prefix,
                                      config_.queue.names, options, *handler, queue_observer.get());
    mode.name = "queue";
    mode.start = [&] {
      log->info(
          "worker {} (region {}) started in queue mode: queues [{}] on redis {}, {} slot(s), "
          "capabilities [{}]",
          config_.worker.id, config_.worker.region, fmt::join(queue_names, ", "),
          config_.redis.unix_socket.empty()
              ? config_.redis.host + ":" + std::to_string(config_.redis.port)
              : config_.redis.unix_socket,
          runner.slots(), fmt::join(caps, ", "));
      // Jobs are taken only once this worker holds its id in the fleet: a
      // second live worker with the same WORKER_ID refuses to start.
      fleet_redis->start();
      results_redis->start();
      worker_registry->start([&](Status st) {
        if (!st) {
          log->critical("{}", st.error().message);
          exit_code = 1;
          core.io.stop();
          return;
        }
        registered = true;
        queue->start();
      });
    };
    mode.drain = [&](std::function<void()> done) {
      // Both must finish: the runner ends (or abandons) the checks, the queue
      // worker writes their outcomes or hands the jobs back.
      auto remaining = std::make_shared<int>(3);
      // Once no check runs any more, the results still on their way are
      // written (or spooled and synced) before the process exits.
      auto one_done = [&, remaining, done = std::move(done)] {
        if (--*remaining == 0) persister->flush(done);
      };
      // The record goes at once: a draining worker takes no new work.
      worker_registry->stop(one_done);
      queue->stop(one_done);
      runner.drain(std::chrono::milliseconds(config_.worker.drain_timeout_ms), one_done);
    };
    mode.add_health = [&](boost::json::object& h) {
      h["queues"] = to_json(queue_names);
      h["activeJobs"] = queue->active_jobs();
      h["redis"] =
          boost::json::object{{"connected", queue->connected()}, {"error", queue->redis_error()}};
    };
    mode.not_ready = [&]() -> std::optional<Readiness> {
      if (!registered) {
        auto why = fleet_redis->last_error();
        return Readiness{false, why.empty() ? "registering the worker id" : "redis: " + why};
      }
      if (!queue->connected()) return Readiness{false, "redis: " + queue->redis_error()};
      return std::nullopt;
    };
  }

  const auto started_at = core.clock.now();
  bool draining = false;
  HealthCallbacks source(
      [&] {
        auto uptime = std::chrono::duration<double>(core.clock.now() - started_at).count();
        boost::json::array refused;
        for (auto& r : core.registry.refusals())
          refused.push_back(boost::json::object{{"path", r.path}, {"reason", r.reason}});
        boost::json::object h{{"status", draining ? "draining" : "ok"},
                              {"workerId", config_.worker.id},
                              {"region", config_.worker.region},
                              {"version", GUARDANT_VERSION},
                              {"mode", mode.name},
                              {"uptime", uptime},
                              {"capabilities", to_json(caps)},
                              {"plugins", plugins_json(core.registry)},
                              {"refusedPlugins", std::move(refused)},
                              {"inFlight", runner.in_flight()},
                              {"queued", runner.queued()},
                              {"slots", runner.slots()}};
        mode.add_health(h);
        return h;
      },
      [&] {
        if (draining) return Readiness{false, "draining"};
        if (core.registry.plugins().empty()) return Readiness{false, "no probe plugins loaded"};
        if (auto r = mode.not_ready()) return *r;
        return Readiness{true, ""};
      },
      [&] { return core.metrics.render(); });

  std::unique_ptr<HealthServer> health;
  if (config_.health.enabled) {
    health =
        std::make_unique<HealthServer>(core.io, config_.health.bind, config_.health.port, source);
    if (auto st = health->start(); !st) {
      log->critical("{}", st.error().message);
      return 1;
    }
  }

  boost::asio::signal_set signals(core.io, SIGTERM, SIGINT);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (draining) {
        log->warn("second signal ({}): stopping now", sig);
        core.io.stop();
        return;
      }
      draining = true;
      log->info("signal {}: draining {} check(s) in flight (up to {} ms)", sig, runner.in_flight(),
                config_.worker.drain_timeout_ms);
      wait_signal();
      mode.drain([&] {
        log->info("drained; exiting");
        signals.cancel();
        if (health) health->stop();
        core.io.stop();
      });
    });
  };
  wait_signal();

  mode.start();
  core.host.set_loop_thread(std::this_thread::get_id());
  core.io.run();
  core.host.begin_shutdown();
  return exit_code;
}

int list_plugins(const Config& config, std::ostream& out) {
  EngineCore core;
  core.load_plugins(config);
  auto plugins = core.registry.plugins();
  for (auto& p : plugins) {
    out << p.name << " " << p.version << "\n";
    out << "  abi:   " << p.abi_major << "." << p.abi_minor << " (needs host >= " << p.abi_major
        << "." << p.min_host_abi_minor << ")\n";
    out << "  path:  " << p.path << "\n";
    if (!p.description.empty()) out << "  about: " << p.description << "\n";
    for (auto& t : p.types)
      out << "  type:  " << t.name << (t.description.empty() ? "" : " — ") << t.description << "\n";
  }
  for (auto& r : core.registry.refusals()) out << "refused " << r.path << ": " << r.reason << "\n";
  if (plugins.empty()) out << "no plugins loaded\n";
  return plugins.empty() ? 1 : 0;
}

int probe_once(const Config& config, const std::string& type, const std::string& target,
               const std::string& config_json, uint32_t timeout_ms, std::ostream& out) {
  EngineCore core;
  core.load_plugins(config);
  if (!core.registry.has_type(type)) {
    std::cerr << "no loaded plugin provides probe type '" << type << "'"
              << describe_refusals(core.registry) << "\n";
    return 2;
  }
  CheckRunner runner(core.registry, core.clock, 1);
  std::optional<CheckReport> report;
  CheckJob job;
  job.check_id = "cli:1";
  job.type = type;
  job.target = target;
  job.config_json = config_json;
  job.timeout =
      std::chrono::milliseconds(timeout_ms ? timeout_ms : config.worker.default_timeout_ms);
  runner.submit(job, [&](CheckReport r) {
    report = std::move(r);
    core.io.stop();
  });
  if (!report) core.io.run();
  if (!report) return 2;
  if (report->refused) {
    std::cerr << "check refused (" << report->refused->code << "): " << report->refused->message
              << "\n";
    return 2;
  }
  auto ctx = record_context(config, core.registry, type);
  ctx.service_id = "cli";
  ctx.checked_at_ms = report->finished_wall_ms;
  out << to_json_text(make_check_record(report->result, ctx)) << "\n";
  auto s = report->result.status;
  return (s == CheckStatus::Up || s == CheckStatus::Degraded) ? 0 : 1;
}

}  // namespace guardant::engine
