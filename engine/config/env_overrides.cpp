#include "config/env_overrides.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

#include "core/logging.hpp"

namespace guardant::engine {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

namespace config_detail {
namespace {

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<uint32_t> parse_uint(std::string_view text, uint32_t min, uint32_t max) {
  text = trim(text);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return static_cast<uint32_t>(value);
}

class EnvReader {
 public:
  EnvReader(const EnvLookup& env, Diagnostics& diag) : env_(env), diag_(diag) {}

  // Unset and empty are the same: `FOO=` in a compose file means "no override".
  std::optional<std::string> get(const char* name) const {
    auto value = env_(name);
    if (!value || value->empty()) return std::nullopt;
    return value;
  }

  void bad(const char* name, std::string_view expectation, const std::string& value) const {
    std::string message = "expected ";
    message += expectation;
    message += ", got ";
    message += quote(value);
    diag_.env(name, message);
  }

  void text(const char* name, std::string& out) const {
    auto value = get(name);
    if (!value) return;
    const std::string_view trimmed = trim(*value);
    if (trimmed.empty()) return bad(name, "a non-empty value", *value);
    out = trimmed;
  }

  void number(const char* name, uint32_t& out, uint32_t min, uint32_t max,
              std::string_view expectation) const {
    auto value = get(name);
    if (!value) return;
    if (auto n = parse_uint(*value, min, max)) {
      out = *n;
    } else {
      bad(name, expectation, *value);
    }
  }

  void port(const char* name, uint16_t& out, bool allow_zero) const {
    uint32_t value = out;
    number(name, value, allow_zero ? 0 : 1, 65535,
           allow_zero ? "a port number between 0 and 65535 (0 = any free port)"
                      : "a port number between 1 and 65535");
    out = static_cast<uint16_t>(value);
  }

 private:
  const EnvLookup& env_;
  Diagnostics& diag_;
};

}  // namespace

bool normalize_log_level(std::string& level) {
  std::string lower = level;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  spdlog::level::level_enum parsed;
  if (!parse_log_level(lower, parsed)) return false;
  level = std::move(lower);
  return true;
}

void apply_env_overrides(Config& config, const EnvLookup& env, Diagnostics& diag) {
  if (!env) return;
  const EnvReader r(env, diag);

  r.text("REDIS_HOST", config.redis.host);
  r.port("REDIS_PORT", config.redis.port, /*allow_zero=*/false);
  // Taken verbatim (spaces may be part of a password) and never validated,
  // so it can never be echoed in a message.
  if (auto password = r.get("REDIS_PASSWORD")) config.redis.password = *password;

  r.text("WORKER_ID", config.worker.id);
  r.text("WORKER_REGION", config.worker.region);
  r.number("WORKER_CONCURRENCY", config.worker.concurrency, 1, UINT32_MAX, "a positive integer");

  if (auto caps = r.get("WORKER_CAPABILITIES")) {
    std::vector<std::string> list;
    std::string_view rest = *caps;
    while (true) {
      const size_t comma = rest.find(',');
      const std::string_view item = trim(rest.substr(0, comma));
      if (!item.empty() && std::find(list.begin(), list.end(), item) == list.end()) {
        list.emplace_back(item);
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (list.empty()) {
      r.bad("WORKER_CAPABILITIES", R"(a comma-separated list of probe types like "http,tcp")",
            *caps);
    } else {
      config.worker.capabilities = std::move(list);
    }
  }

  r.port("HEALTH_PORT", config.health.port, /*allow_zero=*/true);

  if (auto level = r.get("LOG_LEVEL")) {
    std::string normalized(trim(*level));
    if (normalize_log_level(normalized)) {
      config.log.level = normalized;
    } else {
      r.bad("LOG_LEVEL", "one of " + std::string(kLogLevels), *level);
    }
  }
}

}  // namespace config_detail
}  // namespace guardant::engine
