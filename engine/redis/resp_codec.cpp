#include "redis/resp_codec.hpp"

#include <hiredis.h>

#include <new>
#include <stdexcept>

namespace guardant::engine::redis {

namespace {

// Reply-object functions for redisReader that build our Reply tree directly
// (no redisReply to convert and free). Only a root reply is heap-allocated;
// children live inside their parent's `elements`, which is sized once by
// createArray and never resized afterwards, so the pointers handed back to
// hiredis stay valid. hiredis only ever frees roots (freeObject). These are
// called from C: they must not throw, and return NULL for out of memory.
void* place(const redisReadTask* task, Reply&& value) noexcept {
  try {
    if (task->parent) {
      auto* parent = static_cast<Reply*>(task->parent->obj);
      Reply& slot = parent->elements[static_cast<size_t>(task->idx)];
      slot = std::move(value);
      return &slot;
    }
    return new Reply(std::move(value));
  } catch (...) {
    return nullptr;
  }
}

void* create_string(const redisReadTask* task, char* str, size_t len) {
  Reply r;
  switch (task->type) {
    case REDIS_REPLY_ERROR:
      r.type = Reply::Type::Error;
      break;
    case REDIS_REPLY_STATUS:
      r.type = Reply::Type::Status;
      break;
    default:
      r.type = Reply::Type::String;
      break;
  }
  try {
    r.str.assign(str, len);
  } catch (...) {
    return nullptr;
  }
  return place(task, std::move(r));
}

void* create_array(const redisReadTask* task, int elements) {
  Reply r;
  r.type = Reply::Type::Array;
  try {
    r.elements.resize(elements > 0 ? static_cast<size_t>(elements) : 0);
  } catch (...) {
    return nullptr;
  }
  return place(task, std::move(r));
}

void* create_integer(const redisReadTask* task, long long value) {
  return place(task, Reply::from_int(static_cast<int64_t>(value)));
}

void* create_nil(const redisReadTask* task) {
  return place(task, Reply::nil());
}

void free_object(void* obj) {
  delete static_cast<Reply*>(obj);
}

redisReplyObjectFunctions reply_functions = {create_string, create_array, create_integer,
                                             create_nil, free_object};

}  // namespace

Status append_command(std::string& out, const std::vector<std::string>& argv) {
  // Small commands are the norm; avoid two heap vectors for them.
  constexpr size_t kInline = 16;
  const char* ptr_inline[kInline];
  size_t len_inline[kInline];
  std::vector<const char*> ptr_heap;
  std::vector<size_t> len_heap;
  const char** ptrs = ptr_inline;
  size_t* lens = len_inline;
  if (argv.size() > kInline) {
    ptr_heap.resize(argv.size());
    len_heap.resize(argv.size());
    ptrs = ptr_heap.data();
    lens = len_heap.data();
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    ptrs[i] = argv[i].data();
    lens[i] = argv[i].size();
  }
  char* cmd = nullptr;
  int n = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()), ptrs, lens);
  if (n < 0 || !cmd) return Error{"out_of_memory", "cannot format a Redis command"};
  out.append(cmd, static_cast<size_t>(n));
  redisFreeCommand(cmd);
  return Ok{};
}

RespReader::RespReader() : reader_(redisReaderCreateWithFunctions(&reply_functions)) {
  if (!reader_) throw std::bad_alloc();
}

RespReader::~RespReader() {
  redisReaderFree(reader_);
}

Status RespReader::feed(const char* data, size_t len) {
  if (redisReaderFeed(reader_, data, len) != REDIS_OK)
    return Error{"protocol", redisReaderGetError(reader_)};
  return Ok{};
}

Result<std::optional<Reply>> RespReader::next() {
  void* obj = nullptr;
  if (redisReaderGetReply(reader_, &obj) != REDIS_OK)
    return Error{"protocol",
                 std::string("invalid reply from Redis: ") + redisReaderGetError(reader_)};
  if (!obj) return std::optional<Reply>();
  auto* reply = static_cast<Reply*>(obj);
  std::optional<Reply> out(std::move(*reply));
  delete reply;
  return out;
}

}  // namespace guardant::engine::redis
