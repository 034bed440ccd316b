// guardant/fake_host.hpp, driven through a small plugin compiled into this
// test (GUARDANT_PLUGIN below) and through the raw C host API.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <guardant/fake_host.hpp>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/netns_dns.hpp"

using guardant::Check;
using guardant::Host;
using guardant::Request;
using guardant::Result;
using guardant::Status;
using guardant::testing::FakeHost;
using namespace std::chrono_literals;
namespace json = guardant::json;

namespace {

// Completes "up" after options.ms on a host timer.
class SleepCheck final : public Check {
 public:
  explicit SleepCheck(Request r)
      : Check(std::move(r)),
        ms_(guardant::json::Options::parse(request().config_json).integer("ms", 10, 0, 3600000)) {}
  void start() override {
    t0_ = Host::now_ns();
    timer_.start(ms_ * 1000000, [this] {
      double took = static_cast<double>(Host::now_ns() - t0_) / 1e6;
      Result r = Result::up(took, "slept");
      guardant::json::JsonWriter w;
      w.field("ms", ms_);
      r.details_json = w.str();
      complete(r);
    });
  }

 private:
  int64_t ms_;
  int64_t t0_ = 0;
  guardant::Timer timer_{this};
};

// Completes from a thread of its own (allowed: complete is any-thread).
class ThreadCheck final : public Check {
 public:
  using Check::Check;
  void start() override {
    std::thread([this] {
      std::this_thread::sleep_for(20ms);
      complete(Result::up(20, "from a plugin thread"));
    }).detach();
  }
};

// Posts from a thread of its own to the loop, then completes on the loop.
class PostCheck final : public Check {
 public:
  using Check::Check;
  void start() override {
    auto loop = std::this_thread::get_id();
    std::thread([this, loop] {
      Host::post([this, loop] {
        bool on_loop = std::this_thread::get_id() == loop;
        complete(on_loop ? Result::up(0, "posted") : Result::inconclusive("not on the loop"));
      });
    }).detach();
  }
};

// Never completes by itself; the default on_cancel releases the handle.
class NeverCheck final : public Check {
 public:
  using Check::Check;
  void start() override {
    timer_.start(3600'000'000'000, [] {});
  }

 private:
  guardant::Timer timer_{this};
};

class ThrowCheck final : public Check {
 public:
  using Check::Check;
  void start() override { throw std::runtime_error("boom"); }
};

// Resolves the target through the host and reports what came back.
class ResolveCheck final : public Check {
 public:
  using Check::Check;
  void start() override {
    auto opts = guardant::json::Options::parse(request().config_json);
    int family = static_cast<int>(opts.integer("family", 0));
    resolve_.start(request().target, family, [this](const guardant::Resolution& r) {
      if (!r.ok) {
        complete(Result::down(r.error_reason, "resolve", r.error_detail));
        return;
      }
      guardant::json::JsonWriter w;
      w.begin_array("addresses");
      for (const auto& a : r.addresses) w.element(a.text);
      w.end_array();
      Result res = Result::up(r.elapsed_ms, "resolved");
      res.details_json = w.str();
      complete(res);
    });
  }

