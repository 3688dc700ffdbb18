#include "tests/cert_factory.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cloister::testing {
namespace {

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertFree {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct CrlFree {
  void operator()(X509_CRL* crl) const { X509_CRL_free(crl); }
};

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  REQUIRE(ext != nullptr);
  REQUIRE(X509_add_ext(cert, ext, -1) == 1);
  X509_EXTENSION_free(ext);
}

// The text a memory BIO holds; frees it.
std::string TakeBio(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(size));
  BIO_free(bio);
  return out;
}

}  // namespace

Key NewKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  return Key(key, KeyFree());
}

void SetTime(ASN1_TIME* field, int64_t unix_seconds) {
  REQUIRE(ASN1_TIME_set(field, static_cast<time_t>(unix_seconds)) != nullptr);
}

CertSpec ClientSpec(uint64_t serial, int64_t now, const std::string& cn,
                    const std::vector<std::string>& orgs) {
  CertSpec spec;
  spec.serial = serial;
  spec.not_before = now - kDaySeconds;
  spec.not_after = now + 365 * kDaySeconds;
  for (const std::string& o : orgs) {
    if (!o.empty()) {
      spec.subject.emplace_back("O", o);
    }
  }
  if (!cn.empty()) {
    spec.subject.emplace_back("CN", cn);
  }
  return spec;
}

CertSpec ServerSpec(uint64_t serial, int64_t now, const std::string& ip) {
  CertSpec spec;
  spec.serial = serial;
  spec.not_before = now - kDaySeconds;
  spec.not_after = now + 365 * kDaySeconds;
  spec.subject = {{"O", "cloister tests"}, {"CN", ip}};
  spec.extended_key_usage = "serverAuth";
  spec.subject_alt_name = "IP:" + ip + ",DNS:localhost";
  return spec;
}

Cert MakeCert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new(), CertFree());
  REQUIRE(cert != nullptr);
  REQUIRE(X509_set_version(cert.get(), 2) == 1);
  REQUIRE(ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), spec.serial) == 1);
  SetTime(X509_getm_notBefore(cert.get()), spec.not_before);
  SetTime(X509_getm_notAfter(cert.get()), spec.not_after);
  X509_NAME* name = X509_get_subject_name(cert.get());
  for (const auto& [field, value] : spec.subject) {
    REQUIRE(X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(value.c_str()),
                                       -1, -1, 0) == 1);
  }
  X509* signer = issuer == nullptr ? cert.get() : issuer;
  REQUIRE(X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) == 1);
  REQUIRE(X509_set_pubkey(cert.get(), key) == 1);
  if (spec.ca) {
    AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  if (spec.extended_key_usage != nullptr) {
    AddExtension(cert.get(), signer, NID_ext_key_usage, spec.extended_key_usage);
  }
  if (!spec.subject_alt_name.empty()) {
    AddExtension(cert.get(), signer, NID_subject_alt_name, spec.subject_alt_name.c_str());
  }
  REQUIRE(X509_sign(cert.get(), issuer_key, EVP_sha256()) > 0);
  return cert;
}

TestCa MakeCa(const std::string& cn, int64_t now, uint64_t serial) {
  TestCa ca;
  ca.key = NewKey();
  CertSpec spec;
  spec.subject = {{"O", "Veertu"}, {"CN", cn}};
  spec.not_before = now - 10 * kDaySeconds;
  spec.not_after = now + 3650 * kDaySeconds;
  spec.ca = true;
  spec.serial = serial;
  ca.cert = MakeCert(spec, ca.key.get(), nullptr, ca.key.get());
  return ca;
}

TestCert IssueCert(const TestCa& ca, const CertSpec& spec) {
  TestCert issued;
  issued.key = NewKey();
  issued.cert = MakeCert(spec, issued.key.get(), ca.cert.get(), ca.key.get());
  return issued;
}

Cert Issue(const TestCa& ca, const CertSpec& spec) { return IssueCert(ca, spec).cert; }

