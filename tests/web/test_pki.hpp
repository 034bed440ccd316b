// Certificates made at test run time with the OpenSSL API: a CA, leaves it
// signs (any validity window, any names), self-signed ones. Written as PEM
// files into a scratch directory that is removed with the object.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

namespace guardant::webtest {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};

struct Cert {
  std::shared_ptr<EVP_PKEY> key;
  std::shared_ptr<X509> cert;
  std::string cert_file;  // PEM
  std::string key_file;   // PEM
};

struct CertSpec {
  std::string common_name;
  std::vector<std::string> dns_names;  // subjectAltName DNS entries
  std::vector<std::string> ip_names;   // subjectAltName IP entries
  // Validity relative to now, in seconds.
  long not_before = -3600;
  long not_after = 365L * 86400;
  bool is_ca = false;
  bool client = false;  // extendedKeyUsage clientAuth instead of serverAuth

  static CertSpec named(std::string cn, std::vector<std::string> dns = {},
                        std::vector<std::string> ips = {}) {
    CertSpec s;
    s.common_name = std::move(cn);
    s.dns_names = std::move(dns);
    s.ip_names = std::move(ips);
    return s;
  }
};

class TestPki {
 public:
  // Makes a scratch directory under $TMPDIR (or /tmp).
  TestPki();
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  // A certificate signed by `issuer` (nullptr: self-signed), saved as
  // <name>.crt / <name>.key.
  Cert make(const std::string& name, const CertSpec& spec, const Cert* issuer = nullptr);
  // Writes several certificates into one PEM bundle; returns its path.
  std::string bundle(const std::string& name, const std::vector<const Cert*>& certs);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  long serial_ = 1;
};

}  // namespace guardant::webtest
