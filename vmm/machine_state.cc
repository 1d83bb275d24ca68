#include "vmm/machine_state.h"

namespace minihv {

std::vector<uint8_t> encode_machine_state(const MachineState&) { return {}; }
Result<MachineState> decode_machine_state(std::span<const uint8_t>) {
  return Status::error("machine state: not implemented yet");
}

}  // namespace minihv
