// vmm/kvm.h — thin, checked wrappers around /dev/kvm and a VM's fd.
//
// Owns: opening KVM, the capability checks minihv relies on, and turning ioctl failures into
// Status values that name the ioctl. Must not know: devices, boot, guests.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

// ioctl that retries EINTR; returns the ioctl's result or -errno.
int kvm_ioctl(int fd, unsigned long req, unsigned long arg = 0);
template <typename T> int kvm_ioctl(int fd, unsigned long req, T* arg) {
  return kvm_ioctl(fd, req, reinterpret_cast<unsigned long>(arg));
}
// Status for a failed ioctl: "KVM_SET_REGS (vcpu 1): Invalid argument".
Status kvm_error(const char* what, int neg_errno);

class Kvm {
public:
  // Opens device_path() and checks the API version and required capabilities.
  static Result<Kvm> open();
  // The KVM device minihv opens: $MINIHV_KVM_DEVICE, else /dev/kvm.
  static std::string device_path();

  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // KVM_GET_SUPPORTED_CPUID: what this host's KVM can give a guest.
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  // KVM_GET_MSR_INDEX_LIST: MSRs KVM saves and restores.
  Result<std::vector<uint32_t>> msr_index_list() const;

private:
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

}  // namespace minihv
