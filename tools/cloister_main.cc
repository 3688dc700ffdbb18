// cloister: the operator's command-line tool for a cloister data directory.
//
//   cloister audit export --data DIR [filters] [--format jsonl|csv]   events to stdout
//   cloister audit verify --data DIR                                   check the hash chain
//   cloister demo --data DIR [--events N]                              append a demo story
//   cloister replay --data DIR [--to SEQ | --diff A B | --step ...]    views at a point in time
//   cloister pki init|issue|revoke|crl --dir DIR ...                   a small CA for mTLS
//   cloister call METHOD PATH [BODY] --url URL [credentials]           one API request
//   cloister push DIR REPO:TAG --registry URL [credentials]            OCI layout to the registry
//   cloister pull REPO:TAG DIR --registry URL [credentials]            and back
//   cloister list [REPO] --registry URL [credentials] [--json]         templates, tags, versions
//   cloister revert REPO [--tag T | --version N] --registry URL ...    remove a tag and later ones
//   cloister registry gc --data DIR [--delete] [--grace 1h]            collect unreferenced blobs
//
// Exit status: 0 success; 1 the log is corrupt or an operation failed; 2 bad arguments (including
// a data directory that holds no log). Errors are one line on stderr.
//
// CLI11 reports parse errors and --help by throwing; those exceptions are caught here, at the
// boundary, and nothing below main throws.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "log/hash.h"
#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "reducers/view_json.h"
#include "client/controller_client.h"
#include "tools/audit.h"
#include "tools/demo.h"
#include "tools/event_format.h"
#include "tools/pki.h"
#include "tools/registry_cli.h"
#include "tools/registry_gc.h"
#include "tools/replay.h"
#include "tools/text_format.h"

namespace cloister::tools {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // Corruption, or the operation failed (I/O, busy, ...).
constexpr int kExitUsage = 2;    // Bad arguments; nothing was read or written.

// Every option value, as typed; parsed after CLI11 has matched the command line.
struct Args {
  std::string data;
  ExportArgs export_args;
  std::string from;
  std::string to;
  std::string since;
  std::string until;
  std::string actor;
  std::string events;
  ReplayArgs replay;
  std::string replay_from;
  std::string replay_to;
  // pki
  std::string pki_dir;
  std::string pki_subject = "/O=cloister/CN=cloister CA";
  uint32_t pki_days = 365;
  IssueRequest issue;
  std::string issue_subject;
  std::string serial;
  // call
  std::string call_method;
  std::string call_path;
  std::string call_body;
  std::string call_url = "http://127.0.0.1:8090";
  client::Credentials credentials;
  std::string cacert;
  bool skip_tls_verification = false;
  // push, pull, list, revert
  RegistryTarget registry;
  std::string image;
  std::string layout_dir;
  std::string repository;
  bool json = false;
  RevertArgs revert;
  std::string revert_tag;
  std::string revert_version;
  // registry gc
  bool gc_delete = false;
  std::string gc_grace = "1h";
};

struct Commands {
  CLI::App* audit_export = nullptr;
  CLI::App* audit_verify = nullptr;
  CLI::App* demo = nullptr;
  CLI::App* replay = nullptr;
  CLI::App* pki_init = nullptr;
  CLI::App* pki_issue = nullptr;
  CLI::App* pki_revoke = nullptr;
  CLI::App* pki_crl = nullptr;
  CLI::App* call = nullptr;
  CLI::App* push = nullptr;
  CLI::App* pull = nullptr;
  CLI::App* list = nullptr;
  CLI::App* revert = nullptr;
  CLI::App* registry_gc = nullptr;
  // Options whose presence matters (an empty value is still a value).
  CLI::Option* from = nullptr;
  CLI::Option* to = nullptr;
  CLI::Option* since = nullptr;
  CLI::Option* until = nullptr;
  CLI::Option* actor = nullptr;
  CLI::Option* events = nullptr;
  CLI::Option* replay_from = nullptr;
  CLI::Option* replay_to = nullptr;
  CLI::Option* revert_tag = nullptr;
  CLI::Option* revert_version = nullptr;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "cloister: %s\n", message.c_str());
  return kExitFailure;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "cloister: %s\n", message.c_str());
  return kExitUsage;
}

// Maps an error from opening or reading the log to the exit status and message for it.
int LogError(const Status& status) {
  switch (status.code()) {
    case StatusCode::kCorruption:
      std::fprintf(stderr, "corrupt: %s\n", status.message().c_str());
      return kExitFailure;
    case StatusCode::kNotFound:
    case StatusCode::kInvalidArgument:
      return Usage(status.message());
    default:
      return Fail(status.ToString());
  }
}

