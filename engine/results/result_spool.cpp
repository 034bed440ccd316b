#include "results/result_spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/crc.hpp>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "core/logging.hpp"

namespace guardant::engine {
namespace {

constexpr size_t kMaxLenDigits = 10;
constexpr size_t kCrcDigits = 8;
constexpr size_t kReadChunk = 64 * 1024;

uint32_t crc32(std::string_view data) {
  boost::crc_32_type crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

// The payload of one record line (without its '\n'), or nullopt with `why`.
std::optional<std::string_view> decode_line(std::string_view line, std::string& why) {
  size_t tab1 = line.find('\t');
  if (tab1 == std::string_view::npos || tab1 == 0 || tab1 > kMaxLenDigits) {
    why = "malformed record header";
    return std::nullopt;
  }
  uint64_t len = 0;
  auto [lp, lec] = std::from_chars(line.data(), line.data() + tab1, len);
  if (lec != std::errc() || lp != line.data() + tab1) {
    why = "malformed record length";
    return std::nullopt;
  }
  size_t tab2 = tab1 + 1 + kCrcDigits;
  if (line.size() <= tab2 || line[tab2] != '\t') {
    why = "malformed record header";
    return std::nullopt;
  }
  uint32_t crc = 0;
  const char* cb = line.data() + tab1 + 1;
  auto [cp, cec] = std::from_chars(cb, cb + kCrcDigits, crc, 16);
  if (cec != std::errc() || cp != cb + kCrcDigits) {
    why = "malformed record checksum";
    return std::nullopt;
  }
  std::string_view payload = line.substr(tab2 + 1);
  if (payload.size() != len) {
    why = "length mismatch (" + std::to_string(payload.size()) + " bytes, header says " +
          std::to_string(len) + ")";
    return std::nullopt;
  }
  if (crc32(payload) != crc) {
    why = "CRC mismatch";
    return std::nullopt;
  }
  return payload;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

// fdatasync on a helper thread. It can block for tens of milliseconds, on a
// busy or network disk for seconds, and the loop thread also runs every
// check's deadline and the Redis connection: one long-lived thread per spool
// file, woken by request(), keeps that stall off the loop. It touches nothing
// but the fd (which outlives it) and its own counters.
class ResultSpool::Syncer {
 public:
  Syncer(int fd, std::string path) : fd_(fd), path_(std::move(path)) {
    thread_ = std::thread([this] { run(); });
  }
  // Finishes the requested syncs, then stops.
  ~Syncer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  uint64_t request() {
    uint64_t ticket;
    {
      std::lock_guard lock(mu_);
      ticket = ++requested_;
    }
    cv_.notify_one();
    return ticket;
  }
  uint64_t completed() const { return completed_.load(std::memory_order_acquire); }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || requested_ > completed(); });
      if (requested_ <= completed()) return;  // stop_ and nothing pending
      uint64_t target = requested_;
      lock.unlock();
      if (::fdatasync(fd_) != 0)
        logger("results")->error("fdatasync of the result spool {} failed: {}", path_,
                                 std::strerror(errno));
      lock.lock();
      completed_.store(target, std::memory_order_release);
    }
  }

  int fd_;
  std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t requested_ = 0;
  std::atomic<uint64_t> completed_{0};
  bool stop_ = false;
  std::thread thread_;
};

ResultSpool::ResultSpool(Clock& clock, std::string path, SpoolOptions options)
    : clock_(clock), path_(std::move(path)), options_(options) {}

ResultSpool::~ResultSpool() {
  if (sync_timer_) clock_.cancel(sync_timer_);
  if (syncer_ && unsynced_ > 0) syncer_->request();
  syncer_.reset();             // joins after the last requested sync
  if (fd_ >= 0) ::close(fd_);  // also releases the flock
}

std::string ResultSpool::encode(std::string_view payload) {
  char crc[kCrcDigits + 1];
  std::snprintf(crc, sizeof crc, "%08x", crc32(payload));
  std::string line = std::to_string(payload.size());
  line.reserve(line.size() + payload.size() + kCrcDigits + 3);
  line += '\t';
  line += crc;
  line += '\t';
  line += payload;
  line += '\n';
  return line;
}

