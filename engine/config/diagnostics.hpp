// Internal to engine_config: collects every problem found in one config so an
// operator can fix them all in one go instead of one restart per mistake.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace guardant::engine::config_detail {

class Diagnostics {
 public:
  explicit Diagnostics(std::string file_name) : file_(std::move(file_name)) {}

  // "<file>:<line>:<column>: <key>: <message>"; the position is left out when
  // toml++ has none (e.g. for defaults that were never in the file).
  void at(const toml::source_region& where, std::string_view key, std::string_view message);
  // A TOML syntax error: there is no key yet, only a position.
  void syntax(const toml::source_region& where, std::string_view description);
  // "<VARIABLE>: <message>" for environment overrides.
  void env(std::string_view variable, std::string_view message);
  // Errors that belong to no position (the file cannot be read).
  void plain(std::string_view message);

  bool empty() const { return entries_.empty(); }
  const std::string& file() const { return file_; }
  // All errors, ordered by position in the file (env errors last), one a line.
  // Every occurrence of each string in `secrets` is replaced by "***".
  std::string message(std::span<const std::string> secrets) const;

 private:
  struct Entry {
    uint64_t line;  // 0 = no position; sorted before the positioned ones
    uint64_t column;
    int group;  // 0 = file, 1 = environment
    std::string text;
  };
  std::string file_;
  std::vector<Entry> entries_;
};

// "worker" + "concurrency" -> "worker.concurrency"; keys that are not bare
// TOML keys are quoted ("limits.tiers.\"gold plan\"") so the path can be
// pasted back into the file.
std::string join_key(std::string_view parent, std::string_view key);

// What the user wrote, for "got ..." ("string \"ten\"", "integer 0",
// "an array"). `secret` leaves the value out, for the Redis password.
std::string describe(const toml::node& node, bool secret = false);

// A double-quoted, escaped and length-limited rendering of user text.
std::string quote(std::string_view text);

// Optimal string alignment distance (Levenshtein plus adjacent swaps).
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate the user most likely meant, or "" when none is close: edit
// distance <= 2, or the same name with/without a unit suffix ("timeout" ->
// "timeout_ms").
std::string_view suggest(std::string_view unknown, std::span<const std::string_view> candidates);

}  // namespace guardant::engine::config_detail
