#include "redis/redis_connection.hpp"

#include <boost/asio/post.hpp>
#include <deque>
#include <random>

#include "core/logging.hpp"
#include "redis/resp_codec.hpp"
#include "redis/transport.hpp"

namespace guardant::engine::redis {

namespace {

// CLIENT SETNAME refuses spaces and non-printable characters; a name it
// refuses would fail every handshake, so such characters become '_'.
std::string sanitize_client_name(std::string name) {
  for (char& c : name)
    if (c <= ' ' || c > '~') c = '_';
  return name;
}

std::chrono::nanoseconds to_nanos(std::chrono::milliseconds ms) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms);
}

}  // namespace

// One connection attempt and, once the handshake is done, the live
// connection. Async handlers keep it alive (shared_ptr) because they own
// buffers the transport is using; they reach the Impl through a weak_ptr and
// do nothing once `closed` is set.
struct Link {
  explicit Link(std::unique_ptr<Transport> t) : transport(std::move(t)), read_buf(64 * 1024) {}

  std::unique_ptr<Transport> transport;
  RespReader reader;
  std::deque<ReplyCallback> pending;  // written (or queued for writing), awaiting replies, FIFO
  std::string out;                    // encoded commands not yet handed to the transport
  std::string writing;                // the buffer of the write in flight
  bool write_in_flight = false;
  std::vector<char> read_buf;
  bool closed = false;
  bool handshaking = false;
};

class RedisConnection::Impl : public std::enable_shared_from_this<RedisConnection::Impl> {
 public:
  enum class State { Idle, Connecting, Ready, Backoff, Stopped };

  Impl(boost::asio::io_context& io, Clock& clock, RedisSettings settings, std::string client_name,
       std::string facility, ConnectionOptions options)
      : io_(io),
        clock_(clock),
        settings_(std::move(settings)),
        client_name_(sanitize_client_name(std::move(client_name))),
        log_(logger(facility)),
        options_(options),
        address_(describe_address(settings_)),
        backoff_(options_.backoff_initial),
        rng_(std::random_device{}()) {
    if (!settings_.unix_socket.empty() && settings_.tls.enabled)
      log_->warn("redis.tls is ignored: {} is a unix socket, which is used without TLS", address_);
  }

  // --- public operations -------------------------------------------------

  void start() {
    if (state_ != State::Idle && state_ != State::Stopped) return;
    backoff_ = options_.backoff_initial;
    last_logged_error_.clear();
    attempt();
  }

  void stop() {
    if (state_ == State::Stopped) return;
    state_ = State::Stopped;
    cancel_timer(retry_timer_);
    cancel_timer(connect_timer_);
    if (auto l = std::move(link_)) {
      log_->info("redis connection to {} stopped", address_);
      close_link(*l);
      fail_pending(*l, Error{kErrorStopped, "redis connection to " + address_ + " stopped"});
    }
  }

  void command(std::vector<std::string> argv, ReplyCallback cb) {
    if (state_ != State::Ready) {
      post_failure(std::move(cb), not_ready_error());
      return;
    }
    Link& l = *link_;
    if (auto st = append_command(l.out, argv); !st) {
      post_failure(std::move(cb), st.error());
      return;
    }
    l.pending.push_back(std::move(cb));
    flush(link_);
  }

  void pipeline(std::vector<std::vector<std::string>> commands,
                std::function<void(std::vector<Result<Reply>>)> cb) {
    if (commands.empty() || state_ != State::Ready) {
      std::vector<Result<Reply>> out(commands.size(), Result<Reply>(not_ready_error()));
      post([cb = std::move(cb), out = std::move(out)]() mutable {
        if (cb) cb(std::move(out));
      });
      return;
    }
    // Every slot is filled by its own reply or by the error that ends the
    // connection; the last one to arrive delivers the vector.
    struct Collector {
      std::vector<Result<Reply>> results;
      size_t remaining;
      std::function<void(std::vector<Result<Reply>>)> cb;
    };
    auto col = std::make_shared<Collector>(
        Collector{std::vector<Result<Reply>>(commands.size(), Result<Reply>(Reply{})),
                  commands.size(), std::move(cb)});
    Link& l = *link_;
    size_t before = l.out.size();
    for (auto& argv : commands) {
      if (auto st = append_command(l.out, argv); !st) {
        l.out.resize(before);  // nothing of this pipeline goes out
        std::vector<Result<Reply>> out(commands.size(), Result<Reply>(st.error()));
        post([col, out = std::move(out)]() mutable {
          if (col->cb) col->cb(std::move(out));
        });
        return;
      }
    }
    for (size_t i = 0; i < commands.size(); ++i) {
      l.pending.push_back([col, i](Result<Reply> r) {
        col->results[i] = std::move(r);
        if (--col->remaining == 0 && col->cb) col->cb(std::move(col->results));
      });
    }
    flush(link_);
  }

