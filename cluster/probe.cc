#include "cluster/probe.h"

#include <linux/kvm.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "blockdev/extent_device.h"
#include "blockdev/record.h"
#include "cpuid/cpuid.h"
#include "vmm/kvm.h"

namespace minihv::cluster {

namespace {

constexpr const char* kSysNet = "/sys/class/net";  // interfaces of our network namespace

constexpr KvmCap kKvmCaps[] = {
    {"irqchip", true, "in-kernel interrupt controllers", KVM_CAP_IRQCHIP},
    {"irqfd", true, "virtio interrupts", KVM_CAP_IRQFD},
    {"ioeventfd", true, "virtio notifications", KVM_CAP_IOEVENTFD},
    {"pit2", true, "the in-kernel timer", KVM_CAP_PIT2},
    {"user_memory", true, "guest memory", KVM_CAP_USER_MEMORY},
    {"ext_cpuid", true, "CPU models", KVM_CAP_EXT_CPUID},
    {"set_tss_addr", true, "every VM's setup (KVM_SET_TSS_ADDR)", KVM_CAP_SET_TSS_ADDR},
    {"immediate_exit", false, "pausing a vCPU without a signal race", KVM_CAP_IMMEDIATE_EXIT},
    {"dirty_log_protect2", false, "cheap dirty-page rounds in live migration", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2},
    {"xcrs", false, "migrating XCR0", KVM_CAP_XCRS},
    {"xsave2", false, "migrating large XSAVE state (AMX)", KVM_CAP_XSAVE2},
    {"tsc_control", false, "moving VMs between hosts with different TSC rates", KVM_CAP_TSC_CONTROL},
};

nlohmann::json probe_kvm() {
  const cpuid::HostFacts facts = cpuid::read_host_facts();
  const cpuid::Enforcement e = cpuid::decide_enforcement(facts);
  nlohmann::json j = {{"ok", false}, {"error", ""}, {"api_version", 0}, {"caps", nlohmann::json::object()},
                      {"software_kvm_pvm", facts.kvm_pvm},
                      {"advisory", e.advisory}, {"advisory_reason", e.reason}};
  auto kvm = Kvm::open();  // fails naming the first required capability it lacks
  if (!kvm) {
    j["error"] = kvm.message();
    return j;
  }
  j["api_version"] = kvm_ioctl(kvm->fd(), KVM_GET_API_VERSION);
  std::string missing;
  for (const KvmCap& c : kKvmCaps) {
    const bool on = kvm->check_extension(c.cap) > 0;
    j["caps"][std::string(c.key)] = on;
    if (!on && c.required) missing += (missing.empty() ? "" : ", ") + std::string(c.key);
  }
  j["ok"] = missing.empty();
  if (!missing.empty()) j["error"] = "this KVM lacks " + missing + ", which minihv needs";
  return j;
}

// The processor's brand string (leaves 0x80000002..4), as /proc/cpuinfo's "model name".
std::string brand(const cpuid::Profile& p) {
  std::string s;
  for (uint32_t leaf = 0x80000002; leaf <= 0x80000004; ++leaf) {
    const cpuid::Regs r = p.get(leaf);
    for (uint32_t v : {r.eax, r.ebx, r.ecx, r.edx})
      for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  s.resize(strnlen(s.c_str(), s.size()));
  const auto first = s.find_first_not_of(' '), last = s.find_last_not_of(' ');
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

nlohmann::json probe_cpu(const std::string& node) {
  const cpuid::Profile native = cpuid::native_profile();
  nlohmann::json j = {{"vendor", native.vendor}, {"model_name", brand(native)}, {"profile", nullptr}, {"error", ""}};
  auto host = cpuid::read_host_cpu();
  if (host) j["profile"] = cpuid::to_json(cpuid::capability(*host), "what node " + node + " offers a guest");
  else j["error"] = host.message();
  return j;
}

nlohmann::json probe_volume(const ProbeContext& ctx) {
  nlohmann::json j = {{"path", ctx.volume_path}};
  if (!ctx.volume) {
    j["error"] = "no volume open";
    return j;
  }
  j["uuid"] = blockdev::uuid_string(ctx.volume->super().uuid);
  j["cluster"] = ctx.volume->super().cluster;
  j["disks"] = nlohmann::json::array();
  auto disks = ctx.volume->list_disks();
  if (disks)
    for (const blockdev::DiskEntry& d : *disks) j["disks"].push_back(d.name);
  else
    j["disks_error"] = disks.message();
  return j;
}

// Times kLeaseProbeReads reads of the node's own lease record: what every renewal pays.
nlohmann::json probe_lease_io(const ProbeContext& ctx) {
  nlohmann::json j = {{"reads", 0}, {"p50_us", 0}, {"p99_us", 0}, {"max_us", 0}, {"error", ""}};
  if (!ctx.volume) {
    j["error"] = "no volume open";
    return j;
  }
  std::vector<int64_t> us;
  for (unsigned i = 0; i < kLeaseProbeReads; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = ctx.volume->read_lease(ctx.lease_slot);
    const auto t1 = std::chrono::steady_clock::now();
    if (!r) {
      j["error"] = r.message();
      break;
    }
    us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count());
  }
  if (us.empty()) return j;
  std::sort(us.begin(), us.end());
  auto rank = [&](double q) { return us[static_cast<size_t>(q * static_cast<double>(us.size() - 1) + 0.5)]; };
  j["reads"] = us.size();
  j["p50_us"] = rank(0.50);
  j["p99_us"] = rank(0.99);
  j["max_us"] = us.back();
  j["slowest_renewal_us"] = ctx.slowest_renewal_us;
  return j;
}

// What keeps a VM's writes to its own disk and its own time: the loop devices that give a VM only
// its disk's extent (blockdev/extent_device.h), and the watchdog this node has armed.
nlohmann::json probe_fencing(const ProbeContext& ctx) {
  const Status loop = blockdev::extent_devices_available();
  return {{"loop_devices", loop.is_ok()},
          {"loop_error", loop.message()},
          {"watchdog", ctx.watchdog},
          {"watchdog_timeout_s", ctx.watchdog_timeout_s}};
}

}  // namespace

std::span<const KvmCap> kvm_caps() { return kKvmCaps; }

// MemTotal and MemAvailable from /proc/meminfo, in bytes (0 when absent).
std::pair<uint64_t, uint64_t> meminfo() {
  std::ifstream in("/proc/meminfo");
  uint64_t total = 0, available = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    uint64_t kib = 0;
    words >> key >> kib;
    if (key == "MemTotal:") total = kib * 1024;
    if (key == "MemAvailable:") available = kib * 1024;
  }
  return {total, available};
}

nlohmann::json probe_local(const ProbeContext& ctx) {
  const auto [total, available] = meminfo();
  return {{"node", ctx.node},
          {"host_id", ctx.host_id},
          {"pid", ::getpid()},
          {"listen", ctx.listen},
          {"migration_networks", ctx.migration_networks},
          {"volume", probe_volume(ctx)},
          {"kvm", probe_kvm()},
          {"cpu", probe_cpu(ctx.node)},
          {"lease_io", probe_lease_io(ctx)},
          {"fencing", probe_fencing(ctx)},
          {"clock_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count()},
          {"mem_available_bytes", available},
          {"mem_total_bytes", total},
          {"vms_mem_bytes", ctx.vms_mem_bytes},
          {"bridges", bridges()}};
}

bool bridge_exists(const std::string& name) {
  std::error_code ec;
  return !name.empty() && name.find('/') == std::string::npos &&
         std::filesystem::exists(std::string(kSysNet) + "/" + name + "/bridge", ec);
}

std::vector<std::string> bridges() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kSysNet, ec))
    if (bridge_exists(e.path().filename().string())) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace minihv::cluster
