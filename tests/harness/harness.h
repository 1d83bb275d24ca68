// tests/harness/harness.h — run real `minihv` processes and read what their guests print.
//
// A VmProcess is one child `build/minihv ...` with stdout and stderr on pipes; tests wait for
// console lines (with deadlines, never sleeps), talk to the control socket, and collect the exit
// status. Nothing here fakes KVM: when /dev/kvm is missing the tests fail loudly.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace minihv::test {

std::string minihv_binary();     // build/minihv
std::string testguest_elf();     // build/guest/testguest.elf
std::string source_dir();
// The environment variable minihv reads its migration key file from (cli/run_control.h).
inline constexpr const char* kTlsPskEnvName = "MINIHV_TLS_PSK";
// The test process's key file (made at first use, removed at exit): every child started here gets
// MINIHV_TLS_PSK=<it> unless the test's env sets MINIHV_TLS_PSK itself (empty: no key).
const std::string& test_key_file();
// A fresh directory under /tmp, removed with its contents at destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
  std::string path_;
};

class VmProcess {
public:
  // Starts `minihv <args...>`, with `env` ("NAME=value") added to its environment. A non-empty
  // `prefix` runs first and is handed the binary and args (e.g. {"ip","netns","exec",NS}: minihv in a
  // network namespace); prefix[0] is looked up on PATH.
  explicit VmProcess(std::vector<std::string> args, std::vector<std::string> env = {},
                     std::vector<std::string> prefix = {});
  // The same, with stdin a terminal (a pseudo-terminal, echo off) that type() writes to: minihv
  // then feeds it to the guest's serial port, as from a user's terminal.
  struct WithTerminal {};
  VmProcess(WithTerminal, std::vector<std::string> args);
  // The same, with stdin a pipe that type() writes to and close_input() closes (end of input).
  struct WithPipe {};
  VmProcess(WithPipe, std::vector<std::string> args, std::vector<std::string> env = {});
  ~VmProcess();  // kills the child if it still runs
  VmProcess(const VmProcess&) = delete;
  VmProcess& operator=(const VmProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Waits until a stdout line matches `re` (search) and returns it; nullopt on timeout or exit.
  // From line `from` on (line_count() before: only a line that comes after).
  std::optional<std::string> wait_line(const std::string& re, std::chrono::milliseconds timeout, size_t from = 0);
  // How many stdout lines have come so far.
  size_t line_count() const;
  // Waits until stderr contains `text`.
  bool wait_stderr(const std::string& text, std::chrono::milliseconds timeout);
  // Every stdout line matching `re` so far.
  std::vector<std::string> lines_matching(const std::string& re) const;
  std::string stdout_text() const;
  // The last `lines` lines of stdout, for failure messages: where a boot stopped is at the end, and
  // a report that cuts a long console keeps its head.
  std::string stdout_tail(size_t lines = 60) const;
  std::string stderr_text() const;
  // Waits for the process to exit; returns its exit status (128+signal if killed), nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  void kill(int sig);
  // Types `text` on the terminal or into the pipe (WithTerminal, WithPipe); false when it could
  // not be written.
  bool type(const std::string& text);
  void close_input();

private:
  void start(std::vector<std::string> args, std::vector<std::string> env, std::vector<std::string> prefix,
             int stdin_fd);
  void reader(int fd, bool is_stdout);
  int terminal_ = -1;  // the pseudo-terminal's master side or the stdin pipe's write end, or -1
  pid_t pid_ = -1;
  int status_ = -1;
  bool exited_ = false;
  mutable std::mutex mu_;
  std::vector<std::string> out_lines_;
  std::string out_partial_, err_;
  bool out_unterminated_ = false;  // stdout ended without a newline
  std::thread out_thread_, err_thread_;
  bool out_closed_ = false;
};

// Boots the test guest with `workload` (cpuid: ring 0, cpuid3: ring 3) under `--cpu-model model`
// and returns the names on its "CPUID flags:" line (empty, with a test failure, when none came).
std::set<std::string> guest_cpuid_flags(const std::string& workload, const std::string& model);

// A TCP port nobody listens on right now (the kernel's pick; a tiny race we accept in tests).
// `minihv ARGS...` run to its end, for commands that end on their own: exit status (-1 when it did
// not end within `limit`; it is killed then), stdout and stderr.
struct MinihvRun {
  int rc = -1;
  std::string out, err;
};
MinihvRun run_minihv(std::vector<std::string> args, std::vector<std::string> env = {},
                     std::chrono::milliseconds limit = std::chrono::seconds(60));

int free_port();

// The value of FIELD in /proc/PID/status ("NoNewPrivs" -> "1"), empty when there is none.
std::string proc_status(pid_t pid, const std::string& field);

// How many times longer the tests let the product take where its limit is a matter of speed (a
// migration's --max-time): 1 on this project's KVM hosts, kHwLaneStretch in the hw lane
// (MINIHV_HW_LANE), whose L1 runs minihv under QEMU TCG: a migration there moves ~5 MB/s.
constexpr int kHwLaneStretch = 3;
int time_stretch();
// `seconds` of a limit given to the product, stretched for this host ("60" in the lane: "180").
std::string stretched_seconds(int seconds);

// `minihv migrate --api API --to TO --json EXTRA...`, to completion (at most 180 s, stretched).
// Without a --max-time in EXTRA, the default 120 s is passed stretched.
struct MigrateResult {
  int exit = -1;
  nlohmann::json json;
  std::string stderr_text;
};
MigrateResult migrate(const std::string& api, const std::string& to, std::vector<std::string> extra = {},
                      std::vector<std::string> env = {});

// Parsed heartbeat: `HB cpu=<c> seq=<n> ... errs=<e>` → {cpu, seq, errs, fields}.
struct Heartbeat {
  int cpu = -1;
  long seq = -1;
  long errs = -1;
  std::map<std::string, std::string> fields;
};
std::optional<Heartbeat> parse_heartbeat(const std::string& line);
// The `disk` workload's last acknowledged record (`rec=` of vCPU 0's heartbeats so far), -1 if none.
long last_acknowledged(const VmProcess& vm);

// A disk image file of `bytes` zero bytes.
void make_image(const std::string& path, uint64_t bytes);

}  // namespace minihv::test
