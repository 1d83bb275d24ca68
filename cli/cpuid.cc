// `minihv cpuid host|show|baseline|compare|models|import`: look at CPU profiles and models.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/report.h"
#include "common/json_text.h"
#include "cpuid/cpuid.h"

namespace minihv::cli {

namespace {

using namespace minihv::cpuid;

// A profile JSON, or a raw CPUID dump in any format import_dump() reads.
Result<Profile> load_any(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return load_profile(path);
  return import_dump_file(path);
}

int write_json(const nlohmann::json& j, const std::string& out) {
  if (out.empty() || out == "-") {
    std::printf("%s\n", json_text(j, 2).c_str());
    return kExitOk;
  }
  std::ofstream f(out);
  f << json_text(j, 2) << "\n";
  if (!f) return fail(Status::from_errno("writing " + out));
  return kExitOk;
}

struct HostOptions {
  bool json = false, native = false;
};

int host_cmd(const HostOptions& o) {
  auto host = read_host_cpu();
  if (!host) return fail(host.status(), o.json);
  const Profile& p = o.native ? host->native : host->kvm;
  const std::string source = o.native ? "this processor's CPUID (ring 3)" : "KVM_GET_SUPPORTED_CPUID";
  if (o.json) return write_json(to_json(p, source), "");
  std::printf("%s: %s\n", source.c_str(), render_summary(p).c_str());
  if (host->enforcement.advisory) std::printf("CPU models are advisory here: %s\n", host->enforcement.reason.c_str());
  auto on = enabled_features(p);
  std::printf("features (%zu):\n%s", on.size(), wrap_names(on, "  ").c_str());
  std::printf("table (%zu entries):\n%s", p.leaves.size(), render_table(p).c_str());
  return kExitOk;
}

struct ShowOptions {
  std::string model = "host", host_profile;
  unsigned cpus = 1;
  bool json = false, applied = false;
};

int show_cmd(const ShowOptions& o) {
  HostCpu host;
  if (o.host_profile.empty()) {
    auto h = read_host_cpu();
    if (!h) return fail(h.status(), o.json);
    host = std::move(*h);
  } else {
    auto p = load_any(o.host_profile);
    if (!p) return fail(p.status(), o.json);
    host = HostCpu{*p, *p, Enforcement{}};
  }
  auto g = build_for_vm(o.model, host, BuildOptions{o.cpus, false});
  if (!g) return fail(g.status(), o.json);
  const auto hidden = hidden_features(o.model == "host" ? host.kvm : capability(host), g->table);
  if (g->advisory) std::fprintf(stderr, "minihv: %s\n", advisory_warning(*g).c_str());
  if (o.applied) {
    auto back = kvm_probe_applied(g->entries_for(0));
    if (!back) return fail(back.status(), o.json);
    Profile held = Profile::from_kvm(*back);
    const auto forced = hidden_features(held, g->table);  // on in KVM's copy, off in the model
    if (o.json) {
      nlohmann::json j = status_json(*g, &held);
      j["forced_by_kvm"] = forced;
      return write_json(j, "");
    }
    std::printf("model %s: KVM_GET_CPUID2 after KVM_SET_CPUID2 on a scratch vCPU\n", o.model.c_str());
    std::printf("features KVM turned on against the model (%zu):\n%s", forced.size(), wrap_names(forced, "  ").c_str());
    std::printf("table KVM holds (%zu entries):\n%s", held.leaves.size(), render_table(held).c_str());
    return kExitOk;
  }
  if (o.json) {
    nlohmann::json j = status_json(*g);
    j["hidden"] = hidden;
    j["cpus"] = o.cpus;
    j["table"] = to_json(g->table);
    return write_json(j, "");
  }
  auto on = enabled_features(g->table);
  std::printf("model %s, %u vCPU%s: %s\n", o.model.c_str(), o.cpus, o.cpus == 1 ? "" : "s",
              render_summary(g->table).c_str());
  if (g->advisory) std::printf("advisory: %s\n", g->reason.c_str());
  std::printf("features on (%zu):\n%s", on.size(), wrap_names(on, "  ").c_str());
  std::printf("hidden by the model (%zu):\n%s", hidden.size(), wrap_names(hidden, "  ").c_str());
  std::printf("table for vCPU 0 (%zu entries):\n%s", g->table.leaves.size(), render_table(g->table).c_str());
  return kExitOk;
}

struct BaselineOptions {
  std::vector<std::string> inputs;
  std::string out;
};

int baseline_cmd(const BaselineOptions& o) {
  std::vector<Profile> profiles;
  for (const std::string& in : o.inputs) {
    auto p = load_any(in);
    if (!p) return fail(p.status());
    profiles.push_back(std::move(*p));
  }
  auto b = baseline(profiles);
  if (!b) return fail(b.status());
  std::string source = "baseline of";
  for (const std::string& in : o.inputs) source += " " + in;
  int rc = write_json(to_json(*b, source), o.out);
  if (rc == kExitOk && !o.out.empty() && o.out != "-")
    std::fprintf(stderr, "minihv: %s: %zu features common to %zu profiles\n", o.out.c_str(),
                 enabled_features(*b).size(), profiles.size());
  return rc;
}

struct CompareOptions {
  std::string guest, host;
  bool json = false;
};

int compare_cmd(const CompareOptions& o) {
  auto guest = load_any(o.guest);
  if (!guest) return fail(guest.status(), o.json);
  Profile host;
  if (o.host.empty()) {
    auto h = read_host_cpu();
    if (!h) return fail(h.status(), o.json);
    host = capability(*h);
  } else {
    auto h = load_any(o.host);
    if (!h) return fail(h.status(), o.json);
    host = std::move(*h);
  }
  Comparison c = compare(*guest, host);
  if (o.json) {
    const nlohmann::json j = {{"compatible", c.compatible()},         {"vendor_mismatch", c.vendor_mismatch},
                              {"guest_vendor", c.guest_vendor},         {"host_vendor", c.host_vendor},
                              {"missing", c.missing},                   {"guest_phys_bits", c.guest_phys_bits},
                              {"host_phys_bits", c.host_phys_bits}};
    std::printf("%s\n", json_text(j, 2).c_str());
  } else {
    std::printf("%s\n", c.describe().c_str());
  }
  return c.compatible() ? kExitOk : kExitFailure;
}

int models_cmd(bool markdown) {
  if (markdown) {
    std::fputs(models_markdown().c_str(), stdout);
    return kExitOk;
  }
  for (const ModelInfo& m : builtin_models()) std::printf("%-10s %s\n", std::string(m.name).c_str(), std::string(m.summary).c_str());
  std::printf("%-10s %s\n", "FILE.json", "exactly the features of a profile (cpuid host --json, cpuid baseline)");
  return kExitOk;
}

}  // namespace

std::vector<Command> add_cpuid_commands(CLI::App& app) {
  CLI::App* cpuid = app.add_subcommand("cpuid", "CPU profiles and models: what a guest's CPUID says");
  cpuid->require_subcommand(1);
  std::vector<Command> out;

  auto ho = std::make_shared<HostOptions>();
  CLI::App* host = cpuid->add_subcommand("host", "This host's CPUID as KVM offers it (or --native)");
  host->add_flag("--json", ho->json, "Print the profile as JSON");
  host->add_flag("--native", ho->native, "The processor's own CPUID instead of KVM_GET_SUPPORTED_CPUID");
  out.push_back({host, [ho] { return host_cmd(*ho); }});

  auto so = std::make_shared<ShowOptions>();
  CLI::App* show = cpuid->add_subcommand("show", "The exact table a VM with this model gets, features on and hidden");
  show->add_option("--model", so->model, "host, compat, x86-64-v1..v4, or a profile .json")->capture_default_str();
  show->add_option("--cpus", so->cpus, "Number of vCPUs (topology leaves)")->capture_default_str()->check(CLI::Range(1u, 255u));
  show->add_option("--host-profile", so->host_profile, "Pretend the host is this profile/dump (not this machine)");
  show->add_flag("--json", so->json, "Print JSON: model, features, hidden, advisory, table");
  show->add_flag("--applied", so->applied,
                 "Give the table to a scratch vCPU and show what KVM holds (KVM_GET_CPUID2)");
  out.push_back({show, [so] { return show_cmd(*so); }});

  auto bo = std::make_shared<BaselineOptions>();
  CLI::App* base = cpuid->add_subcommand("baseline", "The common feature set of several host profiles");
  base->add_option("profiles", bo->inputs, "Profile JSON files or raw CPUID dumps")->required();
  base->add_option("-o,--output", bo->out, "Write the baseline profile here (default: stdout)");
  out.push_back({base, [bo] { return baseline_cmd(*bo); }});

  auto co = std::make_shared<CompareOptions>();
  CLI::App* cmp = cpuid->add_subcommand("compare", "Can a guest with this profile run on the host? (exit 0 yes, 1 no)");
  cmp->add_option("--guest", co->guest, "The guest's profile (JSON or raw dump)")->required();
  cmp->add_option("--host", co->host, "The host's profile (default: this host)");
  cmp->add_flag("--json", co->json, "Print JSON");
  out.push_back({cmp, [co] { return compare_cmd(*co); }});

  auto markdown = std::make_shared<bool>(false);
  CLI::App* models = cpuid->add_subcommand("models", "List the CPU models (--markdown: docs/cpu-models.md)");
  models->add_flag("--markdown", *markdown, "Print docs/cpu-models.md");
  out.push_back({models, [markdown] { return models_cmd(*markdown); }});

  auto io = std::make_shared<std::pair<std::string, std::string>>();
  CLI::App* imp = cpuid->add_subcommand("import", "Convert a raw CPUID dump (AIDA64, libcpuid, cpuid -r) to a profile");
  imp->add_option("dump", io->first, "The dump file")->required();
  imp->add_option("-o,--output", io->second, "Write the profile here (default: stdout)");
  out.push_back({imp, [io] {
                   auto p = import_dump_file(io->first);
                   if (!p) return fail(p.status());
                   return write_json(to_json(*p, "imported from " + io->first), io->second);
                 }});
  return out;
}

}  // namespace minihv::cli
