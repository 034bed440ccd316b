// Every kind of mistake, and that its message names file, line, column, the
// full key and what was expected.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config_test_util.hpp"

namespace guardant::engine {
namespace {

using ::testing::AllOf;
using testing::env_of;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::parse_error;
using ::testing::StartsWith;

TEST(ConfigErrors, SyntaxErrorHasPosition) {
  const std::string e = parse_error(
      "[worker]\n"
      "concurrency = = 5\n");
  EXPECT_THAT(e, StartsWith("worker.toml:2:15: invalid TOML: error while parsing"));
}

TEST(ConfigErrors, DuplicateKeyIsASyntaxError) {
  const std::string e = parse_error(
      "[worker]\n"
      "region = \"a\"\n"
      "region = \"b\"\n");
  EXPECT_THAT(e, StartsWith("worker.toml:3:"));
  EXPECT_THAT(e, HasSubstr("'region'"));
}

TEST(ConfigErrors, WrongTypeNamesKeyAndValue) {
  const std::string e = parse_error(
      "# comment\n"
      "[worker]\n"
      "concurrency = \"ten\"\n");
  EXPECT_EQ(e,
            "worker.toml:3:15: worker.concurrency: expected a positive integer, got string "
            "\"ten\"");
}

TEST(ConfigErrors, WrongTypeForEachKind) {
  EXPECT_EQ(parse_error("[health]\nenabled = \"yes\"\n"),
            "worker.toml:2:11: health.enabled: expected true or false, got string \"yes\"");
  EXPECT_EQ(parse_error("[redis]\nhost = 5\n"),
            "worker.toml:2:8: redis.host: expected a non-empty string, got integer 5");
  EXPECT_EQ(parse_error("[worker]\nconcurrency = 10.0\n"),
            "worker.toml:2:15: worker.concurrency: expected a positive integer, got float 10.0");
  EXPECT_EQ(parse_error("[worker]\ncapabilities = \"http\"\n"),
            "worker.toml:2:16: worker.capabilities: expected an array of strings, got string "
            "\"http\"");
  EXPECT_EQ(parse_error("worker = 3\n"),
            "worker.toml:1:10: worker: expected a table ([worker]), got integer 3");
}

TEST(ConfigErrors, ArrayElementsAreCheckedWithTheirIndex) {
  EXPECT_EQ(parse_error("[worker]\ncapabilities = [\"http\", 3, \"\"]\n"),
            "worker.toml:2:25: worker.capabilities[1]: expected a non-empty string, got "
            "integer 3\n"
            "worker.toml:2:28: worker.capabilities[2]: expected a non-empty string, got "
            "string \"\"");
}

TEST(ConfigErrors, OutOfRangeValues) {
  EXPECT_EQ(parse_error("[worker]\nconcurrency = 0\n"),
            "worker.toml:2:15: worker.concurrency: expected a positive integer, got integer 0");
  EXPECT_EQ(parse_error("[redis]\nport = 70000\n"),
            "worker.toml:2:8: redis.port: expected a port number between 1 and 65535, got "
            "integer 70000");
  EXPECT_EQ(parse_error("[redis]\nport = 0\n"),
            "worker.toml:2:8: redis.port: expected a port number between 1 and 65535, got "
            "integer 0");
  EXPECT_EQ(parse_error("[health]\nport = 65536\n"),
            "worker.toml:2:8: health.port: expected a port number between 0 and 65535 (0 = "
            "any free port), got integer 65536");
  EXPECT_EQ(parse_error("[worker]\ndrain_timeout_ms = -1\n"),
            "worker.toml:2:20: worker.drain_timeout_ms: expected a non-negative integer, got "
            "integer -1");
  EXPECT_EQ(parse_error("[worker]\nconcurrency = 5000000000\n"),
            "worker.toml:2:15: worker.concurrency: expected a positive integer no larger than "
            "4294967295, got integer 5000000000");
  EXPECT_EQ(parse_error("[limits.tiers]\npro = -5\n"),
            "worker.toml:2:7: limits.tiers.pro: expected a positive integer (checks per "
            "window) or \"unlimited\", got integer -5");
  EXPECT_EQ(parse_error("[limits]\nwindow_ms = 1000\n\n[limits.tiers]\nfree = 0\n"),
            "worker.toml:5:8: limits.tiers.free: expected a positive integer (checks per "
            "window) or \"unlimited\", got integer 0");
}

TEST(ConfigErrors, TierNamesThatAreNotBareKeysAreQuoted) {
  EXPECT_EQ(parse_error("[limits.tiers]\n\"gold plan\" = \"lots\"\n"),
            "worker.toml:2:15: limits.tiers.\"gold plan\": expected a positive integer "
            "(checks per window) or \"unlimited\", got string \"lots\"");
}

TEST(ConfigErrors, UnknownKeyWithHint) {
  EXPECT_EQ(parse_error("[worker]\nconcurency = 5\n"),
            "worker.toml:2:1: worker.concurency: unknown key; did you mean 'concurrency'?");
  EXPECT_EQ(parse_error("[worker]\ndrain_timeout = 5\n"),
            "worker.toml:2:1: worker.drain_timeout: unknown key; did you mean "
            "'drain_timeout_ms'?");
  EXPECT_EQ(parse_error("[wroker]\nid = \"x\"\n"),
            "worker.toml:1:2: wroker: unknown key; did you mean 'worker'?");
  EXPECT_EQ(parse_error("[redis.tls]\nverfy = true\n"),
            "worker.toml:2:1: redis.tls.verfy: unknown key; did you mean 'verify'?");
}

TEST(ConfigErrors, UnknownKeyWithoutHintListsTheKnownOnes) {
  EXPECT_EQ(parse_error("[log]\ncolour = true\n"),
            "worker.toml:2:1: log.colour: unknown key (known keys: level, format)");
}

TEST(ConfigErrors, UnknownEnumValues) {
  EXPECT_EQ(parse_error("mode = \"queu\"\n"),
            "worker.toml:1:8: mode: expected \"standalone\" or \"queue\", got string \"queu\"; "
            "did you mean \"queue\"?");
  EXPECT_EQ(parse_error("[log]\nformat = \"xml\"\n"),
            "worker.toml:2:10: log.format: expected \"text\" or \"json\", got string \"xml\"");
  EXPECT_EQ(parse_error("[log]\nlevel = \"verbose\"\n"),
            "worker.toml:2:9: log.level: expected one of trace, debug, info, warn, error, "
            "critical, off, got string \"verbose\"");
}

TEST(ConfigErrors, UnknownDefaultTier) {
  EXPECT_EQ(parse_error("[limits]\ndefault_tier = \"gold\"\n"),
            "worker.toml:2:16: limits.default_tier: expected the name of a tier in "
            "limits.tiers (free, pro, unlimited), got string \"gold\"");
}

TEST(ConfigErrors, QueueModeNeedsQueueNames) {
  EXPECT_EQ(parse_error("mode = \"queue\"\n"),
            "worker.toml:1:8: queue.names: required key is missing (expected the queues to "
            "consume in queue mode, e.g. [\"monitoring\"])");
  EXPECT_THAT(parse_error("mode = \"queue\"\n[queue]\nprefix = \"b\"\n"),
              StartsWith("worker.toml:2:1: queue.names: required key is missing"));
  EXPECT_EQ(parse_error("mode = \"queue\"\n[queue]\nnames = []\n"),
            "worker.toml:3:9: queue.names: expected at least one queue name in queue mode, got "
            "an empty array");
}

TEST(ConfigErrors, QueueModeRejectsMonitors) {
  EXPECT_THAT(parse_error("mode = \"queue\"\n"
                          "queue.names = [\"q\"]\n"
                          "[[monitor]]\n"
                          "id = \"a\"\ntype = \"tcp\"\ntarget = \"h:1\"\n"),
              AllOf(StartsWith("worker.toml:3:1: monitor: monitors run only in standalone mode"),
                    HasSubstr("mode = \"standalone\"")));
}

TEST(ConfigErrors, TlsCertificateNeedsItsKey) {
  EXPECT_EQ(parse_error("[redis.tls]\ncert_file = \"/c.pem\"\n"),
            "worker.toml:1:1: redis.tls.key_file: required key is missing (expected the client "
            "key that goes with redis.tls.cert_file)");
}

TEST(ConfigErrors, EveryErrorIsReportedInFileOrder) {
  const std::string e = parse_error(
      "[worker]\n"
      "concurrency = 0\n"
      "[redis]\n"
      "port = 99999\n"
      "[log]\n"
      "level = \"loud\"\n");
  EXPECT_THAT(e, StartsWith("worker.toml:2:15: worker.concurrency"));
  EXPECT_THAT(e, HasSubstr("\nworker.toml:4:8: redis.port"));
  EXPECT_THAT(e, HasSubstr("\nworker.toml:6:9: log.level"));
}

TEST(ConfigErrors, LongValuesAreShortened) {
  const std::string e = parse_error("[worker]\nconcurrency = \"" + std::string(500, 'x') + "\"\n");
  EXPECT_LT(e.size(), 200u);
  EXPECT_THAT(e, HasSubstr("...\""));
}

TEST(ConfigErrors, MissingFileIsReported) {
  auto r = load_config("/nonexistent/guardant/worker.toml", testing::no_env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "config_unreadable");
  EXPECT_EQ(r.error().message,
            "cannot read config file /nonexistent/guardant/worker.toml: No such file or "
            "directory");
}

// --- The Redis password never appears in a message. ---

constexpr const char* kPassword = "hunter2-Secret";

TEST(ConfigSecrets, PasswordOfTheWrongTypeIsNotEchoed) {
  const std::string e = parse_error("[redis]\npassword = 987654321\n");
  EXPECT_EQ(e,
            "worker.toml:2:12: redis.password: expected a string, got an integer (value "
            "hidden)");
}

TEST(ConfigSecrets, SyntaxErrorOnThePasswordLineIsNotEchoed) {
  // toml++ would quote the bad escape sequence, part of the password.
  const std::string e = parse_error("[redis]\npassword = \"hun\\ter2\\q\"\n");
  EXPECT_THAT(e, StartsWith("worker.toml:2:"));
  EXPECT_THAT(e, HasSubstr("details withheld"));
  EXPECT_THAT(e, Not(HasSubstr("\\q")));
  EXPECT_THAT(e, Not(HasSubstr("hun")));
}

TEST(ConfigSecrets, PasswordIsScrubbedEvenWhereAnotherKeyRepeatsIt) {
  const std::string toml = std::string("[redis]\npassword = \"") + kPassword +
                           "\"\n[worker]\nregion = 5\nid = \"" + kPassword +
                           "\"\nconcurrency = \"" + kPassword + "\"\n";
  const std::string e = parse_error(toml);
  EXPECT_THAT(e, HasSubstr("worker.concurrency: expected a positive integer, got string \"***\""));
  EXPECT_THAT(e, Not(HasSubstr(kPassword)));
}

TEST(ConfigSecrets, PasswordFromEnvIsScrubbed) {
  const std::string e =
      parse_error("[worker]\nregion = 5\n",
                  env_of({{"REDIS_PASSWORD", kPassword}, {"WORKER_CONCURRENCY", kPassword}}));
  EXPECT_THAT(e, HasSubstr("WORKER_CONCURRENCY: expected a positive integer, got \"***\""));
  EXPECT_THAT(e, Not(HasSubstr(kPassword)));
}

}  // namespace
}  // namespace guardant::engine
