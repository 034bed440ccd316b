#include "results/json_lines_sink.hpp"

#include <cerrno>
#include <cstring>

#include "results/json_text.hpp"

namespace guardant::engine {

Result<JsonLinesSink> JsonLinesSink::open(const std::string& path) {
  if (path == "-") return JsonLinesSink(stdout, false, path);
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f)
    return Result<JsonLinesSink>::failure(
        "io", "cannot open results file " + path + ": " + std::strerror(errno));
  return JsonLinesSink(f, true, path);
}

JsonLinesSink::~JsonLinesSink() {
  if (f_ && owned_) std::fclose(f_);
}

Status JsonLinesSink::write(const boost::json::object& record) {
  auto line = to_json_text(record);
  line.push_back('\n');
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    return Status::failure("io", "cannot write results to " + path_ + ": " + std::strerror(errno));
  return Ok{};
}

}  // namespace guardant::engine
