// Our Lua scripts for each queue state transition (engine/queue/lua/), each
// run atomically with EVALSHA. lua/common.lua is prepended to every script at
// build time.
#pragma once

#include "redis/lua_script.hpp"

namespace guardant::engine {

struct QueueScripts {
  redis::LuaScript fetch_job;
  redis::LuaScript finish_job;
  redis::LuaScript retry_job;
  redis::LuaScript extend_locks;
  redis::LuaScript recover_stalled_jobs;
  redis::LuaScript return_job_to_wait;
  redis::LuaScript schedule_next_iteration;
  redis::LuaScript postpone_job;
};

// Built once, on first use (thread-safe static).
const QueueScripts& queue_scripts();

}  // namespace guardant::engine
