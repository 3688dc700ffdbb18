// Routes: the Anka API endpoints of this issue, on top of the engine's views and commands.
//
// Responses use the Anka envelope {"status":"OK"|"FAIL","message":"...","body":...}. A domain
// failure (a Rejection) is HTTP 200 with "FAIL" and the reason, because Anka's clients read the
// envelope, not the status code. A malformed request (a body that is not JSON, a field of the
// wrong type) is 400 with "FAIL" naming the field. An unknown path is 404; a known path with
// another method is 405. Request bodies are parsed as JSON whatever their Content-Type says.
//
// Threading: everything runs on the event-loop thread that owns the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "api/cloisterd/auth.h"
#include "api/cloisterd/auth_api.h"
#include "api/cloisterd/permissions_api.h"
#include "api/cloisterd/policy_api.h"
#include "engine/authorization.h"
#include "api/cloisterd/certificates.h"
#include "api/cloisterd/registry_probe.h"
#include "api/cloisterd/route_table.h"
#include "api/cloisterd/tap.h"
#include "api/cloisterd/controller_api.h"
#include "api/cloisterd/envelope.h"
#include "api/cloisterd/node_api.h"
#include "api/cloisterd/file_api.h"
#include "api/cloisterd/log_api.h"
#include "api/cloisterd/oci_api.h"
#include "api/cloisterd/registry_api.h"
#include "api/cloisterd/options.h"
#include "api/http_types.h"
#include "engine/engine.h"

namespace cloister::cloisterd {

using Respond = std::function<void(api::Response)>;


class Routes {
 public:
  // root_token: the digest requests must match (nullopt: authentication off). tap: API keys and
  // sessions (nullptr: off). clock: wall time for expiry checks.
  Routes(const Options& options, engine::Engine* engine, engine::Clock* clock,
         std::optional<TokenDigest> root_token, Tap* tap)
      : options_(options),
        engine_(engine),
        clock_(clock),
        tap_(tap),
        auth_(options.enable_auth, root_token),
        controller_(engine),
        node_api_(engine),
        auth_api_(engine, tap),
        authz_(&engine->views()),
        permissions_api_(engine, &authz_),
        policy_api_(engine),
        registry_api_(engine, nullptr, options.data_dir) {
    auth_.SetTap(tap);
    // Each API reads the principal of the request being handled from here (no copies).
    controller_.SetPrincipal(&principal_);
    node_api_.SetPrincipal(&principal_);
    node_api_.SetRegistryUrl([this] { return RegistryAddress(); });
    auth_api_.SetPrincipal(&principal_);
    permissions_api_.SetPrincipal(&principal_);
    policy_api_.SetPrincipal(&principal_);
    registry_api_.SetPrincipal(&principal_);
    permissions_api_.SetSwitches(ControllerSwitches());
    if (ControllerSwitches().resource_management) {
      controller_.SetResourceManagement(
          &authz_, ControllerSwitches(),
          [this](const api::Request& request, const engine::RecordAccessDenied& denied,
                 std::string message, Respond& respond) {
            Deny(request, denied, std::move(message), respond);
          });
    }
  }

  // Answers request through respond, now or (for a change) once it is durable.
  void Handle(Listener listener, api::Request request, Respond respond);

  // api::Handler::StreamBody for a listener: blob uploads on the registry listener stream to
  // disk once the request's credentials and permission pass; everything else is buffered.
  std::shared_ptr<api::BodySink> StreamBody(Listener listener, const api::Request& head,
                                            std::optional<api::Response>* reject);

  // The registry's blob storage and log files: enable the OCI data plane (/v2/), the file
  // server (/file) and the log server (/log...) on the registry listener. Both must outlive the
  // routes.
  void SetBlobStore(registry::BlobStore* blobs, registry::LogStore* logs,
                    OciApi::Offload offload);

  // Client certificates (see Authenticator::SetCertificates). An expired CRL makes /readyz fail.
  void SetCertificates(const CertificateAuthority* ca, const TrustedProxies* ingress) {
    ca_ = ca;
    auth_.SetCertificates(ca, ingress, &engine_->views());
  }

