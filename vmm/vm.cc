#include "vmm/vm.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <utility>

#include "common/log.h"
#include "cpuid/host.h"
#include "cpuid/kvm_abi.h"
#include "vmm/devices/power.h"
#include "vmm/devices/uart.h"
#include "vmm/irq_kvm.h"
#include "vmm/layout.h"
#include "vmm/vcpu_setup.h"

namespace minihv {

namespace {

// `run --console FILE`: the user's own output, readable by others as any file they write.
constexpr unsigned kConsoleFileMode = 0644;

// Where KVM on Intel hardware keeps its real-mode TSS and identity page table: one page and three
// pages inside the MMIO gap, below the IOAPIC, where nothing else lives.
constexpr uint64_t kKvmIdentityMapAddr = 0xFFFBC000;
constexpr uint64_t kKvmTssAddr = 0xFFFBD000;
constexpr unsigned kMaxCpus = 254;  // xAPIC ids 0..254 (255 is broadcast)

uint64_t host_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (f >> key >> kib) {
    if (key == "MemTotal:") return kib * 1024;
    f.ignore(1 << 10, '\n');
  }
  return 0;
}

}  // namespace

const char* to_string(VmState s) {
  switch (s) {
    case VmState::kCreated: return "created";
    case VmState::kRunning: return "running";
    case VmState::kPaused: return "paused";
    case VmState::kEnded: return "ended";
  }
  return "?";
}

Result<std::unique_ptr<Vm>> Vm::create(const VmConfig& config) {
  std::unique_ptr<Vm> vm(new Vm(config));
  MINIHV_TRY(vm->build(/*load_kernel=*/true));
  return vm;
}

// What a size that is known (not 0: still to come from a migration's source) must fit.
Status Vm::check_size(uint64_t mem_bytes, unsigned cpus) {
  if (cpus > kMaxCpus) return Status::invalid("--cpus " + std::to_string(cpus) + ": must be 1.." + std::to_string(kMaxCpus));
  const uint64_t host = host_memory_bytes();
  if (host && mem_bytes > host)
    return Status::invalid("--mem " + std::to_string(mem_bytes >> 20) + " MiB is more than this host has (" +
                           std::to_string(host >> 20) + " MiB)");
  return Status::ok();
}

// create() and create_incoming(): the same machine; only a booting one gets a kernel.
Status Vm::build(bool load_kernel) {
  if (config_.cpus == 0) return Status::invalid("--cpus 0: must be 1.." + std::to_string(kMaxCpus));
  MINIHV_TRY(check_size(config_.mem_bytes, config_.cpus));
  MINIHV_TRY(create_vm());
  return build_machine(load_kernel);
}

// Everything that needs the size: memory, devices (they map guest memory), vCPUs.
Status Vm::build_machine(bool load_kernel) {
  MINIHV_TRY(create_memory());
  MINIHV_TRY(create_devices());
  MINIHV_TRY(create_vcpus());
  if (load_kernel) MINIHV_TRY(load_guest());
  sized_.store(true, std::memory_order_release);
  return Status::ok();
}

Vm::~Vm() {
  stop_throttle();
  for (auto& v : vcpus_) v->request(VcpuState::kStopped);
  for (auto& v : vcpus_) v->join();
}

Status Vm::create_vm() {
  auto kvm = Kvm::open();
  if (!kvm) return kvm.status();
  kvm_ = std::move(kvm).value();
  int fd = kvm_ioctl(kvm_.fd(), KVM_CREATE_VM, 0ul);
  if (fd < 0) return kvm_error("KVM_CREATE_VM", fd);
  vm_fd_.reset(fd);
  int rc = kvm_ioctl(fd, KVM_SET_TSS_ADDR, kKvmTssAddr);
  if (rc < 0) return kvm_error("KVM_SET_TSS_ADDR", rc);
  if (kvm_.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
    uint64_t addr = kKvmIdentityMapAddr;
    rc = kvm_ioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &addr);
    if (rc < 0) return kvm_error("KVM_SET_IDENTITY_MAP_ADDR", rc);
  }
  // Before any memslot or vCPU exists.
  const cpuid::HostFacts host = cpuid::read_host_facts();
  MINIHV_TRY(dirty_log_.enable(fd, config_.dirty_log, host.kvm_hw && !host.kvm_pvm));
  rc = kvm_ioctl(fd, KVM_CREATE_IRQCHIP, 0ul);
  if (rc < 0) return kvm_error("KVM_CREATE_IRQCHIP", rc);
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;  // port 0x61 handled in the kernel too
  rc = kvm_ioctl(fd, KVM_CREATE_PIT2, &pit);
  if (rc < 0) return kvm_error("KVM_CREATE_PIT2", rc);
  return Status::ok();
}

