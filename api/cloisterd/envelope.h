// The Anka envelope for cloisterd's answers, and how an engine reply becomes one.
//
// {"status":"OK","message":"","body":<json>} for success. Domain failures (a Rejection) are
// HTTP 200 with "FAIL" and the reason, because Anka's clients read the envelope, not the status
// code; the rejections about the caller (forbidden: 403) or the server (overloaded: 503) and a
// failed append (503: nothing was recorded, retrying later is right) get their HTTP meaning.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/http_types.h"
#include "engine/engine.h"
#include "reducers/views.h"

namespace cloister::cloisterd {

// {"status":"OK","message":"","body":<body_json>} as a 200 application/json response.
api::Response OkResponse(const std::string& body_json);

// A storage failure of the registry's files in the envelope: 507 when the disk is full, else 500.
api::Response StorageFailure(const Status& status);

// The answer for a reply that is not ok(): storage failure or rejection.
api::Response FailedReplyResponse(const engine::Reply& reply);

// [{guest_port, host_port, protocol, name}], as the public API and the node protocol show them.
nlohmann::ordered_json PortForwardsJson(const std::vector<reducers::PortForward>& forwards);

}  // namespace cloister::cloisterd
