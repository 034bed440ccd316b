#include "results/redis_result_writer.hpp"

#include <array>
#include <string_view>
#include <utility>

#include "redis/lua_script.hpp"
#include "results/json_text.hpp"

namespace guardant::engine {
namespace {

// KEYS: 1 idempotency marker, 2 results stream, 3 status hash.
// ARGV: 1 marker ttl ms, 2 write stream (1/0), 3 stream maxlen (0: no trim),
//       4 write status (1/0), 5 record JSON, 6 serviceId, 7 nestId, 8 status,
//       9 responseTime, 10 checkedAt, 11 workerId, 12 region, 13 message,
//       14 idempotency key.
// Returns 1 when written, 0 when the marker says it was written before.
// The marker is set last: Redis does not roll a script back, so an error in
// XADD or HSET (e.g. OOM, which Redis raises on the first write) leaves no
// marker and the result can be sent again.
const char* const kPersistSource = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if ARGV[2] == '1' then
  local fields = {'result', ARGV[5], 'serviceId', ARGV[6], 'nestId', ARGV[7],
                  'status', ARGV[8], 'checkedAt', ARGV[10], 'workerId', ARGV[11],
                  'region', ARGV[12], 'idempotencyKey', ARGV[14]}
  if tonumber(ARGV[3]) > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
end
if ARGV[4] == '1' then
  local stored = tonumber(redis.call('HGET', KEYS[3], 'checkedAt'))
  local incoming = tonumber(ARGV[10])
  if stored == nil or incoming == nil or incoming >= stored then
    redis.call('HSET', KEYS[3], 'status', ARGV[8], 'responseTime', ARGV[9],
               'checkedAt', ARGV[10], 'workerId', ARGV[11], 'region', ARGV[12],
               'message', ARGV[13], 'serviceId', ARGV[6], 'nestId', ARGV[7])
  end
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
)lua";

const redis::LuaScript& persist_script() {
  static const redis::LuaScript script("persistResult", kPersistSource);
  return script;
}

// A record field as flat text: strings as they are, numbers and booleans as
// JSON, null or missing as "".
std::string flat(const boost::json::object& record, std::string_view key) {
  auto it = record.find(key);
  if (it == record.end() || it->value().is_null()) return {};
  if (it->value().is_string()) return std::string(it->value().get_string());
  return to_json_text(it->value());
}

// Error replies that mean "not now" rather than "never": the server is
// loading, read-only after a failover, busy with a script, out of memory, or
// without its master. eval() prefixes script errors with "script '<name>': ".
bool transient_reply(const std::string& message) {
  static constexpr std::array<std::string_view, 8> kTransient = {
      "LOADING", "READONLY", "BUSY", "OOM", "MASTERDOWN", "TRYAGAIN", "NOREPLICAS", "CLUSTERDOWN"};
  for (auto word : kTransient) {
    for (size_t pos = message.find(word); pos != std::string::npos;
         pos = message.find(word, pos + 1)) {
      bool starts_word = pos == 0 || message[pos - 1] == ' ' || message[pos - 1] == '-';
      if (starts_word) return true;
    }
  }
  return false;
}

}  // namespace

RedisResultWriter::RedisResultWriter(redis::RedisConnection& conn, ResultSettings settings,
                                     RedisResultWriterOptions options)
    : conn_(conn), settings_(std::move(settings)), options_(std::move(options)) {}

bool RedisResultWriter::ready() const {
  return conn_.ready();
}

std::string RedisResultWriter::status_key(const std::string& nest_id,
                                          const std::string& service_id) const {
  if (nest_id.empty()) return settings_.status_prefix + service_id;
  return settings_.status_prefix + nest_id + ":" + service_id;
}

std::string RedisResultWriter::idempotency_marker(const std::string& idempotency_key) const {
  return options_.idempotency_prefix + idempotency_key;
}

void RedisResultWriter::write(const PersistedResult& r, WriteCallback done) {
  // Load the script once per connection, ahead of the EVALSHAs pipelined
  // behind it: a fresh or restarted server would otherwise answer NOSCRIPT to
  // every one of a burst and eval() would send the source once per result.
  if (conn_.ready() && script_loaded_for_ != conn_.connects()) {
    script_loaded_for_ = conn_.connects();
    conn_.command({"SCRIPT", "LOAD", persist_script().source()}, nullptr);
  }
  const auto& rec = r.record;
  std::vector<std::string> keys{idempotency_marker(r.idempotency_key), settings_.stream_key,
                                status_key(r.nest_id, r.service_id)};
  std::vector<std::string> args{std::to_string(options_.idempotency_ttl.count()),
                                settings_.stream_enabled ? "1" : "0",
                                std::to_string(settings_.stream_maxlen),
                                settings_.status_enabled ? "1" : "0",
                                to_json_text(rec),
                                r.service_id,
                                r.nest_id,
                                flat(rec, "status"),
                                flat(rec, "responseTime"),
                                flat(rec, "checkedAt"),
                                flat(rec, "workerId"),
                                flat(rec, "region"),
                                flat(rec, "message"),
                                r.idempotency_key};
  redis::eval(
      conn_, persist_script(), std::move(keys), std::move(args),
      [done = std::move(done)](Result<redis::Reply> reply) {
        if (!done) return;
        if (reply.ok()) {
          auto n = reply->as_int();
          if (n && *n == 1) return done(WriteOutcome::Written);
          if (n && *n == 0) return done(WriteOutcome::Duplicate);
          return done(Error{kSinkRejected, "persist script returned " + reply->debug_string()});
        }
        const Error& e = reply.error();
        bool unavailable = e.code != redis::kErrorRedis || transient_reply(e.message);
        done(Error{unavailable ? kSinkUnavailable : kSinkRejected,
                   e.code == redis::kErrorRedis ? e.message : e.code + ": " + e.message});
      });
}

}  // namespace guardant::engine
