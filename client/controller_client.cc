#include "client/controller_client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <cstring>
#include <utility>

#include "client/url_text.h"

namespace cloister::client {
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

Result<RawReply> ControllerClient::Exchange(const std::string& method,
                                            const std::string& path_and_query,
                                            const std::string& body,
                                            const std::vector<std::string>& header_lines,
                                            long timeout_ms) {
  CURL* curl = static_cast<CURL*>(curl_);
  if (curl == nullptr) {
    return Status::IoError("libcurl could not start");
  }
  curl_easy_reset(curl);
  const std::string url = options_.url + path_and_query;
  RawReply reply;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");  // No 100-continue round trip.
  for (const std::string& line : header_lines) {
    headers = curl_slist_append(headers, line.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
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
  if (!options_.cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.cert_file.c_str());
    if (!options_.key_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
      curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.key_file.c_str());
    }
  }
  const CURLcode rc = curl_easy_perform(curl);
  // The list holds the Authorization header: wipe it before it is freed.
  for (curl_slist* item = headers; item != nullptr; item = item->next) {
    OPENSSL_cleanse(item->data, std::strlen(item->data));
  }
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    // The URL as configured may carry user info, and a query may carry anything: neither is
    // shown.
    return Status::IoError(method + " " + UrlForMessage(url) + ": " + curl_easy_strerror(rc));
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  reply.http_status = static_cast<int>(status);
  return reply;
}

Result<ControllerReply> ControllerClient::Call(const std::string& method,
                                               const std::string& path_and_query,
                                               const std::string& body, long timeout_ms) {
  const RawPost post = [this](const std::string& path, const std::string& json_body) {
    return Exchange("POST", path, json_body, {}, options_.auth->tap_timeout_ms());
  };
  Result<RawReply> raw = Status::IoError("not sent");
  // Twice at most: once more after a 401 that made auth drop its TAP session.
  for (int attempt = 0; attempt < 2; attempt++) {
    Result<std::vector<std::string>> headers = std::vector<std::string>{};
    if (options_.auth != nullptr) {
      headers = options_.auth->Headers(post);
      if (!headers.ok()) {
        return headers.status();
      }
    }
    raw = Exchange(method, path_and_query, body, *headers, timeout_ms);
    if (!raw.ok()) {
      return raw.status();
    }
    if (raw->http_status != 401 || options_.auth == nullptr || attempt > 0 ||
        !options_.auth->Invalidate(*headers)) {
      break;
    }
  }
  ControllerReply reply;
  reply.http_status = raw->http_status;
  nlohmann::json envelope = nlohmann::json::parse(raw->body, nullptr, false);
  if (!envelope.is_object() || !envelope.contains("status")) {
    return Status::IoError("the controller answered " + method + " " +
                           path_and_query.substr(0, 64) + " with HTTP " +
                           std::to_string(reply.http_status) + " and no Anka envelope");
  }
  reply.ok = envelope.value("status", "") == "OK";
  reply.message = envelope.value("message", "");
  if (envelope.contains("body")) {
    reply.body = envelope["body"];
  }
  return reply;
}

}  // namespace cloister::client
