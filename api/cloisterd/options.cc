#include "api/cloisterd/options.h"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <map>

#include "api/cloisterd/version.h"
#include "engine/config_keys.h"

namespace cloister::cloisterd {
namespace {

constexpr size_t kRootTokenBytesMin = 10;

void AddOptions(CLI::App* app, Options* o, std::string* role) {
  app->add_option("--data", o->data_dir, "Data directory (the event log and snapshots)")
      ->envname("CLOISTER_DATA")->capture_default_str();
  app->add_option("--role", *role, "Which servers to run: all, controller or registry")
      ->envname("CLOISTER_ROLE")->capture_default_str()
      ->check(CLI::IsMember({"all", "controller", "registry"}));
  app->add_option("--listen-addr", o->listen_addr, "Controller listen address")
      ->envname("ANKA_LISTEN_ADDR")->capture_default_str();
  app->add_option("--registry-listen-address", o->registry_listen_address,
                  "Registry listen address")
      ->envname("ANKA_REGISTRY_LISTEN_ADDRESS")->capture_default_str();
  app->add_option("--anka-registry", o->registry_url,
                  "Registry URL the controller reports (default: this process's registry)")
      ->envname("ANKA_ANKA_REGISTRY");
  app->add_flag("--use-https", o->use_https, "Serve HTTPS on both listeners")
      ->envname("ANKA_USE_HTTPS");
  app->add_option("--server-cert", o->server_cert, "Server certificate (PEM, may hold a chain)")
      ->envname("ANKA_SERVER_CERT");
  app->add_option("--server-key", o->server_key, "Server private key (PEM, not encrypted)")
      ->envname("ANKA_SERVER_KEY");
  app->add_option("--min-tls-version", o->min_tls_version, "tls_1.0, tls_1.1, tls_1.2 or tls_1.3")
      ->envname("ANKA_MIN_TLS_VERSION")->capture_default_str();
  app->add_option("--max-tls-version", o->max_tls_version, "tls_1.0, tls_1.1, tls_1.2 or tls_1.3")
      ->envname("ANKA_MAX_TLS_VERSION")->capture_default_str();
  app->add_option("--cipher-suites", o->cipher_suites,
                  "Comma-separated Go-style suite names (default: ECDHE with AEAD ciphers)")
      ->envname("ANKA_CIPHER_SUITES");
  app->add_flag("--enable-auth", o->enable_auth, "Require authentication")
      ->envname("ANKA_ENABLE_AUTH");
  app->add_option("--root-token", o->root_token, "Root token (at least 10 characters)")
      ->envname("ANKA_ROOT_TOKEN");
  app->add_flag("--enable-api-keys", o->enable_api_keys,
                "User API keys and the TAP handshake (needs --enable-auth)")
      ->envname("ANKA_ENABLE_API_KEYS");
  app->add_option("--api-keys-session-ttl", o->api_keys_session_ttl,
                  "How long a TAP session lives (a duration: 90s, 5m, 1h; the "
                  "api_keys_session_ttl setting, when set, wins)")
      ->envname("ANKA_API_KEYS_SESSION_TTL")->capture_default_str();
  app->add_option("--tap-secret-ttl", o->tap_secret_ttl,
                  "How long the secret of a /tap/v1/hand may be shaken (single use)")
      ->envname("CLOISTER_TAP_SECRET_TTL")->capture_default_str();
  app->add_option("--ca-cert", o->ca_cert,
                  "CA (PEM) whose client certificates authenticate: user CN=, groups O= "
                  "(also read from ANKA_ROOT_CERT)")
      ->envname("ANKA_CA_CERT");
  app->add_option("--crl", o->crl,
                  "CRL (PEM) of that CA; reloaded when the file changes, each load an event")
      ->envname("ANKA_CRL");
  app->add_flag("--enable-ingress-nginx", o->enable_ingress_nginx,
                "Trust Ssl-Client-Verify / Ssl-Client-Cert from the proxies below")
      ->envname("ANKA_ENABLE_INGRESS_NGINX");
  app->add_option("--trusted-proxies", o->trusted_proxies,
                  "Comma-separated CIDRs whose ingress certificate headers are believed")
      ->envname("CLOISTER_TRUSTED_PROXIES")->capture_default_str();
  app->add_option("--client-cert", o->client_cert,
                  "Controller to registry: client certificate (PEM)")
      ->envname("ANKA_CLIENT_CERT");
  app->add_option("--client-cert-key", o->client_cert_key,
                  "Controller to registry: its private key (PEM)")
      ->envname("ANKA_CLIENT_CERT_KEY");
  app->add_option("--api-key-id", o->api_key_id, "Controller to registry: UAK id (TAP)")
      ->envname("ANKA_API_KEY_ID");
  app->add_option("--api-key-string", o->api_key_string,
                  "Controller to registry: the UAK private key itself")
      ->envname("ANKA_API_KEY_STRING");
  app->add_option("--api-key-file", o->api_key_file,
                  "Controller to registry: a file holding the UAK private key")
      ->envname("ANKA_API_KEY_FILE");
  app->add_flag("--skip-tls-verification", o->skip_tls_verification,
                "Controller to registry: do not verify the registry's certificate")
      ->envname("ANKA_SKIP_TLS_VERIFICATION");
  app->add_option("--registry-interval-ms", o->registry_interval_ms,
                  "Controller to registry: how often to check its status and re-read its "
                  "templates (which the controller's template view follows)")
      ->envname("CLOISTER_REGISTRY_INTERVAL_MS")->capture_default_str()
      ->check(CLI::Range(100, 3600000));
  app->add_flag("--enable-controller-authorization", o->enable_controller_authorization,
                "Permission groups gate the controller API (needs --enable-auth)")
      ->envname("ANKA_ENABLE_CONTROLLER_AUTHORIZATION");
  app->add_flag("--enable-registry-authorization", o->enable_registry_authorization,
                "Permission groups gate the registry API of the combined process")
      ->envname("ANKA_ENABLE_REGISTRY_AUTHORIZATION");
  app->add_flag("--enable-authorization", o->enable_authorization,
                "Permission groups gate the registry API (--role registry)")
      ->envname("ANKA_ENABLE_AUTHORIZATION");
  app->add_flag("--enable-resource-management", o->enable_resource_management,
                "Node and template grants limit what groups may touch (needs authorization)")
      ->envname("ANKA_ENABLE_RESOURCE_MANAGEMENT");
  app->add_flag("--init", o->init,
                "Make a root token, print it once, keep only its SHA-256 in the data "
                "directory (root_token.sha256; used when ANKA_ENABLE_AUTH=true and "
                "ANKA_ROOT_TOKEN is unset), and exit");
}

void AddOperationalOptions(CLI::App* app, Options* o) {
  app->add_option("--log-format", o->log_format, "text or json (JSON lines)")
      ->envname("CLOISTER_LOG_FORMAT")->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app->add_option("--log-level", o->log_level, "debug, info, warn or error")
      ->envname("CLOISTER_LOG_LEVEL")->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app->add_option("--access-log", o->access_log, "One log line per request (true or false)")
      ->envname("CLOISTER_ACCESS_LOG")->capture_default_str();
  app->add_option("--http-header-bytes-max", o->header_bytes_max,
                  "Largest request head (request line and headers); over it: 431")
      ->envname("CLOISTER_HTTP_HEADER_BYTES_MAX")->capture_default_str()->check(CLI::Range(256, 1 << 20));
  app->add_option("--http-header-count-max", o->header_count_max,
                  "Most headers in one request; over it: 431")
      ->envname("CLOISTER_HTTP_HEADER_COUNT_MAX")->capture_default_str()->check(CLI::Range(8, 10000));
  app->add_option("--http-body-bytes-max", o->body_bytes_max, "Largest request body; over it: 413")
      ->envname("CLOISTER_HTTP_BODY_BYTES_MAX")->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  app->add_option("--http-connections-max", o->connections_max,
                  "Most open connections per listener; over it: 503 and close")
      ->envname("CLOISTER_HTTP_CONNECTIONS_MAX")->capture_default_str()->check(CLI::Range(1, 1000000));
  app->add_option("--http-header-timeout-ms", o->header_timeout_ms,
                  "Time to receive a request head; over it: 408 and close")
      ->envname("CLOISTER_HTTP_HEADER_TIMEOUT_MS")->capture_default_str()->check(CLI::Range(100, 3600000));
  app->add_option("--http-body-timeout-ms", o->body_timeout_ms,
                  "Time to receive a request body; over it: 408 and close")
      ->envname("CLOISTER_HTTP_BODY_TIMEOUT_MS")->capture_default_str()->check(CLI::Range(100, 3600000));
  app->add_option("--http-idle-timeout-ms", o->idle_timeout_ms,
                  "Idle keep-alive connections are closed after this")
      ->envname("CLOISTER_HTTP_IDLE_TIMEOUT_MS")->capture_default_str()->check(CLI::Range(100, 3600000));
  app->add_option("--shutdown-timeout-ms", o->shutdown_timeout_ms,
                  "On SIGTERM/SIGINT, how long requests in flight may take to finish")
      ->envname("CLOISTER_SHUTDOWN_TIMEOUT_MS")->capture_default_str()->check(CLI::Range(0, 3600000));
  app->add_option("--snapshot-interval-events", o->snapshot_interval_events,
                  "Write a snapshot of the views every N events (0: only at shutdown)")
      ->envname("CLOISTER_SNAPSHOT_INTERVAL_EVENTS")->capture_default_str();
  app->add_option("--ready-file", o->ready_file,
                  "Once listening, write the bound ports here (controller=PORT, registry=PORT)")
      ->envname("CLOISTER_READY_FILE");
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAll: return "all";
    case Role::kController: return "controller";
    case Role::kRegistry: return "registry";
  }
  return "all";
}

ParseOutcome ParseOptions(int argc, const char* const* argv) {
  ParseOutcome outcome;
  CLI::App app("cloisterd: the cloister controller and registry (Anka Build Cloud API)",
               "cloisterd");
  app.set_version_flag("--version", std::string(kVersion));
  app.get_formatter()->column_width(40);
  std::string role = "all";
  AddOptions(&app, &outcome.options, &role);
  AddOperationalOptions(&app, &outcome.options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    outcome.text = app.help();
    return outcome;
  } catch (const CLI::CallForVersion&) {
    outcome.text = std::string(kVersion) + "\n";
    return outcome;
  } catch (const CLI::ParseError& e) {
    outcome.exit_code = 2;
    outcome.text = std::string("cloisterd: ") + e.what() + " (see cloisterd --help)\n";
    return outcome;
  }
  if (outcome.options.ca_cert.empty()) {
    if (const char* alias = std::getenv("ANKA_ROOT_CERT"); alias != nullptr) {
      outcome.options.ca_cert = alias;
      outcome.options.ca_cert_setting = "ANKA_ROOT_CERT";
    }
  }
  outcome.options.role = role == "controller" ? Role::kController
                         : role == "registry" ? Role::kRegistry
                                              : Role::kAll;
  Status valid = ValidateOptions(outcome.options);
  if (!valid.ok()) {
    outcome.exit_code = 2;
    outcome.text = "cloisterd: " + valid.message() + "\n";
    return outcome;
  }
  outcome.run = true;
  return outcome;
}

Status ValidateOptions(const Options& o) {
  if (o.use_https && o.server_cert.empty()) {
    return Status::InvalidArgument("ANKA_USE_HTTPS is true but ANKA_SERVER_CERT is not set");
  }
  if (o.use_https && o.server_key.empty()) {
    return Status::InvalidArgument("ANKA_USE_HTTPS is true but ANKA_SERVER_KEY is not set");
  }
  if (!o.root_token.empty() && o.root_token.size() < kRootTokenBytesMin) {
    return Status::InvalidArgument("ANKA_ROOT_TOKEN must be at least 10 characters");
  }
  if (!o.ca_cert.empty() && !o.enable_auth) {
    return Status::InvalidArgument(o.ca_cert_setting + " is set but ANKA_ENABLE_AUTH is not true");
  }
  if (!o.ca_cert.empty() && !o.use_https && !o.enable_ingress_nginx) {
    return Status::InvalidArgument(
        o.ca_cert_setting + " (certificate authentication) needs ANKA_USE_HTTPS=true, or "
        "ANKA_ENABLE_INGRESS_NGINX=true behind a proxy that terminates TLS");
  }
  if (!o.crl.empty() && o.ca_cert.empty()) {
    return Status::InvalidArgument("ANKA_CRL is set but ANKA_CA_CERT is not");
  }
  if (o.enable_ingress_nginx && o.ca_cert.empty()) {
    return Status::InvalidArgument(
        "ANKA_ENABLE_INGRESS_NGINX=true needs ANKA_CA_CERT: forwarded certificates are still "
        "checked against the CA");
  }
  const bool authorization = o.enable_controller_authorization ||
                             o.enable_registry_authorization || o.enable_authorization;
  if (authorization && !o.enable_auth) {
    return Status::InvalidArgument("authorization (ANKA_ENABLE_*AUTHORIZATION) needs "
                                   "ANKA_ENABLE_AUTH=true");
  }
  if (o.enable_resource_management && !authorization) {
    return Status::InvalidArgument(
        "ANKA_ENABLE_RESOURCE_MANAGEMENT=true needs authorization "
        "(ANKA_ENABLE_CONTROLLER_AUTHORIZATION or the registry's)");
  }
  if (o.enable_api_keys && !o.enable_auth) {
    return Status::InvalidArgument("ANKA_ENABLE_API_KEYS=true needs ANKA_ENABLE_AUTH=true");
  }
  const std::pair<const char*, const std::string*> durations[] = {
      {"ANKA_API_KEYS_SESSION_TTL", &o.api_keys_session_ttl},
      {"CLOISTER_TAP_SECRET_TTL", &o.tap_secret_ttl}};
  for (const auto& [name, value] : durations) {
    if (engine::ParseDurationSeconds(*value) <= 0) {
      return Status::InvalidArgument(std::string(name) + " must be a positive duration such as "
                                     "90s, 5m or 1h, not '" + value->substr(0, 32) + "'");
    }
  }
  if (o.data_dir.empty()) {
    return Status::InvalidArgument("--data must not be empty");
  }
  return Status::Ok();
}

}  // namespace cloister::cloisterd
