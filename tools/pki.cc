#include "tools/pki.h"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "log/atomic_file.h"

namespace cloister::tools {
namespace {

using Json = nlohmann::json;

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  // ASN1_INTEGER and ASN1_TIME are both ASN1_STRING.
  void operator()(ASN1_STRING* p) const { ASN1_STRING_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Free>;

std::string Path(const std::string& dir, const std::string& file) { return dir + "/" + file; }

Status OpenSslError(const std::string& what) { return Status::IoError(what + " failed"); }

Result<Json> LoadState(const std::string& dir) {
  std::ifstream in(Path(dir, "pki.json"));
  if (!in) {
    return Status::NotFound(Path(dir, "pki.json") + " not found (run cloister pki init first)");
  }
  std::stringstream text;
  text << in.rdbuf();
  Json state = Json::parse(text.str(), nullptr, false);
  if (!state.is_object() || !state["next_serial"].is_number_unsigned()) {
    return Status::Corruption(Path(dir, "pki.json") + " is not a cloister PKI state");
  }
  return state;
}

Status SaveState(const std::string& dir, const Json& state) {
  return log::WriteFileAtomic(Path(dir, "pki.json"), state.dump(2) + "\n", 0644);
}

// What write puts into a memory BIO, as text.
Result<std::string> ToPem(const std::function<int(BIO*)>& write) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) {
    return OpenSslError("PEM encoding");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  return ToPem([key](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

Result<std::string> CertPem(X509* cert) {
  return ToPem([cert](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
}

Result<Owned<X509_NAME>> Name(const PkiSubject& subject) {
  Owned<X509_NAME> name(X509_NAME_new());
  for (const std::string& o : subject.organizations) {
    if (X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1,
                                   0) != 1) {
      return OpenSslError("O=" + o);
    }
  }
  if (X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(
                                     subject.common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return OpenSslError("CN=" + subject.common_name);
  }
  return name;
}

Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return Status::InvalidArgument(std::string(OBJ_nid2sn(nid)) + " = " + value + " is invalid");
  }
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return added == 1 ? Status::Ok() : OpenSslError("adding an extension");
}

// A certificate for key named subject, signed by issuer_key (issuer: nullptr for self-signed).
Result<Owned<X509>> MakeCert(EVP_PKEY* key, const PkiSubject& subject, uint64_t serial,
                             uint32_t days, X509* issuer, EVP_PKEY* issuer_key,
                             const std::vector<std::pair<int, std::string>>& extensions) {
  Owned<X509> cert(X509_new());
  Result<Owned<X509_NAME>> name = Name(subject);
  if (!name.ok()) {
    return name.status();
  }
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);  // Clock skew between machines.
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_set_subject_name(cert.get(), name.value().get());
  X509_set_issuer_name(cert.get(),
                       issuer != nullptr ? X509_get_subject_name(issuer) : name.value().get());
  X509_set_pubkey(cert.get(), key);
  for (const auto& [nid, value] : extensions) {
    Status added = AddExtension(cert.get(), issuer != nullptr ? issuer : cert.get(), nid, value);
    if (!added.ok()) {
      return added;
    }
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return OpenSslError("signing the certificate");
  }
  return cert;
}

struct Ca {
  Owned<EVP_PKEY> key;
  Owned<X509> cert;
};

Result<Ca> LoadCa(const std::string& dir) {
  Ca ca;
  Owned<BIO> key_bio(BIO_new_file(Path(dir, "ca-key.pem").c_str(), "r"));
  Owned<BIO> cert_bio(BIO_new_file(Path(dir, "ca-crt.pem").c_str(), "r"));
  if (!key_bio || !cert_bio) {
    return Status::NotFound(dir + " has no CA (run cloister pki init first)");
  }
  ca.key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ca.cert.reset(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!ca.key || !ca.cert) {
    return Status::Corruption(dir + ": the CA key or certificate does not parse");
  }
  return ca;
}

std::string SerialHex(uint64_t serial) {
  char text[32];
  std::snprintf(text, sizeof(text), "%02llX", static_cast<unsigned long long>(serial));
  std::string hex = text;
  return hex.size() % 2 == 1 ? "0" + hex : hex;  // As openssl prints it: whole bytes.
}

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && name != "ca" &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                  c == '-';
         });
}

}  // namespace

