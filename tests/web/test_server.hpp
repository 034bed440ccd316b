// An HTTP/1.1 (and HTTPS) server for the web probe's tests, on 127.0.0.1 or
// ::1 with a free port, run by Boost.Asio coroutines on a thread of its own.
// It answers a fixed set of paths chosen to produce every outcome the probe
// reports, writes raw bytes so it can misbehave on purpose (stall mid-body,
// close without answering), and records every request for assertions.
//
//   /ok                 200 text/plain "hello from the guardant test server: status ok"
//   /status/<code>      that status
//   /redirect/<n>       302 to /redirect/<n-1>; /redirect/0 answers 200 "arrived"
//   /to?<url>           302 to <url> (verbatim)
//   /slow/<ms>          waits, then 200 "slow"
//   /huge/<bytes>       200 with Content-Length and that many bytes
//   /huge-chunked/<n>   the same, chunked
//   /stall              Content-Length 100000, 1000 bytes, then silence
//   /partial            Content-Length 100000, 1000 bytes, then close
//   /close              closes without answering
//   /json               a JSON document (see kJsonBody)
//   /notjson            200 application/json that is not JSON
//   /garbage            a line that is not HTTP, then close
//   /headers            200 with X-Guardant: probe-ok and Cache-Control
//   /echo               200 "<method>\n<request body>"
//   /auth               401 without an Authorization header, else 200
//   /cookie-set         302 to /cookie-check with Set-Cookie: guardant=1
//   /cookie-check       200 when the request carries that cookie, else 403
//   absolute-form       (a request through a proxy) 200 "via proxy <url>"
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace guardant::webtest {

inline constexpr const char* kOkBody = "hello from the guardant test server: status ok";
inline constexpr const char* kJsonBody =
    R"({"status":"ok","count":42,"version":"1.2.3","data":{"items":[{"ok":true,"n":3},{"ok":false}]},"odd key":[1,2,3]})";

struct RecordedRequest {
  std::string method;
  std::string target;  // as on the request line
  std::string version;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string sni;  // TLS server name the client sent
  bool client_cert = false;
  bool session_reused = false;

  // First header of that name (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

class TestServer {
 public:
  struct Options {
    bool tls = false;
    bool ipv6 = false;
    std::string cert_file, key_file;
    // With require_client_cert, clients must present a certificate signed
    // by client_ca_file.
    bool require_client_cert = false;
    std::string client_ca_file;
  };

  TestServer() : TestServer(Options{}) {}
  explicit TestServer(Options options);
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  // Empty when the server runs; else why it could not start.
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }
  // "http://127.0.0.1:<port><path>" (https, [::1] as configured).
  std::string url(const std::string& path) const;

  std::vector<RecordedRequest> requests() const;
  size_t connections() const;
  // TLS handshakes that failed on the server side.
  size_t failed_handshakes() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  std::string error_;
  uint16_t port_ = 0;
  Options options_;
};

}  // namespace guardant::webtest
