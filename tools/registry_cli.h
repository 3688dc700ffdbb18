// The registry commands of `cloister`: push, pull, list and revert, as functions of their
// arguments and of the output streams and terminal they are given (tools/cloister_main.cc wires
// the process's own; tests drive the pieces directly).
//
//   push <oci-layout-dir> <repository>:<tag>   PushImage (client/registry_client.h)
//   pull <repository>:<tag> <oci-layout-dir>   PullImage
//   list [<repository>] [--json]               GET /registry/v2/vm, or /registry/vm?id=
//   revert <repository-or-id> [--tag T | --version N]   DELETE /registry/revert
//
// Every command takes the registry's URL and the credentials `cloister call` takes (root token,
// UAK with TAP against the registry's own /tap/v1/*, client certificate). push and pull speak the
// OCI Distribution API through RegistryClient; list and revert speak Anka's registry endpoints
// (Anka envelope) through ControllerClient.
//
// Exit status: 0 ok; 1 the registry refused or failed (the message names the operation and what
// the registry said); 2 bad arguments, found before any network I/O (an image reference that is
// not <repository>:<tag>, a directory that is not an OCI layout or holds no such tag, a URL that
// is not http(s) or carries user info, credentials that mix kinds or a key that does not parse).
// Errors are one line on stderr, "cloister: <command>: ...", never with a credential or a URL's
// user info.
//
// Progress (push and pull), on stderr: on a terminal, one bar per blob redrawn in place at most
// every kProgressRedrawNs ("sha256:0123456789ab [=====>    ]  52%  12.3 MB / 23.6 MB  10.2 MB/s"),
// ended with a newline when the blob is done; otherwise one line per blob when it is done
// ("pushed sha256:<hex> 23.6 MB in 2.3s (10.2 MB/s)"). Blobs the other side already holds move
// no bytes and get no line. The result goes to stdout.
//
// Thread-safety: none; one command at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "client/client_auth.h"
#include "log/status.h"

namespace cloister::tools {

inline constexpr int64_t kProgressRedrawNs = 100'000'000;  // At most ~10 redraws a second.
inline constexpr char kRegistryUrlDefault[] = "http://127.0.0.1:8089";

// Where the registry is and how to authenticate to it.
struct RegistryTarget {
  std::string url = kRegistryUrlDefault;
  client::Credentials credentials;
  std::string cacert;     // HTTPS: the CA to verify the registry with.
  bool insecure = false;  // HTTPS: do not verify the registry's certificate.
};

// The streams and terminal one command writes to.
struct CliIo {
  std::function<void(std::string_view)> out;
  std::function<void(std::string_view)> err;
  bool err_is_tty = false;
  std::function<int64_t()> now_ns;  // Monotonic clock (ns), for progress rates and redraws.
};

struct ImageRef {
  std::string repository;
  std::string tag;  // Or, from "<repository>@<digest>", the manifest digest.
  bool by_digest = false;

  // "repository:tag" or "repository@sha256:...".
  std::string Text() const { return repository + (by_digest ? "@" : ":") + tag; }
};

// "<repository>:<tag>", the repository in the OCI grammar (lowercase, '/'-separated), the tag
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}; with allow_digest also "<repository>@sha256:<64 hex>".
// kInvalidArgument saying what is wrong.
Result<ImageRef> ParseImageRef(std::string_view text, bool allow_digest = false);

// An http:// or https:// URL without user info (credentials go in their flags, not the URL).
Status CheckRegistryUrl(std::string_view url);

// "0 B", "999 B", "1.5 kB", "12.3 MB", "4.7 GB" (decimal units, as MB/s is).
std::string FormatBytes(uint64_t bytes);

// The readable tables of `list` (each line ends with '\n'). list: the body of GET
// /registry/v2/vm ([{id,name,size,tags,latest_tag,last_modified}]); one: the body of GET
// /registry/vm?id= ({id,name,size,...,versions:[{number,tag,description,creation_date,manifest,
// size}]}). Fields that are missing or of another type show as empty cells.
std::string TemplatesTable(const nlohmann::json& list);
std::string VersionsTable(const nlohmann::json& one);

// Progress of the blobs of one push or pull, drawn on io.err as the header says. Update is the
// RegistryClient ImageOptions::progress callback; Finish ends the blob in progress (the
// operation succeeded); Abort ends a partly drawn bar's line (an error message follows).
class ProgressDisplay {
 public:
  // verb: "pushed" or "pulled".
  ProgressDisplay(std::string verb, const CliIo& io);

  void Update(const std::string& digest, uint64_t done, uint64_t total);
  void Finish();
  void Abort();

 private:
  void Complete();
  void Draw();
  // "12.3 MB/s" (decimal units: "850.0 kB/s" below 1 MB/s), or "" when under a millisecond has
  // passed.
  std::string Rate(int64_t now) const;

  const std::string verb_;
  const CliIo& io_;
  std::string digest_;  // The blob in progress ("" for none).
  uint64_t done_ = 0;
  uint64_t total_ = 0;
  int64_t start_ns_ = 0;     // When the blob in progress started moving.
  int64_t last_end_ns_ = 0;  // When the last blob completed (or the display was made).
  int64_t last_draw_ns_ = 0;
  bool drawn_ = false;  // A bar line of the blob in progress is on the terminal.
  std::set<std::string> completed_;
};

int RunPush(const RegistryTarget& target, const std::string& layout_dir, const std::string& image,
            const CliIo& io);
int RunPull(const RegistryTarget& target, const std::string& image, const std::string& layout_dir,
            const CliIo& io);
// repository empty: every template. json: print the answer's body as JSON instead of a table.
int RunList(const RegistryTarget& target, const std::string& repository, bool json,
            const CliIo& io);

struct RevertArgs {
  std::string template_ref;            // Its id or name.
  std::optional<std::string> tag;      // --tag.
  std::optional<std::string> version;  // --version (a whole number).
};
int RunRevert(const RegistryTarget& target, const RevertArgs& args, const CliIo& io);

}  // namespace cloister::tools