  // --- connecting ----------------------------------------------------------

  void attempt() {
    ++attempts_;
    state_ = State::Connecting;
    auto transport = make_transport(io_, settings_, options_);
    if (!transport) {
      failed_attempt(nullptr, transport.error().message);
      return;
    }
    auto l = std::make_shared<Link>(std::move(transport.value()));
    link_ = l;
    if (settings_.connect_timeout_ms > 0) {
      connect_timer_ = clock_.call_after(
          to_nanos(std::chrono::milliseconds(settings_.connect_timeout_ms)),
          [w = weak_from_this(), l] {
            auto self = w.lock();
            if (!self || l->closed) return;
            self->connect_timer_ = 0;
            self->failed_attempt(
                l, "connecting to " + self->address_ + " timed out after " +
                       std::to_string(self->settings_.connect_timeout_ms) + " ms (" +
                       (l->handshaking ? "AUTH/SELECT handshake" : l->transport->phase()) + ")");
          });
    }
    l->transport->connect([w = weak_from_this(), l](const std::string& error) {
      auto self = w.lock();
      if (!self || l->closed) return;
      if (!error.empty()) {
        self->failed_attempt(l, error);
        return;
      }
      self->read(l);
      self->handshake(l);
    });
  }

  // AUTH, SELECT and CLIENT SETNAME, pipelined in one write. PING when there is
  // nothing else to send, so that "ready" always means Redis has answered.
  void handshake(const std::shared_ptr<Link>& l) {
    l->handshaking = true;
    struct Step {
      std::vector<std::string> argv;
      std::string failure;  // prefix of the error message; never the password
    };
    std::vector<Step> steps;
    if (!settings_.password.empty()) {
      if (settings_.username.empty())
        steps.push_back({{"AUTH", settings_.password}, "AUTH failed"});
      else
        steps.push_back({{"AUTH", settings_.username, settings_.password},
                         "AUTH failed for user '" + settings_.username + "'"});
    }
    if (settings_.db != 0)
      steps.push_back({{"SELECT", std::to_string(settings_.db)},
                       "SELECT " + std::to_string(settings_.db) + " failed"});
    if (!client_name_.empty())
      steps.push_back({{"CLIENT", "SETNAME", client_name_}, "CLIENT SETNAME failed"});
    if (steps.empty()) steps.push_back({{"PING"}, "PING failed"});

    auto remaining = std::make_shared<size_t>(steps.size());
    for (auto& step : steps) {
      if (auto st = append_command(l->out, step.argv); !st) {
        failed_attempt(l, st.error().message);
        return;
      }
      l->pending.push_back(
          [w = weak_from_this(), l, remaining, failure = std::move(step.failure)](Result<Reply> r) {
            auto self = w.lock();
            if (!self || l->closed || self->link_ != l) return;
            if (!r) {
              self->failed_attempt(l, failure + ": " + r.error().message);
              return;
            }
            if (--*remaining == 0) self->became_ready(l);
          });
    }
    flush(l);
  }

  void became_ready(const std::shared_ptr<Link>& l) {
    cancel_timer(connect_timer_);
    l->handshaking = false;
    state_ = State::Ready;
    ++connects_;
    backoff_ = options_.backoff_initial;
    last_error_.clear();
    last_logged_error_.clear();
    log_->info("connected to redis {} (db {}{}){}", address_, settings_.db,
               settings_.tls.enabled && settings_.unix_socket.empty() ? ", TLS" : "",
               client_name_.empty() ? "" : " as " + client_name_);
    // A copy: the handler may replace itself through on_ready().
    if (auto fn = on_ready_) fn();
  }