 private:
  guardant::Resolve resolve_{this};
};

// A probe type written against the C ABI directly, completing twice.
guardant_rc twice_start(void*, guardant_check* check, const guardant_check_request*, void**, char*,
                        size_t) {
  const guardant_host_api* api = Host::api();
  guardant_check_result r{};
  r.struct_size = sizeof r;
  r.abi_major = GUARDANT_ABI_MAJOR;
  r.abi_minor = GUARDANT_ABI_MINOR;
  r.status = GUARDANT_STATUS_UP;
  r.details_json = "{\"not json";
  api->complete(api->host, check, &r);
  api->complete(api->host, check, &r);  // a bug the host must count, not crash on
  return GUARDANT_OK;
}

guardant_probe_type twice_type() {
  guardant_probe_type t{};
  t.struct_size = sizeof t;
  t.abi_major = GUARDANT_ABI_MAJOR;
  t.abi_minor = GUARDANT_ABI_MINOR;
  t.name = "twice";
  t.start_check = &twice_start;
  return t;
}

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"guardant-sdk-test", "9.9.9", "probes for the SDK tests"}),
                guardant::probe_type<SleepCheck>("sleep", "waits", 0),
                guardant::probe_type<ThreadCheck>("thread", "completes from a thread",
                                                  GUARDANT_CAP_OWN_THREADS),
                guardant::probe_type<PostCheck>("post", "posts from a thread",
                                                GUARDANT_CAP_OWN_THREADS),
                guardant::probe_type<NeverCheck>("never", "never completes", 0),
                guardant::probe_type<ThrowCheck>("throw", "throws", 0),
                guardant::probe_type<ResolveCheck>("resolve", "resolves", 0), twice_type())

namespace {

class SdkFakeHost : public ::testing::Test {
 protected:
  void SetUp() override {
    desc_ = host_.init(&guardant_plugin_init);
    ASSERT_NE(desc_, nullptr) << host_.last_error();
  }
  void ExpectNothingOutstanding() {
    EXPECT_EQ(host_.outstanding_timers(), 0u);
    EXPECT_EQ(host_.outstanding_watches(), 0u);
    EXPECT_EQ(host_.outstanding_resolves(), 0u);
    EXPECT_EQ(host_.outstanding_checks(), 0u);
  }
  FakeHost host_;
  const guardant_plugin_desc* desc_ = nullptr;
};

}  // namespace

TEST_F(SdkFakeHost, InitReturnsTheDescriptor) {
  EXPECT_STREQ(desc_->name, "guardant-sdk-test");
  EXPECT_STREQ(desc_->version, "9.9.9");
  EXPECT_EQ(desc_->probe_type_count, 7u);
  EXPECT_EQ(desc_->abi_major, GUARDANT_ABI_MAJOR);
}

TEST_F(SdkFakeHost, RunsATimerProbe) {
  auto r = host_.run_check("sleep", "x", R"({"ms":30})", 5s);
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_TRUE(r.completed);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Up);
  EXPECT_GE(r.response_time_ms, 30.0);
  EXPECT_LT(r.response_time_ms, 2000.0);
  EXPECT_EQ(r.details()["ms"].as_int64(), 30);
  ExpectNothingOutstanding();
  EXPECT_TRUE(host_.violations().empty());
}

TEST_F(SdkFakeHost, ManualClockSkipsAheadToTheNextTimer) {
  host_.use_manual_clock();
  auto real0 = std::chrono::steady_clock::now();
  auto r = host_.run_check("sleep", "x", R"({"ms":30000})", 60s);
  EXPECT_LT(std::chrono::steady_clock::now() - real0, 5s);
  EXPECT_EQ(r.status, Status::Up);
  EXPECT_DOUBLE_EQ(r.response_time_ms, 30000.0);
  EXPECT_DOUBLE_EQ(r.elapsed_ms, 30000.0);
  ExpectNothingOutstanding();
}

TEST_F(SdkFakeHost, CompleteFromAPluginThread) {
  auto r = host_.run_check("thread", "x", "{}", 5s);
  EXPECT_TRUE(r.completed);
  EXPECT_EQ(r.status, Status::Up);
  EXPECT_EQ(r.message, "from a plugin thread");
  ExpectNothingOutstanding();
}

TEST_F(SdkFakeHost, PostFromAPluginThreadRunsOnTheLoop) {
  auto r = host_.run_check("post", "x", "{}", 5s);
  EXPECT_EQ(r.status, Status::Up) << r.message;
  ExpectNothingOutstanding();
}

