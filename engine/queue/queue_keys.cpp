#include "queue/queue_keys.hpp"

#include <boost/beast/core/detail/base64.hpp>

namespace guardant::engine {

QueueKeys::QueueKeys(std::string prefix, std::string queue_name)
    : name_(std::move(queue_name)), prefix_(std::move(prefix)) {
  key_prefix_ = prefix_ + ":" + name_ + ":";
  marker_ = key("marker");
  // Order matters: lua/common.lua names them K_WAIT ... K_STALLED_CHECK.
  for (const char* k :
       {"wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "meta", "pc",
        "marker", "completed", "failed", "repeat", "id", "stalled-check"})
    keys_.push_back(key(k));
}

std::string QueueKeys::worker_client_name(const std::string& worker_name) const {
  namespace b64 = boost::beast::detail::base64;
  std::string encoded(b64::encoded_size(name_.size()), '\0');
  encoded.resize(b64::encode(encoded.data(), name_.data(), name_.size()));
  return prefix_ + ":" + encoded + ":w:" + worker_name;
}

}  // namespace guardant::engine
