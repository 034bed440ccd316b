// Certificate report shared by the probes that speak TLS (web, tcp with
// implicit TLS): leaf expiry, the verified chain's earliest expiry, subject,
// issuer, SANs and the negotiated TLS version, read from an OpenSSL session.
// A static library linked into each probe module; it is not part of the SDK.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <guardant/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace guardant::probes {

struct CertReport {
  bool present = false;            // the peer sent a certificate
  int64_t leaf_not_before_ms = 0;  // ms since the epoch
  int64_t leaf_expires_at_ms = 0;
  int64_t chain_expires_at_ms = 0;  // earliest notAfter of the verified chain (leaf if unverified)
  bool chain_verified = false;      // chain_expires_at_ms comes from a verified chain
  std::string subject;              // RFC 2253 one-line form
  std::string issuer;
  std::vector<std::string> sans;  // DNS names and IP addresses
  std::string tls_version;        // "TLSv1.3"
  std::string cipher;
};

// Reads the report from a session after its handshake. Never throws.
CertReport report_from_ssl(const SSL* ssl);
// Same from a leaf certificate and an optional chain (e.g. libcurl's).
CertReport report_from_certs(X509* leaf, STACK_OF(X509) * chain, bool chain_verified);

// Days until the earliest expiry (negative when already expired).
double days_until_expiry(const CertReport& r, int64_t now_ms);

// Writes `"tls": {...}` into an open JSON object: leafExpiresAt,
// chainExpiresAt, notBefore, subject, issuer, sans, version, cipher,
// chainVerified, daysLeft.
void write_tls_details(guardant::json::JsonWriter& w, const CertReport& r, int64_t now_ms);

}  // namespace guardant::probes
