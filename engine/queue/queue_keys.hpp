// Key names of one BullMQ queue ("bull:monitoring:wait" ...), in the fixed
// order every queue script takes as KEYS (see lua/common.lua).
#pragma once

#include <string>
#include <vector>

namespace guardant::engine {

class QueueKeys {
 public:
  QueueKeys(std::string prefix, std::string queue_name);

  const std::string& queue_name() const { return name_; }
  // "bull:monitoring:" — job keys are this plus the job id.
  const std::string& key_prefix() const { return key_prefix_; }
  const std::vector<std::string>& script_keys() const { return keys_; }
  std::string key(const std::string& suffix) const { return key_prefix_ + suffix; }
  const std::string& marker() const { return marker_; }
  // CLIENT SETNAME value that Node's Queue.getWorkers() recognises:
  // "<prefix>:<base64(queue name)>:w:<worker name>".
  std::string worker_client_name(const std::string& worker_name) const;

 private:
  std::string name_;
  std::string prefix_;
  std::string key_prefix_;
  std::string marker_;
  std::vector<std::string> keys_;
};

}  // namespace guardant::engine
