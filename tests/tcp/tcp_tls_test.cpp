// The tcp probe's implicit TLS against an OpenSSL server on a loopback
// thread, with certificates made at run time by the OpenSSL C API: a test
// CA, leaves for "localhost"/127.0.0.1 (valid, expired, expiring soon),
// one for another name, a self-signed one, and a client certificate.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <guardant/json.hpp>
#include <memory>
#include <stdexcept>
#include <string>

#include "tcp_test_support.hpp"

using guardant::Status;
using guardant::testing::CheckRun;
using namespace std::chrono_literals;
using tcptest::contains;
using tcptest::PeerServer;
namespace json = guardant::json;

namespace {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

constexpr long kDay = 86400;

struct Identity {
  KeyPtr key{nullptr, EVP_PKEY_free};
  X509Ptr cert{nullptr, X509_free};
};

struct CertSpec {
  std::string cn;
  std::string san;  // X509v3 syntax, e.g. "DNS:localhost,IP:127.0.0.1"; empty: none
  long not_before_s = -kDay;
  long not_after_s = 90 * kDay;
  bool ca = false;
};

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) throw std::runtime_error("cannot make extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A P-256 key and a certificate for it, signed by `issuer` (self-signed
// when null).
Identity make_identity(const CertSpec& spec, const Identity* issuer) {
  static long serial = 1;
  Identity id;
  id.key.reset(EVP_EC_gen("P-256"));
  id.cert.reset(X509_new());
  if (!id.key || !id.cert) throw std::runtime_error("out of memory making a test certificate");
  X509* x = id.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.not_after_s);
  X509_set_pubkey(x, id.key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Guardant tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(signer));
  if (spec.ca) {
    add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, signer, NID_key_usage, "critical,digitalSignature");
    add_ext(x, signer, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  add_ext(x, signer, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
  if (!spec.san.empty()) add_ext(x, signer, NID_subject_alt_name, spec.san);
  if (X509_sign(x, issuer ? issuer->key.get() : id.key.get(), EVP_sha256()) <= 0)
    throw std::runtime_error("cannot sign a test certificate");
  return id;
}

int64_t not_after_ms(X509* cert) {
  struct tm tm {};
  ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm);
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  if (cert) PEM_write_X509(f, cert);
  if (key) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

// Everything the suite's tests share, made once per test process.
struct Pki {
  Identity ca, valid, expired, expiring, wrong_host, self_signed, client, other_key;
  std::string dir, ca_pem, client_pem, client_key_pem, client_combined_pem, other_key_pem;

  Pki() {
    ca = make_identity({"Guardant Test CA", "", -kDay, 365 * kDay, true}, nullptr);
    const std::string local = "DNS:localhost,IP:127.0.0.1";
    valid = make_identity({"localhost", local}, &ca);
    expired = make_identity({"expired", local, -30 * kDay, -kDay}, &ca);
    expiring = make_identity({"expiring", local, -kDay, 5 * kDay}, &ca);
    wrong_host = make_identity({"wrong host", "DNS:wrong.example"}, &ca);
    self_signed = make_identity({"self-signed", local}, nullptr);
    client = make_identity({"probe client", ""}, &ca);
    other_key = make_identity({"unrelated", ""}, &ca);

    char tmpl[] = "/tmp/guardant-tcp-tls-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    ca_pem = dir + "/ca.pem";
    client_pem = dir + "/client.pem";
    client_key_pem = dir + "/client-key.pem";
    client_combined_pem = dir + "/client-combined.pem";
    other_key_pem = dir + "/other-key.pem";
    write_pem(ca_pem, ca.cert.get(), nullptr);
    write_pem(client_pem, client.cert.get(), nullptr);
    write_pem(client_key_pem, nullptr, client.key.get());
    write_pem(client_combined_pem, client.cert.get(), client.key.get());
    write_pem(other_key_pem, nullptr, other_key.key.get());
  }
  ~Pki() {
    for (const auto& p : {ca_pem, client_pem, client_key_pem, client_combined_pem, other_key_pem})
      std::remove(p.c_str());
    ::rmdir(dir.c_str());
  }
};

// A TLS server on a loopback thread (blocking OpenSSL calls, bounded by the
// socket timeouts PeerServer sets). After the handshake it greets, answers
// "PING\r\n" with "+PONG\r\n", and waits for the probe to leave.
class TlsPeer {
 public:
  struct Options {
    X509* require_client_ca = nullptr;  // demand a client certificate signed by it
    bool reset_after_handshake = false;
  };

  TlsPeer(const Identity& id, Options options) : options_(options), ctx_(make_ctx(id, options)) {
    server_ = std::make_unique<PeerServer>([this](int fd) { serve(fd); });
  }
  explicit TlsPeer(const Identity& id) : TlsPeer(id, Options{}) {}

  std::string target() const { return server_->target(); }
  uint16_t port() const { return server_->port(); }
  bool wait_idle() const { return server_->wait_idle(); }

 private:
  static CtxPtr make_ctx(const Identity& id, const Options& options) {
    CtxPtr ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    if (!ctx || SSL_CTX_use_certificate(ctx.get(), id.cert.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), id.key.get()) != 1)
      throw std::runtime_error("cannot set up the test TLS server");
    if (options.require_client_ca) {
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), options.require_client_ca);
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    return ctx;
  }

  void serve(int fd) {
    SSL* ssl = SSL_new(ctx_.get());
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      if (options_.reset_after_handshake) {
        tcptest::read_until(fd, "\0never\0", 300ms);  // let the probe start sending
        linger l{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      } else {
        const std::string greeting = "* OK tls ready\r\n";
        SSL_write(ssl, greeting.data(), static_cast<int>(greeting.size()));
        std::string got;
        char buf[4096];
        for (;;) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) break;
          got.append(buf, static_cast<size_t>(n));
          if (got.find("PING\r\n") != std::string::npos) {
            SSL_write(ssl, "+PONG\r\n", 7);
            got.clear();
          }
        }
        SSL_shutdown(ssl);
      }
    }
    SSL_free(ssl);
    ERR_clear_error();
  }

  Options options_;
  CtxPtr ctx_;
  std::unique_ptr<PeerServer> server_;  // last: its thread uses the members above
};

