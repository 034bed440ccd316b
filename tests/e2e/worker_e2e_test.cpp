// End to end: the real guardant-worker binary, the real tcp probe plugin, a
// loopback listener opened by the test, JSON Lines read back from a file and
// the health endpoints answered by the running process.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/process.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace guardant::test;
using namespace std::chrono_literals;

namespace {

const std::string kBinary = GUARDANT_WORKER_BINARY;

struct Scratch {
  fs::path dir;
  Scratch() {
    char tmpl[] = "/tmp/guardant-e2e-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }
};

std::string base_config(uint16_t health_port, const std::string& results,
                        const std::string& extra_plugin_dir = "") {
  std::string dirs = "\"" + std::string(GUARDANT_TEST_PLUGIN_DIR) + "\"";
  if (!extra_plugin_dir.empty()) dirs += ", \"" + extra_plugin_dir + "\"";
  return "mode = \"standalone\"\n"
         "[worker]\nid = \"e2e-1\"\nregion = \"test-region\"\nconcurrency = 4\n"
         "drain_timeout_ms = 3000\n"
         "[log]\nlevel = \"info\"\n"
         "[plugins]\ndirs = [" +
         dirs +
         "]\n"
         "[health]\nbind = \"127.0.0.1\"\nport = " +
         std::to_string(health_port) +
         "\n"
         "[results]\njsonl = \"" +
         results + "\"\n";
}

std::string tcp_monitor(const std::string& id, uint16_t port, const std::string& interval) {
  return "[[monitor]]\nid = \"" + id +
         "\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:" + std::to_string(port) + "\"\ninterval = \"" +
         interval + "\"\ntimeout_ms = 2000\n";
}

std::vector<json::object> read_results(const std::string& path) {
  std::vector<json::object> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto v = json::parse(line);  // every line must be one valid JSON object
    out.push_back(v.as_object());
  }
  return out;
}

std::optional<json::object> find_result(const std::string& path, const std::string& status,
                                        const std::string& service) {
  for (auto& r : read_results(path))
    if (r.at("status").as_string() == status && r.at("serviceId").as_string() == service) return r;
  return std::nullopt;
}

}  // namespace