  // A connection attempt failed (l may be null when no transport was built).
  void failed_attempt(const std::shared_ptr<Link>& l, const std::string& why) {
    if (l) {
      if (l->closed) return;
      close_link(*l);
      if (link_ == l) link_.reset();
      l->pending.clear();  // handshake steps only; user commands never wait on an attempt
    }
    if (state_ == State::Stopped) return;
    cancel_timer(connect_timer_);
    last_error_ = why;
    if (why != last_logged_error_) {
      log_->warn("redis {}: {}; retrying (repeats of this error are logged at debug)", address_,
                 why);
      last_logged_error_ = why;
    } else {
      log_->debug("redis {}: {}; retrying (attempt {})", address_, why, attempts_);
    }
    schedule_retry();
  }

  // The ready connection broke: fail what was in flight, tell on_down, retry.
  void dropped(const std::shared_ptr<Link>& l, const std::string& why) {
    if (l->closed) return;
    if (state_ != State::Ready || link_ != l) {
      failed_attempt(l, why);
      return;
    }
    close_link(*l);
    link_.reset();
    last_error_ = "connection lost: " + why;
    last_logged_error_.clear();
    log_->warn("lost connection to redis {}: {}; {} command(s) in flight failed; reconnecting",
               address_, why, l->pending.size());
    backoff_ = options_.backoff_initial;
    schedule_retry();
    // on_down first, so the owner knows the connection is down before the
    // per-command errors arrive. Either may call stop() or issue commands
    // (they fail "not_connected"); the pending list is already ours.
    auto pending = std::move(l->pending);
    if (auto fn = on_down_) fn(why);
    Error err{kErrorDisconnected,
              "connection to redis " + address_ + " lost with the command in flight: " + why};
    for (auto& cb : pending)
      if (cb) cb(err);
  }

  void schedule_retry() {
    state_ = State::Backoff;
    std::uniform_real_distribution<double> jitter(-options_.backoff_jitter,
                                                  options_.backoff_jitter);
    auto delay = std::chrono::duration_cast<Nanos>(to_nanos(backoff_) * (1.0 + jitter(rng_)));
    if (delay < Nanos::zero()) delay = Nanos::zero();
    backoff_ = std::min(backoff_ * 2, options_.backoff_max);
    cancel_timer(retry_timer_);
    retry_timer_ = clock_.call_after(delay, [w = weak_from_this()] {
      auto self = w.lock();
      if (!self || self->state_ != State::Backoff) return;
      self->retry_timer_ = 0;
      self->attempt();
    });
  }

  // --- I/O -----------------------------------------------------------------

  void read(const std::shared_ptr<Link>& l) {
    l->transport->read_some(
        boost::asio::buffer(l->read_buf),
        [w = weak_from_this(), l](const boost::system::error_code& ec, size_t n) {
          auto self = w.lock();
          if (!self || l->closed) return;
          if (ec) {
            self->dropped(l, ec == boost::asio::error::eof ? "server closed the connection"
                                                           : "read from " + self->address_ + ": " +
                                                                 l->transport->describe(ec));
            return;
          }
          if (auto st = l->reader.feed(l->read_buf.data(), n); !st) {
            self->dropped(l, st.error().message);
            return;
          }
          for (;;) {
            auto next = l->reader.next();
            if (!next) {
              self->dropped(l, next.error().message);
              return;
            }
            if (!next.value()) break;
            if (l->pending.empty()) {
              self->dropped(l, "reply from Redis without a command waiting for it: " +
                                   next.value()->debug_string().substr(0, 200));
              return;
            }
            ReplyCallback cb = std::move(l->pending.front());
            l->pending.pop_front();
            deliver(cb, std::move(*next.value()));
            // The callback may have stopped, restarted or dropped this link.
            if (l->closed) return;
          }
          self->read(l);
        });
  }

  void flush(const std::shared_ptr<Link>& l) {
    if (l->write_in_flight || l->out.empty() || l->closed) return;
    l->writing.clear();
    l->writing.swap(l->out);
    l->write_in_flight = true;
    l->transport->write(
        boost::asio::buffer(l->writing),
        [w = weak_from_this(), l](const boost::system::error_code& ec, size_t) {
          auto self = w.lock();
          if (!self || l->closed) return;
          l->write_in_flight = false;
          if (ec) {
            self->dropped(l, "write to " + self->address_ + ": " + l->transport->describe(ec));
            return;
          }
          // Keep a moderately sized buffer for the next round, release big ones.
          if (l->writing.capacity() > (1u << 20)) std::string().swap(l->writing);
          self->flush(l);
        });
  }