std::string TypeList() {
  std::string list;
  for (const char* name : PayloadTypeNames()) {
    list += list.empty() ? "" : ", ";
    list += name;
  }
  return list;
}

void AddExport(CLI::App* audit, Args* args, Commands* commands) {
  CLI::App* cmd = audit->add_subcommand(
      "export", "Write verified events to stdout as JSON lines (default) or CSV, in seq order");
  cmd->add_option("--data", args->data, "Data directory holding the event log")
      ->type_name("DIR")
      ->required();
  commands->from =
      cmd->add_option("--from", args->from, "First seq to export (default: 1)")->type_name("SEQ");
  commands->to =
      cmd->add_option("--to", args->to, "Last seq to export (default: the head)")->type_name("SEQ");
  commands->since = cmd->add_option("--since", args->since,
                                    "Only events with time >= TIME, RFC 3339: "
                                    "2026-11-24T12:00:00Z, 2026-11-24T13:00:00.5+01:00")
                        ->type_name("TIME");
  commands->until =
      cmd->add_option("--until", args->until, "Only events with time <= TIME (RFC 3339)")
          ->type_name("TIME");
  cmd->add_option("--type", args->export_args.types,
                  "Only events of this payload type: NodeJoined, nodejoined or node_joined "
                  "(repeat the option or separate with commas for several)")
      ->type_name("TYPE")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->delimiter(',');
  commands->actor =
      cmd->add_option("--actor", args->actor, "Only events whose actor id is exactly ID")
          ->type_name("ID");
  cmd->add_option("--format", args->export_args.format,
                  "Output format: jsonl or csv (default: jsonl)")
      ->type_name("FORMAT");
  cmd->footer(
      "The log is opened read-only and read in one consistent snapshot, so a running writer is "
      "fine. Every event is verified (FlatBuffers and hash chain) before it is written; on "
      "corruption the events before it are written, then 'corrupt: <message naming the seq>' "
      "goes to stderr.\n"
      "Each JSON line: {\"seq\",\"time\" (RFC 3339 UTC, nanoseconds),\"actor\":{\"kind\",\"id\","
      "\"groups\"},\"request_id\",\"type\",\"payload\":{every field of the payload},\"hash\" (hex "
      "of the chain hash at this seq)}. Digests are hex, enums are names, absent scalars are "
      "their defaults, absent strings and tables are null. A type this build does not know is "
      "\"Unknown(N)\" with an empty payload.\n"
      "CSV columns: seq,time,actor_kind,actor_id,request_id,type,payload,hash; payload is the JSON "
      "object, quoted.\n"
      "Filters combine with AND; seq and time bounds are inclusive.\n"
      "Payload types: " +
      TypeList() +
      "\n"
      "Exit status: 0 exported; 1 corruption or a read error; 2 bad arguments or no log in DIR.");
  commands->audit_export = cmd;
}

void AddVerify(CLI::App* audit, Args* args, Commands* commands) {
  CLI::App* cmd = audit->add_subcommand(
      "verify", "Verify the whole hash chain and print the head: ok: head seq N hash <64 hex>");
  cmd->add_option("--data", args->data, "Data directory holding the event log")
      ->type_name("DIR")
      ->required();
  cmd->footer(
      "Checks that every event passes the FlatBuffers verifier, that seqs have no gaps, that each "
      "event's prev_hash is the hash of the event before it, and that the chain ends at the "
      "stored head. An empty log prints head seq 0 and 64 zeros. Read-only; a running writer is "
      "fine.\n"
      "Exit status: 0 the chain verifies; 1 corruption ('corrupt: <message naming the first bad "
      "seq>' on stderr) or a read error; 2 bad arguments or no log in DIR.");
  commands->audit_verify = cmd;
}

void AddDemo(CLI::App* app, Args* args, Commands* commands) {
  CLI::App* cmd = app->add_subcommand(
      "demo", "Append a short, realistic story of events to a log, then print the count and head");
  cmd->add_option("--data", args->data, "Data directory of the event log")
      ->type_name("DIR")
      ->required();
  commands->events = cmd->add_option("--events", args->events,
                                     "Number of events to append (default: 12, at most " +
                                         std::to_string(kDemoEventsMax) + ")")
                         ->type_name("N");
  cmd->footer(
      "The story, appended the way producers append (one append per command, with actors and "
      "request ids): a config change, a node group, a node joining it, an API key, a TAP "
      "challenge and session, a VM requested, scheduled and started, a failed authentication, a "
      "denied access. Past 12 events, VM lifecycles with node heartbeats repeat. Opens DIR for "
      "writing (created if missing), so no other writer may have it open.\n"
      "Then try: cloister audit export --data DIR; cloister audit verify --data DIR\n"
      "Exit status: 0 appended; 1 an append or the open failed (e.g. another writer); 2 bad "
      "arguments.");
  commands->demo = cmd;
}

