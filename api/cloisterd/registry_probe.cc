#include "api/cloisterd/registry_probe.h"

#include <cctype>
#include <utility>

#include "api/cloisterd/logging.h"
#include "engine/limits.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::json;

constexpr long kCallTimeoutMs = 5000;

std::string Text(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t Integer(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

std::string QueryEscape(const std::string& value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

// A failed read as a Status naming the call (the registry's message, never a credential).
Status CallFailed(const std::string& what, const Result<client::ControllerReply>& reply) {
  if (!reply.ok()) {
    return Status::IoError(what + ": " + reply.status().message());
  }
  return Status::IoError(what + ": HTTP " + std::to_string(reply->http_status) + " " +
                             reply->message.substr(0, 200));
}

}  // namespace

const char* RegistryProbe::StateName(State state) {
  switch (state) {
    case State::kRunning: return "Running";
    case State::kUnauthorized: return "Unauthorized";
    case State::kUnreachable: return "Unreachable";
    case State::kUnknown: break;
  }
  return "Unknown";
}

Result<std::unique_ptr<RegistryProbe>> RegistryProbe::Start(RegistryProbeOptions options) {
  Result<std::shared_ptr<client::ClientAuth>> auth =
      client::ClientAuth::Create(options.credentials);
  if (!auth.ok()) {
    // The client library names the join flags; here they are the ANKA_* settings.
    return Status::InvalidArgument("controller to registry credentials (ANKA_CLIENT_CERT, "
                                   "ANKA_API_KEY_*): " + auth.status().message());
  }
  std::unique_ptr<RegistryProbe> probe(new RegistryProbe(std::move(options), auth.value()));
  probe->worker_ = std::thread([p = probe.get()] { p->Run(); });
  return probe;
}

RegistryProbe::~RegistryProbe() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

void RegistryProbe::Follow(CatalogueSink sink) {
  const bool start = sink != nullptr;
  {
    std::lock_guard<std::mutex> lock(sink_mu_);
    sink_ = std::move(sink);
  }
  if (start) {
    ReadNow();
  }
}

void RegistryProbe::ReadNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    read_now_ = true;
  }
  cv_.notify_all();
}

client::ControllerClientOptions RegistryProbe::ClientOptions() const {
  client::ControllerClientOptions client_options;
  client_options.url = options_.url;
  client_options.insecure = options_.skip_tls_verification;
  client_options.cert_file = options_.credentials.cert_file;
  client_options.key_file = options_.credentials.cert_key_file;
  client_options.connect_timeout_ms = 3000;
  client_options.auth = auth_;
  return client_options;
}

Result<client::ControllerReply> RegistryProbe::Forward(const std::string& method,
                                                       const std::string& path_and_query,
                                                       long timeout_ms) const {
  client::ControllerClient registry(ClientOptions());
  return registry.Call(method, path_and_query, "", timeout_ms);
}

Result<engine::MirrorRegistryTemplates> RegistryProbe::ReadCatalogue(
    client::ControllerClient* registry) {
  Result<client::ControllerReply> list = registry->Call("GET", "/registry/v2/vm", "",
                                                        kCallTimeoutMs);
  if (!list.ok() || !list->ok || !list->body.is_array()) {
    return CallFailed("GET /registry/v2/vm", list);
  }
  if (list->body.size() > engine::kMirroredTemplatesMax) {
    return Status::IoError("the registry lists more than " +
                               std::to_string(engine::kMirroredTemplatesMax) + " templates");
  }
  engine::MirrorRegistryTemplates catalogue;
  std::map<std::string, CachedTemplate> next;
  for (const Json& item : list->body) {
    const std::string id = item.is_object() ? Text(item, "id") : "";
    if (id.empty()) {
      return Status::IoError("GET /registry/v2/vm: an entry without an id");
    }
    const std::string entry = item.dump();
    auto cached = cache_.find(id);
    if (cached != cache_.end() && cached->second.list_entry == entry) {
      catalogue.templates.push_back(cached->second.detail);
      next[id] = cached->second;  // A copy: cache_ stays whole if a later call fails.
      continue;
    }
    const std::string path = "/registry/vm?id=" + QueryEscape(id);
    Result<client::ControllerReply> detail = registry->Call("GET", path, "", kCallTimeoutMs);
    if (!detail.ok() || !detail->ok || !detail->body.is_object()) {
      return CallFailed("GET " + path, detail);
    }
    engine::MirroredTemplate t;
    t.template_id = id;
    t.name = Text(detail->body, "name");
    auto versions = detail->body.find("versions");
    if (versions != detail->body.end() && versions->is_array()) {
      for (const Json& v : *versions) {
        if (!v.is_object()) {
          continue;
        }
        t.tags.push_back({Text(v, "tag"), static_cast<int32_t>(Integer(v, "number")),
                          Text(v, "description"), Text(v, "manifest"), Integer(v, "created_ns")});
      }
    }
    catalogue.templates.push_back(t);
    next[id] = CachedTemplate{entry, std::move(t)};
  }
  cache_ = std::move(next);
  return catalogue;
}

void RegistryProbe::Run() {
  client::ControllerClient registry(ClientOptions());
  std::string last_failure;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    read_now_ = false;
    lock.unlock();
    Result<client::ControllerReply> reply =
        registry.Call("GET", "/registry/status", "", kCallTimeoutMs);
    State state = State::kUnreachable;
    if (reply.ok() && reply->ok) {
      state = State::kRunning;
    } else if (reply.ok() ? (reply->http_status == 401 || reply->http_status == 403)
                          : reply.status().code() == StatusCode::kInvalidArgument) {
      state = State::kUnauthorized;  // Refused, or the TAP handshake was (a wrong key).
    }
    state_.store(state);
    bool following = false;
    {
      std::lock_guard<std::mutex> sink_lock(sink_mu_);
      following = sink_ != nullptr;
    }
    if (following && state == State::kRunning) {
      // Read without the sink's lock (it may take a while), so Follow(nullptr) never waits
      // for the network; the read is dropped if following stopped meanwhile.
      Result<engine::MirrorRegistryTemplates> catalogue = ReadCatalogue(&registry);
      if (catalogue.ok()) {
        last_failure.clear();
        std::lock_guard<std::mutex> sink_lock(sink_mu_);
        if (sink_ != nullptr) {
          sink_(std::move(catalogue.value()));
        }
      } else if (catalogue.status().message() != last_failure) {
        last_failure = catalogue.status().message();
        LogWarn("registry catalogue not read; the template view stays as it was",
                {Field("registry", options_.url), Field("reason", last_failure)});
      }
    }
    lock.lock();
    cv_.wait_for(lock, options_.interval, [this] { return stop_ || read_now_; });
  }
}

}  // namespace cloister::cloisterd
