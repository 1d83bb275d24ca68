// Vm: the virtio devices and the stats they report.
#include <cstdio>
#include <fstream>

#include "blockdev/clock.h"
#include "common/log.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

namespace minihv {

namespace {

// Resident memory of this process in KiB: {total, of guest RAM}. Reads /proc/self/smaps so the
// VMM's own footprint (total − guest) can be reported apart from what the guest touched.
std::pair<uint64_t, uint64_t> resident_kib(const GuestMemory& mem) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  uint64_t total = 0, guest = 0;
  bool in_guest = false;
  while (std::getline(f, line)) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2) {
      in_guest = false;
      for (const MemoryRegion& r : mem.regions()) {
        const auto base = reinterpret_cast<uint64_t>(r.host);
        if (lo < base + r.size && base < hi) in_guest = true;
      }
      continue;
    }
    if (line.rfind("Rss:", 0) == 0) {
      uint64_t kib = std::stoull(line.substr(4));
      total += kib;
      if (in_guest) guest += kib;
    }
  }
  return {total, guest};
}

}  // namespace

// A disk of the shared volume: its lease is taken here (refused while another VM holds it) and
// renewed until the VM ends; losing it ends the VM, and every write asks it first.
// A VM arriving by live migration opens the disk without its lease: the source still holds it
// and hands it over after the ACK (acquire_disk_leases()).
Result<BlockBackend> Vm::open_volume_disk(const blockdev::VolumeDiskSpec& spec) {
  auto on_lost = [this, spec](const std::string& why) {
    end(VmEnd::kError, "disk " + spec.disk + " of volume " + spec.volume + ": lease lost (" + why +
                           "); all I/O stopped and the VM ended so that another node can take the disk over");
  };
  if (config_.extent_fd >= 0 && !volume_disks_.empty())
    return Status::invalid("one --extent-fd serves one volume disk");
  auto disk = config_.fence && config_.extent_fd >= 0
                  ? blockdev::VolumeDisk::open_fenced_extent(spec, config_.fence, config_.extent_fd)
             : config_.fence ? blockdev::VolumeDisk::open_fenced(spec, config_.fence)
             : incoming_      ? blockdev::VolumeDisk::open_without_lease(spec, blockdev::default_owner(), on_lost)
                              : blockdev::VolumeDisk::attach(spec, blockdev::default_owner(), on_lost);
  if (!disk) return disk.status();
  auto fd = (*disk)->open_data_fd();
  if (!fd) return fd.status();
  BlockBackend::Extent e;
  e.fd = std::move(fd).value();
  e.offset = (*disk)->offset();
  e.length = (*disk)->length();
  e.alignment = blockdev::kBlockSize;
  e.name = (*disk)->name();
  auto backend = BlockBackend::from_extent(std::move(e));
  if (!backend) return backend.status();
  backend->set_write_gate((*disk)->write_gate());
  if (config_.fence && config_.write_deadlines) {
    auto fence = config_.fence;
    auto page = config_.write_deadlines;
    backend->set_deadline_watch({[fence] { return fence->until().count(); },
                                 [page](int64_t oldest) { page->publish(blockdev::Nanos(oldest)); },
                                 config_.test_disk_stall});
  }
  volume_disks_.push_back(std::move(disk).value());
  return backend;
}

Status Vm::create_disk(const std::string& text) {
  auto spec = parse_disk_spec(text);
  if (!spec) return spec.status().context("--disk " + text);
  // With the node's extent device the volume is not looked at: VOLUME:DISK only names the disk.
  const auto volume_disk = config_.extent_fd >= 0 ? blockdev::split_volume_disk(spec->target)
                                                  : blockdev::parse_volume_disk(spec->target);
  auto backend = volume_disk ? open_volume_disk(*volume_disk) : BlockBackend::open_file(spec->target, {});
  if (!backend) return Status::invalid("--disk " + text + ": " + backend.message());
  if (!volume_disk) MINIHV_TRY(lock_image(*backend, spec->target).context("--disk " + text));
  auto blk = VirtioBlk::create(std::move(backend).value());
  if (!blk) return blk.status().context("--disk " + text);
  VirtioBlk* disk = blk->get();
  disk->set_error_policy({spec->on_error, [this](const std::string& why) { disk_stopped(why); }});
  MINIHV_TRY(add_virtio_device(std::move(blk).value(), "--disk " + text));
  blks_.push_back(disk);
  return Status::ok();
}

