#include "vmm/vcpu.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "common/sandbox.h"
#include "vmm/kvm.h"
#include "vmm/memory.h"

namespace minihv {

namespace {

// Re-entries allowed to complete the last exit before pausing (each may need userspace again).
constexpr unsigned kSettleExits = 64;

// SIGRTMIN+1: kicks a vCPU thread out of KVM_RUN (the handler does nothing; EINTR does the work).
int kick_signal() { return SIGRTMIN + 1; }
void on_kick(int) {}

std::string hex_bytes(const uint8_t* p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, i ? " %02x" : "%02x", p[i]);
    s += b;
  }
  return s;
}

}  // namespace

const char* to_string(VcpuState s) {
  switch (s) {
    case VcpuState::kCreated: return "created";
    case VcpuState::kRunning: return "running";
    case VcpuState::kPaused: return "paused";
    case VcpuState::kStopped: return "stopped";
  }
  return "?";
}

const char* to_string(VmEnd end) {
  switch (end) {
    case VmEnd::kPowerOff: return "poweroff";
    case VmEnd::kStopped: return "stopped";
    case VmEnd::kMigrated: return "migrated";
    case VmEnd::kReboot: return "reboot";
    case VmEnd::kGuestCrash: return "crash";
    case VmEnd::kError: return "error";
  }
  return "?";
}

int exit_status(VmEnd end) {
  switch (end) {
    case VmEnd::kPowerOff:
    case VmEnd::kStopped:
    case VmEnd::kMigrated: return 0;
    case VmEnd::kError: return 1;
    case VmEnd::kReboot: return 3;
    case VmEnd::kGuestCrash: return 4;
  }
  return 1;
}

ExitResult handle_exit(kvm_run& run, const Bus& pio, const Bus& mmio) {
  switch (run.exit_reason) {
    case KVM_EXIT_IO: {
      auto* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
      const uint32_t size = run.io.size;
      if (size != 1 && size != 2 && size != 4) return {ExitAction::kFatal, "port I/O of bad size"};
      for (uint32_t i = 0; i < run.io.count; ++i, data += size) {
        if (run.io.direction == KVM_EXIT_IO_OUT)
          pio.write(run.io.port, data, size);
        else
          pio.read(run.io.port, data, size);
      }
      return {};
    }
    case KVM_EXIT_MMIO: {
      const uint32_t len = run.mmio.len;
      if (len == 0 || len > sizeof run.mmio.data) return {ExitAction::kFatal, "MMIO of bad size"};
      if (run.mmio.is_write)
        mmio.write(run.mmio.phys_addr, run.mmio.data, len);
      else
        mmio.read(run.mmio.phys_addr, run.mmio.data, len);
      return {};
    }
    case KVM_EXIT_SHUTDOWN:
      return {ExitAction::kGuestCrash, "guest triple fault (KVM_EXIT_SHUTDOWN)"};
    case KVM_EXIT_SYSTEM_EVENT:
      if (run.system_event.type == KVM_SYSTEM_EVENT_RESET)
        return {ExitAction::kGuestCrash, "guest reset (KVM_SYSTEM_EVENT_RESET)"};
      return {ExitAction::kGuestCrash, "guest system event " + std::to_string(run.system_event.type)};
    case KVM_EXIT_INTERNAL_ERROR:
      if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
        return {ExitAction::kEmulationFailure, "KVM emulation failure"};
      return {ExitAction::kFatal, "KVM internal error, suberror " + std::to_string(run.internal.suberror)};
    case KVM_EXIT_FAIL_ENTRY:
      return {ExitAction::kFatal,
              "KVM entry failed, hardware reason 0x" + [&] {
                char b[20];
                std::snprintf(b, sizeof b, "%llx",
                              static_cast<unsigned long long>(run.fail_entry.hardware_entry_failure_reason));
                return std::string(b);
              }()};
    case KVM_EXIT_DIRTY_RING_FULL:
      return {ExitAction::kDirtyRingFull, ""};
    case KVM_EXIT_HLT:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
      return {};
    default:
      return {ExitAction::kFatal, "unexpected KVM exit reason " + std::to_string(run.exit_reason)};
  }
}

void Vcpu::install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, nullptr);  // no SA_RESTART: KVM_RUN must return EINTR
  });
}

