/*
 * Guardant Worker probe ABI, version 1.
 *
 * This header is the only contract between the worker (the "host") and a
 * probe plugin (a shared object that implements one or more probe types such
 * as `web`, `tcp` or `ping`). It is plain C99 so that a plugin may be written
 * in any language that can export a C function; the C++ convenience layer in
 * <guardant/probe.hpp> is built on top of it and compiled into the plugin.
 *
 * Stability rules
 *  - Every public struct begins with the same three fields: `struct_size`,
 *    `abi_major`, `abi_minor`. Those three fields are frozen for all ABI majors,
 *    so either side can always read the other's version.
 *  - Within a major, structs are append-only. A reader only touches fields that
 *    lie inside the `struct_size` written by the other side (see
 *    GUARDANT_HAS_FIELD); function pointers added in a later minor may be NULL.
 *  - The host refuses a plugin whose `abi_major` differs from its own, or whose
 *    `min_host_abi_minor` is newer than the host's minor.
 *  - Enumerations are passed as fixed-width integers, never as C enums, so their
 *    size cannot change with the compiler.
 *
 * Threads
 *  - The host runs one event loop. Every callback the host makes into a plugin
 *    (init, start_check, cancel_check, timer and fd callbacks, posted functions,
 *    shutdown) runs on that loop thread and must not block.
 *  - A plugin may run threads of its own. From those threads it may only call
 *    `log`, `monotonic_ns`, `wall_ms`, `post` and `complete`; everything else
 *    is loop-thread only.
 *
 * Memory
 *  - Strings and structs passed as arguments are borrowed for the duration of
 *    the call only. A side that needs them later copies them. Nothing allocated
 *    by one side is ever freed by the other.
 *  - All strings are NUL-terminated UTF-8.
 */
#ifndef GUARDANT_PROBE_H
#define GUARDANT_PROBE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GUARDANT_ABI_MAJOR 1
#define GUARDANT_ABI_MINOR 0

/* The one symbol a plugin exports (see guardant_plugin_init_fn). */
#define GUARDANT_PLUGIN_ENTRY_SYMBOL "guardant_plugin_init"

#if defined(_WIN32)
#define GUARDANT_EXPORT __declspec(dllexport)
#else
#define GUARDANT_EXPORT __attribute__((visibility("default")))
#endif

/* True when a struct written by the other side, of `struct_size` bytes, is
 * large enough to contain `field`. Use it before reading any field that was
 * appended after the struct's first minor. */
#define GUARDANT_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

/* ------------------------------------------------------------------------ */
/* Codes                                                                      */
/* ------------------------------------------------------------------------ */

/* Result of a call across the boundary. */
typedef int32_t guardant_rc;
#define GUARDANT_OK 0
/* The check's configuration is wrong (an option of the wrong type, a target
 * that cannot be parsed). The host fails the job without retrying it. */
#define GUARDANT_ERR_INVALID_CONFIG 1
/* The plugin cannot run the check now (out of sockets, memory). Retryable. */
#define GUARDANT_ERR_RESOURCES 2
/* Anything else that went wrong inside the plugin. Retryable. */
#define GUARDANT_ERR_INTERNAL 3
/* The host refuses a call (unknown handle, wrong thread, shutting down). */
#define GUARDANT_ERR_REFUSED 4

/* What a check found out about its target. Zero is deliberately not a status,
 * so a zero-initialised result is caught as a plugin bug. */
typedef int32_t guardant_status;
#define GUARDANT_STATUS_UP 1
#define GUARDANT_STATUS_DOWN 2
/* The target works but crosses a threshold (slow, some loss, cert expiring). */
#define GUARDANT_STATUS_DEGRADED 3
/* The worker could not judge the target (its own network, a plugin bug). */
#define GUARDANT_STATUS_INCONCLUSIVE 4

typedef int32_t guardant_log_level;
#define GUARDANT_LOG_TRACE 0
#define GUARDANT_LOG_DEBUG 1
#define GUARDANT_LOG_INFO 2
#define GUARDANT_LOG_WARN 3
#define GUARDANT_LOG_ERROR 4

