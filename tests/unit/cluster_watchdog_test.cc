// The watchdog's arithmetic and its refusals (cluster/watchdog.h). The device itself (softdog)
// is exercised in the hw lane, whose L1 can load it: this machine's kernel has none.
#include "cluster/watchdog.h"

#include <vector>

#include <gtest/gtest.h>

namespace minihv::cluster {
namespace {

using namespace std::chrono_literals;
using blockdev::LeaseTimings;
using blockdev::Millis;
using blockdev::Nanos;

TEST(Watchdog, TheTimeoutResetsTheHostBeforeDeadLessTheIoTimeout) {
  LeaseTimings t;  // renew 200, fail 800, dead 1400, io 100 ms
  auto d = watchdog_timeout_for(t);
  ASSERT_TRUE(d) << d.message();
  EXPECT_EQ(*d, 1s);
  t.renew = Millis(2000), t.fail = Millis(8000), t.dead = Millis(14000), t.io_timeout = Millis(1000);
  d = watchdog_timeout_for(t);
  ASSERT_TRUE(d) << d.message();
  EXPECT_EQ(*d, 13s);
  t = LeaseTimings{};
  t.dead = Millis(1000);  // dead - io = 900 ms: no whole second fits
  d = watchdog_timeout_for(t);
  ASSERT_FALSE(d);
  EXPECT_TRUE(d.status().is_invalid_input());
  EXPECT_NE(d.message().find("--dead-ms of 1100"), std::string::npos) << d.message();
}

// Were this pet the last, the reset (pet + timeout) must come before another node may take over:
// `dead` after the renewal that set `until` (= renewal + fail), less the I/O timeout.
TEST(Watchdog, APetIsAllowedOnlyWhileItsResetWouldComeBeforeATakeover) {
  const LeaseTimings t;  // takeover at renewal + 1400 ms; reset must be by renewal + 1300 ms
  const Nanos renewal = 10s;
  const Nanos until = renewal + t.fail;
  EXPECT_TRUE(may_pet(renewal, until, t, 1s));
  EXPECT_TRUE(may_pet(renewal + Millis(300), until, t, 1s));   // reset at +1300: just in time
  EXPECT_FALSE(may_pet(renewal + Millis(301), until, t, 1s));  // reset at +1301: too late
  EXPECT_FALSE(may_pet(renewal + Millis(700), until, t, 1s));  // the lease is valid, the pet is not
}

// A VM's lease whose renewal stalled past `fail` lapses while the node lease renews on (the
// delayed-disk drill saw it: the reload of a device-mapper table stalled two of three renewals).
// Another node may take that VM's disk over `dead` after the VM lease's last renewal, so the pets
// follow the earliest of them while the VM lives; once it is gone, its lapsed lease no longer counts.
TEST(Watchdog, ALapsedLeaseOfALiveVmStopsThePetsThoughTheNodeLeaseRenews) {
  const LeaseTimings t;
  const Nanos vm_renewal = 10s, node_renewal = vm_renewal + Millis(600);
  const Nanos node_until = node_renewal + t.fail, vm_granted = vm_renewal + t.fail;
  const Nanos now = vm_renewal + Millis(700);  // the node lease renewed 100 ms ago
  EXPECT_TRUE(may_pet(now, pet_horizon(node_until, {}), t, 1s)) << "the node lease alone allows it";
  const std::vector<Nanos> live = {node_until, vm_granted};
  EXPECT_EQ(pet_horizon(node_until, live), vm_granted);
  EXPECT_FALSE(may_pet(now, pet_horizon(node_until, live), t, 1s))
      << "a reset at +1700 ms would come after the VM's disk could be taken over (+1400 ms)";
  EXPECT_TRUE(may_pet(vm_renewal + Millis(300), pet_horizon(node_until, live), t, 1s));
}

TEST(Watchdog, SomethingThatIsNotAWatchdogIsRefusedByName) {
  auto w = Watchdog::arm("/dev/null", 1s);
  ASSERT_FALSE(w);
  EXPECT_TRUE(w.status().is_invalid_input());
  EXPECT_NE(w.message().find("/dev/null: not a watchdog device"), std::string::npos) << w.message();
  auto missing = Watchdog::arm("/nonexistent/watchdog", 1s);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.message().find("/nonexistent/watchdog"), std::string::npos) << missing.message();
}

}  // namespace
}  // namespace minihv::cluster
