#include "plugins/plugin_registry.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/dll/library_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <filesystem>
#include <regex>

#include "core/logging.hpp"

namespace guardant::engine {
namespace fs = std::filesystem;

struct PluginRegistry::Loaded {
  std::string path;
  boost::dll::shared_library lib;
  guardant_host ctx{};
  guardant_host_api api{};
  const guardant_plugin_desc* desc = nullptr;
  PluginInfo info;
};

namespace {

std::string version_text(unsigned major, unsigned minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

Status check_owner_and_mode(const std::string& what, const std::string& path,
                            unsigned allowed_uid) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return Status::failure("permission", what + " cannot be read: " + std::strerror(errno));
  if (S_ISLNK(st.st_mode)) {
    // Follow the link but vet what it points to.
    if (::stat(path.c_str(), &st) != 0)
      return Status::failure("permission", what + " is a dangling symlink");
  }
  if (st.st_uid != 0 && st.st_uid != allowed_uid)
    return Status::failure("permission", what + " is owned by uid " + std::to_string(st.st_uid) +
                                             ", not root or the worker's user (uid " +
                                             std::to_string(allowed_uid) + ")");
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::failure("permission",
                           what + " is writable by group or others (mode " + mode + ")");
  }
  return Ok{};
}

// Boost.DLL puts dlerror's text in the exception message; keep just that.
std::string dlerror_text(const std::string& what) {
  static const std::string marker = "dlerror system message: ";
  auto pos = what.find(marker);
  if (pos == std::string::npos) return what;
  auto text = what.substr(pos + marker.size());
  if (!text.empty() && text.back() == ')') text.pop_back();
  return text;
}

bool valid_type_name(const char* name) {
  if (!name) return false;
  static const std::regex re("[a-z0-9][a-z0-9_-]{0,31}");
  return std::regex_match(name, re);
}

}  // namespace

Status vet_plugin_file(const std::string& path, unsigned allowed_uid) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return Status::failure("not_a_file", "not a regular file");
  if (fs::path(path).extension() != ".so")
    return Status::failure("not_a_plugin", "file name does not end in .so");
  auto dir = fs::absolute(path, ec).parent_path().string();
  if (auto st = check_owner_and_mode("directory " + dir, dir, allowed_uid); !st) return st;
  if (auto st = check_owner_and_mode("file", path, allowed_uid); !st) return st;
  // Read the symbol table without running anything from the file.
  try {
    boost::dll::library_info info(path, /*throw_if_not_native=*/true);
    auto symbols = info.symbols();
    if (std::find(symbols.begin(), symbols.end(), GUARDANT_PLUGIN_ENTRY_SYMBOL) == symbols.end())
      return Status::failure("missing_entry", std::string("missing entry point ") +
                                                  GUARDANT_PLUGIN_ENTRY_SYMBOL +
                                                  " (not a Guardant probe plugin?)");
  } catch (const std::exception& e) {
    return Status::failure(
        "not_elf", std::string("not an ELF shared object for this machine (") + e.what() + ")");
  }
  return Ok{};
}

PluginRegistry::PluginRegistry(HostRuntime& runtime) : runtime_(runtime) {}

PluginRegistry::~PluginRegistry() {
  if (auto kept = unload_idle())
    logger("plugins")->warn("{} plugin(s) still had work outstanding and stay loaded", kept);
  // Plugins with outstanding work are never dlclose'd: their code (and the
  // check handles they hold) may still be used by a late callback. They move
  // to a process-lifetime list, reachable rather than leaked.
  static auto* still_busy = new std::vector<std::unique_ptr<Loaded>>();
  for (auto& p : plugins_) still_busy->push_back(std::move(p));
}

Status PluginRegistry::refuse(const std::string& path, std::string reason) {
  logger("plugins")->error("refused plugin {}: {}", path, reason);
  refusals_.push_back({path, reason});
  return Status::failure("plugin_refused", std::move(reason));
}

size_t PluginRegistry::load_dirs(const std::vector<std::string>& dirs) {
  size_t loaded = 0;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      logger("plugins")->warn("plugin directory {} does not exist; skipped", dir);
      continue;
    }
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".so") files.push_back(entry.path().string());
    std::sort(files.begin(), files.end());
    for (const auto& f : files)
      if (load_file(f)) ++loaded;
  }
  return loaded;
}

