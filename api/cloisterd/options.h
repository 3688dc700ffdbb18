// Options: cloisterd's whole configuration, from flags and environment variables.
//
// Every option is a command-line flag and an environment variable (the Anka name where Anka has
// one, CLOISTER_* otherwise); a flag given on the command line wins over the environment, which
// wins over the default. `cloisterd --help` lists each with its variable and default. Parse
// returns one clear line for any invalid combination, so a bad configuration stops the daemon
// before it opens a port or the data directory.
//
// Options is built once at startup and read-only afterwards.
#pragma once

#include <cstdint>
#include <string>

#include "log/status.h"

namespace cloister::cloisterd {

enum class Role { kAll, kController, kRegistry };

struct Options {
  std::string data_dir = "./data";
  Role role = Role::kAll;
  std::string listen_addr = ":8090";
  std::string registry_listen_address = ":8089";
  std::string registry_url;  // ANKA_ANKA_REGISTRY: the registry address the controller reports.

  bool use_https = false;
  std::string server_cert;
  std::string server_key;
  std::string min_tls_version = "tls_1.2";
  std::string max_tls_version = "tls_1.3";
  std::string cipher_suites;

  bool enable_auth = false;
  std::string root_token;  // Never logged; only its presence and length are checked here.
  bool init = false;       // --init: make a root token, keep its digest in the data dir, exit.
  bool enable_api_keys = false;              // ANKA_ENABLE_API_KEYS: UAK + TAP.
  std::string api_keys_session_ttl = "5m";   // ANKA_API_KEYS_SESSION_TTL (Go duration).
  std::string tap_secret_ttl = "3m";         // CLOISTER_TAP_SECRET_TTL: a hand's secret.
  std::string ca_cert;          // ANKA_CA_CERT (or ANKA_ROOT_CERT): client certificates' CA.
  std::string ca_cert_setting = "ANKA_CA_CERT";  // Which of the two it came from (for errors).
  std::string crl;              // ANKA_CRL: PEM CRL of that CA, reloaded when it changes.
  bool enable_ingress_nginx = false;  // ANKA_ENABLE_INGRESS_NGINX: trust a proxy's cert headers.
  std::string trusted_proxies = "127.0.0.0/8,::1/128";  // CLOISTER_TRUSTED_PROXIES (CIDRs).
  // The controller's own credentials for a separate registry (--role controller).
  std::string client_cert;         // ANKA_CLIENT_CERT (PEM).
  std::string client_cert_key;     // ANKA_CLIENT_CERT_KEY (PEM).
  std::string api_key_id;          // ANKA_API_KEY_ID.
  std::string api_key_string;      // ANKA_API_KEY_STRING: never logged.
  std::string api_key_file;        // ANKA_API_KEY_FILE.
  bool skip_tls_verification = false;  // ANKA_SKIP_TLS_VERIFICATION: self-signed registry.
  // How often the controller checks the registry's status and re-reads its catalogue (which
  // feeds the controller's template view when it has no registry of its own).
  uint64_t registry_interval_ms = 5000;  // CLOISTER_REGISTRY_INTERVAL_MS.
  // Authorization (docs/api.md, issue 6). Off: every authenticated principal may do everything.
  bool enable_controller_authorization = false;  // ANKA_ENABLE_CONTROLLER_AUTHORIZATION.
  bool enable_registry_authorization = false;    // ANKA_ENABLE_REGISTRY_AUTHORIZATION (combined).
  bool enable_authorization = false;             // ANKA_ENABLE_AUTHORIZATION (registry alone).
  bool enable_resource_management = false;       // ANKA_ENABLE_RESOURCE_MANAGEMENT.

  std::string log_format = "text";  // text | json
  std::string log_level = "info";
  bool access_log = true;

  uint64_t header_bytes_max = 16 * 1024;
  uint64_t header_count_max = 100;
  uint64_t body_bytes_max = 8 * 1024 * 1024;
  uint64_t connections_max = 10'000;
  uint64_t header_timeout_ms = 10'000;
  uint64_t body_timeout_ms = 60'000;
  uint64_t idle_timeout_ms = 60'000;
  uint64_t shutdown_timeout_ms = 30'000;

  uint64_t snapshot_interval_events = 100'000;
  std::string ready_file;  // Written with the bound ports once listening (for scripts/tests).
};

// What Parse decided: run with the options, or exit with a code after printing text.
struct ParseOutcome {
  bool run = false;
  int exit_code = 0;
  std::string text;  // --help or --version output (stdout), or the error line (stderr).
  Options options;
};

// Parses argv and the environment. Never throws.
ParseOutcome ParseOptions(int argc, const char* const* argv);

// Checks combinations the parser cannot (HTTPS needs a certificate, the root token's length...).
Status ValidateOptions(const Options& options);

const char* RoleName(Role role);

}  // namespace cloister::cloisterd
