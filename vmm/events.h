// vmm/events.h — what a running VM tells whoever watches it: the "events" stream of its control
// socket (a node's VmChild, `minihv vm events`), one JSON object per line.
//
// Owns: the events so far (the last kMaxKeptEvents of them, so a watcher that connects late hears
// what it missed) and every watcher's wake-up. Must not know: what an event means — the `minihv run`
// command publishes them (docs/api.md, "events"):
//   {"event":"listening","address":A}   an incoming VM waits for its source on A
//   {"event":"incoming", ...}           a migration's progress, as the destination sees it
//   {"event":"arrived"}                 the incoming VM is whole here (its disks' leases taken)
//   {"event":"running"}                 the guest runs
//   {"event":"ended","exit":N,"why":W,"error":E}   the last event: the VMM is about to exit
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/jsonl.h"

namespace minihv {

class VmEvents {
public:
  static constexpr size_t kMaxKeptEvents = 256;

  // Adds one event ({"event": name, ...}) and wakes every watcher.
  void publish(nlohmann::json event);
  // Publishes the last event: every watcher's stream ends after it.
  void finish(nlohmann::json ended);
  // The "events" stream command: every kept event, then each new one, until finish() or the
  // server stops. The VmEvents must outlive the server.
  jsonl::StreamOpener opener();

private:
  // Sends the events from index `next` on; false when the watcher is gone.
  bool send_from(int fd, uint64_t& next, bool& finished);
  void stream(int fd, int stop_fd, int wake_fd);
  void wake_all();

  std::mutex mu_;
  std::deque<nlohmann::json> kept_;
  uint64_t first_ = 0;  // the index of kept_.front() among every event published
  bool finished_ = false;
  std::vector<int> wake_fds_;  // one eventfd per watcher, owned by its stream
};

}  // namespace minihv
