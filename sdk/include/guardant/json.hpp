// Small header-only JSON for plugin authors (namespace guardant::json).
//
// What it is for: reading a check's options (the request's config_json) and
// writing a result's details_json. It is not a general-purpose JSON library:
// it favours clear errors and a small surface over speed.
//
//  - parse(): strict RFC 8259 text -> Value tree. Object members keep their
//    order; numbers are doubles that also remember whether they are exact
//    integers (so 9007199254740993 survives as an int64). Invalid UTF-8,
//    unescaped control characters, lone surrogates, trailing commas, comments
//    and NaN are errors. Errors are ParseError, carrying the byte offset.
//  - Options: typed getters over a config object that throw
//    guardant::ConfigError naming the option, e.g.
//      option 'timeout' must be a number, got string
//      option 'packets' must be an integer between 1 and 100
//    A member whose value is null counts as absent (the default applies),
//    because JSON producers commonly write null for "not set".
//  - unknown_keys(): the option keys a probe does not know, in order, so the
//    host can warn about typos without failing the check.
//  - JsonWriter: builds one JSON object (the top level of details_json) with
//    nested objects and arrays. Strings are escaped (quotes, backslash, all
//    control characters); valid UTF-8 passes through unchanged and invalid
//    bytes become U+FFFD, so the output is always valid JSON even for bytes
//    read off the network. Doubles are written with the shortest text that
//    reads back to the same value; NaN and infinities become null.
//
// Requires C++17.
#ifndef GUARDANT_JSON_HPP
#define GUARDANT_JSON_HPP

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <guardant/probe.hpp>  // guardant::ConfigError
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace guardant::json {

enum class Type { Null, Bool, Number, String, Array, Object };

// The name used in messages ("got string").
inline const char* type_name(Type t) noexcept {
  switch (t) {
    case Type::Null:
      return "null";
    case Type::Bool:
      return "boolean";
    case Type::Number:
      return "number";
    case Type::String:
      return "string";
    case Type::Array:
      return "array";
    case Type::Object:
      return "object";
  }
  return "unknown";
}

// Malformed JSON text. offset() is the byte index where parsing stopped.
class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& message, size_t offset)
      : std::runtime_error("invalid JSON at byte " + std::to_string(offset) + ": " + message),
        offset_(offset) {}
  size_t offset() const noexcept { return offset_; }

 private:
  size_t offset_;
};

// A Value accessed as the wrong type (a programming error in the caller).
class TypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Value;
using Array = std::vector<Value>;
using Member = std::pair<std::string, Value>;
using Object = std::vector<Member>;