/* Events for fd watches (bit set). */
#define GUARDANT_FD_READ 1u
#define GUARDANT_FD_WRITE 2u
/* Reported only: the descriptor is in an error or hang-up state. */
#define GUARDANT_FD_ERROR 4u

/* IP family preference for host-side name resolution. */
typedef int32_t guardant_family;
#define GUARDANT_FAMILY_ANY 0
#define GUARDANT_FAMILY_IPV4 4
#define GUARDANT_FAMILY_IPV6 6

/* Capability flags a probe type declares. Informational for routing and for
 * `--list-plugins`; the host grants no privilege because of them. */
#define GUARDANT_CAP_IPV4 (1ull << 0)
#define GUARDANT_CAP_IPV6 (1ull << 1)
#define GUARDANT_CAP_TLS (1ull << 2)
/* Needs CAP_NET_RAW or an unprivileged ICMP socket. */
#define GUARDANT_CAP_NET_RAW (1ull << 3)
/* Uses threads of its own (calls post/complete from other threads). */
#define GUARDANT_CAP_OWN_THREADS (1ull << 4)

/* Fixed list of failure reasons (see design.md §4). Plugins may use others,
 * but these are the ones dashboards know. */
#define GUARDANT_REASON_DNS_NXDOMAIN "dns_nxdomain"
#define GUARDANT_REASON_DNS_TIMEOUT "dns_timeout"
#define GUARDANT_REASON_CONNECT_REFUSED "connect_refused"
#define GUARDANT_REASON_CONNECT_TIMEOUT "connect_timeout"
#define GUARDANT_REASON_NETWORK_UNREACHABLE "network_unreachable"
#define GUARDANT_REASON_TLS_HANDSHAKE "tls_handshake"
#define GUARDANT_REASON_CERT_EXPIRED "cert_expired"
#define GUARDANT_REASON_CERT_HOSTNAME "cert_hostname"
/* Used with GUARDANT_STATUS_DEGRADED: the certificate chain expires soon. */
#define GUARDANT_REASON_CERT_EXPIRING "cert_expiring"
#define GUARDANT_REASON_HTTP_STATUS "http_status"
#define GUARDANT_REASON_ASSERTION "assertion"
#define GUARDANT_REASON_BODY_LIMIT "body_limit"
#define GUARDANT_REASON_TIMEOUT "timeout"
#define GUARDANT_REASON_WORKER_ERROR "worker_error"

/* ------------------------------------------------------------------------ */
/* Opaque handles (owned by the host)                                         */
/* ------------------------------------------------------------------------ */

/* The host context given to one plugin. Identifies the plugin in logs and in
 * the host's bookkeeping of outstanding work. Valid from init until shutdown
 * returns. */
typedef struct guardant_host guardant_host;
/* One check in flight. Valid from start_check until the plugin calls
 * `complete` for it (see there). */
typedef struct guardant_check guardant_check;
typedef struct guardant_timer guardant_timer;
typedef struct guardant_fd_watch guardant_fd_watch;
typedef struct guardant_resolve_op guardant_resolve_op;

/* ------------------------------------------------------------------------ */
/* Check request and result                                                   */
/* ------------------------------------------------------------------------ */

/* What the host asks a probe to check. Borrowed for the start_check call. */
typedef struct guardant_check_request {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  /* Unique per attempt, e.g. "<jobId>:<attempt>" or "<monitorId>:<seq>". */
  const char* check_id;
  /* The probe type this check was routed to (one of the plugin's types). */
  const char* probe_type;
  /* What to check: a URL for web, host:port for tcp, a host for ping. */
  const char* target;
  /* The check's options as a JSON object text; "{}" when none. Never NULL. */
  const char* config_json;
  /* Host monotonic time (see monotonic_ns) at which the host gives up and
   * records a timeout. A probe should finish, with its own more precise
   * reason, a little before it. */
  int64_t deadline_ns;
  /* The timeout the deadline was computed from, for messages. */
  int64_t timeout_ms;
} guardant_check_request;

/* Per-phase timings in milliseconds. A phase that did not happen is < 0. */
typedef struct guardant_timings {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  double resolve_ms;
  double connect_ms;
  double tls_ms;
  double send_ms;
  double wait_ms;
  double transfer_ms;
  double total_ms;
} guardant_timings;

