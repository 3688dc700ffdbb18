// ImageCache (atomic install, replace, remove, listing, pulls against a small fake registry)
// and the sim image (deterministic bytes).
#include "node/image_cache.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client/fake_controller.h"
#include "client/registry_client.h"
#include "node/sim_image.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using cloister::testing::TempDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every regular file under dir, by relative path, with its bytes.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      files[fs::relative(entry.path(), dir).string()] = ReadFile(entry.path().string());
    }
  }
  return files;
}

// An image with a config and two layers (the second large enough for several progress steps).
std::string WriteImage(const std::string& layout, const std::string& tag, const std::string& seed) {
  auto digest =
      WriteImageLayout(layout, tag, {kSimConfigMediaType, R"({"name":")" + seed + R"("})"},
                       {{kSimDiskMediaType, SeededBytes(seed + "-a", 64 << 10)},
                        {kSimDiskMediaType, SeededBytes(seed + "-b", 512 << 10)}});
  REQUIRE(digest.ok());
  return *digest;
}

// Serves GET of manifests (by tag or digest) and blobs out of one OCI layout, for any
// repository; everything else is 404. Counts the requests.
class FakeRegistry {
 public:
  explicit FakeRegistry(std::string layout)
      : layout_(std::move(layout)),
        server_([this](const client::testing::FakeRequest& r) { return Handle(r); }, std::nullopt) {
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  int requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  client::testing::FakeResponse Handle(const client::testing::FakeRequest& request) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_++;
    }
    const std::string notfound = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]})";
    const std::string path = request.path.substr(0, request.path.find('?'));
    const size_t manifests = path.find("/manifests/");
    const size_t blobs = path.find("/blobs/");
    std::string digest;
    if (request.method != "GET") {
      return {405, "{}"};
    }
    if (manifests != std::string::npos) {
      const std::string reference = path.substr(manifests + 11);
      digest = reference;
      if (reference.find(':') == std::string::npos) {
        digest.clear();
        const Json index = Json::parse(ReadFile(layout_ + "/index.json"));
        for (const Json& entry : index["manifests"]) {
          if (entry["annotations"]["org.opencontainers.image.ref.name"] == reference) {
            digest = entry["digest"];
          }
        }
      }
    } else if (blobs != std::string::npos) {
      digest = path.substr(blobs + 7);
    }
    const std::string file =
        layout_ + "/blobs/sha256/" + (digest.size() > 7 ? digest.substr(7) : "");
    if (digest.rfind("sha256:", 0) != 0 || !fs::exists(file)) {
      return {404, notfound};
    }
    return {200, ReadFile(file)};
  }

  const std::string layout_;
  mutable std::mutex mu_;
  int requests_ = 0;
  client::testing::FakeHttpServer server_;
};

std::unique_ptr<ImageCache> OpenCache(const std::string& dir) {
  auto cache = ImageCache::Open(dir);
  REQUIRE(cache.ok());
  return std::move(cache).value();
}

TEST_CASE("a pull installs the tag whole, byte for byte, and the next one needs no network") {
  TempDir dir;
  const std::string digest = WriteImage(dir.Sub("source"), "v1", "one");
  FakeRegistry registry(dir.Sub("source"));
  client::RegistryClientOptions options;
  options.url = registry.url();
  client::RegistryClient client(options);
  auto cache = OpenCache(dir.Sub("images"));

  std::vector<int> progress;
  auto pulled = cache->Pull(&client, "tmpl-1", "v1", digest,
                            [&](int percent) { progress.push_back(percent); });
  INFO(pulled.status().ToString());
  REQUIRE(pulled.ok());
  CHECK(*pulled);
  // Every blob and the manifest are the pushed bytes; index.json names the tag.
  const auto source = Files(dir.Sub("source"));
  const auto cached = Files(cache->LayoutPath("tmpl-1", "v1"));
  for (const auto& [name, bytes] : source) {
    if (name.rfind("blobs/", 0) == 0) {
      CHECK(cached.count(name) == 1);
      CHECK((cached.count(name) == 1 && cached.at(name) == bytes));
    }
  }
  CHECK(cached.size() == source.size());
  auto found = cache->Find("tmpl-1", "v1");
  REQUIRE(found.ok());
  CHECK(*found == std::optional<std::string>(digest));
  REQUIRE(!progress.empty());
  CHECK(progress.front() == 0);
  CHECK(progress.back() == 100);
  CHECK(std::is_sorted(progress.begin(), progress.end()));
  CHECK(progress.size() > 2);  // Steps between (576 KiB arrive in several writes).
  CHECK(!fs::exists(cache->StagingPath("tmpl-1", "v1")));

  const int before = registry.requests();
  auto again = cache->Pull(&client, "tmpl-1", "v1", digest);
  REQUIRE(again.ok());
  CHECK(!*again);
  CHECK(registry.requests() == before);

  auto listed = cache->List();
  REQUIRE(listed.ok());
  CHECK(*listed == std::vector<CachedImage>{{"tmpl-1", "v1", digest}});
  CHECK(cache->TemplateIds() == std::vector<std::string>{"tmpl-1"});
}

