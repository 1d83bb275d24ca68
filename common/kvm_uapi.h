// common/kvm_uapi.h — <linux/kvm.h>, made right for C++. Force-included into every C++ file of the
// project (CMake: minihv_flags), so no file can see the broken layout by including kvm.h first.
//
// Debian 12's linux-libc-dev (6.1) declares flexible arrays with __DECLARE_FLEX_ARRAY, which wraps
// the array in a struct holding an empty struct. An empty struct has size 0 in C but 1 in C++, so
// in C++ `struct kvm_cpuid2` is 12 bytes with `entries` at offset 12 instead of 8 bytes/offset 8,
// and every ioctl number derived from such a struct is wrong: KVM_GET_SUPPORTED_CPUID becomes
// 0xc00cae05 and the kernel answers EINVAL (kvm_msrs, kvm_msr_list, kvm_irq_routing,
// kvm_signal_mask, kvm_reg_list, kvm_xsave… alike). Declare the arrays the way C sees them.
#pragma once

#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#include <linux/kvm.h>

static_assert(sizeof(struct kvm_cpuid2) == 8, "kvm_cpuid2 must have the kernel's layout");
static_assert(sizeof(struct kvm_msrs) == 8, "kvm_msrs must have the kernel's layout");
static_assert(sizeof(struct kvm_msr_list) == 4, "kvm_msr_list must have the kernel's layout");
static_assert(KVM_GET_SUPPORTED_CPUID == 0xc008ae05, "KVM_GET_SUPPORTED_CPUID ioctl number");
