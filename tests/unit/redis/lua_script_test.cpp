// LuaScript and eval(): EVALSHA, transparent reload after SCRIPT FLUSH,
// script errors naming the script.
#include "redis/lua_script.hpp"

#include <gtest/gtest.h>

#include "redis_test_util.hpp"

namespace guardant::test {
namespace {

using engine::redis::eval;
using engine::redis::LuaScript;

class LuaScriptTest : public RedisLoopTest {
 protected:
  Result<Reply> run(engine::redis::RedisConnection& c, const LuaScript& s,
                    std::vector<std::string> keys, std::vector<std::string> args) {
    std::optional<Result<Reply>> out;
    eval(c, s, std::move(keys), std::move(args),
         [&](Result<Reply> r) { out.emplace(std::move(r)); });
    if (!run_until([&] { return out.has_value(); }))
      return engine::Error{"test_timeout", "no reply"};
    return std::move(*out);
  }
};

TEST(LuaScriptSha, MatchesRedisSha1) {
  LuaScript s("ret", "return 1");
  EXPECT_EQ(s.name(), "ret");
  EXPECT_EQ(s.source(), "return 1");
  // sha1("return 1"), as SCRIPT LOAD reports it.
  EXPECT_EQ(s.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

TEST_F(LuaScriptTest, EvalReloadsAfterScriptFlush) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  LuaScript add("addToCounter", "return redis.call('INCRBY', KEYS[1], ARGV[1]) .. ':' .. ARGV[2]");

  // Never loaded: the first call goes through NOSCRIPT + SCRIPT LOAD.
  auto first = run(*conn, add, {"c"}, {"5", "x"});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->str, "5:x");
  EXPECT_EQ(server.cli("SCRIPT", "EXISTS", add.sha1()), "1\n");

  auto second = run(*conn, add, {"c"}, {"2", "y"});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->str, "7:y");

  ASSERT_EQ(server.cli("SCRIPT", "FLUSH"), "OK\n");
  EXPECT_EQ(server.cli("SCRIPT", "EXISTS", add.sha1()), "0\n");
  auto third = run(*conn, add, {"c"}, {"3", "z"});
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_EQ(third->str, "10:z");
  EXPECT_EQ(server.cli("GET", "c"), "10\n");
}

TEST_F(LuaScriptTest, ScriptErrorsNameTheScript) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();

  LuaScript raises("moveToFinished", "return redis.error_reply('job lock mismatch')");
  auto r = run(*conn, raises, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "redis");
  EXPECT_EQ(r.error().message, "script 'moveToFinished': job lock mismatch");

  LuaScript broken("broken", "this is not lua");
  auto b = run(*conn, broken, {}, {});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, "redis");
  EXPECT_EQ(b.error().message.rfind("script 'broken': ERR", 0), 0u) << b.error().message;

  LuaScript wrong_key("wrongType", "return redis.call('LPUSH', KEYS[1], 'x')");
  ASSERT_TRUE(call(*conn, {"SET", "str", "v"}).ok());
  auto w = run(*conn, wrong_key, {"str"}, {});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("script 'wrongType'"), std::string::npos);
  EXPECT_NE(w.error().message.find("WRONGTYPE"), std::string::npos) << w.error().message;
}

TEST_F(LuaScriptTest, ConnectionErrorsPassThrough) {
  engine::RedisSettings s;
  s.host = "127.0.0.1";
  s.port = free_port();
  engine::redis::RedisConnection conn(io, clock, s, "", "redis", fast_backoff());
  LuaScript script("x", "return 1");
  auto r = run(conn, script, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "not_connected");
}

}  // namespace
}  // namespace guardant::test
