// guardant/json.hpp: parsing, errors with offsets, the writer's escaping and
// numbers, and the option getters' messages (which users read in failed jobs).
#include <gtest/gtest.h>

#include <cmath>
#include <guardant/json.hpp>
#include <limits>
#include <string>

namespace json = guardant::json;
using guardant::ConfigError;

namespace {

size_t error_offset(const std::string& text) {
  try {
    json::parse(text);
  } catch (const json::ParseError& e) {
    return e.offset();
  }
  ADD_FAILURE() << "no ParseError for: " << text;
  return static_cast<size_t>(-1);
}

std::string error_text(const std::string& text) {
  try {
    json::parse(text);
  } catch (const json::ParseError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string config_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

}  // namespace

TEST(SdkJson, ParsesScalarsAndContainers) {
  auto v = json::parse(R"( {"n": null, "t": true, "f": false, "s": "x", "a": [1, 2.5, "y"],
                            "o": {"k": -3}} )");
  ASSERT_TRUE(v.is_object());
  EXPECT_TRUE(v["n"].is_null());
  EXPECT_TRUE(v["t"].as_bool());
  EXPECT_FALSE(v["f"].as_bool());
  EXPECT_EQ(v["s"].as_string(), "x");
  ASSERT_EQ(v["a"].size(), 3u);
  EXPECT_EQ(v["a"].at(0).as_int64(), 1);
  EXPECT_DOUBLE_EQ(v["a"].at(1).as_number(), 2.5);
  EXPECT_EQ(v["a"].at(2).as_string(), "y");
  EXPECT_EQ(v["o"]["k"].as_int64(), -3);
  EXPECT_TRUE(v["missing"].is_null());
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(SdkJson, PreservesObjectKeyOrderAndLastDuplicateWins) {
  auto v = json::parse(R"({"zeta":1,"alpha":2,"mid":3,"alpha":4})");
  const auto& members = v.as_object();
  ASSERT_EQ(members.size(), 4u);
  EXPECT_EQ(members[0].first, "zeta");
  EXPECT_EQ(members[1].first, "alpha");
  EXPECT_EQ(members[2].first, "mid");
  EXPECT_EQ(v["alpha"].as_int64(), 4);  // as JSON.parse does
}

TEST(SdkJson, NumbersKnowWhetherTheyAreIntegers) {
  auto v = json::parse(R"([1, 1.0, 1e2, 1.5, -0, 9007199254740993, 1e300, -7])");
  const auto& a = v.as_array();
  EXPECT_TRUE(a[0].is_integer());
  EXPECT_TRUE(a[1].is_integer());  // like Number.isInteger(1.0)
  EXPECT_TRUE(a[2].is_integer());
  EXPECT_EQ(a[2].as_int64(), 100);
  EXPECT_FALSE(a[3].is_integer());
  EXPECT_THROW(a[3].as_int64(), json::TypeError);
  EXPECT_TRUE(a[4].is_integer());
  // Beyond 2^53 the integer literal is kept exactly, not rounded to a double.
  EXPECT_EQ(a[5].as_int64(), 9007199254740993LL);
  EXPECT_EQ(json::serialize(a[5]), "9007199254740993");
  EXPECT_FALSE(a[6].is_integer());  // integral but does not fit in int64
  EXPECT_EQ(a[7].as_int64(), -7);
}

TEST(SdkJson, DecodesEscapesAndUnicode) {
  auto v = json::parse(R"(["\"\\\/\b\f\n\r\t", "\u00e9\u4e2d", "\ud83d\ude00", "héllo 😀"])");
  EXPECT_EQ(v.at(0).as_string(), "\"\\/\b\f\n\r\t");
  EXPECT_EQ(v.at(1).as_string(), "\xC3\xA9\xE4\xB8\xAD");
  EXPECT_EQ(v.at(2).as_string(), "\xF0\x9F\x98\x80");
  EXPECT_EQ(v.at(3).as_string(), "h\xC3\xA9llo \xF0\x9F\x98\x80");
}

TEST(SdkJson, TinyNumbersUnderflowToZeroHugeOnesAreErrors) {
  EXPECT_EQ(json::parse("1e-400").as_number(), 0.0);
  EXPECT_EQ(error_offset("[1, 1e400]"), 4u);
  EXPECT_NE(error_text("1e400").find("out of range"), std::string::npos);
}

TEST(SdkJson, ErrorsCarryTheByteOffset) {
  EXPECT_EQ(error_offset(""), 0u);
  EXPECT_EQ(error_offset("   "), 3u);
  EXPECT_EQ(error_offset(R"({"a":1,})"), 7u);  // trailing comma: '}' where a key belongs
  EXPECT_EQ(error_offset("[1 2]"), 3u);
  EXPECT_EQ(error_offset(R"({"a" 1})"), 5u);
  EXPECT_EQ(error_offset("{} x"), 3u);
  EXPECT_EQ(error_offset("01"), 0u);
  EXPECT_EQ(error_offset("[tru]"), 1u);
  EXPECT_EQ(error_offset(R"(["abc)"), 1u);  // unterminated: points at the opening quote
  EXPECT_EQ(error_offset("[\"a\x01\"]"), 3u);
  EXPECT_EQ(error_offset(R"(["\x"])"), 2u);
  EXPECT_EQ(error_offset(R"(["\ud800"])"), 2u);       // lone high surrogate
  EXPECT_EQ(error_offset(R"(["\udc00"])"), 2u);       // lone low surrogate
  EXPECT_EQ(error_offset("[\"ok\xC3\x28\"]"), 4u);    // invalid UTF-8
  EXPECT_EQ(error_offset("[\"\xED\xA0\x80\"]"), 2u);  // UTF-8-encoded surrogate
  EXPECT_EQ(error_offset("[\"\xC0\xAF\"]"), 2u);      // overlong
  EXPECT_EQ(error_offset("// c\n{}"), 0u);            // no comments
  EXPECT_EQ(error_offset("NaN"), 0u);
  EXPECT_EQ(error_offset("-"), 1u);
  EXPECT_EQ(error_offset("1."), 2u);
}

TEST(SdkJson, ErrorMessagesSayWhatWasExpected) {
  EXPECT_EQ(error_text(R"({"a" 1})"),
            "invalid JSON at byte 5: unexpected '1', expected ':' after an object key");
  EXPECT_EQ(error_text("[1,"), "invalid JSON at byte 3: unexpected end of input, expected a value");
}

TEST(SdkJson, RejectsHostileNesting) {
  std::string deep(100000, '[');
  EXPECT_THROW(json::parse(deep), json::ParseError);
  std::string ok = std::string(200, '[') + std::string(200, ']');
  EXPECT_NO_THROW(json::parse(ok));
}

TEST(SdkJson, AccessorsOnTemporariesReturnValues) {
  auto make = [] { return json::parse(R"({"ips":["a","b"],"o":{"k":"v"}})"); };
  std::vector<std::string> seen;
  for (const auto& ip : make()["ips"].as_array()) seen.push_back(ip.as_string());
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
  std::string v = make()["o"]["k"].as_string();
  EXPECT_EQ(v, "v");
  EXPECT_EQ(make()["ips"].at(1).as_string(), "b");
}

TEST(SdkJson, WrongAccessorThrowsTypeError) {
  auto v = json::parse(R"({"a":"x"})");
  EXPECT_THROW(v["a"].as_number(), json::TypeError);
  EXPECT_THROW(v.as_array(), json::TypeError);
}

TEST(SdkJsonWriter, EscapesStringsAndPassesUnicodeThrough) {
  json::JsonWriter w;
  w.field("q", "a\"b\\c/d")
      .field("ctl", std::string("\n\r\t\b\f\x01\x1f\x7f", 8))
      .field("nul", std::string("a\0b", 3))
      .field("uni", "h\xC3\xA9llo \xF0\x9F\x98\x80 \xE2\x80\xA8")
      .field("bad", "x\xFFy\xC3");
  EXPECT_EQ(w.str(),
            "{\"q\":\"a\\\"b\\\\c/d\","
            "\"ctl\":\"\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\","
            "\"nul\":\"a\\u0000b\","
            "\"uni\":\"h\xC3\xA9llo \xF0\x9F\x98\x80 \xE2\x80\xA8\","
            "\"bad\":\"x\\ufffdy\\ufffd\"}");
  // Whatever went in, what comes out parses back.
  auto back = json::parse(w.str());
  EXPECT_EQ(back["ctl"].as_string(), std::string("\n\r\t\b\f\x01\x1f\x7f", 8));
  EXPECT_EQ(back["nul"].as_string(), std::string("a\0b", 3));
  EXPECT_EQ(back["bad"].as_string(), "x\xEF\xBF\xBDy\xEF\xBF\xBD");
}

TEST(SdkJsonWriter, WritesNumbersWithFullPrecision) {
  json::JsonWriter w;
  w.field("a", 0.1)
      .field("b", 0.21)
      .field("c", 1.0 / 3.0)
      .field("d", 1e21)
      .field("e", 5e-324)
      .field("f", 600000.0)
      .field("g", 1e-7)
      .field("h", 0.000001)
      .field("i", 8080)
      .field("big", int64_t{9007199254740993})
      .field("u", uint64_t{18446744073709551615ULL})
      .field("neg", -42)
      .field("nan", std::nan(""))
      .field("inf", std::numeric_limits<double>::infinity())
      .field("t", true)
      .field("null", nullptr);
  std::string s = w.str();
  EXPECT_EQ(s, R"({"a":0.1,"b":0.21,"c":0.3333333333333333,"d":1e+21,"e":5e-324,"f":600000,)"
               R"("g":1e-07,"h":0.000001,"i":8080,)"
               R"("big":9007199254740993,"u":18446744073709551615,"neg":-42,"nan":null,)"
               R"("inf":null,"t":true,"null":null})");
  auto back = json::parse(s);
  EXPECT_EQ(back["c"].as_number(), 1.0 / 3.0);  // exact round trip
  EXPECT_EQ(back["e"].as_number(), 5e-324);
  EXPECT_EQ(back["big"].as_int64(), 9007199254740993LL);
}

TEST(SdkJsonWriter, NestsObjectsAndArrays) {
  json::JsonWriter w;
  w.field("ip", "::1");
  w.begin_object("tls").field("version", "TLSv1.3").begin_array("chain");
  w.begin_object().field("cn", "a").end_object().element("b").element(3).end_array();
  w.end_object();
  w.begin_array("empty").end_array();
  w.begin_object("none").end_object();
  w.field("opt", std::optional<int>()).field("opt2", std::optional<std::string>("x"));
  EXPECT_EQ(w.str(), R"({"ip":"::1","tls":{"version":"TLSv1.3","chain":[{"cn":"a"},"b",3]},)"
                     R"("empty":[],"none":{},"opt":null,"opt2":"x"})");
}

TEST(SdkJsonWriter, ClosesOpenScopesAndRejectsMisuse) {
  json::JsonWriter w;
  w.begin_object("a").begin_array("b").element(1);
  EXPECT_EQ(w.str(), R"({"a":{"b":[1]}})");
  EXPECT_THROW(w.field("k", 1), std::logic_error);  // inside an array
  EXPECT_THROW(w.end_object(), std::logic_error);   // innermost is an array
  w.end_array();
  EXPECT_THROW(w.element(1), std::logic_error);  // inside an object
  w.end_object();
  EXPECT_THROW(w.end_object(), std::logic_error);  // the top level closes in str()
  EXPECT_EQ(w.str(), R"({"a":{"b":[1]}})");
}

TEST(SdkJsonWriter, WritesParsedValuesBackInOrder) {
  const std::string text = R"({"z":[1,2.5,"\u0007",{"y":null}],"a":true,"n":-0.5})";
  auto v = json::parse(text);
  EXPECT_EQ(json::serialize(v), R"({"z":[1,2.5,"\u0007",{"y":null}],"a":true,"n":-0.5})");
  json::JsonWriter w;
  w.field("copy", v);
  EXPECT_EQ(json::parse(w.str())["copy"], v);
}

TEST(SdkOptions, TypedGettersWithDefaults) {
  auto o = json::Options::parse(
      R"({"timeout": 1500.5, "packets": 5, "verbose": true, "name": "x", "ipFamily": "ipv6",
          "tags": ["a", "b"], "nothing": null})");
  EXPECT_DOUBLE_EQ(o.number("timeout", 1000), 1500.5);
  EXPECT_DOUBLE_EQ(o.number("absent", 1000), 1000);
  EXPECT_EQ(o.integer("packets", 3, 1, 100), 5);
  EXPECT_EQ(o.integer("absent", 3, 1, 100), 3);
  EXPECT_TRUE(o.boolean("verbose", false));
  EXPECT_EQ(o.string("name", "d"), "x");
  EXPECT_EQ(o.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"}), "ipv6");
  EXPECT_EQ(o.strings("tags"), (std::vector<std::string>{"a", "b"}));
  // null counts as absent.
  EXPECT_FALSE(o.has("nothing"));
  EXPECT_EQ(o.integer("nothing", 7), 7);
  EXPECT_EQ(o.optional_number("nothing"), std::nullopt);
}

TEST(SdkOptions, ErrorsNameTheOption) {
  auto o = json::Options::parse(
      R"({"timeout": "ten", "packets": 150, "frac": 2.5, "flag": 1, "name": 3,
          "ipFamily": "ipx", "family2": 4, "tags": ["a", 1], "delay": -1})");
  EXPECT_EQ(config_error([&] { o.number("timeout", 1); }),
            "option 'timeout' must be a number, got string");
  EXPECT_EQ(config_error([&] { o.number("timeout", 1, 1, 10); }),
            "option 'timeout' must be a number, got string");
  EXPECT_EQ(config_error([&] { o.number("delay", 1, 0, 60000); }),
            "option 'delay' must be a number between 0 and 60000");
  EXPECT_EQ(config_error([&] { o.integer("packets", 3, 1, 100); }),
            "option 'packets' must be an integer between 1 and 100");
  EXPECT_EQ(config_error([&] { o.integer("frac", 3, 1, 100); }),
            "option 'frac' must be an integer between 1 and 100");
  EXPECT_EQ(config_error([&] { o.integer("frac", 3); }), "option 'frac' must be an integer");
  EXPECT_EQ(config_error([&] { o.integer("timeout", 3, 1, 100); }),
            "option 'timeout' must be an integer, got string");
  EXPECT_EQ(config_error([&] { o.boolean("flag", false); }),
            "option 'flag' must be a boolean, got number");
  EXPECT_EQ(config_error([&] { o.string("name", ""); }),
            "option 'name' must be a string, got number");
  EXPECT_EQ(config_error([&] {
              o.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
            }),
            R"(option 'ipFamily' must be one of "auto", "ipv4", "ipv6", got "ipx")");
  EXPECT_EQ(config_error([&] {
              o.one_of("family2", "auto", {"auto", "ipv4"});
            }),
            R"(option 'family2' must be one of "auto", "ipv4", got number)");
  EXPECT_EQ(config_error([&] { o.strings("tags"); }),
            "option 'tags' must be an array of strings, got number element");
}

TEST(SdkOptions, ConfigMustBeAJsonObject) {
  EXPECT_EQ(config_error([] { json::Options::parse("[]"); }),
            "config must be a JSON object, got array");
  EXPECT_EQ(config_error([] { json::Options::parse("{\"a\":"); }),
            "config is not valid JSON: invalid JSON at byte 5: unexpected end of input, expected "
            "a value");
  EXPECT_NO_THROW(json::Options::parse("{}"));
}

TEST(SdkOptions, CollectsUnknownKeysInOrder) {
  auto o = json::Options::parse(R"({"timeout":1,"timout":2,"ipFamily":"auto","x":1,"x":2})");
  EXPECT_EQ(o.unknown_keys({"timeout", "ipFamily"}), (std::vector<std::string>{"timout", "x"}));
  std::vector<std::string> known{"timeout", "ipFamily", "x"};
  EXPECT_EQ(json::unknown_keys(o.root(), known), (std::vector<std::string>{"timout"}));
  EXPECT_TRUE(json::unknown_keys(json::parse("[1]"), {"a"}).empty());
}
