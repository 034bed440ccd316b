// Where results wait while their sink is unavailable: an append-only file
// that survives a worker restart, or, without a path, a bounded in-memory
// queue. First in, first out.
//
// File format: one record per line,
//     <len>\t<crc32>\t<payload>\n
// <len> is the payload's size in bytes (decimal), <crc32> the CRC-32 (IEEE,
// as zlib/PNG) of the payload as 8 lowercase hex digits, and <payload> a
// single-line JSON text (ResultPersister stores {"key","nestId","serviceId",
// "record"}). Payloads never contain '\n', so a damaged record is skipped by
// resuming at the next newline. Records are written with one write(2) each, so
// a killed process leaves whole records in the page cache; fdatasync runs in
// batches (every `sync_every` records or `sync_interval` after the first
// unsynced one) on a helper thread, see Syncer in result_spool.cpp.
//
// open() reads the file through once: records with a bad header, length or
// CRC, and a trailing record cut short by a crash, are logged, reported to
// on_corrupt and skipped; if there were any, the file is rewritten (temp file,
// fdatasync, rename) with the good records only, so later reads and appends
// never meet them again. It never throws on bad content. The file is locked
// (flock) so two workers cannot share one spool.
//
// When every record has been consumed the file is truncated to zero.
//
// Threading: loop thread only (the helper thread only calls fdatasync).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"

namespace guardant::engine {

struct SpoolOptions {
  // Records held when there is no spool file; append() fails beyond it.
  size_t memory_limit = 10'000;
  // fdatasync after this many appended records ...
  size_t sync_every = 100;
  // ... or this long after the first record not yet synced, whichever first.
  Nanos sync_interval = std::chrono::milliseconds(50);
};

struct SpoolOpenReport {
  size_t records = 0;      // good records found, waiting to be consumed
  size_t corrupt = 0;      // records skipped
  bool rewritten = false;  // the file was rewritten without them
};

class ResultSpool {
 public:
  // `path` empty: in memory only. `clock` must outlive the spool.
  ResultSpool(Clock& clock, std::string path, SpoolOptions options = {});
  // Syncs what is unsynced (waits for one fdatasync) and closes the file.
  ~ResultSpool();
  ResultSpool(const ResultSpool&) = delete;
  ResultSpool& operator=(const ResultSpool&) = delete;

  // Creates the file (and its directory) or recovers an existing one. Errors:
  // "spool_io" (cannot create, open, read or rewrite), "spool_locked"
  // (another process holds it). Nothing to do in memory mode. Call once.
  Result<SpoolOpenReport> open();

  bool file_backed() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // Appends one record at the tail. Errors: "spool_io" (the write failed;
  // the file is cut back to its last whole record), "spool_full" (memory
  // mode at its limit), "spool_invalid" (payload contains a newline),
  // "spool_closed" (file mode before a successful open()).
  Status append(std::string_view payload);

  // Up to `max` records from the head, oldest first, not yet consumed. A
  // record found damaged on the way is reported and skipped.
  std::vector<std::string> peek(size_t max);
  // Removes the first `n` records that peek() returned (n <= that count).
  void consume(size_t n);

  // Records waiting (appended or recovered, not consumed).
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }

  // Asks for an fdatasync of everything appended so far and returns a ticket;
  // synced(ticket) turns true once it is on disk (at once in memory mode).
  uint64_t request_sync();
  bool synced(uint64_t ticket) const;

  // Called for every damaged record found, with a description (offset and
  // reason). The spool has already logged it.
  void set_on_corrupt(std::function<void(const std::string&)> fn) { on_corrupt_ = std::move(fn); }

  // One encoded record line, newline included (tests craft spool files).
  static std::string encode(std::string_view payload);

  class Syncer;

 private:
  struct Entry {
    std::string payload;
    uint64_t end = 0;  // file offset just past the record (file mode)
  };
  void report_corrupt(uint64_t offset, const std::string& why);
  void read_more(size_t want);
  void truncate_if_drained();
  void arm_sync_timer();
  Status rewrite_without_damage();

  Clock& clock_;
  std::string path_;
  SpoolOptions options_;
  int fd_ = -1;
  std::unique_ptr<Syncer> syncer_;
  std::function<void(const std::string&)> on_corrupt_;

  // Memory mode: every record. File mode: records read ahead by peek().
  std::deque<Entry> window_;
  size_t count_ = 0;
  uint64_t read_offset_ = 0;  // first byte not consumed
  uint64_t window_end_ = 0;   // first byte not read into window_
  uint64_t write_end_ = 0;    // file size
  size_t unsynced_ = 0;       // records appended since the last sync request
  Clock::TimerId sync_timer_ = 0;
};

}  // namespace guardant::engine