void AddReplay(CLI::App* app, Args* args, Commands* commands) {
  CLI::App* cmd = app->add_subcommand(
      "replay",
      "Rebuild the views (config, nodes, node groups, VM instances) as they were at a "
      "seq, show what changed between two seqs, or step through events");
  cmd->add_option("--data", args->data, "Data directory holding the event log")
      ->type_name("DIR")
      ->required();
  commands->replay_to = cmd->add_option("--to", args->replay_to,
                                        "Show the views after event SEQ (default: the head); with "
                                        "--step, the last event shown")
                            ->type_name("SEQ");
  commands->replay_from = cmd->add_option("--from", args->replay_from,
                                          "With --step: the first event shown (default: 1)")
                              ->type_name("SEQ");
  cmd->add_option("--diff", args->replay.diff,
                  "Show what changed from the views at SEQ_A to those at SEQ_B")
      ->type_name("SEQ")
      ->expected(2);
  cmd->add_flag("--step", args->replay.step,
                "Print each event (seq, time, actor, type, fields) followed by the change it "
                "made to the views");
  cmd->add_option("--view", args->replay.view,
                  "Which view: " + reducers::ViewNameList() + " (default: all)")
      ->type_name("NAME");
  cmd->add_option("--format", args->replay.format, "Output format: json or text (default: json)")
      ->type_name("FORMAT");
  cmd->add_flag("--no-snapshots", args->replay.no_snapshots,
                "Replay every event from seq 1 instead of starting from a stored snapshot");
  cmd->footer(
      "The log and its snapshots (DIR/snapshots) are opened read-only, so a running cloisterd is "
      "fine, and so is a copy of a data directory. The views at a seq start from the newest "
      "snapshot at or below it whose hash matches the log; a damaged or foreign snapshot is "
      "skipped with a note on stderr, and the events after it are read and verified from the "
      "log.\n"
      "json: one pretty object keyed by view name (with seq and hash); --diff: {seq_from, "
      "seq_to, <view>: {added, removed, changed: {id: {before, after}}}}; --step: one line per "
      "event (the audit export line plus \"changes\"). text: one entity or change per line. "
      "Secret settings show as \"<secret>\".\n"
      "Exit status: 0 ok; 1 corruption ('corrupt: <message naming the seq>') or a read error; 2 "
      "bad arguments (an unknown view, a seq beyond the head, no log in DIR).");
  commands->replay = cmd;
}

void AddPki(CLI::App* app, Args* args, Commands* commands) {
  CLI::App* pki = app->add_subcommand(
      "pki", "A small CA for mTLS: init, issue, revoke, crl (files are plain PEM; see "
             "docs/auth.md)");
  pki->require_subcommand(1, 1);
  auto dir = [&](CLI::App* cmd) {
    cmd->add_option("--dir", args->pki_dir, "PKI directory")->type_name("DIR")->required();
  };
  CLI::App* init = pki->add_subcommand("init", "Create the CA: DIR/ca-key.pem, DIR/ca-crt.pem");
  dir(init);
  init->add_option("--subject", args->pki_subject, "CA subject (/O=.../CN=...)")
      ->capture_default_str();
  init->add_option("--days", args->pki_days, "Validity in days")->capture_default_str();
  commands->pki_init = init;
  CLI::App* issue = pki->add_subcommand(
      "issue", "Issue a certificate: DIR/NAME-key.pem and DIR/NAME-crt.pem, signed by the CA");
  dir(issue);
  issue->add_option("--name", args->issue.name, "File name stem")->required();
  issue->add_option("--subject", args->issue_subject,
                    "/O=Group[/O=Group2...]/CN=User: O= are the groups, CN= the user")
      ->required();
  issue->add_flag("--server", args->issue.server,
                  "A server certificate (serverAuth; needs --ip or --dns) instead of a client one");
  issue->add_option("--ip", args->issue.ips, "subjectAltName IP (repeatable)");
  issue->add_option("--dns", args->issue.dns, "subjectAltName DNS name (repeatable)");
  issue->add_option("--days", args->issue.days, "Validity in days")->capture_default_str();
  issue->footer("Prints the serial (hex), as `openssl x509 -serial` shows it.");
  commands->pki_issue = issue;
  CLI::App* revoke = pki->add_subcommand("revoke", "Revoke a serial and rewrite DIR/crl.pem");
  dir(revoke);
  revoke->add_option("--serial", args->serial, "Serial in hex")->required();
  commands->pki_revoke = revoke;
  CLI::App* crl = pki->add_subcommand("crl", "Rewrite DIR/crl.pem (all revocations)");
  dir(crl);
  crl->add_option("--days", args->pki_days, "Validity in days")->capture_default_str();
  commands->pki_crl = crl;
}

