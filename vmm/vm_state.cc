// Vm: what live migration needs — machine state save/restore, dirty logging, throttling.
// (vmm/ knows nothing of migration; see docs/vm-state.md.)
#include "vmm/vm.h"

namespace minihv {

Result<std::unique_ptr<Vm>> Vm::create_incoming(const VmConfig&) {
  return Status::error("Vm::create_incoming: not implemented yet");
}
Result<MachineState> Vm::save_machine() { return Status::error("Vm::save_machine: not implemented yet"); }
Status Vm::restore_machine(const MachineState&) {
  return Status::error("Vm::restore_machine: not implemented yet");
}
Status Vm::start_dirty_log() { return Status::error("Vm::start_dirty_log: not implemented yet"); }
Status Vm::harvest_dirty(size_t, std::span<uint64_t>) {
  return Status::error("Vm::harvest_dirty: not implemented yet");
}
Status Vm::stop_dirty_log() { return Status::error("Vm::stop_dirty_log: not implemented yet"); }
void Vm::set_throttle(unsigned) {}
void Vm::resume_devices() {}
void Vm::throttle_loop() {}
void Vm::stop_throttle() {}

}  // namespace minihv
