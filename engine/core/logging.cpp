#include "core/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace guardant::engine {
namespace {
std::mutex g_mutex;
spdlog::level::level_enum g_level = spdlog::level::info;
LogFormat g_format = LogFormat::Text;

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

void apply(spdlog::logger& l) {
  l.set_level(g_level);
  if (g_format == LogFormat::Json)
    l.set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","facility":"%n","msg":"%v"})");
  else
    l.set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
}
}  // namespace

bool parse_log_level(const std::string& text, spdlog::level::level_enum& out) {
  static const std::pair<const char*, spdlog::level::level_enum> names[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (auto& [n, l] : names)
    if (text == n) {
      out = l;
      return true;
    }
  return false;
}

void configure_logging(const std::string& level, LogFormat format) {
  std::lock_guard lock(g_mutex);
  spdlog::level::level_enum l;
  if (parse_log_level(level, l)) g_level = l;
  g_format = format;
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& lg) { apply(*lg); });
}

std::shared_ptr<spdlog::logger> logger(const std::string& facility) {
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(facility)) return existing;
  auto l = std::make_shared<spdlog::logger>(facility, shared_sink());
  apply(*l);
  spdlog::register_logger(l);
  return l;
}

}  // namespace guardant::engine