// The credential options of every command that talks to cloisterd (one kind at most).
void AddCredentials(CLI::App* cmd, client::Credentials* credentials, std::string* cacert,
                    bool* skip_tls_verification) {
  cmd->add_option("--root-token", credentials->root_token, "Root token (Basic)")
      ->envname("CLOISTER_ROOT_TOKEN");
  cmd->add_option("--api-key-id", credentials->api_key_id, "UAK id (TAP)");
  cmd->add_option("--api-key-string", credentials->api_key_string,
                  "UAK private key (PEM, or base64 PKCS#1 DER)");
  cmd->add_option("--api-key-file", credentials->api_key_file, "File with the UAK key");
  cmd->add_option("--cert", credentials->cert_file, "Client certificate (PEM)");
  cmd->add_option("--cert-key", credentials->cert_key_file, "Its private key (PEM)");
  cmd->add_option("--cacert", *cacert, "CA (PEM) to verify an HTTPS server");
  cmd->add_flag("--skip-tls-verification", *skip_tls_verification,
                "Do not verify the server's certificate");
}

void AddCall(CLI::App* app, Args* args, Commands* commands) {
  CLI::App* cmd = app->add_subcommand(
      "call", "Send one request to a cloisterd API, authenticated, and print the answer");
  cmd->add_option("method", args->call_method, "GET, POST, PUT or DELETE")->required();
  cmd->add_option("path", args->call_path, "Path and query, e.g. /api/v1/status")->required();
  cmd->add_option("body", args->call_body, "JSON body (optional)");
  cmd->add_option("--url", args->call_url, "Controller (or registry) URL")
      ->envname("CLOISTER_URL")->capture_default_str();
  AddCredentials(cmd, &args->credentials, &args->cacert, &args->skip_tls_verification);
  cmd->footer(
      "Prints the answer's envelope (one JSON line) on stdout. At most one credential kind. A "
      "TAP session is made for the call (hand + shake) and redone once after a 401.\n"
      "Exit status: 0 the answer is OK; 1 it is FAIL or the request failed; 2 bad arguments.");
  commands->call = cmd;
}

// --registry and the credentials, for push, pull, list and revert.
void AddRegistryTarget(CLI::App* cmd, Args* args) {
  cmd->add_option("--registry", args->registry.url,
                  "Registry URL (cloisterd's registry listener), http:// or https://")
      ->type_name("URL")
      ->envname("CLOISTER_REGISTRY")
      ->capture_default_str();
  AddCredentials(cmd, &args->registry.credentials, &args->registry.cacert,
                 &args->registry.insecure);
}

constexpr char kRegistryCredentialsFooter[] =
    "Credentials as for 'cloister call': at most one kind. A UAK makes a TAP session on the "
    "registry's own /tap/v1/hand and /tap/v1/shake, redone once after a 401. A URL with user "
    "info is refused: credentials go in their options (or CLOISTER_ROOT_TOKEN), never in the URL.";