// One JSON value. Copyable; cheap enough for configs and details, not meant
// for large documents.
class Value {
 public:
  Value() noexcept = default;
  Value(std::nullptr_t) noexcept {}                        // NOLINT: implicit by design
  Value(bool b) noexcept : type_(Type::Bool), bool_(b) {}  // NOLINT
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T n) noexcept : type_(Type::Number), num_(static_cast<double>(n)) {  // NOLINT
    if constexpr (std::is_signed_v<T> || sizeof(T) < sizeof(int64_t)) {
      int_exact_ = true;
      int_ = static_cast<int64_t>(n);
    } else if (n <= static_cast<T>(std::numeric_limits<int64_t>::max())) {
      int_exact_ = true;
      int_ = static_cast<int64_t>(n);
    }
  }
  template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Value(T d) noexcept : type_(Type::Number), num_(static_cast<double>(d)) {}  // NOLINT
  Value(std::string s) : type_(Type::String), str_(std::move(s)) {}           // NOLINT
  Value(std::string_view s) : type_(Type::String), str_(s) {}                 // NOLINT
  Value(const char* s) : type_(Type::String), str_(s ? s : "") {}             // NOLINT
  Value(Array a) : type_(Type::Array), arr_(std::move(a)) {}                  // NOLINT
  Value(Object o) : type_(Type::Object), obj_(std::move(o)) {}                // NOLINT

  // A number parsed from an integer literal that fits in int64, kept exact.
  static Value exact_integer(int64_t i, double d) {
    Value v(d);
    v.int_exact_ = true;
    v.int_ = i;
    return v;
  }

  Type type() const noexcept { return type_; }
  bool is_null() const noexcept { return type_ == Type::Null; }
  bool is_bool() const noexcept { return type_ == Type::Bool; }
  bool is_number() const noexcept { return type_ == Type::Number; }
  bool is_string() const noexcept { return type_ == Type::String; }
  bool is_array() const noexcept { return type_ == Type::Array; }
  bool is_object() const noexcept { return type_ == Type::Object; }
  // A number with an integral value representable as int64 (1, 1.0 and 1e2
  // all count, as in JavaScript's Number.isInteger; 1.5 and 1e300 do not).
  bool is_integer() const noexcept {
    if (type_ != Type::Number) return false;
    if (int_exact_) return true;
    // 2^63 is exactly representable; anything below it that is integral fits.
    return std::isfinite(num_) && std::trunc(num_) == num_ && num_ >= -9223372036854775808.0 &&
           num_ < 9223372036854775808.0;
  }

  bool as_bool() const {
    expect(Type::Bool);
    return bool_;
  }
  double as_number() const {
    expect(Type::Number);
    return num_;
  }
  // Throws TypeError unless is_integer().
  int64_t as_int64() const {
    expect(Type::Number);
    if (int_exact_) return int_;
    if (!is_integer()) throw TypeError("JSON number is not an integer");
    return static_cast<int64_t>(num_);
  }
  // The accessors returning references have by-value overloads for
  // temporaries, so that e.g. `for (auto& a : run.details()["ips"].as_array())`
  // does not iterate over a destroyed value.
  const std::string& as_string() const& {
    expect(Type::String);
    return str_;
  }
  std::string as_string() && {
    expect(Type::String);
    return std::move(str_);
  }
  const Array& as_array() const& {
    expect(Type::Array);
    return arr_;
  }
  Array& as_array() & {
    expect(Type::Array);
    return arr_;
  }
  Array as_array() && {
    expect(Type::Array);
    return std::move(arr_);
  }
  const Object& as_object() const& {
    expect(Type::Object);
    return obj_;
  }
  Object& as_object() & {
    expect(Type::Object);
    return obj_;
  }
  Object as_object() && {
    expect(Type::Object);
    return std::move(obj_);
  }

  // Number of elements or members; 0 for scalars.
  size_t size() const noexcept {
    return type_ == Type::Array ? arr_.size() : type_ == Type::Object ? obj_.size() : 0;
  }
  // The member named `key`, or nullptr (also when this is not an object).
  // With duplicate keys the last one wins, as in JavaScript's JSON.parse.
  const Value* find(std::string_view key) const noexcept {
    if (type_ != Type::Object) return nullptr;
    for (auto it = obj_.rbegin(); it != obj_.rend(); ++it)
      if (it->first == key) return &it->second;
    return nullptr;
  }
  // The member named `key`, or a null Value when there is none.
  const Value& operator[](std::string_view key) const& noexcept {
    const Value* v = find(key);
    return v ? *v : null_value();
  }
  Value operator[](std::string_view key) && {
    if (type_ == Type::Object)
      for (auto it = obj_.rbegin(); it != obj_.rend(); ++it)
        if (it->first == key) return std::move(it->second);
    return Value();
  }
  // Array element; throws TypeError when not an array, std::out_of_range
  // when the index is too large.
  const Value& at(size_t index) const& { return as_array().at(index); }
  Value at(size_t index) && {
    expect(Type::Array);
    return std::move(arr_.at(index));
  }

  // Appends a member (objects) or an element (arrays); returns the new value.
  Value& push_back(std::string key, Value v) {
    expect(Type::Object);
    obj_.emplace_back(std::move(key), std::move(v));
    return obj_.back().second;
  }
  Value& push_back(Value v) {
    expect(Type::Array);
    arr_.push_back(std::move(v));
    return arr_.back();
  }

  friend bool operator==(const Value& a, const Value& b) noexcept {
    if (a.type_ != b.type_) return false;
    switch (a.type_) {
      case Type::Null:
        return true;
      case Type::Bool:
        return a.bool_ == b.bool_;
      case Type::Number:
        if (a.int_exact_ && b.int_exact_) return a.int_ == b.int_;
        return a.num_ == b.num_;
      case Type::String:
        return a.str_ == b.str_;
      case Type::Array:
        return a.arr_ == b.arr_;
      case Type::Object:
        return a.obj_ == b.obj_;
    }
    return false;
  }
  friend bool operator!=(const Value& a, const Value& b) noexcept { return !(a == b); }

  static const Value& null_value() noexcept {
    static const Value null;
    return null;
  }

 private:
  void expect(Type t) const {
    if (type_ != t)
      throw TypeError(std::string("JSON value is ") + type_name(type_) + ", not " + type_name(t));
  }

  Type type_ = Type::Null;
  bool bool_ = false;
  bool int_exact_ = false;
  double num_ = 0;
  int64_t int_ = 0;
  std::string str_;
  Array arr_;
  Object obj_;
};