Status Vm::check_no_parked_requests() const {
  for (size_t i = 0; i < blks_.size(); ++i)
    if (blks_[i]->parked_requests())
      return Status::error("disk " + blks_[i]->backend().name() + " is paused on an I/O error: resume it first");
  return Status::ok();
}

Result<std::unique_ptr<VirtioNet>> Vm::create_nic(const std::string& text) {
  auto spec = parse_nic_spec(text);
  if (!spec) return spec.status();
  auto tap = Tap::open(spec->tap, spec->bridge, spec->queues);
  if (!tap) return tap.status();
  const bool fixed = spec->mac.has_value();
  return VirtioNet::create(std::move(tap).value(), fixed ? *spec->mac : random_mac(), fixed);
}

Status Vm::create_virtio_devices() {
  if (config_.disks.size() + config_.nets.size() > layout::kVirtioMaxDevices)
    return Status::invalid("at most " + std::to_string(layout::kVirtioMaxDevices) + " disks and NICs together");
  for (const std::string& text : config_.disks) MINIHV_TRY(create_disk(text));
  for (const std::string& text : config_.nets) {
    auto nic = create_nic(text);
    if (!nic) return nic.status().context("--net " + text);
    VirtioNet* net = nic->get();
    MINIHV_TRY(add_virtio_device(std::move(nic).value(), "--net " + text));
    nics_.push_back(net);
  }
  return Status::ok();
}

Status Vm::add_virtio_device(std::unique_ptr<VirtioDevice> device, const std::string& what) {
  const size_t i = virtio_.size();
  const unsigned gsi = layout::kVirtioIrqBase + static_cast<unsigned>(i);
  auto irq = KvmIrqLine::create(vm_fd_.get(), gsi);
  if (!irq) return irq.status();
  auto dev = VirtioMmio::create(*mem_, **irq, std::move(device));
  if (!dev) return dev.status().context(what);
  const uint64_t base = layout::kVirtioMmioBase + i * layout::kVirtioMmioSize;
  if (!mmio_.add(base, layout::kVirtioMmioSize, dev->get()))
    return Status::error("virtio-mmio window overlaps another device");
  for (unsigned q = 0; q < (*dev)->num_queues(); ++q) {
    kvm_ioeventfd ev{};
    ev.addr = base + VirtioMmio::kNotifyOffset;
    ev.len = VirtioMmio::kNotifyLen;
    ev.fd = (*dev)->notify_eventfd(q);
    ev.datamatch = q;
    ev.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
    int rc = kvm_ioctl(vm_fd_.get(), KVM_IOEVENTFD, &ev);
    if (rc < 0) return kvm_error("KVM_IOEVENTFD", rc);
  }
  irqs_.push_back(std::move(irq).value());
  virtio_.push_back(std::move(dev).value());
  return Status::ok();
}

void Vm::announce_nics() {
  for (VirtioNet* n : nics_) n->announce();
}

void Vm::announce_nics_once() {
  for (VirtioNet* n : nics_) n->send_rarp();
}

std::vector<MacAddress> Vm::nic_macs() const {
  std::vector<MacAddress> out;
  for (const VirtioNet* n : nics_) out.push_back(n->mac());
  return out;
}

Status Vm::adopt_nic_macs(const std::vector<MacAddress>& macs) {
  if (macs.size() != nics_.size())
    return Status::error("the VM has " + std::to_string(macs.size()) + " NIC(s), this destination " +
                         std::to_string(nics_.size()) + " (start it with as many --net)");
  for (size_t i = 0; i < macs.size(); ++i)
    MINIHV_TRY(nics_[i]->adopt_mac(macs[i]).context("NIC " + std::to_string(i)));
  return Status::ok();
}