/* What a probe found. Borrowed for the complete() call: the host copies it. */
typedef struct guardant_check_result {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  guardant_status status;
  /* A protocol status such as an HTTP status code; 0 when not applicable. */
  int32_t protocol_code;
  /* The headline measurement in milliseconds (sub-millisecond precision). */
  double response_time_ms;
  /* Short human text ("HTTP 200", "connected in 0.4 ms"). May be NULL. */
  const char* message;
  /* When not up: one of GUARDANT_REASON_*, the phase where the check failed
   * ("resolve", "connect", "tls", "send", "wait", "transfer", "assert") and a
   * free-text detail. NULL when up. */
  const char* failure_reason;
  const char* failure_phase;
  const char* failure_detail;
  /* Probe-specific details as a JSON object text (ip, family, banner, tls…),
   * or NULL. Invalid JSON is replaced by the host with an error note. */
  const char* details_json;
  /* Per-phase timings, or NULL when the probe has none. */
  const guardant_timings* timings;
} guardant_check_result;

/* ------------------------------------------------------------------------ */
/* Host services                                                              */
/* ------------------------------------------------------------------------ */

/* Fires once, on the loop thread, unless cancelled first. The timer handle is
 * invalid once the callback starts. */
typedef void (*guardant_timer_cb)(void* user);
/* Fires on the loop thread each time the fd is ready for one of the watched
 * events (level-triggered, like poll). `events` is what is ready, possibly
 * with GUARDANT_FD_ERROR. */
typedef void (*guardant_fd_cb)(void* user, int fd, uint32_t events);
/* A function posted to the loop. */
typedef void (*guardant_post_cb)(void* user);

/* One resolved address. `sockaddr` points at a struct sockaddr_in or
 * sockaddr_in6 of `sockaddr_len` bytes. */
typedef struct guardant_address {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  int32_t family; /* GUARDANT_FAMILY_IPV4 or _IPV6 */
  uint32_t sockaddr_len;
  const void* sockaddr;
  const char* text; /* numeric form, e.g. "127.0.0.1" */
} guardant_address;

/* Result of resolve(): on success `rc` is GUARDANT_OK and `addresses` holds
 * `count` entries (borrowed for the callback). On failure `count` is 0 and
 * `error_reason` is GUARDANT_REASON_DNS_NXDOMAIN (the name does not exist or
 * has no address of the family) or "dns_error", with a text in `error_detail`. */
typedef struct guardant_resolve_result {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  guardant_rc rc;
  size_t count;
  const guardant_address* addresses;
  const char* error_reason;
  const char* error_detail;
  /* Time the lookup took, in milliseconds. */
  double elapsed_ms;
} guardant_resolve_result;
typedef void (*guardant_resolve_cb)(void* user, const guardant_resolve_result* result);

/* The services the host offers a plugin. The table and `host` stay valid
 * from init until shutdown returns. */
