// Principal: who is asking. api/ authenticates a request into a Principal; the engine authorizes
// it and records it as the actor of every event the request causes.
#pragma once

#include <string>
#include <vector>

#include "log/events_generated.h"

namespace cloister::engine {

struct Principal {
  fb::ActorKind kind = fb::ActorKind::Anonymous;
  std::string name;                 // "root", a key id, a certificate CN, a node id; may be empty.
  std::vector<std::string> groups;  // E.g. a certificate's O= values.

  static Principal System() { return {fb::ActorKind::System, "cloisterd", {}}; }
  static Principal Anonymous() { return {fb::ActorKind::Anonymous, "", {}}; }
};

// For holders of a Principal pointer that need one before any request.
inline const Principal kAnonymous = Principal::Anonymous();

}  // namespace cloister::engine