TEST_CASE("a pull whose manifest is not the expected one installs nothing") {
  TempDir dir;
  const std::string v1 = WriteImage(dir.Sub("source"), "v1", "one");
  const std::string other = WriteImage(dir.Sub("other"), "v1", "two");
  // The source also holds the other image's blobs, by digest, but its tag v1 is image one.
  for (const auto& [name, bytes] : Files(dir.Sub("other"))) {
    if (name.rfind("blobs/", 0) == 0) {
      std::ofstream(dir.Sub("source") + "/" + name, std::ios::binary) << bytes;
    }
  }
  FakeRegistry registry(dir.Sub("source"));
  client::RegistryClientOptions options;
  options.url = registry.url();
  client::RegistryClient client(options);
  auto cache = OpenCache(dir.Sub("images"));

  SECTION("the tag names another manifest: kCorruption, staging dropped") {
    auto pulled = cache->Pull(&client, "tmpl-1", "v1", other);
    REQUIRE(!pulled.ok());
    CHECK(pulled.status().code() == StatusCode::kCorruption);
    CHECK(pulled.status().message().find(v1) != std::string::npos);
    CHECK(!fs::exists(cache->StagingPath("tmpl-1", "v1")));
  }
  SECTION("the registry lacks the manifest: kNotFound, nothing staged") {
    const std::string absent = "sha256:" + std::string(64, 'e');
    auto pulled = cache->Pull(&client, "tmpl-1", "v1", absent);
    REQUIRE(!pulled.ok());
    CHECK(pulled.status().code() == StatusCode::kNotFound);
    CHECK(!fs::exists(cache->StagingPath("tmpl-1", "v1")));
  }
  SECTION("names that are not directory names are refused before any I/O") {
    for (const std::string bad : {"../x", ".hidden", "a/b", ""}) {
      auto pulled = cache->Pull(&client, bad, "v1", v1);
      CHECK(pulled.status().code() == StatusCode::kInvalidArgument);
    }
    CHECK(registry.requests() == 0);
  }
  auto listed = cache->List();
  REQUIRE(listed.ok());
  CHECK(listed->empty());
  auto found = cache->Find("tmpl-1", "v1");
  REQUIRE(found.ok());
  CHECK(!found->has_value());
}

TEST_CASE("install is all or nothing, and replaces a cached copy of the tag") {
  TempDir dir;
  auto cache = OpenCache(dir.Sub("images"));
  auto staging = cache->Stage("tmpl-1", "v1");
  REQUIRE(staging.ok());
  // Half an image: blobs, no index.json (as a crash mid-pull leaves it).
  const std::string digest = WriteImage(*staging, "v1", "one");
  fs::remove(*staging + "/index.json");
  Status half = cache->Install("tmpl-1", "v1", digest);
  CHECK(half.code() == StatusCode::kCorruption);
  CHECK(cache->List()->empty());
  CHECK(!cache->Find("tmpl-1", "v1")->has_value());
  CHECK(cache->TemplateIds().empty());

  // Completed, but the manifest blob damaged: refused too.
  WriteImage(*staging, "v1", "one");
  const std::string manifest = *staging + "/blobs/sha256/" + digest.substr(7);
  const std::string good = ReadFile(manifest);
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << good << " ";
  CHECK(cache->Install("tmpl-1", "v1", digest).code() == StatusCode::kCorruption);
  CHECK(cache->List()->empty());
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << good;

  // Another digest than the staged one: refused.
  CHECK(cache->Install("tmpl-1", "v1", "sha256:" + std::string(64, 'a')).code() ==
        StatusCode::kCorruption);
  REQUIRE(cache->Install("tmpl-1", "v1", digest).ok());
  CHECK(*cache->Find("tmpl-1", "v1") == std::optional<std::string>(digest));
  CHECK(!fs::exists(*staging));

  // The tag reverted and pushed again with other content: the new image replaces the old.
  staging = cache->Stage("tmpl-1", "v1");
  REQUIRE(staging.ok());
  const std::string second = WriteImage(*staging, "v1", "two");
  REQUIRE(cache->Install("tmpl-1", "v1", second).ok());
  CHECK(*cache->Find("tmpl-1", "v1") == std::optional<std::string>(second));
  CHECK(!fs::exists(cache->LayoutPath("tmpl-1", "v1") + "/blobs/sha256/" + digest.substr(7)));
  CHECK(fs::is_empty(dir.Sub("images/.trash")));
}

