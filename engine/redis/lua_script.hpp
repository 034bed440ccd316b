// Lua scripts run by SHA1 (EVALSHA), loaded on demand.
#pragma once

#include <string>
#include <vector>

#include "redis/redis_connection.hpp"
#include "redis/reply.hpp"

namespace guardant::engine::redis {

// An immutable script: name (for messages and logs), source, and its SHA1
// computed once at construction. Cheap to share by const reference; typically
// a long-lived member or a function-local static.
class LuaScript {
 public:
  LuaScript(std::string name, std::string source);

  const std::string& name() const { return name_; }
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }  // 40 lowercase hex digits

 private:
  std::string name_;
  std::string source_;
  std::string sha1_;
};

// Runs `script` with EVALSHA sha numkeys keys... args.... When Redis answers
// NOSCRIPT (after SCRIPT FLUSH, a restart or a failover) it sends SCRIPT LOAD
// and EVALSHA once more, so a missing script is invisible to the caller.
// An error raised by the script (or any other top-level error) arrives as code
// "redis" with the message "script '<name>': <error text>"; connection errors
// (not_connected, disconnected, stopped) pass through unchanged.
// `script` is copied into the retry path as needed, so it need not outlive the
// call. Loop thread only, like RedisConnection::command().
void eval(RedisConnection& conn, const LuaScript& script, std::vector<std::string> keys,
          std::vector<std::string> args, ReplyCallback cb);

}  // namespace guardant::engine::redis
