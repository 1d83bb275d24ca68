// Vm: the virtio devices and the stats they report.
#include <fstream>
#include <cstdio>
#include <sstream>

#include "vmm/vm.h"

namespace minihv {

namespace {

// Resident memory of this process in KiB: {total, of guest RAM}. Reads /proc/self/smaps so the
// VMM's own footprint (total − guest) can be reported apart from what the guest touched.
std::pair<uint64_t, uint64_t> resident_kib(const GuestMemory& mem) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  uint64_t total = 0, guest = 0;
  bool in_guest = false;
  while (std::getline(f, line)) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2) {
      in_guest = false;
      for (const MemoryRegion& r : mem.regions()) {
        const auto base = reinterpret_cast<uint64_t>(r.host);
        if (lo < base + r.size && base < hi) in_guest = true;
      }
      continue;
    }
    if (line.rfind("Rss:", 0) == 0) {
      uint64_t kib = std::stoull(line.substr(4));
      total += kib;
      if (in_guest) guest += kib;
    }
  }
  return {total, guest};
}

}  // namespace

Status Vm::create_virtio_devices() {
  if (!config_.disks.empty()) return Status::error("--disk: virtio-blk is not wired yet");
  return Status::ok();
}

void Vm::stop_virtio_devices() {}

nlohmann::json Vm::stats() const {
  nlohmann::json vcpus = nlohmann::json::array();
  for (const auto& v : vcpus_) vcpus.push_back({{"id", v->id()}, {"exits", v->exits()}});
  auto [rss, guest_rss] = resident_kib(*mem_);
  return {{"vcpus", vcpus},
          {"console_tx_bytes", uart_->tx_bytes()},
          {"rss_kib", rss},
          {"guest_rss_kib", guest_rss},
          {"vmm_rss_kib", rss - guest_rss}};
}

}  // namespace minihv