// ------------------------------------------------------------------------
// Parsing
// ------------------------------------------------------------------------

namespace detail {

// Length of the valid UTF-8 sequence starting at s[i] (1-4), or 0 when the
// bytes there are not valid UTF-8 (overlong forms, surrogates and code points
// above U+10FFFF are invalid).
inline size_t utf8_sequence_length(std::string_view s, size_t i) noexcept {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // no overlongs
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  // Deep enough for any config; shallow enough that hostile input cannot
  // overflow the loop thread's stack.
  static constexpr int kMaxDepth = 256;

  explicit Parser(std::string_view text) : s_(text) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected " + describe_here() + " after the value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const { throw ParseError(message, i_); }
  [[noreturn]] void fail_at(size_t offset, const std::string& message) const {
    throw ParseError(message, offset);
  }

  std::string describe_here() const {
    if (i_ >= s_.size()) return "end of input";
    auto c = static_cast<unsigned char>(s_[i_]);
    char buf[16];
    if (c >= 0x20 && c < 0x7F)
      std::snprintf(buf, sizeof buf, "'%c'", c);
    else
      std::snprintf(buf, sizeof buf, "byte 0x%02X", c);
    return buf;
  }

  void skip_ws() noexcept {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  bool consume_literal(std::string_view word) noexcept {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  Value parse_value(int depth) {
    if (i_ >= s_.size()) fail("unexpected end of input, expected a value");
    switch (s_[i_]) {
      case '{':
        return parse_object(depth + 1);
      case '[':
        return parse_array(depth + 1);
      case '"':
        return Value(parse_string());
      case 't':
        if (consume_literal("true")) return Value(true);
        break;
      case 'f':
        if (consume_literal("false")) return Value(false);
        break;
      case 'n':
        if (consume_literal("null")) return Value();
        break;
      default:
        if (s_[i_] == '-' || (s_[i_] >= '0' && s_[i_] <= '9')) return parse_number();
        break;
    }
    fail("unexpected " + describe_here() + ", expected a value");
  }

  Value parse_object(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    ++i_;  // '{'
    Object members;
    skip_ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return Value(std::move(members));
    }
    for (;;) {
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != '"')
        fail("unexpected " + describe_here() + ", expected a string key");
      std::string key = parse_string();
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != ':')
        fail("unexpected " + describe_here() + ", expected ':' after an object key");
      ++i_;
      skip_ws();
      Value v = parse_value(depth);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return Value(std::move(members));
      }
      fail("unexpected " + describe_here() + ", expected ',' or '}' in an object");
    }
  }

  Value parse_array(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    ++i_;  // '['
    Array elements;
    skip_ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return Value(std::move(elements));
    }
    for (;;) {
      skip_ws();
      elements.push_back(parse_value(depth));
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return Value(std::move(elements));
      }
      fail("unexpected " + describe_here() + ", expected ',' or ']' in an array");
    }
  }

  uint32_t parse_hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_ + k];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<uint32_t>(c - 'A' + 10);
      else
        fail_at(i_ + k, "invalid hex digit in \\u escape");
    }
    i_ += 4;
    return v;
  }

  std::string parse_string() {
    const size_t open = i_;
    ++i_;  // '"'
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail_at(open, "unterminated string");
      auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("control character in a string must be escaped");
      if (c == '\\') {
        const size_t esc = i_;
        if (++i_ >= s_.size()) fail_at(open, "unterminated string");
        char e = s_[i_++];
        switch (e) {
          case '"':
            out += '"';
            break;
          case '\\':
            out += '\\';
            break;
          case '/':
            out += '/';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            uint32_t cp = parse_hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              // A high surrogate must be followed by an escaped low one.
              if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u')
                fail_at(esc, "lone UTF-16 surrogate in \\u escape");
              i_ += 2;
              uint32_t low = parse_hex4();
              if (low < 0xDC00 || low > 0xDFFF) fail_at(esc, "lone UTF-16 surrogate in \\u escape");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail_at(esc, "lone UTF-16 surrogate in \\u escape");
            }
            append_utf8(out, cp);
            break;
          }
          default:
            fail_at(esc, "invalid escape sequence");
        }
        continue;
      }
      if (c < 0x80) {
        out += static_cast<char>(c);
        ++i_;
        continue;
      }
      size_t n = utf8_sequence_length(s_, i_);
      if (n == 0) fail("invalid UTF-8 in a string");
      out.append(s_.data() + i_, n);
      i_ += n;
    }
  }

  // Roughly log10(|number|) of a validated number literal, e.g. 3 for
  // "1234.5", -2 for "0.012", 400 for "1e400"; only its sign matters.
  static long decimal_magnitude(const char* p, const char* last) noexcept {
    if (*p == '-') ++p;
    long leading = 0;  // integer digits from the first non-zero one
    long zeros_after_point = 0;
    bool seen_nonzero = false;
    for (; p != last && *p != '.' && *p != 'e' && *p != 'E'; ++p) {
      if (*p != '0') seen_nonzero = true;
      if (seen_nonzero) ++leading;
    }
    if (p != last && *p == '.') {
      for (++p; p != last && *p != 'e' && *p != 'E'; ++p) {
        if (*p != '0') seen_nonzero = true;
        if (!seen_nonzero && leading == 0) ++zeros_after_point;
      }
    }
    long exponent = 0;
    if (p != last) {  // at 'e' or 'E'
      ++p;
      bool negative = *p == '-';
      if (*p == '+' || *p == '-') ++p;
      for (; p != last; ++p) exponent = exponent < 100000 ? exponent * 10 + (*p - '0') : exponent;
      if (negative) exponent = -exponent;
    }
    return (leading > 0 ? leading : -zeros_after_point) + exponent;
  }

  Value parse_number() {
    const size_t start = i_;
    auto digit = [&] { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; };
    if (s_[i_] == '-') ++i_;
    if (!digit()) fail("invalid number: expected a digit");
    if (s_[i_] == '0') {
      ++i_;
      if (digit()) fail_at(start, "invalid number: leading zeros are not allowed");
    } else {
      while (digit()) ++i_;
    }
    bool integral = true;
    if (i_ < s_.size() && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (!digit()) fail("invalid number: expected a digit after '.'");
      while (digit()) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digit()) fail("invalid number: expected a digit in the exponent");
      while (digit()) ++i_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + i_;
    double d = 0;
    auto [ptr, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range) {
      // from_chars reports underflow and overflow alike. Underflow (a value
      // closer to zero than a double can hold) is read as zero; overflow has
      // no JSON representation. Out-of-range values sit near 1e+-308, so the
      // sign of the decimal magnitude tells the two apart.
      if (decimal_magnitude(first, last) > 0) fail_at(start, "number out of range");
      d = (*first == '-') ? -0.0 : 0.0;
    } else if (ec != std::errc() || ptr != last) {
      fail_at(start, "invalid number");
    }
    if (integral) {
      int64_t n = 0;
      auto [iptr, iec] = std::from_chars(first, last, n);
      if (iec == std::errc() && iptr == last) return Value::exact_integer(n, d);
    }
    return Value(d);
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace detail

// Parses one JSON value (surrounding whitespace allowed). Throws ParseError.
inline Value parse(std::string_view text) {
  return detail::Parser(text).parse_document();
}

// ------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------

// Appends `s` as a JSON string literal (with the quotes). Invalid UTF-8
// bytes become U+FFFD, so the output is valid JSON whatever the input.
inline void append_quoted(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = detail::utf8_sequence_length(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

inline std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_quoted(out, s);
  return out;
}

// Shortest text that reads back as the same double, laid out as JavaScript
// prints numbers (plain digits for 1e-6 <= |d| < 1e21, else an exponent), so
// 600000 is "600000", not "6e+05". null for NaN/infinity, which JSON cannot
// represent.
inline void append_number(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  const double a = std::fabs(d);
  const bool plain = a == 0 || (a >= 1e-6 && a < 1e21);
  char buf[64];  // enough for 21 integer digits or "0.000001" plus 17 digits
  auto [ptr, ec] = plain ? std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  if (ec != std::errc()) {  // cannot happen with 64 bytes; keep the output valid anyway
    out += "null";
    return;
  }
  out.append(buf, ptr);
}

inline std::string format_number(double d) {
  std::string out;
  append_number(out, d);
  return out;
}

inline void append_value(std::string& out, const Value& v) {
  switch (v.type()) {
    case Type::Null:
      out += "null";
      break;
    case Type::Bool:
      out += v.as_bool() ? "true" : "false";
      break;
    case Type::Number:
      if (v.is_integer() && std::fabs(v.as_number()) >= 9007199254740992.0)
        out += std::to_string(v.as_int64());  // beyond 2^53 the double may be rounded
      else
        append_number(out, v.as_number());
      break;
    case Type::String:
      append_quoted(out, v.as_string());
      break;
    case Type::Array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        append_value(out, e);
      }
      out += ']';
      break;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        append_quoted(out, k);
        out += ':';
        append_value(out, e);
      }
      out += '}';
      break;
    }
  }
}

