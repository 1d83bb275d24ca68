// vmm/vm.h — one guest: KVM VM, memory, vCPUs, devices, boot, and its life cycle.
//
// Owns: building the machine from a VmConfig, running it until the guest or the user ends it,
// pause/resume/stop, and the status/stats a control socket reports. Migration (which lives in
// migrate/) gets what it needs through this API; vmm/ knows nothing of migration or clusters.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "blockdev/disk_attach.h"
#include "blockdev/write_deadlines.h"
#include "common/capped_file.h"
#include "common/fd.h"
#include "common/status.h"
#include "cpuid/guest_cpuid.h"
#include "vmm/boot/firmware_config.h"
#include "vmm/bus.h"
#include "vmm/console_hub.h"
#include "vmm/devices/image_lock.h"
#include "vmm/devices/power.h"
#include "vmm/devices/uart.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/devices/virtio_net.h"
#include "vmm/devices/virtio_mmio.h"
#include "vmm/irq_kvm.h"
#include "vmm/dirty_log.h"
#include "vmm/kvm.h"
#include "vmm/machine_state.h"
#include "vmm/memory.h"
#include "vmm/vcpu.h"

namespace minihv {


inline constexpr const char* kDefaultCpuModel = "host";

struct VmConfig {
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  uint64_t mem_bytes = 512ull << 20;
  unsigned cpus = 1;
  // raw image files or VOLUME:DISK, one virtio-blk each, with [,on-error=stop|report] (disk_spec.h)
  std::vector<std::string> disks;
  std::vector<std::string> nets;    // tap=NAME[,mac=MAC][,queues=N], one virtio-net each
  std::string console_path;         // empty: stdout
  uint64_t console_max = kDefaultOutputCap;  // console_path's cap; past it, it rotates (0: none)
  bool hugetlb = false;
  // cpuid/: host, compat, x86-64-v1..v4, or a profile .json ("" for an incoming VM: the source's)
  std::string cpu_model = kDefaultCpuModel;
  DirtyLogMode dirty_log = DirtyLogMode::kAuto;  // how migration learns which pages changed
  // Set for a VM of a cluster node (`run --fence-fd`): the node holds the volume disks' leases and
  // this says until when the VM may write; no lease is taken here.
  std::shared_ptr<const blockdev::Fence> fence;
  // With the fence (`run --extent-fd`): the volume disk's extent, opened by the node as a device of
  // its own (blockdev/extent_device.h); the VM then opens nothing of the volume. -1: none.
  int extent_fd = -1;
  // With the fence (`run --deadlines-fd`): where the volume disk's thread tells the node the
  // deadline of its oldest write in the kernel (blockdev/write_deadlines.h).
  std::shared_ptr<blockdev::WriteDeadlines> write_deadlines;
  // Test hook (MINIHV_TEST_DISK_STALL): BlockBackend::DeadlineWatch::stall_once.
  std::chrono::milliseconds test_disk_stall{0};
};

enum class VmState { kCreated, kRunning, kPaused, kEnded };
const char* to_string(VmState s);

class Vm : public VcpuHost {
public:
  // Checks the config against this host, builds the machine and loads the kernel.
  static Result<std::unique_ptr<Vm>> create(const VmConfig& config);
  ~Vm() override;

  // Starts every vCPU and blocks until the VM ends; returns the `minihv run` exit status.
  int run();

  Status pause();
  // Also resumes devices that save_machine() quiesced, and retries requests a disk parked on an
  // I/O error (on-error=stop).
  Status resume();
  void stop();  // ends the VM as kStopped (exit status 0)