void ResultSpool::report_corrupt(uint64_t offset, const std::string& why) {
  std::string what = "record at byte " + std::to_string(offset) + ": " + why;
  logger("results")->error("result spool {}: skipping a damaged {}", path_, what);
  if (on_corrupt_) on_corrupt_(what);
}

Result<SpoolOpenReport> ResultSpool::open() {
  SpoolOpenReport report;
  if (!file_backed()) return report;
  if (fd_ >= 0) return Error{"spool_io", "result spool " + path_ + " is already open"};

  std::error_code ec;
  auto dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec) return Error{"spool_io", "create directory " + dir.string() + ": " + ec.message()};

  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Error{"spool_io", errno_text("open", path_)};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    bool busy = errno == EWOULDBLOCK;
    std::string msg = busy ? "result spool " + path_ + " is in use by another process"
                           : errno_text("flock", path_);
    ::close(fd);
    return Error{busy ? "spool_locked" : "spool_io", msg};
  }
  fd_ = fd;

  // One pass over the file: count good records, report damaged ones.
  std::ifstream in(path_, std::ios::binary);
  if (!in) return Error{"spool_io", errno_text("read", path_)};
  std::string line, why;
  uint64_t offset = 0;
  bool unterminated_good = false;
  while (std::getline(in, line)) {
    bool terminated = !in.eof();
    if (decode_line(line, why)) {
      ++report.records;
      if (!terminated) unterminated_good = true;  // cut right before its '\n'
    } else {
      ++report.corrupt;
      report_corrupt(offset, terminated ? why : "truncated trailing record (" + why + ")");
    }
    offset += line.size() + (terminated ? 1 : 0);
  }
  if (in.bad()) return Error{"spool_io", errno_text("read", path_)};
  in.close();

  if (report.corrupt > 0 || unterminated_good) {
    if (auto st = rewrite_without_damage(); !st) return st.error();
    report.rewritten = true;
  }

  struct stat st {};
  if (::fstat(fd_, &st) != 0) return Error{"spool_io", errno_text("stat", path_)};
  write_end_ = static_cast<uint64_t>(st.st_size);
  read_offset_ = window_end_ = 0;
  count_ = report.records;
  syncer_ = std::make_unique<Syncer>(fd_, path_);
  if (count_ > 0)
    logger("results")->info("result spool {}: {} result(s) waiting from an earlier run", path_,
                            count_);
  truncate_if_drained();  // e.g. only damaged records were left
  return report;
}

// Copies the good records to <path>.tmp, syncs it, and renames it over the
// spool; the new file is then opened and locked in place of the old one.
Status ResultSpool::rewrite_without_damage() {
  std::string tmp = path_ + ".tmp";
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return Error{"spool_io", errno_text("open", tmp)};
  std::ifstream in(path_, std::ios::binary);
  std::string line, why;
  bool ok = static_cast<bool>(in);
  while (ok && std::getline(in, line)) {
    if (!decode_line(line, why)) continue;
    line += '\n';
    ok = write_all(out, line);
  }
  ok = ok && !in.bad() && ::fdatasync(out) == 0;
  std::string err = ok ? "" : errno_text("rewrite", tmp);
  ::close(out);
  if (ok && ::rename(tmp.c_str(), path_.c_str()) != 0) {
    ok = false;
    err = errno_text("rename", tmp);
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return Error{"spool_io", err};
  }
  // Make the rename itself durable.
  auto dir = std::filesystem::path(path_).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd < 0) return Error{"spool_io", errno_text("open", path_)};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return Error{"spool_locked", "result spool " + path_ + " is in use by another process"};
  }
  ::close(fd_);
  fd_ = fd;
  logger("results")->warn("result spool {}: rewritten without its damaged records", path_);
  return Ok{};
}