// Compact JSON text of `v`.
inline std::string serialize(const Value& v) {
  std::string out;
  append_value(out, v);
  return out;
}

// Builds one JSON object, e.g. a result's details_json:
//
//   JsonWriter w;
//   w.field("ip", "127.0.0.1").field("family", 4).field("port", 8080);
//   w.begin_object("tls").field("version", "TLSv1.3").end_object();
//   w.begin_array("steps").element("send").element(3.5).end_array();
//   std::string details = w.str();  // {"ip":"127.0.0.1",...}
//
// field() is for objects and element() for arrays; using the wrong one, or
// closing the wrong kind of scope, throws std::logic_error (a bug in the
// caller). str() closes scopes that are still open.
class JsonWriter {
 public:
  JsonWriter() {
    out_ = "{";
    scopes_.push_back(Scope{true, true});
  }

  // Writes key:value into the current object. T may be bool, any integer or
  // floating type, anything convertible to std::string_view, nullptr,
  // Value, or std::optional of those (empty -> null).
  template <class T>
  JsonWriter& field(std::string_view key, const T& value) {
    write_key(key);
    write_value(value);
    return *this;
  }
  // Appends a value to the current array.
  template <class T>
  JsonWriter& element(const T& value) {
    begin_element();
    write_value(value);
    return *this;
  }

