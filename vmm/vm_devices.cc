// Vm: the virtio devices and the stats they report.
#include "vmm/devices/uart.h"
#include "vmm/vm.h"

namespace minihv {

Status Vm::create_virtio_devices() {
  if (!config_.disks.empty()) return Status::error("--disk: virtio-blk is not wired yet");
  return Status::ok();
}

void Vm::stop_virtio_devices() {}

nlohmann::json Vm::stats() const {
  nlohmann::json vcpus = nlohmann::json::array();
  for (const auto& v : vcpus_) vcpus.push_back({{"id", v->id()}, {"exits", v->exits()}});
  return {{"vcpus", vcpus}, {"console_tx_bytes", uart_->tx_bytes()}};
}

}  // namespace minihv
