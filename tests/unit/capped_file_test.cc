// A console or log file never grows past its cap: it rotates to PATH.1 and starts again, keeping
// the newest output in PATH. Real files in a temp directory.
#include "common/capped_file.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace minihv {
namespace {

namespace fs = std::filesystem;

class CappedFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/minihv-capped-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/console.log";
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string text_of(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_, path_;
};

TEST_F(CappedFileTest, RotatesAtTheCapKeepingTheNewestOutput) {
  constexpr uint64_t kCap = 1000;
  auto f = CappedFile::open(path_, kCap, CappedFile::Start::kTruncate);
  ASSERT_TRUE(f) << f.message();
  std::string all;
  for (int i = 0; i < 100; ++i) {  // 100 lines of 29 bytes: 2900 bytes, twice round the cap
    char line[64];
    const int n = std::snprintf(line, sizeof line, "line %04d of the guest output\n", i);
    f->write(line, static_cast<size_t>(n));
    all.append(line, static_cast<size_t>(n));
  }
  const std::string now = text_of(path_), before = text_of(path_ + ".1");
  EXPECT_LE(now.size(), kCap);
  EXPECT_EQ(before.size(), kCap) << "the older file ends where the cap was reached";
  EXPECT_FALSE(fs::exists(path_ + ".2"));
  // Together they are exactly the newest bytes written, in order.
  EXPECT_EQ(before + now, all.substr(all.size() - before.size() - now.size()));
  EXPECT_EQ(now.back(), '\n');
}

TEST_F(CappedFileTest, AppendCountsWhatIsThereAndZeroMeansNoCap) {
  {
    std::ofstream(path_) << std::string(900, 'a');
  }
  auto f = CappedFile::open(path_, 1000, CappedFile::Start::kAppend);
  ASSERT_TRUE(f);
  f->write(std::string(200, 'b').data(), 200);
  EXPECT_EQ(text_of(path_ + ".1"), std::string(900, 'a') + std::string(100, 'b'));
  EXPECT_EQ(text_of(path_), std::string(100, 'b'));
  auto unlimited = CappedFile::open(dir_ + "/big", 0, CappedFile::Start::kTruncate);
  ASSERT_TRUE(unlimited);
  for (int i = 0; i < 10; ++i) unlimited->write(std::string(1000, 'c').data(), 1000);
  EXPECT_EQ(fs::file_size(dir_ + "/big"), 10000u);
  EXPECT_FALSE(fs::exists(dir_ + "/big.1"));
}

TEST_F(CappedFileTest, AFileThatCannotBeOpenedIsAnErrorNamingIt) {
  auto f = CappedFile::open(dir_ + "/no/such/dir/console", 1000, CappedFile::Start::kTruncate);
  ASSERT_FALSE(f);
  EXPECT_NE(f.message().find("no/such/dir/console"), std::string::npos) << f.message();
}

}  // namespace
}  // namespace minihv