class TcpTls : public tcptest::TcpProbeFixture {
 protected:
  static void SetUpTestSuite() { pki_ = new Pki(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  // {"tls":true,"caFile":<the test CA>} plus `extra` members.
  static std::string tls_config(const std::string& extra = "") {
    return R"({"tls":true,"caFile":)" + json::quote(pki_->ca_pem) +
           (extra.empty() ? "" : "," + extra) + "}";
  }

  static Pki* pki_;
};

Pki* TcpTls::pki_ = nullptr;

}  // namespace

TEST_F(TcpTls, ValidCertificateIsUpWithTheReport) {
  TlsPeer peer(pki_->valid);
  size_t fds_before = tcptest::open_fd_count();
  CheckRun r = run(peer.target(), tls_config());
  ASSERT_TRUE(r.started()) << r.start_error;
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  EXPECT_TRUE(contains(r.message, "connected to " + peer.target())) << r.message;
  EXPECT_TRUE(contains(r.message, ", TLSv1.3 in ")) << r.message;
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->tls_ms, 0.0);
  EXPECT_GE(r.response_time_ms, r.timings->connect_ms + r.timings->tls_ms - 1e-6);

  auto d = r.details();
  EXPECT_EQ(d["ip"].as_string(), "127.0.0.1");
  const json::Value& tls = d["tls"];
  ASSERT_TRUE(tls.is_object()) << r.details_json;
  EXPECT_EQ(tls["leafExpiresAt"].as_int64(), not_after_ms(pki_->valid.cert.get()));
  EXPECT_EQ(tls["chainExpiresAt"].as_int64(), not_after_ms(pki_->valid.cert.get()));
  EXPECT_TRUE(contains(tls["subject"].as_string(), "CN=localhost")) << tls["subject"].as_string();
  EXPECT_TRUE(contains(tls["issuer"].as_string(), "CN=Guardant Test CA"))
      << tls["issuer"].as_string();
  ASSERT_EQ(tls["sans"].size(), 2u);
  EXPECT_EQ(tls["sans"].at(0).as_string(), "localhost");
  EXPECT_EQ(tls["sans"].at(1).as_string(), "127.0.0.1");
  EXPECT_TRUE(tls["chainVerified"].as_bool());
  EXPECT_EQ(tls["version"].as_string(), "TLSv1.3");
  EXPECT_GT(tls["daysLeft"].as_number(), 89.0);
  EXPECT_LT(tls["daysLeft"].as_number(), 91.0);
  host_.settle();
  EXPECT_TRUE(peer.wait_idle());
  EXPECT_EQ(tcptest::open_fd_count(), fds_before) << "the probe leaked its socket";
}

