// `minihv vm status|stats|pause|resume|stop|events --api SOCK`: steer or watch a running VM
// through its socket.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/format.h"
#include "cluster/child_output.h"
#include "common/json_text.h"
#include "common/units.h"
#include "cpuid/cpuid.h"
#include "vmm/api.h"

namespace minihv::cli {

namespace {

// The two CPUID tables of a status reply (the model's and the one KVM holds): about 1,400 lines.
constexpr const char* kCpuidTables[] = {"profile", "applied"};
constexpr size_t kEventLineBytes = 64 * 1024;

struct StatusOptions {
  std::string api;
  bool json = false;
  bool cpuid = false;
};

int fail(const std::string& message, bool json) {
  std::fprintf(stderr, "minihv: error: %s\n", message.c_str());
  if (json) std::printf("%s\n", json_text({{"ok", false}, {"error", message}}).c_str());
  return kExitFailure;
}

int call(const std::string& api, const std::string& cmd) {
  auto reply = api_call(api, {{"cmd", cmd}});
  if (!reply) return fail(reply.message(), /*json=*/true);
  std::printf("%s\n", json_text(*reply, 2).c_str());
  if (reply->value("ok", false)) return kExitOk;
  std::fprintf(stderr, "minihv: error: %s\n", reply->value("error", std::string("refused")).c_str());
  return kExitFailure;
}

std::string text(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

std::string vcpu_line(const nlohmann::json& st) {
  const auto vcpus = st.value("vcpus", nlohmann::json::array());
  std::string states;
  for (const auto& v : vcpus) states += (states.empty() ? "" : ", ") + text(v, "state");
  return std::to_string(st.value("cpus", 0u)) + (states.empty() ? "" : " (" + states + ")");
}

std::string disks_line(const nlohmann::json& st) {
  std::string out;
  for (const auto& d : st.value("disks", nlohmann::json::array()))
    if (d.is_string()) out += (out.empty() ? "" : ", ") + d.get<std::string>();
  return out.empty() ? "none" : out;
}

std::string cpu_line(const nlohmann::json& cpu) {
  std::string out = text(cpu, "model") + " (" + text(cpu, "vendor") + ", " +
                    std::to_string(cpu.value("features", nlohmann::json::array()).size()) + " features)";
  if (cpu.value("advisory", false)) out += "; advisory: " + text(cpu, "reason");
  return out;
}

std::string migration_line(const nlohmann::json& m) {
  if (!m.value("in_doubt", false)) return "nothing in doubt";
  return "IN DOUBT: " + json_text(m) + " (settle it with 'minihv migrate --resolve')";
}

void print_row(const char* label, const std::string& value) { std::printf("%-11s %s\n", label, value.c_str()); }

// The state first, one line per fact: no CPUID tables.
void print_short(const nlohmann::json& st) {
  print_row("state", text(st, "state"));
  if (st.contains("paused_reason")) print_row("paused by", text(st, "paused_reason"));
  if (st.contains("incoming")) {
    const auto& in = st["incoming"];
    print_row("incoming", text(in, "phase") + " on " + text(in, "address") +
                              (in.contains("peer") ? " (from " + text(in, "peer") + ")" : ""));
  }
  print_row("pid", std::to_string(st.value("pid", 0)));
  print_row("memory", format_size(st.value("mem_bytes", uint64_t{0})));
  print_row("vcpus", vcpu_line(st));
  print_row("uptime", format_duration(st.value("uptime_ms", uint64_t{0}) / 1000));
  if (!text(st, "kernel").empty()) print_row("kernel", text(st, "kernel"));
  if (!text(st, "cmdline").empty()) print_row("cmdline", text(st, "cmdline"));
  print_row("disks", disks_line(st));
  print_row("dirty log", text(st, "dirty_log"));
  if (st.contains("cpu")) print_row("cpu model", cpu_line(st["cpu"]));
  if (st.contains("migration")) print_row("migration", migration_line(st["migration"]));
}

void print_tables(const nlohmann::json& cpu) {
  for (const char* table : kCpuidTables) {
    if (!cpu.contains(table)) continue;
    auto p = cpuid::profile_from_json(cpu[table], std::string("status cpu.") + table);
    if (!p) {
      std::printf("cpu.%s: %s\n", table, p.message().c_str());
      continue;
    }
    std::printf("\nCPUID %s (%zu entries):\n%s", std::string(table) == "profile" ? "of the model" : "KVM holds for vCPU 0",
                p->leaves.size(), cpuid::render_table(*p).c_str());
  }
}

int status(const StatusOptions& o) {
  auto reply = api_call(o.api, {{"cmd", "status"}});
  if (!reply) return fail(reply.message(), o.json);
  if (!reply->value("ok", false)) return fail(reply->value("error", std::string("status refused")), o.json);
  nlohmann::json st = std::move(reply).value();
  if (!o.cpuid && st.contains("cpu"))
    for (const char* table : kCpuidTables) st["cpu"].erase(table);
  if (o.json) {
    std::printf("%s\n", json_text(st, 2).c_str());
    return kExitOk;
  }
  print_short(st);
  if (o.cpuid && st.contains("cpu")) print_tables(st["cpu"]);
  return kExitOk;
}

// Prints the VM's events, one JSON object per line, until the last one ("ended") or its socket goes.
int events(const std::string& api) {
  auto c = api_open_stream(api, {{"cmd", "events"}});
  if (!c) return fail(c.message(), /*json=*/false);
  cluster::LineSplitter split(kEventLineBytes);
  std::string bytes = std::move(c->early);
  char buf[4096];
  for (;;) {
    for (const auto& line : split.feed(bytes)) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && text(j, "event") == "ended") return kExitOk;
    }
    const ssize_t n = ::read(c->fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("the VM's socket closed before its \"ended\" event", /*json=*/false);
    bytes.assign(buf, static_cast<size_t>(n));
  }
}

}  // namespace

std::vector<Command> add_vm_commands(CLI::App& app) {
  CLI::App* vm = app.add_subcommand("vm", "Steer a running VM through its control socket");
  vm->require_subcommand(1);
  std::vector<Command> out;
  auto so = std::make_shared<StatusOptions>();
  CLI::App* st = vm->add_subcommand("status", "The VM's state, memory, vCPUs, uptime, disks (short)");
  st->add_option("--api", so->api, "The VM's control socket")->required();
  st->add_flag("--json", so->json, "Print the status as one JSON object");
  st->add_flag("--cpuid", so->cpuid, "Add the CPUID tables (the model's and what KVM holds: long)");
  out.push_back({st, [so] { return status(*so); }});
  for (const char* cmd : {"stats", "pause", "resume", "stop"}) {
    auto api = std::make_shared<std::string>();
    CLI::App* sub = vm->add_subcommand(cmd, std::string("Send '") + cmd + "' and print the JSON reply");
    sub->add_option("--api", *api, "The VM's control socket")->required();
    out.push_back({sub, [api, c = std::string(cmd)] { return call(*api, c); }});
  }
  auto events_api = std::make_shared<std::string>();
  CLI::App* ev = vm->add_subcommand("events", "Print the VM's events as JSON lines (what it missed first) until it ends");
  ev->add_option("--api", *events_api, "The VM's control socket")->required();
  out.push_back({ev, [events_api] { return events(*events_api); }});
  return out;
}

}  // namespace minihv::cli
