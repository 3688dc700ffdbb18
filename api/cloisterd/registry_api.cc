#include "api/cloisterd/registry_api.h"

#include <sys/statvfs.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>

#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "reducers/view_json.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

uint64_t TagSize(const reducers::Template& t, const reducers::TemplateTag& tag) {
  auto m = t.manifests.find(tag.digest);
  if (m == t.manifests.end()) {
    return 0;
  }
  uint64_t size = m->second.size;
  for (const reducers::RegistryReference& ref : m->second.references) {
    size += ref.size;
  }
  return size;
}

Json VersionJson(const reducers::Template& t, const reducers::TemplateTag& tag) {
  Json v;
  v["number"] = tag.version;
  v["tag"] = tag.tag;
  v["description"] = tag.description;
  v["creation_date"] = reducers::TimeRfc3339(tag.registered.time_ns);
  v["created_ns"] = tag.registered.time_ns;  // Exact, for a controller that follows (mirrors).
  v["manifest"] = tag.digest;
  Json images = Json::array();
  auto m = t.manifests.find(tag.digest);
  if (m != t.manifests.end() && !m->second.references.empty()) {
    v["config_file"] = m->second.references.front().digest;
    for (size_t i = 1; i < m->second.references.size(); i++) {
      images.push_back(m->second.references[i].digest);
    }
  }
  v["images"] = images;
  v["size"] = TagSize(t, tag);
  return v;
}

Json V2Item(const reducers::Template& t) {
  Json j;
  j["id"] = t.template_id;
  j["name"] = t.name;
  uint64_t size = 0;
  Json tags = Json::array();
  for (const reducers::TemplateTag& tag : t.tags) {
    tags.push_back(tag.tag);
    size += TagSize(t, tag);
  }
  j["size"] = size;
  j["tags"] = tags;
  j["latest_tag"] = t.tags.empty() ? "" : t.tags.back().tag;
  j["last_modified"] = reducers::TimeRfc3339(t.updated.time_ns);
  return j;
}

api::Response Fail(std::string message) { return api::FailResponse(200, message); }

}  // namespace

RegistryApi::RegistryApi(engine::Engine* engine, registry::BlobStore* blobs,
                         std::string storage_dir)
    : engine_(engine), blobs_(blobs), storage_dir_(std::move(storage_dir)) {}

const reducers::Template* RegistryApi::Find(const std::string& id) const {
  return reducers::FindTemplate(engine_->views(), id);
}

bool RegistryApi::Handle(const api::Request& request, Respond& respond) {
  const std::string& p = request.path;
  const std::string& m = request.method;
  const bool get = m == "GET" || m == "HEAD";
  if (p == "/registry/vm" && get) {
    List(request, false, std::move(respond));
  } else if ((p == "/registry/vm" || p == "/api/v1/registry/vm") && m == "DELETE") {
    // The controller's GET lives in controller_api (it filters by resource permissions).
    Remove(request, false, std::move(respond));
  } else if (p == "/registry/v2/vm" && get) {
    List(request, true, std::move(respond));
  } else if (p == "/registry/revert" || p == "/api/v1/registry/revert") {
    Remove(request, true, std::move(respond));
  } else if (p == "/registry/vm/info") {
    Info(request, std::move(respond));
  } else if (p == "/registry/disk" || p == "/api/v1/registry/disk") {
    Disk(std::move(respond));
  } else if (p == "/api/v1/registry/vm/distribute") {
    Distribute(request, std::move(respond));
  } else if (p == "/api/v1/registry/vm/remove") {
    RemoveFromNodes(request, std::move(respond));
  } else {
    return false;
  }
  return true;
}

void RegistryApi::List(const api::Request& request, bool v2, Respond respond) {
  const std::optional<std::string> id = QueryParam(request.query, "id");
  if (id.has_value()) {
    const reducers::Template* t = Find(*id);
    if (t == nullptr) {
      respond(Fail("VM not in the registry"));
      return;
    }
    Json j = V2Item(*t);
    Json versions = Json::array();
    for (const reducers::TemplateTag& tag : t->tags) {
      versions.push_back(VersionJson(*t, tag));
    }
    j["versions"] = versions;
    respond(OkResponse(j.dump()));
    return;
  }
  Json list = Json::array();
  for (const auto& [key, t] : engine_->views().templates.templates) {
    list.push_back(v2 ? V2Item(t) : Json{{t.template_id, t.name}});
  }
  respond(OkResponse(list.dump()));
}

void RegistryApi::Remove(const api::Request& request, bool revert, Respond respond) {
  if (request.method != "DELETE") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  engine::RemoveTemplateContent remove;
  remove.mode = revert ? engine::RemoveTemplateContent::Mode::kRevert
                       : engine::RemoveTemplateContent::Mode::kDeleteTemplate;
  remove.template_ref = QueryParam(request.query, "id").value_or("");
  if (remove.template_ref.empty()) {
    respond(api::FailResponse(400, "id is required"));
    return;
  }
  remove.tag = QueryParam(request.query, "tag").value_or("");
  std::optional<std::string> number = QueryParam(request.query, "version");
  if (!number) {
    number = QueryParam(request.query, "number");
  }
  if (number) {
    char* end = nullptr;
    const long value = std::strtol(number->c_str(), &end, 10);
    if (number->empty() || *end != '\0' || value < 0 || value > INT32_MAX) {
      respond(api::FailResponse(400, "version must be a whole number"));
      return;
    }
    remove.version = static_cast<int32_t>(value);
  }
  if (!remove.tag.empty() && remove.version.has_value()) {
    respond(api::FailResponse(400, "give tag or version, not both"));
    return;
  }
  engine_->Submit(*principal_, std::move(remove), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      respond(FailedReplyResponse(reply));
                      return;
                    }
                    Json j;
                    j["id"] = reply.ids.at(0);
                    j["removed_tags"] = std::vector<std::string>(reply.ids.begin() + 1,
                                                                 reply.ids.end());
                    respond(OkResponse(j.dump()));
                  });
}

