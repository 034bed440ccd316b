// Fixture probe for the BullMQ interop suite: type `echo` answers whatever
// its job's service.config asks for, so a test written in Node controls the
// result record, the duration and the failures of a check.
//
// Target: any string. Config (unknown keys ignored; null counts as absent):
//   delay_ms        number, 0..3600000: complete after a host Timer (never
//                   blocks the loop); default 0
//   status          "up" (default) | "down" | "degraded"
//   message         string; default "echo <target>"
//   details         any JSON value, emitted verbatim as the result's details
//                   (the record builder keeps only JSON objects)
//   throw           string: throw std::runtime_error(that) when the timer
//                   fires; the host reports inconclusive/worker_error and the
//                   queue worker fails the job (retryable)
//   fail_once_file  path: when the timer fires, if the file does not exist,
//                   create it and throw "failing once"; otherwise go on. Lets
//                   a job fail its first attempt only, across workers.
//
// Results: up → no failure; down → failure {assertion, assert, message};
// degraded → failure {slow_response, no phase, message}. responseTime and
// timings.total are the time from start() to completion.
//
// lib/node_worker.mjs emulates exactly this behaviour for Node workers; keep
// the two in step.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <optional>
#include <stdexcept>
#include <string>

namespace {

namespace json = guardant::json;

class EchoCheck final : public guardant::Check {
 public:
  using Check::Check;

  // Options are read here, so a wrong type refuses the check (ConfigError)
  // before anything starts.
  void start() override {
    auto opts = json::Options::parse(request().config_json);
    const double delay_ms = opts.number("delay_ms", 0, 0, 3'600'000);
    status_ = opts.one_of("status", "up", {"up", "down", "degraded"});
    message_ = opts.string("message", "echo " + request().target);
    if (const json::Value* d = opts.get("details")) details_ = json::serialize(*d);
    throw_ = opts.optional_string("throw");
    fail_once_file_ = opts.optional_string("fail_once_file");
    started_ns_ = guardant::Host::now_ns();
    timer_.start(static_cast<int64_t>(delay_ms * 1e6), [this] { finish(); });
  }

 private:
  // Runs on the loop when the delay is over. Exceptions thrown here are
  // turned into an inconclusive result by the C++ layer's trampoline.
  void finish() {
    if (fail_once_file_) {
      // O_EXCL makes "first attempt anywhere" atomic across worker processes.
      // A tiny local file operation on the loop is acceptable in a test fixture.
      const int fd =
          ::open(fail_once_file_->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::close(fd);
        throw std::runtime_error("failing once");
      }
      if (errno != EEXIST)
        throw std::runtime_error("fail_once_file: cannot create " + *fail_once_file_ + ": " +
                                 std::strerror(errno));
    }
    if (throw_) throw std::runtime_error(*throw_);

    const double elapsed_ms = static_cast<double>(guardant::Host::now_ns() - started_ns_) / 1e6;
    guardant::Result r;
    if (status_ == "down") {
      r = guardant::Result::down(GUARDANT_REASON_ASSERTION, "assert", message_, elapsed_ms);
    } else if (status_ == "degraded") {
      r.status = guardant::Status::Degraded;
      r.response_time_ms = elapsed_ms;
      r.message = message_;
      r.failure = guardant::Failure{"slow_response", "", message_};
    } else {
      r = guardant::Result::up(elapsed_ms, message_);
    }
    r.details_json = details_;
    guardant::Timings t;
    t.total_ms = elapsed_ms;
    r.timings = t;
    complete(r);
  }

  std::string status_;
  std::string message_;
  std::string details_;  // JSON text, or empty for none
  std::optional<std::string> throw_;
  std::optional<std::string> fail_once_file_;
  int64_t started_ns_ = 0;
  guardant::Timer timer_{this};
};

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"interop-echo", "1.0.0", "BullMQ interop suite fixture"}),
                guardant::probe_type<EchoCheck>("echo", "answers what its config asks for", 0))
