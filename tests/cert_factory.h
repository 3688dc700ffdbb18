// Certificates, keys and CRLs made in-process with OpenSSL's C API, for tests of client
// certificate authentication (testonly).
//
// Every key is EC P-256 (fast to make). Every date is given explicitly (Unix seconds), so a test
// can place certificates and CRLs around an injected "now" (unit tests) or around the wall clock
// (wire tests against the real cloisterd). Failures are Catch2 REQUIREs: these helpers are only
// called from test cases.
//
// Files are written atomically (a temporary file in the same directory, then a rename), so a
// daemon that watches a file (ANKA_CRL) never reads half of one; private keys get mode 0600.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/testutil.h"

namespace cloister::testing {

inline constexpr int64_t kDaySeconds = 86'400;

using Key = std::shared_ptr<EVP_PKEY>;
using Cert = std::shared_ptr<X509>;
using Crl = std::shared_ptr<X509_CRL>;

// A fresh EC P-256 key.
Key NewKey();

// Sets an ASN1_TIME to a Unix time.
void SetTime(ASN1_TIME* field, int64_t unix_seconds);

// What MakeCert puts in a certificate.
struct CertSpec {
  // Subject attributes in order: {"O", "DevOps"}, {"CN", "jenkins"}.
  std::vector<std::pair<std::string, std::string>> subject;
  uint64_t serial = 1;
  int64_t not_before = 0;  // Unix seconds.
  int64_t not_after = 0;
  bool ca = false;  // basicConstraints CA:TRUE and keyUsage keyCertSign, cRLSign.
  const char* extended_key_usage = nullptr;  // e.g. "clientAuth"; nullptr: none.
  std::string subject_alt_name;              // e.g. "IP:127.0.0.1,DNS:localhost"; "": none.
};

// A client certificate's spec: O= for each of orgs (empty ones skipped), then CN=cn (skipped
// when empty), valid from a day before now to a year after.
CertSpec ClientSpec(uint64_t serial, int64_t now, const std::string& cn = "jenkins",
                    const std::vector<std::string>& orgs = {"DevOps"});

// A server certificate's spec: O=cloister tests, CN=ip, subjectAltName IP:ip and DNS:localhost,
// extendedKeyUsage serverAuth, valid from a day before now to a year after.
CertSpec ServerSpec(uint64_t serial, int64_t now, const std::string& ip = "127.0.0.1");

// A certificate for key, signed by issuer_key; issuer nullptr: self-signed.
Cert MakeCert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key);

// A CA: its key and its self-signed certificate.
struct TestCa {
  Key key;
  Cert cert;
};

// A CA with subject /O=Veertu/CN=cn, valid from ten days before now to ten years after.
TestCa MakeCa(const std::string& cn, int64_t now, uint64_t serial = 1000);

// A certificate issued by a CA, with its own fresh key.
struct TestCert {
  Key key;
  Cert cert;
};
TestCert IssueCert(const TestCa& ca, const CertSpec& spec);
// The same, when the key is not needed.
Cert Issue(const TestCa& ca, const CertSpec& spec);

// A v2 CRL signed by signer listing the revoked serials (revoked a day before this_update).
// next_update 0: the CRL has none.
Crl MakeCrl(const TestCa& signer, const std::vector<uint64_t>& revoked, int64_t this_update,
            int64_t next_update);

// PEM texts.
std::string Pem(X509* cert);
std::string KeyPem(EVP_PKEY* key);  // Unencrypted PKCS#8 ("BEGIN PRIVATE KEY").
std::string CrlPem(X509_CRL* crl);

// A serial in the form OpenSSL's BN_bn2hex writes (upper-case hex, whole bytes: "0A", "01F4").
std::string SerialHex(X509* cert);
std::string SerialHex(uint64_t serial);

// Percent-encodes like NGINX's $ssl_client_escaped_cert: everything but unreserved characters.
std::string UrlEncode(const std::string& text);

// Writes content to path atomically (temporary file, then rename) with the given mode.
void WriteFileAtomically(const std::string& path, const std::string& content,
                         int mode = 0644);

// ---- PEM files ----

// The CA's certificate at path; returns path.
std::string WriteCaCert(const TestCa& ca, const std::string& path);

// A certificate and its key as two files.
struct CertFiles {
  std::string cert;  // PEM certificate.
  std::string key;   // PEM private key (mode 0600).
};
// Writes dir/NAME-crt.pem and dir/NAME-key.pem.
CertFiles WriteCertFiles(const TestCert& cert, const std::string& dir, const std::string& name);
// Issues a certificate from ca and writes it (with its key) as above.
CertFiles WriteIssuedCert(const TestCa& ca, const CertSpec& spec, const std::string& dir,
                          const std::string& name);

// A CRL as a PEM file; returns path.
std::string WriteCrlFile(const std::string& path, X509_CRL* crl);
// MakeCrl then WriteCrlFile.
std::string WriteCrlFile(const std::string& path, const TestCa& signer,
                         const std::vector<uint64_t>& revoked, int64_t this_update,
                         int64_t next_update);
// dir/name; returns the path (the unit tests' form).
std::string WriteCrl(const TempDir& dir, const std::string& name, const Crl& crl);

}  // namespace cloister::testing
