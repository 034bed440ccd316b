#include "redis/reply.hpp"

#include <charconv>

namespace guardant::engine::redis {

std::optional<std::string> Reply::as_string() const {
  if (type == Type::String || type == Type::Status) return str;
  return std::nullopt;
}

std::optional<int64_t> Reply::as_int() const {
  if (type == Type::Integer) return integer;
  if (type != Type::String && type != Type::Status) return std::nullopt;
  if (str.empty()) return std::nullopt;
  int64_t v = 0;
  const char* begin = str.data();
  const char* end = begin + str.size();
  auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

namespace {

void render(const Reply& r, std::string& out) {
  switch (r.type) {
    case Reply::Type::Nil:
      out += "nil";
      return;
    case Reply::Type::Status:
      out += r.str;
      return;
    case Reply::Type::Error:
      out += "(error) " + r.str;
      return;
    case Reply::Type::Integer:
      out += std::to_string(r.integer);
      return;
    case Reply::Type::String:
      out += '"';
      for (char c : r.str) {
        if (c == '"' || c == '\\') {
          out += '\\';
          out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
          static const char* hex = "0123456789abcdef";
          out += "\\x";
          out += hex[(c >> 4) & 0xf];
          out += hex[c & 0xf];
        } else {
          out += c;
        }
      }
      out += '"';
      return;
    case Reply::Type::Array:
      out += '[';
      for (size_t i = 0; i < r.elements.size(); ++i) {
        if (i) out += ", ";
        render(r.elements[i], out);
      }
      out += ']';
      return;
  }
}

}  // namespace

std::string Reply::debug_string() const {
  std::string out;
  render(*this, out);
  return out;
}

}  // namespace guardant::engine::redis
