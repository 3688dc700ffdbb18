// CertificateAuthority, ParseIngressCertificate and TrustedProxies, with CAs, client
// certificates and CRLs made by //tests:cert_factory (OpenSSL's C API, EC P-256: fast), so that
// every date can be placed around an injected "now".
#include "api/cloisterd/certificates.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <array>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "api/peer_certificate.h"
#include "tests/cert_factory.h"
#include "tests/testutil.h"

namespace cloister::cloisterd {
namespace {

constexpr int64_t kNow = 1'700'000'000;
constexpr int64_t kDay = cloister::testing::kDaySeconds;

using cloister::testing::Cert;
using cloister::testing::CertSpec;
using cloister::testing::Issue;
using cloister::testing::Key;
using cloister::testing::MakeCert;
using cloister::testing::MakeCrl;
using cloister::testing::NewKey;
using cloister::testing::Pem;
using cloister::testing::TestCa;
using cloister::testing::UrlEncode;
using cloister::testing::WriteCrl;

// The factory's CAs and client certificates, valid around kNow.
TestCa MakeCa(const std::string& cn) { return cloister::testing::MakeCa(cn, kNow); }

CertSpec Client(uint64_t serial, const std::string& cn = "jenkins",
                const std::string& o = "DevOps") {
  return cloister::testing::ClientSpec(serial, kNow, cn, {o});
}

void WriteFile(const std::string& path, const std::string& content) {
  cloister::testing::WriteFileAtomically(path, content);
}

std::shared_ptr<const api::PeerCertificate> Peer(const Cert& leaf,
                                                 const std::vector<Cert>& chain = {}) {
  REQUIRE(X509_up_ref(leaf.get()) == 1);
  STACK_OF(X509)* stack = nullptr;
  if (!chain.empty()) {
    stack = sk_X509_new_null();
    for (const Cert& cert : chain) {
      REQUIRE(X509_up_ref(cert.get()) == 1);
      REQUIRE(sk_X509_push(stack, cert.get()) > 0);
    }
  }
  return std::make_shared<const api::PeerCertificate>(leaf.get(), stack);
}

std::array<uint8_t, 32> CrlDigest(X509_CRL* crl) {
  unsigned char* der = nullptr;
  int size = i2d_X509_CRL(crl, &der);
  REQUIRE(size > 0);
  std::array<uint8_t, 32> digest{};
  unsigned int digest_size = 0;
  REQUIRE(EVP_Digest(der, static_cast<size_t>(size), digest.data(), &digest_size, EVP_sha256(),
                     nullptr) == 1);
  OPENSSL_free(der);
  return digest;
}

// The world of most tests: the CA, a second unrelated "wrong" CA, and the CA file.
struct World {
  cloister::testing::TempDir dir;
  TestCa ca = MakeCa("Anka CA");
  TestCa wrong = MakeCa("Wrong CA");
  std::string ca_path = dir.Sub("ca.pem");
  std::unique_ptr<CertificateAuthority> authority;

  World() {
    WriteFile(ca_path, Pem(ca.cert.get()));
    auto created = CertificateAuthority::Create(ca_path);
    INFO(created.status().ToString());
    REQUIRE(created.ok());
    authority = std::move(created).value();
  }

