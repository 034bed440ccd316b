// ResultSpool on its own: the record format, order, truncation when drained,
// recovery of damaged files, the in-memory bound and the file lock.
#include "results/result_spool.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/manual_clock.hpp"
#include "support/process.hpp"

namespace guardant::engine {
namespace {

using namespace std::chrono_literals;

class ResultSpoolTest : public ::testing::Test {
 protected:
  ResultSpoolTest() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "guardant-spool-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    path = dir + "/sub/results.spool";  // the directory is created by open()
  }
  ~ResultSpoolTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  std::unique_ptr<ResultSpool> open_spool(SpoolOptions o = {}) {
    auto s = std::make_unique<ResultSpool>(clock, path, o);
    s->set_on_corrupt([this](const std::string& what) { corrupt.push_back(what); });
    auto r = s->open();
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (r.ok()) report = *r;
    return s;
  }
  void write_file(const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  std::string read_file() { return test::read_file(path); }

  ManualClock clock;
  std::string dir, path;
  std::vector<std::string> corrupt;
  SpoolOpenReport report;
};

TEST_F(ResultSpoolTest, RecordIsLengthCrcAndPayloadOnOneLine) {
  // CRC-32 (IEEE) of "abc" is 0x352441c2.
  EXPECT_EQ(ResultSpool::encode("abc"), "3\t352441c2\tabc\n");
  auto s = open_spool();
  ASSERT_TRUE(s->append("abc").ok());
  EXPECT_EQ(read_file(), "3\t352441c2\tabc\n");
  EXPECT_EQ(s->append("two\nlines").error().code, "spool_invalid");
}

TEST_F(ResultSpoolTest, KeepsOrderAcrossReopenAndTruncatesWhenDrained) {
  {
    auto s = open_spool();
    for (auto p : {"a", "b", "c"}) ASSERT_TRUE(s->append(p).ok());
    EXPECT_EQ(s->size(), 3u);
  }  // a restart
  auto s = open_spool();
  EXPECT_EQ(report.records, 3u);
  EXPECT_EQ(s->size(), 3u);
  EXPECT_EQ(s->peek(2), (std::vector<std::string>{"a", "b"}));
  s->consume(1);
  ASSERT_TRUE(s->append("d").ok());
  EXPECT_EQ(s->peek(10), (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_GT(std::filesystem::file_size(path), 0u);
  s->consume(3);
  EXPECT_TRUE(s->empty());
  EXPECT_EQ(std::filesystem::file_size(path), 0u);
  ASSERT_TRUE(s->append("e").ok());  // appending after the truncation starts over
  EXPECT_EQ(s->peek(10), std::vector<std::string>{"e"});
}

TEST_F(ResultSpoolTest, DamagedMiddleRecordIsReportedSkippedAndRewrittenAway) {
  std::string bad = ResultSpool::encode("second");
  bad[bad.size() - 3] ^= 0x01;  // a flipped bit in the payload: CRC mismatch
  std::string garbage = "not a record at all\n";
  write_file(ResultSpool::encode("first") + bad + garbage + ResultSpool::encode("third"));
  auto s = open_spool();
  EXPECT_EQ(report.records, 2u);
  EXPECT_EQ(report.corrupt, 2u);
  EXPECT_TRUE(report.rewritten);
  ASSERT_EQ(corrupt.size(), 2u);
  EXPECT_NE(corrupt[0].find("CRC mismatch"), std::string::npos) << corrupt[0];
  EXPECT_NE(corrupt[1].find("malformed"), std::string::npos) << corrupt[1];
  EXPECT_EQ(s->peek(10), (std::vector<std::string>{"first", "third"}));
  EXPECT_EQ(read_file(), ResultSpool::encode("first") + ResultSpool::encode("third"));
}

TEST_F(ResultSpoolTest, TruncatedTrailingRecordIsReportedAndCutOff) {
  std::string partial = ResultSpool::encode("a record cut short by a crash");
  write_file(ResultSpool::encode("whole") + partial.substr(0, partial.size() / 2));
  auto s = open_spool();
  EXPECT_EQ(report.records, 1u);
  EXPECT_EQ(report.corrupt, 1u);
  ASSERT_EQ(corrupt.size(), 1u);
  EXPECT_NE(corrupt[0].find("truncated trailing record"), std::string::npos) << corrupt[0];
  // A record appended now is not glued to the remains of the partial one.
  ASSERT_TRUE(s->append("next").ok());
  s.reset();
  corrupt.clear();
  s = open_spool();
  EXPECT_TRUE(corrupt.empty());
  EXPECT_EQ(s->peek(10), (std::vector<std::string>{"whole", "next"}));
}

TEST_F(ResultSpoolTest, LengthMismatchIsDamageToo) {
  std::string rec = ResultSpool::encode("payload");
  rec[0] = '9';  // "9\t..." while the payload has 7 bytes
  write_file(rec + ResultSpool::encode("ok"));
  auto s = open_spool();
  ASSERT_EQ(corrupt.size(), 1u);
  EXPECT_NE(corrupt[0].find("length mismatch"), std::string::npos) << corrupt[0];
  EXPECT_EQ(s->peek(10), std::vector<std::string>{"ok"});
}

TEST_F(ResultSpoolTest, MemoryModeIsBounded) {
  SpoolOptions o;
  o.memory_limit = 2;
  ResultSpool s(clock, "", o);
  ASSERT_TRUE(s.open().ok());
  EXPECT_FALSE(s.file_backed());
  EXPECT_TRUE(s.append("a").ok());
  EXPECT_TRUE(s.append("b").ok());
  EXPECT_EQ(s.append("c").error().code, "spool_full");
  EXPECT_EQ(s.peek(5), (std::vector<std::string>{"a", "b"}));
  s.consume(2);
  EXPECT_TRUE(s.empty());
}

TEST_F(ResultSpoolTest, OneSpoolFileOneOwner) {
  auto first = open_spool();
  ResultSpool second(clock, path);
  auto r = second.open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "spool_locked");
  EXPECT_NE(r.error().message.find("in use"), std::string::npos) << r.error().message;
}

TEST_F(ResultSpoolTest, SyncsInBatchesOnTheHelperThread) {
  SpoolOptions o;
  o.sync_every = 3;
  o.sync_interval = 50ms;
  auto s = open_spool(o);
  ASSERT_TRUE(s->append("a").ok());
  EXPECT_TRUE(s->synced(0));
  uint64_t ticket = s->request_sync();
  EXPECT_EQ(ticket, 1u);
  EXPECT_TRUE(test::wait_for([&] { return s->synced(ticket); }, 5000ms));
  // Three appends request the next sync by themselves; so does the timer.
  for (auto p : {"b", "c", "d"}) ASSERT_TRUE(s->append(p).ok());
  EXPECT_TRUE(test::wait_for([&] { return s->synced(2); }, 5000ms));
  ASSERT_TRUE(s->append("e").ok());
  EXPECT_FALSE(s->synced(3));
  clock.advance(50ms);
  EXPECT_TRUE(test::wait_for([&] { return s->synced(3); }, 5000ms));
}

}  // namespace
}  // namespace guardant::engine
