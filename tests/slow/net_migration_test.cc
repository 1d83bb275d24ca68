// Twenty live migrations of the test guest's `net` workload between two hosts of a lab LAN while a
// client keeps one TCP connection (and UDP) to its echo service: the proof that a guest's
// connections survive live migration. The gaps per move are printed for the record; the numbers
// that count are bench/'s.
#include <gtest/gtest.h>

#include "tests/harness/net_guest.h"

namespace minihv::test {
namespace {

constexpr int kMoves = 20;

TEST(GuestNetMoves, ATcpConversationSurvivesTwentyMigrations) {
  GuestLan lan(2);
  lan.add_tap(0, "vt0");
  TempDir dir;
  std::vector<long> gaps;
  migrate_back_and_forth(lan, dir, kMoves, gaps);
  EXPECT_EQ(gaps.size(), static_cast<size_t>(kMoves));
}

}  // namespace
}  // namespace minihv::test
