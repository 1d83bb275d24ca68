// OFD image locks (vmm/devices/image_lock.h): readers share, a writer excludes everyone else, a
// refusal names the holder, and a released lock is free for the next writer. Each ImageLock here
// is its own open of the file, as two minihv processes would be.
#include "vmm/devices/image_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>

namespace minihv {
namespace {

class ImageLockTest : public ::testing::Test {
protected:
  void SetUp() override {
    char name[] = "/tmp/minihv-lock-XXXXXX";
    UniqueFd fd(mkstemp(name));
    ASSERT_TRUE(fd.valid());
    path_ = name;
    ASSERT_EQ(ftruncate(fd.get(), 1 << 20), 0);
  }
  void TearDown() override { unlink(path_.c_str()); }

  // A fresh open of `path` and a lock on it (not taken yet); the open stays as long as the lock.
  ImageLock open_lock(ImageLockMode mode, const std::string& path) {
    UniqueFd fd(open(path.c_str(), (mode == ImageLockMode::kWrite ? O_RDWR : O_RDONLY) | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << path;
    auto lock = ImageLock::on(fd.get(), mode, path);
    EXPECT_TRUE(lock) << lock.message();
    return std::move(lock).value();
  }
  ImageLock open_lock(ImageLockMode mode) { return open_lock(mode, path_); }

  std::string path_;
};

const std::string kThisPid = "pid " + std::to_string(getpid()) + ", ";

TEST_F(ImageLockTest, ASecondWriterIsRefusedAndTheMessageNamesTheHolder) {
  ImageLock first = open_lock(ImageLockMode::kWrite);
  ASSERT_TRUE(first.acquire());
  ImageLock second = open_lock(ImageLockMode::kWrite);
  Status st = second.acquire();
  ASSERT_FALSE(st);
  EXPECT_TRUE(st.is_invalid_input());
  EXPECT_NE(st.message().find("in use by another process (" + kThisPid), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("minihv_unit_tests"), std::string::npos) << st.message();  // the holder's cmdline
  EXPECT_TRUE(first.held());
  EXPECT_FALSE(second.held());
}

TEST_F(ImageLockTest, ReadersShare) {
  ImageLock a = open_lock(ImageLockMode::kRead), b = open_lock(ImageLockMode::kRead);
  EXPECT_TRUE(a.acquire());
  EXPECT_TRUE(b.acquire());
}

TEST_F(ImageLockTest, AReaderBesideAWriterIsRefusedEitherWay) {
  {
    ImageLock writer = open_lock(ImageLockMode::kWrite), reader = open_lock(ImageLockMode::kRead);
    ASSERT_TRUE(writer.acquire());
    EXPECT_FALSE(reader.acquire());
  }
  ImageLock reader = open_lock(ImageLockMode::kRead), writer = open_lock(ImageLockMode::kWrite);
  ASSERT_TRUE(reader.acquire());
  Status st = writer.acquire();
  EXPECT_FALSE(st);
  EXPECT_NE(st.message().find(kThisPid), std::string::npos) << st.message();
}

TEST_F(ImageLockTest, AReleasedLockLetsTheNextWriterIn) {
  ImageLock first = open_lock(ImageLockMode::kWrite), second = open_lock(ImageLockMode::kWrite);
  ASSERT_TRUE(first.acquire());
  ASSERT_FALSE(second.acquire());
  first.release();
  EXPECT_FALSE(first.held());
  EXPECT_TRUE(second.acquire());
  EXPECT_FALSE(first.acquire());  // and now the first is the one refused
}

TEST_F(ImageLockTest, ADestroyedLockIsGoneThoughTheImageStaysOpen) {
  UniqueFd disk(open(path_.c_str(), O_RDWR | O_CLOEXEC));  // the disk's own fd outlives the lock
  {
    auto lock = ImageLock::on(disk.get(), ImageLockMode::kWrite, path_);
    ASSERT_TRUE(lock);
    ASSERT_TRUE(lock->acquire());
  }
  ImageLock next = open_lock(ImageLockMode::kWrite);
  EXPECT_TRUE(next.acquire());
}

TEST_F(ImageLockTest, NoHolderIsNamedForAnUnlockedFile) {
  ImageLock unlocked = open_lock(ImageLockMode::kWrite);  // open, never locked
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(image_lock_holder(st.st_dev, st.st_ino), "");
}

// The same on a block device: a loop device over the image (root only; skipped elsewhere).
TEST_F(ImageLockTest, ABlockDeviceIsLockedLikeAFile) {
  if (geteuid() != 0) GTEST_SKIP() << "a loop device needs root";
  const std::string attach = "losetup --find --show " + path_ + " 2>/dev/null";
  FILE* p = popen(attach.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::array<char, 64> out{};
  const bool got = fgets(out.data(), out.size(), p) != nullptr;
  pclose(p);
  if (!got) GTEST_SKIP() << "no loop device could be attached";
  std::string dev = out.data();
  dev.erase(dev.find_last_not_of('\n') + 1);
  {
    ImageLock first = open_lock(ImageLockMode::kWrite, dev), second = open_lock(ImageLockMode::kWrite, dev);
    EXPECT_TRUE(first.acquire());
    Status st = second.acquire();
    EXPECT_FALSE(st);
    EXPECT_NE(st.message().find(kThisPid), std::string::npos) << st.message();
  }
  EXPECT_EQ(std::system(("losetup -d " + dev).c_str()), 0);
}

}  // namespace
}  // namespace minihv
