// RedisConnection against a real redis-server: reply types, pipelining,
// AUTH (password and ACL user), SELECT, CLIENT SETNAME, unix socket,
// not-connected and stop semantics, a blocking command on a second connection.
#include "redis/redis_connection.hpp"

#include <gtest/gtest.h>

#include "redis_test_util.hpp"
#include "support/loopback.hpp"

namespace guardant::test {
namespace {

using engine::redis::RedisConnection;

class RedisConnectionTest : public RedisLoopTest {};

TEST_F(RedisConnectionTest, RoundTripOfEveryReplyType) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  EXPECT_EQ(conn->connects(), 1u);
  EXPECT_TRUE(conn->last_error().empty());

  auto set = call(*conn, {"SET", "k", "v"});
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set.value(), Reply::status("OK"));

  auto incr = call(*conn, {"INCRBY", "n", "41"});
  ASSERT_TRUE(incr.ok());
  EXPECT_TRUE(incr->is_integer());
  EXPECT_EQ(incr->as_int(), 41);

  std::string binary("bin\0\r\nary", 9);
  ASSERT_TRUE(call(*conn, {"SET", "b", binary}).ok());
  auto get = call(*conn, {"GET", "b"});
  ASSERT_TRUE(get.ok());
  EXPECT_TRUE(get->is_string());
  EXPECT_EQ(get->str, binary);

  auto nil = call(*conn, {"GET", "missing"});
  ASSERT_TRUE(nil.ok());
  EXPECT_TRUE(nil->is_nil());

  auto nested = call(*conn, {"EVAL", "return {1, 'two', {3, 'four'}, {}}", "0"});
  ASSERT_TRUE(nested.ok()) << nested.error().message;
  EXPECT_EQ(nested.value(), Reply::array({Reply::from_int(1), Reply::string("two"),
                                          Reply::array({Reply::from_int(3), Reply::string("four")}),
                                          Reply::array({})}));

  auto err = call(*conn, {"NOSUCHCOMMAND", "x"});
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.error().code, "redis");
  EXPECT_EQ(err.error().message.rfind("ERR unknown command", 0), 0u) << err.error().message;

  auto wrongtype = call(*conn, {"LPUSH", "k", "x"});
  ASSERT_FALSE(wrongtype.ok());
  EXPECT_EQ(wrongtype.error().message.rfind("WRONGTYPE", 0), 0u);

  // An error nested in an array (EXEC) stays an element of type Error.
  ASSERT_TRUE(call(*conn, {"MULTI"}).ok());
  ASSERT_TRUE(call(*conn, {"SET", "t", "text"}).ok());  // QUEUED
  ASSERT_TRUE(call(*conn, {"INCR", "t"}).ok());         // QUEUED, fails at EXEC
  auto exec = call(*conn, {"EXEC"});
  ASSERT_TRUE(exec.ok()) << exec.error().message;
  ASSERT_TRUE(exec->is_array());
  ASSERT_EQ(exec->elements.size(), 2u);
  EXPECT_EQ(exec->elements[0], Reply::status("OK"));
  EXPECT_TRUE(exec->elements[1].is_error());
  EXPECT_NE(exec->elements[1].str.find("not an integer"), std::string::npos);
}

TEST_F(RedisConnectionTest, TenThousandCommandsInFlightMatchTheirRepliesInOrder) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();

  constexpr int kCount = 10'000;
  std::vector<std::string> got(kCount);
  std::vector<int64_t> counters(kCount, 0);
  int done = 0, failures = 0;
  for (int i = 0; i < kCount; ++i) {
    // Alternate two commands whose replies identify the request.
    if (i % 2 == 0) {
      conn->command({"ECHO", "msg-" + std::to_string(i)}, [&, i](Result<Reply> r) {
        if (r.ok()) got[i] = r->str;
        failures += !r.ok();
        ++done;
      });
    } else {
      conn->command({"INCR", "counter"}, [&, i](Result<Reply> r) {
        if (r.ok()) counters[i] = r->integer;
        failures += !r.ok();
        ++done;
      });
    }
  }
  EXPECT_GT(conn->in_flight(), 1000u);  // issued before any reply could be read
  ASSERT_TRUE(run_until([&] { return done == kCount; }, 30s)) << done << " of " << kCount;
  EXPECT_EQ(failures, 0);
  int64_t expect_counter = 0;
  for (int i = 0; i < kCount; ++i) {
    if (i % 2 == 0)
      ASSERT_EQ(got[i], "msg-" + std::to_string(i));
    else
      ASSERT_EQ(counters[i], ++expect_counter);
  }
  EXPECT_EQ(conn->in_flight(), 0u);
}

