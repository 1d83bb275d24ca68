// cluster/child_output.h — what a VM's child process (`minihv run`) tells its node on its two
// output streams, as typed facts, through one line splitter and one parser per stream.
//
//   console (stdout): the test guest's lines, format in docs/test-guest.md ("Console lines"):
//     HB cpu=<c> ... [rec=<r>] errs=<e>   a heartbeat       CORRUPT ...   a bad page or record
//     DISK resume last=<R> ...            where its disk log resumes
//   log (stderr): cli/run.cc's lines the node acts on:
//     minihv: waiting for a migrating VM on <address>    (an --incoming child listens)
//     minihv: incoming migration complete: ...           (it holds the whole VM)
//     minihv: error: <why>                               (why it ended)
// These log lines are still text (the child's control socket does not report them yet); this
// header is the one place that reads them.
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

struct LogFact {
  enum Kind { kNone, kListening, kArrived, kError } kind = kNone;
  std::string text;  // kListening: the address; kError: the reason (at most kMaxErrorText)
};
inline constexpr size_t kMaxErrorText = 400;
LogFact parse_log_line(std::string_view line);

inline constexpr size_t kMaxConsoleLine = 512;  // longer console lines are cut (never a heartbeat)
inline constexpr size_t kMaxLogLine = 4096;

// Splits a byte stream into lines (without their '\n'), each cut to `max_line`; a partial line
// that grows past `max_line` without ending is dropped (a guest that never ends its line).
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