Status Vm::create_memory() {
  auto mem = GuestMemory::create(config_.mem_bytes,
                                 config_.hugetlb ? GuestMemory::Backing::kHugetlb : GuestMemory::Backing::kThp);
  if (!mem) return mem.status();
  mem_ = std::move(mem).value();
  const auto& regions = mem_->regions();
  for (size_t i = 0; i < regions.size(); ++i) {
    kvm_userspace_memory_region r{};
    r.slot = static_cast<uint32_t>(i);
    r.guest_phys_addr = regions[i].gpa;
    r.memory_size = regions[i].size;
    r.userspace_addr = reinterpret_cast<uint64_t>(regions[i].host);
    int rc = kvm_ioctl(vm_fd_.get(), KVM_SET_USER_MEMORY_REGION, &r);
    if (rc < 0) return kvm_error("KVM_SET_USER_MEMORY_REGION", rc);
  }
  return Status::ok();
}

Status Vm::create_devices() {
  auto power = [this](PowerEvent e) {
    if (e == PowerEvent::kPowerOff)
      end(VmEnd::kPowerOff, "guest powered off");
    else
      end(VmEnd::kReboot, "guest asked for a reboot");
  };
  auto com1 = KvmIrqLine::create(vm_fd_.get(), layout::kCom1Irq);
  if (!com1) return com1.status();
  if (config_.console_path.empty()) {
    uart_ = std::make_unique<Uart>(STDOUT_FILENO, **com1);
  } else {
    auto f = CappedFile::open(config_.console_path, config_.console_max, CappedFile::Start::kTruncate,
                              kConsoleFileMode);
    if (!f) return Status::invalid("--console " + f.message());
    console_file_ = std::make_unique<CappedFile>(std::move(*f));
    uart_ = std::make_unique<Uart>([f = console_file_.get()](const char* p, size_t n) { f->write(p, n); }, **com1);
  }
  uart_->set_tap([this](const char* data, size_t n) { console_hub_.publish(data, n); });
  irqs_.push_back(std::move(com1).value());
  power_ = std::make_unique<AcpiPower>(power);
  i8042_ = std::make_unique<I8042>(power);
  pio_.add(layout::kCom1Port, 8, uart_.get());
  pio_.add(layout::kI8042DataPort, layout::kI8042CmdPort - layout::kI8042DataPort + 1, i8042_.get());
  pio_.add(layout::kAcpiSleepControlPort, layout::kAcpiResetPort - layout::kAcpiSleepControlPort + 1,
           power_.get());
  return create_virtio_devices();
}

Status Vm::create_vcpus() {
  int max = kvm_.check_extension(KVM_CAP_MAX_VCPUS);
  if (max > 0 && config_.cpus > static_cast<unsigned>(max))
    return Status::invalid("--cpus " + std::to_string(config_.cpus) + ": this KVM allows at most " +
                           std::to_string(max));
  // cpuid/ builds the model's table and owns the CPUID ioctls (see cpuid/kvm_abi.h for why).
  auto supported = cpuid::kvm_get_supported_cpuid(kvm_.fd());
  if (!supported) return supported.status();
  auto guest = cpuid::build_for_vm(config_.cpu_model, *supported, config_.cpus);
  if (!guest) return guest.status().context("--cpu-model " + config_.cpu_model);
  cpuid_ = std::move(guest).value();
  for (unsigned i = 0; i < config_.cpus; ++i) {
    auto v = Vcpu::create(vm_fd_.get(), kvm_, i, *this, dirty_log_.ring_bytes());
    if (!v) return v.status();
    if (dirty_log_.ring()) dirty_log_.add_ring((*v)->dirty_ring());
    MINIHV_TRY(cpuid::kvm_set_cpuid2((*v)->fd(), cpuid_->entries_for(i)).context("vcpu " + std::to_string(i)));
    if (i == 0) {
      auto applied = cpuid::read_vcpu_cpuid((*v)->fd());
      if (!applied) return applied.status();
      cpuid_applied_ = std::move(applied).value();
    }
    MINIHV_TRY(setup_vcpu_lapic(**v));
    MINIHV_TRY(setup_vcpu_fpu(**v));
    vcpus_.push_back(std::move(v).value());
  }
  return Status::ok();
}

