#include "cpuid/host.h"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <string_view>

#include "common/fd.h"
#include "cpuid/features.h"
#include "cpuid/kvm_abi.h"

namespace minihv::cpuid {

namespace {

// Subleaves to probe for indexed leaves whose count is not self-described.
constexpr uint32_t kMaxProbeSubleaves = 64;
constexpr uint32_t kCacheTypeMask = 0x1f, kTopoTypeMask = 0xff00;

bool exists(const char* path) {
  struct stat st;
  return ::stat(path, &st) == 0;
}

Regs native(uint32_t leaf, uint32_t sub) {
  Regs r;
  __cpuid_count(leaf, sub, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

void probe_leaf(Profile& p, uint32_t leaf) {
  if (!is_indexed(leaf)) {
    p.at(leaf) = native(leaf, 0);
    return;
  }
  const Regs first = native(leaf, 0);
  p.at(leaf, 0) = first;
  for (uint32_t sub = 1; sub < kMaxProbeSubleaves; ++sub) {
    Regs r = native(leaf, sub);
    bool last = false;
    switch (leaf) {
      case 0x4: case 0x8000001D: last = (r.eax & kCacheTypeMask) == 0; break;
      case 0xB: case 0x1F: last = (r.ecx & kTopoTypeMask) == 0; break;
      case 0x7: case 0x14: case 0x17: case 0x18: case 0x1D: case 0x20: case 0x24:
        last = sub > first.eax; break;  // subleaf 0 EAX = highest subleaf
      default: break;                   // 0xD, 0xF, 0x10, 0x12, ...: keep the non-zero ones
    }
    if (last) break;
    if (r == Regs{}) continue;
    p.at(leaf, sub) = r;
  }
}

}  // namespace

Enforcement decide_enforcement(const HostFacts& f) {
  if (f.kvm_pvm)
    return {true, "PVM (software KVM): guest ring-3 CPUID returns this processor's own values and ring-3 code "
                  "can execute every host instruction; KVM_SET_CPUID2 is only partly applied in ring 0. The CPU "
                  "model is advisory; migration checks what the processor really offers"};
  if (!f.kvm_hw)
    return {true, "KVM without VT-x or AMD-V (no kvm_intel/kvm_amd module): CPUID masking cannot be enforced; "
                  "the CPU model is advisory"};
  return {};
}

HostFacts read_host_facts() {
  HostFacts f;
  f.kvm_pvm = exists("/sys/module/kvm_pvm");
  f.kvm_hw = exists("/sys/module/kvm_intel") || exists("/sys/module/kvm_amd");
  return f;
}

Result<Profile> kvm_supported_profile() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid()) return Status::from_errno("/dev/kvm");
  auto entries = kvm_get_supported_cpuid(kvm.get());
  if (!entries) return entries.status();
  return Profile::from_kvm(*entries);
}

Profile native_profile() {
  Profile p;
  const uint32_t max_basic = native(0, 0).eax;
  for (uint32_t l = 0; l <= max_basic; ++l) probe_leaf(p, l);
  const uint32_t max_ext = native(kLeafExtBase, 0).eax;
  if (max_ext >= kLeafExtBase && max_ext < kLeafExtBase + 0x100)
    for (uint32_t l = kLeafExtBase; l <= max_ext; ++l) probe_leaf(p, l);
  p.vendor = vendor_from_regs(p.get(kLeafVendor));
  return p;
}

Result<HostCpu> read_host_cpu() {
  auto kvm = kvm_supported_profile();
  if (!kvm) return kvm.status();
  return HostCpu{std::move(*kvm), native_profile(), decide_enforcement(read_host_facts())};
}

Profile capability(const HostCpu& host) {
  if (!host.enforcement.advisory) return host.kvm;
  Profile p = host.native;
  // KVM's own leaves, and what KVM emulates rather than the processor executes.
  for (const auto& [k, r] : host.kvm.leaves)
    if (k.leaf >= kLeafHvBase && k.leaf < kLeafExtBase) p.leaves[k] = r;
  for (std::string_view n : {"x2apic", "tsc_deadline_timer", "arat", "hypervisor", "vmx", "svm", "tsc_adjust"}) {
    const Feature& f = *find_feature(n);
    set(p, f, has(host.kvm, f));
  }
  if (Regs* r = p.find(kLeafAddrSizes))
    r->eax = (r->eax & ~0xffu) | std::min(r->eax & 0xffu, host.kvm.get(kLeafAddrSizes).eax & 0xffu);
  return p;
}

}  // namespace minihv::cpuid
