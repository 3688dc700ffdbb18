#include "tools/registry_cli.h"

#include <sys/stat.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include "client/controller_client.h"
#include "client/registry_client.h"

namespace cloister::tools {
namespace {

using Json = nlohmann::json;

constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kUsage = 2;
constexpr long kAnkaCallTimeoutMs = 60'000;
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
constexpr size_t kBarWidth = 24;

int Say(const CliIo& io, int code, const std::string& command, const std::string& message) {
  io.err("cloister: " + command + ": " + message + "\n");
  return code;
}

// The query value percent-encoded (RFC 3986 unreserved characters pass).
std::string QueryEscape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// A JSON value as a table cell: strings as they are, numbers in decimal, others empty.
std::string Cell(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) {
    return "";
  }
  const Json& value = object[key];
  if (value.is_string()) {
    return value.get<std::string>();
  }
  if (value.is_number_unsigned()) {
    return std::to_string(value.get<uint64_t>());
  }
  if (value.is_number_integer()) {
    return std::to_string(value.get<int64_t>());
  }
  return "";
}

std::string SizeCell(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number_unsigned()) {
    return Cell(object, key);
  }
  return FormatBytes(object[key].get<uint64_t>());
}

// "sha256:0123456789ab": a digest shortened for a table or a bar.
std::string ShortDigest(const std::string& digest) {
  constexpr size_t kShown = 7 + 12;
  return digest.size() > kShown ? digest.substr(0, kShown) : digest;
}

