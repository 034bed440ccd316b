// The loader and the host API against real fixture plugins (.so files built
// by the test build): what loads, what is refused and with which words, and
// how misbehaving probes are contained.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "support/engine_harness.hpp"

namespace fs = std::filesystem;
using namespace guardant::engine;
using guardant::test::fixture;
using guardant::test::RealHarness;

namespace {

// A private temp dir (mode 0755, owned by us) for permission tests.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/guardant-plugins-XXXXXX";
    path = ::mkdtemp(tmpl);
    fs::permissions(path, fs::perms(0755));
  }
  ~TempDir() { fs::remove_all(path); }
  std::string copy(const std::string& from, const std::string& name) {
    auto to = path / name;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
    fs::permissions(to, fs::perms(0755));
    return to.string();
  }
};

std::string refusal_of(const PluginRegistry& r, const std::string& path) {
  for (auto& f : r.refusals())
    if (f.path == path) return f.reason;
  return "(not refused)";
}

std::optional<CheckResult> run_check(RealHarness& h, const std::string& type,
                                     const std::string& config = "{}",
                                     std::string* start_error = nullptr) {
  std::optional<CheckResult> out;
  CheckRequest req;
  req.check_id = "t:1";
  req.type = type;
  req.target = "example:1";
  req.config_json = config;
  req.deadline = h.clock.now() + std::chrono::seconds(5);
  req.timeout_ms = 5000;
  auto started = h.registry.start_check(req, [&](CheckResult r) { out = std::move(r); });
  if (!started) {
    if (start_error) *start_error = started.error().code + ": " + started.error().message;
    return std::nullopt;
  }
  h.run_until([&] { return out.has_value(); });
  return out;
}

}  // namespace

TEST(PluginLoader, LoadsAPluginWrittenInPlainC) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
  auto plugins = h.registry.plugins();
  ASSERT_EQ(plugins.size(), 1u);
  EXPECT_EQ(plugins[0].name, "fixture-c");
  EXPECT_EQ(plugins[0].version, "1.2.3");
  EXPECT_EQ(plugins[0].abi_major, GUARDANT_ABI_MAJOR);
  EXPECT_TRUE(h.registry.has_type("instant"));
  EXPECT_TRUE(h.registry.has_type("threaded"));

  auto r = run_check(h, "instant");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, CheckStatus::Up);
  EXPECT_EQ(r->message, "instant example:1");
  EXPECT_EQ(r->details_json, R"({"kind":"instant"})");
  ASSERT_TRUE(r->timings);
  EXPECT_DOUBLE_EQ(r->timings->connect, 0.25);
  EXPECT_LT(r->timings->resolve, 0);
}

TEST(PluginLoader, HostTimersAndCompletionFromAPluginThread) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
  auto delayed = run_check(h, "delayed", R"({"delay_ms": 20})");
  ASSERT_TRUE(delayed);
  EXPECT_EQ(delayed->message, "delayed ok");
  auto threaded = run_check(h, "threaded", R"({"delay_ms": 20})");
  ASSERT_TRUE(threaded);
  EXPECT_EQ(threaded->message, "threaded ok");
  EXPECT_EQ(h.registry.outstanding_checks(), 0u);
  EXPECT_EQ(h.registry.unload_idle(), 0u) << "an idle plugin must unload";
}

TEST(PluginLoader, FrozenV10PluginStillLoads) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_frozen")));
  auto r = run_check(h, "frozen");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, CheckStatus::Up);
}

TEST(PluginLoader, RefusesWrongAbiMajorNamingBothVersions) {
  RealHarness h;
  auto path = fixture("fixture_wrong_major");
  auto st = h.registry.load_file(path);
  ASSERT_FALSE(st);
  EXPECT_EQ(refusal_of(h.registry, path),
            "ABI major mismatch: plugin built for ABI 2.0, host provides ABI 1.0");
  EXPECT_TRUE(h.registry.plugins().empty());
}

TEST(PluginLoader, RefusesNewerRequiredMinor) {
  RealHarness h;
  auto path = fixture("fixture_newer_minor");
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_EQ(refusal_of(h.registry, path),
            "plugin requires host ABI 1.1 or newer, host provides ABI 1.0");
}

TEST(PluginLoader, RefusesMissingEntryPointBeforeLoading) {
  RealHarness h;
  auto path = fixture("fixture_no_entry");
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_EQ(refusal_of(h.registry, path),
            "missing entry point guardant_plugin_init (not a Guardant probe plugin?)");
}

TEST(PluginLoader, RefusesAFileThatIsNotElf) {
  RealHarness h;
  TempDir dir;
  auto path = (dir.path / "notes.so").string();
  std::ofstream(path) << "this is not a shared object\n";
  fs::permissions(path, fs::perms(0644));
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_NE(refusal_of(h.registry, path).find("not an ELF shared object"), std::string::npos)
      << refusal_of(h.registry, path);
}

TEST(PluginLoader, ReportsDlerrorForUnresolvedSymbols) {
  RealHarness h;
  auto path = fixture("fixture_unresolved");
  ASSERT_FALSE(h.registry.load_file(path));
  auto reason = refusal_of(h.registry, path);
  EXPECT_EQ(reason.rfind("dlopen failed: ", 0), 0u) << reason;
  EXPECT_NE(reason.find("undefined symbol: guardant_fixture_symbol_nobody_defines"),
            std::string::npos)
      << reason;
}

