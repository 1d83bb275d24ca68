// cpuid/host.h — this host's CPUID: what KVM offers, what the processor has, and whether KVM
// can enforce a CPU model at all.
//
// On software KVM such as PVM the guest kernel runs in host ring 3, so a guest's ring-3 `cpuid`
// returns the processor's own answer whatever KVM_SET_CPUID2 says, and every host instruction
// executes. There a CPU model is advisory: the VMM says so, and migration checks what the guest
// can really execute (the processor's native CPUID), not the model.
#pragma once

#include <string>

#include "common/status.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

struct HostFacts {
  bool kvm_pvm = false;   // /sys/module/kvm_pvm: the PVM software KVM
  bool kvm_hw = false;    // /sys/module/kvm_intel or kvm_amd: hardware-assisted KVM
};

struct Enforcement {
  bool advisory = false;
  std::string reason;  // why, when advisory
};

// The advisory rule: PVM, or a KVM with neither VT-x nor AMD-V behind it, cannot enforce CPUID.
Enforcement decide_enforcement(const HostFacts& facts);
HostFacts read_host_facts();

// KVM_GET_SUPPORTED_CPUID on /dev/kvm.
Result<Profile> kvm_supported_profile();
// The processor's own CPUID, executed by this process (basic and extended ranges).
Profile native_profile();

struct HostCpu {
  Profile kvm;     // KVM_GET_SUPPORTED_CPUID
  Profile native;  // the processor, as ring 3 sees it
  Enforcement enforcement;
};
Result<HostCpu> read_host_cpu();

// What a guest on this host can be given: KVM's table, or — where CPUID is advisory — the
// processor's native table with KVM's own leaves (0x4000_00xx) and emulated features from KVM.
Profile capability(const HostCpu& host);

}  // namespace minihv::cpuid
