#include "queue/job_data.hpp"

#include <gtest/gtest.h>

namespace guardant::engine {
namespace {

TEST(JobData, ReadsTheNestedForm) {
  auto spec = parse_check_spec(R"({
    "nestId": "nest-42", "tier": "pro", "scheduledAt": 1764849600000,
    "service": {"id": "svc-7", "name": "Shop", "type": "web",
                "target": "https://shop.example.com/health",
                "config": {"method": "GET", "timeout": 10000}},
    "routing": {"region": "eu-west", "requiredCapabilities": ["web"]}})");
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->type, "web");
  EXPECT_EQ(spec->target, "https://shop.example.com/health");
  EXPECT_EQ(spec->service_id, "svc-7");
  EXPECT_EQ(spec->nest_id, "nest-42");
  EXPECT_EQ(spec->tier, "pro");
  EXPECT_EQ(spec->timeout_ms, 10000);
  EXPECT_EQ(spec->region, "eu-west");
  EXPECT_EQ(spec->required_capabilities, std::vector<std::string>{"web"});
  EXPECT_EQ(spec->config_json, R"({"method":"GET","timeout":10000})");
}

TEST(JobData, ReadsTheFlatFormAndInnerNestAndTier) {
  auto flat = parse_check_spec(
      R"({"nestId":"n","serviceId":"s","type":"tcp","target":"db:5432","config":{}})");
  ASSERT_TRUE(flat) << flat.error().message;
  EXPECT_EQ(flat->service_id, "s");
  EXPECT_EQ(flat->type, "tcp");
  EXPECT_FALSE(flat->timeout_ms);

  auto inner = parse_check_spec(
      R"({"service":{"id":7,"nestId":"n2","tier":"free","type":"ping","target":"h"}})");
  ASSERT_TRUE(inner) << inner.error().message;
  EXPECT_EQ(inner->service_id, "7");
  EXPECT_EQ(inner->nest_id, "n2");
  EXPECT_EQ(inner->tier, "free");
  EXPECT_EQ(inner->config_json, "{}");
}

TEST(JobData, MalformedDataNamesTheProblem) {
  struct Case {
    const char* data;
    const char* message;
  };
  for (auto c : std::initializer_list<Case>{
           {"not json", "malformed job data: not JSON"},
           {"[1]", "malformed job data: expected an object, got an array"},
           {R"({"service":"web"})", "malformed job data: service must be an object, got a string"},
           {R"({"service":{"target":"x"}})", "malformed job data: service.type is missing"},
           {R"({"service":{"type":3,"target":"x"}})",
            "malformed job data: service.type must be a string, got a number"},
           {R"({"type":"tcp"})", "malformed job data: target is missing"},
           {R"({"service":{"type":"tcp","target":""}})",
            "malformed job data: service.target is empty"},
           {R"({"service":{"type":"tcp","target":"x","config":[]}})",
            "malformed job data: service.config must be an object, got an array"},
           {R"({"service":{"type":"tcp","target":"x","config":{"timeout":"soon"}}})",
            "malformed job data: service.config.timeout must be a positive number of milliseconds"},
           {R"({"nestId":{"a":1},"service":{"type":"tcp","target":"x"}})",
            "malformed job data: nestId must be a string, got an object"},
           {R"({"service":{"type":"tcp","target":"x"},"routing":{"requiredCapabilities":"web"}})",
            "malformed job data: routing.requiredCapabilities must be an array of strings"},
       }) {
    auto spec = parse_check_spec(c.data);
    ASSERT_FALSE(spec) << c.data;
    EXPECT_EQ(spec.error().code, "malformed_job");
    EXPECT_EQ(spec.error().message.rfind(c.message, 0), 0u)
        << c.data << " gave: " << spec.error().message;
  }
}

}  // namespace
}  // namespace guardant::engine
