// cpuid/normalize.h — after masking, make the table describe one consistent virtual machine.
//
// Topology (leaf 1 EBX, 4, 0xB/0x1F, AMD 0x80000008 ECX, 0x8000001D/E) from the vCPU count,
// one core per vCPU in one package; the hypervisor bit; feature dependencies (no AVX2 without
// AVX, no AVX without XSAVE, ...); leaf 0xD state sizes for the XCR0/XSS components left;
// physical address bits capped; invariant TSC hidden unless the TSC rate is pinned; the PMU
// (leaf 0xA and its feature bits) off. APIC ids are per vCPU: see apply_apic_id().
#pragma once

#include <linux/kvm.h>

#include <vector>

#include "cpuid/profile.h"

namespace minihv::cpuid {

struct NormalizeOptions {
  unsigned ncpus = 1;
  bool tsc_pinned = false;  // the VMM fixes the guest TSC rate (KVM_SET_TSC_KHZ) on every host
  unsigned max_phys_bits = 0;  // 0: keep the host's
};

void normalize(Profile& p, const NormalizeOptions& o);
// Clears features whose prerequisites are off, until nothing changes.
void apply_dependencies(Profile& p);
// Rewrites leaf 0xD from the XSAVE-related features left on.
void normalize_xsave(Profile& p);
// This vCPU's APIC id into leaf 1 EBX, 0xB/0x1F EDX and AMD 0x8000001E.
void apply_apic_id(std::vector<kvm_cpuid_entry2>& entries, unsigned apic_id);

// The x87+SSE legacy area and the XSAVE header: every XSAVE area is at least this big.
constexpr uint32_t kXsaveLegacyAndHeader = 576;

}  // namespace minihv::cpuid
