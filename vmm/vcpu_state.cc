#include "vmm/vcpu_state.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <tuple>

#include "cpuid/kvm_abi.h"
#include "vmm/kvm.h"

namespace minihv {

namespace {

constexpr size_t kLegacyXsaveBytes = sizeof(kvm_xsave);  // 4 KiB: KVM_GET_XSAVE

std::string on(const char* ioctl, uint32_t id) { return std::string(ioctl) + " (vcpu " + std::to_string(id) + ")"; }

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

template <typename T> Status get(int fd, unsigned long req, T& out, const char* name, uint32_t id) {
  int rc = kvm_ioctl(fd, req, &out);
  return rc < 0 ? kvm_error(on(name, id).c_str(), rc) : Status::ok();
}
template <typename T> Status set(int fd, unsigned long req, const T& in, const char* name, uint32_t id) {
  int rc = kvm_ioctl(fd, req, const_cast<T*>(&in));
  return rc < 0 ? kvm_error(on(name, id).c_str(), rc) : Status::ok();
}

// kvm_msrs with room for n entries.
struct MsrBuffer {
  explicit MsrBuffer(size_t n)
      : bytes(std::make_unique<uint8_t[]>(sizeof(kvm_msrs) + n * sizeof(kvm_msr_entry))) {  // zeroed
    msrs()->nmsrs = static_cast<uint32_t>(n);
  }
  kvm_msrs* msrs() { return reinterpret_cast<kvm_msrs*>(bytes.get()); }
  std::unique_ptr<uint8_t[]> bytes;
};

// Reads every MSR in `indices` that KVM will GET; KVM_GET_MSRS stops at the first one it refuses
// and returns how many it read, so that one is skipped and the rest retried.
Result<std::vector<MsrValue>> save_msrs(int fd, uint32_t id, const std::vector<uint32_t>& indices) {
  std::vector<MsrValue> out;
  size_t next = 0;
  while (next < indices.size()) {
    const size_t n = indices.size() - next;
    MsrBuffer buf(n);
    for (size_t i = 0; i < n; ++i) buf.msrs()->entries[i].index = indices[next + i];
    int rc = kvm_ioctl(fd, KVM_GET_MSRS, buf.msrs());
    if (rc < 0) return kvm_error(on("KVM_GET_MSRS", id).c_str(), rc);
    for (int i = 0; i < rc; ++i) out.push_back({buf.msrs()->entries[i].index, buf.msrs()->entries[i].data});
    next += static_cast<size_t>(rc) + 1;  // skip the refused one (if any)
  }
  return out;
}

Status restore_msrs(int fd, uint32_t id, const std::vector<MsrValue>& msrs) {
  if (msrs.empty()) return Status::ok();
  MsrBuffer buf(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    buf.msrs()->entries[i].index = msrs[i].index;
    buf.msrs()->entries[i].data = msrs[i].value;
  }
  int rc = kvm_ioctl(fd, KVM_SET_MSRS, buf.msrs());
  if (rc < 0) return kvm_error(on("KVM_SET_MSRS", id).c_str(), rc);
  if (static_cast<size_t>(rc) != msrs.size())
    return Status::error(on("KVM_SET_MSRS", id) + ": this host refused MSR " + hex32(msrs[rc].index) + " (" +
                         std::to_string(rc) + " of " + std::to_string(msrs.size()) +
                         " set); the source's KVM saves MSRs this one cannot take — migrate between equal hosts");
  return Status::ok();
}

Result<std::vector<uint8_t>> save_xsave(int fd, uint32_t id, const VcpuStateCaps& caps) {
  const bool v2 = caps.xsave_size > kLegacyXsaveBytes;
  std::vector<uint8_t> x(v2 ? caps.xsave_size : kLegacyXsaveBytes);
  int rc = kvm_ioctl(fd, v2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, x.data());
  if (rc < 0) return kvm_error(on(v2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", id).c_str(), rc);
  return x;
}

// KVM_SET_XSAVE reads this host's XSAVE size: pad a shorter image with zeros (absent components),
// refuse a longer one whose extra bytes hold state this host could not load.
Status restore_xsave(int fd, uint32_t id, const std::vector<uint8_t>& saved, const VcpuStateCaps& caps) {
  const size_t size = std::max<size_t>(caps.xsave_size, kLegacyXsaveBytes);
  std::vector<uint8_t> x(std::max(size, saved.size()), 0);
  std::copy(saved.begin(), saved.end(), x.begin());
  if (std::any_of(x.begin() + static_cast<ptrdiff_t>(size), x.end(), [](uint8_t b) { return b != 0; }))
    return Status::error(on("KVM_SET_XSAVE", id) + ": the saved XSAVE image is " + std::to_string(saved.size()) +
                         " bytes with state beyond this host's " + std::to_string(size));
  int rc = kvm_ioctl(fd, KVM_SET_XSAVE, x.data());
  return rc < 0 ? kvm_error(on("KVM_SET_XSAVE", id).c_str(), rc) : Status::ok();
}

bool has_tsc_offset_attr(int fd) {
  kvm_device_attr a{};
  a.group = KVM_VCPU_TSC_CTRL;
  a.attr = KVM_VCPU_TSC_OFFSET;
  return kvm_ioctl(fd, KVM_HAS_DEVICE_ATTR, &a) == 0;
}

Status tsc_offset_attr(int fd, uint32_t id, unsigned long req, uint64_t& offset) {
  kvm_device_attr a{};
  a.group = KVM_VCPU_TSC_CTRL;
  a.attr = KVM_VCPU_TSC_OFFSET;
  a.addr = reinterpret_cast<uint64_t>(&offset);
  int rc = kvm_ioctl(fd, req, &a);
  return rc < 0 ? kvm_error(on(req == KVM_GET_DEVICE_ATTR ? "KVM_GET_DEVICE_ATTR TSC_OFFSET" : "KVM_SET_DEVICE_ATTR TSC_OFFSET", id).c_str(), rc)
                : Status::ok();
}

bool same_cpuid(std::vector<kvm_cpuid_entry2> a, std::vector<kvm_cpuid_entry2> b) {
  auto key = [](const kvm_cpuid_entry2& e) { return std::tie(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx); };
  auto less = [&](const kvm_cpuid_entry2& x, const kvm_cpuid_entry2& y) { return key(x) < key(y); };
  std::sort(a.begin(), a.end(), less);
  std::sort(b.begin(), b.end(), less);
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [&](const auto& x, const auto& y) { return key(x) == key(y); });
}

// SREGS2 saved, destination without it: the same registers minus the PDPTRs (PAE paging only).
kvm_sregs sregs_from_sregs2(const kvm_sregs2& s2) {
  kvm_sregs s{};
  s.cs = s2.cs, s.ds = s2.ds, s.es = s2.es, s.fs = s2.fs, s.gs = s2.gs, s.ss = s2.ss;
  s.tr = s2.tr, s.ldt = s2.ldt, s.gdt = s2.gdt, s.idt = s2.idt;
  s.cr0 = s2.cr0, s.cr2 = s2.cr2, s.cr3 = s2.cr3, s.cr4 = s2.cr4, s.cr8 = s2.cr8;
  s.efer = s2.efer, s.apic_base = s2.apic_base;
  return s;
}

Status restore_tsc_rate(int fd, uint32_t id, uint32_t source_khz, const VcpuStateCaps& caps,
                        std::vector<std::string>& notes) {
  if (source_khz == 0) return Status::ok();
  int here = kvm_ioctl(fd, KVM_GET_TSC_KHZ);
  if (here < 0) return kvm_error(on("KVM_GET_TSC_KHZ", id).c_str(), here);
  if (static_cast<uint32_t>(here) == source_khz) return Status::ok();
  if (caps.tsc_control) {
    int rc = kvm_ioctl(fd, KVM_SET_TSC_KHZ, static_cast<unsigned long>(source_khz));
    if (rc < 0) return kvm_error(on("KVM_SET_TSC_KHZ", id).c_str(), rc);
    return Status::ok();
  }
  if (id == 0)
    notes.push_back("the guest's TSC ran at " + std::to_string(source_khz) + " kHz and runs at " + std::to_string(here) +
                    " kHz here: this KVM cannot scale the TSC (no KVM_CAP_TSC_CONTROL)");
  return Status::ok();
}

constexpr uint32_t kMsrKvmWallClock = 0x11;            // MSR_KVM_WALL_CLOCK
constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00;   // MSR_KVM_WALL_CLOCK_NEW

}  // namespace

Result<VcpuStateCaps> VcpuStateCaps::probe(const Kvm& kvm, int vm_fd) {
  VcpuStateCaps c;
  c.sregs2 = kvm.check_extension(KVM_CAP_SREGS2) > 0;
  const int xsave2 = kvm_ioctl(vm_fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(KVM_CAP_XSAVE2));
  c.xsave_size = xsave2 > 0 ? static_cast<uint32_t>(xsave2) : 0;
  c.xcrs = kvm.check_extension(KVM_CAP_XCRS) > 0;
  c.tsc_control = kvm.check_extension(KVM_CAP_TSC_CONTROL) > 0;
  auto msrs = kvm.msr_index_list();
  if (!msrs) return msrs.status();
  c.msr_indices = std::move(msrs).value();
  // Writing a kvmclock wall-clock MSR makes KVM write the wall clock into guest memory at once. A
  // guest reads it only when it asks for it (Linux: at boot), so the MSR has nothing to carry; and
  // restored on a destination it would rewrite guest memory after the last page arrived (a Linux
  // guest's `--verify` then failed in its first range).
  std::erase_if(c.msr_indices, [](uint32_t i) { return i == kMsrKvmWallClock || i == kMsrKvmWallClockNew; });
  return c;
}

uint64_t adjusted_tsc_offset(uint64_t source_offset, const TscFixup& t) {
  // ofs_dst = ofs_src - (guest_src - guest_dst) * freq + (tsc_src - tsc_dst), freq in ticks/ns.
  const __int128 elapsed_ns = static_cast<__int128>(t.dest.clock) - static_cast<__int128>(t.source.clock);
  const __int128 ticks = elapsed_ns * t.tsc_khz / 1000000;
  const __int128 host_delta = static_cast<__int128>(t.source.host_tsc) - static_cast<__int128>(t.dest.host_tsc);
  return static_cast<uint64_t>(static_cast<__int128>(source_offset) + ticks + host_delta);
}

Result<CpuState> save_vcpu(int fd, uint32_t id, const VcpuStateCaps& caps) {
  CpuState s;
  s.id = id;
  MINIHV_TRY(get(fd, KVM_GET_REGS, s.regs, "KVM_GET_REGS", id));
  s.has_sregs2 = caps.sregs2;
  if (caps.sregs2)
    MINIHV_TRY(get(fd, KVM_GET_SREGS2, s.sregs2, "KVM_GET_SREGS2", id));
  else
    MINIHV_TRY(get(fd, KVM_GET_SREGS, s.sregs, "KVM_GET_SREGS", id));
  auto xsave = save_xsave(fd, id, caps);
  if (!xsave) return xsave.status();
  s.xsave = std::move(xsave).value();
  s.has_xcrs = caps.xcrs;
  if (caps.xcrs) MINIHV_TRY(get(fd, KVM_GET_XCRS, s.xcrs, "KVM_GET_XCRS", id));
  auto msrs = save_msrs(fd, id, caps.msr_indices);
  if (!msrs) return msrs.status();
  s.msrs = std::move(msrs).value();
  MINIHV_TRY(get(fd, KVM_GET_LAPIC, s.lapic, "KVM_GET_LAPIC", id));
  MINIHV_TRY(get(fd, KVM_GET_VCPU_EVENTS, s.events, "KVM_GET_VCPU_EVENTS", id));
  MINIHV_TRY(get(fd, KVM_GET_MP_STATE, s.mp_state, "KVM_GET_MP_STATE", id));
  MINIHV_TRY(get(fd, KVM_GET_DEBUGREGS, s.debugregs, "KVM_GET_DEBUGREGS", id));
  auto cpuid = cpuid::kvm_get_cpuid2(fd);
  if (!cpuid) return cpuid.status().context("vcpu " + std::to_string(id));
  s.cpuid = std::move(cpuid).value();
  if (has_tsc_offset_attr(fd)) {
    MINIHV_TRY(tsc_offset_attr(fd, id, KVM_GET_DEVICE_ATTR, s.tsc_offset));
    s.has_tsc_offset = true;
  }
  return s;
}

Status restore_vcpu(int fd, const CpuState& s, const VcpuStateCaps& caps, uint32_t source_tsc_khz,
                    const TscFixup& tsc, std::vector<std::string>& notes) {
  const uint32_t id = s.id;
  // CPUID2 first, and only when it differs: KVM refuses a different table once the vCPU has run.
  auto current = cpuid::kvm_get_cpuid2(fd);
  if (!current) return current.status().context("vcpu " + std::to_string(id));
  if (!same_cpuid(*current, s.cpuid))
    MINIHV_TRY(cpuid::kvm_set_cpuid2(fd, s.cpuid).context("vcpu " + std::to_string(id) + ": the source's CPUID table"));
  MINIHV_TRY(restore_tsc_rate(fd, id, source_tsc_khz, caps, notes));
  MINIHV_TRY(set(fd, KVM_SET_MP_STATE, s.mp_state, "KVM_SET_MP_STATE", id));
  MINIHV_TRY(set(fd, KVM_SET_REGS, s.regs, "KVM_SET_REGS", id));
  if (s.has_sregs2 && caps.sregs2)
    MINIHV_TRY(set(fd, KVM_SET_SREGS2, s.sregs2, "KVM_SET_SREGS2", id));
  else if (s.has_sregs2)
    MINIHV_TRY(set(fd, KVM_SET_SREGS, sregs_from_sregs2(s.sregs2), "KVM_SET_SREGS", id));
  else
    MINIHV_TRY(set(fd, KVM_SET_SREGS, s.sregs, "KVM_SET_SREGS", id));
  MINIHV_TRY(restore_xsave(fd, id, s.xsave, caps));
  if (s.has_xcrs) {
    if (!caps.xcrs) return Status::error(on("KVM_SET_XCRS", id) + ": the source saved XCRs, this KVM has no KVM_CAP_XCRS");
    MINIHV_TRY(set(fd, KVM_SET_XCRS, s.xcrs, "KVM_SET_XCRS", id));
  }
  MINIHV_TRY(set(fd, KVM_SET_DEBUGREGS, s.debugregs, "KVM_SET_DEBUGREGS", id));
  MINIHV_TRY(set(fd, KVM_SET_LAPIC, s.lapic, "KVM_SET_LAPIC", id));
  MINIHV_TRY(restore_msrs(fd, id, s.msrs));
  MINIHV_TRY(set(fd, KVM_SET_VCPU_EVENTS, s.events, "KVM_SET_VCPU_EVENTS", id));
  // The IA32_TSC write above froze the TSC at its saved value; where KVM offers the offset
  // attribute, place it as KVM documents instead (the TSC keeps its relation to kvmclock).
  if (s.has_tsc_offset && tsc.valid && has_tsc_offset_attr(fd)) {
    uint64_t off = adjusted_tsc_offset(s.tsc_offset, tsc);
    MINIHV_TRY(tsc_offset_attr(fd, id, KVM_SET_DEVICE_ATTR, off));
  }
  return Status::ok();
}

}  // namespace minihv
