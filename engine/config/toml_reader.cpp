#include "config/toml_reader.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace guardant::engine::config_detail {

namespace {
constexpr std::string_view kIntervalForms =
    R"(an interval (seconds as a number, or a string like "30s", "5m", "500ms"))";
constexpr std::string_view kIntervalRange = "an interval between 100ms and 24h";

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == start) return std::nullopt;
    if (i < text.size() && text[i] == '.') {
      ++i;
      const size_t fraction = i;
      while (i < text.size() && is_digit(text[i])) ++i;
      if (i == fraction) return std::nullopt;
    }
    const double number = std::stod(std::string(text.substr(start, i - start)));
    const std::string_view rest = text.substr(i);
    double unit_ms;
    if (rest.starts_with("ms")) {
      unit_ms = 1;
      i += 2;
    } else if (rest.starts_with("s")) {
      unit_ms = 1'000;
      i += 1;
    } else if (rest.starts_with("m")) {
      unit_ms = 60'000;
      i += 1;
    } else if (rest.starts_with("h")) {
      unit_ms = 3'600'000;
      i += 1;
    } else {
      return std::nullopt;  // a bare number is ambiguous in a string
    }
    total_ms += number * unit_ms;
  }
  // Clamp absurd values rather than overflow; the caller's range check
  // reports them.
  total_ms = std::min(total_ms, 1e15);
  return std::chrono::milliseconds(std::llround(total_ms));
}

std::string integer_expectation(int64_t min, int64_t max) {
  if (max == UINT32_MAX) {
    if (min == 0) return "a non-negative integer";
    if (min == 1) return "a positive integer";
    return "an integer of at least " + std::to_string(min);
  }
  return "an integer between " + std::to_string(min) + " and " + std::to_string(max);
}

void TableReader::reject_unknown(std::initializer_list<std::string_view> known) const {
  const std::span<const std::string_view> candidates(known.begin(), known.size());
  for (auto&& [k, v] : table_) {
    const std::string_view name = k.str();
    bool found = false;
    for (std::string_view c : known) found = found || c == name;
    if (found) continue;
    std::string message = "unknown key";
    if (auto hint = suggest(name, candidates); !hint.empty()) {
      message += "; did you mean '";
      message += hint;
      message += "'?";
    } else {
      message += " (known keys: ";
      bool first = true;
      for (std::string_view c : known) {
        if (!first) message += ", ";
        message += c;
        first = false;
      }
      message += ')';
    }
    diag_.at(k.source(), key(name), message);
  }
}

void TableReader::missing(std::string_view name, std::string_view expectation) const {
  std::string message = "required key is missing (expected ";
  message += expectation;
  message += ')';
  diag_.at(table_.source(), key(name), message);
}

void TableReader::wrong(std::string_view name, const toml::node& value,
                        std::string_view expectation, bool secret) const {
  std::string message = "expected ";
  message += expectation;
  message += ", got ";
  message += describe(value, secret);
  diag_.at(value.source(), key(name), message);
}

bool TableReader::string(std::string_view name, std::string& out, bool allow_empty) const {
  const toml::node* node = get(name);
  if (!node) return false;
  const auto* s = node->as_string();
  if (!s || (!allow_empty && s->get().empty())) {
    wrong(name, *node, allow_empty ? "a string" : "a non-empty string");
    return false;
  }
  out = s->get();
  return true;
}

bool TableReader::secret(std::string_view name, std::string& out) const {
  const toml::node* node = get(name);
  if (!node) return false;
  const auto* s = node->as_string();
  if (!s) {
    wrong(name, *node, "a string", /*secret=*/true);
    return false;
  }
  out = s->get();
  return true;
}

bool TableReader::boolean(std::string_view name, bool& out) const {
  const toml::node* node = get(name);
  if (!node) return false;
  const auto* b = node->as_boolean();
  if (!b) {
    wrong(name, *node, "true or false");
    return false;
  }
  out = b->get();
  return true;
}

bool TableReader::integer(std::string_view name, uint32_t& out, uint32_t min, uint32_t max,
                          std::string_view expectation) const {
  const toml::node* node = get(name);
  if (!node) return false;
  std::string expected =
      expectation.empty() ? integer_expectation(min, max) : std::string(expectation);
  const auto* i = node->as_integer();
  if (!i) {
    wrong(name, *node, expected);
    return false;
  }
  const int64_t v = i->get();
  if (v < min || v > max) {
    if (expectation.empty() && max == UINT32_MAX && v > max) {
      expected += " no larger than " + std::to_string(max);
    }
    wrong(name, *node, expected);
    return false;
  }
  out = static_cast<uint32_t>(v);
  return true;
}

bool TableReader::port(std::string_view name, uint16_t& out, bool allow_zero) const {
  uint32_t value = out;
  if (!integer(name, value, allow_zero ? 0 : 1, 65535,
               allow_zero ? "a port number between 0 and 65535 (0 = any free port)"
                          : "a port number between 1 and 65535")) {
    return false;
  }
  out = static_cast<uint16_t>(value);
  return true;
}

bool TableReader::string_list(std::string_view name, std::vector<std::string>& out) const {
  const toml::node* node = get(name);
  if (!node) return false;
  const auto* array = node->as_array();
  if (!array) {
    wrong(name, *node, "an array of strings");
    return false;
  }
  std::vector<std::string> values;
  bool ok = true;
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = *array->get(i);
    const auto* s = element.as_string();
    if (!s || s->get().empty()) {
      std::string message = "expected a non-empty string, got " + describe(element);
      diag_.at(element.source(), key(name) + '[' + std::to_string(i) + ']', message);
      ok = false;
      continue;
    }
    values.push_back(s->get());
  }
  if (!ok) return false;
  out = std::move(values);
  return true;
}

bool TableReader::interval(std::string_view name, std::chrono::milliseconds& out) const {
  const toml::node* node = get(name);
  if (!node) return false;
  std::optional<std::chrono::milliseconds> ms;
  if (const auto* i = node->as_integer()) {
    // Compare before multiplying so huge values cannot overflow.
    const int64_t seconds = i->get();
    ms = std::chrono::milliseconds(seconds > kMaxInterval.count() / 1000 ? kMaxInterval.count() + 1
                                                                         : seconds * 1000);
  } else if (const auto* f = node->as_floating_point()) {
    const double seconds = f->get();
    if (std::isfinite(seconds)) {
      ms = std::chrono::milliseconds(std::llround(std::clamp(seconds, -1e12, 1e12) * 1000));
    }
  } else if (const auto* s = node->as_string()) {
    ms = parse_duration(s->get());
  }
  if (!ms) {
    wrong(name, *node, kIntervalForms);
    return false;
  }
  if (*ms < kMinInterval || *ms > kMaxInterval) {
    wrong(name, *node, kIntervalRange);
    return false;
  }
  out = *ms;
  return true;
}

const toml::table* TableReader::subtable(std::string_view name) const {
  const toml::node* node = get(name);
  if (!node) return nullptr;
  const auto* t = node->as_table();
  if (!t) {
    std::string expected = "a table ([" + key(name) + "])";
    wrong(name, *node, expected);
    return nullptr;
  }
  return t;
}

}  // namespace guardant::engine::config_detail