Result<std::unique_ptr<Vcpu>> Vcpu::create(int vm_fd, const Kvm& kvm, unsigned id, VcpuHost& host,
                                           size_t dirty_ring_bytes) {
  install_kick_handler();
  std::unique_ptr<Vcpu> v(new Vcpu(id, host));
  int fd = kvm_ioctl(vm_fd, KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return kvm_error(("KVM_CREATE_VCPU " + std::to_string(id)).c_str(), fd);
  v->fd_.reset(fd);
  void* p = mmap(nullptr, kvm.vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Status::from_errno("mmap of vcpu " + std::to_string(id) + " kvm_run");
  v->run_map_ = Mapping(p, kvm.vcpu_mmap_size());
  v->run_ = static_cast<kvm_run*>(p);
  if (dirty_ring_bytes) {
    const auto page = static_cast<off_t>(sysconf(_SC_PAGESIZE));
    p = mmap(nullptr, dirty_ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, KVM_DIRTY_LOG_PAGE_OFFSET * page);
    if (p == MAP_FAILED) return Status::from_errno("mmap of vcpu " + std::to_string(id) + " dirty ring");
    v->ring_map_ = Mapping(p, dirty_ring_bytes);
  }
  return v;
}

Vcpu::~Vcpu() {
  if (thread_.joinable()) {
    request(VcpuState::kStopped);
    thread_.join();
  }
}

void Vcpu::start() {
  std::lock_guard lock(mu_);  // the thread cannot report kStopped before pthread_ is known
  thread_ = std::thread([this] { thread_main(); });
  pthread_ = thread_.native_handle();
  started_.store(true);
}

void Vcpu::request(VcpuState want) {
  {
    std::lock_guard lock(mu_);
    if (want_.load() == VcpuState::kStopped) return;  // stopping is final
    want_.store(want);
  }
  cv_.notify_all();
  if (run_) __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  // Kick only a thread that provably still exists: it reports kStopped under mu_ as its very last
  // act, so while we hold mu_ and see another state, pthread_kill cannot hit a finished thread.
  std::lock_guard lock(mu_);
  if (started_.load() && state_.load() != VcpuState::kStopped) pthread_kill(pthread_, kick_signal());
}

void Vcpu::wait_for(VcpuState s) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_.load() == s || state_.load() == VcpuState::kStopped; });
}

void Vcpu::throttle_kick() {
  if (throttle_percent_.load() == 0) return;
  throttle_due_.store(true);
  if (run_) __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (thread_.joinable() && state_.load() == VcpuState::kRunning) pthread_kill(pthread_, kick_signal());
}

// Sits out percent% of the time since the last pause, waking early for any state request. After
// longer than the longest pause (the first kick, or one after a pause of the VM) it counts one period.
void Vcpu::throttle_sleep() {
  const unsigned percent = std::min(throttle_percent_.load(), 99u);
  if (percent == 0) return;
  using std::chrono::microseconds;
  auto ran = std::chrono::duration_cast<microseconds>(std::chrono::steady_clock::now() - ran_since_);
  if (ran > kThrottleLongestSleep) ran = kThrottlePeriod;
  const auto sleep = std::min<microseconds>(ran * percent / (100 - percent), kThrottleLongestSleep);
  {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, sleep, [&] { return want_.load() != VcpuState::kRunning; });
  }
  ran_since_ = std::chrono::steady_clock::now();
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::report(VcpuState s) {
  {
    std::lock_guard lock(mu_);
    state_.store(s);
  }
  cv_.notify_all();
}

void Vcpu::thread_main() {
  char name[16];
  std::snprintf(name, sizeof name, "vcpu%u", id_);
  pthread_setname_np(pthread_self(), name);
  // From here the thread runs the guest: it keeps only the vCPU list (common/sandbox.h).
  if (Status st = sandbox::enter(sandbox::ThreadClass::kVcpu); !st.is_ok()) {
    host_.end(VmEnd::kError, std::string(name) + ": " + st.message());
    report(VcpuState::kStopped);
    return;
  }
  for (;;) {
    // Clear the kick before reading the wanted state: a kick that lands after the read still
    // makes KVM_RUN return at once, so no request is ever missed.
    __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
    VcpuState want = want_.load();
    if (want == VcpuState::kStopped) break;
    if (want == VcpuState::kPaused) {
      if (!settle()) break;
      report(VcpuState::kPaused);
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return want_.load() != VcpuState::kPaused; });
      continue;
    }
    if (throttle_due_.exchange(false)) {
      throttle_sleep();
      continue;
    }
    if (state_.load() != VcpuState::kRunning) report(VcpuState::kRunning);
    int rc = ::ioctl(fd_.get(), KVM_RUN, 0);  // not kvm_ioctl(): EINTR must come back here
    if (rc < 0) rc = -errno;
    if (rc == -EINTR || rc == -EAGAIN) {
      unsettled_ = false;  // KVM completes a pending exit before it looks for signals
      continue;
    }
    if (rc < 0) {
      host_.end(VmEnd::kError, "vcpu " + std::to_string(id_) + ": KVM_RUN: " + std::strerror(-rc));
      break;
    }
    if (!on_exit()) break;
  }
  report(VcpuState::kStopped);
}

