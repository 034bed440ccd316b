#include "redis/lua_script.hpp"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>
#include <utility>

namespace guardant::engine::redis {

namespace {

std::string sha1_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha1(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest(sha1) failed");  // startup only, never on the hot path
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

bool is_noscript(const Error& e) {
  return e.code == kErrorRedis && e.message.rfind("NOSCRIPT", 0) == 0;
}

Result<Reply> name_error(const std::string& script_name, Result<Reply> r) {
  if (r.ok() || r.error().code != kErrorRedis) return r;
  return Error{kErrorRedis, "script '" + script_name + "': " + r.error().message};
}

}  // namespace

LuaScript::LuaScript(std::string name, std::string source)
    : name_(std::move(name)), source_(std::move(source)), sha1_(sha1_hex(source_)) {}

void eval(RedisConnection& conn, const LuaScript& script, std::vector<std::string> keys,
          std::vector<std::string> args, ReplyCallback cb) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(std::to_string(keys.size()));
  for (auto& k : keys) argv.push_back(std::move(k));
  for (auto& a : args) argv.push_back(std::move(a));

  // The retry needs the argv and the source again; copy them only into the
  // closure (one allocation per eval), not the whole LuaScript.
  auto shared_argv = std::make_shared<std::vector<std::string>>(argv);
  conn.command(std::move(argv), [&conn, shared_argv, name = script.name(), source = script.source(),
                                 cb = std::move(cb)](Result<Reply> r) mutable {
    if (r.ok() || !is_noscript(r.error())) {
      if (cb) cb(name_error(name, std::move(r)));
      return;
    }
    // The script cache was flushed (SCRIPT FLUSH, restart, failover): load it
    // and run it again, pipelined so it costs one round trip. If LOAD fails
    // (e.g. a syntax error), EVALSHA fails with NOSCRIPT too; report LOAD's
    // error, which says what is wrong with the script.
    conn.pipeline({{"SCRIPT", "LOAD", std::move(source)}, std::move(*shared_argv)},
                  [name = std::move(name), cb = std::move(cb)](std::vector<Result<Reply>> rs) {
                    if (!cb) return;
                    if (rs.size() != 2) {
                      cb(Error{kErrorRedis, "script '" + name + "': unexpected pipeline result"});
                    } else if (!rs[0].ok()) {
                      cb(name_error(name, std::move(rs[0])));
                    } else {
                      cb(name_error(name, std::move(rs[1])));
                    }
                  });
  });
}

}  // namespace guardant::engine::redis
