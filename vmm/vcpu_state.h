// vmm/vcpu_state.h — reading and writing one vCPU's complete state through KVM.
//
// Owns: which ioctls carry a vCPU (and in which order they go back), the MSR list, XSAVE sizes,
// SREGS vs SREGS2, the TSC (offset attribute or MSR) and the TSC rate.
// Must not know: the blob format (machine_state.h), threads (the vCPU must not be in KVM_RUN).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "vmm/machine_state.h"

namespace minihv {

class Kvm;

// What this host's KVM offers for vCPU state, probed once per VM.
struct VcpuStateCaps {
  bool sregs2 = false;
  uint32_t xsave_size = 0;  // KVM_CAP_XSAVE2's size; 0 = only KVM_GET_XSAVE (4 KiB)
  bool xcrs = false;
  bool tsc_control = false;           // KVM_SET_TSC_KHZ can change the rate
  std::vector<uint32_t> msr_indices;  // KVM_GET_MSR_INDEX_LIST
  static Result<VcpuStateCaps> probe(const Kvm& kvm, int vm_fd);
};

// How to place the TSC on the destination (KVM's documented algorithm for KVM_VCPU_TSC_OFFSET):
// source clock and host TSC at save time, destination's right after KVM_SET_CLOCK.
struct TscFixup {
  bool valid = false;
  kvm_clock_data source{};
  kvm_clock_data dest{};
  uint32_t tsc_khz = 0;
};

// The vCPU must be out of KVM_RUN (paused or never started).
Result<CpuState> save_vcpu(int vcpu_fd, uint32_t id, const VcpuStateCaps& caps);
// Restores in Firecracker's order; `notes` collects what could not be carried exactly.
Status restore_vcpu(int vcpu_fd, const CpuState& state, const VcpuStateCaps& caps, uint32_t source_tsc_khz,
                    const TscFixup& tsc, std::vector<std::string>& notes);

// Pure helper, for tests: the destination TSC offset that keeps guest TSC - kvmclock*rate where
// it was on the source.
uint64_t adjusted_tsc_offset(uint64_t source_offset, const TscFixup& tsc);

}  // namespace minihv
