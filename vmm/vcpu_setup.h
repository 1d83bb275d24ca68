// vmm/vcpu_setup.h — a vCPU's state before its first KVM_RUN: LAPIC, FPU, boot registers.
//
// Owns: the per-vCPU fix-ups every x86 VMM makes (LINT0/LINT1 wiring, a reset FPU). Boot register
// values come from vmm/boot/; the CPUID table (model, topology, APIC ids) from cpuid/.
#pragma once

#include <linux/kvm.h>

#include "common/status.h"

namespace minihv {

class Vcpu;

// LINT0 = ExtINT (the PIC), LINT1 = NMI, as a BIOS leaves them; and a reset FPU/SSE state.
Status setup_vcpu_lapic(Vcpu& vcpu);
Status setup_vcpu_fpu(Vcpu& vcpu);
Status set_vcpu_registers(Vcpu& vcpu, const kvm_regs& regs, const kvm_sregs& sregs);

}  // namespace minihv