Status ResultSpool::append(std::string_view payload) {
  if (payload.find('\n') != std::string_view::npos)
    return Error{"spool_invalid", "a spool record must be one line"};
  if (!file_backed()) {
    if (window_.size() >= options_.memory_limit)
      return Error{"spool_full", "in-memory result backlog is full (" +
                                     std::to_string(options_.memory_limit) + " results)"};
    window_.push_back({std::string(payload), 0});
    ++count_;
    return Ok{};
  }
  if (fd_ < 0) return Error{"spool_closed", "result spool " + path_ + " is not open"};
  std::string line = encode(payload);
  if (!write_all(fd_, line)) {
    std::string err = errno_text("write", path_);
    // Cut a partial record off, so the next append does not run into it.
    if (::ftruncate(fd_, static_cast<off_t>(write_end_)) != 0)
      logger("results")->error("{}", errno_text("ftruncate", path_));
    return Error{"spool_io", err};
  }
  write_end_ += line.size();
  ++count_;
  if (++unsynced_ >= options_.sync_every)
    request_sync();
  else
    arm_sync_timer();
  return Ok{};
}

void ResultSpool::arm_sync_timer() {
  if (sync_timer_) return;
  sync_timer_ = clock_.call_after(options_.sync_interval, [this] {
    sync_timer_ = 0;
    if (unsynced_ > 0) request_sync();
  });
}

uint64_t ResultSpool::request_sync() {
  if (sync_timer_) {
    clock_.cancel(sync_timer_);
    sync_timer_ = 0;
  }
  unsynced_ = 0;
  if (!syncer_) return 0;
  return syncer_->request();
}

bool ResultSpool::synced(uint64_t ticket) const {
  return !syncer_ || syncer_->completed() >= ticket;
}

void ResultSpool::read_more(size_t want) {
  size_t chunk = kReadChunk;
  std::string buf, why;
  while (window_.size() < want && window_end_ < write_end_) {
    size_t avail = static_cast<size_t>(write_end_ - window_end_);
    size_t n = std::min(chunk, avail);
    buf.resize(n);
    ssize_t got = ::pread(fd_, buf.data(), n, static_cast<off_t>(window_end_));
    if (got <= 0) {
      logger("results")->error("{}", got < 0
                                         ? errno_text("read", path_)
                                         : "result spool " + path_ + " is shorter than written");
      return;  // try again at the next peek
    }
    buf.resize(static_cast<size_t>(got));
    size_t pos = 0;
    while (window_.size() < want) {
      size_t nl = buf.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string_view line(buf.data() + pos, nl - pos);
      if (auto payload = decode_line(line, why)) {
        window_.push_back({std::string(*payload), window_end_ + nl + 1});
      } else {
        report_corrupt(window_end_ + pos, why);
        if (count_ > window_.size()) --count_;
      }
      pos = nl + 1;
    }
    if (pos == 0) {
      if (static_cast<size_t>(got) == avail) {
        // No newline up to the end: only a failed append could leave this,
        // and append() cuts those off. Skip it rather than stall.
        report_corrupt(window_end_, "unterminated record");
        if (count_ > window_.size()) --count_;
        window_end_ = write_end_;
        return;
      }
      chunk *= 2;  // one record longer than the chunk
      continue;
    }
    window_end_ += pos;
  }
}

std::vector<std::string> ResultSpool::peek(size_t max) {
  if (file_backed() && fd_ >= 0 && window_.size() < max) read_more(max);
  std::vector<std::string> out;
  size_t n = std::min(max, window_.size());
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(window_[i].payload);
  return out;
}

void ResultSpool::consume(size_t n) {
  n = std::min(n, window_.size());
  if (n == 0) return;
  uint64_t end = window_[n - 1].end;
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(n));
  count_ = count_ >= n ? count_ - n : 0;
  if (!file_backed()) return;
  // Damaged records skipped after the last one consumed are consumed too.
  read_offset_ = window_.empty() ? window_end_ : end;
  truncate_if_drained();
}

void ResultSpool::truncate_if_drained() {
  if (fd_ < 0 || !window_.empty() || read_offset_ < write_end_ || write_end_ == 0) return;
  if (::ftruncate(fd_, 0) != 0) {
    logger("results")->error("{}", errno_text("ftruncate", path_));
    return;
  }
  read_offset_ = window_end_ = write_end_ = 0;
  count_ = 0;
}

}  // namespace guardant::engine