TEST_F(SdkFakeHost, DeadlineCancelsAndCountsTheLateRelease) {
  auto r = host_.run_check("never", "x", "{}", 50ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.completed);
  EXPECT_TRUE(r.released);  // cancel_check made the C++ layer complete
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout");
  EXPECT_EQ(host_.late_completions(), 1u);
  ExpectNothingOutstanding();
  EXPECT_TRUE(host_.violations().empty());
}

TEST_F(SdkFakeHost, CancelWhileRunning) {
  uint64_t id = host_.start_check("never", "x", "{}", 10s);
  EXPECT_EQ(host_.outstanding_checks(), 1u);
  EXPECT_EQ(host_.outstanding_timers(), 1u);
  host_.cancel(id);
  host_.settle();
  auto r = host_.check_run(id);
  EXPECT_TRUE(r.released);
  EXPECT_EQ(r.status, Status::Inconclusive);
  ExpectNothingOutstanding();
}

TEST_F(SdkFakeHost, ThrowingProbeIsInconclusive) {
  auto r = host_.run_check("throw", "x", "{}", 5s);
  EXPECT_EQ(r.status, Status::Inconclusive);
  EXPECT_EQ(r.failure_reason, "worker_error");
  EXPECT_NE(r.failure_detail.find("boom"), std::string::npos);
}

TEST_F(SdkFakeHost, ConfigErrorRefusesTheCheck) {
  auto r = host_.run_check("sleep", "x", R"({"ms":"soon"})", 5s);
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
  EXPECT_EQ(r.start_error, "option 'ms' must be an integer, got string");
  EXPECT_EQ(host_.outstanding_checks(), 0u);
}

TEST_F(SdkFakeHost, UnknownProbeTypeIsRefused) {
  auto r = host_.run_check("nope", "x");
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_REFUSED);
  EXPECT_NE(r.start_error.find("nope"), std::string::npos);
}

TEST_F(SdkFakeHost, CountsADoubleCompletionAndFlagsInvalidDetails) {
  auto r = host_.run_check("twice", "x");
  EXPECT_EQ(r.status, Status::Up);
  EXPECT_EQ(host_.double_completions(), 1u);
  auto v = host_.violations();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_NE(v[0].find("details_json"), std::string::npos) << v[0];
  EXPECT_NE(v[1].find("more than once"), std::string::npos) << v[1];
}

TEST_F(SdkFakeHost, ResolvesNumericAddressesWithoutDns) {
  auto r = host_.run_check("resolve", "127.0.0.1");
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_EQ(json::serialize(r.details()), R"({"addresses":["127.0.0.1"]})");
  r = host_.run_check("resolve", "::1");
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_EQ(r.details()["addresses"].at(0).as_string(), "::1");
  ExpectNothingOutstanding();
}