  JsonWriter& begin_object(std::string_view key) { return open_keyed(key, '{', true); }
  JsonWriter& begin_array(std::string_view key) { return open_keyed(key, '[', false); }
  // Opens an object or array as an element of the current array.
  JsonWriter& begin_object() { return open_element('{', true); }
  JsonWriter& begin_array() { return open_element('[', false); }
  JsonWriter& end_object() { return close(true); }
  JsonWriter& end_array() { return close(false); }

  // The document so far with every open scope closed.
  std::string str() const {
    std::string s = out_;
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) s += it->object ? '}' : ']';
    return s;
  }

 private:
  struct Scope {
    bool object;
    bool first;
  };

  template <class>
  static constexpr bool kUnsupported = false;

  void write_key(std::string_view key) {
    if (scopes_.empty() || !scopes_.back().object)
      throw std::logic_error("JsonWriter: field() outside an object");
    separator();
    append_quoted(out_, key);
    out_ += ':';
  }
  void begin_element() {
    if (scopes_.empty() || scopes_.back().object)
      throw std::logic_error("JsonWriter: element() outside an array");
    separator();
  }
  void separator() {
    if (!scopes_.back().first) out_ += ',';
    scopes_.back().first = false;
  }
  JsonWriter& open_keyed(std::string_view key, char bracket, bool object) {
    write_key(key);
    out_ += bracket;
    scopes_.push_back(Scope{object, true});
    return *this;
  }
  JsonWriter& open_element(char bracket, bool object) {
    begin_element();
    out_ += bracket;
    scopes_.push_back(Scope{object, true});
    return *this;
  }
  JsonWriter& close(bool object) {
    // The top-level object is closed by str(), never explicitly.
    if (scopes_.size() <= 1 || scopes_.back().object != object)
      throw std::logic_error(object ? "JsonWriter: end_object() without a matching begin_object()"
                                    : "JsonWriter: end_array() without a matching begin_array()");
    out_ += object ? '}' : ']';
    scopes_.pop_back();
    return *this;
  }

  template <class T>
  void write_value(const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      out_ += v ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
      out_ += std::to_string(v);  // exact, unlike a round trip through double
    } else if constexpr (std::is_floating_point_v<T>) {
      append_number(out_, static_cast<double>(v));
    } else if constexpr (std::is_same_v<T, std::nullptr_t>) {
      out_ += "null";
    } else if constexpr (std::is_same_v<T, Value>) {
      append_value(out_, v);
    } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
      append_quoted(out_, std::string_view(v));
    } else if constexpr (is_optional<T>::value) {
      if (v)
        write_value(*v);
      else
        out_ += "null";
    } else {
      static_assert(kUnsupported<T>, "JsonWriter: unsupported value type");
    }
  }

  template <class T>
  struct is_optional : std::false_type {};
  template <class T>
  struct is_optional<std::optional<T>> : std::true_type {};

  std::string out_;
  std::vector<Scope> scopes_;
};