TEST_F(TcpTls, HostNameTargetAndServernameOption) {
  TlsPeer peer(pki_->valid);
  // A name target: SNI and hostname verification against the DNS SAN.
  CheckRun r = run("localhost:" + std::to_string(peer.port()), tls_config(R"("ipFamily":"ipv4")"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  // An address target verified against a name given by servername.
  r = run(peer.target(), tls_config(R"("servername":"localhost")"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(peer.target(), tls_config(R"("servername":"other.test")"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "cert_hostname") << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "is not valid for 'other.test'")) << r.failure_detail;
}

TEST_F(TcpTls, ExpiredCertificateIsCertExpired) {
  TlsPeer peer(pki_->expired);
  CheckRun r = run(peer.target(), tls_config());
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "cert_expired") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "certificate 'CN=expired,O=Guardant tests' expired at"))
      << r.failure_detail;
  // The certificate it failed on is still reported.
  const json::Value tls = r.details()["tls"];
  ASSERT_TRUE(tls.is_object()) << r.details_json;
  EXPECT_EQ(tls["leafExpiresAt"].as_int64(), not_after_ms(pki_->expired.cert.get()));
  EXPECT_FALSE(tls["chainVerified"].as_bool());
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->tls_ms, 0.0);
}

TEST_F(TcpTls, WrongHostNameIsCertHostname) {
  TlsPeer peer(pki_->wrong_host);
  CheckRun r = run(peer.target(), tls_config());
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "cert_hostname") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "is not valid for '127.0.0.1' (valid for: wrong.example)"))
      << r.failure_detail;
  r = run("localhost:" + std::to_string(peer.port()), tls_config(R"("ipFamily":"ipv4")"));
  EXPECT_EQ(r.failure_reason, "cert_hostname") << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "is not valid for 'localhost'")) << r.failure_detail;
}

TEST_F(TcpTls, SelfSignedWithoutItsCaIsTlsHandshake) {
  TlsPeer peer(pki_->self_signed);
  // The system store does not know it...
  CheckRun r = run(peer.target(), R"({"tls":true})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "certificate verification failed: self"))
      << r.failure_detail;
  // ...and neither does a CA file that did not sign it.
  r = run(peer.target(), tls_config());
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
}

TEST_F(TcpTls, PlaintextServerIsTlsHandshake) {
  PeerServer banner([](int fd) {
    tcptest::write_all(fd, "220 plain text service\r\n");
    tcptest::wait_closed(fd);
  });
  CheckRun r = run(banner.target(), R"({"tls":true})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "(is the port speaking TLS?)")) << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 2000.0);

  // A peer that reads the ClientHello and hangs up.
  PeerServer hangup([](int fd) { tcptest::read_until(fd, "\0never\0", 100ms); });
  r = run(hangup.target(), R"({"tls":true})");
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
}

TEST_F(TcpTls, SilentPeerIsAHandshakeTimeout) {
  PeerServer silent([](int fd) { tcptest::wait_closed(fd, 5s); });
  CheckRun r = run(silent.target(), R"({"tls":true,"timeout":300})");
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "not finished within")) << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 1500.0);
}

