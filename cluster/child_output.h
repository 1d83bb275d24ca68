// cluster/child_output.h — the test guest's console lines a node acts on, as typed facts, and the
// line splitter every stream of a VM child goes through (cluster/vm_child.h).
//
//   console (stdout): the test guest's lines, format in docs/test-guest.md ("Console lines"):
//     HB cpu=<c> ... [rec=<r>] errs=<e>   a heartbeat       CORRUPT ...   a bad page or record
//     DISK resume last=<R> ...            where its disk log resumes
// What the VMM itself says (listening, arrived, running, ended and why) comes as events on its
// control socket (vmm/events.h), not from its stderr, which is only copied to the VM's log file.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace minihv::cluster {

struct ConsoleFact {
  enum Kind { kNone, kHeartbeat, kCorrupt, kResume } kind = kNone;
  long errs = -1, rec = -1, resume = -1;  // -1: not on the line
};
ConsoleFact parse_console_line(std::string_view line);

inline constexpr size_t kMaxErrorText = 400;  // a child's reason for ending, as the node keeps it
inline constexpr size_t kMaxConsoleLine = 512;  // longer console lines are cut (never a heartbeat)

// Splits a byte stream into lines (without their '\n'), each cut to its first `max_line` bytes:
// the rest of a longer line is dropped, never handed on as a line of its own, and a line that
// never ends holds at most `max_line` bytes.
class LineSplitter {
public:
  explicit LineSplitter(size_t max_line) : max_(max_line) {}
  // The lines that `data` completes.
  std::vector<std::string> feed(std::string_view data);

private:
  size_t max_;
  std::string partial_;
};

}  // namespace minihv::cluster