TEST_CASE("remove deletes one tag or every tag; what is not there is no error") {
  TempDir dir;
  auto cache = OpenCache(dir.Sub("images"));
  std::map<std::pair<std::string, std::string>, std::string> digests;
  for (const auto& [id, tag] : std::vector<std::pair<std::string, std::string>>{
           {"tmpl-1", "v1"}, {"tmpl-1", "v2"}, {"tmpl-2", "v1"}}) {
    auto staging = cache->Stage(id, tag);
    REQUIRE(staging.ok());
    digests[{id, tag}] = WriteImage(*staging, tag, id + tag);
    REQUIRE(cache->Install(id, tag, digests[{id, tag}]).ok());
  }
  CHECK(cache->List()->size() == 3);
  CHECK(cache->TemplateIds() == std::vector<std::string>{"tmpl-1", "tmpl-2"});
  // A pull in progress (its staging directory) is not listed.
  REQUIRE(cache->Stage("tmpl-3", "v1").ok());
  CHECK(cache->List()->size() == 3);

  REQUIRE(cache->Remove("tmpl-1", "v1").ok());
  CHECK(*cache->List() == std::vector<CachedImage>{{"tmpl-1", "v2", digests[{"tmpl-1", "v2"}]},
                                                   {"tmpl-2", "v1", digests[{"tmpl-2", "v1"}]}});
  REQUIRE(cache->Remove("tmpl-1", "v1").ok());  // Again: a resent request.
  REQUIRE(cache->Remove("tmpl-1", "").ok());
  CHECK(*cache->List() == std::vector<CachedImage>{{"tmpl-2", "v1", digests[{"tmpl-2", "v1"}]}});
  CHECK(!fs::exists(dir.Sub("images/tmpl-1")));
  REQUIRE(cache->Remove("tmpl-1", "").ok());
  REQUIRE(cache->Remove("never", "").ok());
  REQUIRE(cache->Remove("tmpl-3", "").ok());  // Its staging goes too.
  CHECK(!fs::exists(cache->StagingPath("tmpl-3", "v1")));
  CHECK(cache->Remove("..", "").code() == StatusCode::kInvalidArgument);
  CHECK(cache->Remove("tmpl-2", "../../x").code() == StatusCode::kInvalidArgument);
  CHECK(fs::is_empty(dir.Sub("images/.trash")));
}

TEST_CASE("open empties the trash a crash left, and keeps the cache") {
  TempDir dir;
  std::string digest;
  {
    auto cache = OpenCache(dir.Sub("images"));
    auto staging = cache->Stage("tmpl-1", "v1");
    REQUIRE(staging.ok());
    digest = WriteImage(*staging, "v1", "one");
    REQUIRE(cache->Install("tmpl-1", "v1", digest).ok());
  }
  fs::create_directories(dir.Sub("images/.trash/123-4/blobs"));
  std::ofstream(dir.Sub("images/.trash/123-4/blobs/x")) << "x";
  auto cache = OpenCache(dir.Sub("images"));
  CHECK(fs::is_empty(dir.Sub("images/.trash")));
  CHECK(*cache->List() == std::vector<CachedImage>{{"tmpl-1", "v1", digest}});
}

TEST_CASE("a sim image is deterministic: the same VM gives the same digest") {
  TempDir dir;
  SimImageSpec spec;
  spec.instance_id = "i-1";
  spec.vm_name = "cloister-i-1";
  spec.cpu_cores = 2;
  spec.ram_mb = 4096;
  spec.template_id = "tmpl-1";
  spec.tag = "v1";
  spec.description = "saved";
  auto first = WriteSimImage(spec, dir.Sub("a"), "v2");
  auto second = WriteSimImage(spec, dir.Sub("b"), "v2");
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(*first == *second);
  CHECK(Files(dir.Sub("a")) == Files(dir.Sub("b")));
  spec.instance_id = "i-2";
  auto other = WriteSimImage(spec, dir.Sub("c"), "v2");
  REQUIRE(other.ok());
  CHECK(*other != *first);
  const Json config = Json::parse(SimImageConfig(spec));
  CHECK(config["name"] == "cloister-i-1");
  CHECK(config["source"]["template_id"] == "tmpl-1");
  CHECK(config["state"] == "stopped");
  const std::string disk = SeededBytes("i-1", kSimDiskBytes);
  CHECK(disk.size() == kSimDiskBytes);
  CHECK(Files(dir.Sub("a"))["blobs/sha256/" + client::Sha256Digest(disk).substr(7)] == disk);
  CHECK(SeededBytes("i-1", 100) == disk.substr(0, 100));
}

}  // namespace
}  // namespace cloister::node
