// Views as JSON for people (the replay tool, debugging): one object per view, and what changed
// between two points of the log.
//
// ViewsJson(views, "all"):
//   {"seq":12,"hash":"<64 hex>",
//    "config":{"<key>":{"value":"true","changed":{"seq":1,"time":"2026-11-24T12:00:00.003Z"}}},
//    "nodes":{"<node_id>":{"node_id":...,"state":"Active",...,"joined":{...},"updated":{...}}},
//    "node_groups":{"<group_id>":{...}},
//    "vm_instances":{"<instance_id>":{...,"state":"Started",...}},
//    "templates":{"<template_id>":{...,"tags":[{"tag":"v1","version":0,...}]}},
//    "save_images":{"<request_id>":{...,"status":"pending",...}}}
// With a single view name only that view's key appears (after seq and hash). Entities are keyed by
// id in id order, fields appear in declaration order (views.h), enums are their names
// ("Unknown(N)" for a value this build does not know), times are RFC 3339 UTC with nanoseconds,
// and a secret config entry's value is "<secret>": neither the value (never logged) nor its
// digest is ever shown.
//
// DiffJson(a, b): {"seq_from":a.seq,"seq_to":b.seq, then per view that changed:
//   "<view>":{"added":{id:entity},"removed":{id:entity},
//             "changed":{id:{"before":{changed fields},"after":{changed fields}}}}}
// Views with no change, and empty added/removed/changed groups, are left out.
//
// Strings are copied as they are, whatever bytes an event held; DumpJson writes ill-formed UTF-8
// as U+FFFD so that the output is always valid JSON. Nothing here throws except std::bad_alloc.
//
// Pure and thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "reducers/views.h"

namespace cloister::reducers {

using Json = nlohmann::ordered_json;

inline constexpr std::string_view kAllViews = "all";

// True for a name in kViewNames or "all".
bool IsViewName(std::string_view name);

// "config, nodes, node_groups, vm_instances, templates, save_images, all": for messages and help.
std::string ViewNameList();

// The views named by view (a kViewNames entry or "all"). Precondition: IsViewName(view).
Json ViewsJson(const Views& views, std::string_view view = kAllViews);

// What changed from a to b, restricted to view. Precondition: IsViewName(view).
Json DiffJson(const Views& a, const Views& b, std::string_view view = kAllViews);

// What one event changed: before holds the pre-images ApplyRecording recorded, after the views
// once it was applied. The same shape as DiffJson(views before the event, after), with seq_from
// = after.seq - 1.
Json DiffJson(const PreImages& before, const Views& after, std::string_view view = kAllViews);

// One entity as the views show it.
Json ConfigEntryJson(const ConfigEntry& entry);
Json NodeJson(const Node& node);
Json NodeGroupJson(const NodeGroup& group);
Json VmInstanceJson(const VmInstance& instance);
Json TemplateJson(const Template& t);
Json SaveImageJson(const SaveImage& request);
Json ApiKeyJson(const ApiKey& key);
Json SessionJson(const Session& session);  // Digests only: a session id or token never is here.
Json RevocationJson(const CertificateRevocation& revocation);
Json DistributionJson(const Distribution& d);
Json StoredFileJson(const StoredFile& f);

// "pending", "done" or "error" (the Anka save-image status words).
const char* SaveImageStatusName(SaveImageStatus status);

// j as text (indent < 0: one line), with ill-formed UTF-8 replaced rather than thrown about.
std::string DumpJson(const Json& j, int indent = -1);

// 2026-11-24T12:00:00.123456789Z; the fraction has trailing zeros removed (and no '.' when 0).
std::string TimeRfc3339(int64_t time_ns);

}  // namespace cloister::reducers
