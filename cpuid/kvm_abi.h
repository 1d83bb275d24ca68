// cpuid/kvm_abi.h — the three CPUID ioctls with the kernel's real struct layout.
//
// Why: Debian 12's <linux/kvm.h> (linux-libc-dev 6.1) declares kvm_cpuid2's entries with
// __DECLARE_FLEX_ARRAY, whose empty struct is 1 byte in C++: sizeof(kvm_cpuid2) becomes 12 and
// entries starts at offset 12, so KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2 / KVM_GET_CPUID2 as
// compiled from C++ encode the wrong size (EINVAL) and misplace the entries. These helpers use
// the 8-byte header the kernel expects.
#pragma once

#include <linux/kvm.h>

#include <span>
#include <vector>

#include "common/status.h"

namespace minihv::cpuid {

Result<std::vector<kvm_cpuid_entry2>> kvm_get_supported_cpuid(int kvm_fd);
Status kvm_set_cpuid2(int vcpu_fd, std::span<const kvm_cpuid_entry2> entries);
Result<std::vector<kvm_cpuid_entry2>> kvm_get_cpuid2(int vcpu_fd);
// Gives `entries` to a scratch VM's vCPU 0 and reads back what KVM really holds. PVM, for one,
// rewrites the table: it ORs in the processor's own instruction-set bits (leaf 1 ECX, leaf 7,
// leaf 0xD) because its guests execute those instructions natively whatever CPUID says.
Result<std::vector<kvm_cpuid_entry2>> kvm_probe_applied(std::span<const kvm_cpuid_entry2> entries);

}  // namespace minihv::cpuid