// ------------------------------------------------------------------------
// Reading a check's options
// ------------------------------------------------------------------------

// The keys of `object` that are not in `known`, in order of appearance and
// without duplicates. Empty when `object` is not an object.
template <class Known>
std::vector<std::string> unknown_keys(const Value& object, const Known& known) {
  std::vector<std::string> out;
  if (!object.is_object()) return out;
  for (const auto& member : object.as_object()) {
    bool is_known = false;
    for (const auto& k : known)
      if (std::string_view(k) == member.first) is_known = true;
    bool seen = false;
    for (const auto& o : out)
      if (o == member.first) seen = true;
    if (!is_known && !seen) out.push_back(member.first);
  }
  return out;
}
inline std::vector<std::string> unknown_keys(const Value& object,
                                             std::initializer_list<std::string_view> known) {
  return unknown_keys<std::initializer_list<std::string_view>>(object, known);
}

// Typed, validating access to a check's options object. Every getter throws
// guardant::ConfigError with a message that names the option; null counts
// as absent. A value of the wrong JSON type is reported with its type
// ("option 'timeout' must be a number, got string"); a value of the right
// type outside its range with the range ("option 'packets' must be an
// integer between 1 and 100").
//
//   auto opts = json::Options::parse(request().config_json);
//   double timeout = opts.number("timeout", 10000, 1, 600000);
//   std::string family = opts.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
class Options {
 public:
  // Throws ConfigError when `config_json` is not a JSON object.
  static Options parse(std::string_view config_json) {
    Value root;
    try {
      root = json::parse(config_json);
    } catch (const ParseError& e) {
      throw ConfigError(std::string("config is not valid JSON: ") + e.what());
    }
    return Options(std::move(root));
  }
  explicit Options(Value root) : root_(std::move(root)) {
    if (!root_.is_object())
      throw ConfigError(std::string("config must be a JSON object, got ") +
                        type_name(root_.type()));
  }

  const Value& root() const noexcept { return root_; }
  // The option's value, or nullptr when absent or null.
  const Value* get(std::string_view key) const noexcept {
    const Value* v = root_.find(key);
    return v && !v->is_null() ? v : nullptr;
  }
  bool has(std::string_view key) const noexcept { return get(key) != nullptr; }