  // --- What live migration needs (docs/vm-state.md); vmm/ knows nothing of migration. ---
  // The same machine as create() (memory, devices, vCPUs with their CPUID) with no kernel loaded
  // and nothing run: restore_machine(), then run() continues the guest.
  // A config without its size (mem_bytes 0, cpus 0 or cpu_model "") builds only the KVM VM: the
  // rest waits for size_incoming(), once the source has said what it runs.
  static Result<std::unique_ptr<Vm>> create_incoming(const VmConfig& config);
  // Builds an incoming VM's memory, devices and vCPUs with the config's values, and the ones given
  // here where the config has none. Once, before restore_machine().
  Status size_incoming(uint64_t mem_bytes, unsigned cpus, const std::string& cpu_model);
  // Memory, devices and vCPUs exist (always, except for an incoming VM before size_incoming()).
  bool sized() const { return sized_.load(std::memory_order_acquire); }
  // The size as configured: 0 (and "") where an incoming VM's is still to come from the source.
  uint64_t configured_mem_bytes() const;
  unsigned configured_cpus() const;
  std::string configured_cpu_model() const;
  size_t disk_count() const { return config_.disks.size(); }
  // Paused VM only. Quiesces every virtio device (in-flight I/O drained, disk fdatasync'ed) and
  // reads vCPU, irqchip, PIT, clock and device state. The devices stay quiesced until resume()
  // (migration failed: the VM goes on as before) or the VM ends. Refused while a disk holds
  // requests parked on an I/O error (they are in no state that could be saved).
  Result<MachineState> save_machine();
  // A migration's source, just before it sends `m` (taken by save_machine): the frames that reached
  // the NICs' taps since go with it (VirtioNet::hold_arrivals), their windows saved again.
  void hold_network_arrivals(MachineState& m);
  // The NICs (--net, in order): how many, and their MACs (empty until the VM is built).
  size_t nic_count() const { return config_.nets.size(); }
  std::vector<MacAddress> nic_macs() const;
  // An incoming VM takes the source's NIC MACs before any page moves (sized VM only); refused,
  // naming the NIC, when the count differs or a NIC's mac= was given and differs.
  Status adopt_nic_macs(const std::vector<MacAddress>& macs);
  // A migration's destination, once the source has paused the guest: one RARP per NIC, so the
  // network sends the guest's frames here from now on (announce_nics() follows when it runs).
  void announce_nics_once();
  // Every NIC tells the network the guest is here (RARP rounds, and S_ANNOUNCE for the driver):
  // an incoming VM when it starts, and a source that resumes after a failed migration (its
  // destination may have announced the guest already).
  void announce_nics();
  // Incoming VM only, before run(), after guest RAM is in place. Order as Firecracker: PIT2,
  // CLOCK, IRQCHIP x3, then per vCPU CPUID2 (when it differs), MP_STATE, REGS, SREGS, XSAVE, XCRS,
  // DEBUGREGS, LAPIC, MSRS, VCPU_EVENTS, then the UART and virtio transports. The virtio devices
  // stay quiesced (no disk I/O) until run() starts: take the disk lease before calling run().
  Status restore_machine(const MachineState& state);
  // An incoming VM's shared-volume disks: take their leases, waiting up to `timeout` for the
  // source to let go of them (it does once it has the ACK). Call after restore, before run().
  // After expect_lease_hand_over() each is adopted from the source's hand-over instead.
  Status acquire_disk_leases(std::chrono::milliseconds timeout);
  // A live move's lease hand-over (the migration's ACK carries it): the destination's name in
  // lease records and a nonce per shared-volume disk whose lease it takes itself, in disk order.
  struct LeaseHandOver {
    std::string owner;
    std::vector<uint64_t> nonces;
  };
  // Destination, right before its ACK.
  LeaseHandOver expect_lease_hand_over();
  // Source, on the ACK: each held disk lease goes to the destination, in disk order, with no gap
  // (writes here stop at once). One nonce per held lease, or nothing is handed over (the leases
  // are released as before when the VM ends, and the destination takes them over).
  void hand_over_disk_leases(const LeaseHandOver& h);
  // Whether another VMM can run this guest only after taking leases held here, and they are
  // provably current now: a cluster VM's (its node holds them: --fence-fd, still open) or one with
  // shared-volume disks. While they are held, a copy elsewhere cannot have started.
  bool holds_guest_leases() const;
  // Raw images (--disk PATH) carry an OFD lock (image_lock.h) from the moment they open, except in
  // an incoming VM: the source holds them until it has the ACK. A source that handed the VM over
  // lets go of them here; the destination takes them with acquire_image_locks(), which returns at
  // once and keeps trying in the background for up to `patience` while the guest runs, then warns
  // naming the holder (the guest runs here either way). Shared-volume disks have leases instead.
  void release_image_locks();
  void acquire_image_locks(std::chrono::milliseconds patience);
  // What restore_machine() could not carry but did not fail for (e.g. a TSC rate this host
  // cannot set); empty when everything was exact.
  const std::vector<std::string>& restore_notes() const { return restore_notes_; }

  // Dirty page tracking over every memslot (slot i = memory().regions()[i]).
  Status start_dirty_log();
  // Overwrites `bitmap` (one bit per 4 KiB page, dirty_bitmap_words(region) words) with the pages
  // of `region` written since the last harvest, by the guest or by a device.
  Status harvest_dirty(size_t region, std::span<uint64_t> bitmap);
  Status stop_dirty_log();
  const char* dirty_log_method() const { return dirty_log_.method(); }
  size_t dirty_bitmap_words(size_t region) const { return DirtyLog::bitmap_words(*mem_, region); }

  // Auto-converge: each vCPU spends `percent` (0-99) of wall time out of KVM_RUN. 0 costs nothing.
  void set_throttle(unsigned percent);

  VmState state() const;
  // Why run() returned and what it said (meaningful once it has).
  std::pair<VmEnd, std::string> ending() const;
  nlohmann::json status() const;
  // The CPU model applied by create(); `advisory` where KVM cannot enforce it (PVM).
  const cpuid::GuestCpuid& guest_cpuid() const { return *cpuid_; }
  nlohmann::json stats() const;

