#include "cpuid/kvm_abi.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/fd.h"

namespace minihv::cpuid {

namespace {

struct Cpuid2Header {  // struct kvm_cpuid2 as the kernel lays it out
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(Cpuid2Header) == 8);

constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, Cpuid2Header);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Cpuid2Header);
constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, Cpuid2Header);
constexpr uint32_t kMaxEntries = 256;  // KVM_MAX_CPUID_ENTRIES

class Buffer {
public:
  explicit Buffer(uint32_t n) : bytes_(std::make_unique<uint8_t[]>(sizeof(Cpuid2Header) + n * sizeof(kvm_cpuid_entry2))) {
    header()->nent = n;
  }
  Cpuid2Header* header() { return reinterpret_cast<Cpuid2Header*>(bytes_.get()); }
  kvm_cpuid_entry2* entries() { return reinterpret_cast<kvm_cpuid_entry2*>(bytes_.get() + sizeof(Cpuid2Header)); }
  void* raw() { return bytes_.get(); }
  std::vector<kvm_cpuid_entry2> vector() { return {entries(), entries() + header()->nent}; }

private:
  std::unique_ptr<uint8_t[]> bytes_;
};

int retry_ioctl(int fd, unsigned long req, void* arg) {
  int rc;
  do rc = ::ioctl(fd, req, arg);
  while (rc < 0 && errno == EINTR);
  return rc;
}

}  // namespace

Result<std::vector<kvm_cpuid_entry2>> kvm_get_supported_cpuid(int kvm_fd) {
  Buffer b(kMaxEntries);
  if (retry_ioctl(kvm_fd, kGetSupportedCpuid, b.raw()) < 0) return Status::from_errno("KVM_GET_SUPPORTED_CPUID");
  return b.vector();
}

Status kvm_set_cpuid2(int vcpu_fd, std::span<const kvm_cpuid_entry2> entries) {
  if (entries.size() > kMaxEntries) return Status::error("KVM_SET_CPUID2: more than 256 entries");
  Buffer b(static_cast<uint32_t>(entries.size()));
  std::memcpy(b.entries(), entries.data(), entries.size_bytes());
  if (retry_ioctl(vcpu_fd, kSetCpuid2, b.raw()) < 0) return Status::from_errno("KVM_SET_CPUID2");
  return Status::ok();
}

Result<std::vector<kvm_cpuid_entry2>> kvm_get_cpuid2(int vcpu_fd) {
  // Before Linux 6.5 a successful KVM_GET_CPUID2 leaves nent as the caller gave it (a larger buffer
  // comes back with zeroed entries after the real ones, each reading as leaf 0), and a failing one
  // never says the count. It fails with E2BIG exactly when nent is below the count: find the
  // smallest nent that succeeds (at most 9 calls), and that many entries are the table.
  auto fits = [&](uint32_t n, Buffer& b) -> Result<bool> {
    b.header()->nent = n;
    if (retry_ioctl(vcpu_fd, kGetCpuid2, b.raw()) == 0) return true;
    if (errno == E2BIG) return false;
    return Status::from_errno("KVM_GET_CPUID2");
  };
  Buffer b(kMaxEntries);
  uint32_t lo = 0, hi = kMaxEntries;  // the count is in (lo - 1, hi]: hi fits
  auto all = fits(hi, b);
  if (!all) return all.status();
  if (!*all) return Status::error("KVM_GET_CPUID2: more than 256 entries");
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    auto ok = fits(mid, b);
    if (!ok) return ok.status();
    if (*ok) hi = mid;
    else lo = mid + 1;
  }
  auto last = fits(hi, b);  // the buffer holds the table read with exactly its count
  if (!last) return last.status();
  b.header()->nent = hi;
  return b.vector();
}

Result<std::vector<kvm_cpuid_entry2>> kvm_probe_applied(std::span<const kvm_cpuid_entry2> entries) {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid()) return Status::from_errno("/dev/kvm");
  UniqueFd vm(retry_ioctl(kvm.get(), KVM_CREATE_VM, nullptr));
  if (!vm.valid()) return Status::from_errno("KVM_CREATE_VM (probe)");
  UniqueFd vcpu(::ioctl(vm.get(), KVM_CREATE_VCPU, 0ul));
  if (!vcpu.valid()) return Status::from_errno("KVM_CREATE_VCPU (probe)");
  MINIHV_TRY(kvm_set_cpuid2(vcpu.get(), entries));
  return kvm_get_cpuid2(vcpu.get());
}

}  // namespace minihv::cpuid
