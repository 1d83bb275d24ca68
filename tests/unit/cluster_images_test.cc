// cluster/node_images.h on real directories, files and symlinks in a temporary directory.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "cluster/config.h"
#include "cluster/node_images.h"

namespace minihv::cluster {
namespace {

namespace fs = std::filesystem;

class ImageDirsTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/minihv-images-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directory(root_ + "/images");
    fs::create_directory(root_ + "/other");
    std::ofstream(root_ + "/images/k.elf") << "k";
    std::ofstream(root_ + "/other/secret") << "s";
    fs::create_symlink(root_ + "/other/secret", root_ + "/images/escape");
    fs::create_symlink(root_ + "/images", root_ + "/images-link");
  }
  void TearDown() override { fs::remove_all(root_); }
  ImageDirs dirs(const std::string& d) {
    auto r = ImageDirs::resolve({d});
    EXPECT_TRUE(r) << r.message();
    return r ? *r : ImageDirs();
  }
  std::string root_;
};

TEST_F(ImageDirsTest, AFileUnderTheDirectoryPasses) {
  EXPECT_TRUE(dirs(root_ + "/images").check("kernel", root_ + "/images/k.elf", "n1"));
  // The directory given through a symlink, the file named through it or through the real path.
  EXPECT_TRUE(dirs(root_ + "/images-link").check("kernel", root_ + "/images/k.elf", "n1"));
  EXPECT_TRUE(dirs(root_ + "/images-link").check("kernel", root_ + "/images-link/k.elf", "n1"));
}

TEST_F(ImageDirsTest, OutsideIsRefusedAlikeWhetherTheFileExistsOrNot) {
  const ImageDirs d = dirs(root_ + "/images");
  const Status exists = d.check("kernel", root_ + "/other/secret", "n1");
  const Status missing = d.check("kernel", root_ + "/other/nothing", "n1");
  ASSERT_FALSE(exists);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(exists.is_invalid_input());
  EXPECT_EQ(exists.message(), "kernel " + root_ + "/other/secret is not under an image directory of node n1 (--images " +
                                  root_ + "/images)");
  EXPECT_EQ(missing.message().find("secret"), std::string::npos);
  EXPECT_NE(missing.message().find("is not under an image directory of node n1"), std::string::npos);
}

TEST_F(ImageDirsTest, DotDotSymlinksRelativePathsAndPrefixesAreRefused) {
  const ImageDirs d = dirs(root_ + "/images");
  for (const std::string& p : {root_ + "/images/../other/secret", root_ + "/images/escape", std::string("images/k.elf"),
                              root_ + "/images2/k.elf", root_ + "/images", std::string()})
    EXPECT_FALSE(d.check("initrd", p, "n1")) << p;
}

TEST_F(ImageDirsTest, AMissingFileUnderTheDirectorySaysItCannotBeRead) {
  const Status s = dirs(root_ + "/images").check("kernel", root_ + "/images/none.elf", "n1");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("cannot be read on node n1"), std::string::npos) << s.message();
}

TEST_F(ImageDirsTest, ADirectoryThatIsNotThereIsRefusedAtStart) {
  auto r = ImageDirs::resolve({root_ + "/nope"});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.status().is_invalid_input());
  EXPECT_NE(r.message().find("--images " + root_ + "/nope is not a directory"), std::string::npos) << r.message();
  EXPECT_FALSE(ImageDirs::resolve({root_ + "/images/k.elf"}));
}

TEST_F(ImageDirsTest, BootFilesCheckKernelAndInitrd) {
  VmSpec vm;
  vm.kernel = root_ + "/images/k.elf";
  EXPECT_TRUE(check_boot_files(vm, "n1", dirs(root_ + "/images")));
  vm.initrd = root_ + "/other/secret";
  const Status s = check_boot_files(vm, "n1", dirs(root_ + "/images"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message().rfind("initrd ", 0), 0u) << s.message();
}

}  // namespace
}  // namespace minihv::cluster