typedef struct guardant_host_api {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  guardant_host* host;

  /* Any thread. Writes one line to the worker's log under the plugin's name.
   * The host adds the level and plugin name; do not log secrets. */
  void (*log)(guardant_host* host, guardant_log_level level, const char* message);

  /* Any thread. Host monotonic clock in nanoseconds; the same clock as
   * deadline_ns. Tests drive it, so use it instead of the OS clock for
   * anything compared with a deadline. */
  int64_t (*monotonic_ns)(guardant_host* host);
  /* Any thread. Wall-clock time in milliseconds since the Unix epoch. */
  int64_t (*wall_ms)(guardant_host* host);

  /* Loop thread. Starts a one-shot timer firing `delay_ns` from now. Returns
   * NULL when refused. The timer counts as outstanding work of the plugin
   * until it fires or is cancelled. */
  guardant_timer* (*timer_start)(guardant_host* host, int64_t delay_ns, guardant_timer_cb cb,
                                 void* user);
  /* Loop thread. Cancels a timer that has not fired yet; after it returns the
   * callback will not run. Must not be called after the callback started. */
  void (*timer_cancel)(guardant_host* host, guardant_timer* timer);

  /* Loop thread. Watches a descriptor the plugin owns for `events`
   * (GUARDANT_FD_READ | GUARDANT_FD_WRITE). The host never closes or reads
   * the fd. Returns NULL when refused. */
  guardant_fd_watch* (*fd_watch)(guardant_host* host, int fd, uint32_t events, guardant_fd_cb cb,
                                 void* user);
  /* Loop thread. Changes the watched events; 0 pauses the watch. */
  guardant_rc (*fd_watch_update)(guardant_host* host, guardant_fd_watch* watch, uint32_t events);
  /* Loop thread. Stops watching; after it returns the callback will not run
   * again. Safe to call from inside the watch's own callback. Call it before
   * closing the fd. */
  void (*fd_unwatch)(guardant_host* host, guardant_fd_watch* watch);

  /* Any thread. Runs `cb(user)` on the loop thread soon. Returns
   * GUARDANT_ERR_REFUSED when the host is shutting down (cb will not run). */
  guardant_rc (*post)(guardant_host* host, guardant_post_cb cb, void* user);

  /* Any thread. Delivers the result of `check`. Must be called exactly once
   * per started check, also after cancel_check: this call releases the check
   * handle, which is invalid afterwards. A result that arrives after the
   * host's deadline already recorded a timeout is dropped and counted. */
  guardant_rc (*complete)(guardant_host* host, guardant_check* check,
                          const guardant_check_result* result);

  /* Loop thread. Resolves `name` (a host name or a numeric address) without
   * blocking the loop. The callback runs once on the loop thread unless the
   * operation is cancelled first. Returns NULL when refused. */
  guardant_resolve_op* (*resolve)(guardant_host* host, const char* name, guardant_family family,
                                  guardant_resolve_cb cb, void* user);
  /* Loop thread. After it returns the resolve callback will not run. Must not
   * be called once the callback started (the handle is invalid then). */
  void (*resolve_cancel)(guardant_host* host, guardant_resolve_op* op);
} guardant_host_api;

/* ------------------------------------------------------------------------ */
/* Plugin descriptor                                                          */
/* ------------------------------------------------------------------------ */

/* One probe type a plugin implements. */
typedef struct guardant_probe_type {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  /* Unique type name across all loaded plugins: [a-z0-9_-]{1,32}. */
  const char* name;
  /* One line for --list-plugins. May be NULL. */
  const char* description;
  uint64_t capability_flags; /* GUARDANT_CAP_* */
  /* JSON Schema of the options object, or NULL. */
  const char* options_schema_json;
  /* Passed back to start_check / cancel_check. */
  void* type_user;

  /* Loop thread. Starts a check. On GUARDANT_OK the plugin owns the check
   * until it calls `complete` (exactly once, on any thread, possibly before
   * start_check returns). It may store per-check state in *check_user, which
   * cancel_check receives. On an error code the check is not started (do not
   * call complete) and `err` (err_len bytes, NUL-terminated) says why; with
   * GUARDANT_ERR_INVALID_CONFIG the text should name the offending option. */
  guardant_rc (*start_check)(void* type_user, guardant_check* check,
                             const guardant_check_request* request, void** check_user, char* err,
                             size_t err_len);
  /* Loop thread; may be NULL. The host gave up on the check (deadline or
   * shutdown): stop work and release timers and watches soon, then call
   * `complete` to release the handle (its result is dropped). */
  void (*cancel_check)(void* type_user, guardant_check* check, void* check_user);
} guardant_probe_type;

/* What a plugin tells the host about itself. Owned by the plugin; must stay
 * valid until shutdown returns. */
typedef struct guardant_plugin_desc {
  uint32_t struct_size;
  /* The ABI the plugin was built with (GUARDANT_ABI_MAJOR/MINOR). */
  uint16_t abi_major;
  uint16_t abi_minor;
  /* The oldest host minor (within abi_major) the plugin can run on, i.e. the
   * minor that introduced the newest host_api field the plugin calls. */
  uint16_t min_host_abi_minor;
  uint16_t reserved0;
  const char* name;    /* e.g. "guardant-tcp" */
  const char* version; /* e.g. "1.0.0" */
  const char* description;
  size_t probe_type_count;
  /* The entries are probe_types[0].struct_size bytes apart (not the host's
   * sizeof), so a plugin built against a later minor with larger entries is
   * still walked correctly. All entries have the same struct_size. */
  const guardant_probe_type* probe_types;
  /* Loop thread; may be NULL. Called once before the host unloads the plugin,
   * only when the plugin has no checks, timers, watches or resolves
   * outstanding. */
  void (*shutdown)(void);
} guardant_plugin_desc;

