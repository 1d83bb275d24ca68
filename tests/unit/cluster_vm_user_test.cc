// The user a node runs its VMs as (cluster/vm_user.h): what it resolves to, what is refused with
// the reason, and that the switch in a forked child really leaves root behind. Run as root (CI is).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cluster/vm_user.h"

namespace minihv::cluster {
namespace {

constexpr uid_t kUid = 4321;
constexpr gid_t kGid = 4322;

class VmUserTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/minihv-vmuser-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string file(const std::string& name, mode_t mode, gid_t group) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << "x";
    EXPECT_EQ(::chown(p.c_str(), 0, group), 0);
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }
  std::string dir_;
};

TEST_F(VmUserTest, NumericIdsNeedNoPasswordEntry) {
  auto u = resolve_vm_user("4321:4322");
  ASSERT_TRUE(u) << u.message();
  EXPECT_EQ(u->uid, kUid);
  EXPECT_EQ(u->gid, kGid);
  EXPECT_TRUE(u->groups.empty());
}

TEST_F(VmUserTest, ANamedUserBringsItsIdsFromThePasswordDatabase) {
  auto u = resolve_vm_user("nobody");  // in every Debian base system
  ASSERT_TRUE(u) << u.message();
  EXPECT_NE(u->uid, 0u);
}

TEST_F(VmUserTest, RootUnknownNamesAndJunkAreRefusedSayingWhy) {
  for (const char* root : {"root", "0:4322", "4321:0"}) {
    auto r = resolve_vm_user(root);
    ASSERT_FALSE(r) << root;
    EXPECT_NE(r.message().find("must not be root"), std::string::npos) << r.message();
  }
  auto unknown = resolve_vm_user("no-such-user-minihv");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.message().find("no such user"), std::string::npos) << unknown.message();
  for (const char* junk : {"12a:3", ":3", "4:", "4:5:6"}) {
    auto r = resolve_vm_user(junk);
    ASSERT_FALSE(r) << junk;
    EXPECT_NE(r.message().find("UID:GID"), std::string::npos) << r.message();
  }
}

TEST_F(VmUserTest, TheKvmDeviceMustBeOpenToItsGroup) {
  const VmUser u{"4321:4322", kUid, kGid, {}};
  const std::string dev = file("kvm", 0660, kGid);
  EXPECT_TRUE(check_device_access(u, dev));
  const VmUser by_supplementary{"x", kUid, 1000, {kGid}};
  EXPECT_TRUE(check_device_access(by_supplementary, dev));
  ASSERT_EQ(::chmod(dev.c_str(), 0600), 0);
  auto r = check_device_access(u, dev);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("cannot open " + dev + " (owner 0, group 4322, mode 600)"), std::string::npos)
      << r.message();
  EXPECT_NE(r.message().find("chgrp kvm /dev/kvm"), std::string::npos) << r.message();
}

TEST_F(VmUserTest, EveryDirectoryDownToTheStateDirectoryMustBeSearchable) {
  const VmUser u{"4321:4322", kUid, kGid, {}};
  const std::string state = dir_ + "/state";
  ASSERT_EQ(::mkdir(state.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  auto r = check_reachable(u, state);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find(dir_ + " is not searchable"), std::string::npos) << r.message();
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  EXPECT_TRUE(check_reachable(u, state));
}

TEST_F(VmUserTest, AChildThatBecameTheUserHoldsNothingOfRoot) {
  ASSERT_EQ(::geteuid(), 0u) << "run as root";
  const std::string secret = file("secret", 0600, 0);
  const VmUser u{"4321:4322", kUid, kGid, {}};
  const pid_t p = ::fork();
  ASSERT_GE(p, 0);
  if (p == 0) {
    if (!become_vm_user(u)) ::_exit(10);
    if (::getuid() != kUid || ::geteuid() != kUid || ::getgid() != kGid || ::getegid() != kGid) ::_exit(11);
    if (::getgroups(0, nullptr) != 0) ::_exit(12);
    if (::open(secret.c_str(), O_RDONLY) >= 0) ::_exit(13);
    if (::setuid(0) == 0) ::_exit(14);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(p, &status, 0), p);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: no switch, 11: wrong ids, 12: groups kept, 13: root's file opened, "
                                       "14: root regained";
}

}  // namespace
}  // namespace minihv::cluster