TEST_F(RedisConnectionTest, PipelineGivesOneResultPerCommandInOrder) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();

  std::optional<std::vector<Result<Reply>>> out;
  conn->pipeline({{"SET", "a", "1"}, {"GET", "a"}, {"NOSUCH"}, {"INCR", "a"}, {"GET", "none"}},
                 [&](std::vector<Result<Reply>> r) { out = std::move(r); });
  ASSERT_TRUE(run_until([&] { return out.has_value(); }));
  ASSERT_EQ(out->size(), 5u);
  EXPECT_EQ((*out)[0].value(), Reply::status("OK"));
  EXPECT_EQ((*out)[1].value(), Reply::string("1"));
  ASSERT_FALSE((*out)[2].ok());
  EXPECT_EQ((*out)[2].error().code, "redis");
  EXPECT_EQ((*out)[3].value(), Reply::from_int(2));
  EXPECT_TRUE((*out)[4].value().is_nil());

  // An empty pipeline completes, later, with no results.
  bool empty_done = false;
  conn->pipeline({}, [&](std::vector<Result<Reply>> r) { empty_done = r.empty(); });
  EXPECT_FALSE(empty_done);
  ASSERT_TRUE(run_until([&] { return empty_done; }));
}

TEST_F(RedisConnectionTest, AuthWithPassword) {
  RedisServer server(server_args({"--requirepass", "s3cret-pw"}, {"-a", "s3cret-pw"}));
  auto s = settings_for(server);
  s.password = "s3cret-pw";
  auto conn = connect(s);
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  auto r = call(*conn, {"SET", "x", "1"});
  ASSERT_TRUE(r.ok()) << r.error().message;

  // Without the password the handshake is refused, and says why.
  auto no_pw = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return no_pw->attempts() >= 2; })) << no_pw->last_error();
  EXPECT_FALSE(no_pw->ready());
  EXPECT_NE(no_pw->last_error().find("NOAUTH"), std::string::npos) << no_pw->last_error();
}

TEST_F(RedisConnectionTest, AuthWithAclUser) {
  // Each ACL rule is its own argument: redis-server quotes an argument with spaces.
  RedisServer server(server_args(
      {"--user", "worker", "on", ">acl-pass-123", "~*", "&*", "+@all", "--user", "default", "off"},
      {"--user", "worker", "--pass", "acl-pass-123"}));
  auto s = settings_for(server);
  s.username = "worker";
  s.password = "acl-pass-123";
  auto conn = connect(s);
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  auto who = call(*conn, {"ACL", "WHOAMI"});
  ASSERT_TRUE(who.ok()) << who.error().message;
  EXPECT_EQ(who->str, "worker");
}