TEST_F(TcpTls, TlsVerifyOffAcceptsWhatVerificationWouldRefuse) {
  TlsPeer self_signed(pki_->self_signed);
  CheckRun r = run(self_signed.target(), R"({"tls":true,"tlsVerify":false})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  const json::Value tls = r.details()["tls"];
  EXPECT_FALSE(tls["chainVerified"].as_bool());
  EXPECT_TRUE(contains(tls["subject"].as_string(), "CN=self-signed"));

  TlsPeer wrong(pki_->wrong_host);
  r = run(wrong.target(), tls_config(R"("tlsVerify":false)"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;

  // An expired certificate still works without verification, but its
  // expiry is reported: degraded, not up.
  TlsPeer expired(pki_->expired);
  r = run(expired.target(), R"({"tls":true,"tlsVerify":false})");
  EXPECT_EQ(r.status, Status::Degraded) << r.message;
  EXPECT_EQ(r.failure_reason, "cert_expiring");
  EXPECT_TRUE(contains(r.failure_detail, "expired")) << r.failure_detail;
}

TEST_F(TcpTls, CertificateExpiringSoonIsDegraded) {
  TlsPeer peer(pki_->expiring);
  CheckRun r = run(peer.target(), tls_config());
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_EQ(r.status, Status::Degraded) << r.message;
  EXPECT_EQ(r.failure_reason, "cert_expiring");
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "expires in 5.0 days")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "(certExpiryDays 14)")) << r.failure_detail;
  EXPECT_TRUE(contains(r.message, "connected to")) << r.message;
  EXPECT_TRUE(r.details()["tls"]["chainVerified"].as_bool());

  r = run(peer.target(), tls_config(R"("certExpiryDays":3)"));
  EXPECT_EQ(r.status, Status::Up) << r.message;
  r = run(peer.target(), tls_config(R"("certExpiryDays":0)"));
  EXPECT_EQ(r.status, Status::Up) << r.message;

  TlsPeer valid(pki_->valid);
  r = run(valid.target(), tls_config(R"("certExpiryDays":100)"));
  EXPECT_EQ(r.status, Status::Degraded) << r.message;
}

TEST_F(TcpTls, SendAndExpectOverTls) {
  TlsPeer peer(pki_->valid);
  CheckRun r = run(peer.target(),
                   tls_config(R"("readBanner":true,"sendData":"PING\r\n","expectData":"+PONG")"));
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_TRUE(contains(r.message, "1 step passed")) << r.message;
  auto d = r.details();
  EXPECT_EQ(d["banner"].as_string(), "* OK tls ready");
  EXPECT_EQ(d["bytesSent"].as_int64(), 6);
  EXPECT_EQ(d["bytesReceived"].as_int64(), 16 + 7);
  EXPECT_TRUE(d["tls"].is_object());
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->tls_ms, 0.0);
  EXPECT_GE(r.timings->send_ms, 0.0);
  EXPECT_GE(r.timings->wait_ms, 0.0);

  r = run(peer.target(),
          tls_config(R"("sendData":"PING\r\n","expectData":"NOPE","stepTimeout":200)"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "received 23 bytes: \"* OK tls ready\\r\\n+PONG\\r\\n\""))
      << r.failure_detail;
}

TEST_F(TcpTls, ClientCertificate) {
  TlsPeer peer(pki_->valid, TlsPeer::Options{pki_->ca.cert.get(), false});
  const std::string cert = json::quote(pki_->client_pem);
  const std::string key = json::quote(pki_->client_key_pem);
  CheckRun r = run(peer.target(), tls_config(R"("readBanner":true,"clientCert":)" + cert +
                                             R"(,"clientKey":)" + key));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  // Certificate and key in one file.
  r = run(peer.target(), tls_config(R"("readBanner":true,"clientCert":)" +
                                    json::quote(pki_->client_combined_pem)));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  // Without one the server refuses; with TLS 1.3 the client learns it only
  // after its side of the handshake, on the first read.
  r = run(peer.target(), tls_config(R"("readBanner":true)"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "certificate required")) << r.failure_detail;
  // A key that does not belong to the certificate refuses the check.
  r = run(peer.target(), tls_config(R"("clientCert":)" + cert + R"(,"clientKey":)" +
                                    json::quote(pki_->other_key_pem)));
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
  EXPECT_TRUE(contains(r.start_error, "option 'clientKey': the private key in '")) << r.start_error;
  EXPECT_TRUE(contains(r.start_error, "' does not match the client certificate")) << r.start_error;
}

TEST_F(TcpTls, PeerResetWhileSendingOverTlsIsDownWithoutSigpipe) {
  TlsPeer peer(pki_->valid, TlsPeer::Options{nullptr, true});
  const std::string big(4 * 1024 * 1024, 'z');
  CheckRun r = run(peer.target(), tls_config(R"("sendData":")" + big + R"(","expectData":"ok")"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion") << r.failure_detail;
  EXPECT_TRUE(r.failure_phase == "send" || r.failure_phase == "wait") << r.failure_phase;
}