TEST(WorkerE2E, StandaloneTcpUpThenDownWithHealthEndpoints) {
  Scratch s;
  TargetListener target;
  const uint16_t health = free_port();
  auto results = s.path("results.jsonl");
  auto cfg = s.write("worker.toml", base_config(health, results) +
                                        tcp_monitor("listener", target.port(), "300ms"));
  Process worker(kBinary, {"--config", cfg}, s.path("out"), s.path("err"));
  ASSERT_TRUE(worker.started());

  std::optional<json::object> up;
  ASSERT_TRUE(
      wait_for([&] { return (up = find_result(results, "up", "listener")).has_value(); }, 15s))
      << worker.err();
  EXPECT_EQ(up->at("workerId").as_string(), "e2e-1");
  EXPECT_EQ(up->at("region").as_string(), "test-region");
  EXPECT_EQ(up->at("probe").at("type").as_string(), "tcp");
  EXPECT_EQ(up->at("probe").at("plugin").as_string(), "guardant-tcp");
  EXPECT_GT(up->at("responseTime").to_number<double>(), 0.0);
  EXPECT_TRUE(up->at("failure").is_null());
  EXPECT_GT(up->at("checkedAt").to_number<int64_t>(), 1'700'000'000'000);

  // Health endpoints of the running binary.
  auto h = http_request(health, "GET", "/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto body = json::parse(h->body).as_object();
  EXPECT_EQ(body.at("status").as_string(), "ok");
  EXPECT_EQ(body.at("workerId").as_string(), "e2e-1");
  EXPECT_EQ(body.at("region").as_string(), "test-region");
  EXPECT_EQ(body.at("version").as_string(), GUARDANT_VERSION);
  // Every probe type in the build's plugin dir, tcp among them.
  auto caps = body.at("capabilities").as_array();
  EXPECT_NE(std::find(caps.begin(), caps.end(), json::value("tcp")), caps.end()) << caps;
  auto ready = http_request(health, "GET", "/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto metrics = http_request(health, "GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("guardant_checks_total{type=\"tcp\",status=\"up\"}"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_EQ(http_request(health, "GET", "/nope")->status, 404);
  EXPECT_EQ(http_request(health, "POST", "/health")->status, 405);

  // Target goes away: the next results are down with connect_refused.
  target.close();
  std::optional<json::object> down;
  ASSERT_TRUE(
      wait_for([&] { return (down = find_result(results, "down", "listener")).has_value(); }, 15s))
      << worker.err();
  EXPECT_EQ(down->at("failure").at("reason").as_string(), "connect_refused");
  EXPECT_EQ(down->at("failure").at("phase").as_string(), "connect");

  worker.signal(SIGTERM);
  auto code = worker.wait(10s);
  ASSERT_TRUE(code) << "worker did not exit after SIGTERM";
  EXPECT_EQ(*code, 0) << worker.err();
  EXPECT_NE(worker.err().find("drained"), std::string::npos) << worker.err();
}

TEST(WorkerE2E, BrokenPluginIsRefusedAndTheWorkerRunsOn) {
  Scratch s;
  TargetListener target;
  const uint16_t health = free_port();
  auto plugdir = s.dir / "third-party";
  fs::create_directory(plugdir);
  fs::permissions(plugdir, fs::perms(0755));
  std::ofstream(plugdir / "broken.so") << "garbage";
  fs::permissions(plugdir / "broken.so", fs::perms(0644));
  auto results = s.path("results.jsonl");
  auto cfg = s.write("worker.toml", base_config(health, results, plugdir.string()) +
                                        tcp_monitor("listener", target.port(), "300ms"));
  Process worker(kBinary, {"--config", cfg}, s.path("out"), s.path("err"));
  ASSERT_TRUE(wait_for([&] { return find_result(results, "up", "listener").has_value(); }, 15s))
      << worker.err();
  auto h = http_request(health, "GET", "/health");
  ASSERT_TRUE(h);
  auto refused = json::parse(h->body).at("refusedPlugins").as_array();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].at("path").as_string(), (plugdir / "broken.so").string());
  EXPECT_NE(std::string(refused[0].at("reason").as_string()).find("not an ELF"), std::string::npos);
  EXPECT_NE(worker.err().find("refused plugin " + (plugdir / "broken.so").string()),
            std::string::npos)
      << worker.err();
  worker.signal(SIGTERM);
  EXPECT_EQ(worker.wait(10s).value_or(-1), 0);
}

TEST(WorkerE2E, MissingRequiredProbeTypeStopsStartupWithAClearError) {
  Scratch s;
  auto cfg = s.write("worker.toml", base_config(0, s.path("r.jsonl")) +
                                        "[[monitor]]\nid = \"p\"\ntype = \"smtp\"\n"
                                        "target = \"127.0.0.1\"\ninterval = \"5s\"\n");
  auto r = run_command(kBinary, {"--config", cfg}, s.dir.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("probe type 'smtp' is required by the config but no loaded plugin "
                       "provides it (capabilities: ["),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("tcp"), std::string::npos) << r.err;
}

TEST(WorkerE2E, CheckConfigNamesFileLineAndKey) {
  Scratch s;
  auto good = s.write("good.toml", base_config(0, "-"));
  auto r = run_command(kBinary, {"--check-config", "--config", good}, s.dir.string());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("config OK"), std::string::npos);

  auto bad = s.write("bad.toml", "mode = \"standalone\"\n[worker]\nconcurrency = \"ten\"\n");
  r = run_command(kBinary, {"--check-config", "--config", bad}, s.dir.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bad.toml:3:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("worker.concurrency"), std::string::npos) << r.err;

  r = run_command(kBinary, {"--check-config", "--config", good}, s.dir.string(), 30s,
                  {"WORKER_CONCURRENCY=abc"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("WORKER_CONCURRENCY"), std::string::npos) << r.err;

  r = run_command(kBinary, {"--check-config", "--config", s.path("missing.toml")}, s.dir.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("missing.toml"), std::string::npos) << r.err;
}

TEST(WorkerE2E, ShippedConfigsPassCheckConfig) {
  Scratch s;
  for (auto name : {"standalone.toml", "worker.toml"}) {
    auto path = std::string(GUARDANT_SOURCE_DIR) + "/config/" + name;
    auto r = run_command(kBinary, {"--check-config", "--config", path}, s.dir.string());
    EXPECT_EQ(r.code, 0) << name << ": " << r.err;
  }
}

TEST(WorkerE2E, ListPluginsShowsNameVersionAbiTypesAndPath) {
  Scratch s;
  auto cfg = s.write("w.toml", base_config(0, "-"));
  auto r = run_command(kBinary, {"--list-plugins", "--config", cfg}, s.dir.string());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("guardant-tcp " GUARDANT_VERSION), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("abi:   1.0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("type:  tcp"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::string("path:  ") + GUARDANT_TEST_PLUGIN_DIR + "/probe_tcp.so"),
            std::string::npos)
      << r.out;
}

TEST(WorkerE2E, ProbeSubcommandRunsOneCheck) {
  Scratch s;
  TargetListener target;
  auto cfg = s.write("w.toml", base_config(0, "-"));
  auto r = run_command(
      kBinary, {"probe", "tcp", "127.0.0.1:" + std::to_string(target.port()), "--config-file", cfg},
      s.dir.string());
  EXPECT_EQ(r.code, 0) << r.err;
  auto rec = json::parse(r.out).as_object();
  EXPECT_EQ(rec.at("status").as_string(), "up");

  target.close();
  r = run_command(
      kBinary, {"probe", "tcp", "127.0.0.1:" + std::to_string(target.port()), "--config-file", cfg},
      s.dir.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(json::parse(r.out).at("failure").at("reason").as_string(), "connect_refused");

  r = run_command(kBinary, {"probe", "tcp", "no-port-here", "--config-file", cfg}, s.dir.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("invalid_config"), std::string::npos) << r.err;

  // A wrong option type names the option and the check does not run.
  r = run_command(
      kBinary,
      {"probe", "tcp", "127.0.0.1:9", "--config-file", cfg, "--config", R"({"timeout": "soon"})"},
      s.dir.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("'timeout'"), std::string::npos) << r.err;
}

TEST(WorkerE2E, JsonLogLinesStayValidJsonWhateverTheMessage) {
  Scratch s;
  auto cfg = s.write("w.toml",
                     "mode = \"standalone\"\n[log]\nformat = \"json\"\n"
                     "[plugins]\ndirs = [\"/nonexistent/with \\\"quotes\\\"\\n\"]\n"
                     "[health]\nenabled = false\n");
  Process worker(kBinary, {"--config", cfg}, s.path("out"), s.path("err"));
  ASSERT_TRUE(wait_for([&] { return worker.err().find("started") != std::string::npos; }, 10s))
      << worker.err();
  worker.signal(SIGTERM);
  ASSERT_EQ(worker.wait(10s).value_or(-1), 0);
  std::istringstream lines(worker.err());
  std::string line;
  int n = 0;
  bool saw_quotes = false;
  while (std::getline(lines, line)) {
    auto v = json::parse(line);  // throws (fails the test) on a broken line
    saw_quotes |= std::string(v.at("msg").as_string()).find("\"quotes\"\n") != std::string::npos;
    ++n;
  }
  EXPECT_GE(n, 3);
  EXPECT_TRUE(saw_quotes) << worker.err();
}

TEST(WorkerE2E, WorkerCapabilitiesNarrowsWhatIsAdvertised) {
  Scratch s;
  auto plugdir = s.dir / "extra";
  fs::create_directory(plugdir);
  fs::permissions(plugdir, fs::perms(0755));
  fs::copy_file(std::string(GUARDANT_TEST_FIXTURE_DIR) + "/fixture_good.so", plugdir / "good.so");
  const uint16_t health = free_port();
  auto cfg = s.write("w.toml", base_config(health, "-", plugdir.string()));
  auto caps = [&](const std::vector<std::string>& env) {
    Process worker(kBinary, {"--config", cfg}, s.path("out"), s.path("err"), env);
    std::optional<HttpResponse> h;
    wait_for([&] { return (h = http_request(health, "GET", "/health")).has_value(); }, 10s);
    worker.signal(SIGTERM);
    worker.wait(10s);
    return h ? json::parse(h->body).at("capabilities").as_array() : json::array{};
  };
  auto all = caps({});
  EXPECT_NE(std::find(all.begin(), all.end(), json::value("tcp")), all.end()) << all;
  EXPECT_NE(std::find(all.begin(), all.end(), json::value("variant")), all.end()) << all;
  EXPECT_EQ(caps({"WORKER_CAPABILITIES=variant"}), json::array({"variant"}));
}

TEST(WorkerE2E, QueueModeStartsWithoutRedisNotReadyThenConnects) {
  Scratch s;
  const uint16_t health = free_port();
  const uint16_t redis_port = free_port();
  auto cfg = s.write(
      "worker.toml",
      "mode = \"queue\"\n[worker]\nid = \"e2e-q\"\nregion = \"test-region\"\nconcurrency = 2\n"
      "drain_timeout_ms = 2000\n[log]\nlevel = \"info\"\n[plugins]\ndirs = [\"" +
          std::string(GUARDANT_TEST_PLUGIN_DIR) + "\"]\n[redis]\nhost = \"127.0.0.1\"\nport = " +
          std::to_string(redis_port) + "\n[queue]\nnames = [\"monitoring\"]\n[health]\nbind = " +
          "\"127.0.0.1\"\nport = " + std::to_string(health) +
          "\n[results]\njsonl = \"\"\n[results.stream]\nenabled = false\n"
          "[results.status]\nenabled = false\n");
  Process worker(kBinary, {"--config", cfg}, s.path("out"), s.path("err"));
  ASSERT_TRUE(worker.started());

  // Up and answering, but not ready: nothing to take work from.
  std::optional<HttpResponse> ready;
  ASSERT_TRUE(
      wait_for([&] { return (ready = http_request(health, "GET", "/ready")).has_value(); }, 10s))
      << worker.err();
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ready->body.find("redis"), std::string::npos) << ready->body;
  auto h = http_request(health, "GET", "/health");
  ASSERT_TRUE(h);
  auto body = json::parse(h->body).as_object();
  EXPECT_EQ(body.at("mode").as_string(), "queue");
  EXPECT_FALSE(body.at("redis").at("connected").as_bool());

  // Redis appears: the worker connects, registers and becomes ready.
  Process redis("/usr/bin/redis-server",
                {"--port", std::to_string(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", s.dir.string()},
                s.path("redis.out"), s.path("redis.err"));
  ASSERT_TRUE(redis.started());
  ASSERT_TRUE(wait_for(
      [&] {
        auto r = http_request(health, "GET", "/ready");
        return r && r->status == 200;
      },
      15s))
      << worker.err();
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"-p", std::to_string(redis_port)});
    return run_command("/usr/bin/redis-cli", args, s.dir.string()).out;
  };
  auto record = cli({"GET", "guardant:workers:e2e-q"});
  EXPECT_NE(record.find("\"region\":\"test-region\""), std::string::npos) << record;

  worker.signal(SIGTERM);
  auto code = worker.wait(10s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << worker.err();
  // A clean stop removes the worker from the fleet.
  EXPECT_EQ(cli({"EXISTS", "guardant:workers:e2e-q"}), "0\n");
  redis.signal(SIGTERM);
  redis.wait(5s);
}