  CertCheck Check(const Cert& leaf, int64_t now = kNow) const {
    return authority->Check(*Peer(leaf), now);
  }
  std::string Reason(const Cert& leaf, int64_t now = kNow) const {
    CertCheck check = Check(leaf, now);
    REQUIRE(!check.ok);
    return check.reason;
  }
};

TEST_CASE("a certificate from the CA: user from CN, groups from O, serial in hex") {
  World world;
  CertCheck check = world.Check(Issue(world.ca, Client(0x1f, "jenkins", "DevOps")));
  INFO(check.reason);
  REQUIRE(check.ok);
  REQUIRE(check.user == "jenkins");
  REQUIRE(check.groups == std::vector<std::string>{"DevOps"});
  REQUIRE(check.serial_hex == "1F");
  REQUIRE(check.subject == "/O=DevOps/CN=jenkins");
  REQUIRE(check.reason.empty());
  REQUIRE(!world.authority->HasCrl());
}

TEST_CASE("every O= is a group, in order, spaces kept") {
  World world;
  CertSpec spec = Client(7);
  spec.subject = {{"O", "iOS Dev"}, {"OU", "Mobile"}, {"O", "Dev Ops Team"}, {"CN", "Build Bot"}};
  CertCheck check = world.Check(Issue(world.ca, spec));
  INFO(check.reason);
  REQUIRE(check.ok);
  REQUIRE(check.user == "Build Bot");
  REQUIRE(check.groups == std::vector<std::string>{"iOS Dev", "Dev Ops Team"});
}

TEST_CASE("refusals name what is wrong") {
  World world;
  CertSpec expired = Client(2);
  expired.not_before = kNow - 100 * kDay;
  expired.not_after = kNow - kDay;
  REQUIRE(world.Reason(Issue(world.ca, expired)) == "certificate expired");

  CertSpec early = Client(3);
  early.not_before = kNow + kDay;
  early.not_after = kNow + 100 * kDay;
  REQUIRE(world.Reason(Issue(world.ca, early)) == "certificate not yet valid");

  // A refusal still says what was claimed, for the audit event.
  CertCheck foreign = world.Check(Issue(world.wrong, Client(13, "mallory", "Admins")));
  REQUIRE(!foreign.ok);
  REQUIRE(foreign.user == "mallory");
  REQUIRE(foreign.groups == std::vector<std::string>{"Admins"});
  REQUIRE(world.Reason(Issue(world.ca, Client(4, "", "DevOps"))) == "certificate has no CN");
  REQUIRE(world.Reason(Issue(world.ca, Client(5, "jenkins", ""))) == "certificate has no O");
  REQUIRE(world.Reason(Issue(world.wrong, Client(6))) == "certificate signed by an unknown CA");

  // Self-signed, and signed by a key that claims the CA's name.
  Key key = NewKey();
  REQUIRE(world.Reason(MakeCert(Client(8), key.get(), nullptr, key.get())) ==
          "certificate signed by an unknown CA");
  TestCa impostor = MakeCa("Anka CA");
  REQUIRE(world.Reason(Issue(impostor, Client(9))) == "certificate signed by an unknown CA");

  // A server-only certificate is not a client certificate; clientAuth is.
  CertSpec server = Client(10);
  server.extended_key_usage = "serverAuth";
  REQUIRE(world.Reason(Issue(world.ca, server)) ==
          "certificate not valid for client authentication");
  CertSpec client = Client(11);
  client.extended_key_usage = "clientAuth";
  REQUIRE(world.Check(Issue(world.ca, client)).ok);
}

TEST_CASE("an intermediate CA: trusted through the chain the client sends") {
  World world;
  Key intermediate_key = NewKey();
  CertSpec spec = Client(2000);
  spec.subject = {{"O", "Veertu"}, {"CN", "Anka Intermediate"}};
  spec.ca = true;
  Cert intermediate = MakeCert(spec, intermediate_key.get(), world.ca.cert.get(),
                               world.ca.key.get());
  Key leaf_key = NewKey();
  Cert leaf = MakeCert(Client(12), leaf_key.get(), intermediate.get(), intermediate_key.get());
  REQUIRE(world.authority->Check(*Peer(leaf, {intermediate}), kNow).ok);
  REQUIRE(world.authority->Check(*Peer(leaf), kNow).reason ==
          "certificate signed by an unknown CA");
}

TEST_CASE("Create: several CAs, and errors naming the setting and the path") {
  World world;
  WriteFile(world.dir.Sub("both.pem"), Pem(world.ca.cert.get()) + Pem(world.wrong.cert.get()));
  auto both = CertificateAuthority::Create(world.dir.Sub("both.pem"), "ANKA_ROOT_CERT");
  REQUIRE(both.ok());
  REQUIRE((*both)->Check(*Peer(Issue(world.wrong, Client(20))), kNow).ok);
  REQUIRE((*both)->Check(*Peer(Issue(world.ca, Client(21))), kNow).ok);

  auto missing = CertificateAuthority::Create(world.dir.Sub("none.pem"));
  REQUIRE(!missing.ok());
  REQUIRE(missing.status().code() == StatusCode::kNotFound);
  REQUIRE(missing.status().message() ==
          "ANKA_CA_CERT " + world.dir.Sub("none.pem") + ": cannot read: No such file or directory");

  WriteFile(world.dir.Sub("junk.pem"), "not a certificate\n");
  auto junk = CertificateAuthority::Create(world.dir.Sub("junk.pem"), "ANKA_ROOT_CERT");
  REQUIRE(!junk.ok());
  REQUIRE(junk.status().message() ==
          "ANKA_ROOT_CERT " + world.dir.Sub("junk.pem") + ": no PEM certificate");

  WriteFile(world.dir.Sub("broken.pem"),
            Pem(world.ca.cert.get()) +
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  auto broken = CertificateAuthority::Create(world.dir.Sub("broken.pem"));
  REQUIRE(!broken.ok());
  REQUIRE(broken.status().message().find("ANKA_CA_CERT " + world.dir.Sub("broken.pem") +
                                         ": cannot parse PEM certificate 2") == 0);
}

TEST_CASE("a CRL revokes; its details are reported; generation counts loads") {
  World world;
  Cert good = Issue(world.ca, Client(0x30));
  Cert revoked = Issue(world.ca, Client(0x31));
  auto crl = MakeCrl(world.ca, {0x31, 0x99}, kNow - kDay, kNow + 30 * kDay);
  auto info = world.authority->LoadCrl(WriteCrl(world.dir, "crl.pem", crl), kNow);
  INFO(info.status().ToString());
  REQUIRE(info.ok());
  REQUIRE(info->issuer == "/O=Veertu/CN=Anka CA");
  REQUIRE(info->this_update == kNow - kDay);
  REQUIRE(info->next_update == kNow + 30 * kDay);
  REQUIRE(info->revoked_count == 2);
  REQUIRE(info->generation == 1);
  REQUIRE(!info->expired);
  REQUIRE(info->sha256 == CrlDigest(crl.get()));
  REQUIRE(world.authority->HasCrl());
  REQUIRE(world.authority->crl_info().generation == 1);
  REQUIRE(!world.authority->CrlExpired(kNow));

  REQUIRE(world.Check(good).ok);
  REQUIRE(world.Reason(revoked) == "certificate revoked");
  REQUIRE(world.authority->IsRevoked("31"));
  REQUIRE(world.authority->IsRevoked("0x99"));
  REQUIRE(!world.authority->IsRevoked("30"));

  // A CRL without nextUpdate, loaded again: the next generation.
  auto again = world.authority->LoadCrl(
      WriteCrl(world.dir, "crl2.pem", MakeCrl(world.ca, {}, kNow, 0)), kNow);
  REQUIRE(again.ok());
  REQUIRE(again->generation == 2);
  REQUIRE(again->next_update == 0);
  REQUIRE(again->revoked_count == 0);
  REQUIRE(!world.authority->CrlExpired(kNow + 10000 * kDay));
  REQUIRE(world.Check(revoked).ok);  // No longer listed.
}

TEST_CASE("a refused CRL keeps the previous one in force") {
  World world;
  Cert revoked = Issue(world.ca, Client(0x40));
  REQUIRE(world.authority
              ->LoadCrl(WriteCrl(world.dir, "crl.pem",
                                 MakeCrl(world.ca, {0x40}, kNow - kDay, kNow + 30 * kDay)),
                        kNow)
              .ok());
  const CrlInfo before = world.authority->crl_info();

  const std::string foreign = WriteCrl(world.dir, "foreign.pem",
                                       MakeCrl(world.wrong, {}, kNow - kDay, kNow + kDay));
  auto wrong = world.authority->LoadCrl(foreign, kNow);
  REQUIRE(!wrong.ok());
  REQUIRE(wrong.status().message() ==
          "ANKA_CRL " + foreign +
              ": issued by /O=Veertu/CN=Wrong CA, which is not a CA of ANKA_CA_CERT; the CRL in "
              "force is kept");

  // Same issuer name, another key: the signature gives it away.
  TestCa impostor = MakeCa("Anka CA");
  const std::string forged = WriteCrl(world.dir, "forged.pem",
                                      MakeCrl(impostor, {}, kNow - kDay, kNow + kDay));
  auto bad_signature = world.authority->LoadCrl(forged, kNow);
  REQUIRE(!bad_signature.ok());
  REQUIRE(bad_signature.status().message() ==
          "ANKA_CRL " + forged +
              ": its signature does not verify with the key of /O=Veertu/CN=Anka CA in "
              "ANKA_CA_CERT; the CRL in force is kept");

  WriteFile(world.dir.Sub("junk.pem"), "junk\n");
  auto junk = world.authority->LoadCrl(world.dir.Sub("junk.pem"), kNow);
  REQUIRE(!junk.ok());
  REQUIRE(junk.status().message().find("ANKA_CRL " + world.dir.Sub("junk.pem") +
                                       ": no PEM CRL") == 0);
  auto missing = world.authority->LoadCrl(world.dir.Sub("none.pem"), kNow);
  REQUIRE(missing.status().code() == StatusCode::kNotFound);

  REQUIRE(world.authority->crl_info().generation == before.generation);
  REQUIRE(world.authority->crl_info().sha256 == before.sha256);
  REQUIRE(world.Reason(revoked) == "certificate revoked");
}

TEST_CASE("an expired CRL fails certificate logins closed until a fresh one is loaded") {
  World world;
  Cert good = Issue(world.ca, Client(0x50));
  auto stale = world.authority->LoadCrl(
      WriteCrl(world.dir, "stale.pem", MakeCrl(world.ca, {}, kNow - 60 * kDay, kNow - kDay)),
      kNow);
  REQUIRE(stale.ok());  // Authentic, so accepted...
  REQUIRE(stale->expired);
  REQUIRE(world.authority->CrlExpired(kNow));
  REQUIRE(world.Reason(good) == "CRL expired");  // ...and nobody gets in with a certificate.

  // A CRL valid now, and the same one once its nextUpdate has passed.
  REQUIRE(world.authority
              ->LoadCrl(WriteCrl(world.dir, "fresh.pem",
                                 MakeCrl(world.ca, {}, kNow - kDay, kNow + kDay)),
                        kNow)
              .ok());
  REQUIRE(world.Check(good).ok);
  REQUIRE(world.Reason(good, kNow + 2 * kDay) == "CRL expired");
}

TEST_CASE("with a CRL, a certificate of another loaded CA needs that CA's CRL") {
  World world;
  WriteFile(world.dir.Sub("both.pem"), Pem(world.ca.cert.get()) + Pem(world.wrong.cert.get()));
  auto both = CertificateAuthority::Create(world.dir.Sub("both.pem"));
  REQUIRE(both.ok());
  REQUIRE((*both)
              ->LoadCrl(WriteCrl(world.dir, "crl.pem",
                                 MakeCrl(world.ca, {}, kNow - kDay, kNow + kDay)),
                        kNow)
              .ok());
  REQUIRE((*both)->Check(*Peer(Issue(world.ca, Client(0x60))), kNow).ok);
  REQUIRE((*both)->Check(*Peer(Issue(world.wrong, Client(0x61))), kNow).reason ==
          "no CRL for the certificate's CA");
}

TEST_CASE("API revocation is immediate, in any serial spelling") {
  World world;
  Cert cert = Issue(world.ca, Client(0x1f2));
  REQUIRE(world.Check(cert).ok);
  REQUIRE(!world.authority->IsRevoked("01F2"));
  REQUIRE(world.authority->RevokeSerial("0x01f2"));
  REQUIRE(world.authority->IsRevoked("1f2"));
  REQUIRE(world.authority->IsRevoked("01:F2"));
  REQUIRE(world.Reason(cert) == "certificate revoked");
  REQUIRE(!world.authority->RevokeSerial("not hex"));
  REQUIRE(!world.authority->RevokeSerial(""));
  REQUIRE(!world.authority->IsRevoked("zz"));

  REQUIRE(CertificateAuthority::NormalizeSerial("a") == "0A");
  REQUIRE(CertificateAuthority::NormalizeSerial("000A") == "0A");
  REQUIRE(CertificateAuthority::NormalizeSerial(" 0x0a:1b ") == "0A1B");
  REQUIRE(CertificateAuthority::NormalizeSerial("0") == "0");
  REQUIRE(CertificateAuthority::NormalizeSerial("0x") == "");
  REQUIRE(CertificateAuthority::NormalizeSerial("12g4") == "");
  REQUIRE(CertificateAuthority::NormalizeSerial(std::string(200, 'f')) == "");
}

TEST_CASE("the cache: one chain verification per certificate and CRL generation") {
  World world;
  Cert cert = Issue(world.ca, Client(0x70));
  auto connection = Peer(cert);
  REQUIRE(world.authority->Check(*connection, kNow).ok);
  REQUIRE(world.authority->chain_verifications() == 1);
  // Later requests on the connection, and a new connection with the same certificate.
  REQUIRE(world.authority->Check(*connection, kNow + 10).ok);
  REQUIRE(world.authority->Check(*Peer(cert), kNow + 20).ok);
  REQUIRE(world.authority->chain_verifications() == 1);

  // API revocation needs no new verification.
  Cert other = Issue(world.ca, Client(0x71));
  auto other_connection = Peer(other);
  REQUIRE(world.authority->Check(*other_connection, kNow).ok);
  REQUIRE(world.authority->chain_verifications() == 2);
  REQUIRE(world.authority->RevokeSerial("71"));
  REQUIRE(world.authority->Check(*other_connection, kNow).reason == "certificate revoked");
  REQUIRE(world.authority->chain_verifications() == 2);

  // A new CRL: a new generation, so the chain is verified again and the revocation is seen.
  REQUIRE(world.authority
              ->LoadCrl(WriteCrl(world.dir, "crl.pem",
                                 MakeCrl(world.ca, {0x70}, kNow - kDay, kNow + 30 * kDay)),
                        kNow)
              .ok());
  REQUIRE(world.authority->Check(*connection, kNow + 30).reason == "certificate revoked");
  REQUIRE(world.authority->chain_verifications() == 3);

  // Time moving past the certificate's notAfter is noticed on a cached entry too.
  Cert short_lived = Issue(world.ca, [] {
    CertSpec spec = Client(0x72);
    spec.not_after = kNow + kDay;
    return spec;
  }());
  auto short_connection = Peer(short_lived);
  REQUIRE(world.authority->Check(*short_connection, kNow).ok);
  REQUIRE(world.authority->chain_verifications() == 4);
  REQUIRE(world.authority->Check(*short_connection, kNow + 2 * kDay).reason ==
          "certificate expired");
  REQUIRE(world.authority->chain_verifications() == 5);
}

// ---- Ingress ----

TEST_CASE("ingress: a URL-encoded PEM certificate (and chain) parses; junk does not") {
  World world;
  Cert cert = Issue(world.ca, Client(0x80, "node-1", "Nodes"));
  auto parsed = ParseIngressCertificate(UrlEncode(Pem(cert.get())));
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  REQUIRE((*parsed)->chain() == nullptr);
  REQUIRE((*parsed)->fingerprint() == Peer(cert)->fingerprint());
  CertCheck check = world.authority->Check(**parsed, kNow);
  REQUIRE(check.ok);
  REQUIRE(check.user == "node-1");

  // Unescaped '+' and '/' (base64 characters) stay as they are; a chain follows the leaf.
  std::string pem_with_chain = Pem(cert.get()) + Pem(world.ca.cert.get());
  auto with_chain = ParseIngressCertificate(pem_with_chain);
  REQUIRE(with_chain.ok());
  REQUIRE(sk_X509_num((*with_chain)->chain()) == 1);

  for (std::string junk : {std::string(""), std::string("hello"), std::string("%ZZ"),
                           std::string("abc%4"), UrlEncode(Pem(cert.get())) + "trailing",
                           UrlEncode("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                     "-----END CERTIFICATE-----\n")}) {
    INFO(junk);
    auto refused = ParseIngressCertificate(junk);
    REQUIRE(!refused.ok());
    REQUIRE(refused.status().code() == StatusCode::kInvalidArgument);
    REQUIRE(refused.status().message().find("Ssl-Client-Cert: ") == 0);
  }
  REQUIRE(ParseIngressCertificate("%ZZ").status().message() ==
          "Ssl-Client-Cert: bad percent escape at byte 0");
}

// ---- Trusted proxies ----

TEST_CASE("trusted proxies: the default is loopback, IPv4 and IPv6") {
  auto proxies = TrustedProxies::Parse(TrustedProxies::kDefault);
  REQUIRE(proxies.ok());
  REQUIRE(proxies->size() == 2);
  for (const char* ip : {"127.0.0.1", "127.255.255.254", "::1", "[::1]", "[::1]:5000",
                         "127.0.0.1:8090", "::ffff:127.0.0.1", " 127.0.0.1 "}) {
    INFO(ip);
    REQUIRE(proxies->Contains(ip));
  }
  for (const char* ip : {"128.0.0.1", "10.0.0.1", "::2", "::", "", "localhost", "[::1",
                         "::ffff:10.0.0.1", "1.2.3.4.5"}) {
    INFO(ip);
    REQUIRE(!proxies->Contains(ip));
  }
}

TEST_CASE("trusted proxies: CIDR blocks and single addresses") {
  auto proxies =
      TrustedProxies::Parse(" 10.0.0.0/8, 192.168.1.7 ,,fd00::/8,2001:db8::1/32,172.16.5.9/12");
  INFO(proxies.status().ToString());
  REQUIRE(proxies.ok());
  REQUIRE(proxies->size() == 5);
  for (const char* ip : {"10.0.0.1", "10.255.1.2", "192.168.1.7", "fd12:3456::1",
                         "2001:db8:ffff::1", "172.31.255.255", "172.16.0.0"}) {
    INFO(ip);
    REQUIRE(proxies->Contains(ip));
  }
  for (const char* ip : {"11.0.0.1", "192.168.1.8", "fe80::1", "2001:db9::1", "172.32.0.0",
                         "127.0.0.1", "::1"}) {
    INFO(ip);
    REQUIRE(!proxies->Contains(ip));
  }
  auto none = TrustedProxies::Parse("");
  REQUIRE(none.ok());
  REQUIRE(!none->Contains("127.0.0.1"));
  auto zero = TrustedProxies::Parse("0.0.0.0/0");
  REQUIRE(zero.ok());
  REQUIRE(zero->Contains("203.0.113.9"));
  REQUIRE(!zero->Contains("2001:db8::1"));
}

TEST_CASE("trusted proxies: a bad entry is named") {
  for (const char* entry : {"10.0.0.0/33", "fd00::/129", "300.1.1.1", "10.0.0.0/", "10.0.0.0/ab",
                            "example.com", "10.0.0.0/-1", "/8", "10.0.0.0/8/8"}) {
    INFO(entry);
    auto proxies = TrustedProxies::Parse(std::string("127.0.0.1,") + entry);
    REQUIRE(!proxies.ok());
    REQUIRE(proxies.status().message() == std::string("CLOISTER_TRUSTED_PROXIES: \"") + entry +
                                              "\" is not an IPv4 or IPv6 address or CIDR block");
  }
}

}  // namespace
}  // namespace cloister::cloisterd
