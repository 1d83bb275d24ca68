// Shared by the blockdev unit tests: a formatted volume on an in-memory device and a manual clock.
#pragma once

#include <gtest/gtest.h>

#include "blockdev/mem_device.h"
#include "blockdev/volume.h"

namespace minihv::blockdev::testing {

constexpr uint64_t kTestVolumeBytes = 64ull << 20;

struct MemVolume {
  ManualClock clock;
  std::shared_ptr<MemDevice> dev = std::make_shared<MemDevice>(kTestVolumeBytes, "memvol");
  std::unique_ptr<Volume> vol;

  explicit MemVolume(LeaseTimings t = {}) {
    FormatOptions o;
    o.cluster = "lab";
    o.timings = t;
    o.created_by = "test";
    Status s = Volume::format_device(*dev, o, clock);
    EXPECT_TRUE(s) << s.message();
    auto v = Volume::open_device(dev, clock);
    EXPECT_TRUE(v) << v.message();
    if (v) vol = std::move(*v);
  }
  Uuid uuid() const { return vol->super().uuid; }
  LeaseTimings timings() const { return vol->super().timings; }
};

}  // namespace minihv::blockdev::testing
