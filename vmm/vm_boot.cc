// Vm: loading the guest and setting the boot vCPU's registers.
#include "vmm/vm.h"

namespace minihv {

Status Vm::load_guest() { return Status::error("boot: not wired yet"); }

}  // namespace minihv
