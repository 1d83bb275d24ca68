// `minihv migrate`: ask a running VM (through its control socket) to move to another minihv, and the
// VM-side handler of that request.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/report.h"
#include "cli/run_control.h"
#include "common/json_text.h"
#include "common/log.h"
#include "common/net.h"
#include "common/units.h"
#include "migrate/migration.h"
#include "vmm/api.h"

namespace minihv::cli {

namespace {

struct MigrateOptions {
  std::string api, to, compress = "auto";
  std::string resolve;  // ask | resume | end: settle a switchover left in doubt
  std::string tls_psk;  // key file (default: $MINIHV_TLS_PSK)
  bool insecure = false;
  unsigned streams = 1;
  uint64_t downtime_ms = migrate::kDefaultDowntimeMs;
  double max_time = migrate::kDefaultMaxSeconds;
  bool verify = false, json = false, no_zero_copy = false;
  uint64_t max_bandwidth_mib = 0;  // MiB/s, 0: no limit
};

void print_progress(const nlohmann::json& p) {
  if (p.contains("round")) {
    std::fprintf(stderr, "\rround %-3u remaining %10s  dirty %8.1f Mbit/s  link %8.1f Mbit/s  expected downtime %5llu ms  throttle %u%%   ",
                 p.value("round", 0u), format_size(p.value("remaining_bytes", uint64_t{0})).c_str(),
                 p.value("dirty_rate_mbps", 0.0), p.value("throughput_mbps", 0.0),
                 static_cast<unsigned long long>(p.value("expected_downtime_ms", uint64_t{0})), p.value("throttle", 0u));
  } else if (p.value("event", "") == "target_skipped") {
    std::fprintf(stderr, "target %s skipped: %s\n", p.value("address", "").c_str(), p.value("error", "").c_str());
  }
}

void print_summary(const nlohmann::json& r) {
  const auto& pages = r["pages"];
  std::printf("migration %s to %s: %llu ms total, %llu ms downtime (setup %llu ms), %u rounds, %u stream(s)\n",
              r.value("result", "?").c_str(), r.value("target", "?").c_str(),
              static_cast<unsigned long long>(r.value("total_ms", uint64_t{0})),
              static_cast<unsigned long long>(r.value("downtime_ms", uint64_t{0})),
              static_cast<unsigned long long>(r.value("setup_ms", uint64_t{0})), r.value("rounds", 0u),
              r.value("streams", 0u));
  std::printf("  RAM %s, sent %s at %.0f Mbit/s; pages: %llu zero, %llu unchanged, %llu lz4, %llu raw%s\n",
              format_size(r.value("ram_bytes", uint64_t{0})).c_str(), format_size(r.value("bytes_sent", uint64_t{0})).c_str(),
              r.value("throughput_mbps", 0.0), static_cast<unsigned long long>(pages.value("zero", uint64_t{0})),
              static_cast<unsigned long long>(pages.value("unchanged", uint64_t{0})),
              static_cast<unsigned long long>(pages.value("lz4", uint64_t{0})),
              static_cast<unsigned long long>(pages.value("raw", uint64_t{0})),
              r.value("verified", false) ? "; memory verified" : "");
  std::printf("  TLS: %s (handshakes %.1f ms)\n", r.value("tls", std::string("?")).c_str(), r.value("handshake_ms", 0.0));
  if (r.value("result", "") != "ok") std::printf("  error: %s\n", r.value("error", "").c_str());
  if (r.value("result", "") == "in-doubt")
    std::printf("  IN DOUBT: the VM stays paused here; settle it with `minihv migrate --api SOCK --resolve "
                "ask|resume|end`\n");
}

// `migrate --resolve ACTION`: settles a switchover left in doubt (the VM paused on this side).
int run_resolve(const MigrateOptions& o) {
  if (!o.to.empty()) return fail(Status::invalid("--resolve settles the last migration: it takes no --to"), o.json);
  if (o.resolve != "ask" && o.resolve != "resume" && o.resolve != "end")
    return fail(Status::invalid("--resolve must be ask, resume or end, not '" + o.resolve + "'"), o.json);
  constexpr int kResolveSilenceMs = 30'000;
  auto reply = api_call(o.api, {{"cmd", "migrate-resolve"}, {"action", o.resolve}}, kResolveSilenceMs, {});
  if (!reply) return fail(reply.status(), o.json);
  if (o.json) std::printf("%s\n", json_text(*reply).c_str());
  if (!reply->value("ok", false)) {
    std::fprintf(stderr, "minihv: error: %s\n", reply->value("error", std::string("not settled")).c_str());
    return reply->value("result", "") == "in-doubt" ? kExitInDoubt : kExitFailure;
  }
  if (!o.json) std::printf("%s\n", reply->value("settled", std::string("settled")).c_str());
  return kExitOk;
}

// Some of the guest went on the wire: a summary of what moved is worth printing even for a failure
// (a migration refused at HELLO sent a few hundred bytes of talk, none of the guest).
bool anything_sent(const nlohmann::json& report) {
  uint64_t pages = 0;
  const nlohmann::json counts = report.value("pages", nlohmann::json::object());
  for (const auto& [kind, n] : counts.items())
    if (n.is_number_unsigned()) pages += n.get<uint64_t>();
  return pages > 0;
}

// The report of a migration that ran (or tried to): text or JSON on stdout, and a failure on stderr.
int report_migration(nlohmann::json report, bool json) {
  const std::string result = report.value("result", "");
  const bool ok = result == "ok";
  report["ok"] = ok;
  if (!ok && report.value("error", "").empty()) report["error"] = "migration " + (result.empty() ? "failed" : result);
  if (json)
    std::printf("%s\n", json_text(report).c_str());
  else if (ok || anything_sent(report))
    print_summary(report);
  if (ok) return kExitOk;
  const bool in_doubt = result == "in-doubt";
  std::fprintf(stderr, "minihv: error: migration %s: %s\n", in_doubt ? "in doubt" : "failed",
               report["error"].get<std::string>().c_str());
  return in_doubt ? kExitInDoubt : kExitFailure;
}

int run_migrate(const MigrateOptions& o) {
  if (!o.resolve.empty()) return run_resolve(o);
  if (o.to.empty())
    return fail(Status::invalid("--to is required (or --resolve to settle a migration left in doubt)"), o.json);
  auto targets = net::parse_endpoint_list(o.to);
  if (!targets) return fail(Status::invalid("--to: " + targets.message()), o.json);
  auto compression = migrate::parse_compression(o.compress);
  if (!compression) return fail(Status::invalid("--compress: " + compression.message()), o.json);
  auto key = migration_file_key(o.tls_psk, o.insecure);
  if (!key) return fail(key.status(), o.json);
  const bool tty = isatty(STDERR_FILENO) && !o.json;
  nlohmann::json req = {{"cmd", "migrate"},           {"to", o.to},
                        {"streams", o.streams},       {"compress", o.compress},
                        {"downtime_ms", o.downtime_ms}, {"max_time_s", o.max_time},
                        {"verify", o.verify},         {"zero_copy", !o.no_zero_copy},
                        {"max_bandwidth", o.max_bandwidth_mib << 20}};
  if (*key) {
    std::string hex = keys::to_text(**key);
    hex.pop_back();  // the newline
    req["psk"] = hex;
  } else {
    req["insecure"] = true;
  }
  // A migration reports at least once per round; a silence this long means the VMM is stuck.
  constexpr int kSilenceMs = 600'000;
  auto reply = api_call(o.api, req, kSilenceMs, [&](const nlohmann::json& p) {
    if (tty) print_progress(p);
  });
  if (tty) std::fprintf(stderr, "\n");
  if (!reply) return fail(Status::error("migration failed: " + reply.message()), o.json);
  if (!reply->contains("result"))  // refused before it started (busy, bad request)
    return fail(Status::error("migration failed: " + reply->value("error", std::string("refused by the VM"))), o.json);
  return report_migration(std::move(*reply), o.json);
}

}  // namespace

nlohmann::json MigrationControl::migrate(Vm& vm, const nlohmann::json& req, const ApiServer::Progress& progress) {
  migrate::MigrationGuard guard(busy_);
  if (!guard.owned()) return {{"ok", false}, {"error", "a migration of this VM is already in progress"}};
  if (std::string why = in_doubt_reason(); !why.empty()) return {{"ok", false}, {"error", why}};
  migrate::SourceOptions o;
  auto targets = net::parse_endpoint_list(req.value("to", ""));
  if (!targets) return {{"ok", false}, {"error", "to: " + targets.message()}};
  o.targets = *targets;
  auto c = migrate::parse_compression(req.value("compress", "auto"));
  if (!c) return {{"ok", false}, {"error", "compress: " + c.message()}};
  o.compression = *c;
  const unsigned streams = req.value("streams", 1u);
  if (streams < 1 || streams > migrate::kMaxStreams)
    return {{"ok", false}, {"error", "streams must be 1.." + std::to_string(migrate::kMaxStreams)}};
  o.streams = static_cast<uint16_t>(streams);
  o.downtime_ms = req.value("downtime_ms", migrate::kDefaultDowntimeMs);
  o.max_seconds = req.value("max_time_s", migrate::kDefaultMaxSeconds);
  o.verify = req.value("verify", false);
  o.zero_copy = req.value("zero_copy", true);
  o.max_bandwidth = req.value("max_bandwidth", uint64_t{0});
  auto psk = migration_psk_of(req);
  if (!psk) return {{"ok", false}, {"error", psk.message()}};
  o.psk = *psk;
  if (vm.state() != VmState::kRunning) return {{"ok", false}, {"error", std::string("the VM is ") + to_string(vm.state())}};
  migrate::Summary s = migrate::migrate_out(vm, o, progress);
  nlohmann::json r = s.to_json();
  r["ok"] = s.ok;
  if (s.ok) vm.end(VmEnd::kMigrated, "the VM migrated to " + s.target);
  if (s.in_doubt) {
    std::lock_guard lock(mu_);
    in_doubt_ = InDoubt{o.targets, s.session_id, s.error, o.psk};
    LOG_ERROR("migration in doubt, the VM stays paused: %s", s.error.c_str());
  }
  return r;
}

nlohmann::json MigrationControl::resolve(Vm& vm, const nlohmann::json& req) {
  migrate::MigrationGuard guard(busy_);
  if (!guard.owned()) return {{"ok", false}, {"error", "a migration of this VM is in progress"}};
  std::optional<InDoubt> doubt;
  {
    std::lock_guard lock(mu_);
    doubt = in_doubt_;
  }
  if (!doubt) return {{"ok", false}, {"error", "no migration of this VM is in doubt"}};
  // The busy guard keeps migrate, pause, resume and other resolves out; status may read meanwhile.
  auto settled = [&] {
    std::lock_guard lock(mu_);
    in_doubt_.reset();
  };
  const std::string action = req.value("action", "ask");
  if (action == "ask") {
    constexpr auto kAskTimeout = std::chrono::seconds(2);
    migrate::Asked a = migrate::ask_committed(doubt->targets, doubt->session, kAskTimeout, doubt->psk);
    if (a.answer != migrate::CommitAnswer::kCommitted)
      return {{"ok", false}, {"result", "in-doubt"},
              {"error", "still in doubt: " + a.detail +
                            " (if you know the destination does not run the VM: --resolve resume; if it does: "
                            "--resolve end)"}};
    settled();
    vm.end(VmEnd::kMigrated, "the destination confirmed the migration: " + a.detail);
    return {{"ok", true}, {"result", "ok"}, {"settled", "the destination committed: the VM runs there"}};
  }
  if (action == "resume") {
    Status st = vm.resume();
    if (!st) return {{"ok", false}, {"error", st.message()}};
    settled();
    LOG_WARN("in-doubt migration settled by the operator: the VM resumes here");
    return {{"ok", true}, {"result", "resumed"}, {"settled", "the VM runs here again"}};
  }
  if (action == "end") {
    settled();
    vm.end(VmEnd::kMigrated, "in-doubt migration settled by the operator: the VM runs on the destination");
    return {{"ok", true}, {"result", "ended"}, {"settled", "the VM ended here"}};
  }
  return {{"ok", false}, {"error", "resolve action must be ask, resume or end, not '" + action + "'"}};
}

std::string MigrationControl::in_doubt_reason() const {
  std::lock_guard lock(mu_);
  if (!in_doubt_) return "";
  return "the VM's last migration is in doubt (" + in_doubt_->why +
         "); it stays paused until `minihv migrate --resolve ask|resume|end` settles it";
}

nlohmann::json MigrationControl::status() const {
  std::lock_guard lock(mu_);
  if (!in_doubt_) return {{"in_doubt", false}};
  std::string targets;
  for (const auto& t : in_doubt_->targets) targets += (targets.empty() ? "" : ",") + t.text();
  return {{"in_doubt", true}, {"targets", targets}, {"error", in_doubt_->why}};
}

Command add_migrate_command(CLI::App& app) {
  auto o = std::make_shared<MigrateOptions>();
  CLI::App* m = app.add_subcommand("migrate", "Live-migrate a running VM to another minihv (`run --incoming`)");
  m->add_option("--api", o->api, "The running VM's control socket")->required();
  m->add_option("--to", o->to, "Destination(s) HOST:PORT[,HOST:PORT...], tried in order");
  m->add_option("--resolve", o->resolve,
                "Settle a migration left in doubt (the ACK after COMMIT never came): ask (the destination "
                "again), resume (here: the destination does not run it) or end (here: it does)");
  m->add_option("--streams", o->streams, "Parallel TCP streams")->check(CLI::Range(1, 16))->capture_default_str();
  m->add_option("--compress", o->compress, "auto, lz4 or none")->capture_default_str();
  m->add_option("--downtime-ms", o->downtime_ms, "Switch over when the rest fits in this")->capture_default_str();
  m->add_option("--max-time", o->max_time, "Give up after this many seconds (the VM stays)")->capture_default_str();
  m->add_option("--max-bandwidth", o->max_bandwidth_mib,
                "Send at most this many MiB/s over all streams until the VM pauses (0: no limit)")
      ->capture_default_str();
  m->add_flag("--verify", o->verify, "Compare whole-memory xxh3 digests on both sides");
  m->add_flag("--no-zero-copy", o->no_zero_copy,
              "Copy every raw page into the batches instead of sending it from guest memory");
  m->add_option("--tls-psk", o->tls_psk,
                "Key file (64 hex digits, mode 0600) both ends hold: the streams run TLS 1.3 with a key derived "
                "from it (default: $MINIHV_TLS_PSK)");
  m->add_flag("--insecure", o->insecure, "Plain TCP, no key: anyone on the network can read or break the move");
  m->add_flag("--json", o->json, "Print one JSON object instead of text");
  return {m, [o] { return run_migrate(*o); }};
}

}  // namespace minihv::cli
