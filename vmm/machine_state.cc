#include "vmm/machine_state.h"

#include <xxhash.h>

#include <cstring>
#include <string>
#include <type_traits>

#include "vmm/devices/virtio_blob.h"

namespace minihv {

namespace {

using virtio::BlobReader;
using virtio::BlobWriter;

// "MHVSTATE" read as a little-endian u64: the first 8 bytes of every blob.
constexpr uint64_t kMagic = 0x455441545356484dull;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8;  // magic, version, flags, body length
constexpr size_t kTrailerBytes = 8;             // XXH3-64 of header + body
constexpr uint32_t kTagVm = 0x20204d56, kTagCpu = 0x20555043, kTagDevices = 0x53564544;  // "VM  " "CPU " "DEVS"
constexpr uint32_t kCpuSregs2 = 1u << 0, kCpuXcrs = 1u << 1, kCpuTscOffset = 1u << 2;
constexpr uint32_t kCpuKnownFlags = kCpuSregs2 | kCpuXcrs | kCpuTscOffset;

// Bounds no honest blob comes near; they keep a corrupt count from allocating gigabytes.
constexpr uint32_t kMaxCpus = 1024, kMaxMsrs = 4096, kMaxCpuidEntries = 1024, kMaxVirtio = 64;
constexpr size_t kMinXsave = 4096, kMaxXsave = 1u << 20, kMaxDeviceBlob = 1u << 20;

template <typename T> void put_raw(BlobWriter& w, const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  w.put_bytes({reinterpret_cast<const uint8_t*>(&v), sizeof v});
}

void put_section(BlobWriter& w, uint32_t tag, std::vector<uint8_t> body) {
  w.put<uint32_t>(tag);
  w.put_bytes(body);
}

std::vector<uint8_t> encode_cpu(const CpuState& c) {
  BlobWriter w;
  w.put<uint32_t>(c.id);
  w.put<uint32_t>((c.has_sregs2 ? kCpuSregs2 : 0) | (c.has_xcrs ? kCpuXcrs : 0) |
                  (c.has_tsc_offset ? kCpuTscOffset : 0));
  put_raw(w, c.regs);
  if (c.has_sregs2)
    put_raw(w, c.sregs2);
  else
    put_raw(w, c.sregs);
  w.put_bytes(c.xsave);
  if (c.has_xcrs) put_raw(w, c.xcrs);
  w.put<uint32_t>(static_cast<uint32_t>(c.msrs.size()));
  for (const MsrValue& m : c.msrs) {
    w.put<uint32_t>(m.index);
    w.put<uint64_t>(m.value);
  }
  put_raw(w, c.lapic);
  put_raw(w, c.events);
  put_raw(w, c.mp_state);
  put_raw(w, c.debugregs);
  w.put_bytes({reinterpret_cast<const uint8_t*>(c.cpuid.data()), c.cpuid.size() * sizeof(kvm_cpuid_entry2)});
  w.put<uint64_t>(c.tsc_offset);
  return w.take();
}

// A reader that remembers the first thing that went wrong, with where it happened.
class Decoder {
public:
  Decoder(std::span<const uint8_t> b, std::string where) : r_(b), where_(std::move(where)) {}