TEST_F(SdkFakeHost, ResolveHonoursTheFamily) {
  auto r = host_.run_check("resolve", "127.0.0.1", R"({"family":6})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "dns_nxdomain");
  EXPECT_NE(r.failure_detail.find("IPv6"), std::string::npos) << r.failure_detail;
  r = host_.run_check("resolve", "localhost", R"({"family":4})");
  ASSERT_EQ(r.status, Status::Up) << r.message;
  for (const auto& a : r.details()["addresses"].as_array())
    EXPECT_NE(a.as_string().find('.'), std::string::npos) << a.as_string();
}

TEST(SdkFakeHostDns, UnknownNameIsNxdomain) {
  // In a namespace of the test's own with a fake DNS server: no query leaves
  // the machine.
  std::string skip = guardant::test::run_in_new_netns([] {
    guardant::test::FakeDns dns(guardant::test::FakeDns::Mode::Nxdomain);
    ASSERT_TRUE(dns.error().empty()) << dns.error();
    FakeHost host;
    ASSERT_NE(host.init(&guardant_plugin_init), nullptr) << host.last_error();
    auto r = host.run_check("resolve", "nothing.guardant.test", "{}", 10s);
    EXPECT_EQ(r.status, Status::Down);
    EXPECT_EQ(r.failure_reason, "dns_nxdomain") << r.failure_detail;
    EXPECT_EQ(host.outstanding_resolves(), 0u);
    EXPECT_GT(dns.queries(), 0u);
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST_F(SdkFakeHost, CapturesLogs) {
  Host::log(guardant::LogLevel::Warn, "hello from the plugin");
  EXPECT_TRUE(host_.logged("hello from the plugin"));
  auto logs = host_.logs();
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].level, guardant::LogLevel::Warn);
  EXPECT_EQ(logs[0].plugin, "guardant-sdk-test");
}

// --- the raw C API -----------------------------------------------------------

namespace {
struct Fired {
  std::vector<int>* order;
  int tag;
};
void record_fire(void* u) {
  auto* f = static_cast<Fired*>(u);
  f->order->push_back(f->tag);
}
}  // namespace

TEST(SdkFakeHostRaw, TimersFireInDueOrder) {
  FakeHost host;
  host.use_manual_clock();
  const guardant_host_api* api = host.raw_api();
  std::vector<int> order;
  Fired a{&order, 30}, b{&order, 10}, c{&order, 20}, d{&order, 11};
  api->timer_start(api->host, 30'000'000, &record_fire, &a);
  api->timer_start(api->host, 10'000'000, &record_fire, &b);
  api->timer_start(api->host, 20'000'000, &record_fire, &c);
  api->timer_start(api->host, 10'000'000, &record_fire, &d);  // same due: start order
  EXPECT_EQ(host.outstanding_timers(), 4u);
  host.advance(25ms);
  EXPECT_EQ(order, (std::vector<int>{10, 11, 20}));
  EXPECT_EQ(host.outstanding_timers(), 1u);
  host.advance(5ms);
  EXPECT_EQ(order, (std::vector<int>{10, 11, 20, 30}));
  EXPECT_EQ(host.outstanding_timers(), 0u);
}

TEST(SdkFakeHostRaw, RealClockTimersAndCancel) {
  FakeHost host;
  const guardant_host_api* api = host.raw_api();
  std::vector<int> order;
  Fired a{&order, 2}, b{&order, 1}, c{&order, 3};
  api->timer_start(api->host, 20'000'000, &record_fire, &a);
  api->timer_start(api->host, 5'000'000, &record_fire, &b);
  guardant_timer* t = api->timer_start(api->host, 10'000'000, &record_fire, &c);
  api->timer_cancel(api->host, t);
  int64_t t0 = api->monotonic_ns(api->host);
  EXPECT_TRUE(host.run_until([&] { return order.size() == 2; }, 2s));
  EXPECT_GE(api->monotonic_ns(api->host) - t0, 20'000'000);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_TRUE(host.violations().empty());
  api->timer_cancel(api->host, t);  // already cancelled: flagged, not a crash
  EXPECT_EQ(host.violations().size(), 1u);
}

TEST(SdkFakeHostRaw, PostFromManyThreads) {
  FakeHost host;
  const guardant_host_api* api = host.raw_api();
  std::atomic<int> ran{0};
  std::atomic<bool> off_loop{false};
  auto loop = std::this_thread::get_id();
  struct Ctx {
    std::atomic<int>* ran;
    std::atomic<bool>* off_loop;
    std::thread::id loop;
  } ctx{&ran, &off_loop, loop};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i)
        EXPECT_EQ(api->post(
                      api->host,
                      [](void* u) {
                        auto* c = static_cast<Ctx*>(u);
                        if (std::this_thread::get_id() != c->loop) *c->off_loop = true;
                        ++*c->ran;
                      },
                      &ctx),
                  GUARDANT_OK);
    });
  // The loop wakes up for posts: no busy polling needed.
  EXPECT_TRUE(host.run_until([&] { return ran.load() == 1000; }, 5s));
  for (auto& th : threads) th.join();
  host.settle();
  EXPECT_EQ(ran.load(), 1000);
  EXPECT_FALSE(off_loop.load());
}

