// RESP2 encoding and decoding through hiredis's protocol code only
// (redisFormatCommandArgv and redisReader); no hiredis I/O is used.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "redis/reply.hpp"

struct redisReader;

namespace guardant::engine::redis {

// Appends `argv` as one RESP command (an array of bulk strings) to `out`.
// Fails only when memory runs out.
Status append_command(std::string& out, const std::vector<std::string>& argv);

// Incremental reply parser: feed() bytes as they arrive, then next() until it
// returns nullopt (needs more bytes). A protocol error is permanent: the
// connection must be dropped. One per connection; not copyable.
class RespReader {
 public:
  RespReader();
  ~RespReader();
  RespReader(const RespReader&) = delete;
  RespReader& operator=(const RespReader&) = delete;

  Status feed(const char* data, size_t len);
  // The next complete reply, nullopt when more bytes are needed, or an Error
  // (code "protocol") when the stream is not valid RESP.
  Result<std::optional<Reply>> next();

 private:
  redisReader* reader_;
};

}  // namespace guardant::engine::redis
