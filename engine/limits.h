// The engine's limits. Each is tested at the limit and one past it (engine_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cloister::engine {

inline constexpr size_t kConfigChangesMax = 64;         // Keys in one config change.
inline constexpr size_t kConfigValueBytesMax = 4096;    // One config value.
inline constexpr size_t kNameBytesMax = 256;            // Group, node and instance names.
inline constexpr size_t kDescriptionBytesMax = 1024;
inline constexpr size_t kKeyGroupsMax = 64;               // Groups of one API key.
inline constexpr int64_t kKeyTtlMaxSeconds = 10LL * 366 * 24 * 3600;  // An API key's ttl.
inline constexpr size_t kPublicKeyBytesMax = 4096;       // DER of an API key's public key.
inline constexpr size_t kIdBytesMax = 128;
// Blobs one manifest may refer to (a VM template has a handful of layers; an index a few
// platforms). Bounds the event and the views.
inline constexpr size_t kManifestReferencesMax = 4096;
// A followed registry's catalogue: templates in one read, tags of one template. Each changed
// template is one event, so a whole catalogue stays under kInflightEventsMax.
inline constexpr size_t kMirroredTemplatesMax = 4096;
inline constexpr size_t kMirroredTagsMax = 4096;              // Ids a client supplies.
inline constexpr size_t kPermissionsMax = 256;           // Names in one permission list.
inline constexpr size_t kNodeTemplatesMax = 4096;        // Templates one node reports.
inline constexpr size_t kMembershipIdsMax = 1000;        // Groups, and nodes, in one membership change.
inline constexpr size_t kGroupsPerNodeMax = 64;
inline constexpr uint32_t kVmsPerRequestMax = 100;      // "count" in one VM request.
inline constexpr uint32_t kVmPriorityMin = 1;            // "priority": lower is more urgent.
inline constexpr uint32_t kVmPriorityMax = 10000;
inline constexpr size_t kPortForwardsMax = 64;          // port_forwarding_override entries.
inline constexpr size_t kStartupScriptBytesMax = 256 * 1024;
inline constexpr size_t kMetadataBytesMax = 64 * 1024;
inline constexpr size_t kScriptOutputBytesMax = 16 * 1024;  // A startup script's reported output.
// A VM policy's chain as uploaded (POST /api/v1/policy): its new events go into one log event,
// which must stay under log::kEventBytesMax (an administrator's record is ~3 KB).
inline constexpr size_t kPolicyEventsMax = 4096;
inline constexpr size_t kPolicyBytesMax = 512 * 1024;
// A file server path (PUT /file?path=): bytes in all, and segments.
inline constexpr size_t kFilePathBytesMax = 1024;
inline constexpr size_t kFilePathSegmentsMax = 32;
// Files the file server holds: bounds the files view.
inline constexpr size_t kFilesMax = 100'000;

// Commands whose events are appended but not yet durable. Past it, commands wait in the engine's
// own queue, so the log's producer queue (which blocks) is never filled from the event loop.
inline constexpr size_t kInflightEventsMax = 16'384;
// Commands waiting (for a conflicting command to finish, or for in-flight room). Past it, new
// commands are rejected with kOverloaded.
inline constexpr size_t kQueuedCommandsMax = 65'536;

}  // namespace cloister::engine
