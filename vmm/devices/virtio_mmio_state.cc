// VirtioMmio::save()/restore(): the transport's migration blob (layout in docs/virtio.md).
#include <string>

#include "common/log.h"
#include "vmm/devices/virtio_blob.h"
#include "vmm/devices/virtio_mmio.h"

namespace minihv {

using namespace virtio;

namespace {

constexpr uint32_t kBlobMagic = 0x4f494d56;  // "VMIO"
constexpr uint32_t kBlobVersion = 1;
constexpr uint32_t kKnownStatusBits = kStatusDriverBits | kStatusNeedsReset;
constexpr uint32_t kKnownInterruptBits = mmio::kIntUsedBuffer | mmio::kIntConfigChange;

struct SavedTransport {
  uint32_t status = 0, device_features_sel = 0, driver_features_sel = 0, queue_sel = 0;
  uint32_t interrupt_status = 0, config_generation = 0;
  uint64_t driver_features = 0;
  std::vector<VirtqueueState> queues;
  std::span<const uint8_t> device_state;
};

void put_queue(BlobWriter& w, uint16_t max_size, const VirtqueueState& q) {
  w.put<uint16_t>(max_size);
  w.put<uint16_t>(q.size);
  w.put<uint8_t>(q.ready);
  w.put<uint64_t>(q.desc_gpa);
  w.put<uint64_t>(q.driver_gpa);
  w.put<uint64_t>(q.device_gpa);
  w.put<uint16_t>(q.last_avail_idx);
  w.put<uint16_t>(q.used_idx);
  w.put<uint16_t>(q.signalled_used);
  w.put<uint8_t>(q.signalled_used_valid);
}

Result<VirtqueueState> get_queue(BlobReader& r, uint16_t want_max) {
  VirtqueueState q;
  const uint16_t max_size = r.get<uint16_t>();
  q.size = r.get<uint16_t>();
  const uint8_t ready = r.get<uint8_t>();
  q.desc_gpa = r.get<uint64_t>();
  q.driver_gpa = r.get<uint64_t>();
  q.device_gpa = r.get<uint64_t>();
  q.last_avail_idx = r.get<uint16_t>();
  q.used_idx = r.get<uint16_t>();
  q.signalled_used = r.get<uint16_t>();
  const uint8_t valid = r.get<uint8_t>();
  if (!r.ok()) return Status::error("truncated");
  if (max_size != want_max)
    return Status::error("max size " + std::to_string(max_size) + ", this device has " +
                         std::to_string(want_max));
  if (ready > 1 || valid > 1) return Status::error("corrupt flags");
  q.ready = ready;
  q.signalled_used_valid = valid;
  return q;
}

}  // namespace

std::vector<uint8_t> VirtioMmio::save() const {
  std::lock_guard lock(mu_);
  BlobWriter w;
  w.put<uint32_t>(kBlobMagic);
  w.put<uint32_t>(kBlobVersion);
  w.put<uint32_t>(device_->device_id());
  w.put<uint64_t>(offered_features());
  w.put<uint32_t>(status_.load());
  w.put<uint32_t>(device_features_sel_);
  w.put<uint32_t>(driver_features_sel_);
  w.put<uint64_t>(driver_features_);
  w.put<uint32_t>(queue_sel_);
  w.put<uint32_t>(interrupt_status_.load());
  w.put<uint32_t>(config_generation_);
  w.put<uint32_t>(static_cast<uint32_t>(queues_.size()));
  for (const Virtqueue& q : queues_) put_queue(w, q.max_size(), q.save());
  const std::vector<uint8_t> dev = device_->save_state();
  w.put_bytes(dev);
  return w.take();
}

Status VirtioMmio::restore(std::span<const uint8_t> blob) {
  const Status bad = Status::error("virtio-mmio state");
  BlobReader r(blob);
  if (r.get<uint32_t>() != kBlobMagic || !r.ok()) return bad.context("not a virtio-mmio blob");
  if (const uint32_t v = r.get<uint32_t>(); v != kBlobVersion)
    return bad.context("version " + std::to_string(v) + " unsupported (want " +
                       std::to_string(kBlobVersion) + ")");
  const uint32_t id = r.get<uint32_t>();
  const uint64_t offered = r.get<uint64_t>();
  SavedTransport s;
  s.status = r.get<uint32_t>();
  s.device_features_sel = r.get<uint32_t>();
  s.driver_features_sel = r.get<uint32_t>();
  s.driver_features = r.get<uint64_t>();
  s.queue_sel = r.get<uint32_t>();
  s.interrupt_status = r.get<uint32_t>();
  s.config_generation = r.get<uint32_t>();
  const uint32_t nq = r.get<uint32_t>();
  if (!r.ok()) return bad.context("truncated header");
  if (id != device_->device_id())
    return bad.context("device id " + std::to_string(id) + ", this is device " +
                       std::to_string(device_->device_id()));
  if (offered != offered_features()) return bad.context("offered features differ from this device");
  if (s.status & ~kKnownStatusBits) return bad.context("unknown status bits");
  if ((s.status & kStatusFeaturesOk) && !features_acceptable(s.driver_features))
    return bad.context("negotiated features not offered by this device");
  if ((s.status & kStatusDriverOk) && !(s.status & kStatusFeaturesOk))
    return bad.context("DRIVER_OK without FEATURES_OK");
  if (s.interrupt_status & ~kKnownInterruptBits) return bad.context("unknown interrupt bits");
  if (nq != queues_.size())
    return bad.context(std::to_string(nq) + " queues, device has " +
                       std::to_string(queues_.size()));
  for (uint32_t i = 0; i < nq; ++i) {
    auto q = get_queue(r, queues_[i].max_size());
    if (!q) return bad.context("queue " + std::to_string(i) + ": " + q.message());
    Virtqueue probe(queues_[i].max_size());
    MINIHV_TRY(probe.restore(*q).context("virtio-mmio state: queue " + std::to_string(i)));
    s.queues.push_back(*q);
  }
  s.device_state = r.get_bytes();
  if (!r.ok()) return bad.context("truncated device state");
  if (!r.at_end()) return bad.context("trailing bytes");

  std::lock_guard lock(mu_);
  reset_locked();
  MINIHV_TRY(device_->restore_state(s.device_state).context("virtio-mmio state: device"));
  for (size_t i = 0; i < queues_.size(); ++i) (void)queues_[i].restore(s.queues[i]);  // checked
  device_features_sel_ = s.device_features_sel;
  driver_features_sel_ = s.driver_features_sel;
  driver_features_ = s.driver_features;
  queue_sel_ = s.queue_sel;
  config_generation_ = s.config_generation;
  if ((s.status & kStatusDriverOk) && !(s.status & kStatusNeedsReset)) {
    if (Status st = activate_locked(); !st) {
      reset_locked();
      return st.context("virtio-mmio state: re-activating device");
    }
  }
  status_.store(s.status);
  interrupt_status_.store(s.interrupt_status);
  // An interrupt may have been in flight at the switch-over: a spurious one is harmless (the
  // driver reads InterruptStatus), a lost one hangs the guest's I/O.
  if (s.interrupt_status) irq_.trigger();
  return Status::ok();
}

}  // namespace minihv
