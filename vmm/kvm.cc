#include "vmm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace minihv {

int kvm_ioctl(int fd, unsigned long req, unsigned long arg) {
  int rc;
  do rc = ::ioctl(fd, req, arg);
  while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : rc;
}

Status kvm_error(const char* what, int neg_errno) {
  return Status::error(std::string(what) + ": " + std::strerror(-neg_errno));
}

std::string Kvm::device_path() {
  const char* path = std::getenv("MINIHV_KVM_DEVICE");
  return path ? path : "/dev/kvm";
}

Result<Kvm> Kvm::open() {
  const std::string path = device_path();
  Kvm kvm;
  kvm.fd_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm.fd_.valid()) {
    int err = errno;
    std::string hint = err == ENOENT   ? " (is the kvm module loaded? is virtualization enabled?)"
                       : err == EACCES ? " (run as root or join the kvm group)"
                                       : "";
    return Status::error(std::string("cannot open ") + path + ": " + std::strerror(err) + hint);
  }
  int version = kvm_ioctl(kvm.fd(), KVM_GET_API_VERSION);
  if (version != KVM_API_VERSION)
    return Status::error("KVM API version " + std::to_string(version) + ", need " +
                         std::to_string(KVM_API_VERSION));
  struct Need { long cap; const char* name; };
  for (Need n : {Need{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"}, Need{KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
                 Need{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"}, Need{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
                 Need{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
                 Need{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"}}) {
    if (kvm.check_extension(n.cap) <= 0)
      return Status::error(std::string("this KVM lacks ") + n.name + ", which minihv needs");
  }
  kvm.vcpu_mmap_size_ = kvm_ioctl(kvm.fd(), KVM_GET_VCPU_MMAP_SIZE);
  if (kvm.vcpu_mmap_size_ <= 0) return kvm_error("KVM_GET_VCPU_MMAP_SIZE", kvm.vcpu_mmap_size_);
  return kvm;
}

int Kvm::check_extension(long cap) const { return kvm_ioctl(fd(), KVM_CHECK_EXTENSION, cap); }

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    auto buf = std::make_unique<uint8_t[]>(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.get());
    c->nent = n;
    int rc = kvm_ioctl(fd(), KVM_GET_SUPPORTED_CPUID, c);
    if (rc == -E2BIG) continue;
    if (rc < 0) return kvm_error("KVM_GET_SUPPORTED_CPUID", rc);
    return std::vector<kvm_cpuid_entry2>(c->entries, c->entries + c->nent);
  }
  return Status::error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
  kvm_msr_list probe{};
  int rc = kvm_ioctl(fd(), KVM_GET_MSR_INDEX_LIST, &probe);
  if (rc < 0 && rc != -E2BIG) return kvm_error("KVM_GET_MSR_INDEX_LIST", rc);
  auto buf = std::make_unique<uint8_t[]>(sizeof(kvm_msr_list) + probe.nmsrs * sizeof(uint32_t));
  auto* list = reinterpret_cast<kvm_msr_list*>(buf.get());
  list->nmsrs = probe.nmsrs;
  rc = kvm_ioctl(fd(), KVM_GET_MSR_INDEX_LIST, list);
  if (rc < 0) return kvm_error("KVM_GET_MSR_INDEX_LIST", rc);
  return std::vector<uint32_t>(list->indices, list->indices + list->nmsrs);
}

}  // namespace minihv
