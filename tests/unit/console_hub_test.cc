// vmm/console_hub: attached console clients get the guest's output; one that stops reading is
// bounded and told what it lost, and nobody else waits for it.
#include <gtest/gtest.h>

#include <poll.h>

#include "vmm/console_hub.h"

namespace minihv {
namespace {

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST(ConsoleHub, EveryAttachedClientGetsTheOutput) {
  ConsoleHub hub;
  hub.publish("before", 6);  // nobody attached: dropped, nothing kept
  auto a = hub.attach();
  auto b = hub.attach();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(hub.clients(), 2u);
  EXPECT_FALSE(readable(a->wake_fd()));
  hub.publish("hello\n", 6);
  EXPECT_TRUE(readable(a->wake_fd()));
  EXPECT_EQ(a->take(), "hello\n");
  EXPECT_FALSE(readable(a->wake_fd()));
  EXPECT_EQ(b->take(), "hello\n");
  b.reset();
  EXPECT_EQ(hub.clients(), 1u);
  hub.publish("x", 1);
  EXPECT_EQ(a->take(), "x");
}

TEST(ConsoleHub, AClientThatStopsReadingIsBoundedAndToldWhatItLost) {
  ConsoleHub hub;
  auto slow = hub.attach();
  auto fast = hub.attach();
  const std::string chunk(4096, 'c');
  const size_t chunks = ConsoleHub::kClientQueue / chunk.size() + 10;
  for (size_t i = 0; i < chunks; ++i) {
    hub.publish(chunk.data(), chunk.size());
    EXPECT_EQ(fast->take().size(), chunk.size());
  }
  const std::string got = slow->take();
  const std::string note = "[minihv: " + std::to_string(10 * chunk.size()) + " bytes of console output dropped";
  EXPECT_NE(got.find(note), std::string::npos) << got.substr(0, 200);
  EXPECT_EQ(got.size() - got.find(chunk), ConsoleHub::kClientQueue);
  hub.publish("next", 4);
  EXPECT_EQ(slow->take(), "next");  // the note once, then output as before
}

}  // namespace
}  // namespace minihv