TEST_F(RedisConnectionTest, WrongPasswordNamesUserAndProblemButNeverThePassword) {
  RedisServer server(server_args({"--user", "worker", "on", ">right-pass", "~*", "&*", "+@all"}));
  LogCapture logs("redis-auth-test");
  auto s = settings_for(server);
  s.username = "worker";
  s.password = "Wr0ng-Passw0rd";
  auto conn = connect(s, "guardant-test", "redis-auth-test");
  ASSERT_TRUE(run_until([&] { return conn->attempts() >= 3; })) << conn->last_error();
  EXPECT_FALSE(conn->ready());
  EXPECT_EQ(conn->connects(), 0u);
  const auto& e = conn->last_error();
  EXPECT_NE(e.find("AUTH failed for user 'worker'"), std::string::npos) << e;
  EXPECT_NE(e.find("WRONGPASS"), std::string::npos) << e;
  EXPECT_EQ(e.find("Wr0ng-Passw0rd"), std::string::npos) << e;

  auto r = call(*conn, {"PING"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "not_connected");
  EXPECT_NE(r.error().message.find("WRONGPASS"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("Wr0ng-Passw0rd"), std::string::npos);

  // Logged once at warn, repeats at debug; the password never.
  auto text = logs.text();
  EXPECT_EQ(text.find("Wr0ng-Passw0rd"), std::string::npos) << text;
  size_t warns = 0;
  for (size_t pos = 0; (pos = text.find("[warning]", pos)) != std::string::npos; ++pos) ++warns;
  EXPECT_EQ(warns, 1u) << text;
  EXPECT_NE(text.find("[debug]"), std::string::npos) << text;
}

TEST_F(RedisConnectionTest, SelectDatabase) {
  RedisServer server;
  auto s = settings_for(server);
  s.db = 3;
  auto conn = connect(s);
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  ASSERT_TRUE(call(*conn, {"SET", "only-in-3", "yes"}).ok());
  EXPECT_EQ(server.cli("-n", "3", "GET", "only-in-3"), "yes\n");
  EXPECT_EQ(server.cli("-n", "0", "EXISTS", "only-in-3"), "0\n");
}

TEST_F(RedisConnectionTest, ClientNameIsSetAndVisibleInClientList) {
  RedisServer server;
  auto conn = connect(settings_for(server), "guardant-worker:eu-1 main");  // space is replaced
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  auto list = server.cli("CLIENT", "LIST");
  EXPECT_NE(list.find("name=guardant-worker:eu-1_main "), std::string::npos) << list;
}

TEST_F(RedisConnectionTest, UnixSocket) {
  RedisServerOptions opts;
  opts.unix_socket = true;
  RedisServer server(opts);
  engine::RedisSettings s;
  s.unix_socket = server.unix_socket();
  s.port = 1;  // ignored when unix_socket is set
  auto conn = connect(s);
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  EXPECT_EQ(conn->address(), "unix:" + server.unix_socket());
  ASSERT_TRUE(call(*conn, {"SET", "via", "unix"}).ok());
  EXPECT_EQ(server.cli("GET", "via"), "unix\n");
  auto list = server.cli("CLIENT", "LIST");
  EXPECT_NE(list.find("name=guardant-test"), std::string::npos);
}

TEST_F(RedisConnectionTest, Ipv6Loopback) {
  if (open_listener(AF_INET6, "::1", 1).fd.get() < 0)
    GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
  RedisServer server(server_args({"--bind", "127.0.0.1", "::1"}));
  auto s = settings_for(server);
  s.host = "::1";
  auto conn = connect(s, "guardant-v6");
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  EXPECT_EQ(conn->address(), "[::1]:" + std::to_string(server.port()));
  ASSERT_TRUE(call(*conn, {"PING"}).ok());
  auto list = server.cli("CLIENT", "LIST");
  // Our connection's line in CLIENT LIST came from ::1.
  auto line_start = list.rfind('\n', list.find("name=guardant-v6"));
  auto line = list.substr(line_start == std::string::npos ? 0 : line_start + 1);
  line = line.substr(0, line.find('\n'));
  EXPECT_NE(line.find(" addr=[::1]:"), std::string::npos) << list;
}

TEST_F(RedisConnectionTest, CommandWhileNotConnectedFailsLaterNeverInline) {
  engine::RedisSettings s;
  s.host = "127.0.0.1";
  s.port = free_port();  // nothing listens
  RedisConnection conn(io, clock, s, "t", "redis", fast_backoff());

  std::optional<Result<Reply>> before_start;
  conn.command({"PING"}, [&](Result<Reply> r) { before_start.emplace(std::move(r)); });
  EXPECT_FALSE(before_start.has_value());  // posted, not called inside command()
  ASSERT_TRUE(run_until([&] { return before_start.has_value(); }));
  EXPECT_EQ(before_start->error().code, "not_connected");
  EXPECT_NE(before_start->error().message.find("not started"), std::string::npos);

  conn.start();
  ASSERT_TRUE(run_until([&] { return conn.attempts() >= 2; }));
  std::optional<Result<Reply>> r;
  conn.command({"PING"}, [&](Result<Reply> x) { r.emplace(std::move(x)); });
  EXPECT_FALSE(r.has_value());
  ASSERT_TRUE(run_until([&] { return r.has_value(); }));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, "not_connected");
  EXPECT_NE(r->error().message.find("Connection refused"), std::string::npos) << r->error().message;
  EXPECT_NE(conn.last_error().find("connect 127.0.0.1:" + std::to_string(s.port)),
            std::string::npos)
      << conn.last_error();

  std::optional<std::vector<Result<Reply>>> p;
  conn.pipeline({{"PING"}, {"PING"}}, [&](std::vector<Result<Reply>> v) { p = std::move(v); });
  ASSERT_TRUE(run_until([&] { return p.has_value(); }));
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[1].error().code, "not_connected");

  conn.stop();
  std::optional<Result<Reply>> after_stop;
  conn.command({"PING"}, [&](Result<Reply> x) { after_stop.emplace(std::move(x)); });
  ASSERT_TRUE(run_until([&] { return after_stop.has_value(); }));
  EXPECT_EQ(after_stop->error().code, "stopped");
}

