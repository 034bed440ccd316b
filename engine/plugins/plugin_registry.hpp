// Loads probe plugins and keeps the registry of probe types they provide.
//
// Loading a file is done in two stages so that a wrong file is refused before
// any of its code runs: vet_plugin_file() checks ownership, permissions and
// that the file is an ELF object exporting the entry symbol; only then is it
// dlopen'ed (Boost.DLL, RTLD_NOW | RTLD_LOCAL) and handshaken. Every refusal
// is one log line naming the path and the reason, and the worker carries on.
#pragma once

#include <guardant/probe.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/check_result.hpp"
#include "core/result.hpp"
#include "plugins/host_runtime.hpp"

namespace guardant::engine {

struct ProbeTypeInfo {
  std::string name;
  std::string description;
  uint64_t capability_flags = 0;
};

struct PluginInfo {
  std::string path;
  std::string name;
  std::string version;
  std::string description;
  uint16_t abi_major = 0, abi_minor = 0, min_host_abi_minor = 0;
  std::vector<ProbeTypeInfo> types;
};

struct PluginRefusal {
  std::string path;
  std::string reason;
};

// Checks a file before any of its code may run: a regular *.so file, not
// writable by group or others, owned by root or `allowed_uid`, in a directory
// with the same properties, an ELF shared object exporting
// guardant_plugin_init.
Status vet_plugin_file(const std::string& path, unsigned allowed_uid);

// What a running check is, from the registry's side.
struct RunningCheck {
  guardant_check* handle = nullptr;
};

struct CheckRequest {
  std::string check_id;
  std::string type;
  std::string target;
  std::string config_json = "{}";
  Nanos deadline{};
  int64_t timeout_ms = 0;
};

class PluginRegistry {
 public:
  explicit PluginRegistry(HostRuntime& runtime);
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Scans every directory (in order) for *.so files and loads them; returns
  // the number loaded. A missing directory is logged and skipped.
  size_t load_dirs(const std::vector<std::string>& dirs);
  // Vets, loads and registers one file. The error says why it was refused
  // (also recorded in refusals() and logged).
  Status load_file(const std::string& path);
  // Registers a plugin whose init function is linked into the binary (tests).
  Status load_linked(const std::string& label, guardant_plugin_init_fn init);

  // Starts a check of `req.type`. On success the plugin owns the check until
  // on_complete runs (on the loop, exactly once) — unless the host abandons
  // it first. Errors: "unknown_type", "invalid_config" (message from the
  // plugin, naming the option), "worker_error".
  Result<RunningCheck> start_check(const CheckRequest& req,
                                   std::function<void(CheckResult)> on_complete);
  // The host stops waiting for `check`: asks the plugin to cancel; its
  // result, if it ever comes, is dropped and counted as late. Loop thread.
  void abandon(RunningCheck check);

  bool has_type(const std::string& type) const { return types_.count(type) != 0; }
  std::vector<std::string> type_names() const;
  std::vector<PluginInfo> plugins() const;
  const std::vector<PluginRefusal>& refusals() const { return refusals_; }
  // Which plugin serves a type (for result records).
  std::optional<PluginInfo> plugin_for(const std::string& type) const;

  // Unloads every idle plugin (shutdown hook, then dlclose); returns how many
  // were kept because they still have work outstanding.
  size_t unload_idle();
  size_t outstanding_checks() const;

 private:
  struct Loaded;
  Status refuse(const std::string& path, std::string reason);
  Status handshake(std::unique_ptr<Loaded> plugin, guardant_plugin_init_fn init);

  HostRuntime& runtime_;
  std::vector<std::unique_ptr<Loaded>> plugins_;
  std::map<std::string, std::pair<Loaded*, const guardant_probe_type*>> types_;
  std::vector<PluginRefusal> refusals_;
};

}  // namespace guardant::engine