void RegistryApi::Info(const api::Request& request, Respond respond) {
  const reducers::Template* t = Find(QueryParam(request.query, "id").value_or(""));
  if (t == nullptr) {
    respond(Fail("VM not in the registry"));
    return;
  }
  const std::string want = QueryParam(request.query, "tag").value_or("");
  const reducers::TemplateTag* tag = nullptr;
  for (const reducers::TemplateTag& one : t->tags) {
    if (want.empty() || one.tag == want) {
      tag = &one;  // Without a tag: the newest.
    }
  }
  if (tag == nullptr) {
    respond(Fail(want.empty() ? "the template has no tags" : "No such tag " + want));
    return;
  }
  auto m = t->manifests.find(tag->digest);
  if (m == t->manifests.end() || m->second.references.empty() || blobs_ == nullptr) {
    respond(Fail("the tag has no VM configuration"));
    return;
  }
  const reducers::RegistryReference& config = m->second.references.front();
  Result<std::string> path = blobs_->Path(config.digest);
  if (!path.ok() || config.size > 4 * 1024 * 1024) {
    respond(Fail("the VM configuration is not readable"));
    return;
  }
  std::ifstream in(*path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Json config_json = Json::parse(text, nullptr, false);
  if (config_json.is_discarded()) {
    respond(Fail("the VM configuration is not JSON"));
    return;
  }
  Json j;
  j["id"] = t->template_id;
  j["name"] = t->name;
  j["tag"] = tag->tag;
  j["number"] = tag->version;
  j["config"] = config_json;
  respond(OkResponse(j.dump()));
}

void RegistryApi::Disk(Respond respond) {
  struct statvfs fs {};
  if (::statvfs(storage_dir_.c_str(), &fs) != 0) {
    respond(api::FailResponse(500, "the registry's storage cannot be read"));
    return;
  }
  Json j;
  j["total"] = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  j["free"] = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  respond(OkResponse(j.dump()));
}

void RegistryApi::Distribute(const api::Request& request, Respond respond) {
  const std::string& m = request.method;
  if (m == "GET" || m == "HEAD") {
    const std::optional<std::string> id = QueryParam(request.query, "id");
    Json list = Json::array();
    for (const auto& [key, d] : engine_->views().distributions.requests) {
      if (id && *id != key) {
        continue;
      }
      Json j;
      j["id"] = d.request_id;
      j["action"] = d.action;
      j["template_id"] = d.template_id;
      j["tag"] = d.tag;
      Json nodes = Json::array();
      for (const auto& [node_id, n] : d.nodes) {
        nodes.push_back({{"node_id", node_id}, {"status", n.status}, {"progress", n.progress},
                         {"message", n.message}});
      }
      j["nodes"] = nodes;
      j["created"] = reducers::TimeRfc3339(d.created.time_ns);
      list.push_back(j);
    }
    if (id && list.empty()) {
      respond(Fail("Not found"));
      return;
    }
    respond(OkResponse(id ? list.at(0).dump() : list.dump()));
    return;
  }
  if (m == "DELETE") {
    engine::ClearDistributions clear;
    if (std::optional<std::string> id = QueryParam(request.query, "id")) {
      clear.request_ids.push_back(*id);
    }
    engine_->Submit(*principal_, std::move(clear), request.id,
                    [respond = std::move(respond)](engine::Reply reply) {
                      respond(reply.ok() ? OkResponse(Json(reply.ids).dump())
                                         : FailedReplyResponse(reply));
                    });
    return;
  }
  if (m != "POST") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) {
    return;
  }
  Fields fields(*body);
  engine::RequestDistribution distribute;
  distribute.action = "distribute";
  std::string id;
  if (!fields.String("template_id", &distribute.template_id) || !fields.String("id", &id) ||
      !fields.String("tag", &distribute.tag) ||
      !fields.Strings("node_ids", &distribute.node_ids)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (distribute.template_id.empty()) {
    distribute.template_id = id;
  }
  if (distribute.template_id.empty()) {
    respond(api::FailResponse(400, "template_id is required"));
    return;
  }
  engine_->Submit(*principal_, std::move(distribute), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? OkResponse(Json{{"request_id", reply.ids.at(0)}}.dump())
                                       : FailedReplyResponse(reply));
                  });
}

void RegistryApi::RemoveFromNodes(const api::Request& request, Respond respond) {
  if (request.method != "DELETE") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  engine::RequestDistribution remove;
  remove.action = "remove";
  remove.template_id = QueryParam(request.query, "id").value_or("");
  remove.tag = QueryParam(request.query, "tag").value_or("");
  if (std::optional<std::string> node = QueryParam(request.query, "node_id")) {
    remove.node_ids.push_back(*node);
  }
  if (remove.template_id.empty()) {
    respond(api::FailResponse(400, "id is required"));
    return;
  }
  engine_->Submit(*principal_, std::move(remove), request.id,
                  [this, respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      respond(FailedReplyResponse(reply));
                      return;
                    }
                    const auto& requests = engine_->views().distributions.requests;
                    auto d = requests.find(reply.ids.at(0));
                    Json nodes = Json::array();
                    if (d != requests.end()) {
                      for (const auto& [node_id, n] : d->second.nodes) {
                        nodes.push_back(node_id);
                      }
                    }
                    Json j;
                    j["requests_sent"] = nodes.size();
                    j["node_ids"] = nodes;
                    j["request_id"] = reply.ids.at(0);
                    respond(OkResponse(j.dump()));
                  });
}

}  // namespace cloister::cloisterd
