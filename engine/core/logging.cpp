#include "core/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>
#include <mutex>
#include <string_view>

namespace guardant::engine {
namespace {
std::mutex g_mutex;
spdlog::level::level_enum g_level = spdlog::level::info;
LogFormat g_format = LogFormat::Text;

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

// `%*` in the JSON pattern: the message with JSON string escaping, so a
// quote or newline in a log line cannot break the object.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      const char* esc = nullptr;
      switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
      }
      if (esc) {
        dest.append(std::string_view(esc));
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
        dest.append(std::string_view(buf));
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

void apply(spdlog::logger& l) {
  l.set_level(g_level);
  if (g_format == LogFormat::Json) {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","facility":"%n","msg":"%*"})");
    l.set_formatter(std::move(f));
  } else {
    l.set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
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
