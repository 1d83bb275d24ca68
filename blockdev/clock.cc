#include "blockdev/clock.h"

#include <time.h>

#include <thread>

namespace minihv::blockdev {

namespace {
int64_t read_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

Nanos SystemClock::now() const { return Nanos(read_ns(CLOCK_BOOTTIME)); }
int64_t SystemClock::wall_unix_ms() const { return read_ns(CLOCK_REALTIME) / 1'000'000; }
void SystemClock::sleep_for(Nanos d) {
  if (d.count() > 0) std::this_thread::sleep_for(d);
}

Clock& system_clock() {
  static SystemClock clock;
  return clock;
}

}  // namespace minihv::blockdev
