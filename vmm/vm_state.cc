// Vm: what live migration needs — machine state save/restore, dirty logging, throttling.
// vmm/ knows nothing of migration; docs/vm-state.md describes the state and the order.
#include <algorithm>

#include "common/log.h"
#include "cpuid/kvm_abi.h"
#include "vmm/vcpu_state.h"
#include "vmm/vm.h"

namespace minihv {

namespace {

template <typename T> Status vm_ioctl(int fd, unsigned long req, T& arg, const char* name) {
  int rc = kvm_ioctl(fd, req, &arg);
  return rc < 0 ? kvm_error(name, rc) : Status::ok();
}

kvm_irqchip chip(uint32_t id) {
  kvm_irqchip c{};
  c.chip_id = id;
  return c;
}

}  // namespace

Result<std::unique_ptr<Vm>> Vm::create_incoming(const VmConfig& config) {
  std::unique_ptr<Vm> vm(new Vm(config));
  vm->incoming_ = true;
  if (config.mem_bytes && config.cpus && !config.cpu_model.empty()) {
    MINIHV_TRY(vm->build(/*load_kernel=*/false));
    return vm;
  }
  // The rest of the size comes from the source (size_incoming); what is known is checked now.
  MINIHV_TRY(check_size(config.mem_bytes, config.cpus));
  MINIHV_TRY(vm->create_vm());
  return vm;
}

Status Vm::size_incoming(uint64_t mem_bytes, unsigned cpus, const std::string& cpu_model) {
  if (!incoming_ || sized()) return Status::error("size_incoming: only for an incoming VM not built yet");
  {
    std::lock_guard lock(mu_);  // status() reads the config meanwhile
    if (!config_.mem_bytes) config_.mem_bytes = mem_bytes;
    if (!config_.cpus) config_.cpus = cpus;
    if (config_.cpu_model.empty()) config_.cpu_model = cpu_model.empty() ? kDefaultCpuModel : cpu_model;
  }
  if (config_.mem_bytes == 0 || config_.cpus == 0)
    return Status::error("the source did not say how much memory or how many vCPUs the VM has");
  MINIHV_TRY(check_size(config_.mem_bytes, config_.cpus));
  return build_machine(/*load_kernel=*/false);
}

uint64_t Vm::configured_mem_bytes() const {
  std::lock_guard lock(mu_);
  return config_.mem_bytes;
}

unsigned Vm::configured_cpus() const {
  std::lock_guard lock(mu_);
  return config_.cpus;
}

std::string Vm::configured_cpu_model() const {
  std::lock_guard lock(mu_);
  return config_.cpu_model;
}

Result<MachineState> Vm::save_machine() {
  {
    std::lock_guard lock(mu_);
    if (state_ != VmState::kPaused)
      return Status::error(std::string("save_machine needs a paused VM; this one is ") + to_string(state_));
  }
  // Devices first: no request may be in flight (or complete into RAM) once the state is read. A
  // request parked on a disk error is in flight for the guest but in no saved state: refused.
  MINIHV_TRY(check_no_parked_requests());
  devices_quiesced_ = true;
  for (size_t i = 0; i < virtio_.size(); ++i) {
    Status s = virtio_[i]->device().quiesce();
    if (!s) {
      resume_devices();
      return s.context("quiescing virtio device " + std::to_string(i));
    }
  }
  if (Status s = check_no_parked_requests(); !s) {  // parked while quiescing
    resume_devices();
    return s;
  }
  auto caps = VcpuStateCaps::probe(kvm_, vm_fd_.get());
  if (!caps) return caps.status();
  MachineState m;
  const int fd = vm_fd_.get();
  // kvmclock before the vCPUs: the TSC offsets are read against it (see vcpu_state.h).
  MINIHV_TRY(vm_ioctl(fd, KVM_GET_CLOCK, m.vm.clock, "KVM_GET_CLOCK"));
  m.vm.pic_master = chip(KVM_IRQCHIP_PIC_MASTER);
  m.vm.pic_slave = chip(KVM_IRQCHIP_PIC_SLAVE);
  m.vm.ioapic = chip(KVM_IRQCHIP_IOAPIC);
  MINIHV_TRY(vm_ioctl(fd, KVM_GET_IRQCHIP, m.vm.pic_master, "KVM_GET_IRQCHIP (PIC master)"));
  MINIHV_TRY(vm_ioctl(fd, KVM_GET_IRQCHIP, m.vm.pic_slave, "KVM_GET_IRQCHIP (PIC slave)"));
  MINIHV_TRY(vm_ioctl(fd, KVM_GET_IRQCHIP, m.vm.ioapic, "KVM_GET_IRQCHIP (IOAPIC)"));
  MINIHV_TRY(vm_ioctl(fd, KVM_GET_PIT2, m.vm.pit, "KVM_GET_PIT2"));
  const int khz = kvm_ioctl(vcpus_.at(0)->fd(), KVM_GET_TSC_KHZ);
  if (khz < 0) return kvm_error("KVM_GET_TSC_KHZ (vcpu 0)", khz);
  m.vm.tsc_khz = static_cast<uint32_t>(khz);
  for (const auto& v : vcpus_) {
    auto cpu = save_vcpu(v->fd(), v->id(), *caps);
    if (!cpu) return cpu.status();
    m.cpus.push_back(std::move(cpu).value());
  }
  m.devices.uart = uart_->registers();
  for (const auto& t : virtio_) m.devices.virtio.push_back(t->save());
  return m;
}

void Vm::hold_network_arrivals(MachineState& m) {
  for (size_t w = 0; w < virtio_.size() && w < m.devices.virtio.size(); ++w)
    for (VirtioNet* nic : nics_)
      if (&virtio_[w]->device() == nic) {
        nic->hold_arrivals();
        m.devices.virtio[w] = virtio_[w]->save();
      }
}

Status Vm::restore_machine(const MachineState& m) {
  {
    std::lock_guard lock(mu_);
    if (!incoming_ || state_ != VmState::kCreated)
      return Status::error("restore_machine needs a VM made by create_incoming() that has not run");
  }
  if (m.cpus.size() != vcpus_.size())
    return Status::error("the saved VM has " + std::to_string(m.cpus.size()) + " vCPUs, this one " +
                         std::to_string(vcpus_.size()) + ": start the destination with the same --cpus");
  if (m.devices.virtio.size() != virtio_.size())
    return Status::error("the saved VM has " + std::to_string(m.devices.virtio.size()) + " virtio devices, this one " +
                         std::to_string(virtio_.size()) + ": give the destination the same disks and NICs");
  auto caps = VcpuStateCaps::probe(kvm_, vm_fd_.get());
  if (!caps) return caps.status();
  restore_notes_.clear();
  const int fd = vm_fd_.get();
  kvm_pit_state2 pit = m.vm.pit;
  MINIHV_TRY(vm_ioctl(fd, KVM_SET_PIT2, pit, "KVM_SET_PIT2"));
  // kvmclock before any vCPU runs; with the source's realtime KVM advances it by the time the
  // VM spent in transit (never backwards), as the guest's TSC advances on this host.
  kvm_clock_data clock{};
  clock.clock = m.vm.clock.clock;
  clock.flags = m.vm.clock.flags & KVM_CLOCK_REALTIME;
  clock.realtime = m.vm.clock.realtime;
  MINIHV_TRY(vm_ioctl(fd, KVM_SET_CLOCK, clock, "KVM_SET_CLOCK"));
  TscFixup tsc;
  tsc.tsc_khz = m.vm.tsc_khz;
  tsc.source = m.vm.clock;
  if (m.vm.clock.flags & KVM_CLOCK_HOST_TSC) {
    MINIHV_TRY(vm_ioctl(fd, KVM_GET_CLOCK, tsc.dest, "KVM_GET_CLOCK"));
    tsc.valid = tsc.dest.flags & KVM_CLOCK_HOST_TSC;
  }
  for (kvm_irqchip c : {m.vm.pic_master, m.vm.pic_slave, m.vm.ioapic})
    MINIHV_TRY(vm_ioctl(fd, KVM_SET_IRQCHIP, c, "KVM_SET_IRQCHIP"));
  for (size_t i = 0; i < vcpus_.size(); ++i)
    MINIHV_TRY(restore_vcpu(vcpus_[i]->fd(), m.cpus[i], *caps, m.vm.tsc_khz, tsc, restore_notes_));
  uart_->set_registers(m.devices.uart);
  // The devices stay quiesced through the restore (it may re-activate them) until run().
  devices_quiesced_ = true;
  for (size_t i = 0; i < virtio_.size(); ++i) {
    MINIHV_TRY(virtio_[i]->device().quiesce().context("virtio device " + std::to_string(i)));
    MINIHV_TRY(virtio_[i]->restore(m.devices.virtio[i]).context("virtio device " + std::to_string(i)));
  }
  auto applied = cpuid::read_vcpu_cpuid(vcpus_.at(0)->fd());  // now the source's table
  if (applied) cpuid_applied_ = std::move(applied).value();
  for (const auto& n : restore_notes_) LOG_WARN("restore: %s", n.c_str());
  incoming_ = false;  // restored once; run() continues the guest
  arrived_ = true;    // ... and tells the network where it is now
  return Status::ok();
}

void Vm::resume_devices() {
  if (!devices_quiesced_) return;
  for (auto& t : virtio_) t->device().resume();
  devices_quiesced_ = false;
}

Status Vm::start_dirty_log() { return dirty_log_.start(*mem_); }

Status Vm::harvest_dirty(size_t region, std::span<uint64_t> bitmap) {
  return dirty_log_.harvest(*mem_, region, bitmap);
}

Status Vm::stop_dirty_log() { return dirty_log_.stop(*mem_); }

void Vm::set_throttle(unsigned percent) {
  percent = std::min(percent, 99u);
  {
    std::lock_guard lock(throttle_mu_);
    if (percent == throttle_percent_) return;
    throttle_percent_ = percent;
    for (auto& v : vcpus_) v->set_throttle(percent);
    if (percent && !throttle_thread_.joinable()) throttle_thread_ = std::thread([this] { throttle_loop(); });
  }
  throttle_cv_.notify_all();
}

// Kicks every vCPU once per period while throttling; sleeps on the condition variable otherwise.
void Vm::throttle_loop() {
  std::unique_lock lock(throttle_mu_);
  while (!throttle_quit_) {
    if (throttle_percent_ == 0) {
      throttle_cv_.wait(lock, [&] { return throttle_quit_ || throttle_percent_ != 0; });
      continue;
    }
    if (throttle_cv_.wait_for(lock, Vcpu::kThrottlePeriod, [&] { return throttle_quit_; })) break;
    for (auto& v : vcpus_) v->throttle_kick();
  }
}

void Vm::stop_throttle() {
  {
    std::lock_guard lock(throttle_mu_);
    throttle_quit_ = true;
  }
  throttle_cv_.notify_all();
  if (throttle_thread_.joinable()) throttle_thread_.join();
}

}  // namespace minihv
