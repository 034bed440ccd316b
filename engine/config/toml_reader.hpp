// Internal to engine_config: typed access to one TOML table. Every getter
// leaves the default in place when the key is absent and reports (rather than
// throws) when it is present but wrong, so that one pass finds every error.
#pragma once

#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/diagnostics.hpp"

namespace guardant::engine::config_detail {

inline constexpr std::chrono::milliseconds kMinInterval{100};
inline constexpr std::chrono::milliseconds kMaxInterval{24 * 60 * 60 * 1000};

// "30s", "5m", "500ms", "1h", "1m30s", "1.5s" -> milliseconds (rounded).
// nullopt when the text is not such a duration.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, Diagnostics& diag)
      : table_(table), path_(std::move(path)), diag_(diag) {}

  const toml::table& table() const { return table_; }
  const std::string& path() const { return path_; }
  Diagnostics& diag() const { return diag_; }
  // The full dotted key of a child ("worker" + "id" -> "worker.id").
  std::string key(std::string_view name) const { return join_key(path_, name); }
  const toml::node* get(std::string_view name) const { return table_.get(name); }

  // Reports every key not in `known`, with a "did you mean" hint.
  void reject_unknown(std::initializer_list<std::string_view> known) const;
  // Reports a missing key at the table's own position.
  void missing(std::string_view name, std::string_view expectation) const;
  // Reports a present key's value: "<key>: expected <expectation>, got <what>".
  void wrong(std::string_view name, const toml::node& value, std::string_view expectation,
             bool secret = false) const;

  // Each returns true when the key was present and valid (and `out` set).
  bool string(std::string_view name, std::string& out, bool allow_empty = true) const;
  // Like string(), but the value never appears in a message.
  bool secret(std::string_view name, std::string& out) const;
  bool boolean(std::string_view name, bool& out) const;
  // An integer in [min, max]; `expectation` overrides the derived wording.
  bool integer(std::string_view name, uint32_t& out, uint32_t min, uint32_t max = UINT32_MAX,
               std::string_view expectation = {}) const;
  bool port(std::string_view name, uint16_t& out, bool allow_zero) const;
  // An array of non-empty strings.
  bool string_list(std::string_view name, std::vector<std::string>& out) const;
  // Seconds as a number, or a duration string; within [kMinInterval, kMaxInterval].
  bool interval(std::string_view name, std::chrono::milliseconds& out) const;
  // A sub-table, or nullptr (reported when present but not a table).
  const toml::table* subtable(std::string_view name) const;

 private:
  const toml::table& table_;
  std::string path_;
  Diagnostics& diag_;
};

// "a positive integer", "a non-negative integer", "an integer between 1 and 9".
std::string integer_expectation(int64_t min, int64_t max);

}  // namespace guardant::engine::config_detail
