// Reply helpers and the RESP codec on hand-written bytes (no server needed).
#include "redis/reply.hpp"

#include <gtest/gtest.h>

#include "redis/resp_codec.hpp"

namespace guardant::engine::redis {
namespace {

TEST(Reply, AsIntAcceptsIntegersAndNumericStringsOnly) {
  EXPECT_EQ(Reply::from_int(-7).as_int(), -7);
  EXPECT_EQ(Reply::string("42").as_int(), 42);
  EXPECT_EQ(Reply::status("-3").as_int(), -3);
  EXPECT_EQ(Reply::string("42x").as_int(), std::nullopt);
  EXPECT_EQ(Reply::string("").as_int(), std::nullopt);
  EXPECT_EQ(Reply::string("99999999999999999999").as_int(), std::nullopt);
  EXPECT_EQ(Reply::nil().as_int(), std::nullopt);
  EXPECT_EQ(Reply::error("1").as_int(), std::nullopt);
}

TEST(Reply, AsStringForStringAndStatus) {
  EXPECT_EQ(Reply::string("a").as_string(), "a");
  EXPECT_EQ(Reply::status("OK").as_string(), "OK");
  EXPECT_EQ(Reply::nil().as_string(), std::nullopt);
  EXPECT_EQ(Reply::from_int(1).as_string(), std::nullopt);
  EXPECT_EQ(Reply::error("ERR x").as_string(), std::nullopt);
}

TEST(Reply, DebugString) {
  auto r = Reply::array({Reply::status("OK"), Reply::from_int(3), Reply::nil(),
                         Reply::error("ERR boom"), Reply::string("a\"b\n")});
  EXPECT_EQ(r.debug_string(), R"([OK, 3, nil, (error) ERR boom, "a\"b\x0a"])");
}

TEST(RespCodec, EncodesArgvAsBulkStringArray) {
  std::string out;
  ASSERT_TRUE(append_command(out, {"SET", "k", std::string("a\0b", 3)}).ok());
  EXPECT_EQ(out, std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\0b\r\n", 29));
  std::vector<std::string> many(40, "x");
  ASSERT_TRUE(append_command(out, many).ok());  // more args than the inline arrays hold
  EXPECT_NE(out.find("*40\r\n"), std::string::npos);
}

TEST(RespCodec, ParsesEveryTypeFedByteByByte) {
  const std::string wire =
      "+OK\r\n-ERR bad\r\n:-12\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n*0\r\n"
      "*3\r\n:1\r\n*2\r\n$1\r\na\r\n-ERR inner\r\n$0\r\n\r\n";
  RespReader reader;
  std::vector<Reply> got;
  for (char c : wire) {
    ASSERT_TRUE(reader.feed(&c, 1).ok());
    for (;;) {
      auto r = reader.next();
      ASSERT_TRUE(r.ok());
      if (!r.value()) break;
      got.push_back(std::move(*r.value()));
    }
  }
  ASSERT_EQ(got.size(), 8u);
  EXPECT_EQ(got[0], Reply::status("OK"));
  EXPECT_EQ(got[1], Reply::error("ERR bad"));
  EXPECT_EQ(got[2], Reply::from_int(-12));
  EXPECT_EQ(got[3], Reply::string("hello"));
  EXPECT_TRUE(got[4].is_nil());
  EXPECT_TRUE(got[5].is_nil());
  EXPECT_EQ(got[6], Reply::array({}));
  EXPECT_EQ(got[7], Reply::array({Reply::from_int(1),
                                  Reply::array({Reply::string("a"), Reply::error("ERR inner")}),
                                  Reply::string("")}));
}

TEST(RespCodec, ProtocolErrorIsReported) {
  RespReader reader;
  std::string junk = "?what\r\n";
  ASSERT_TRUE(reader.feed(junk.data(), junk.size()).ok());
  auto r = reader.next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "protocol");
  EXPECT_NE(r.error().message.find("Protocol error"), std::string::npos) << r.error().message;
}

TEST(RespCodec, PartialReplyWaitsForMoreBytesAndFreesCleanly) {
  // A reader destroyed in the middle of a nested array must free what it built (ASan checks).
  RespReader reader;
  std::string part = "*2\r\n*2\r\n$3\r\nabc\r\n";
  ASSERT_TRUE(reader.feed(part.data(), part.size()).ok());
  auto r = reader.next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().has_value());
}

}  // namespace
}  // namespace guardant::engine::redis
