// vmm/vcpu_setup.h — a vCPU's state before its first KVM_RUN: CPUID, LAPIC, FPU.
//
// Owns: the per-vCPU fix-ups every x86 VMM makes (APIC ids in CPUID, LINT0/LINT1 wiring, a
// reset FPU). Boot registers come from vmm/boot/. The CPU model (masking) is cpuid/'s business.
#pragma once

#include <linux/kvm.h>

#include <vector>

#include "common/status.h"

namespace minihv {

class Vcpu;

// Applies `entries` with this vCPU's APIC id and the VM's CPU count patched into the topology
// leaves (1, 0xB, 0x1F) via KVM_SET_CPUID2.
Status setup_vcpu_cpuid(Vcpu& vcpu, std::vector<kvm_cpuid_entry2> entries, unsigned ncpus);
// The pure part of the above, for tests.
void patch_topology(std::vector<kvm_cpuid_entry2>& entries, unsigned apic_id, unsigned ncpus);
// LINT0 = ExtINT (the PIC), LINT1 = NMI, as a BIOS leaves them; and a reset FPU/SSE state.
Status setup_vcpu_lapic(Vcpu& vcpu);
Status setup_vcpu_fpu(Vcpu& vcpu);
Status set_vcpu_registers(Vcpu& vcpu, const kvm_regs& regs, const kvm_sregs& sregs);

}  // namespace minihv