Result<PkiSubject> ParsePkiSubject(const std::string& text) {
  PkiSubject subject;
  if (text.empty() || text[0] != '/') {
    return Status::InvalidArgument("subject must look like /O=Group/CN=Name");
  }
  std::stringstream parts(text.substr(1));
  for (std::string part; std::getline(parts, part, '/');) {
    const size_t eq = part.find('=');
    const std::string key = eq == std::string::npos ? part : part.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (value.empty()) {
      return Status::InvalidArgument("subject part '" + part + "' has no value");
    }
    if (key == "O") {
      subject.organizations.push_back(value);
    } else if (key == "CN" && subject.common_name.empty()) {
      subject.common_name = value;
    } else {
      return Status::InvalidArgument("subject part '" + key +
                                     "=' is not supported (O= and one CN= only)");
    }
  }
  if (subject.common_name.empty() || subject.organizations.empty()) {
    return Status::InvalidArgument("subject needs at least one O= and a CN=");
  }
  return subject;
}

Status PkiInit(const std::string& dir, const PkiSubject& subject, uint32_t days) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return Status::IoError("create " + dir + ": " + error.message());
  }
  if (access(Path(dir, "ca-key.pem").c_str(), F_OK) == 0) {
    return Status::Busy(dir + " already has a CA");
  }
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) {
    return OpenSslError("generating the CA key");
  }
  auto cert = MakeCert(key.get(), subject, 1, days, nullptr, key.get(),
                       {{NID_basic_constraints, "critical,CA:TRUE"},
                        {NID_key_usage, "critical,keyCertSign,cRLSign"},
                        {NID_subject_key_identifier, "hash"}});
  if (!cert.ok()) {
    return cert.status();
  }
  Result<std::string> key_pem = KeyPem(key.get());
  Result<std::string> cert_pem = CertPem(cert.value().get());
  if (!key_pem.ok() || !cert_pem.ok()) {
    return OpenSslError("PEM encoding");
  }
  Status written = log::WriteFileAtomic(Path(dir, "ca-key.pem"), key_pem.value(), 0600);
  if (written.ok()) written = log::WriteFileAtomic(Path(dir, "ca-crt.pem"), cert_pem.value(), 0644);
  if (written.ok()) {
    written = SaveState(dir, Json{{"next_serial", 2}, {"crl_number", 1},
                                  {"issued", Json::array()}, {"revoked", Json::array()}});
  }
  if (written.ok()) written = PkiCrl(dir, 30);
  return written;
}

Result<std::string> PkiIssue(const std::string& dir, const IssueRequest& request) {
  if (!ValidName(request.name)) {
    return Status::InvalidArgument("name must be letters, digits, '.', '_' or '-' (not 'ca')");
  }
  if (request.subject.common_name.empty() || request.subject.organizations.empty()) {
    return Status::InvalidArgument("a certificate needs at least one O= and a CN=");
  }
  if (access(Path(dir, request.name + "-crt.pem").c_str(), F_OK) == 0) {
    return Status::Busy(Path(dir, request.name + "-crt.pem") + " exists");
  }
  Result<Ca> ca = LoadCa(dir);
  if (!ca.ok()) {
    return ca.status();
  }
  Result<Json> state = LoadState(dir);
  if (!state.ok()) {
    return state.status();
  }
  const uint64_t serial = state.value()["next_serial"].get<uint64_t>();
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, request.server ? "serverAuth" : "clientAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid"}};
  std::string alt;
  for (const std::string& ip : request.ips) alt += (alt.empty() ? "" : ",") + ("IP:" + ip);
  for (const std::string& dns : request.dns) alt += (alt.empty() ? "" : ",") + ("DNS:" + dns);
  if (!alt.empty()) {
    extensions.emplace_back(NID_subject_alt_name, alt);
  } else if (request.server) {
    return Status::InvalidArgument("a server certificate needs --ip or --dns");
  }
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) {
    return OpenSslError("generating a key");
  }
  auto cert = MakeCert(key.get(), request.subject, serial, request.days, ca.value().cert.get(),
                       ca.value().key.get(), extensions);
  if (!cert.ok()) {
    return cert.status();
  }
  Result<std::string> key_pem = KeyPem(key.get());
  Result<std::string> cert_pem = CertPem(cert.value().get());
  if (!key_pem.ok() || !cert_pem.ok()) {
    return OpenSslError("PEM encoding");
  }
  Json next = state.value();
  next["next_serial"] = serial + 1;
  std::string subject = "/";
  for (const std::string& o : request.subject.organizations) subject += "O=" + o + "/";
  subject += "CN=" + request.subject.common_name;
  next["issued"].push_back(
      Json{{"name", request.name}, {"serial", SerialHex(serial)}, {"subject", subject}});
  // The serial is taken first, so a crash after it never issues the same serial twice.
  Status saved = SaveState(dir, next);
  const std::string stem = Path(dir, request.name);
  if (saved.ok()) saved = log::WriteFileAtomic(stem + "-key.pem", key_pem.value(), 0600);
  if (saved.ok()) saved = log::WriteFileAtomic(stem + "-crt.pem", cert_pem.value(), 0644);
  if (!saved.ok()) {
    return saved;
  }
  return SerialHex(serial);
}