  template <typename T> T num(const char* what) {
    T v = r_.get<T>();
    if (!r_.ok()) fail(std::string(what) + ": truncated");
    return v;
  }
  template <typename T> void raw(const char* what, T& out) {
    auto b = r_.get_bytes();
    if (!r_.ok()) return fail(std::string(what) + ": truncated");
    if (b.size() != sizeof(T))
      return fail(std::string(what) + ": " + std::to_string(b.size()) + " bytes, expected " + std::to_string(sizeof(T)));
    std::memcpy(&out, b.data(), sizeof(T));
  }
  std::span<const uint8_t> bytes(const char* what, size_t min, size_t max) {
    auto b = r_.get_bytes();
    if (!r_.ok()) {
      fail(std::string(what) + ": truncated");
      return {};
    }
    if (b.size() < min || b.size() > max) {
      fail(std::string(what) + ": " + std::to_string(b.size()) + " bytes, expected " + std::to_string(min) + ".." +
           std::to_string(max));
      return {};
    }
    return b;
  }
  // A tagged, length-prefixed section: returns its body for a nested Decoder.
  std::span<const uint8_t> section(uint32_t tag, const char* what) {
    uint32_t t = num<uint32_t>(what);
    if (failed()) return {};
    if (t != tag) {
      fail(std::string(what) + ": section tag 0x" + hex(t) + ", expected 0x" + hex(tag));
      return {};
    }
    return bytes(what, 0, SIZE_MAX);
  }
  void fail(const std::string& msg) {
    if (err_.empty()) err_ = where_.empty() ? msg : where_ + ": " + msg;
  }
  void adopt(const Decoder& inner) {
    if (inner.failed()) fail_raw(inner.err_);
  }
  void expect_end() {
    if (!failed() && !r_.at_end()) fail("unexpected bytes after the last field");
  }
  bool failed() const { return !err_.empty(); }
  const std::string& error() const { return err_; }

private:
  static std::string hex(uint32_t v) {
    char b[12];
    std::snprintf(b, sizeof b, "%08x", v);
    return b;
  }
  void fail_raw(const std::string& msg) {
    if (err_.empty()) err_ = msg;
  }
  BlobReader r_;
  std::string where_;
  std::string err_;
};

void decode_vm(Decoder& d, KvmVmState& vm) {
  d.raw("kvmclock", vm.clock);
  d.raw("PIC master", vm.pic_master);
  d.raw("PIC slave", vm.pic_slave);
  d.raw("IOAPIC", vm.ioapic);
  d.raw("PIT", vm.pit);
  vm.tsc_khz = d.num<uint32_t>("TSC kHz");
  if (d.failed()) return;
  if (vm.pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER || vm.pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
      vm.ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
    d.fail("irqchip ids are not PIC master, PIC slave, IOAPIC");
  d.expect_end();
}

void decode_cpu(Decoder& d, uint32_t want_id, CpuState& c) {
  c.id = d.num<uint32_t>("id");
  const uint32_t flags = d.num<uint32_t>("flags");
  if (d.failed()) return;
  if (c.id != want_id) return d.fail("id " + std::to_string(c.id) + " out of order");
  if (flags & ~kCpuKnownFlags) return d.fail("unknown flags " + std::to_string(flags));
  c.has_sregs2 = flags & kCpuSregs2;
  c.has_xcrs = flags & kCpuXcrs;
  c.has_tsc_offset = flags & kCpuTscOffset;
  d.raw("regs", c.regs);
  if (c.has_sregs2)
    d.raw("sregs2", c.sregs2);
  else
    d.raw("sregs", c.sregs);
  auto xsave = d.bytes("xsave", kMinXsave, kMaxXsave);
  c.xsave.assign(xsave.begin(), xsave.end());
  if (c.has_xcrs) d.raw("xcrs", c.xcrs);
  const uint32_t nmsrs = d.num<uint32_t>("MSR count");
  if (d.failed()) return;
  if (nmsrs > kMaxMsrs) return d.fail("MSR count " + std::to_string(nmsrs) + " is more than " + std::to_string(kMaxMsrs));
  c.msrs.resize(nmsrs);
  for (MsrValue& m : c.msrs) {
    m.index = d.num<uint32_t>("MSR index");
    m.value = d.num<uint64_t>("MSR value");
    if (d.failed()) return;
  }
  d.raw("lapic", c.lapic);
  d.raw("vcpu events", c.events);
  d.raw("mp_state", c.mp_state);
  d.raw("debugregs", c.debugregs);
  auto cpuid = d.bytes("cpuid", sizeof(kvm_cpuid_entry2), kMaxCpuidEntries * sizeof(kvm_cpuid_entry2));
  if (d.failed()) return;
  if (cpuid.size() % sizeof(kvm_cpuid_entry2)) return d.fail("cpuid: not a whole number of entries");
  c.cpuid.resize(cpuid.size() / sizeof(kvm_cpuid_entry2));
  std::memcpy(c.cpuid.data(), cpuid.data(), cpuid.size());
  c.tsc_offset = d.num<uint64_t>("TSC offset");
  if (d.failed()) return;
  if (c.mp_state.mp_state > KVM_MP_STATE_AP_RESET_HOLD + 1)
    return d.fail("mp_state " + std::to_string(c.mp_state.mp_state) + " is not a KVM_MP_STATE");
  d.expect_end();
}

void decode_devices(Decoder& d, DeviceState& dev) {
  Uart::Registers& u = dev.uart;
  for (uint8_t* reg : {&u.ier, &u.iir, &u.lcr, &u.mcr, &u.lsr, &u.msr, &u.scr, &u.dll, &u.dlm}) *reg = d.num<uint8_t>("UART");
  const uint8_t thri = d.num<uint8_t>("UART");
  const uint32_t n = d.num<uint32_t>("virtio device count");
  if (d.failed()) return;
  if (thri > 1) return d.fail("UART: THRI pending flag " + std::to_string(thri) + " is not 0 or 1");
  u.thri_pending = thri;
  if (n > kMaxVirtio) return d.fail("virtio device count " + std::to_string(n) + " is more than " + std::to_string(kMaxVirtio));
  dev.virtio.resize(n);
  for (uint32_t i = 0; i < n && !d.failed(); ++i) {
    auto b = d.bytes(("virtio device " + std::to_string(i)).c_str(), 1, kMaxDeviceBlob);
    dev.virtio[i].assign(b.begin(), b.end());
  }
  d.expect_end();
}

}  // namespace

std::vector<uint8_t> encode_machine_state(const MachineState& s) {
  BlobWriter body;
  {
    BlobWriter w;
    put_raw(w, s.vm.clock);
    put_raw(w, s.vm.pic_master);
    put_raw(w, s.vm.pic_slave);
    put_raw(w, s.vm.ioapic);
    put_raw(w, s.vm.pit);
    w.put<uint32_t>(s.vm.tsc_khz);
    put_section(body, kTagVm, w.take());
  }
  body.put<uint32_t>(static_cast<uint32_t>(s.cpus.size()));
  for (const CpuState& c : s.cpus) put_section(body, kTagCpu, encode_cpu(c));
  {
    BlobWriter w;
    const Uart::Registers& u = s.devices.uart;
    for (uint8_t reg : {u.ier, u.iir, u.lcr, u.mcr, u.lsr, u.msr, u.scr, u.dll, u.dlm}) w.put<uint8_t>(reg);
    w.put<uint8_t>(u.thri_pending ? 1 : 0);
    w.put<uint32_t>(static_cast<uint32_t>(s.devices.virtio.size()));
    for (const auto& b : s.devices.virtio) w.put_bytes(b);
    put_section(body, kTagDevices, w.take());
  }
  const std::vector<uint8_t> b = body.take();
  BlobWriter out;
  out.put<uint64_t>(kMagic);
  out.put<uint32_t>(kMachineStateVersion);
  out.put<uint32_t>(0);  // flags, none defined
  out.put<uint64_t>(b.size());
  std::vector<uint8_t> blob = out.take();
  blob.insert(blob.end(), b.begin(), b.end());
  const uint64_t sum = XXH3_64bits(blob.data(), blob.size());
  for (size_t i = 0; i < 8; ++i) blob.push_back(static_cast<uint8_t>(sum >> (8 * i)));
  return blob;
}

Result<MachineState> decode_machine_state(std::span<const uint8_t> blob) {
  const std::string what = "machine state";
  if (blob.size() < kHeaderBytes + kTrailerBytes)
    return Status::error(what + ": " + std::to_string(blob.size()) + " bytes is shorter than its header");
  BlobReader h(blob.first(kHeaderBytes));
  const uint64_t magic = h.get<uint64_t>();
  const uint32_t version = h.get<uint32_t>();
  const uint32_t flags = h.get<uint32_t>();
  const uint64_t body_len = h.get<uint64_t>();
  if (magic != kMagic) return Status::error(what + ": bad magic (not a minihv machine state blob)");
  if (version != kMachineStateVersion)
    return Status::error(what + ": version " + std::to_string(version) + ", this minihv reads only version " +
                         std::to_string(kMachineStateVersion) + " (migrate between equal minihv versions)");
  if (flags != 0) return Status::error(what + ": unknown header flags " + std::to_string(flags));
  if (body_len != blob.size() - kHeaderBytes - kTrailerBytes)
    return Status::error(what + ": header says " + std::to_string(body_len) + " body bytes, the blob has " +
                         std::to_string(blob.size() - kHeaderBytes - kTrailerBytes) + " (truncated or padded)");
  const auto covered = blob.first(blob.size() - kTrailerBytes);
  BlobReader t(blob.last(kTrailerBytes));
  if (t.get<uint64_t>() != XXH3_64bits(covered.data(), covered.size()))
    return Status::error(what + ": checksum mismatch (corrupted in transit)");

  MachineState s;
  Decoder d(blob.subspan(kHeaderBytes, body_len), what);
  {
    Decoder vm(d.section(kTagVm, "VM section"), what + ": VM");
    if (!d.failed()) decode_vm(vm, s.vm);
    d.adopt(vm);
  }
  const uint32_t ncpus = d.num<uint32_t>("vCPU count");
  if (!d.failed() && (ncpus == 0 || ncpus > kMaxCpus))
    d.fail("vCPU count " + std::to_string(ncpus) + " is not 1.." + std::to_string(kMaxCpus));
  for (uint32_t i = 0; i < ncpus && !d.failed(); ++i) {
    Decoder cpu(d.section(kTagCpu, ("vCPU " + std::to_string(i) + " section").c_str()),
                what + ": vCPU " + std::to_string(i));
    if (!d.failed()) decode_cpu(cpu, i, s.cpus.emplace_back());
    d.adopt(cpu);
  }
  {
    Decoder dev(d.section(kTagDevices, "devices section"), what + ": devices");
    if (!d.failed()) decode_devices(dev, s.devices);
    d.adopt(dev);
  }
  d.expect_end();
  if (d.failed()) return Status::error(d.error());
  return s;
}

}  // namespace minihv
