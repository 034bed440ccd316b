// Bench-only probe for bench/queue/run.sh: type `noop` completes `up` inside
// start(), touching nothing, so a queue-mode run of trivial jobs measures the
// worker and Redis (fetch, lock, result record, finish) and not a probe.
// Built by bench/CMakeLists.txt into <build>/bench/plugins, never installed,
// never in the worker's default plugin directories.
//
// Target: any string (ignored). Config: ignored.
#include <guardant/probe.hpp>

namespace {

class NoopCheck final : public guardant::Check {
 public:
  using Check::Check;

  // Loop thread. Completing from start() is allowed by the SDK contract.
  void start() override { complete(guardant::Result::up(0.0, "noop")); }
};

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"bench-noop", "1.0.0", "queue bench: completes up at once"}),
                guardant::probe_type<NoopCheck>("noop", "completes up at once", 0))
