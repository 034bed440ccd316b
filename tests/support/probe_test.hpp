// A gtest fixture for probe plugins: loads the built .so into the SDK's fake
// host, and after each test checks that the probe handed everything back
// (timers, watches, resolves, checks) and kept the host contract.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <guardant/fake_host.hpp>
#include <string>
#include <utility>

namespace guardant::test {

class ProbeTest : public ::testing::Test {
 protected:
  ProbeTest(std::string plugin_path, std::string type, std::chrono::nanoseconds default_timeout)
      : plugin_path_(std::move(plugin_path)),
        type_(std::move(type)),
        default_timeout_(default_timeout) {}

  void SetUp() override {
    desc_ = host_.load(plugin_path_);
    ASSERT_NE(desc_, nullptr) << host_.last_error();
  }
  void TearDown() override {
    expect_nothing_outstanding("after the test");
    for (const auto& v : host_.violations()) ADD_FAILURE() << "host contract violation: " << v;
  }
  // Settles the host and asserts the C++ layer's RAII gave everything back.
  void expect_nothing_outstanding(const std::string& context) {
    host_.settle();
    EXPECT_EQ(host_.outstanding_timers(), 0u) << context;
    EXPECT_EQ(host_.outstanding_watches(), 0u) << context;
    EXPECT_EQ(host_.outstanding_resolves(), 0u) << context;
    EXPECT_EQ(host_.outstanding_checks(), 0u) << context;
  }
  guardant::testing::CheckRun run(const std::string& target, const std::string& config = "{}") {
    return run(target, config, default_timeout_);
  }
  guardant::testing::CheckRun run(const std::string& target, const std::string& config,
                                  std::chrono::nanoseconds timeout) {
    return host_.run_check(type_, target, config, timeout);
  }

  guardant::testing::FakeHost host_;
  const guardant_plugin_desc* desc_ = nullptr;

 private:
  std::string plugin_path_;
  std::string type_;
  std::chrono::nanoseconds default_timeout_;
};

}  // namespace guardant::test
