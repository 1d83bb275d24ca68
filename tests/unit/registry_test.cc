// vmm/registry: records of the VMs this host runs, and telling a live one from a stale one.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "vmm/registry.h"

namespace minihv::registry {
namespace {

class Registry : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/minihv-registry-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/run/vms";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string record_path(pid_t pid) const { return dir_ + "/" + std::to_string(pid) + ".json"; }
  void write(const std::string& name, const std::string& text) {
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::string root_, dir_;
};

pid_t dead_pid() {
  pid_t p = fork();
  if (p == 0) _exit(0);
  waitpid(p, nullptr, 0);
  return p;
}

mode_t mode_of(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

TEST_F(Registry, StartTicksOfALiveProcessAndNoneOfADeadOne) {
  auto mine = process_start_ticks(getpid());
  ASSERT_TRUE(mine) << mine.message();
  EXPECT_GT(*mine, 0u);
  EXPECT_EQ(*process_start_ticks(getpid()), *mine);
  EXPECT_FALSE(process_start_ticks(dead_pid()));
}

TEST_F(Registry, ARegistrationIsListedWhileItLivesAndRemovedAfter) {
  {
    VmRecord r;
    r.name = "alpha";
    r.state = "incoming";
    r.mem_bytes = 1ull << 30;
    r.cpus = 2;
    auto reg = Registration::create(dir_, r);
    ASSERT_TRUE(reg) << reg.message();
    EXPECT_EQ(mode_of(root_ + "/run"), 0700u);
    EXPECT_EQ(mode_of(dir_), 0700u);
    EXPECT_EQ(mode_of(record_path(getpid())), 0600u);
    auto live = list_live(dir_);
    ASSERT_TRUE(live);
    ASSERT_EQ(live->size(), 1u);
    EXPECT_EQ((*live)[0].pid, getpid());
    EXPECT_EQ((*live)[0].name, "alpha");
    EXPECT_EQ((*live)[0].state, "incoming");
    EXPECT_EQ((*live)[0].mem_bytes, 1ull << 30);
    ASSERT_TRUE(reg->set_state("running"));
    EXPECT_EQ((*list_live(dir_))[0].state, "running");
    EXPECT_FALSE(std::filesystem::exists(record_path(getpid()) + ".tmp"));
  }
  EXPECT_FALSE(std::filesystem::exists(record_path(getpid())));
  EXPECT_TRUE(list_live(dir_)->empty());
}

TEST_F(Registry, StaleRecordsAreDroppedAndRemoved) {
  const pid_t gone = dead_pid();
  const uint64_t ticks = *process_start_ticks(getpid());
  write(std::to_string(gone) + ".json", nlohmann::json{{"pid", gone}, {"start_ticks", ticks}}.dump());
  // Our pid, but another start time: a process that had this pid before us.
  write(std::to_string(getpid()) + ".json", nlohmann::json{{"pid", getpid()}, {"start_ticks", ticks + 1}}.dump());
  write("12345678.json", "not json");
  write("notes.txt", "left alone");
  auto live = list_live(dir_);
  ASSERT_TRUE(live);
  EXPECT_TRUE(live->empty());
  EXPECT_FALSE(std::filesystem::exists(record_path(gone)));
  EXPECT_FALSE(std::filesystem::exists(record_path(getpid())));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/12345678.json"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/notes.txt"));
}

TEST_F(Registry, AMissingDirectoryIsNoVmAndAnUnreadableOneIsAnError) {
  auto none = list_live(dir_);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  write("x", "");
  auto not_a_dir = list_live(dir_ + "/x");
  EXPECT_FALSE(not_a_dir);
}

TEST_F(Registry, RecordsNeedAPidAndAStartTime) {
  EXPECT_FALSE(record_from_json(nlohmann::json{{"name", "x"}}));
  EXPECT_FALSE(record_from_json(nlohmann::json{{"pid", "1"}, {"start_ticks", 5}}));
  auto r = record_from_json(nlohmann::json{{"pid", 7}, {"start_ticks", 9}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, "running");
}

}  // namespace
}  // namespace minihv::registry