Status PkiRevoke(const std::string& dir, const std::string& serial_hex) {
  Result<Json> state = LoadState(dir);
  if (!state.ok()) {
    return state.status();
  }
  std::string wanted = serial_hex;
  std::transform(wanted.begin(), wanted.end(), wanted.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  while (wanted.size() > 2 && wanted.starts_with("00")) wanted.erase(0, 2);
  if (wanted.size() % 2 == 1) wanted = "0" + wanted;
  Json next = state.value();
  const bool issued = std::any_of(next["issued"].begin(), next["issued"].end(),
                                  [&](const Json& cert) { return cert["serial"] == wanted; });
  if (!issued) {
    return Status::NotFound("serial " + serial_hex + " was not issued by this CA");
  }
  const bool already = std::any_of(next["revoked"].begin(), next["revoked"].end(),
                                   [&](const Json& r) { return r["serial"] == wanted; });
  if (!already) {
    next["revoked"].push_back(Json{{"serial", wanted}, {"time", std::time(nullptr)}});
    Status saved = SaveState(dir, next);
    if (!saved.ok()) {
      return saved;
    }
  }
  return PkiCrl(dir, 30);
}

Status PkiCrl(const std::string& dir, uint32_t days) {
  Result<Ca> ca = LoadCa(dir);
  if (!ca.ok()) {
    return ca.status();
  }
  Result<Json> state = LoadState(dir);
  if (!state.ok()) {
    return state.status();
  }
  Owned<X509_CRL> crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.value().cert.get()));
  Owned<ASN1_TIME> now(ASN1_TIME_set(nullptr, std::time(nullptr)));
  Owned<ASN1_TIME> next_update(
      ASN1_TIME_set(nullptr, std::time(nullptr) + static_cast<time_t>(days) * 86400));
  X509_CRL_set1_lastUpdate(crl.get(), now.get());
  X509_CRL_set1_nextUpdate(crl.get(), next_update.get());
  for (const Json& revoked : state.value()["revoked"]) {
    BIGNUM* raw = nullptr;
    if (BN_hex2bn(&raw, revoked["serial"].get<std::string>().c_str()) == 0) {
      return Status::Corruption("pki.json: bad serial " + revoked["serial"].dump());
    }
    Owned<BIGNUM> number(raw);
    X509_REVOKED* entry = X509_REVOKED_new();
    Owned<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
    Owned<ASN1_TIME> when(ASN1_TIME_set(nullptr, revoked["time"].get<time_t>()));
    X509_REVOKED_set_serialNumber(entry, serial.get());
    X509_REVOKED_set_revocationDate(entry, when.get());
    X509_CRL_add0_revoked(crl.get(), entry);
  }
  X509_CRL_sort(crl.get());
  const uint64_t number = state.value().value("crl_number", uint64_t{1});
  Owned<ASN1_INTEGER> crl_number(ASN1_INTEGER_new());
  ASN1_INTEGER_set_uint64(crl_number.get(), number);
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0);
  if (X509_CRL_sign(crl.get(), ca.value().key.get(), EVP_sha256()) == 0) {
    return OpenSslError("signing the CRL");
  }
  X509_CRL* signed_crl = crl.get();
  Result<std::string> pem =
      ToPem([signed_crl](BIO* bio) { return PEM_write_bio_X509_CRL(bio, signed_crl); });
  if (!pem.ok()) {
    return pem.status();
  }
  Json next = state.value();
  next["crl_number"] = number + 1;
  Status saved = SaveState(dir, next);
  return saved.ok() ? log::WriteFileAtomic(Path(dir, "crl.pem"), pem.value(), 0644) : saved;
}

}  // namespace cloister::tools