  std::optional<double> optional_number(std::string_view key) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) type_mismatch(key, "a number", *v);
    return v->as_number();
  }
  // A number in [min, max].
  std::optional<double> optional_number(std::string_view key, double min, double max) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) type_mismatch(key, "a number", *v);
    double d = v->as_number();
    if (!(d >= min && d <= max))
      invalid(key, "a number between " + format_number(min) + " and " + format_number(max));
    return d;
  }
  double number(std::string_view key, double fallback) const {
    return optional_number(key).value_or(fallback);
  }
  double number(std::string_view key, double fallback, double min, double max) const {
    return optional_number(key, min, max).value_or(fallback);
  }

  // An integer in [min, max]; 5.0 counts as an integer, 5.5 does not.
  std::optional<int64_t> optional_integer(std::string_view key,
                                          int64_t min = std::numeric_limits<int64_t>::min(),
                                          int64_t max = std::numeric_limits<int64_t>::max()) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    bool ranged =
        min != std::numeric_limits<int64_t>::min() || max != std::numeric_limits<int64_t>::max();
    std::string expected =
        ranged ? "an integer between " + std::to_string(min) + " and " + std::to_string(max)
               : std::string("an integer");
    if (!v->is_number()) type_mismatch(key, "an integer", *v);
    if (!v->is_integer()) invalid(key, expected);
    int64_t n = v->as_int64();
    if (n < min || n > max) invalid(key, expected);
    return n;
  }
  int64_t integer(std::string_view key, int64_t fallback,
                  int64_t min = std::numeric_limits<int64_t>::min(),
                  int64_t max = std::numeric_limits<int64_t>::max()) const {
    return optional_integer(key, min, max).value_or(fallback);
  }

  std::optional<bool> optional_boolean(std::string_view key) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_bool()) type_mismatch(key, "a boolean", *v);
    return v->as_bool();
  }
  bool boolean(std::string_view key, bool fallback) const {
    return optional_boolean(key).value_or(fallback);
  }

  std::optional<std::string> optional_string(std::string_view key) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) type_mismatch(key, "a string", *v);
    return v->as_string();
  }
  std::string string(std::string_view key, std::string fallback) const {
    auto s = optional_string(key);
    return s ? std::move(*s) : std::move(fallback);
  }

  // A string that must be one of `allowed`:
  //   option 'ipFamily' must be one of "auto", "ipv4", "ipv6", got "ipx"
  std::string one_of(std::string_view key, std::string fallback,
                     std::initializer_list<std::string_view> allowed) const {
    const Value* v = get(key);
    if (!v) return fallback;
    std::string expected = "one of ";
    bool first = true;
    for (auto a : allowed) {
      if (!first) expected += ", ";
      first = false;
      expected += quote(a);
    }
    if (!v->is_string()) type_mismatch(key, expected, *v);
    for (auto a : allowed)
      if (a == v->as_string()) return v->as_string();
    std::string got = v->as_string();
    if (got.size() > 64) got = got.substr(0, 64) + "...";
    invalid(key, expected + ", got " + quote(got));
  }

  // An array of strings; empty when absent.
  std::vector<std::string> strings(std::string_view key) const {
    std::vector<std::string> out;
    const Value* v = get(key);
    if (!v) return out;
    if (!v->is_array()) type_mismatch(key, "an array of strings", *v);
    for (const auto& e : v->as_array()) {
      if (!e.is_string()) type_mismatch(key, "an array of strings", e, " element");
      out.push_back(e.as_string());
    }
    return out;
  }

  std::vector<std::string> unknown_keys(std::initializer_list<std::string_view> known) const {
    return json::unknown_keys(root_, known);
  }

 private:
  [[noreturn]] static void invalid(std::string_view key, const std::string& expected) {
    throw ConfigError("option '" + std::string(key) + "' must be " + expected);
  }
  [[noreturn]] static void type_mismatch(std::string_view key, const std::string& expected,
                                         const Value& got, const char* what = "") {
    throw ConfigError("option '" + std::string(key) + "' must be " + expected + ", got " +
                      type_name(got.type()) + what);
  }

  Value root_;
};

}  // namespace guardant::json

#endif  // GUARDANT_JSON_HPP
