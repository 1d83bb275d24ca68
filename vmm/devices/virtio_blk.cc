#include "vmm/devices/virtio_blk.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "vmm/devices/virtio_blob.h"
#include "vmm/devices/virtio_spec.h"

namespace minihv {

using namespace virtio;
using namespace virtio::blk;

namespace {

constexpr uint32_t kStateMagic = 0x4b4c4256;  // "VBLK"
constexpr uint32_t kStateVersion = 1;

// The serial a guest sees in /sys/block/vda/serial: the image's file name, cut to 20 bytes.
std::string default_serial(const std::string& name) {
  const size_t slash = name.find_last_of('/');
  std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
  return base.substr(0, kIdBytes);
}

template <typename T> void put_le(uint8_t* cfg, uint32_t off, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) cfg[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

Result<std::unique_ptr<VirtioBlk>> VirtioBlk::create(BlockBackend backend, std::string serial) {
  if (backend.capacity_sectors() == 0)
    return Status::invalid("disk " + backend.name() + ": empty (a disk needs at least 512 bytes)");
  if (serial.empty()) serial = default_serial(backend.name());
  return std::unique_ptr<VirtioBlk>(new VirtioBlk(std::move(backend), std::move(serial)));
}

VirtioBlk::VirtioBlk(BlockBackend backend, std::string serial)
    : backend_(std::move(backend)), serial_(std::move(serial)) {}

VirtioBlk::~VirtioBlk() { reset(); }

uint32_t VirtioBlk::device_id() const { return kDeviceId; }

uint64_t VirtioBlk::features() const {
  uint64_t f = kRingFeatures | kFFlush | kFBlkSize | kFSegMax;
  if (backend_.read_only()) f |= kFRo;
  return f;
}

void VirtioBlk::read_config(uint64_t offset, uint8_t* data, uint32_t len) const {
  uint8_t cfg[kCfgSize] = {};
  put_le<uint64_t>(cfg, kCfgCapacity, backend_.capacity_sectors());
  put_le<uint32_t>(cfg, kCfgSegMax, kSegMax);
  put_le<uint32_t>(cfg, kCfgBlkSize, backend_.block_size());
  copy_config_window(cfg, kCfgSize, offset, data, len);
}

void VirtioBlk::write_config(uint64_t, const uint8_t*, uint32_t) {
  // Nothing in our config space is writable (no CONFIG_WCE): ignored, as the spec allows.
}

Status VirtioBlk::activate(const VirtioActivation& act) {
  std::lock_guard lock(mu_);
  worker_.reset();
  auto w = BlkWorker::start(act, backend_, serial_, stats_, quiesced_, policy_);
  if (!w) return w.status();
  worker_ = std::move(w).value();
  return Status::ok();
}

void VirtioBlk::reset() {
  std::lock_guard lock(mu_);
  worker_.reset();  // joins the thread after every in-flight I/O completed
}

Status VirtioBlk::quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
  if (worker_) worker_->pause();
  if (!backend_.read_only() && ::fdatasync(backend_.fd()) < 0)
    return Status::from_errno("disk " + backend_.name() + ": flush while quiescing");
  return Status::ok();
}

void VirtioBlk::resume() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
  if (worker_) worker_->unpause();
}

void VirtioBlk::set_error_policy(DiskErrorPolicy policy) {
  std::lock_guard lock(mu_);
  policy_ = std::move(policy);
}

unsigned VirtioBlk::parked_requests() const {
  std::lock_guard lock(mu_);
  return worker_ ? worker_->parked() : 0;
}

void VirtioBlk::retry() {
  std::lock_guard lock(mu_);
  if (worker_ && !quiesced_) worker_->unpause();
}

bool VirtioBlk::quiesced() const {
  std::lock_guard lock(mu_);
  return quiesced_;
}

VirtioBlk::Stats VirtioBlk::stats() const {
  Stats s;
  s.reads = stats_.reads.load();
  s.writes = stats_.writes.load();
  s.flushes = stats_.flushes.load();
  s.read_bytes = stats_.read_bytes.load();
  s.write_bytes = stats_.write_bytes.load();
  s.errors = stats_.errors.load();
  s.bounce_bytes = stats_.bounce_bytes.load();
  return s;
}

// Requests are never in flight in a saved state (quiesced, and the VM refuses to save a disk with
// parked requests), so the device state is only what the destination must agree with: the geometry.
std::vector<uint8_t> VirtioBlk::save_state() const {
  BlobWriter w;
  w.put<uint32_t>(kStateMagic);
  w.put<uint32_t>(kStateVersion);
  w.put<uint64_t>(backend_.capacity_sectors());
  w.put<uint32_t>(backend_.block_size());
  w.put<uint8_t>(backend_.read_only());
  return w.take();
}

Status VirtioBlk::restore_state(std::span<const uint8_t> blob) {
  BlobReader r(blob);
  const uint32_t magic = r.get<uint32_t>(), version = r.get<uint32_t>();
  const uint64_t capacity = r.get<uint64_t>();
  const uint32_t block = r.get<uint32_t>();
  const uint8_t ro = r.get<uint8_t>();
  if (!r.ok() || !r.at_end() || magic != kStateMagic) return Status::error("not a virtio-blk state");
  if (version != kStateVersion) return Status::error("virtio-blk state version unsupported");
  if (capacity != backend_.capacity_sectors())
    return Status::error("disk " + backend_.name() + " has " +
                         std::to_string(backend_.capacity_sectors()) +
                         " sectors, the saved guest saw " + std::to_string(capacity));
  if (block != backend_.block_size()) return Status::error("disk block size differs");
  if (ro > 1 || bool(ro) != backend_.read_only()) return Status::error("disk read-only mode differs");
  return Status::ok();
}

}  // namespace minihv
