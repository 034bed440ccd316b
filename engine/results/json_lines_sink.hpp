// Writes one JSON object per line to stdout or a file (standalone mode's
// result output). Each line is written whole and flushed, so a reader that
// tails the file never sees half a record.
#pragma once

#include <boost/json/object.hpp>
#include <cstdio>
#include <string>

#include "core/result.hpp"

namespace guardant::engine {

class JsonLinesSink {
 public:
  // "-" is stdout; anything else is a file opened for append.
  static Result<JsonLinesSink> open(const std::string& path);
  JsonLinesSink(JsonLinesSink&& o) noexcept
      : f_(o.f_), owned_(o.owned_), path_(std::move(o.path_)) {
    o.f_ = nullptr;
  }
  JsonLinesSink& operator=(JsonLinesSink&&) = delete;
  ~JsonLinesSink();

  Status write(const boost::json::object& record);
  const std::string& path() const { return path_; }

 private:
  JsonLinesSink(std::FILE* f, bool owned, std::string path)
      : f_(f), owned_(owned), path_(std::move(path)) {}
  std::FILE* f_;
  bool owned_;
  std::string path_;
};

}  // namespace guardant::engine