std::vector<boot::VirtioMmioWindow> Vm::virtio_windows() const {
  std::vector<boot::VirtioMmioWindow> out;
  for (size_t i = 0; i < virtio_.size(); ++i)
    out.push_back({layout::kVirtioMmioBase + i * layout::kVirtioMmioSize, layout::kVirtioMmioSize,
                   layout::kVirtioIrqBase + static_cast<uint32_t>(i)});
  return out;
}

bool Vm::holds_guest_leases() const {
  // Provably current, not merely taken once: a lease that lapsed may be someone else's by now.
  if (config_.fence && config_.fence->may_write(blockdev::system_clock())) return true;
  for (const auto& d : volume_disks_)
    if (d->write_gate()()) return true;
  return false;
}

Status Vm::acquire_disk_leases(std::chrono::milliseconds timeout) {
  for (auto& d : volume_disks_) MINIHV_TRY(d->acquire(timeout).context("disk " + d->name()));
  return Status::ok();
}

Vm::LeaseHandOver Vm::expect_lease_hand_over() {
  LeaseHandOver h;
  for (auto& d : volume_disks_) {
    if (!d->takes_own_lease()) continue;
    h.owner = d->owner();
    h.nonces.push_back(d->expect_hand_over());
  }
  return h;
}

void Vm::hand_over_disk_leases(const LeaseHandOver& h) {
  std::vector<blockdev::VolumeDisk*> held;
  for (auto& d : volume_disks_)
    if (d->holds_lease()) held.push_back(d.get());
  if (held.empty()) return;
  if (held.size() != h.nonces.size()) {
    LOG_WARN("the destination asked for %zu disk lease(s), %zu held here: releasing them instead", h.nonces.size(),
             held.size());
    return;
  }
  for (size_t i = 0; i < held.size(); ++i)
    if (Status s = held[i]->hand_over(h.owner, h.nonces[i]); !s) LOG_WARN("%s", s.message().c_str());
}

void Vm::stop_virtio_devices() {
  image_lock_waiter_ = std::jthread();  // asks it to stop and joins it
  // Resetting a transport stops its device's I/O thread; in-flight requests complete first.
  blks_.clear();
  nics_.clear();
  virtio_.clear();
  volume_disks_.clear();  // releases the disks' leases: nothing of ours is in flight any more
}

nlohmann::json Vm::stats() const {
  nlohmann::json vcpus = nlohmann::json::array();
  for (const auto& v : vcpus_) vcpus.push_back({{"id", v->id()}, {"exits", v->exits()}});
  nlohmann::json disks = nlohmann::json::array();
  for (size_t i = 0; i < blks_.size(); ++i) {
    const auto s = blks_[i]->stats();
    disks.push_back({{"path", config_.disks[i]},
                     {"reads", s.reads},
                     {"writes", s.writes},
                     {"flushes", s.flushes},
                     {"bytes_read", s.read_bytes},
                     {"bytes_written", s.write_bytes},
                     {"errors", s.errors},
                     {"bounce_bytes", s.bounce_bytes}});
  }
  nlohmann::json nics = nlohmann::json::array();
  for (VirtioNet* n : nics_) {
    const auto s = n->stats();
    nics.push_back({{"tap", n->tap_name()},
                    {"mac", format_mac(n->mac())},
                    {"link_up", s.link_up},
                    {"rx_frames", s.rx_frames},
                    {"rx_bytes", s.rx_bytes},
                    {"tx_frames", s.tx_frames},
                    {"tx_bytes", s.tx_bytes},
                    {"rx_dropped", s.rx_dropped},
                    {"tx_dropped", s.tx_dropped},
                    {"errors", s.errors},
                    {"announcements", s.announcements},
                    {"queue_pairs", s.queue_pairs}});
  }
  auto [rss, guest_rss] = resident_kib(*mem_);
  return {{"vcpus", vcpus},
          {"disks", disks},
          {"nics", nics},
          {"console_tx_bytes", uart_->tx_bytes()},
          {"rss_bytes", rss << 10},
          {"guest_rss_bytes", guest_rss << 10},
          {"vmm_rss_bytes", (rss - guest_rss) << 10}};
}

}  // namespace minihv