void AddRegistryCommands(CLI::App* app, Args* args, Commands* commands) {
  CLI::App* push = app->add_subcommand(
      "push", "Push the image tagged TAG in an OCI image layout to the registry as REPOSITORY:TAG");
  push->add_option("layout", args->layout_dir,
                   "OCI image layout directory (oci-layout, index.json, blobs/sha256/...)")
      ->type_name("DIR")
      ->required();
  push->add_option("image", args->image, "REPOSITORY:TAG (a template name; a tag is immutable)")
      ->type_name("REPOSITORY:TAG")
      ->required();
  AddRegistryTarget(push, args);
  push->footer(
      "The image is the index.json entry whose org.opencontainers.image.ref.name is TAG (or the "
      "layout's only entry, if it has no name). Blobs the registry already holds are not sent; "
      "then the manifests, the tagged one last. The first push of a new REPOSITORY creates the "
      "template. Progress goes to stderr: on a terminal a bar per blob (done/total, MB/s), "
      "otherwise one line per blob sent; the result line goes to stdout.\n" +
      std::string(kRegistryCredentialsFooter) +
      "\nExit status: 0 pushed; 1 the registry refused or failed; 2 bad arguments (REPOSITORY:TAG, "
      "a DIR that is not an OCI layout or has no such tag, the URL or the credentials).");
  commands->push = push;

  CLI::App* pull =
      app->add_subcommand("pull", "Pull REPOSITORY:TAG or REPOSITORY@DIGEST from the registry "
                                  "into an OCI image layout");
  pull->add_option("image", args->image,
                   "REPOSITORY:TAG or REPOSITORY@sha256:HEX (a template name or id, and a tag "
                   "or a manifest digest)")
      ->type_name("REPOSITORY:TAG|REPOSITORY@DIGEST")
      ->required();
  pull->add_option("layout", args->layout_dir,
                   "OCI image layout directory (created if needed; an existing one is added to)")
      ->type_name("DIR")
      ->required();
  AddRegistryTarget(pull, args);
  pull->footer(
      "Every blob is verified against its digest as it arrives; blobs already in DIR are not "
      "fetched. index.json gets an entry named TAG (replacing one of the same name), or for a "
      "DIGEST an unnamed entry, the manifest checked against the digest. Progress "
      "as for push.\n" +
      std::string(kRegistryCredentialsFooter) +
      "\nExit status: 0 pulled; 1 the registry refused or failed, or a blob did not verify; 2 "
      "bad arguments.");
  commands->pull = pull;

  CLI::App* list = app->add_subcommand(
      "list", "List the registry's templates and their tags, or one template's versions");
  list->add_option("repository", args->repository, "A template's name or id (default: all)")
      ->type_name("REPOSITORY");
  list->add_flag("--json", args->json, "Print the answer's body as JSON instead of a table");
  AddRegistryTarget(list, args);
  list->footer(
      "Without REPOSITORY: GET /registry/v2/vm, one row per template (NAME, ID, TAGS, LATEST, "
      "SIZE, MODIFIED). With it: GET /registry/vm?id=REPOSITORY, one row per tag (VERSION, TAG, "
      "SIZE, CREATED, MANIFEST, DESCRIPTION). Sizes are decimal (1 MB = 10^6 bytes); --json "
      "gives them in bytes.\n" +
      std::string(kRegistryCredentialsFooter) +
      "\nExit status: 0 listed; 1 the registry refused or failed (e.g. 'VM not in the "
      "registry'); 2 bad arguments.");
  commands->list = list;

  CLI::App* revert = app->add_subcommand(
      "revert", "Remove a template's tag and every later one (default: its newest tag)");
  revert->add_option("template", args->revert.template_ref, "The template's name or id")
      ->type_name("REPOSITORY")
      ->required();
  commands->revert_tag =
      revert->add_option("--tag", args->revert_tag, "Revert from this tag")->type_name("TAG");
  commands->revert_version =
      revert->add_option("--version", args->revert_version, "Revert from this version number")
          ->type_name("N");
  commands->revert_tag->excludes(commands->revert_version);
  AddRegistryTarget(revert, args);
  revert->footer(
      "DELETE /registry/revert?id=...[&tag=|&version=]; prints the tags removed. The manifests "
      "only they named leave the template (an index's child manifests stay, untagged); the "
      "bytes stay until 'cloister registry gc --delete' collects them.\n" +
      std::string(kRegistryCredentialsFooter) +
      "\nExit status: 0 reverted; 1 the registry refused or failed (no such template, tag or "
      "version); 2 bad arguments.");
  commands->revert = revert;

  CLI::App* registry =
      app->add_subcommand("registry", "Maintain the registry's storage in a data directory: gc");
  registry->require_subcommand(1, 1);
  CLI::App* gc = registry->add_subcommand(
      "gc", "List (default) or delete blobs no stored manifest is or refers to");
  gc->add_option("--data", args->data, "cloisterd's data directory (the log, registry/blobs)")
      ->type_name("DIR")
      ->required();
  gc->add_flag("--delete", args->gc_delete, "Delete the blobs listed (default: dry run)");
  gc->add_option("--grace", args->gc_grace,
                 "Keep unreferenced blobs younger than this (file mtime): 1h, 30m, 2h30m, 1d, 0")
      ->type_name("DURATION")
      ->capture_default_str();
  gc->footer(
      "The log and its snapshots are opened read-only and the views rebuilt: every digest that "
      "is a manifest stored in any template, or that one refers to (config, layers, an index's "
      "children), is live. The blobs in DIR/registry/blobs/sha256/<aa>/<hex> that are not live "
      "and whose mtime is older than the grace period are listed, one per line ('sha256:<hex> "
      "<size> bytes, <age> old'), or with --delete deleted ('deleted sha256:<hex> <size> "
      "bytes'); shard directories they leave empty are removed. The grace period protects "
      "pushes in progress, whose blobs arrive before their manifest. With --delete the log is "
      "read again before each delete. Nothing but blob files under blobs/sha256 is ever "
      "deleted; other entries there are reported and left alone. Safe beside a running "
      "cloisterd. Last line: 'N blobs, M bytes unreferenced; deleted K' or '...; dry run: "
      "nothing deleted'.\n"
      "Exit status: 0 done; 1 corruption, a read error or a blob that could not be deleted; 2 "
      "bad arguments (a bad DURATION, no log in DIR).");
  commands->registry_gc = gc;
}

