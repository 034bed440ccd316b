// Reads the worker's TOML file into a Config. Each section has a reader that
// validates every key it knows and rejects the rest; errors are collected,
// not thrown, so one run reports every mistake in the file.
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "config/config.hpp"
#include "config/diagnostics.hpp"
#include "config/env_overrides.hpp"
#include "config/toml_reader.hpp"

namespace guardant::engine {
namespace {

using namespace config_detail;
namespace fs = std::filesystem;

constexpr const char* kInvalidConfig = "invalid_config";

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "guardant-worker";
  return buf;
}

// `choices` rendered for messages: "\"text\" or \"json\"".
std::string one_of(std::initializer_list<std::string_view> choices) {
  std::string out;
  size_t i = 0;
  for (std::string_view c : choices) {
    if (i > 0) out += (i + 1 == choices.size()) ? " or " : ", ";
    out += '"';
    out += c;
    out += '"';
    ++i;
  }
  return out;
}

// A string that must be one of `choices`; true when it was present and valid.
bool read_enum(const TableReader& r, std::string_view name,
               std::initializer_list<std::string_view> choices, std::string& out) {
  const toml::node* node = r.get(name);
  if (!node) return false;
  const auto* s = node->as_string();
  if (s && std::find(choices.begin(), choices.end(), s->get()) != choices.end()) {
    out = s->get();
    return true;
  }
  std::string expected = one_of(choices);
  std::string message = "expected " + expected + ", got " + describe(*node);
  if (s) {
    const std::span<const std::string_view> candidates(choices.begin(), choices.size());
    if (auto hint = suggest(s->get(), candidates); !hint.empty()) {
      message += "; did you mean \"" + std::string(hint) + "\"?";
    }
  }
  r.diag().at(node->source(), r.key(name), message);
  return false;
}

// A [[monitor]]'s config table, or anything in it, as JSON for the probe.
bool to_json(const toml::node& node, const std::string& key, Diagnostics& diag,
             boost::json::value& out) {
  switch (node.type()) {
    case toml::node_type::table: {
      boost::json::object object;
      bool ok = true;
      for (auto&& [k, v] : *node.as_table()) {
        boost::json::value child;
        ok = to_json(v, join_key(key, k.str()), diag, child) && ok;
        object[k.str()] = std::move(child);
      }
      out = std::move(object);
      return ok;
    }
    case toml::node_type::array: {
      boost::json::array array;
      bool ok = true;
      const auto& a = *node.as_array();
      for (size_t i = 0; i < a.size(); ++i) {
        boost::json::value child;
        ok = to_json(*a.get(i), key + '[' + std::to_string(i) + ']', diag, child) && ok;
        array.push_back(std::move(child));
      }
      out = std::move(array);
      return ok;
    }
    case toml::node_type::string:
      out = boost::json::string(node.as_string()->get());
      return true;
    case toml::node_type::integer:
      out = node.as_integer()->get();
      return true;
    case toml::node_type::floating_point: {
      const double d = node.as_floating_point()->get();
      if (!std::isfinite(d)) {
        diag.at(node.source(), key,
                "expected a finite number (JSON has no nan or inf), got " + describe(node));
        return false;
      }
      out = d;
      return true;
    }
    case toml::node_type::boolean:
      out = node.as_boolean()->get();
      return true;
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: {
      // JSON has no date type; probes get the RFC 3339 text TOML uses.
      std::ostringstream os;
      node.visit([&](const auto& v) { os << v; });
      out = boost::json::string(os.str());
      return true;
    }
    case toml::node_type::none:
      break;
  }
  out = nullptr;
  return true;
}

void read_worker(const TableReader& r, WorkerSettings& w) {
  r.reject_unknown(
      {"id", "region", "concurrency", "capabilities", "drain_timeout_ms", "default_timeout_ms"});
  r.string("id", w.id, /*allow_empty=*/false);
  r.string("region", w.region, /*allow_empty=*/false);
  r.integer("concurrency", w.concurrency, 1);
  r.string_list("capabilities", w.capabilities);
  r.integer("drain_timeout_ms", w.drain_timeout_ms, 0);
  r.integer("default_timeout_ms", w.default_timeout_ms, 1);
}

void read_log(const TableReader& r, LogSettings& l) {
  r.reject_unknown({"level", "format"});
  if (const toml::node* node = r.get("level")) {
    const auto* s = node->as_string();
    std::string level = s ? s->get() : std::string();
    if (s && normalize_log_level(level)) {
      l.level = level;
    } else {
      r.wrong("level", *node, "one of " + std::string(kLogLevels));
    }
  }
  read_enum(r, "format", {"text", "json"}, l.format);
}

void read_plugins(const TableReader& r, const fs::path& base_dir, PluginSettings& p) {
  r.reject_unknown({"dirs", "required"});
  if (r.string_list("dirs", p.dirs)) {
    // Relative to the file, not the working directory, so that the same
    // config works whichever directory the worker is started from.
    for (auto& dir : p.dirs) {
      const fs::path path(dir);
      if (path.is_relative()) dir = (base_dir / path).lexically_normal().string();
    }
  }
  std::vector<std::string> required;
  if (r.string_list("required", required)) {
    p.required.clear();
    for (auto& type : required) {
      if (std::find(p.required.begin(), p.required.end(), type) == p.required.end()) {
        p.required.push_back(std::move(type));
      }
    }
  }
}

void read_redis(const TableReader& r, RedisSettings& s) {
  r.reject_unknown(
      {"host", "port", "unix_socket", "username", "password", "db", "tls", "connect_timeout_ms"});
  r.string("host", s.host, /*allow_empty=*/false);
  r.port("port", s.port, /*allow_zero=*/false);
  r.string("unix_socket", s.unix_socket);
  r.string("username", s.username);
  r.secret("password", s.password);
  r.integer("db", s.db, 0);
  r.integer("connect_timeout_ms", s.connect_timeout_ms, 1);
  if (const toml::table* t = r.subtable("tls")) {
    const TableReader tls(*t, r.key("tls"), r.diag());
    tls.reject_unknown({"enabled", "verify", "ca_file", "cert_file", "key_file", "server_name"});
    tls.boolean("enabled", s.tls.enabled);
    tls.boolean("verify", s.tls.verify);
    tls.string("ca_file", s.tls.ca_file);
    tls.string("cert_file", s.tls.cert_file);
    tls.string("key_file", s.tls.key_file);
    tls.string("server_name", s.tls.server_name);
    // A client certificate is useless without its key and vice versa; say so
    // now rather than as an opaque handshake failure later.
    if (s.tls.cert_file.empty() != s.tls.key_file.empty()) {
      const bool has_cert = !s.tls.cert_file.empty();
      tls.missing(has_cert ? "key_file" : "cert_file",
                  has_cert ? "the client key that goes with redis.tls.cert_file"
                           : "the client certificate that goes with redis.tls.key_file");
    }
  }
}

// Returns the node of queue.names when the file sets it.
const toml::node* read_queue(const TableReader& r, QueueSettings& q) {
  r.reject_unknown({"names", "prefix", "lock_duration_ms", "stalled_interval_ms",
                    "max_stalled_count", "max_handbacks", "handback_delay_ms"});
  r.string_list("names", q.names);
  r.string("prefix", q.prefix, /*allow_empty=*/false);
  r.integer("lock_duration_ms", q.lock_duration_ms, 1);
  r.integer("stalled_interval_ms", q.stalled_interval_ms, 1);
  r.integer("max_stalled_count", q.max_stalled_count, 0);
  r.integer("max_handbacks", q.max_handbacks, 0);
  r.integer("handback_delay_ms", q.handback_delay_ms, 1);
  return r.get("names");
}

void read_health(const TableReader& r, HealthSettings& h) {
  r.reject_unknown({"enabled", "bind", "port"});
  r.boolean("enabled", h.enabled);
  r.string("bind", h.bind, /*allow_empty=*/false);
  r.port("port", h.port, /*allow_zero=*/true);
}

void read_limits(const TableReader& r, LimitSettings& l) {
  r.reject_unknown({"default_tier", "window_ms", "tiers"});
  r.integer("window_ms", l.window_ms, 1);
  if (const toml::table* t = r.subtable("tiers")) {
    const TableReader tiers(*t, r.key("tiers"), r.diag());
    for (auto&& [k, v] : *t) {
      const std::string name(k.str());
      if (const auto* s = v.as_string(); s && s->get() == "unlimited") {
        l.per_window[name] = std::nullopt;
        continue;
      }
      // 0 is refused too: a tier that may never run would hold its jobs in
      // delayed forever instead of failing anything visibly.
      uint32_t limit = 0;
      if (tiers.integer(name, limit, 1, UINT32_MAX,
                        R"(a positive integer (checks per window) or "unlimited")")) {
        l.per_window[name] = limit;
      }
    }
  }
  // Checked after the tiers so that a tier defined in this file may be used.
  if (const toml::node* node = r.get("default_tier")) {
    const auto* s = node->as_string();
    if (s && l.per_window.contains(s->get())) {
      l.default_tier = s->get();
    } else {
      std::vector<std::string_view> names;
      std::string list;
      for (const auto& [name, limit] : l.per_window) {
        names.push_back(name);
        list += (list.empty() ? "" : ", ") + name;
      }
      std::string message =
          "expected the name of a tier in limits.tiers (" + list + "), got " + describe(*node);
      if (s) {
        if (auto hint = suggest(s->get(), names); !hint.empty()) {
          message += "; did you mean \"" + std::string(hint) + "\"?";
        }
      }
      r.diag().at(node->source(), r.key("default_tier"), message);
    }
  }
}

void read_results(const TableReader& r, ResultSettings& s) {
  r.reject_unknown({"jsonl", "spool_path", "stream", "status"});
  r.string("jsonl", s.jsonl_path);
  r.string("spool_path", s.spool_path);
  if (const toml::table* t = r.subtable("stream")) {
    const TableReader stream(*t, r.key("stream"), r.diag());
    stream.reject_unknown({"enabled", "key", "maxlen"});
    stream.boolean("enabled", s.stream_enabled);
    stream.string("key", s.stream_key, /*allow_empty=*/false);
    stream.integer("maxlen", s.stream_maxlen, 1);
  }
  if (const toml::table* t = r.subtable("status")) {
    const TableReader status(*t, r.key("status"), r.diag());
    status.reject_unknown({"enabled", "prefix"});
    status.boolean("enabled", s.status_enabled);
    status.string("prefix", s.status_prefix, /*allow_empty=*/false);
  }
}

void read_monitors(const TableReader& root, std::vector<MonitorSettings>& monitors) {
  const toml::node* node = root.get("monitor");
  if (!node) return;
  const auto* array = node->as_array();
  if (!array) {
    root.wrong("monitor", *node, "an array of tables (write [[monitor]], not [monitor])");
    return;
  }
  Diagnostics& diag = root.diag();
  std::map<std::string, int64_t, std::less<>> first_line;  // id -> where it was declared
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = *array->get(i);
    const std::string path = "monitor[" + std::to_string(i) + "]";
    const auto* table = element.as_table();
    if (!table) {
      diag.at(element.source(), path, "expected a table, got " + describe(element));
      continue;
    }
    const TableReader r(*table, path, diag);
    r.reject_unknown({"id", "type", "target", "interval", "timeout_ms", "nest_id", "config"});
    MonitorSettings m;
    m.line = table->source().begin.line;
    bool ok = true;
    const auto required = [&](std::string_view name, std::string& out, std::string_view what) {
      if (!r.get(name)) {
        r.missing(name, what);
        ok = false;
      } else {
        ok = r.string(name, out, /*allow_empty=*/false) && ok;
      }
    };
    required("id", m.id, "a unique, non-empty string naming this monitor");
    required("type", m.type, R"(the probe type, e.g. "tcp" or "http")");
    required("target", m.target, R"(what to check, e.g. "127.0.0.1:3099")");
    r.interval("interval", m.interval);
    r.integer("timeout_ms", m.timeout_ms, 0);
    r.string("nest_id", m.nest_id);
    if (const toml::table* config = r.subtable("config")) {
      boost::json::value json;
      if (to_json(*config, r.key("config"), diag, json)) {
        m.config_json = boost::json::serialize(json);
      }
    }
    if (!m.id.empty()) {
      if (auto it = first_line.find(m.id); it != first_line.end()) {
        diag.at(r.get("id")->source(), r.key("id"),
                "duplicate monitor id " + quote(m.id) + " (first declared at line " +
                    std::to_string(it->second) + ", again at line " + std::to_string(m.line) + ")");
        ok = false;
      } else {
        first_line.emplace(m.id, m.line);
      }
    }
    if (ok) monitors.push_back(std::move(m));
  }
}

