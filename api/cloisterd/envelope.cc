#include "api/cloisterd/envelope.h"

namespace cloister::cloisterd {

api::Response OkResponse(const std::string& body_json) {
  api::Response response;
  response.content_type = "application/json";
  response.body = R"({"status":"OK","message":"","body":)" + body_json + "}";
  return response;
}

api::Response FailedReplyResponse(const engine::Reply& reply) {
  if (!reply.status.ok()) {
    return api::FailResponse(503, "the change could not be recorded: " + reply.status.message());
  }
  switch (reply.rejection) {
    case engine::Rejection::kForbidden:
      return api::FailResponse(403, "Forbidden");
    case engine::Rejection::kOverloaded:
      return api::FailResponse(503, reply.message);
    default:
      return api::FailResponse(200, reply.message);
  }
}

}  // namespace cloister::cloisterd