CliIo ProcessIo() {
  CliIo io;
  io.out = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  io.err = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  };
  io.err_is_tty = isatty(2) == 1;
  io.now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  return io;
}

int RunRegistryGc(const Args& args) {
  Result<int64_t> grace = ParseDuration(args.gc_grace);
  if (!grace.ok()) {
    return Usage("registry gc: --grace: " + grace.status().message());
  }
  GcOptions options;
  options.data_dir = args.data;
  options.delete_blobs = args.gc_delete;
  options.grace_ns = *grace;
  Result<GcReport> report = CollectRegistryGarbage(options, [&](const GcBlob& blob) {
    std::printf("%s\n", GcBlobLine(blob, args.gc_delete).c_str());
    std::fflush(stdout);
  });
  if (!report.ok()) {
    return LogError(report.status());
  }
  for (const std::string& path : report->skipped) {
    std::fprintf(stderr, "cloister: note: left alone (not a blob): %s\n", path.c_str());
  }
  if (report->young > 0) {
    std::printf("kept %zu unreferenced blob%s (%llu bytes) younger than the grace period (%s)\n",
                report->young, report->young == 1 ? "" : "s",
                static_cast<unsigned long long>(report->young_bytes),
                FormatDuration(*grace).c_str());
  }
  if (report->rescued > 0) {
    std::printf("kept %zu blob%s referenced or touched since the walk\n", report->rescued,
                report->rescued == 1 ? "" : "s");
  }
  std::printf("%s\n", GcSummaryLine(*report, args.gc_delete).c_str());
  return report->delete_errors > 0 ? kExitFailure : kExitOk;
}