  // VcpuHost
  const Bus& pio_bus() const override { return pio_; }
  const Bus& mmio_bus() const override { return mmio_; }
  const GuestMemory& memory() const override { return *mem_; }
  void end(VmEnd why, const std::string& message) override;
  Status collect_dirty_rings() override { return dirty_log_.collect(*mem_); }

  // The serial console beyond stdout: clients attach to its output (console_hub.h), and what a
  // terminal or a client types goes to the guest's receive FIFO.
  ConsoleHub& console() { return console_hub_; }
  void console_input(const std::string& bytes) {
    if (sized()) uart_->receive(bytes);  // an incoming VM not built yet has no UART: keys are dropped
  }

  GuestMemory& memory() { return *mem_; }
  int vm_fd() const { return vm_fd_.get(); }
  const std::vector<std::unique_ptr<Vcpu>>& vcpus() const { return vcpus_; }

private:
  explicit Vm(VmConfig config) : config_(std::move(config)) {}
  Status create_vm();
  Status create_memory();
  Status create_devices();
  Status create_vcpus();
  Status load_guest();
  Status build(bool load_kernel);
  Status build_machine(bool load_kernel);
  static Status check_size(uint64_t mem_bytes, unsigned cpus);
  void resume_devices();
  void throttle_loop();
  void stop_throttle();
  Status create_virtio_devices();
  Result<std::unique_ptr<VirtioNet>> create_nic(const std::string& text);
  // Puts `device` behind the next virtio-mmio window with its IRQ and queue-notify ioeventfds.
  Status add_virtio_device(std::unique_ptr<VirtioDevice> device, const std::string& what);
  Result<BlockBackend> open_volume_disk(const blockdev::VolumeDiskSpec& spec);
  Status create_disk(const std::string& text);
  // A disk with on-error=stop stopped (its I/O thread): run() pauses the VM with this reason.
  void disk_stopped(const std::string& reason);
  void pause_for_disk(const std::string& reason);
  Status check_no_parked_requests() const;
  Status lock_image(const BlockBackend& backend, const std::string& path);
  void wait_for_image_locks(std::stop_token stop, std::chrono::milliseconds patience);
  bool try_image_locks(bool last_try);
  void stop_virtio_devices();
  std::vector<boot::VirtioMmioWindow> virtio_windows() const;

  VmConfig config_;
  Kvm kvm_;
  UniqueFd vm_fd_;
  std::unique_ptr<GuestMemory> mem_;
  Bus pio_, mmio_;
  std::vector<std::unique_ptr<KvmIrqLine>> irqs_;
  ConsoleHub console_hub_;  // before uart_: the UART's tap publishes here until it is gone
  std::unique_ptr<CappedFile> console_file_;  // before uart_: it writes here until it is gone
  std::unique_ptr<Uart> uart_;
  std::unique_ptr<AcpiPower> power_;
  std::unique_ptr<I8042> i8042_;
  std::vector<std::unique_ptr<VirtioMmio>> virtio_;  // window i = layout::kVirtioMmioBase + i * size
  std::vector<VirtioBlk*> blks_;                      // owned by their transports in virtio_
  std::vector<VirtioNet*> nics_;                      // likewise, after the disks
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::optional<cpuid::GuestCpuid> cpuid_;         // set by create_vcpus()
  std::optional<cpuid::Profile> cpuid_applied_;  // vCPU 0's table read back with KVM_GET_CPUID2

  mutable std::mutex mu_;
  std::condition_variable ended_cv_;
  VmState state_ = VmState::kCreated;
  bool ended_ = false;
  VmEnd end_why_ = VmEnd::kStopped;
  std::string end_message_;
  std::string disk_stop_;      // a disk's stop that run() has yet to turn into a pause
  std::string paused_reason_;  // why a paused VM is paused, when a disk paused it
  std::chrono::steady_clock::time_point started_;

  DirtyLog dirty_log_;
  bool incoming_ = false;          // built by create_incoming(); restore_machine() allowed once
  bool arrived_ = false;           // restored from a migration: run() announces the NICs
  std::atomic<bool> sized_{false};  // memory, devices and vCPUs exist (set last, by build_machine)
  bool devices_quiesced_ = false;  // by save_machine() or restore_machine(); undone by resume/run
  std::vector<std::string> restore_notes_;
  std::mutex throttle_mu_;
  std::condition_variable throttle_cv_;
  unsigned throttle_percent_ = 0;  // guarded by throttle_mu_
  bool throttle_quit_ = false;
  std::thread throttle_thread_;
  std::mutex image_locks_mu_;
  std::vector<ImageLock> image_locks_;  // one per raw --disk, guarded by image_locks_mu_
  bool image_locks_released_ = false;   // handed over: never taken again (guarded likewise)
  std::jthread image_lock_waiter_;      // acquire_image_locks(); joined before the devices go
  // Leases of shared-volume disks (--disk VOLUME:DISK); released once the devices have drained.
  // Declared last: their renewal threads stop before anything they may call into goes away.
  std::vector<std::unique_ptr<blockdev::VolumeDisk>> volume_disks_;
};

}  // namespace minihv
