// vmm/vcpu.h — one vCPU: its fd, its kvm_run page, its thread and its explicit state.
//
// Owns: the run loop (KVM_RUN → exit → bus dispatch), the running/paused/stopped state machine,
// and kicking a thread out of KVM_RUN (signal + immediate_exit). Must not know: which devices
// exist, boot formats, migration. How the VM ends is reported through VcpuHost.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/fd.h"
#include "common/status.h"
#include "vmm/bus.h"

namespace minihv {

class Kvm;
class GuestMemory;

enum class VcpuState { kCreated, kRunning, kPaused, kStopped };
const char* to_string(VcpuState s);

// Why a VM ends; each maps to one exit status of `minihv run` (see docs/vmm.md).
enum class VmEnd { kPowerOff, kStopped, kMigrated, kReboot, kGuestCrash, kError };
int exit_status(VmEnd end);
const char* to_string(VmEnd end);  // "poweroff", "stopped", "migrated", "reboot", "crash", "error"

// What a vCPU needs from its VM.
class VcpuHost {
public:
  virtual ~VcpuHost() = default;
  virtual const Bus& pio_bus() const = 0;
  virtual const Bus& mmio_bus() const = 0;
  virtual const GuestMemory& memory() const = 0;
  // First caller wins; every vCPU is then stopped.
  virtual void end(VmEnd why, const std::string& message) = 0;
  // This vCPU's dirty ring is full: collect the rings so that it can run on.
  virtual Status collect_dirty_rings() = 0;
};

// What one exit asks the run loop to do. A free function decides it, so tests can feed it
// synthetic kvm_run contents.
enum class ExitAction { kContinue, kDirtyRingFull, kGuestCrash, kEmulationFailure, kFatal };
struct ExitResult {
  ExitAction action = ExitAction::kContinue;
  std::string message;  // for anything but kContinue
};
ExitResult handle_exit(kvm_run& run, const Bus& pio, const Bus& mmio);

class Vcpu {
public:
  // `dirty_ring_bytes`: the VM's dirty ring per vCPU (0: none), mapped from the vCPU's fd.
  static Result<std::unique_ptr<Vcpu>> create(int vm_fd, const Kvm& kvm, unsigned id, VcpuHost& host,
                                              size_t dirty_ring_bytes = 0);
  ~Vcpu();

  unsigned id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_dirty_gfn* dirty_ring() const { return static_cast<kvm_dirty_gfn*>(ring_map_.addr()); }
  VcpuState state() const { return state_.load(); }
  uint64_t exits() const { return exits_.load(std::memory_order_relaxed); }

  void start();                 // spawns the thread; it runs until paused or stopped
  void request(VcpuState want); // kRunning, kPaused or kStopped; kicks the thread
  void wait_for(VcpuState s);   // blocks until the thread reports state s (or stopped)
  void join();

  // Throttling (auto-converge): the throttle thread kicks every kThrottlePeriod; after each kick
  // the thread stays out of KVM_RUN for percent/(100 - percent) of the time it ran since its last
  // such pause (9 ms after 1 ms at 90 %), at most kThrottleLongestSleep. Measured, not assumed: a
  // kick or a timer that comes late (a loaded host, a nested one) does not let the guest run more
  // than its share. percent 0 = never.
  static constexpr std::chrono::milliseconds kThrottlePeriod{10};
  static constexpr std::chrono::milliseconds kThrottleLongestSleep{250};
  void set_throttle(unsigned percent) { throttle_percent_.store(percent); }
  void throttle_kick();

  // Installs the kick signal handler once per process.
  static void install_kick_handler();

private:
  Vcpu(unsigned id, VcpuHost& host) : id_(id), host_(host) {}
  void thread_main();
  void report(VcpuState s);
  void throttle_sleep();
  bool settle();
  bool on_exit();
  std::string describe_emulation_failure(const std::string& base);

  unsigned id_;
  VcpuHost& host_;
  UniqueFd fd_;
  Mapping run_map_;
  Mapping ring_map_;  // KVM's dirty ring for this vCPU, when the VM has one
  kvm_run* run_ = nullptr;
  std::thread thread_;
  pthread_t pthread_{};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<VcpuState> want_{VcpuState::kRunning};
  std::atomic<VcpuState> state_{VcpuState::kCreated};
  std::atomic<uint64_t> exits_{0};
  std::atomic<bool> started_{false};  // pthread_ is valid
  std::atomic<unsigned> throttle_percent_{0};
  std::atomic<bool> throttle_due_{false};
  std::chrono::steady_clock::time_point ran_since_{};  // the end of the last throttle pause (thread-owned)
  bool unsettled_ = false;  // the last exit's I/O completes only on the next KVM_RUN (thread-owned)
};

}  // namespace minihv