  // --- helpers -------------------------------------------------------------

  static void deliver(ReplyCallback& cb, Reply r) {
    if (!cb) return;
    if (r.type == Reply::Type::Error)
      cb(Error{kErrorRedis, std::move(r.str)});
    else
      cb(std::move(r));
  }

  void close_link(Link& l) {
    l.closed = true;
    l.transport->close();
  }

  void fail_pending(Link& l, const Error& err) {
    auto pending = std::move(l.pending);
    for (auto& cb : pending)
      if (cb) cb(err);
  }

  Error not_ready_error() const {
    switch (state_) {
      case State::Idle:
        return Error{kErrorNotConnected, "redis connection to " + address_ + " not started"};
      case State::Stopped:
        return Error{kErrorStopped, "redis connection to " + address_ + " stopped"};
      default:
        return Error{kErrorNotConnected,
                     "not connected to redis " + address_ +
                         (last_error_.empty() ? " (connecting)" : ": " + last_error_)};
    }
  }

  // Runs fn later on the loop unless the RedisConnection is gone by then.
  void post(std::function<void()> fn) {
    boost::asio::post(io_, [w = weak_from_this(), fn = std::move(fn)] {
      auto self = w.lock();
      if (self && !self->destroyed_) fn();
    });
  }

  void post_failure(ReplyCallback cb, Error err) {
    if (!cb) return;
    post([cb = std::move(cb), err = std::move(err)]() mutable { cb(std::move(err)); });
  }

  void cancel_timer(Clock::TimerId& id) {
    if (id) clock_.cancel(id);
    id = 0;
  }

  boost::asio::io_context& io_;
  Clock& clock_;
  RedisSettings settings_;
  std::string client_name_;
  std::shared_ptr<spdlog::logger> log_;
  ConnectionOptions options_;
  std::string address_;

  State state_ = State::Idle;
  std::shared_ptr<Link> link_;
  Clock::TimerId connect_timer_ = 0;
  Clock::TimerId retry_timer_ = 0;
  std::chrono::milliseconds backoff_;
  std::minstd_rand rng_;

  std::string last_error_;
  std::string last_logged_error_;
  uint64_t connects_ = 0;
  uint64_t attempts_ = 0;
  std::function<void()> on_ready_;
  std::function<void(const std::string&)> on_down_;
  bool destroyed_ = false;

  friend class RedisConnection;
};

RedisConnection::RedisConnection(boost::asio::io_context& io, Clock& clock, RedisSettings settings,
                                 std::string client_name, std::string facility,
                                 ConnectionOptions options)
    : impl_(std::make_shared<Impl>(io, clock, std::move(settings), std::move(client_name),
                                   std::move(facility), options)) {}

RedisConnection::~RedisConnection() {
  impl_->destroyed_ = true;
  impl_->on_ready_ = nullptr;
  impl_->on_down_ = nullptr;
  impl_->stop();
}

void RedisConnection::start() {
  impl_->start();
}
void RedisConnection::stop() {
  impl_->stop();
}
bool RedisConnection::ready() const {
  return impl_->state_ == Impl::State::Ready;
}
const std::string& RedisConnection::last_error() const {
  return impl_->last_error_;
}
uint64_t RedisConnection::connects() const {
  return impl_->connects_;
}
uint64_t RedisConnection::attempts() const {
  return impl_->attempts_;
}
const std::string& RedisConnection::address() const {
  return impl_->address_;
}
void RedisConnection::on_ready(std::function<void()> fn) {
  impl_->on_ready_ = std::move(fn);
}
void RedisConnection::on_down(std::function<void(const std::string&)> fn) {
  impl_->on_down_ = std::move(fn);
}
void RedisConnection::command(std::vector<std::string> argv, ReplyCallback cb) {
  impl_->command(std::move(argv), std::move(cb));
}
void RedisConnection::pipeline(std::vector<std::vector<std::string>> commands,
                               std::function<void(std::vector<Result<Reply>>)> cb) {
  impl_->pipeline(std::move(commands), std::move(cb));
}
size_t RedisConnection::in_flight() const {
  return impl_->link_ ? impl_->link_->pending.size() : 0;
}

}  // namespace guardant::engine::redis
