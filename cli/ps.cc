// `minihv ps [--json]`: every VM this host runs (the registry in vmm/registry.h), with the state
// each one's control socket reports.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/json_text.h"
#include "common/units.h"
#include "vmm/api.h"
#include "vmm/registry.h"

namespace minihv::cli {

namespace {

// A VM that does not answer `status` this fast is shown "unreachable" (a hung or stopped VMM).
constexpr int kStatusTimeoutMs = 500;

struct Row {
  registry::VmRecord record;
  std::string state;
  uint64_t uptime_s = 0;
};

// The control socket's word when there is one; the record's otherwise.
std::string live_state(const registry::VmRecord& r) {
  if (r.api.empty()) return r.state;
  auto reply = api_call(r.api, {{"cmd", "status"}}, kStatusTimeoutMs);
  if (!reply || !reply->value("ok", false) || !(*reply)["state"].is_string()) return "unreachable";
  return (*reply)["state"].get<std::string>();
}

std::vector<Row> collect(std::vector<registry::VmRecord> records) {
  std::vector<std::future<std::string>> states;  // asked all at once: one slow VM costs its timeout once
  for (const auto& r : records) states.push_back(std::async(std::launch::async, [&r] { return live_state(r); }));
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  std::vector<Row> rows;
  for (size_t i = 0; i < records.size(); ++i) {
    Row row{records[i], states[i].get(), 0};
    row.uptime_s = static_cast<uint64_t>(std::max<int64_t>(0, now - records[i].started_unix));
    rows.push_back(std::move(row));
  }
  return rows;
}

nlohmann::json row_json(const Row& r) {
  return {{"name", r.record.name},
          {"pid", r.record.pid},
          {"state", r.state},
          {"mem_bytes", r.record.mem_bytes},
          {"cpus", r.record.cpus},
          {"api", r.record.api.empty() ? nlohmann::json() : nlohmann::json(r.record.api)},
          {"uptime_ms", r.uptime_s * 1000},
          {"kernel", r.record.kernel}};
}

void print_table(const std::vector<Row>& rows) {
  std::vector<std::vector<std::string>> cells{{"NAME", "PID", "STATE", "MEMORY", "VCPUS", "UPTIME", "API"}};
  for (const Row& r : rows)
    cells.push_back({r.record.name, std::to_string(r.record.pid), r.state, format_size(r.record.mem_bytes),
                     std::to_string(r.record.cpus), format_duration(r.uptime_s),
                     r.record.api.empty() ? "-" : r.record.api});
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& line : cells)
    for (size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());
  for (const auto& line : cells) {
    std::string out;
    for (size_t c = 0; c < line.size(); ++c)
      out += c + 1 == line.size() ? line[c] : line[c] + std::string(width[c] - line[c].size() + 2, ' ');
    std::printf("%s\n", out.c_str());
  }
}

int ps(bool json) {
  auto records = registry::list_live(registry::run_dir());
  if (!records) {
    std::fprintf(stderr, "minihv: error: %s\n", records.message().c_str());
    if (json) std::printf("%s\n", json_text({{"ok", false}, {"error", records.message()}}).c_str());
    return kExitFailure;
  }
  const auto rows = collect(std::move(records).value());
  if (!json) {
    print_table(rows);
    return kExitOk;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const Row& r : rows) out.push_back(row_json(r));
  std::printf("%s\n", json_text(out, 2).c_str());
  return kExitOk;
}

}  // namespace

Command add_ps_command(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand("ps", "List the VMs this host runs (name, pid, state, memory, vCPUs, uptime, socket)");
  sub->add_flag("--json", *json, "Print a JSON array (mem_bytes, uptime_ms)");
  sub->footer("VMs register in $MINIHV_RUN_DIR, default /run/minihv/vms");
  return {sub, [json] { return ps(*json); }};
}

}  // namespace minihv::cli
