#include "api/cloisterd/envelope.h"

namespace cloister::cloisterd {

api::Response OkResponse(const std::string& body_json) {
  api::Response response;
  response.content_type = "application/json";
  response.body = R"({"status":"OK","message":"","body":)" + body_json + "}";
  return response;
}

api::Response StorageFailure(const Status& status) {
  return api::FailResponse(status.code() == StatusCode::kNoSpace ? 507 : 500,
                           "storage: " + status.message());
}

api::Response FailedReplyResponse(const engine::Reply& reply) {
  if (!reply.status.ok()) {
    return api::FailResponse(503, "the change could not be recorded: " + reply.status.message());
  }
  switch (reply.rejection) {
    case engine::Rejection::kForbidden:
      // The engine's reasons name no secret; they say what would be allowed.
      return api::FailResponse(403, reply.message.empty() ? "Forbidden" : reply.message);
    case engine::Rejection::kOverloaded:
      return api::FailResponse(503, reply.message);
    default:
      return api::FailResponse(200, reply.message);
  }
}

nlohmann::ordered_json PortForwardsJson(const std::vector<reducers::PortForward>& forwards) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const reducers::PortForward& forward : forwards) {
    list.push_back(nlohmann::ordered_json{{"guest_port", forward.guest_port},
                                          {"host_port", forward.host_port},
                                          {"protocol", forward.protocol},
                                          {"name", forward.name}});
  }
  return list;
}

}  // namespace cloister::cloisterd