TEST(SdkFakeHostRaw, LoopOnlyCallsFromAnotherThreadAreRefused) {
  FakeHost host;
  const guardant_host_api* api = host.raw_api();
  guardant_timer* t = reinterpret_cast<guardant_timer*>(1);
  std::thread([&] {
    t = api->timer_start(
        api->host, 1000, [](void*) {}, nullptr);
  }).join();
  EXPECT_EQ(t, nullptr);
  ASSERT_EQ(host.violations().size(), 1u);
  EXPECT_NE(host.violations()[0].find("timer_start called off the loop thread"), std::string::npos);
}

TEST(SdkFakeHostRaw, FdWatchIsLevelTriggered) {
  FakeHost host;
  const guardant_host_api* api = host.raw_api();
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  struct Ctx {
    int calls = 0;
    uint32_t events = 0;
  } ctx;
  guardant_fd_watch* w = api->fd_watch(
      api->host, sv[0], GUARDANT_FD_READ,
      [](void* u, int, uint32_t ev) {
        auto* c = static_cast<Ctx*>(u);
        ++c->calls;
        c->events = ev;
      },
      &ctx);
  ASSERT_NE(w, nullptr);
  host.run_once(0ms);
  EXPECT_EQ(ctx.calls, 0);
  ASSERT_EQ(write(sv[1], "x", 1), 1);
  host.run_once(100ms);
  host.run_once(100ms);  // not read: still ready, fires again
  EXPECT_EQ(ctx.calls, 2);
  EXPECT_EQ(ctx.events, GUARDANT_FD_READ);
  EXPECT_EQ(api->fd_watch_update(api->host, w, 0), GUARDANT_OK);  // paused
  host.run_once(10ms);
  EXPECT_EQ(ctx.calls, 2);
  EXPECT_EQ(host.outstanding_watches(), 1u);
  api->fd_unwatch(api->host, w);
  EXPECT_EQ(host.outstanding_watches(), 0u);
  close(sv[0]);
  close(sv[1]);
  EXPECT_TRUE(host.violations().empty());
}

TEST(SdkFakeHostRaw, ResolveCancelledBeforeItAnswers) {
  FakeHost host;
  const guardant_host_api* api = host.raw_api();
  bool called = false;
  guardant_resolve_op* op = api->resolve(
      api->host, "127.0.0.1", GUARDANT_FAMILY_ANY,
      [](void* u, const guardant_resolve_result*) { *static_cast<bool*>(u) = true; }, &called);
  ASSERT_NE(op, nullptr);
  EXPECT_FALSE(called);  // never inline
  EXPECT_EQ(host.outstanding_resolves(), 1u);
  api->resolve_cancel(api->host, op);
  EXPECT_EQ(host.outstanding_resolves(), 0u);
  host.settle();
  EXPECT_FALSE(called);
}

TEST(SdkFakeHostRaw, LoadReportsDlopenErrors) {
  FakeHost host;
  EXPECT_EQ(host.load("/nonexistent/probe_x.so"), nullptr);
  EXPECT_NE(host.last_error().find("/nonexistent/probe_x.so"), std::string::npos);
}

TEST(SdkFakeHostRaw, RefusesAPluginOfAnotherMajor) {
  FakeHost host;
  auto* desc = host.init([](const guardant_host_api*, char*, size_t) {
    static guardant_plugin_desc d{};
    d.struct_size = sizeof d;
    d.abi_major = GUARDANT_ABI_MAJOR + 1;
    d.name = "future";
    d.version = "1";
    return static_cast<const guardant_plugin_desc*>(&d);
  });
  EXPECT_EQ(desc, nullptr);
  EXPECT_NE(host.last_error().find("ABI major"), std::string::npos) << host.last_error();
}
