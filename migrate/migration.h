// migrate/migration.h — live migration of one VM: the source and destination drivers.
//
// Owns: the pre-copy algorithm (full pass, dirty rounds, convergence, auto-converge, switchover),
// what the two sides say to each other in what order (docs/migration-protocol.md), the checks
// before any page moves (CPU compatibility, memory), and the summary a user sees.
// Must not know: how frames are laid out or carried (frames.h, transport.h), how pages are encoded
// (codec.h), KVM (the Vm's API).
//
// The one rule: never two running copies. Any failure before COMMIT leaves the VM running on the
// source exactly as before (dirty logging off, throttle off, devices resumed, vCPUs running);
// after COMMIT, the VM resumes here only on proof that the destination does not run it (its
// ABORT, or a lease it needs that is still held here); without an ACK or such proof the
// switchover is in doubt and the VM stays paused (Summary::in_doubt).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "migrate/codec.h"
#include "migrate/in_doubt.h"
#include "migrate/transport.h"
#include "vmm/vm.h"

namespace minihv::migrate {

// The defaults of a live migration (`minihv migrate`, `cluster vm move`), defined once.
inline constexpr uint64_t kDefaultDowntimeMs = 300;  // switch over when the rest fits in this
inline constexpr double kDefaultMaxSeconds = 120;    // give up (VM stays) after this long

struct SourceOptions {
  std::vector<Endpoint> targets;   // tried in order (the migration networks)
  uint16_t streams = 1;
  Compression compression = Compression::kAuto;
  uint64_t downtime_ms = kDefaultDowntimeMs;
  double max_seconds = kDefaultMaxSeconds;
  bool verify = false;             // whole-memory xxh3 digests compared on both sides
  bool zero_copy = true;           // raw pages sent from guest memory (EncoderOptions::zero_copy)
  uint64_t max_bandwidth = 0;      // bytes/s over all streams before the pause (0: as fast as it goes)
  std::optional<tls::Psk> psk;     // the channel key (migration_psk); nullopt: plain TCP (--insecure)
};

// Where the pause went (ms from the pause), so a slow switchover can be read, not guessed.
struct DowntimeParts {
  double paused = 0;        // vCPUs stopped
  double saved = 0;         // devices quiesced and the machine state saved
  double last_page = 0;     // final dirty pages encoded and handed to the kernel
  double announced = 0;     // a destination with NICs announced the guest (0 without NICs)
  uint64_t final_pages = 0; // pages harvested in the pause
  double state_sent = 0;    // machine state handed to the kernel
  uint64_t state_bytes = 0;
  double expected = 0;      // what the source expected the pause to take (pages x page cost + fixed)
  double verified = 0;      // --verify answered (0 without it)
  double acked = 0;         // the destination loaded the state and acknowledged
  nlohmann::json to_json() const;
};

struct Summary {
  bool ok = false;
  // COMMIT went out, no ACK came and nothing proves the destination did not take it: the VM is
  // paused here and must stay so until someone settles it (in_doubt.h; `migrate --resolve`).
  bool in_doubt = false;
  uint64_t session_id = 0;         // set when in doubt: what to ask the destination about
  // How the commit was settled: "ack"; "query" (the ACK was lost, the destination said it
  // committed); "lease" (no answer; the VM resumed here because the destination cannot run it
  // without leases held here); "" before COMMIT.
  std::string switchover;
  std::string error;
  std::string target;              // the address that took the VM
  std::vector<ConnectAttempt> tried;
  uint64_t total_ms = 0, downtime_ms = 0, setup_ms = 0;
  unsigned rounds = 0;
  unsigned throttle_percent = 0;   // the highest auto-converge throttle used
  uint64_t ram_bytes = 0, bytes_sent = 0;
  CodecStats pages;
  double throughput_mbps = 0;      // payload bytes on the wire / time sending, in Mbit/s
  unsigned streams = 0;
  std::string tls;                 // Session::tls(): which TLS carried the streams
  double handshake_ms = 0;         // the streams' TLS handshakes (they run at once)
  bool verified = false;
  DowntimeParts downtime_parts;
  struct DirtyLogUse {
    std::string method;            // the VM's: "ring", "bitmap (manual protect)", "bitmap"
    unsigned harvests = 0;         // every region's dirty pages collected once
    double harvest_ms = 0;         // their total time (the last one is inside the pause)
  } dirty_log;
  struct Adaptive {
    unsigned hash_off_rounds = 0;  // rounds after which "unchanged" hashing was off (sampled only)
    unsigned hash_on_rounds = 0;   // ... and on (every dirty page hashed)
  } adaptive;
  nlohmann::json to_json() const;
};

using ProgressFn = std::function<void(const nlohmann::json&)>;

// Source: moves the running VM to the first target that accepts. On success the VM is paused here
// and must end (the destination runs it); on failure it runs here as before.
Summary migrate_out(Vm& vm, const SourceOptions& options, const ProgressFn& progress);

struct DestinationOptions {
  Endpoint listen;
  std::chrono::milliseconds accept_timeout{std::chrono::hours(24)};
  // Readable (an eventfd written once): stop waiting. Heard until the source's connections are
  // in, and once more right after the "connected" progress event, before HELLO is answered; a
  // migration past that point is not cancelled. -1: never.
  int cancel_fd = -1;
  std::optional<tls::Psk> psk;     // as SourceOptions::psk; the in-doubt witness uses it too
};

// Destination: waits for one migration into the (incoming, not yet running) VM. On success the VM
// holds the guest's memory and state and the source has been told to let go: call vm.run(), and
// keep the returned witness for as long as the VM runs (it answers a source whose ACK was lost).
Result<std::unique_ptr<CommitWitness>> migrate_in(Vm& vm, const DestinationOptions& options,
                                                  const ProgressFn& progress);

// The VM description both sides compare in HELLO: mem_bytes, cpus, cpu_model, disks (a count) and,
// once built, regions (the memory layout). An incoming VM not built yet has 0 (or "") for what it
// takes from the source, and no regions.
nlohmann::json describe_vm(const Vm& vm);
// Why `incoming` cannot take a VM described by `source` (empty when it can). Keys a description
// lacks (an older source's) or has as 0 (an incoming VM's "not given") are not compared.
std::string check_vm_fits(const nlohmann::json& source, const nlohmann::json& local);
// The source's CPU model as this host can name it: "" (the default) for a host-local profile file.
std::string portable_cpu_model(const std::string& model);

// At most one migration in or out of a VMM at a time.
class MigrationGuard {
public:
  explicit MigrationGuard(std::atomic<bool>& busy) : busy_(busy), owned_(!busy.exchange(true)) {}
  ~MigrationGuard() {
    if (owned_) busy_.store(false);
  }
  bool owned() const { return owned_; }

private:
  std::atomic<bool>& busy_;
  bool owned_;
};

}  // namespace minihv::migrate