Status PluginRegistry::load_file(const std::string& path) {
  if (auto st = vet_plugin_file(path, ::geteuid()); !st) return refuse(path, st.error().message);
  auto p = std::make_unique<Loaded>();
  p->path = path;
  try {
    namespace mode = boost::dll::load_mode;
    p->lib.load(path, mode::rtld_now | mode::rtld_local);
  } catch (const std::exception& e) {
    return refuse(path, "dlopen failed: " + dlerror_text(e.what()));
  }
  if (!p->lib.has(GUARDANT_PLUGIN_ENTRY_SYMBOL))
    return refuse(path, std::string("missing entry point ") + GUARDANT_PLUGIN_ENTRY_SYMBOL);
  auto init =
      p->lib.get<std::remove_pointer_t<guardant_plugin_init_fn>>(GUARDANT_PLUGIN_ENTRY_SYMBOL);
  return handshake(std::move(p), init);
}

Status PluginRegistry::load_linked(const std::string& label, guardant_plugin_init_fn init) {
  auto p = std::make_unique<Loaded>();
  p->path = label;
  return handshake(std::move(p), init);
}

Status PluginRegistry::handshake(std::unique_ptr<Loaded> p, guardant_plugin_init_fn init) {
  const auto& path = p->path;
  p->ctx.plugin_name = fs::path(path).stem().string();
  p->api = runtime_.make_api(p->ctx);
  char err[1024] = {0};
  const guardant_plugin_desc* d = init(&p->api, err, sizeof err);
  err[sizeof err - 1] = 0;
  if (!d) return refuse(path, std::string("init failed: ") + (err[0] ? err : "no reason given"));
  // The first three fields are frozen for every ABI major.
  if (d->struct_size < 8) return refuse(path, "descriptor too small to carry an ABI version");
  if (d->abi_major != GUARDANT_ABI_MAJOR)
    return refuse(path, "ABI major mismatch: plugin built for ABI " +
                            version_text(d->abi_major, d->abi_minor) + ", host provides ABI " +
                            version_text(GUARDANT_ABI_MAJOR, GUARDANT_ABI_MINOR));
  auto unwind = [&](std::string reason) {
    // Init ran, so give the plugin its shutdown before we drop it.
    if (GUARDANT_HAS_FIELD(d, guardant_plugin_desc, shutdown) && d->shutdown) d->shutdown();
    return refuse(path, std::move(reason));
  };
  if (d->struct_size < offsetof(guardant_plugin_desc, shutdown))
    return unwind("descriptor smaller than ABI 1.0 requires");
  if (d->min_host_abi_minor > GUARDANT_ABI_MINOR)
    return unwind("plugin requires host ABI " + version_text(d->abi_major, d->min_host_abi_minor) +
                  " or newer, host provides ABI " +
                  version_text(GUARDANT_ABI_MAJOR, GUARDANT_ABI_MINOR));
  if (!d->name || !*d->name) return unwind("descriptor has no plugin name");
  if (d->probe_type_count == 0 || !d->probe_types) return unwind("plugin declares no probe types");

  PluginInfo info;
  info.path = path;
  info.name = d->name;
  info.version = d->version ? d->version : "0";
  info.description = d->description ? d->description : "";
  info.abi_major = d->abi_major;
  info.abi_minor = d->abi_minor;
  info.min_host_abi_minor = d->min_host_abi_minor;
  // The array's stride is its elements' struct_size, so a newer minor's
  // larger entries are still walked correctly.
  const auto* base = reinterpret_cast<const char*>(d->probe_types);
  const size_t stride = d->probe_types[0].struct_size;
  if (stride < offsetof(guardant_probe_type, cancel_check) + sizeof(void*))
    return unwind("probe type entries smaller than ABI 1.0 requires");
  std::vector<const guardant_probe_type*> entries;
  for (size_t i = 0; i < d->probe_type_count; ++i) {
    auto* t = reinterpret_cast<const guardant_probe_type*>(base + i * stride);
    if (!valid_type_name(t->name))
      return unwind(std::string("invalid probe type name '") + (t->name ? t->name : "(null)") +
                    "' (expected [a-z0-9_-], at most 32 characters)");
    if (!t->start_check)
      return unwind(std::string("probe type '") + t->name + "' has no start_check");
    if (auto it = types_.find(t->name); it != types_.end())
      return unwind(std::string("duplicate probe type '") + t->name + "': already provided by " +
                    it->second.first->info.name + " (" + it->second.first->path + ")");
    for (auto* e : entries)
      if (std::string(e->name) == t->name)
        return unwind(std::string("probe type '") + t->name + "' declared twice");
    entries.push_back(t);
    info.types.push_back({t->name, t->description ? t->description : "", t->capability_flags});
  }
  p->ctx.plugin_name = info.name;
  p->desc = d;
  p->info = std::move(info);
  for (auto* t : entries) types_[t->name] = {p.get(), t};
  std::string names;
  for (auto& t : p->info.types) names += (names.empty() ? "" : ",") + t.name;
  logger("plugins")->info("loaded plugin {} {} (ABI {}) from {}: {}", p->info.name, p->info.version,
                          version_text(d->abi_major, d->abi_minor), path, names);
  plugins_.push_back(std::move(p));
  return Ok{};
}

