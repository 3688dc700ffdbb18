#include "node/controller_client.h"

#include <curl/curl.h>

#include <utility>

namespace cloister::node {
namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

void InitHttpClients() { curl_global_init(CURL_GLOBAL_DEFAULT); }

ControllerClient::ControllerClient(ControllerClientOptions options)
    : options_(std::move(options)), curl_(curl_easy_init()) {
  while (!options_.url.empty() && options_.url.back() == '/') {
    options_.url.pop_back();
  }
}

ControllerClient::~ControllerClient() {
  if (curl_ != nullptr) {
    curl_easy_cleanup(static_cast<CURL*>(curl_));
  }
}

Result<ControllerReply> ControllerClient::Call(const std::string& method,
                                               const std::string& path_and_query,
                                               const std::string& body, long timeout_ms) {
  CURL* curl = static_cast<CURL*>(curl_);
  if (curl == nullptr) {
    return Status::IoError("libcurl could not start");
  }
  curl_easy_reset(curl);
  const std::string url = options_.url + path_and_query;
  std::string response;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");  // No 100-continue round trip.
  if (options_.auth_headers) {
    for (const std::string& line : options_.auth_headers()) {
      headers = curl_slist_append(headers, line.c_str());
    }
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  if (!body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  } else if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  }
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  if (options_.insecure) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return Status::IoError(method + " " + options_.url + path_and_query.substr(0, 64) + ": " +
                           curl_easy_strerror(rc));
  }
  ControllerReply reply;
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  reply.http_status = static_cast<int>(status);
  nlohmann::json envelope = nlohmann::json::parse(response, nullptr, false);
  if (!envelope.is_object() || !envelope.contains("status")) {
    return Status::IoError("the controller answered " + method + " " + path_and_query.substr(0, 64) +
                           " with HTTP " + std::to_string(status) + " and no Anka envelope");
  }
  reply.ok = envelope.value("status", "") == "OK";
  reply.message = envelope.value("message", "");
  if (envelope.contains("body")) {
    reply.body = envelope["body"];
  }
  return reply;
}

}  // namespace cloister::node