// Rows as left-aligned columns two spaces apart; the last column is not padded.
std::string Columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); i++) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); i++) {
      line += row[i];
      if (i + 1 < row.size()) {
        line += std::string(widths[i] - row[i].size() + 2, ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  }
  return out;
}

// Whether layout_dir is an OCI image layout whose index.json names tag (or has one unnamed
// entry, which PushImage takes for any tag). kInvalidArgument saying what is wrong.
Status CheckLayout(const std::string& layout_dir, const std::string& tag) {
  struct stat st {};
  if (stat(layout_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(layout_dir + " is not a directory");
  }
  const std::string index_path = layout_dir + "/index.json";
  if (stat(index_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(layout_dir + " is not an OCI image layout (no index.json)");
  }
  if (static_cast<uint64_t>(st.st_size) > client::kLayoutIndexBytesMax) {
    return Status::InvalidArgument(index_path + " is larger than " +
                                   FormatBytes(client::kLayoutIndexBytesMax));
  }
  std::ifstream in(index_path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const Json index = Json::parse(text.str(), nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return Status::InvalidArgument(index_path + " is not an OCI index (no \"manifests\" array)");
  }
  std::vector<std::string> names;
  size_t unnamed = 0;
  for (const Json& entry : index["manifests"]) {
    std::string name;
    const Json annotations = entry.is_object() ? entry.value("annotations", Json()) : Json();
    if (annotations.is_object() && annotations.contains(kRefNameAnnotation) &&
        annotations[kRefNameAnnotation].is_string()) {
      name = annotations[kRefNameAnnotation].get<std::string>();
    }
    if (name == tag) {
      return Status::Ok();
    }
    if (name.empty()) {
      unnamed++;
    } else {
      names.push_back(name);
    }
  }
  if (unnamed == 1 && names.empty()) {
    return Status::Ok();
  }
  std::string listed;
  for (const std::string& name : names) {
    listed += (listed.empty() ? "" : ", ") + name.substr(0, 128);
  }
  return Status::InvalidArgument(
      layout_dir + " has no image tagged " + tag +
      (listed.empty() ? std::string(" (its index.json names none)") : " (it has: " + listed + ")"));
}

// What every command checks before any I/O: the URL and the credentials.
Result<std::shared_ptr<client::ClientAuth>> Prepare(const RegistryTarget& target) {
  Status url = CheckRegistryUrl(target.url);
  if (!url.ok()) {
    return url;
  }
  return client::ClientAuth::Create(target.credentials);
}

client::RegistryClientOptions ClientOptions(const RegistryTarget& target,
                                            std::shared_ptr<client::ClientAuth> auth) {
  client::RegistryClientOptions options;
  options.url = target.url;
  options.ca_file = target.cacert;
  options.insecure = target.insecure;
  options.cert_file = target.credentials.cert_file;
  options.key_file = target.credentials.cert_key_file;
  options.auth = std::move(auth);
  return options;
}

std::string TransferSummary(const client::ImageTransfer& t, const char* moved) {
  char text[256];
  std::snprintf(text, sizeof(text), "%zu manifest%s, %zu blob%s: %zu %s (%s), %zu already there",
                t.manifests, t.manifests == 1 ? "" : "s", t.blobs, t.blobs == 1 ? "" : "s",
                t.blobs_transferred, moved, FormatBytes(t.bytes_transferred).c_str(),
                t.blobs - std::min(t.blobs, t.blobs_transferred));
  return text;
}

// One call to an Anka registry endpoint: the envelope's body, or the exit status after saying why.
struct AnkaAnswer {
  int code = kOk;
  Json body;
};

AnkaAnswer CallAnka(const RegistryTarget& target, std::shared_ptr<client::ClientAuth> auth,
                    const std::string& method, const std::string& path, const std::string& command,
                    const CliIo& io) {
  client::ControllerClientOptions options;
  options.url = target.url;
  while (!options.url.empty() && options.url.back() == '/') {
    options.url.pop_back();
  }
  options.ca_file = target.cacert;
  options.insecure = target.insecure;
  options.cert_file = target.credentials.cert_file;
  options.key_file = target.credentials.cert_key_file;
  options.auth = std::move(auth);
  client::ControllerClient anka(options);
  Result<client::ControllerReply> reply = anka.Call(method, path, "", kAnkaCallTimeoutMs);
  AnkaAnswer answer;
  if (!reply.ok()) {
    answer.code = Say(io, kFailure, command, reply.status().message());
    return answer;
  }
  if (!reply->ok) {
    std::string message = reply->message.empty() ? "refused" : reply->message.substr(0, 300);
    if (reply->http_status != 200) {  // Anka answers some refusals with 200 and FAIL.
      message += " (HTTP " + std::to_string(reply->http_status) + ")";
    }
    answer.code = Say(io, kFailure, command, message);
    return answer;
  }
  answer.body = reply->body;
  return answer;
}

}  // namespace

Result<ImageRef> ParseImageRef(std::string_view text, bool allow_digest) {
  const size_t at = text.find('@');
  if (at != std::string_view::npos) {
    if (!allow_digest) {
      return Status::InvalidArgument("expected <repository>:<tag> (a push names a tag), got '" +
                                     std::string(text.substr(0, 300)) + "'");
    }
    ImageRef ref{std::string(text.substr(0, at)), std::string(text.substr(at + 1)), true};
    if (Status valid = client::ValidateRepository(ref.repository); !valid.ok()) {
      return Status::InvalidArgument("repository '" + ref.repository.substr(0, 300) +
                                     "': " + valid.message());
    }
    if (Status valid = client::ValidateDigest(ref.tag); !valid.ok()) {
      return Status::InvalidArgument("digest '" + ref.tag.substr(0, 300) +
                                     "': " + valid.message());
    }
    return ref;
  }
  const size_t colon = text.rfind(':');
  const size_t slash = text.rfind('/');
  if (colon == std::string_view::npos || (slash != std::string_view::npos && colon < slash)) {
    return Status::InvalidArgument("expected <repository>:<tag>, got '" +
                                   std::string(text.substr(0, 300)) + "'");
  }
  ImageRef ref{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
  if (Status valid = client::ValidateRepository(ref.repository); !valid.ok()) {
    return Status::InvalidArgument("repository '" + ref.repository.substr(0, 300) +
                                   "': " + valid.message());
  }
  if (Status valid = client::ValidateTag(ref.tag); !valid.ok()) {
    return Status::InvalidArgument("tag '" + ref.tag.substr(0, 300) + "': " + valid.message());
  }
  return ref;
}

Status CheckRegistryUrl(std::string_view url) {
  const size_t scheme_end = url.find("://");
  const std::string_view scheme =
      scheme_end == std::string_view::npos ? std::string_view() : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    return Status::InvalidArgument("--registry: expected http://HOST:PORT or https://HOST:PORT");
  }
  const std::string_view rest = url.substr(scheme_end + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) {
    return Status::InvalidArgument("--registry: the URL names no host");
  }
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument(
        "--registry: the URL carries user info; give credentials with --root-token, "
        "--api-key-id/--api-key-file or --cert instead");
  }
  return Status::Ok();
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1000) {
    return std::to_string(bytes) + " B";
  }
  static constexpr const char* kUnits[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
  double value = static_cast<double>(bytes) / 1000.0;
  size_t unit = 0;
  while (value >= 999.95 && unit + 1 < std::size(kUnits)) {
    value /= 1000.0;
    unit++;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f %s", value, kUnits[unit]);
  return text;
}

std::string TemplatesTable(const Json& list) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ID", "TAGS", "LATEST", "SIZE", "MODIFIED"}};
  if (list.is_array()) {
    for (const Json& t : list) {
      std::string tags;
      if (t.is_object() && t.contains("tags") && t["tags"].is_array()) {
        for (const Json& tag : t["tags"]) {
          if (tag.is_string()) {
            tags += (tags.empty() ? "" : ",") + tag.get<std::string>();
          }
        }
      }
      rows.push_back({Cell(t, "name"), Cell(t, "id"), tags, Cell(t, "latest_tag"),
                      SizeCell(t, "size"), Cell(t, "last_modified")});
    }
  }
  if (rows.size() == 1) {
    return "no templates\n";
  }
  return Columns(rows);
}

std::string VersionsTable(const Json& one) {
  std::string out = Cell(one, "name") + " (id " + Cell(one, "id") + ")";
  const Json versions = one.is_object() && one.contains("versions") && one["versions"].is_array()
                            ? one["versions"]
                            : Json::array();
  out += ": " + std::to_string(versions.size()) + (versions.size() == 1 ? " tag" : " tags");
  if (one.is_object() && one.contains("size") && one["size"].is_number_unsigned()) {
    out += ", " + FormatBytes(one["size"].get<uint64_t>());
  }
  out += "\n";
  if (versions.empty()) {
    return out;
  }
  std::vector<std::vector<std::string>> rows = {
      {"VERSION", "TAG", "SIZE", "CREATED", "MANIFEST", "DESCRIPTION"}};
  for (const Json& v : versions) {
    rows.push_back({Cell(v, "number"), Cell(v, "tag"), SizeCell(v, "size"),
                    Cell(v, "creation_date"), ShortDigest(Cell(v, "manifest")),
                    Cell(v, "description")});
  }
  return out + Columns(rows);
}

// ---- ProgressDisplay ----

ProgressDisplay::ProgressDisplay(std::string verb, const CliIo& io)
    : verb_(std::move(verb)), io_(io), last_end_ns_(io.now_ns()) {}

std::string ProgressDisplay::Rate(int64_t now) const {
  const int64_t elapsed = now - start_ns_;
  if (elapsed < 1'000'000) {  // Under a millisecond says nothing.
    return "";
  }
  const double per_s = static_cast<double>(done_) * 1e9 / static_cast<double>(elapsed);
  return FormatBytes(static_cast<uint64_t>(per_s)) + "/s";
}

void ProgressDisplay::Draw() {
  const int64_t now = io_.now_ns();
  std::string line = "\r\x1b[K" + ShortDigest(digest_) + " ";
  if (total_ > 0) {
    const uint64_t done = std::min(done_, total_);
    const size_t filled =
        static_cast<size_t>(static_cast<double>(done) / static_cast<double>(total_) * kBarWidth);
    std::string bar(kBarWidth, ' ');
    std::fill(bar.begin(), bar.begin() + static_cast<long>(filled), '=');
    if (filled < kBarWidth) {
      bar[filled] = '>';
    }
    char percent[8];
    std::snprintf(
        percent, sizeof(percent), "%3d%%",
        static_cast<int>(static_cast<double>(done) * 100.0 / static_cast<double>(total_)));
    line += "[" + bar + "] " + percent + "  " + FormatBytes(done) + " / " + FormatBytes(total_);
  } else {
    line += FormatBytes(done_);
  }
  const std::string rate = Rate(now);
  if (!rate.empty()) {
    line += "  " + rate;
  }
  io_.err(line);
  drawn_ = true;
  last_draw_ns_ = now;
}

void ProgressDisplay::Update(const std::string& digest, uint64_t done, uint64_t total) {
  if (digest != digest_) {
    Complete();
    if (completed_.count(digest) != 0) {
      return;  // A resend of a blob already shown as done (a retry after a 401).
    }
    digest_ = digest;
    start_ns_ = last_end_ns_;
    drawn_ = false;
  }
  if (digest_.empty()) {
    return;
  }
  done_ = done;
  total_ = total;
  if (total > 0 && done >= total) {
    Complete();
    return;
  }
  if (io_.err_is_tty && (!drawn_ || io_.now_ns() - last_draw_ns_ >= kProgressRedrawNs)) {
    Draw();
  }
}

void ProgressDisplay::Complete() {
  if (digest_.empty()) {
    return;
  }
  const int64_t now = io_.now_ns();
  if (io_.err_is_tty) {
    if (total_ == 0) {
      total_ = done_;
    }
    Draw();
    io_.err("\n");
  } else {
    const int64_t elapsed = now - start_ns_;
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%.1fs", static_cast<double>(elapsed) / 1e9);
    std::string line = verb_ + " " + digest_ + " " + FormatBytes(done_) + " in " + seconds;
    const std::string rate = Rate(now);
    if (!rate.empty()) {
      line += " (" + rate + ")";
    }
    io_.err(line + "\n");
  }
  completed_.insert(digest_);
  digest_.clear();
  drawn_ = false;
  last_end_ns_ = now;
}

void ProgressDisplay::Finish() { Complete(); }

void ProgressDisplay::Abort() {
  if (drawn_) {
    io_.err("\n");
  }
  drawn_ = false;
  digest_.clear();
}

// ---- Commands ----

int RunPush(const RegistryTarget& target, const std::string& layout_dir, const std::string& image,
            const CliIo& io) {
  Result<ImageRef> ref = ParseImageRef(image);
  if (!ref.ok()) {
    return Say(io, kUsage, "push", ref.status().message());
  }
  if (Status layout = CheckLayout(layout_dir, ref->tag); !layout.ok()) {
    return Say(io, kUsage, "push", layout.message());
  }
  Result<std::shared_ptr<client::ClientAuth>> auth = Prepare(target);
  if (!auth.ok()) {
    return Say(io, kUsage, "push", auth.status().message());
  }
  client::RegistryClient registry(ClientOptions(target, auth.value()));
  const std::string what = "push " + ref->repository + ":" + ref->tag;
  if (Status ping = registry.Ping(); !ping.ok()) {
    return Say(io, kFailure, what, ping.message());
  }
  ProgressDisplay display("pushed", io);
  client::ImageOptions options;
  options.progress = [&display](const std::string& digest, uint64_t done, uint64_t total) {
    display.Update(digest, done, total);
  };
  Result<client::ImageTransfer> pushed =
      registry.PushImage(ref->repository, ref->tag, layout_dir, options);
  if (!pushed.ok()) {
    display.Abort();
    return Say(io, kFailure, what, pushed.status().message());
  }
  display.Finish();
  io.out("pushed " + ref->repository + ":" + ref->tag + " " + pushed->digest + " (" +
         TransferSummary(*pushed, "sent") + ")\n");
  return kOk;
}

int RunPull(const RegistryTarget& target, const std::string& image, const std::string& layout_dir,
            const CliIo& io) {
  Result<ImageRef> ref = ParseImageRef(image, /*allow_digest=*/true);
  if (!ref.ok()) {
    return Say(io, kUsage, "pull", ref.status().message());
  }
  struct stat st {};
  if (layout_dir.empty() || (stat(layout_dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))) {
    return Say(io, kUsage, "pull", "'" + layout_dir + "' is not a directory");
  }
  Result<std::shared_ptr<client::ClientAuth>> auth = Prepare(target);
  if (!auth.ok()) {
    return Say(io, kUsage, "pull", auth.status().message());
  }
  client::RegistryClient registry(ClientOptions(target, auth.value()));
  const std::string what = "pull " + ref->Text();
  if (Status ping = registry.Ping(); !ping.ok()) {
    return Say(io, kFailure, what, ping.message());
  }
  ProgressDisplay display("pulled", io);
  client::ImageOptions options;
  options.progress = [&display](const std::string& digest, uint64_t done, uint64_t total) {
    display.Update(digest, done, total);
  };
  Result<client::ImageTransfer> pulled =
      registry.PullImage(ref->repository, ref->tag, layout_dir, options);
  if (!pulled.ok()) {
    display.Abort();
    return Say(io, kFailure, what, pulled.status().message());
  }
  display.Finish();
  io.out("pulled " + ref->Text() + " " + pulled->digest + " into " +
         layout_dir + " (" + TransferSummary(*pulled, "fetched") + ")\n");
  return kOk;
}

int RunList(const RegistryTarget& target, const std::string& repository, bool json,
            const CliIo& io) {
  Result<std::shared_ptr<client::ClientAuth>> auth = Prepare(target);
  if (!auth.ok()) {
    return Say(io, kUsage, "list", auth.status().message());
  }
  const std::string path =
      repository.empty() ? "/registry/v2/vm" : "/registry/vm?id=" + QueryEscape(repository);
  const std::string what = repository.empty() ? "list" : "list " + repository.substr(0, 300);
  AnkaAnswer answer = CallAnka(target, auth.value(), "GET", path, what, io);
  if (answer.code != kOk) {
    return answer.code;
  }
  if (json) {
    io.out(answer.body.dump() + "\n");
  } else {
    io.out(repository.empty() ? TemplatesTable(answer.body) : VersionsTable(answer.body));
  }
  return kOk;
}

int RunRevert(const RegistryTarget& target, const RevertArgs& args, const CliIo& io) {
  if (args.template_ref.empty()) {
    return Say(io, kUsage, "revert", "the template (its name or id) is empty");
  }
  if (args.tag.has_value() && args.version.has_value()) {
    return Say(io, kUsage, "revert", "give --tag or --version, not both");
  }
  if (args.tag.has_value() && args.tag->empty()) {
    return Say(io, kUsage, "revert", "--tag is empty");
  }
  if (args.version.has_value()) {
    const std::string& v = *args.version;
    if (v.empty() || v.size() > 10 ||
        !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoll(v) > INT32_MAX) {
      return Say(
          io, kUsage, "revert",
          "--version: expected a whole number (a version's number), got '" + v.substr(0, 64) + "'");
    }
  }
  Result<std::shared_ptr<client::ClientAuth>> auth = Prepare(target);
  if (!auth.ok()) {
    return Say(io, kUsage, "revert", auth.status().message());
  }
  std::string path = "/registry/revert?id=" + QueryEscape(args.template_ref);
  if (args.tag) {
    path += "&tag=" + QueryEscape(*args.tag);
  }
  if (args.version) {
    path += "&version=" + *args.version;
  }
  const std::string what = "revert " + args.template_ref.substr(0, 300);
  AnkaAnswer answer = CallAnka(target, auth.value(), "DELETE", path, what, io);
  if (answer.code != kOk) {
    return answer.code;
  }
  std::string tags;
  size_t count = 0;
  if (answer.body.is_object() && answer.body.contains("removed_tags") &&
      answer.body["removed_tags"].is_array()) {
    for (const Json& tag : answer.body["removed_tags"]) {
      if (tag.is_string()) {
        tags += (tags.empty() ? "" : ", ") + tag.get<std::string>();
        count++;
      }
    }
  }
  io.out("reverted " + args.template_ref + " (id " + Cell(answer.body, "id") + "): removed " +
         std::to_string(count) + (count == 1 ? " tag" : " tags") +
         (tags.empty() ? "" : ": " + tags) + "\n");
  return kOk;
}

}  // namespace cloister::tools