Crl MakeCrl(const TestCa& signer, const std::vector<uint64_t>& revoked, int64_t this_update,
            int64_t next_update) {
  Crl crl(X509_CRL_new(), CrlFree());
  REQUIRE(crl != nullptr);
  REQUIRE(X509_CRL_set_version(crl.get(), 1) == 1);  // v2.
  REQUIRE(X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(signer.cert.get())) == 1);
  ASN1_TIME* time = ASN1_TIME_new();
  REQUIRE(time != nullptr);
  SetTime(time, this_update);
  REQUIRE(X509_CRL_set1_lastUpdate(crl.get(), time) == 1);
  if (next_update != 0) {
    SetTime(time, next_update);
    REQUIRE(X509_CRL_set1_nextUpdate(crl.get(), time) == 1);
  }
  for (uint64_t serial : revoked) {
    X509_REVOKED* entry = X509_REVOKED_new();
    ASN1_INTEGER* number = ASN1_INTEGER_new();
    REQUIRE(ASN1_INTEGER_set_uint64(number, serial) == 1);
    REQUIRE(X509_REVOKED_set_serialNumber(entry, number) == 1);
    SetTime(time, this_update - kDaySeconds);
    REQUIRE(X509_REVOKED_set_revocationDate(entry, time) == 1);
    REQUIRE(X509_CRL_add0_revoked(crl.get(), entry) == 1);
    ASN1_INTEGER_free(number);
  }
  ASN1_TIME_free(time);
  REQUIRE(X509_CRL_sort(crl.get()) == 1);
  REQUIRE(X509_CRL_sign(crl.get(), signer.key.get(), EVP_sha256()) > 0);
  return crl;
}

std::string Pem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(bio != nullptr);
  REQUIRE(PEM_write_bio_X509(bio, cert) == 1);
  return TakeBio(bio);
}

std::string KeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(bio != nullptr);
  REQUIRE(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return TakeBio(bio);
}

std::string CrlPem(X509_CRL* crl) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(bio != nullptr);
  REQUIRE(PEM_write_bio_X509_CRL(bio, crl) == 1);
  return TakeBio(bio);
}

std::string SerialHex(X509* cert) {
  BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  REQUIRE(number != nullptr);
  char* hex = BN_bn2hex(number);
  REQUIRE(hex != nullptr);
  std::string out(hex);
  OPENSSL_free(hex);
  BN_free(number);
  return out;
}

std::string SerialHex(uint64_t serial) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%llX", static_cast<unsigned long long>(serial));
  std::string out(buf);
  return out.size() % 2 == 0 ? out : "0" + out;
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

void WriteFileAtomically(const std::string& path, const std::string& content, int mode) {
  static std::atomic<uint64_t> counter{0};
  const std::string temp = path + ".tmp." + std::to_string(getpid()) + "." +
                           std::to_string(counter++);
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  INFO(temp << ": " << std::strerror(errno));
  REQUIRE(fd >= 0);
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    REQUIRE(n > 0);
    written += static_cast<size_t>(n);
  }
  REQUIRE(fchmod(fd, static_cast<mode_t>(mode)) == 0);  // Whatever the umask.
  REQUIRE(close(fd) == 0);
  REQUIRE(std::rename(temp.c_str(), path.c_str()) == 0);
}

std::string WriteCaCert(const TestCa& ca, const std::string& path) {
  WriteFileAtomically(path, Pem(ca.cert.get()));
  return path;
}

CertFiles WriteCertFiles(const TestCert& cert, const std::string& dir, const std::string& name) {
  CertFiles files{dir + "/" + name + "-crt.pem", dir + "/" + name + "-key.pem"};
  WriteFileAtomically(files.cert, Pem(cert.cert.get()));
  std::string key = KeyPem(cert.key.get());
  WriteFileAtomically(files.key, key, 0600);
  OPENSSL_cleanse(key.data(), key.size());
  return files;
}

CertFiles WriteIssuedCert(const TestCa& ca, const CertSpec& spec, const std::string& dir,
                          const std::string& name) {
  return WriteCertFiles(IssueCert(ca, spec), dir, name);
}

std::string WriteCrlFile(const std::string& path, X509_CRL* crl) {
  WriteFileAtomically(path, CrlPem(crl));
  return path;
}

std::string WriteCrlFile(const std::string& path, const TestCa& signer,
                         const std::vector<uint64_t>& revoked, int64_t this_update,
                         int64_t next_update) {
  return WriteCrlFile(path, MakeCrl(signer, revoked, this_update, next_update).get());
}

std::string WriteCrl(const TempDir& dir, const std::string& name, const Crl& crl) {
  return WriteCrlFile(dir.Sub(name), crl.get());
}

}  // namespace cloister::testing