// A syntax error's description may quote part of the offending value (toml++
// says e.g. "expected 'true', saw 'tru'"); on a line that holds a password
// that part could be the secret.
bool line_mentions_password(std::string_view text, uint64_t line) {
  uint64_t current = 1;
  size_t start = 0;
  while (current < line && start < text.size()) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return false;
    start = nl + 1;
    ++current;
  }
  std::string lower(text.substr(start, text.find('\n', start) - start));
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.find("password") != std::string::npos;
}

Result<Config> parse_impl(std::string_view text, const std::string& name,
                          const std::string& source_path, const EnvLookup& env) {
  Diagnostics diag(name);
  Config config;
  config.source_path = source_path;

  toml::table root;
  bool parsed = false;
  try {
    root = toml::parse(text, std::string_view(name));
    parsed = true;
  } catch (const toml::parse_error& e) {
    std::string description(e.description());
    if (line_mentions_password(text, e.source().begin.line)) {
      description = "malformed line (details withheld because it holds a password)";
    } else if (description.starts_with("Error")) {
      description[0] = 'e';
    }
    diag.syntax(e.source(), description);
  }

  bool names_set = false;
  const toml::node* mode_node = nullptr;
  if (parsed) {
    const TableReader r(root, "", diag);
    r.reject_unknown({"mode", "worker", "log", "plugins", "redis", "queue", "health", "limits",
                      "results", "monitor"});
    std::string mode;
    if (read_enum(r, "mode", {"standalone", "queue"}, mode)) {
      config.mode = mode == "queue" ? WorkerMode::Queue : WorkerMode::Standalone;
    }
    mode_node = r.get("mode");

    std::error_code ec;
    fs::path base_dir = fs::absolute(fs::path(name), ec).parent_path();
    if (ec) base_dir = fs::path(name).parent_path();

    const auto section = [&](std::string_view key, auto&& read) {
      if (const toml::table* t = r.subtable(key)) read(TableReader(*t, std::string(key), diag));
    };
    section("worker", [&](const TableReader& s) { read_worker(s, config.worker); });
    section("log", [&](const TableReader& s) { read_log(s, config.log); });
    section("plugins", [&](const TableReader& s) { read_plugins(s, base_dir, config.plugins); });
    section("redis", [&](const TableReader& s) { read_redis(s, config.redis); });
    section("queue", [&](const TableReader& s) { names_set = read_queue(s, config.queue); });
    section("health", [&](const TableReader& s) { read_health(s, config.health); });
    section("limits", [&](const TableReader& s) { read_limits(s, config.limits); });
    section("results", [&](const TableReader& s) { read_results(s, config.results); });
    read_monitors(r, config.monitors);

    if (config.mode == WorkerMode::Queue) {
      // In queue mode the queues decide which jobs this node takes; a silent
      // default could have it compete for another fleet's work.
      if (!names_set) {
        const toml::node* queue = root.get("queue");
        diag.at(queue ? queue->source() : mode_node->source(), "queue.names",
                "required key is missing (expected the queues to consume in queue mode, "
                R"(e.g. ["monitoring"]))");
      } else if (config.queue.names.empty()) {
        diag.at(root["queue"]["names"].node()->source(), "queue.names",
                "expected at least one queue name in queue mode, got an empty array");
      }
      if (const toml::node* monitors = root.get("monitor")) {
        diag.at(monitors->source(), "monitor",
                R"(monitors run only in standalone mode, but mode is "queue" (jobs come )"
                R"(from the queue); remove the [[monitor]] tables or set mode = "standalone")");
      }
    } else {
      // A standalone node is useless if a monitor's probe is missing, so the
      // plugin layer must refuse to start rather than skip the monitor.
      for (const auto& m : config.monitors) {
        auto& req = config.plugins.required;
        if (std::find(req.begin(), req.end(), m.type) == req.end()) req.push_back(m.type);
      }
    }
  }

  apply_env_overrides(config, env, diag);

  if (config.worker.id.empty()) config.worker.id = host_name();
  // "{region}" lets one file serve every region; expanded after the env so
  // WORKER_REGION takes part.
  for (auto& queue : config.queue.names) {
    for (size_t pos = queue.find("{region}"); pos != std::string::npos;
         pos = queue.find("{region}", pos + config.worker.region.size())) {
      queue.replace(pos, 8, config.worker.region);
    }
  }

  if (!diag.empty()) {
    std::vector<std::string> secrets{config.redis.password};
    if (env) {
      if (auto p = env("REDIS_PASSWORD")) secrets.push_back(*p);
    }
    return Result<Config>::failure(kInvalidConfig, diag.message(secrets));
  }
  return config;
}

}  // namespace

Result<Config> parse_config(const std::string& toml_text, const std::string& name,
                            const EnvLookup& env) {
  try {
    return parse_impl(toml_text, name, "", env);
  } catch (const std::exception& e) {
    return Result<Config>::failure(kInvalidConfig, name + ": " + e.what());
  }
}

Result<Config> load_config(const std::string& path, const EnvLookup& env) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return Result<Config>::failure("config_unreadable",
                                   "cannot read config file " + path + ": it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Result<Config>::failure("config_unreadable",
                                   "cannot read config file " + path + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return Result<Config>::failure("config_unreadable",
                                   "cannot read config file " + path + ": read error");
  }
  try {
    return parse_impl(text.str(), path, path, env);
  } catch (const std::exception& e) {
    return Result<Config>::failure(kInvalidConfig, path + ": " + e.what());
  }
}

}  // namespace guardant::engine