/* The exported entry point, named GUARDANT_PLUGIN_ENTRY_SYMBOL. Called once,
 * on the loop thread, right after the library is loaded. `host` stays valid
 * until shutdown returns. Returns the plugin's descriptor, or NULL with a
 * reason written to `err` (err_len bytes, NUL-terminated). A plugin should
 * check host->abi_major first and return NULL when it differs. */
typedef const guardant_plugin_desc* (*guardant_plugin_init_fn)(const guardant_host_api* host,
                                                               char* err, size_t err_len);

/* ------------------------------------------------------------------------ */
/* Frozen layout (x86-64 / aarch64 LP64). A failing assert here means an      */
/* ABI break: append fields instead, and bump GUARDANT_ABI_MINOR.            */
/* ------------------------------------------------------------------------ */
#if defined(__LP64__) || defined(_LP64)
#if defined(__cplusplus)
#define GUARDANT_STATIC_ASSERT(c, m) static_assert(c, m)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define GUARDANT_STATIC_ASSERT(c, m) _Static_assert(c, m)
#else /* C99: a negative array size fails the build */
#define GUARDANT_SA_CAT2(a, b) a##b
#define GUARDANT_SA_CAT(a, b) GUARDANT_SA_CAT2(a, b)
#define GUARDANT_STATIC_ASSERT(c, m) \
  typedef char GUARDANT_SA_CAT(guardant_abi_layout_check_, __LINE__)[(c) ? 1 : -1]
#endif
GUARDANT_STATIC_ASSERT(sizeof(guardant_check_request) == 56, "ABI: guardant_check_request");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_request, check_id) == 8, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_request, config_json) == 32, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_request, deadline_ns) == 40, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_request, timeout_ms) == 48, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_timings) == 64, "ABI: guardant_timings");
GUARDANT_STATIC_ASSERT(offsetof(guardant_timings, resolve_ms) == 8, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_timings, total_ms) == 56, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_check_result) == 72, "ABI: guardant_check_result");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_result, status) == 8, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_result, protocol_code) == 12, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_result, response_time_ms) == 16, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_result, message) == 24, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_result, details_json) == 56, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_check_result, timings) == 64, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_address) == 32, "ABI: guardant_address");
GUARDANT_STATIC_ASSERT(offsetof(guardant_address, sockaddr) == 16, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_resolve_result) == 56, "ABI: guardant_resolve_result");
GUARDANT_STATIC_ASSERT(offsetof(guardant_resolve_result, count) == 16, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_resolve_result, elapsed_ms) == 48, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_host_api) == 112, "ABI: guardant_host_api");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, host) == 8, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, log) == 16, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, timer_start) == 40, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, fd_watch) == 56, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, post) == 80, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, complete) == 88, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, resolve) == 96, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_host_api, resolve_cancel) == 104, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_probe_type) == 64, "ABI: guardant_probe_type");
GUARDANT_STATIC_ASSERT(offsetof(guardant_probe_type, name) == 8, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_probe_type, capability_flags) == 24, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_probe_type, start_check) == 48, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_probe_type, cancel_check) == 56, "ABI");
GUARDANT_STATIC_ASSERT(sizeof(guardant_plugin_desc) == 64, "ABI: guardant_plugin_desc");
GUARDANT_STATIC_ASSERT(offsetof(guardant_plugin_desc, min_host_abi_minor) == 8, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_plugin_desc, name) == 16, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_plugin_desc, probe_type_count) == 40, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_plugin_desc, probe_types) == 48, "ABI");
GUARDANT_STATIC_ASSERT(offsetof(guardant_plugin_desc, shutdown) == 56, "ABI");
#undef GUARDANT_STATIC_ASSERT
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GUARDANT_PROBE_H */
