// The page where a cluster VM shows its node its oldest disk write in flight
// (blockdev/write_deadlines.h): what one side publishes the other reads, and a page that is not
// one from a node is refused.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "blockdev/write_deadlines.h"

namespace minihv::blockdev {
namespace {

TEST(WriteDeadlines, WhatTheVmPublishesTheNodeReads) {
  auto node = WriteDeadlines::create();
  ASSERT_TRUE(node) << node.message();
  EXPECT_EQ((*node)->oldest().count(), 0);
  auto vm = WriteDeadlines::attach(::dup((*node)->fd()));
  ASSERT_TRUE(vm) << vm.message();
  (*vm)->publish(Nanos(5000));
  EXPECT_EQ((*node)->oldest().count(), 5000);
  EXPECT_FALSE((*node)->overdue(Nanos(4999)));
  EXPECT_TRUE((*node)->overdue(Nanos(5000)));
  (*vm)->publish(Nanos(0));
  EXPECT_FALSE((*node)->overdue(Nanos(INT64_MAX))) << "nothing in flight is never late";
}

TEST(WriteDeadlines, AnFdThatIsNotANodesPageIsRefused) {
  const int plain = ::memfd_create("not-a-page", MFD_CLOEXEC);  // unsealed, empty
  ASSERT_GE(plain, 0);
  auto r = WriteDeadlines::attach(plain);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("is not a write-deadline page from a minihv node"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace minihv::blockdev
