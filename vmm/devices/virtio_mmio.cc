#include "vmm/devices/virtio_mmio.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/log.h"
#include "common/sandbox.h"

namespace minihv {

using namespace virtio;
using namespace virtio::mmio;

namespace {

constexpr uint32_t kRegisterWidth = 4;  // the spec allows only 32-bit aligned register accesses

uint32_t lo32(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t hi32(uint64_t v) { return static_cast<uint32_t>(v >> 32); }
uint64_t with_lo(uint64_t v, uint32_t lo) { return (v & 0xffffffff00000000ull) | lo; }
uint64_t with_hi(uint64_t v, uint32_t hi) { return (v & 0xffffffffull) | (uint64_t{hi} << 32); }

}  // namespace

Result<std::unique_ptr<VirtioMmio>> VirtioMmio::create(GuestMemory& mem, IrqLine& irq,
                                                      std::unique_ptr<VirtioDevice> device) {
  if (!device) return Status::error("virtio-mmio: no device");
  if (device->num_queues() == 0) return Status::error("virtio-mmio: device has no queues");
  const uint16_t max = device->queue_max_size();
  if (max == 0 || max > kMaxQueueSize || (max & (max - 1)))
    return Status::error("virtio-mmio: queue max size " + std::to_string(max) + " invalid");
  std::unique_ptr<VirtioMmio> t(new VirtioMmio(mem, irq, std::move(device)));
  for (unsigned q = 0; q < t->device_->num_queues(); ++q) {
    // Blocking eventfds: the device waits on them through io_uring reads.
    UniqueFd fd(eventfd(0, EFD_CLOEXEC));
    if (!fd.valid()) return Status::from_errno("virtio-mmio: eventfd for queue notify");
    t->notify_raw_.push_back(fd.get());
    t->notify_fds_.push_back(std::move(fd));
    t->queues_.emplace_back(max);
  }
  return t;
}

VirtioMmio::VirtioMmio(GuestMemory& mem, IrqLine& irq, std::unique_ptr<VirtioDevice> device)
    : mem_(mem), irq_(irq), device_(std::move(device)) {}

VirtioMmio::~VirtioMmio() { device_->reset(); }

// --- signals from the device thread ---

void VirtioMmio::signal_used() {
  interrupt_status_.fetch_or(kIntUsedBuffer);
  irq_.trigger();
}

void VirtioMmio::signal_config() {
  interrupt_status_.fetch_or(kIntConfigChange);
  irq_.trigger();
}

void VirtioMmio::set_needs_reset() {
  if (status_.fetch_or(kStatusNeedsReset) & kStatusNeedsReset) return;  // told once is enough
  signal_config();
}

// --- registers ---

void VirtioMmio::bus_read(uint64_t offset, uint8_t* data, uint32_t len) {
  std::memset(data, 0, len);
  if (offset >= kConfig) {
    device_->read_config(offset - kConfig, data, len);
    return;
  }
  if (len != kRegisterWidth || offset % kRegisterWidth) return;  // reads as zero
  std::lock_guard lock(mu_);
  const uint32_t v = read_register(offset);
  std::memcpy(data, &v, sizeof v);
}

void VirtioMmio::bus_write(uint64_t offset, const uint8_t* data, uint32_t len) {
  if (offset >= kConfig) {
    std::lock_guard lock(mu_);
    device_->write_config(offset - kConfig, data, len);
    return;
  }
  if (len != kRegisterWidth || offset % kRegisterWidth) {
    LOG_DEBUG("virtio-mmio: ignored %u-byte write at 0x%llx", len,
              static_cast<unsigned long long>(offset));
    return;
  }
  uint32_t v;
  std::memcpy(&v, data, sizeof v);
  if (offset == kQueueNotify) {  // the same path a KVM ioeventfd takes: no lock needed
    if (v < notify_raw_.size()) {
      const uint64_t one = 1;
      if (::write(notify_raw_[v], &one, sizeof one) != sizeof one)
        LOG_WARN("virtio-mmio: queue notify eventfd write failed");
    }
    return;
  }
  std::lock_guard lock(mu_);
  write_register(offset, v);
}

Virtqueue* VirtioMmio::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}
const Virtqueue* VirtioMmio::selected_queue() const {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

uint64_t VirtioMmio::offered_features() const { return device_->features() | kFVersion1; }

bool VirtioMmio::features_acceptable(uint64_t driver_features) const {
  // Only what we offered, and never a legacy (pre-1.0) driver.
  return (driver_features & ~offered_features()) == 0 && (driver_features & kFVersion1);
}

uint32_t VirtioMmio::read_register(uint64_t offset) const {
  const Virtqueue* q = selected_queue();
  switch (offset) {
    case kMagicValue: return kMagic;
    case kVersion: return kVersion2;
    case kDeviceId: return device_->device_id();
    case kVendorId: return kVendor;
    case kDeviceFeatures:
      return device_features_sel_ == 0 ? lo32(offered_features())
             : device_features_sel_ == 1 ? hi32(offered_features()) : 0;
    case kQueueNumMax: return q ? q->max_size() : 0;
    case kQueueNum: return q ? q->size() : 0;
    case kQueueReady: return q && q->ready() ? 1 : 0;
    case kInterruptStatus: return interrupt_status_.load();
    case kStatus: return status_.load();
    case kQueueDescLow: return q ? lo32(q->desc_gpa()) : 0;
    case kQueueDescHigh: return q ? hi32(q->desc_gpa()) : 0;
    case kQueueDriverLow: return q ? lo32(q->driver_gpa()) : 0;
    case kQueueDriverHigh: return q ? hi32(q->driver_gpa()) : 0;
    case kQueueDeviceLow: return q ? lo32(q->device_gpa()) : 0;
    case kQueueDeviceHigh: return q ? hi32(q->device_gpa()) : 0;
    case kShmLenLow:
    case kShmLenHigh: return kShmLenNone;  // no shared memory regions
    case kConfigGeneration: return config_generation_;
    default: return 0;  // write-only and reserved registers read as zero
  }
}

void VirtioMmio::write_register(uint64_t offset, uint32_t v) {
  switch (offset) {
    case kDeviceFeaturesSel: device_features_sel_ = v; return;
    case kDriverFeaturesSel: driver_features_sel_ = v; return;
    case kDriverFeatures:
      if (status_.load() & kStatusFeaturesOk) return;  // frozen once FEATURES_OK was accepted
      if (driver_features_sel_ == 0) driver_features_ = with_lo(driver_features_, v);
      else if (driver_features_sel_ == 1) driver_features_ = with_hi(driver_features_, v);
      return;
    case kQueueSel: queue_sel_ = v; return;
    case kInterruptAck: interrupt_status_.fetch_and(~v); return;
    case kStatus: write_status(v); return;
    default: write_queue_register(offset, v); return;
  }
}

void VirtioMmio::write_queue_register(uint64_t offset, uint32_t v) {
  Virtqueue* q = selected_queue();
  if (!q) return;
  // Queue configuration is frozen while the device runs: the device thread owns the queues then.
  if (status_.load() & kStatusDriverOk) {
    LOG_DEBUG("virtio-mmio: queue register 0x%llx written after DRIVER_OK, ignored",
              static_cast<unsigned long long>(offset));
    return;
  }
  if (offset == kQueueReady) {
    q->set_ready(v == 1);
    return;
  }
  if (q->ready()) return;  // the spec: configure a queue only while it is not ready
  switch (offset) {
    case kQueueNum:
      if (v <= q->max_size()) q->set_size(static_cast<uint16_t>(v));  // power of 2: activate()
      return;
    case kQueueDescLow: q->set_desc_gpa(with_lo(q->desc_gpa(), v)); return;
    case kQueueDescHigh: q->set_desc_gpa(with_hi(q->desc_gpa(), v)); return;
    case kQueueDriverLow: q->set_driver_gpa(with_lo(q->driver_gpa(), v)); return;
    case kQueueDriverHigh: q->set_driver_gpa(with_hi(q->driver_gpa(), v)); return;
    case kQueueDeviceLow: q->set_device_gpa(with_lo(q->device_gpa(), v)); return;
    case kQueueDeviceHigh: q->set_device_gpa(with_hi(q->device_gpa(), v)); return;
    default: return;  // read-only or reserved
  }
}

void VirtioMmio::write_status(uint32_t v) {
  if (v == 0) {
    reset_locked();
    return;
  }
  const uint32_t old = status_.load();
  uint32_t add = v & kStatusDriverBits & ~old;
  // A driver only ever adds bits (clearing is a reset, i.e. writing 0); anything else is ignored.
  if ((old & kStatusDriverBits) & ~v) {
    LOG_WARN("virtio-mmio: status 0x%x would clear bits of 0x%x, ignored", v, old);
    return;
  }
  if ((add & kStatusFeaturesOk) && !features_acceptable(driver_features_)) {
    LOG_WARN("virtio-mmio: driver features 0x%llx refused (offered 0x%llx)",
             static_cast<unsigned long long>(driver_features_),
             static_cast<unsigned long long>(offered_features()));
    add &= ~kStatusFeaturesOk;  // the driver reads FEATURES_OK back and gives up
  }
  if (add & kStatusDriverOk) {
    if (!((old | add) & kStatusFeaturesOk)) {
      add &= ~kStatusDriverOk;
    } else if (Status s = activate_locked(); !s) {
      LOG_WARN("virtio-mmio: cannot start device %u: %s", device_->device_id(),
               s.message().c_str());
      status_.fetch_or(add);
      set_needs_reset();
      return;
    }
  }
  status_.fetch_or(add);
}

Status VirtioMmio::activate_locked() {
  for (size_t i = 0; i < queues_.size(); ++i) {
    if (!queues_[i].ready()) continue;
    MINIHV_TRY(queues_[i].activate(mem_, driver_features_).context("queue " + std::to_string(i)));
  }
  VirtioActivation act;
  act.mem = &mem_;
  act.queues = queues_;
  act.notify_fds = notify_raw_;
  act.features = driver_features_;
  act.signals = this;
  // A device starts its threads, rings and eventfds here, on the vCPU thread that wrote DRIVER_OK:
  // the sandbox's control thread does that for it (a vCPU may not).
  Status started;
  sandbox::outside([&] { started = device_->activate(act); });
  MINIHV_TRY(started);
  activated_ = true;
  return Status::ok();
}

void VirtioMmio::reset_locked() {
  device_->reset();  // returns once the device thread no longer touches queues or memory
  activated_ = false;
  for (Virtqueue& q : queues_) q.reset();
  status_.store(0);
  interrupt_status_.store(0);
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  driver_features_ = 0;
}

}  // namespace minihv
