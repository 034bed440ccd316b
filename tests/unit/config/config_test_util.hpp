// Helpers shared by the config tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "config/config.hpp"

namespace guardant::engine::testing {

inline EnvLookup no_env() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

inline EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// Parses `toml` as "worker.toml"; fails the test if it does not parse.
inline Config parse_ok(const std::string& toml, const EnvLookup& env = no_env()) {
  auto result = parse_config(toml, "worker.toml", env);
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
  return result.ok() ? result.value() : Config{};
}

// Parses `toml` as "worker.toml" and returns the error message; fails the
// test if it parses.
inline std::string parse_error(const std::string& toml, const EnvLookup& env = no_env()) {
  auto result = parse_config(toml, "worker.toml", env);
  EXPECT_FALSE(result.ok()) << "expected an error for:\n" << toml;
  if (result.ok()) return {};
  EXPECT_EQ(result.error().code, "invalid_config");
  return result.error().message;
}

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("guardant-config-" + std::string(info->test_suite_name()) + "-" + info->name() + "-" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace guardant::engine::testing