TEST_F(RedisConnectionTest, StopFailsPendingCommandsWithStopped) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  std::vector<std::string> codes;
  conn->command({"BLPOP", "never", "0"},
                [&](Result<Reply> r) { codes.push_back(r.ok() ? "ok" : r.error().code); });
  conn->command({"PING"},
                [&](Result<Reply> r) { codes.push_back(r.ok() ? "ok" : r.error().code); });
  run_for(50ms);
  EXPECT_TRUE(codes.empty());
  bool down_called = false;
  conn->on_down([&](const std::string&) { down_called = true; });
  conn->stop();
  EXPECT_EQ(codes, (std::vector<std::string>{"stopped", "stopped"}));  // synchronously
  EXPECT_FALSE(conn->ready());
  run_for(50ms);
  EXPECT_FALSE(down_called);

  // start() after stop() connects again.
  conn->start();
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  EXPECT_EQ(conn->connects(), 2u);
  EXPECT_TRUE(call(*conn, {"PING"}).ok());
}

TEST_F(RedisConnectionTest, DestructorCompletesPendingAndNothingRunsAfterIt) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  int stopped = 0, later = 0;
  RedisConnection* raw = conn.get();
  conn->command({"BLPOP", "never", "0"}, [&, raw](Result<Reply> r) {
    stopped += !r.ok() && r.error().code == "stopped";
    // Runs inside the destructor: a command issued now fails "stopped",
    // posted; that failure must not be delivered once the connection is gone.
    raw->command({"PING"}, [&](Result<Reply>) { ++later; });
  });
  run_for(20ms);
  conn.reset();
  EXPECT_EQ(stopped, 1);
  run_for(100ms);
  EXPECT_EQ(later, 0);
}

TEST_F(RedisConnectionTest, BlockingCommandOnSecondConnectionDoesNotDisturbTheFirst) {
  RedisServer server;
  auto main_conn = connect(settings_for(server), "guardant-main");
  auto blocking = connect(settings_for(server), "guardant-blocking");
  ASSERT_TRUE(run_until([&] { return main_conn->ready() && blocking->ready(); }));

  std::optional<Result<Reply>> popped;
  blocking->command({"BZPOPMIN", "jobs", "5"},
                    [&](Result<Reply> r) { popped.emplace(std::move(r)); });
  // While it blocks, the first connection keeps answering.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(call(*main_conn, {"PING"}).ok());
  EXPECT_FALSE(popped.has_value());
  ASSERT_TRUE(call(*main_conn, {"ZADD", "jobs", "7", "job-1"}).ok());
  ASSERT_TRUE(run_until([&] { return popped.has_value(); }));
  ASSERT_TRUE(popped->ok()) << popped->error().message;
  EXPECT_EQ(popped->value(),
            Reply::array({Reply::string("jobs"), Reply::string("job-1"), Reply::string("7")}));

  // A block that times out answers nil (no client-side timeout interferes).
  auto timed_out = call(*blocking, {"BZPOPMIN", "jobs", "0.3"});
  ASSERT_TRUE(timed_out.ok()) << timed_out.error().message;
  EXPECT_TRUE(timed_out->is_nil());
  EXPECT_TRUE(blocking->ready());
}

TEST_F(RedisConnectionTest, ConnectTimeoutCoversAServerThatNeverAnswers) {
  // Accepts TCP connections (the kernel does, via the backlog) but never
  // speaks: the handshake must give up after connect_timeout_ms.
  auto silent = open_listener(AF_INET, "127.0.0.1", 16);
  ASSERT_TRUE(silent.error.empty()) << silent.error;
  engine::RedisSettings s;
  s.host = "127.0.0.1";
  s.port = silent.port;
  s.connect_timeout_ms = 200;
  auto conn = connect(s);
  ASSERT_TRUE(run_until([&] { return !conn->last_error().empty(); }, 5s));
  EXPECT_FALSE(conn->ready());
  EXPECT_NE(conn->last_error().find("timed out after 200 ms"), std::string::npos)
      << conn->last_error();
  EXPECT_NE(conn->last_error().find("handshake"), std::string::npos) << conn->last_error();
}

}  // namespace
}  // namespace guardant::test
