// blockdev/clock.h — the time a lease is measured in, behind an interface so tests can fake it.
//
// Lease time is local and monotonic: no host ever compares its clock with another's. The real
// clock is CLOCK_BOOTTIME (monotonic, and it keeps counting while the host is suspended, so a host
// that slept through its fail timeout knows it on wake). Wall time is for display only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace minihv::blockdev {

using Nanos = std::chrono::nanoseconds;
using Millis = std::chrono::milliseconds;

class Clock {
public:
  virtual ~Clock() = default;
  virtual Nanos now() const = 0;              // monotonic, never goes back
  virtual int64_t wall_unix_ms() const = 0;   // for "since when" in `volume inspect`
  virtual void sleep_for(Nanos d) = 0;
};

// CLOCK_BOOTTIME and real sleeps.
class SystemClock final : public Clock {
public:
  Nanos now() const override;
  int64_t wall_unix_ms() const override;
  void sleep_for(Nanos d) override;
};
Clock& system_clock();

// A clock that moves only when told to (or when someone sleeps on it): for unit tests.
class ManualClock final : public Clock {
public:
  explicit ManualClock(Nanos start = Nanos(1'000'000'000)) : now_(start.count()) {}
  Nanos now() const override { return Nanos(now_.load()); }
  int64_t wall_unix_ms() const override { return 1'700'000'000'000 + now_.load() / 1'000'000; }
  void sleep_for(Nanos d) override { advance(d); }
  void advance(Nanos d) { now_ += d.count(); }

private:
  std::atomic<int64_t> now_;
};

}  // namespace minihv::blockdev