int RunCall(const Args& args) {
  Result<std::shared_ptr<client::ClientAuth>> auth = client::ClientAuth::Create(args.credentials);
  if (!auth.ok()) {
    return Usage(auth.status().message());
  }
  client::InitHttpClients();
  client::ControllerClientOptions options;
  options.url = args.call_url;
  options.ca_file = args.cacert;
  options.insecure = args.skip_tls_verification;
  options.cert_file = args.credentials.cert_file;
  options.key_file = args.credentials.cert_key_file;
  options.auth = auth.value();
  client::ControllerClient controller(options);
  Result<client::ControllerReply> reply =
      controller.Call(args.call_method, args.call_path, args.call_body, 30'000);
  if (!reply.ok()) {
    std::fprintf(stderr, "cloister: %s\n", reply.status().message().c_str());
    return kExitFailure;
  }
  nlohmann::ordered_json envelope;
  envelope["status"] = reply->ok ? "OK" : "FAIL";
  envelope["message"] = reply->message;
  if (!reply->body.is_null()) {
    envelope["body"] = reply->body;
  }
  std::printf("%s\n", envelope.dump().c_str());
  if (!reply->ok) {
    std::fprintf(stderr, "cloister: HTTP %d: %s\n", reply->http_status, reply->message.c_str());
  }
  return reply->ok ? kExitOk : kExitFailure;
}

int RunPki(Args* args, const Commands& commands) {
  Status status;
  if (commands.pki_init->parsed()) {
    Result<PkiSubject> subject = ParsePkiSubject(args->pki_subject);
    if (!subject.ok()) {
      return Usage("--subject: " + subject.status().message());
    }
    status = PkiInit(args->pki_dir, subject.value(), args->pki_days);
    if (status.ok()) {
      std::printf("CA: %s/ca-crt.pem (key: ca-key.pem)\n", args->pki_dir.c_str());
    }
  } else if (commands.pki_issue->parsed()) {
    Result<PkiSubject> subject = ParsePkiSubject(args->issue_subject);
    if (!subject.ok()) {
      return Usage("--subject: " + subject.status().message());
    }
    args->issue.subject = subject.value();
    Result<std::string> serial = PkiIssue(args->pki_dir, args->issue);
    status = serial.status();
    if (serial.ok()) {
      std::printf("%s\n", serial.value().c_str());
    }
  } else if (commands.pki_revoke->parsed()) {
    status = PkiRevoke(args->pki_dir, args->serial);
  } else {
    status = PkiCrl(args->pki_dir, args->pki_days);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "cloister: pki: %s\n", status.message().c_str());
    return status.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

void Configure(CLI::App* app, Args* args, Commands* commands) {
  app->require_subcommand(1, 1);
  app->footer(
      "Run 'cloister COMMAND --help' or 'cloister audit COMMAND --help' for a command's options.\n"
      "Exit status: 0 success; 1 corruption or a failed operation; 2 bad arguments.");
  CLI::App* audit = app->add_subcommand(
      "audit", "Read the event log: export events (export) or verify the hash chain (verify)");
  audit->require_subcommand(1, 1);
  AddExport(audit, args, commands);
  AddVerify(audit, args, commands);
  AddDemo(app, args, commands);
  AddReplay(app, args, commands);
  AddPki(app, args, commands);
  AddCall(app, args, commands);
  AddRegistryCommands(app, args, commands);
}

Result<std::unique_ptr<log::Log>> OpenReadOnly(const std::string& dir) {
  log::Options options;
  options.dir = dir;
  options.read_only = true;
  return log::Log::Open(options);
}

int RunExport(Args* args, const Commands& commands) {
  ExportArgs& export_args = args->export_args;
  // CLI11 binds plain strings; presence, not emptiness, says whether an option was given.
  const auto given = [](const CLI::Option* option, const std::string& value) {
    return option->count() > 0 ? std::optional<std::string>(value) : std::nullopt;
  };
  export_args.from = given(commands.from, args->from);
  export_args.to = given(commands.to, args->to);
  export_args.since = given(commands.since, args->since);
  export_args.until = given(commands.until, args->until);
  export_args.actor = given(commands.actor, args->actor);
  Result<ExportOptions> options = ParseExportArgs(export_args);
  if (!options.ok()) {
    return Usage(options.status().message());
  }
  Result<std::unique_ptr<log::Log>> log = OpenReadOnly(args->data);
  if (!log.ok()) {
    return LogError(log.status());
  }
  FdSink sink(1);
  Status s = Export(**log, *options, &sink);
  if (!s.ok()) {
    return LogError(s);
  }
  return kExitOk;
}

int RunVerify(const Args& args) {
  Result<std::unique_ptr<log::Log>> log = OpenReadOnly(args.data);
  if (!log.ok()) {
    return LogError(log.status());
  }
  Result<log::Head> head = Verify(**log);
  if (!head.ok()) {
    return LogError(head.status());
  }
  std::printf("%s\n", VerifyOkLine(*head).c_str());
  return kExitOk;
}

int RunDemo(const Args& args, const Commands& commands) {
  uint64_t events = kDemoEventsDefault;
  if (commands.events->count() > 0) {
    Result<uint64_t> parsed = ParseU64(args.events);
    if (!parsed.ok()) {
      return Usage("--events: " + parsed.status().message());
    }
    if (*parsed > kDemoEventsMax) {
      return Usage("--events: " + args.events + " exceeds the limit of " +
                   std::to_string(kDemoEventsMax));
    }
    events = *parsed;
  }
  log::Options options;
  options.dir = args.data;
  Result<std::unique_ptr<log::Log>> log = log::Log::Open(options);
  if (!log.ok()) {
    return LogError(log.status());
  }
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  Result<DemoResult> result = AppendDemoStory(log->get(), events, now_ns);
  if (!result.ok()) {
    return Fail("demo: " + result.status().ToString());
  }
  const log::Head head = (*log)->head();
  std::printf("appended %llu events (seq %llu..%llu) to %s; head seq %llu hash %s\n",
              static_cast<unsigned long long>(result->events),
              static_cast<unsigned long long>(result->seq_first),
              static_cast<unsigned long long>(result->seq_last), args.data.c_str(),
              static_cast<unsigned long long>(head.seq), log::HashHex(head.hash).c_str());
  return kExitOk;
}

int RunReplay(Args* args, const Commands& commands) {
  ReplayArgs& replay_args = args->replay;
  if (commands.replay_from->count() > 0) {
    replay_args.from = args->replay_from;
  }
  if (commands.replay_to->count() > 0) {
    replay_args.to = args->replay_to;
  }
  Result<ReplayOptions> options = ParseReplayArgs(replay_args);
  if (!options.ok()) {
    return Usage(options.status().message());
  }
  Result<std::unique_ptr<log::Log>> log = OpenReadOnly(args->data);
  if (!log.ok()) {
    return LogError(log.status());
  }
  // Snapshots only save time: a store that will not open is a note, not a failure.
  std::unique_ptr<log::SnapshotStore> snapshots;
  if (options->use_snapshots) {
    Result<std::unique_ptr<log::SnapshotStore>> store =
        log::SnapshotStore::Open(args->data, /*read_only=*/true);
    if (store.ok()) {
      snapshots = std::move(store.value());
    } else {
      std::fprintf(stderr, "cloister: note: snapshots not used: %s\n",
                   store.status().ToString().c_str());
    }
  }
  FdSink sink(1);
  std::vector<reducers::SnapshotRejection> rejected;
  Status s = Replay(**log, snapshots.get(), *options, &sink, &rejected);
  for (const reducers::SnapshotRejection& r : rejected) {
    std::fprintf(stderr, "cloister: note: snapshot %llu skipped: %s\n",
                 static_cast<unsigned long long>(r.seq), r.reason.c_str());
  }
  if (!s.ok()) {
    return LogError(s);
  }
  return kExitOk;
}

// CLI11 checks for a missing subcommand before it complains about a word it did not match, so
// `cloister frobnicate` would read "A subcommand is required"; name the word instead.
std::string ParseErrorMessage(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* deepest = &app;
  while (!deepest->get_subcommands().empty()) {
    deepest = deepest->get_subcommands().front();
  }
  const std::vector<std::string> unmatched = deepest->remaining();
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !unmatched.empty() &&
      deepest->get_require_subcommand_min() > 0) {
    std::string commands;
    for (const CLI::App* sub : deepest->get_subcommands({})) {
      commands += (commands.empty() ? "" : ", ") + sub->get_name();
    }
    return "unknown command '" + unmatched.front() + "'; expected one of: " + commands +
           " (see --help)";
  }
  return std::string(e.what()) + " (see --help)";
}

int Main(int argc, char** argv) {
  CLI::App app(
      "cloister: the operator's tool for a cloister data directory (an append-only, "
      "hash-chained event log in LMDB), its API (call) and its registry (push, pull, list, "
      "revert, registry gc).",
      "cloister");
  Args args;
  Commands commands;
  Configure(&app, &args, &commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // Prints the help of the command that was given --help, to stdout.
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Usage(ParseErrorMessage(app, e));
  }
  if (commands.audit_export->parsed()) {
    return RunExport(&args, commands);
  }
  if (commands.audit_verify->parsed()) {
    return RunVerify(args);
  }
  if (commands.demo->parsed()) {
    return RunDemo(args, commands);
  }
  if (commands.replay->parsed()) {
    return RunReplay(&args, commands);
  }
  if (commands.pki_init->parsed() || commands.pki_issue->parsed() ||
      commands.pki_revoke->parsed() || commands.pki_crl->parsed()) {
    return RunPki(&args, commands);
  }
  if (commands.call->parsed()) {
    return RunCall(args);
  }
  if (commands.registry_gc->parsed()) {
    return RunRegistryGc(args);
  }
  if (commands.push->parsed() || commands.pull->parsed() || commands.list->parsed() ||
      commands.revert->parsed()) {
    client::InitHttpClients();
    const CliIo io = ProcessIo();
    if (commands.push->parsed()) {
      return RunPush(args.registry, args.layout_dir, args.image, io);
    }
    if (commands.pull->parsed()) {
      return RunPull(args.registry, args.image, args.layout_dir, io);
    }
    if (commands.list->parsed()) {
      return RunList(args.registry, args.repository, args.json, io);
    }
    RevertArgs revert = args.revert;
    if (commands.revert_tag->count() > 0) {
      revert.tag = args.revert_tag;
    }
    if (commands.revert_version->count() > 0) {
      revert.version = args.revert_version;
    }
    return RunRevert(args.registry, revert, io);
  }
  return Usage("no command given (see --help)");
}

}  // namespace
}  // namespace cloister::tools

int main(int argc, char** argv) {
  // Only CLI11 throws, and only while parsing, which Main catches; this is the last resort for a
  // bad_alloc, so that it ends with a message rather than std::terminate.
  try {
    return cloister::tools::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cloister: %s\n", e.what());
    return 1;
  }
}
