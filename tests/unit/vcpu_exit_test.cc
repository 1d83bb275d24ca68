// The vCPU exit handler, fed synthetic kvm_run contents (no KVM needed).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "vmm/vcpu.h"

namespace minihv {
namespace {

struct Recorder : BusDevice {
  std::vector<std::pair<uint64_t, uint8_t>> writes;
  uint8_t next_read = 0;
  void bus_read(uint64_t, uint8_t* data, uint32_t len) override { std::memset(data, next_read, len); }
  void bus_write(uint64_t off, const uint8_t* data, uint32_t) override { writes.emplace_back(off, data[0]); }
};

// kvm_run is followed by the I/O data page in the real mapping; give it room.
struct FakeRun {
  alignas(kvm_run) uint8_t bytes[8192] = {};
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(bytes); }
};

TEST(HandleExit, PortOutputReachesTheDeviceEveryRepetition) {
  Bus pio, mmio;
  Recorder dev;
  ASSERT_TRUE(pio.add(0x3f8, 8, &dev));
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_IO;
  f.run().io.direction = KVM_EXIT_IO_OUT;
  f.run().io.port = 0x3f8;
  f.run().io.size = 1;
  f.run().io.count = 3;
  f.run().io.data_offset = 4096;
  std::memcpy(f.bytes + 4096, "abc", 3);
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kContinue);
  ASSERT_EQ(dev.writes.size(), 3u);
  EXPECT_EQ(dev.writes[2].second, 'c');
}

TEST(HandleExit, UnclaimedPortsReadAllOnes) {
  Bus pio, mmio;
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_IO;
  f.run().io.direction = KVM_EXIT_IO_IN;
  f.run().io.port = 0x1234;
  f.run().io.size = 2;
  f.run().io.count = 1;
  f.run().io.data_offset = 4096;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kContinue);
  EXPECT_EQ(f.bytes[4096], 0xff);
  EXPECT_EQ(f.bytes[4097], 0xff);
}

TEST(HandleExit, MmioReadGoesToTheDeviceAtItsOffset) {
  Bus pio, mmio;
  Recorder dev;
  dev.next_read = 0x5a;
  ASSERT_TRUE(mmio.add(0xd0000000, 0x1000, &dev));
  ASSERT_FALSE(mmio.add(0xd0000800, 0x1000, &dev)) << "overlapping ranges must be refused";
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_MMIO;
  f.run().mmio.phys_addr = 0xd0000010;
  f.run().mmio.len = 4;
  f.run().mmio.is_write = 0;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kContinue);
  EXPECT_EQ(f.run().mmio.data[3], 0x5a);
  // An access that straddles the end of the window belongs to nobody.
  f.run().mmio.phys_addr = 0xd0000ffe;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kContinue);
  EXPECT_EQ(f.run().mmio.data[0], 0xff);
}

TEST(HandleExit, BadSizesAreFatalNotCrashes) {
  Bus pio, mmio;
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_MMIO;
  f.run().mmio.len = 9;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kFatal);
  f.run().exit_reason = KVM_EXIT_IO;
  f.run().io.size = 3;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kFatal);
}

TEST(HandleExit, TripleFaultAndEmulationFailureAreNamed) {
  Bus pio, mmio;
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_SHUTDOWN;
  auto r = handle_exit(f.run(), pio, mmio);
  EXPECT_EQ(r.action, ExitAction::kGuestCrash);
  EXPECT_NE(r.message.find("triple fault"), std::string::npos);
  f.run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  f.run().internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kEmulationFailure);
  f.run().exit_reason = 9999;
  r = handle_exit(f.run(), pio, mmio);
  EXPECT_EQ(r.action, ExitAction::kFatal);
  EXPECT_NE(r.message.find("9999"), std::string::npos);
}

TEST(HandleExit, AFullDirtyRingAsksForACollection) {
  Bus pio, mmio;
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_DIRTY_RING_FULL;
  EXPECT_EQ(handle_exit(f.run(), pio, mmio).action, ExitAction::kDirtyRingFull);
}

TEST(ExitStatus, EachEndHasItsStatus) {
  EXPECT_EQ(exit_status(VmEnd::kPowerOff), 0);
  EXPECT_EQ(exit_status(VmEnd::kStopped), 0);
  EXPECT_EQ(exit_status(VmEnd::kError), 1);
  EXPECT_EQ(exit_status(VmEnd::kReboot), 3);
  EXPECT_EQ(exit_status(VmEnd::kGuestCrash), 4);
}

}  // namespace
}  // namespace minihv