  // A separate registry this controller follows (--role controller with ANKA_ANKA_REGISTRY):
  // its state for /api/v1/status, and the registry that DELETE /api/v1/registry/vm, DELETE
  // /api/v1/registry/revert and GET /api/v1/registry/disk are forwarded to (on offload's
  // threads) once the caller is authorized here. nullptr: none is probed.
  void SetRegistryProbe(RegistryProbe* probe, OciApi::Offload offload) {
    registry_probe_ = probe;
    forward_offload_ = std::move(offload);
  }

  // While draining for shutdown /readyz answers 503 so load balancers stop sending.
  void SetDraining() {
    draining_ = true;
    controller_.Stop();
    node_api_.Stop();
  }

  // Every second: scheduler pass, heartbeat timeouts, long-poll deadlines.
  void Tick() {
    if (tap_ != nullptr) tap_->Tick(clock_->NowNs());
    if (oci_ != nullptr) oci_->Tick(clock_->NowNs());
    if (logs_ != nullptr) logs_->Tick();
    if (options_.role == Role::kRegistry) {
      return;  // A standalone registry schedules no VMs and serves no nodes.
    }
    controller_.Tick();
    node_api_.Tick();
  }

  // After every applied command: long-polls with news are answered.
  void OnApplied() { node_api_.OnApplied(); }

  // The registry URL status reports when neither ANKA_ANKA_REGISTRY nor the registry_address
  // setting names one: this process's own registry listener.
  void SetOwnRegistryUrl(std::string url) {
    own_registry_url_ = std::move(url);
    status_cache_ = {};
  }

 private:
  void Status(Respond respond);
  // The registry the controller uses: the registry_address setting, else ANKA_ANKA_REGISTRY,
  // else this process's own registry listener.
  std::string RegistryAddress() const;
  void RegistryStatus(Respond respond);
  // With a followed registry: answers a request that acts on the registry's storage by asking
  // the registry (see SetRegistryProbe); false leaves respond untouched.
  bool ForwardToRegistry(const api::Request& request, Respond& respond);
  void GetConfig(Respond respond);
  void PutConfig(const api::Request& request, Respond respond);
  // Authenticates request; false once it has answered it (401 or 429).
  bool Admit(const api::Request& request, Respond& respond);
  // The access route demands of the principal just admitted; false once it has answered 403
  // (and recorded an AccessDenied event).
  bool Permit(const api::Request& request, const RouteEntry& route, Respond& respond);
  // Answers 403 with message and records denied (method, path and source filled in here).
  void Deny(const api::Request& request, engine::RecordAccessDenied denied, std::string message,
            Respond& respond);
  // The authorization switches of a component, from the options.
  engine::AuthzSwitches ControllerSwitches() const;
  engine::AuthzSwitches Switches(engine::Component component) const;
  // Records a failed authentication (an event) unless the source or the claimed key id is over
  // its failure limit, in which case it answers 429 itself and returns false. On true the
  // caller answers (401).
  bool RecordFailure(const api::Request& request, const std::string& claimed,
                     const std::string& reason, fb::AuthMethod method, Respond& respond);

  const Options& options_;
  engine::Engine* engine_;
  engine::Clock* clock_;
  Tap* tap_;
  const CertificateAuthority* ca_ = nullptr;
  RegistryProbe* registry_probe_ = nullptr;
  OciApi::Offload forward_offload_;
  Authenticator auth_;
  FailureLimiter failures_;
  engine::Principal principal_ = engine::Principal::Anonymous();  // Of the request in Handle.
  ControllerApi controller_;
  NodeApi node_api_;
  AuthApi auth_api_;
  engine::Authorization authz_;
  PermissionsApi permissions_api_;
  PolicyApi policy_api_;
  RegistryApi registry_api_;
  std::unique_ptr<OciApi> oci_;  // With a blob store (SetBlobStore).
  std::unique_ptr<FileApi> files_;
  std::unique_ptr<LogApi> logs_;
  bool draining_ = false;
  std::string own_registry_url_;
  // Serialised bodies, valid while the views' seq is the one recorded: both derive only from
  // the config view and fixed options, and status is what monitors and plugins poll.
  struct CachedBody {
    uint64_t seq = UINT64_MAX;
    std::string json;
  };
  CachedBody status_cache_;
  RegistryProbe::State status_registry_ = RegistryProbe::State::kUnknown;  // In status_cache_.
  CachedBody config_cache_;
};


}  // namespace cloister::cloisterd
