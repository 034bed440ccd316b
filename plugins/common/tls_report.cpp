#include "tls_report.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/x509v3.h>

#include <climits>

namespace guardant::probes {
namespace {

int64_t asn1_time_ms(const ASN1_TIME* t) {
  if (!t) return 0;
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

std::string name_text(const X509_NAME* name) {
  if (!name) return "";
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return "";
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data ? data : "", len > 0 ? static_cast<size_t>(len) : 0);
  BIO_free(bio);
  return out;
}

std::vector<std::string> sans_of(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DNS) {
      const auto* s = gn->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (gn->type == GEN_IPADD) {
      const auto* s = gn->d.iPAddress;
      const unsigned char* p = ASN1_STRING_get0_data(s);
      char buf[64] = {0};
      if (ASN1_STRING_length(s) == 4) {
        std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
      } else if (ASN1_STRING_length(s) == 16) {
        std::string hex;
        for (int k = 0; k < 16; k += 2) {
          char part[8];
          std::snprintf(part, sizeof part, "%s%x", k ? ":" : "", (p[k] << 8) | p[k + 1]);
          hex += part;
        }
        std::snprintf(buf, sizeof buf, "%s", hex.c_str());
      }
      if (buf[0]) out.emplace_back(buf);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

CertReport report_from_certs(X509* leaf, STACK_OF(X509) * chain, bool chain_verified) {
  CertReport r;
  if (!leaf) return r;
  r.present = true;
  r.leaf_not_before_ms = asn1_time_ms(X509_get0_notBefore(leaf));
  r.leaf_expires_at_ms = asn1_time_ms(X509_get0_notAfter(leaf));
  r.subject = name_text(X509_get_subject_name(leaf));
  r.issuer = name_text(X509_get_issuer_name(leaf));
  r.sans = sans_of(leaf);
  r.chain_expires_at_ms = r.leaf_expires_at_ms;
  r.chain_verified = chain_verified && chain;
  if (chain) {
    for (int i = 0; i < sk_X509_num(chain); ++i) {
      auto ms = asn1_time_ms(X509_get0_notAfter(sk_X509_value(chain, i)));
      if (ms && ms < r.chain_expires_at_ms) r.chain_expires_at_ms = ms;
    }
  }
  return r;
}

CertReport report_from_ssl(const SSL* ssl) {
  if (!ssl) return {};
  X509* leaf = SSL_get0_peer_certificate(ssl);
  // The verified chain when verification ran and passed; else what the peer sent.
  STACK_OF(X509)* verified = SSL_get0_verified_chain(ssl);
  bool ok = verified && SSL_get_verify_result(ssl) == X509_V_OK;
  STACK_OF(X509)* chain = ok ? verified : SSL_get_peer_cert_chain(ssl);
  auto r = report_from_certs(leaf, chain, ok);
  if (const char* v = SSL_get_version(ssl)) r.tls_version = v;
  if (const char* c = SSL_get_cipher_name(ssl)) r.cipher = c;
  return r;
}

double days_until_expiry(const CertReport& r, int64_t now_ms) {
  return static_cast<double>(r.chain_expires_at_ms - now_ms) / 86'400'000.0;
}

void write_tls_details(guardant::json::JsonWriter& w, const CertReport& r, int64_t now_ms) {
  w.begin_object("tls");
  if (!r.tls_version.empty()) w.field("version", r.tls_version);
  if (!r.cipher.empty()) w.field("cipher", r.cipher);
  if (r.present) {
    w.field("leafExpiresAt", r.leaf_expires_at_ms);
    w.field("chainExpiresAt", r.chain_expires_at_ms);
    w.field("notBefore", r.leaf_not_before_ms);
    w.field("daysLeft", days_until_expiry(r, now_ms));
    w.field("chainVerified", r.chain_verified);
    w.field("subject", r.subject);
    w.field("issuer", r.issuer);
    w.begin_array("sans");
    for (const auto& s : r.sans) w.element(s);
    w.end_array();
  }
  w.end_object();
}

}  // namespace guardant::probes