TEST(PluginLoader, RefusesWorldWritableFile) {
  RealHarness h;
  TempDir dir;
  auto path = dir.copy(fixture("fixture_good"), "good.so");
  fs::permissions(path, fs::perms(0666));
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_EQ(refusal_of(h.registry, path), "file is writable by group or others (mode 0666)");
}

TEST(PluginLoader, RefusesGroupWritableDirectory) {
  RealHarness h;
  TempDir dir;
  auto path = dir.copy(fixture("fixture_good"), "good.so");
  fs::permissions(dir.path, fs::perms(0775));
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_EQ(refusal_of(h.registry, path),
            "directory " + dir.path.string() + " is writable by group or others (mode 0775)");
}

TEST(PluginLoader, RefusesFileOwnedBySomeoneElse) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a file to another user";
  RealHarness h;
  TempDir dir;
  auto path = dir.copy(fixture("fixture_good"), "good.so");
  ASSERT_EQ(::chown(path.c_str(), 12345, 12345), 0);
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_EQ(refusal_of(h.registry, path),
            "file is owned by uid 12345, not root or the worker's user (uid 0)");
}

TEST(PluginLoader, RefusesDuplicateProbeType) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
  auto dup = fixture("fixture_duplicate");
  ASSERT_FALSE(h.registry.load_file(dup));
  EXPECT_EQ(refusal_of(h.registry, dup),
            "duplicate probe type 'instant': already provided by fixture-c (" +
                fixture("fixture_behaviours") + ")");
  // The first plugin keeps the type.
  EXPECT_EQ(h.registry.plugin_for("instant")->name, "fixture-c");
}

TEST(PluginLoader, InitFailureCarriesThePluginsReason) {
  RealHarness h;
  auto path = fixture("fixture_init_fails");
  ASSERT_FALSE(h.registry.load_file(path));
  EXPECT_EQ(refusal_of(h.registry, path),
            "init failed: cannot open /etc/fixture.conf: No such file or directory");
}

TEST(PluginLoader, ScanLoadsWhatItCanAndRecordsTheRest) {
  RealHarness h;
  TempDir dir;
  dir.copy(fixture("fixture_good"), "a-good.so");
  dir.copy(fixture("fixture_wrong_major"), "b-wrong-major.so");
  dir.copy(fixture("fixture_unresolved"), "c-unresolved.so");
  std::ofstream(dir.path / "README.txt") << "not a plugin, not even considered\n";
  auto loaded = h.registry.load_dirs({dir.path.string(), "/nonexistent/guardant/plugins"});
  EXPECT_EQ(loaded, 1u);
  EXPECT_EQ(h.registry.refusals().size(), 2u);
  EXPECT_TRUE(h.registry.has_type("variant"));
}

TEST(HostApi, ExceptionInStartBecomesInconclusive) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_throwing")));
  auto r = run_check(h, "throws");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, CheckStatus::Inconclusive);
  ASSERT_TRUE(r->failure);
  EXPECT_EQ(r->failure->reason, "worker_error");
  EXPECT_EQ(r->failure->detail, "probe threw: boom");
}

TEST(HostApi, ExceptionInTimerCallbackBecomesInconclusive) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_throwing")));
  auto r = run_check(h, "throws-in-timer");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, CheckStatus::Inconclusive);
  EXPECT_EQ(r->failure->detail, "probe threw: timer went bang");
}

TEST(HostApi, ConfigErrorRefusesTheCheckWithTheMessage) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_throwing")));
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
  std::string err;
  EXPECT_FALSE(run_check(h, "bad-option", "{}", &err));
  EXPECT_EQ(err, "invalid_config: option 'port' must be an integer");
  EXPECT_FALSE(run_check(h, "badconfig", "{}", &err));
  EXPECT_EQ(err, "invalid_config: option 'delay_ms' must be a number");
  EXPECT_FALSE(run_check(h, "nosuchtype", "{}", &err));
  EXPECT_EQ(err, "unknown_type: no probe plugin provides type 'nosuchtype'");
  EXPECT_EQ(h.registry.outstanding_checks(), 0u);
}

TEST(HostApi, InvalidStatusIsRepaired) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
  auto r = run_check(h, "badstatus");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, CheckStatus::Inconclusive);
  EXPECT_EQ(r->failure->detail, "plugin returned an invalid status 0");
}

TEST(HostApi, BusyPluginIsNotUnloaded) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
  CheckRequest req;
  req.check_id = "t:never";
  req.type = "never";
  req.target = "x";
  req.deadline = h.clock.now() + std::chrono::seconds(1);
  auto started = h.registry.start_check(req, [](CheckResult) {});
  ASSERT_TRUE(started);
  EXPECT_EQ(h.registry.outstanding_checks(), 1u);
  EXPECT_EQ(h.registry.unload_idle(), 1u);
  EXPECT_TRUE(h.registry.has_type("never"));
  h.registry.abandon(started.value());
}

TEST(HostApi, CancelledCppCheckIsReleasedAndCountedLate) {
  RealHarness h;
  ASSERT_TRUE(h.registry.load_file(fixture("fixture_throwing")));
  bool delivered = false;
  CheckRequest req;
  req.check_id = "t:hang";
  req.type = "hang";
  req.target = "x";
  req.deadline = h.clock.now() + std::chrono::seconds(1);
  auto started = h.registry.start_check(req, [&](CheckResult) { delivered = true; });
  ASSERT_TRUE(started);
  h.registry.abandon(started.value());
  ASSERT_TRUE(h.run_until([&] { return h.late == 1; }));
  EXPECT_FALSE(delivered);
  EXPECT_EQ(h.registry.outstanding_checks(), 0u);
}
