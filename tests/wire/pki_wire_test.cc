// `cloister pki` through the real binaries: the CA and certificates it makes verify with
// openssl, carry the subject Anka reads (every O= a group, CN= the user), serve cloisterd's HTTPS,
// and a revocation shows in the CRL it writes (openssl verify -crl_check refuses the certificate).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

ProgramResult Cloister(const std::vector<std::string>& args) {
  return RunProgram(RunfilePath("tools/cloister"), args, 60000);
}

ProgramResult OpenSsl(const std::vector<std::string>& args) {
  return RunProgram("openssl", args, 20000);
}

TEST_CASE("cloister pki: init, issue, serve HTTPS, revoke, CRL") {
  TempDir dir;
  const std::string pki = dir.Sub("pki");
  ProgramResult init = Cloister({"pki", "init", "--dir", pki, "--subject", "/O=Ops/CN=Test CA"});
  INFO(init.Describe());
  REQUIRE(init.Succeeded());
  ProgramResult server = Cloister({"pki", "issue", "--dir", pki, "--name", "controller",
                                   "--subject", "/O=Ops/CN=controller", "--server", "--ip",
                                   "127.0.0.1", "--dns", "localhost"});
  INFO(server.Describe());
  REQUIRE(server.Succeeded());
  ProgramResult client = Cloister({"pki", "issue", "--dir", pki, "--name", "jenkins",
                                   "--subject", "/O=DevOps/O=iOS Dev/CN=Jenkins"});
  INFO(client.Describe());
  REQUIRE(client.Succeeded());
  const std::string serial = client.out.substr(0, client.out.find('\n'));
  CHECK(serial == "03");

  ProgramResult verified =
      OpenSsl({"verify", "-CAfile", pki + "/ca-crt.pem", pki + "/controller-crt.pem",
               pki + "/jenkins-crt.pem"});
  INFO(verified.Describe());
  CHECK(verified.Succeeded());
  ProgramResult subject = OpenSsl({"x509", "-in", pki + "/jenkins-crt.pem", "-noout", "-subject",
                                   "-serial", "-nameopt", "RFC2253"});
  CHECK(subject.out.find("subject=CN=Jenkins,O=iOS Dev,O=DevOps") != std::string::npos);
  CHECK(subject.out.find("serial=03") != std::string::npos);

  // The server certificate serves cloisterd's HTTPS, verified against the CA.
  auto daemon = CloisterdProcess::Start(
      dir.Sub("data"), dir.path(),
      {"--use-https", "--server-cert", pki + "/controller-crt.pem", "--server-key",
       pki + "/controller-key.pem"});
  INFO(daemon.status().ToString());
  REQUIRE(daemon.ok());
  WireTarget api = (*daemon)->controller();
  api.ca_file = pki + "/ca-crt.pem";
  RequireOk(Call(api, "GET", "/api/v1/status"));

  // Revoked: in the CRL, refused by openssl's CRL check; the other certificate still passes.
  ProgramResult revoked = Cloister({"pki", "revoke", "--dir", pki, "--serial", serial});
  INFO(revoked.Describe());
  REQUIRE(revoked.Succeeded());
  ProgramResult check = OpenSsl({"verify", "-crl_check", "-CAfile", pki + "/ca-crt.pem",
                                 "-CRLfile", pki + "/crl.pem", pki + "/jenkins-crt.pem"});
  CHECK_FALSE(check.Succeeded());
  CHECK((check.out + check.err).find("certificate revoked") != std::string::npos);
  ProgramResult other = OpenSsl({"verify", "-crl_check", "-CAfile", pki + "/ca-crt.pem",
                                 "-CRLfile", pki + "/crl.pem", pki + "/controller-crt.pem"});
  CHECK(other.Succeeded());
  ProgramResult crl = OpenSsl({"crl", "-in", pki + "/crl.pem", "-noout", "-verify", "-CAfile",
                               pki + "/ca-crt.pem"});
  CHECK((crl.out + crl.err).find("verify OK") != std::string::npos);

  // Refusals: unknown serial (1), no O= (2), a second init (1), a name taken (1).
  CHECK(!Cloister({"pki", "revoke", "--dir", pki, "--serial", "99"}).Succeeded());
  ProgramResult no_group =
      Cloister({"pki", "issue", "--dir", pki, "--name", "x", "--subject", "/CN=alone"});
  CHECK(!no_group.Succeeded());
  CHECK(no_group.err.find("at least one O=") != std::string::npos);
  CHECK(!Cloister({"pki", "init", "--dir", pki}).Succeeded());
  CHECK(!Cloister({"pki", "issue", "--dir", pki, "--name", "jenkins", "--subject",
                   "/O=a/CN=b"})
             .Succeeded());
  CHECK(ReadFileOrEmpty(pki + "/ca-key.pem").find("PRIVATE KEY") != std::string::npos);
}

}  // namespace
}  // namespace cloister::testing
