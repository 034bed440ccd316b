#include "test_pki.hpp"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>

namespace guardant::webtest {
namespace {

[[noreturn]] void openssl_fail(const std::string& what) {
  char buf[256] = {0};
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  throw std::runtime_error(what + ": " + buf);
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) openssl_fail("extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

void write_pem(const std::string& path, const std::function<int(FILE*)>& fn) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  int ok = fn(f);
  std::fclose(f);
  if (!ok) openssl_fail("PEM write " + path);
}

}  // namespace

TestPki::TestPki() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/guardant-web-pki-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
}

TestPki::~TestPki() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

Cert TestPki::make(const std::string& name, const CertSpec& spec, const Cert* issuer) {
  Cert c;
  // P-256: fast to generate, accepted everywhere.
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (!key) openssl_fail("EVP_EC_gen");
  c.key.reset(key, PkeyFree{});
  X509* x = X509_new();
  if (!x) openssl_fail("X509_new");
  c.cert.reset(x, X509Free{});

  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial_++);
  X509_time_adj_ex(X509_getm_notBefore(x), 0, spec.not_before, nullptr);
  X509_time_adj_ex(X509_getm_notAfter(x), 0, spec.not_after, nullptr);
  X509_set_pubkey(x, key);
  X509_NAME* subject = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Guardant Test"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509* signer = issuer ? issuer->cert.get() : x;
  EVP_PKEY* signer_key = issuer ? issuer->key.get() : key;
  X509_set_issuer_name(x, X509_get_subject_name(signer));

  add_ext(x, signer, NID_subject_key_identifier, "hash");
  add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
  if (spec.is_ca) {
    add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, signer, NID_key_usage, "critical,digitalSignature");
    add_ext(x, signer, NID_ext_key_usage, spec.client ? "clientAuth" : "serverAuth");
    std::string san;
    for (const auto& d : spec.dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
    for (const auto& i : spec.ip_names) san += (san.empty() ? "" : ",") + std::string("IP:") + i;
    if (!san.empty()) add_ext(x, signer, NID_subject_alt_name, san);
  }
  if (!X509_sign(x, signer_key, EVP_sha256())) openssl_fail("X509_sign");

  c.cert_file = dir_ + "/" + name + ".crt";
  c.key_file = dir_ + "/" + name + ".key";
  write_pem(c.cert_file, [&](FILE* f) { return PEM_write_X509(f, x); });
  write_pem(c.key_file, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  return c;
}

std::string TestPki::bundle(const std::string& name, const std::vector<const Cert*>& certs) {
  std::string path = dir_ + "/" + name + ".pem";
  write_pem(path, [&](FILE* f) {
    for (const Cert* c : certs)
      if (!PEM_write_X509(f, c->cert.get())) return 0;
    return 1;
  });
  return path;
}

}  // namespace guardant::webtest
