#include "metrics/process.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace guardant::engine::metrics {
namespace {

// Boot time in seconds since the epoch, from the "btime" line of /proc/stat;
// /proc/self/stat gives the start time only relative to it.
std::optional<double> boot_time() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("btime ")) return std::strtod(line.c_str() + 6, nullptr);
  return std::nullopt;
}

std::optional<double> count_open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return std::nullopt;
  // The directory stream holds a descriptor of its own while we count; it is
  // not one of the process's, so leave it out.
  const std::string own = std::to_string(dirfd(d));
  double n = 0;
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || name == own) continue;
    ++n;
  }
  closedir(d);
  return n;
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats s;
  std::ifstream in("/proc/self/stat");
  std::string stat;
  if (std::getline(in, stat)) {
    // Field 2 is the command name in parentheses and may itself contain
    // spaces or ')', so split only after the last ')'.
    auto close = stat.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(stat.substr(close + 1));
      std::vector<std::string> f;  // f[0] is field 3 (state)
      for (std::string tok; rest >> tok;) f.push_back(tok);
      const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
      auto field = [&](size_t n) { return std::strtod(f[n - 3].c_str(), nullptr); };
      if (f.size() >= 22 && ticks > 0 && page > 0) {
        s.cpu_seconds = (field(14) + field(15)) / ticks;
        if (auto bt = boot_time()) s.start_time_seconds = *bt + field(22) / ticks;
        s.virtual_bytes = field(23);
        s.resident_bytes = field(24) * page;
      }
    }
  }
  s.open_fds = count_open_fds();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    s.max_fds = static_cast<double>(rl.rlim_cur);
  return s;
}

}  // namespace guardant::engine::metrics
