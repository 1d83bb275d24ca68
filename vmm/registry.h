// vmm/registry.h — the VMs this host runs: one record per `minihv run` process.
//
// Owns: the runtime directory (env MINIHV_RUN_DIR, else /run/minihv/vms; created mode 0700), one
// record file `<pid>.json` per VM process (mode 0600, written whole through a rename, removed when
// the process exits cleanly), and telling a live record from a stale one: the pid must be alive
// and its start time (/proc/PID/stat field 22) the one recorded, so a reused pid is never shown.
// Must not know: what a VM is doing now — that is its control socket's answer (`minihv ps` asks).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace minihv::registry {

constexpr const char* kRunDirEnv = "MINIHV_RUN_DIR";
constexpr const char* kDefaultRunDir = "/run/minihv/vms";

struct VmRecord {
  pid_t pid = 0;
  uint64_t start_ticks = 0;   // the process's start time, in clock ticks after boot
  std::string name;
  std::string state;          // "running", or "incoming" while it waits for a migrating VM
  uint64_t mem_bytes = 0;
  unsigned cpus = 0;
  std::string api;            // absolute path of the control socket, "" without --api
  std::string kernel;
  int64_t started_unix = 0;   // wall-clock seconds when the process registered
};

nlohmann::json to_json(const VmRecord& r);
Result<VmRecord> record_from_json(const nlohmann::json& j);

// MINIHV_RUN_DIR when set, else kDefaultRunDir.
std::string run_dir();
// Field 22 of /proc/PID/stat; an error when the process does not exist.
Result<uint64_t> process_start_ticks(pid_t pid);

// This process's record, present from create() until destruction.
class Registration {
public:
  // Fills in pid, start time and registration time, creates the directory when missing and
  // writes the record.
  static Result<Registration> create(const std::string& dir, VmRecord record);
  Registration(Registration&& o) noexcept;
  Registration& operator=(Registration&&) = delete;
  Registration(const Registration&) = delete;
  ~Registration();  // removes the record

  Status set_state(const std::string& state);  // rewrites the record
  // The same, with the size an incoming VM took from its source.
  Status set_running(uint64_t mem_bytes, unsigned cpus);
  const std::string& path() const { return path_; }

private:
  Registration(std::string path, VmRecord record) : path_(std::move(path)), record_(std::move(record)) {}
  std::string path_;
  VmRecord record_;
};

// Every record in `dir` whose process is still the one that wrote it, by pid. Stale records
// (process gone, pid reused) and unreadable ones are removed. A missing directory is no VM; one
// that cannot be read is an error.
Result<std::vector<VmRecord>> list_live(const std::string& dir);

}  // namespace minihv::registry
