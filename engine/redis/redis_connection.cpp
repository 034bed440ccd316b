// Placeholder so the queue layer can build against the API; the transport
// follows in the next commits.
#include "redis/redis_connection.hpp"

#include <boost/asio/post.hpp>

namespace guardant::engine::redis {

class RedisConnection::Impl {
 public:
  Impl(boost::asio::io_context& io, RedisSettings settings)
      : io(io), settings(std::move(settings)), address(this->settings.host) {}
  boost::asio::io_context& io;
  RedisSettings settings;
  std::string address;
  std::string last_error = "not implemented yet";
};

RedisConnection::RedisConnection(boost::asio::io_context& io, Clock&, RedisSettings settings,
                                 std::string, std::string, ConnectionOptions)
    : impl_(std::make_shared<Impl>(io, std::move(settings))) {}
RedisConnection::~RedisConnection() = default;
void RedisConnection::start() {}
void RedisConnection::stop() {}
bool RedisConnection::ready() const {
  return false;
}
const std::string& RedisConnection::last_error() const {
  return impl_->last_error;
}
uint64_t RedisConnection::connects() const {
  return 0;
}
uint64_t RedisConnection::attempts() const {
  return 0;
}
const std::string& RedisConnection::address() const {
  return impl_->address;
}
void RedisConnection::on_ready(std::function<void()>) {}
void RedisConnection::on_down(std::function<void(const std::string&)>) {}
void RedisConnection::command(std::vector<std::string>, ReplyCallback cb) {
  boost::asio::post(impl_->io, [cb = std::move(cb)] {
    if (cb) cb(Error{kErrorNotConnected, "not implemented yet"});
  });
}
void RedisConnection::pipeline(std::vector<std::vector<std::string>> commands,
                               std::function<void(std::vector<Result<Reply>>)> cb) {
  boost::asio::post(impl_->io, [n = commands.size(), cb = std::move(cb)] {
    std::vector<Result<Reply>> out(n,
                                   Result<Reply>(Error{kErrorNotConnected, "not implemented yet"}));
    if (cb) cb(std::move(out));
  });
}
size_t RedisConnection::in_flight() const {
  return 0;
}

}  // namespace guardant::engine::redis
