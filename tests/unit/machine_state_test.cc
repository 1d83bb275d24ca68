// The machine-state blob: round trip, every truncation, corrupted fields; the TSC offset rule.
#include "vmm/machine_state.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "vmm/vcpu_state.h"

namespace minihv {
namespace {

CpuState sample_cpu(uint32_t id) {
  CpuState c;
  c.id = id;
  c.regs.rip = 0x100000 + id;
  c.regs.rax = 0x1122334455667788ull;
  c.has_sregs2 = id % 2 == 0;
  c.sregs.cr3 = 0x9000;
  c.sregs2.cr3 = 0xa000;
  c.sregs2.pdptrs[3] = 0xdead;
  c.xsave.assign(4096 + 64 * id, static_cast<uint8_t>(0x40 + id));
  c.has_xcrs = true;
  c.xcrs.nr_xcrs = 1;
  c.xcrs.xcrs[0].value = 7;
  c.msrs = {{0x10, 123456789}, {0xc0000080, 0xd01}, {0x4b564d01, 0x5001}};
  c.lapic.regs[0x20] = static_cast<char>(id);
  c.events.exception.nr = 14;
  c.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
  c.debugregs.dr7 = 0x400;
  kvm_cpuid_entry2 e{};
  e.function = 1;
  e.eax = 0x806f8;
  c.cpuid = {e, e};
  c.cpuid[1].function = 0x40000001;
  c.has_tsc_offset = id == 1;
  c.tsc_offset = 0xfffffff000000000ull;
  return c;
}

MachineState sample() {
  MachineState m;
  m.vm.clock.clock = 5'000'000'000ull;
  m.vm.clock.flags = KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
  m.vm.clock.realtime = 1'700'000'000'000'000'000ull;
  m.vm.clock.host_tsc = 99;
  m.vm.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  m.vm.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  m.vm.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  m.vm.ioapic.chip.ioapic.base_address = 0xfec00000;
  m.vm.pit.channels[0].count = 0x1234;
  m.vm.tsc_khz = 2'400'000;
  m.cpus = {sample_cpu(0), sample_cpu(1)};
  m.devices.uart.lcr = 3;
  m.devices.uart.thri_pending = true;
  m.devices.virtio = {{1, 2, 3}, std::vector<uint8_t>(300, 9)};
  return m;
}

// Re-computes the trailing checksum, so a test can corrupt a field and still reach the parser.
void reseal(std::vector<uint8_t>& b) {
  const uint64_t sum = XXH3_64bits(b.data(), b.size() - 8);
  for (size_t i = 0; i < 8; ++i) b[b.size() - 8 + i] = static_cast<uint8_t>(sum >> (8 * i));
}

std::string decode_error(const std::vector<uint8_t>& b) {
  auto r = decode_machine_state(b);
  return r ? std::string("(decoded)") : r.message();
}

TEST(MachineState, RoundTripIsExact) {
  const MachineState m = sample();
  const auto blob = encode_machine_state(m);
  auto back = decode_machine_state(blob);
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(encode_machine_state(*back), blob);
  ASSERT_EQ(back->cpus.size(), 2u);
  EXPECT_EQ(back->cpus[0].regs.rip, 0x100000u);
  EXPECT_TRUE(back->cpus[0].has_sregs2);
  EXPECT_EQ(back->cpus[0].sregs2.pdptrs[3], 0xdeadu);
  EXPECT_FALSE(back->cpus[1].has_sregs2);
  EXPECT_EQ(back->cpus[1].sregs.cr3, 0x9000u);
  EXPECT_EQ(back->cpus[1].xsave.size(), 4096u + 64);
  ASSERT_EQ(back->cpus[1].msrs.size(), 3u);
  EXPECT_EQ(back->cpus[1].msrs[1].index, 0xc0000080u);
  EXPECT_EQ(back->cpus[1].msrs[1].value, 0xd01u);
  EXPECT_EQ(back->cpus[1].cpuid[1].function, 0x40000001u);
  EXPECT_TRUE(back->cpus[1].has_tsc_offset);
  EXPECT_EQ(back->cpus[1].tsc_offset, 0xfffffff000000000ull);
  EXPECT_EQ(back->vm.clock.realtime, m.vm.clock.realtime);
  EXPECT_EQ(back->vm.ioapic.chip.ioapic.base_address, 0xfec00000u);
  EXPECT_EQ(back->vm.pit.channels[0].count, 0x1234u);
  EXPECT_EQ(back->vm.tsc_khz, 2'400'000u);
  EXPECT_EQ(back->devices.uart.lcr, 3);
  EXPECT_TRUE(back->devices.uart.thri_pending);
  EXPECT_EQ(back->devices.virtio, m.devices.virtio);
}

TEST(MachineState, EveryTruncationIsRejected) {
  const auto blob = encode_machine_state(sample());
  for (size_t n = 0; n < blob.size(); ++n) {
    std::vector<uint8_t> cut(blob.begin(), blob.begin() + static_cast<ptrdiff_t>(n));
    auto r = decode_machine_state(cut);
    ASSERT_FALSE(r) << "a blob cut to " << n << " of " << blob.size() << " bytes was accepted";
    EXPECT_NE(r.message().find("machine state"), std::string::npos) << r.message();
  }
}

TEST(MachineState, TruncatedBodyWithMatchingHeaderIsRejectedByTheParser) {
  // Cut inside a vCPU section, then fix the header's length and the checksum: the parser itself
  // must find the hole.
  auto blob = encode_machine_state(sample());
  for (size_t keep : {size_t{40}, size_t{2000}, blob.size() / 2, blob.size() - 20}) {
    std::vector<uint8_t> b(blob.begin(), blob.begin() + static_cast<ptrdiff_t>(keep));
    b.resize(b.size() + 8);
    const uint64_t body = b.size() - 24 - 8;
    for (size_t i = 0; i < 8; ++i) b[16 + i] = static_cast<uint8_t>(body >> (8 * i));
    reseal(b);
    EXPECT_NE(decode_error(b).find("truncated"), std::string::npos) << keep << ": " << decode_error(b);
  }
}

TEST(MachineState, EveryFlippedByteIsRejected) {
  const auto blob = encode_machine_state(sample());
  for (size_t i = 0; i < blob.size(); i += 7) {
    auto b = blob;
    b[i] ^= 0x5a;
    EXPECT_FALSE(decode_machine_state(b)) << "byte " << i << " flipped was accepted";
  }
}

TEST(MachineState, HeaderErrorsSayWhat) {
  const auto blob = encode_machine_state(sample());
  auto b = blob;
  b[0] ^= 1;
  EXPECT_NE(decode_error(b).find("bad magic"), std::string::npos) << decode_error(b);
  b = blob;
  b[8] = 2;  // version
  EXPECT_NE(decode_error(b).find("version 2"), std::string::npos) << decode_error(b);
  b = blob;
  b.push_back(0);
  EXPECT_NE(decode_error(b).find("body bytes"), std::string::npos) << decode_error(b);
  b = blob;
  b[30] ^= 0xff;
  EXPECT_NE(decode_error(b).find("checksum"), std::string::npos) << decode_error(b);
  b = blob;
  b[12] = 1;  // header flags
  EXPECT_NE(decode_error(b).find("flags"), std::string::npos) << decode_error(b);
}

TEST(MachineState, CorruptFieldsAreNamed) {
  auto b = encode_machine_state(sample());
  b[24] ^= 0xff;  // the VM section's tag
  reseal(b);
  EXPECT_NE(decode_error(b).find("VM section: section tag"), std::string::npos) << decode_error(b);

  MachineState m = sample();
  m.cpus.clear();
  EXPECT_NE(decode_error(encode_machine_state(m)).find("vCPU count 0"), std::string::npos);

  m = sample();
  m.cpus[1].id = 7;
  EXPECT_NE(decode_error(encode_machine_state(m)).find("vCPU 1: id 7 out of order"), std::string::npos)
      << decode_error(encode_machine_state(m));

  m = sample();
  m.cpus[0].xsave.resize(100);
  EXPECT_NE(decode_error(encode_machine_state(m)).find("vCPU 0: xsave: 100 bytes"), std::string::npos)
      << decode_error(encode_machine_state(m));

  m = sample();
  m.cpus[1].cpuid.clear();
  EXPECT_NE(decode_error(encode_machine_state(m)).find("vCPU 1: cpuid"), std::string::npos)
      << decode_error(encode_machine_state(m));

  m = sample();
  m.cpus[0].mp_state.mp_state = 77;
  EXPECT_NE(decode_error(encode_machine_state(m)).find("mp_state 77"), std::string::npos)
      << decode_error(encode_machine_state(m));

  m = sample();
  m.vm.ioapic.chip_id = 0;
  EXPECT_NE(decode_error(encode_machine_state(m)).find("irqchip ids"), std::string::npos)
      << decode_error(encode_machine_state(m));

  m = sample();
  m.devices.virtio.push_back({});
  EXPECT_NE(decode_error(encode_machine_state(m)).find("virtio device 2: 0 bytes"), std::string::npos)
      << decode_error(encode_machine_state(m));
}

TEST(MachineState, HugeCountsAreRefusedBeforeAllocating) {
  // The MSR count of vCPU 0 sits right after its xcrs; find it by its value and make it huge.
  MachineState m = sample();
  m.cpus[0].msrs = {{0x11223344, 0}};
  auto b = encode_machine_state(m);
  const uint8_t needle[] = {1, 0, 0, 0, 0x44, 0x33, 0x22, 0x11};
  auto it = std::search(b.begin(), b.end(), std::begin(needle), std::end(needle));
  ASSERT_NE(it, b.end());
  it[3] = 0x7f;  // count = 0x7f000001
  reseal(b);
  EXPECT_NE(decode_error(b).find("MSR count 2130706433 is more than"), std::string::npos) << decode_error(b);
}

TEST(TscOffset, KeepsGuestTscMinusKvmclockConstant) {
  TscFixup t;
  t.tsc_khz = 2'000'000;  // 2 ticks per ns
  t.source.clock = 1'000'000;
  t.source.host_tsc = 50'000'000;
  t.dest.clock = 1'500'000;     // 0.5 ms later in kvmclock
  t.dest.host_tsc = 10'000'000;  // another host, TSC far behind
  const uint64_t src = 1000;
  const uint64_t dst = adjusted_tsc_offset(src, t);
  // guest TSC at the destination instant = dest host TSC + new offset;
  // it must equal source guest TSC + 0.5 ms of ticks.
  EXPECT_EQ(t.dest.host_tsc + dst, t.source.host_tsc + src + 1'000'000);
}

}  // namespace
}  // namespace minihv
