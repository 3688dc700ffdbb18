// cloister pki: a small certificate authority for mTLS (seed 001) in one command each, instead of
// the seed's openssl recipes (which keep working: the files are ordinary PEM).
//
// A PKI directory holds:
//   ca-key.pem, ca-crt.pem     the CA (EC P-256 key, mode 0600 for the key)
//   <name>-key.pem, <name>-crt.pem   each issued certificate and its key
//   pki.json                   the next serial, the CRL number, every issued certificate
//                              (name, serial, subject) and every revocation (serial, time)
//   crl.pem                    the CRL, written by Crl (and by Revoke)
// Subjects follow Anka's rules: at least one O= (a group; several allowed, spaces allowed) and
// exactly one CN= (the user) for a client certificate.
//
// Not thread-safe; one process at a time per directory (pki.json is replaced whole).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "log/status.h"

namespace cloister::tools {

struct PkiSubject {
  std::string common_name;                  // CN=
  std::vector<std::string> organizations;  // O=, in order.
};

struct IssueRequest {
  std::string name;  // File names: <name>-key.pem, <name>-crt.pem. [A-Za-z0-9._-]+.
  PkiSubject subject;
  bool server = false;            // serverAuth (with subjectAltName) instead of clientAuth.
  std::vector<std::string> ips;   // subjectAltName IP: entries (server).
  std::vector<std::string> dns;   // subjectAltName DNS: entries (server).
  uint32_t days = 365;
};

// Creates the CA in dir (created if missing). kBusy if dir already has one.
Status PkiInit(const std::string& dir, const PkiSubject& subject, uint32_t days);

// Issues a certificate signed by dir's CA; returns its serial in hex.
Result<std::string> PkiIssue(const std::string& dir, const IssueRequest& request);

// Revokes by serial (hex, as PkiIssue returned it or `openssl x509 -serial` shows) and rewrites
// crl.pem. kNotFound for a serial this CA did not issue; revoking twice is a no-op.
Status PkiRevoke(const std::string& dir, const std::string& serial_hex);

// Writes crl.pem (valid for days), with every revocation, signed by the CA.
Status PkiCrl(const std::string& dir, uint32_t days);

// "/O=DevOps/O=iOS Dev/CN=Jenkins" -> subject. kInvalidArgument for other attributes or syntax.
Result<PkiSubject> ParsePkiSubject(const std::string& text);

}  // namespace cloister::tools