// KVM finishes an exit (a port or MMIO read's value into the register, RIP past the instruction)
// only on the next KVM_RUN, and that pending work is in no state userspace can save (api.rst,
// "kvm_run"). Before the vCPU reports paused — its state may be saved and moved — one KVM_RUN
// with immediate_exit set completes it and returns at once. False: KVM failed (the VM is ended).
bool Vcpu::settle() {
  // A completion may need userspace again (a string I/O's next chunk): handle that exit too.
  for (unsigned i = 0; unsettled_ && i < kSettleExits; ++i) {
    __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
    int rc = ::ioctl(fd_.get(), KVM_RUN, 0);
    if (rc < 0) rc = -errno;
    if (rc == -EINTR || rc == -EAGAIN) {
      unsettled_ = false;
      return true;
    }
    if (rc < 0) {
      host_.end(VmEnd::kError, "vcpu " + std::to_string(id_) + ": completing the last exit before pausing: KVM_RUN: " +
                                   std::strerror(-rc));
      return false;
    }
    if (!on_exit()) return false;
  }
  if (!unsettled_) return true;
  host_.end(VmEnd::kError, "vcpu " + std::to_string(id_) + ": the last exit did not complete in " +
                               std::to_string(kSettleExits) + " re-entries; its state cannot be saved");
  return false;
}

// One exit KVM_RUN returned: counted, handled. False: the VM ends (reported to the host).
bool Vcpu::on_exit() {
  exits_.fetch_add(1, std::memory_order_relaxed);
  unsettled_ = true;
  ExitResult r = handle_exit(*run_, host_.pio_bus(), host_.mmio_bus());
  if (r.action == ExitAction::kContinue) return true;
  if (r.action == ExitAction::kDirtyRingFull) {
    Status st = host_.collect_dirty_rings();
    if (st) return true;
    r = {ExitAction::kFatal, "dirty ring full: " + st.message()};
  }
  std::string msg = "vcpu " + std::to_string(id_) + ": " + r.message;
  if (r.action == ExitAction::kEmulationFailure) {
    host_.end(VmEnd::kError, describe_emulation_failure(msg));
  } else {
    host_.end(r.action == ExitAction::kGuestCrash ? VmEnd::kGuestCrash : VmEnd::kError, msg);
  }
  return false;
}

// "vcpu 0: KVM emulation failure at RIP 0x... (CPL 0): instruction bytes cc 90 ..." plus a hint.
std::string Vcpu::describe_emulation_failure(const std::string& base) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::string out = base;
  if (kvm_ioctl(fd_.get(), KVM_GET_REGS, &regs) < 0 || kvm_ioctl(fd_.get(), KVM_GET_SREGS, &sregs) < 0)
    return out + " (registers unavailable)";
  char buf[96];
  std::snprintf(buf, sizeof buf, " at RIP 0x%llx (CPL %u)", static_cast<unsigned long long>(regs.rip),
                static_cast<unsigned>(sregs.cs.dpl));
  out += buf;
  kvm_translation tr{};
  tr.linear_address = sregs.cs.base + regs.rip;
  uint8_t bytes[15];
  if (kvm_ioctl(fd_.get(), KVM_TRANSLATE, &tr) == 0 && tr.valid &&
      host_.memory().read(tr.physical_address, bytes, sizeof bytes).is_ok()) {
    out += ": instruction bytes " + hex_bytes(bytes, sizeof bytes);
  } else if (run_->internal.ndata > 0) {
    out += ": KVM data " + hex_bytes(reinterpret_cast<const uint8_t*>(run_->internal.data),
                                     std::min<size_t>(run_->internal.ndata, 4) * sizeof(uint64_t));
  }
  out += ". This KVM cannot run that instruction in guest kernel mode (a software KVM such as PVM "
         "interprets guest ring 0); run this guest on hardware KVM";
  return out;
}

}  // namespace minihv