int Vm::run() {
  {
    std::lock_guard lock(mu_);
    state_ = VmState::kRunning;
    started_ = std::chrono::steady_clock::now();
  }
  resume_devices();  // an incoming VM's devices wait for this (the disk lease is ours by now)
  for (auto& v : vcpus_) v->start();
  if (arrived_) announce_nics();
  {
    std::unique_lock lock(mu_);
    for (;;) {
      ended_cv_.wait(lock, [&] { return ended_ || !disk_stop_.empty(); });
      if (ended_) break;
      const std::string why = std::exchange(disk_stop_, {});
      lock.unlock();
      pause_for_disk(why);
      lock.lock();
    }
  }
  for (auto& v : vcpus_) v->request(VcpuState::kStopped);
  for (auto& v : vcpus_) v->join();
  stop_throttle();
  stop_virtio_devices();
  uart_->flush_output();
  std::lock_guard lock(mu_);
  state_ = VmState::kEnded;
  if (end_why_ == VmEnd::kError || end_why_ == VmEnd::kGuestCrash)
    LOG_ERROR("%s", end_message_.c_str());
  else if (end_why_ == VmEnd::kReboot)  // minihv does not restart guests: say why it ended
    LOG_WARN("%s; the VM ends (exit status %d)", end_message_.c_str(), exit_status(end_why_));
  else
    LOG_INFO("%s", end_message_.c_str());
  return exit_status(end_why_);
}

void Vm::end(VmEnd why, const std::string& message) {
  // run() stops the vCPUs. end() is called from threads that may outlive the VM by nothing (a
  // signal watcher, a vCPU, a migration), so it notifies under the lock and touches nothing after.
  std::lock_guard lock(mu_);
  if (ended_) return;
  ended_ = true;
  end_why_ = why;
  end_message_ = message;
  ended_cv_.notify_all();
}

std::pair<VmEnd, std::string> Vm::ending() const {
  std::lock_guard lock(mu_);
  return {end_why_, end_message_};
}

void Vm::disk_stopped(const std::string& reason) {
  std::lock_guard lock(mu_);
  disk_stop_ = reason;
  ended_cv_.notify_all();
}

// On run()'s thread: a disk's I/O thread must not wait for the vCPUs, nor outlive the VM in pause().
void Vm::pause_for_disk(const std::string& reason) {
  const Status s = pause();
  std::lock_guard lock(mu_);
  if (state_ != VmState::kPaused) {  // e.g. ended meanwhile
    LOG_WARN("%s; the VM could not pause: %s", reason.c_str(), s.message().c_str());
    return;
  }
  paused_reason_ = reason;
  LOG_WARN("%s; the VM is paused until `resume` retries the disk's requests", reason.c_str());
}

void Vm::stop() { end(VmEnd::kStopped, "stopped through the control socket"); }

Status Vm::pause() {
  {
    std::lock_guard lock(mu_);
    if (state_ != VmState::kRunning)
      return Status::error(std::string("cannot pause a VM that is ") + to_string(state_) +
                           (paused_reason_.empty() ? "" : " (" + paused_reason_ + ": resume it first)"));
  }
  for (auto& v : vcpus_) v->request(VcpuState::kPaused);
  for (auto& v : vcpus_) v->wait_for(VcpuState::kPaused);
  std::lock_guard lock(mu_);
  if (ended_) return Status::error("the VM ended while pausing");
  state_ = VmState::kPaused;
  return Status::ok();
}

Status Vm::resume() {
  {
    std::lock_guard lock(mu_);
    if (state_ != VmState::kPaused) return Status::error(std::string("cannot resume a VM that is ") + to_string(state_));
    state_ = VmState::kRunning;
    paused_reason_.clear();
  }
  resume_devices();
  for (VirtioBlk* b : blks_) b->retry();
  for (auto& v : vcpus_) v->request(VcpuState::kRunning);
  return Status::ok();
}

VmState Vm::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

nlohmann::json Vm::status() const {
  nlohmann::json vcpus = nlohmann::json::array();
  // An incoming VM may be sized (vCPUs created) on another thread: only a sized VM's are listed.
  if (sized())
    for (const auto& v : vcpus_) vcpus.push_back({{"id", v->id()}, {"state", to_string(v->state())}});
  std::lock_guard lock(mu_);
  const auto up = started_.time_since_epoch().count() == 0
                      ? 0
                      : std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  nlohmann::json j = {{"state", to_string(state_)},
          {"pid", getpid()},
          {"cpus", config_.cpus},
          {"mem_bytes", config_.mem_bytes},
          {"kernel", config_.kernel},
          {"cmdline", config_.cmdline},
          {"disks", config_.disks},
          {"uptime_ms", up},
          {"dirty_log", dirty_log_.method()},
          {"vcpus", vcpus}};
  if (state_ == VmState::kPaused && !paused_reason_.empty()) j["paused_reason"] = paused_reason_;
  if (sized() && cpuid_) j["cpu"] = cpuid::status_json(*cpuid_, cpuid_applied_ ? &*cpuid_applied_ : nullptr);
  return j;
}

}  // namespace minihv
