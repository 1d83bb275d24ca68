// A disk's extent as a loop device of its own (blockdev/extent_device.h): byte 0 of the device is
// the extent's first byte, nothing before or past the extent can be reached through it, a write
// is on the volume when it is done, and the device goes when its last fd closes. Needs root and
// /dev/loop-control, as a cluster node does.
#include "blockdev/extent_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>

namespace minihv::blockdev {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr size_t kBlock = 4096;
constexpr uint8_t kVolumeByte = 0xAA, kGuestByte = 0x55;

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t[], AlignedFree>;

Buffer aligned_block(uint8_t fill) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kBlock, kBlock));
  std::memset(p, fill, kBlock);
  return Buffer(p);
}

class ExtentDeviceTest : public ::testing::Test {
protected:
  void SetUp() override {
    // On a file system that does direct I/O (not tmpfs): the volume's own directory in real use.
    char name[] = "/var/tmp/minihv-extent-XXXXXX";
    UniqueFd fd(mkstemp(name));
    ASSERT_TRUE(fd.valid());
    path_ = name;
    std::string bytes(8 * kMiB, static_cast<char>(kVolumeByte));
    ASSERT_EQ(pwrite(fd.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }
  void TearDown() override { unlink(path_.c_str()); }

  uint8_t volume_byte_at(uint64_t offset) const {
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    return static_cast<uint8_t>(in.get());
  }

  std::string path_;
};

TEST_F(ExtentDeviceTest, ByteZeroIsTheExtentsFirstAndNothingPastItsEndIsReached) {
  auto d = make_extent_device(path_, 2 * kMiB, kMiB);
  ASSERT_TRUE(d) << d.message();
  auto size = device_size(d->fd.get());
  ASSERT_TRUE(size) << size.message();
  EXPECT_EQ(*size, kMiB);

  Buffer guest = aligned_block(kGuestByte);
  ASSERT_EQ(pwrite(d->fd.get(), guest.get(), kBlock, 0), static_cast<ssize_t>(kBlock));
  ASSERT_EQ(pwrite(d->fd.get(), guest.get(), kBlock, kMiB - kBlock), static_cast<ssize_t>(kBlock));
  // Done means on the volume (direct I/O all the way): read back through the file itself.
  EXPECT_EQ(volume_byte_at(2 * kMiB), kGuestByte);
  EXPECT_EQ(volume_byte_at(3 * kMiB - 1), kGuestByte);
  EXPECT_EQ(volume_byte_at(2 * kMiB - 1), kVolumeByte);  // the byte before the extent
  EXPECT_EQ(volume_byte_at(3 * kMiB), kVolumeByte);      // the byte after it

  // Past the end: refused, and the volume after the extent is untouched.
  EXPECT_LT(pwrite(d->fd.get(), guest.get(), kBlock, kMiB), 0);
  EXPECT_LT(pwrite(d->fd.get(), guest.get(), kBlock, 4 * kMiB), 0);
  Buffer read = aligned_block(0);
  EXPECT_EQ(pread(d->fd.get(), read.get(), kBlock, kMiB), 0);  // end of device
  EXPECT_EQ(volume_byte_at(3 * kMiB + kBlock), kVolumeByte);
}

TEST_F(ExtentDeviceTest, TheDeviceGoesWithItsLastFd) {
  std::string backing_attr;
  {
    auto d = make_extent_device(path_, kMiB, kMiB);
    ASSERT_TRUE(d) << d.message();
    backing_attr = "/sys/block/" + d->path.substr(5) + "/loop/backing_file";
    std::ifstream in(backing_attr);
    std::string backing;
    std::getline(in, backing);
    EXPECT_EQ(backing, path_);
  }
  // Autoclear: once the last fd is closed the kernel unbinds the device (its loop/ directory goes).
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    struct stat st{};
    gone = ::stat(backing_attr.c_str(), &st) != 0;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone) << backing_attr << " is still there";
}

// What the node reads to tell when a killed VM's writes are done (cluster/vm_child.h): an idle device
// has none; a file that is not a block device is an error, not a zero.
TEST_F(ExtentDeviceTest, ItsRequestsInFlightAreReadFromTheKernel) {
  auto d = make_extent_device(path_, kMiB, kMiB);
  ASSERT_TRUE(d) << d.message();
  auto block = aligned_block(kGuestByte);
  ASSERT_EQ(pwrite(d->fd.get(), block.get(), kBlock, 0), static_cast<ssize_t>(kBlock));
  auto n = requests_in_flight(d->fd.get());
  ASSERT_TRUE(n) << n.message();
  EXPECT_EQ(*n, 0u);
  UniqueFd file(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  auto none = requests_in_flight(file.get());
  ASSERT_FALSE(none);
  EXPECT_NE(none.message().find("not a block device"), std::string::npos) << none.message();
}

TEST_F(ExtentDeviceTest, AnExtentNotInWholeBlocksOrPastTheVolumeIsRefused) {
  auto odd = make_extent_device(path_, kMiB + 512, kMiB);
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.message().find("whole 4 KiB blocks"), std::string::npos) << odd.message();
  auto empty = make_extent_device(path_, kMiB, 0);
  EXPECT_FALSE(empty);
  // The disk table says more than the volume holds: the device would be shorter than the disk.
  auto past = make_extent_device(path_, 6 * kMiB, 4 * kMiB);
  ASSERT_FALSE(past);
  EXPECT_NE(past.message().find("not the extent's"), std::string::npos) << past.message();
}

}  // namespace
}  // namespace minihv::blockdev