Result<RunningCheck> PluginRegistry::start_check(const CheckRequest& req,
                                                 std::function<void(CheckResult)> on_complete) {
  auto it = types_.find(req.type);
  if (it == types_.end())
    return Result<RunningCheck>::failure("unknown_type",
                                         "no probe plugin provides type '" + req.type + "'");
  auto [plugin, type] = it->second;
  auto* check = new guardant_check;
  check->host = &plugin->ctx;
  check->type_name = req.type;
  check->type = type;
  check->on_complete = std::move(on_complete);
  plugin->ctx.activity.checks.insert(check);

  guardant_check_request r{};
  r.struct_size = sizeof r;
  r.abi_major = GUARDANT_ABI_MAJOR;
  r.abi_minor = GUARDANT_ABI_MINOR;
  r.check_id = req.check_id.c_str();
  r.probe_type = req.type.c_str();
  r.target = req.target.c_str();
  r.config_json = req.config_json.empty() ? "{}" : req.config_json.c_str();
  r.deadline_ns = req.deadline.count();
  r.timeout_ms = req.timeout_ms;
  char err[1024] = {0};
  auto rc = type->start_check(type->type_user, check, &r, &check->check_user, err, sizeof err);
  err[sizeof err - 1] = 0;
  if (rc == GUARDANT_OK) return RunningCheck{check};

  std::string message = err[0] ? err : "probe refused the check without a reason";
  if (check->completed) {
    // The plugin completed and then reported an error: keep the error, drop
    // the result when its delivery runs (that frees the handle).
    check->abandoned = true;
    check->on_complete = nullptr;
  } else {
    plugin->ctx.activity.checks.erase(check);
    delete check;
  }
  if (rc == GUARDANT_ERR_INVALID_CONFIG)
    return Result<RunningCheck>::failure("invalid_config", std::move(message));
  return Result<RunningCheck>::failure("worker_error", std::move(message));
}

void PluginRegistry::abandon(RunningCheck rc) {
  auto* check = rc.handle;
  if (!check || check->abandoned) return;
  check->abandoned = true;
  // Never cancel a check the plugin has already completed: its state may be
  // gone. The pending delivery will free the handle and count it as late.
  if (!check->completed && check->type->cancel_check)
    check->type->cancel_check(check->type->type_user, check, check->check_user);
}

std::vector<std::string> PluginRegistry::type_names() const {
  std::vector<std::string> out;
  for (auto& [name, _] : types_) out.push_back(name);
  return out;
}

std::vector<PluginInfo> PluginRegistry::plugins() const {
  std::vector<PluginInfo> out;
  for (auto& p : plugins_) out.push_back(p->info);
  return out;
}

std::optional<PluginInfo> PluginRegistry::plugin_for(const std::string& type) const {
  auto it = types_.find(type);
  if (it == types_.end()) return std::nullopt;
  return it->second.first->info;
}

size_t PluginRegistry::outstanding_checks() const {
  size_t n = 0;
  for (auto& p : plugins_) n += p->ctx.activity.checks.size();
  return n;
}

size_t PluginRegistry::unload_idle() {
  size_t kept = 0;
  for (auto it = plugins_.begin(); it != plugins_.end();) {
    auto& p = *it;
    if (!p->ctx.activity.idle()) {
      auto& a = p->ctx.activity;
      logger("plugins")->warn(
          "not unloading {}: {} checks, {} timers, {} watches, {} resolves outstanding",
          p->info.name, a.checks.size(), a.timers.size(), a.watches.size(), a.resolves);
      ++kept;
      ++it;
      continue;
    }
    if (p->desc && p->desc->shutdown) p->desc->shutdown();
    for (auto t = types_.begin(); t != types_.end();)
      t = t->second.first == p.get() ? types_.erase(t) : std::next(t);
    it = plugins_.erase(it);
  }
  return kept;
}

}  // namespace guardant::engine
