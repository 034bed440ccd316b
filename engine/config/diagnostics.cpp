#include "config/diagnostics.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <tuple>

namespace guardant::engine::config_detail {

void Diagnostics::at(const toml::source_region& where, std::string_view key,
                     std::string_view message) {
  std::string text = file_;
  if (where.begin.line != 0) {
    text += ':' + std::to_string(where.begin.line) + ':' + std::to_string(where.begin.column);
  }
  text += ": ";
  if (!key.empty()) {
    text += key;
    text += ": ";
  }
  text += message;
  entries_.push_back({where.begin.line, where.begin.column, 0, std::move(text)});
}

void Diagnostics::syntax(const toml::source_region& where, std::string_view description) {
  std::string message = "invalid TOML: ";
  message += description;
  at(where, "", message);
}

void Diagnostics::env(std::string_view variable, std::string_view message) {
  std::string text(variable);
  text += ": ";
  text += message;
  entries_.push_back({0, 0, 1, std::move(text)});
}

void Diagnostics::plain(std::string_view message) {
  entries_.push_back({0, 0, 0, std::string(message)});
}

std::string Diagnostics::message(std::span<const std::string> secrets) const {
  std::vector<const Entry*> sorted;
  for (const auto& e : entries_) sorted.push_back(&e);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->group, a->line, a->column) < std::tie(b->group, b->line, b->column);
  });
  std::string out;
  for (const Entry* e : sorted) {
    if (!out.empty()) out += '\n';
    out += e->text;
  }
  // Defence in depth: no code path formats the password, but a secret must
  // not reach a log even if one is added later.
  // Shorter strings are skipped: they match ordinary words and would garble
  // the message without protecting anything.
  for (const auto& secret : secrets) {
    if (secret.size() < 4) continue;
    for (size_t pos = out.find(secret); pos != std::string::npos; pos = out.find(secret, pos + 3)) {
      out.replace(pos, secret.size(), "***");
    }
  }
  return out;
}

namespace {
bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}
}  // namespace

std::string join_key(std::string_view parent, std::string_view key) {
  std::string out(parent);
  if (!out.empty()) out += '.';
  if (is_bare_key(key)) {
    out += key;
  } else {
    out += quote(key);
  }
  return out;
}

std::string quote(std::string_view text) {
  constexpr size_t kMax = 60;  // a pasted blob should not flood the message
  std::string out = "\"";
  size_t shown = 0;
  for (char c : text) {
    if (shown++ == kMax) {
      out += "...";
      break;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string describe(const toml::node& node, bool secret) {
  std::ostringstream os;
  switch (node.type()) {
    case toml::node_type::string:
      if (secret) return "a string (value hidden)";
      return "string " + quote(node.as_string()->get());
    case toml::node_type::integer:
      if (secret) return "an integer (value hidden)";
      return "integer " + std::to_string(node.as_integer()->get());
    case toml::node_type::floating_point:
      if (secret) return "a float (value hidden)";
      os << "float " << *node.as_floating_point();
      return os.str();
    case toml::node_type::boolean:
      if (secret) return "a boolean (value hidden)";
      return node.as_boolean()->get() ? "boolean true" : "boolean false";
    case toml::node_type::date:
      if (secret) return "a date (value hidden)";
      os << "date " << *node.as_date();
      return os.str();
    case toml::node_type::time:
      if (secret) return "a time (value hidden)";
      os << "time " << *node.as_time();
      return os.str();
    case toml::node_type::date_time:
      if (secret) return "a date-time (value hidden)";
      os << "date-time " << *node.as_date_time();
      return os.str();
    case toml::node_type::array:
      return node.as_array()->empty() ? "an empty array" : "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::string_view suggest(std::string_view unknown, std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = 3;  // only suggest at distance <= 2
  for (std::string_view c : candidates) {
    const size_t d = edit_distance(unknown, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  if (!best.empty()) return best;
  // "timeout" for "timeout_ms", "interval_ms" for "interval": the unit
  // suffix alone puts these beyond distance 2 but the intent is obvious.
  for (std::string_view c : candidates) {
    for (std::string_view suffix : {"_ms", "_s", "_sec", "_seconds"}) {
      if (c.size() == unknown.size() + suffix.size() && c.starts_with(unknown) &&
          c.ends_with(suffix)) {
        return c;
      }
      if (unknown.size() == c.size() + suffix.size() && unknown.starts_with(c) &&
          unknown.ends_with(suffix)) {
        return c;
      }
    }
  }
  return {};
}

}  // namespace guardant::engine::config_detail
