// A parsed RESP2 reply and the callback type every Redis command completes with.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace guardant::engine::redis {

struct Reply {
  enum class Type { Nil, Status, Error, Integer, String, Array };

  Type type = Type::Nil;
  std::string str;              // Status, Error, String
  int64_t integer = 0;          // Integer
  std::vector<Reply> elements;  // Array

  bool is_nil() const { return type == Type::Nil; }
  bool is_status() const { return type == Type::Status; }
  bool is_error() const { return type == Type::Error; }
  bool is_integer() const { return type == Type::Integer; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }

  // The text of a String or Status reply; nullopt for any other type.
  std::optional<std::string> as_string() const;
  // An Integer reply, or a String/Status that is entirely a base-10 integer
  // (Lua scripts and HGET return numbers as strings); nullopt otherwise.
  std::optional<int64_t> as_int() const;

  // A compact, redis-cli-like rendering for logs and test failure messages,
  // e.g. `["OK", 3, nil, (error) ERR boom]`.
  std::string debug_string() const;

  static Reply nil() { return {}; }
  static Reply status(std::string s) { return {Type::Status, std::move(s), 0, {}}; }
  static Reply error(std::string s) { return {Type::Error, std::move(s), 0, {}}; }
  static Reply string(std::string s) { return {Type::String, std::move(s), 0, {}}; }
  static Reply from_int(int64_t v) { return {Type::Integer, {}, v, {}}; }
  static Reply array(std::vector<Reply> e) { return {Type::Array, {}, 0, std::move(e)}; }

  friend bool operator==(const Reply&, const Reply&) = default;
};

// Error codes a ReplyCallback can receive (Error::code):
//   "redis"         a top-level error reply (-ERR, -NOSCRIPT, -NOAUTH, -WRONGTYPE ...);
//                   Error::message is the error text as Redis sent it.
//   "not_connected" the command was issued while the connection was not ready;
//                   the message includes the last connect error.
//   "disconnected"  the connection dropped with the command in flight (it may or
//                   may not have run on the server); the message says why.
//   "stopped"       stop() was called (or the connection destroyed) first.
// Error elements nested inside an Array stay Reply{Type::Error}.
inline constexpr const char* kErrorRedis = "redis";
inline constexpr const char* kErrorNotConnected = "not_connected";
inline constexpr const char* kErrorDisconnected = "disconnected";
inline constexpr const char* kErrorStopped = "stopped";

using ReplyCallback = std::function<void(Result<Reply>)>;

}  // namespace guardant::engine::redis
