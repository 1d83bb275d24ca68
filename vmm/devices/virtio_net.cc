#include "vmm/devices/virtio_net.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.h"
#include "vmm/devices/net_announce.h"
#include "vmm/devices/virtio_blob.h"
#include "vmm/devices/virtio_spec.h"

namespace minihv {

using namespace virtio;
using namespace virtio::net;

namespace {

constexpr uint32_t kStateMagic = 0x54454e56;  // "VNET"
constexpr uint32_t kStateVersion = 2;  // 2: the held frames (1: without; still read)
// Offered whether or not the tap takes offloads: they concern only the guest -> tap direction,
// which the tap always accepts (it checks the header itself).
constexpr uint64_t kBaseFeatures = kRingFeatures | kFMac | kFStatus | kFMrgRxbuf | kFCtrlVq |
                                   kFGuestAnnounce | kFCsum | kFHostTso4 | kFHostTso6 | kFHostEcn;
// Tap -> guest offloads: only when the tap can hand us partial checksums and large frames.
constexpr uint64_t kGuestOffloads = kFGuestCsum | kFGuestTso4 | kFGuestTso6 | kFGuestEcn;

}  // namespace

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(Tap tap, MacAddress mac, bool mac_fixed) {
  return std::unique_ptr<VirtioNet>(new VirtioNet(std::move(tap), mac, mac_fixed));
}

VirtioNet::VirtioNet(Tap tap, MacAddress mac, bool mac_fixed)
    : tap_(std::move(tap)), mac_fixed_(mac_fixed), mac_(mac) {}

VirtioNet::~VirtioNet() {
  announcer_ = {};  // stops and joins before the tap closes
  reset();
}

uint32_t VirtioNet::device_id() const { return kDeviceId; }

uint64_t VirtioNet::features() const {
  return kBaseFeatures | (tap_.offloads_available() ? kGuestOffloads : 0);
}

MacAddress VirtioNet::mac() const {
  std::lock_guard lock(mu_);
  return mac_;
}

uint16_t VirtioNet::config_status() const {
  return static_cast<uint16_t>((link_up_.load() ? kSLinkUp : 0) | (announce_pending_.load() ? kSAnnounce : 0));
}

void VirtioNet::read_config(uint64_t offset, uint8_t* data, uint32_t len) const {
  uint8_t cfg[kCfgSize] = {};
  const MacAddress mac = this->mac();
  std::copy(mac.begin(), mac.end(), cfg + kCfgMac);
  const uint16_t status = config_status();
  cfg[kCfgStatus] = static_cast<uint8_t>(status);
  cfg[kCfgStatus + 1] = static_cast<uint8_t>(status >> 8);
  cfg[kCfgMaxPairs] = 1;
  copy_config_window(cfg, kCfgSize, offset, data, len);
}

void VirtioNet::write_config(uint64_t, const uint8_t*, uint32_t) {
  // The MAC is writable only in legacy devices (VIRTIO_NET_F_CTRL_MAC_ADDR is not offered): ignored.
}

Status VirtioNet::activate(const VirtioActivation& act) {
  std::lock_guard lock(mu_);
  worker_.reset();
  const uint64_t f = act.features;
  // A tap deleted under us takes no offloads, but the driver still gets a device: link down, its
  // frames dropped (the worker reports the dead fd), as after a deletion while it ran.
  if (tap_.attached())
    MINIHV_TRY(tap_.set_offloads(f & kFGuestCsum, f & kFGuestTso4, f & kFGuestTso6, f & kFGuestEcn));
  else
    link_up_ = false;
  features_ = f;
  signals_ = act.signals;
  NetWorkerContext ctx;
  ctx.act = act;
  ctx.tap_fd = tap_.fd();
  ctx.stats = &stats_;
  ctx.on_announce_ack = [this] { announce_pending_ = false; };
  ctx.on_tap_gone = [this](const std::string& why) { tap_gone(why); };
  auto w = NetWorker::start(std::move(ctx), quiesced_);
  if (!w) return w.status();
  worker_ = std::move(w).value();
  hand_held_to_worker();
  return Status::ok();
}

// Under mu_. The worker delivers them before the tap's frames once it runs.
void VirtioNet::hand_held_to_worker() {
  if (!worker_ || held_.empty()) return;
  worker_->inject(std::move(held_));
  held_.clear();
}

void VirtioNet::reset() {
  std::lock_guard lock(mu_);
  worker_.reset();  // joins the thread; nothing of the guest's is touched afterwards
  features_ = 0;
  signals_ = nullptr;
  announce_pending_ = false;
}

Status VirtioNet::quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
  if (worker_) worker_->pause();
  return Status::ok();
}

void VirtioNet::resume() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
  hand_held_to_worker();
  if (worker_) worker_->unpause();
}

void VirtioNet::tap_gone(const std::string& why) {
  link_up_ = false;
  LOG_ERROR("virtio-net %s: %s: the tap is gone; the guest's link is down and its frames are dropped",
            tap_.name().c_str(), why.c_str());
  if (VirtioSignals* s = signals_.load(); s && (features_.load() & kFStatus)) s->signal_config();
}

// ---- migration ----

void VirtioNet::hold_arrivals() {
  std::lock_guard lock(mu_);
  size_t bytes = 0;
  for (const auto& f : held_) bytes += f.size();
  std::vector<uint8_t> buf(kHdrSize + NetWorker::kMaxFrame);
  while (tap_.attached() && held_.size() < kMaxHeldFrames && bytes + buf.size() <= kMaxHeldBytes) {
    const ssize_t n = ::read(tap_.fd(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;  // EAGAIN: nothing more (or the tap is gone: the worker says so when it runs)
    if (n < static_cast<ssize_t>(kHdrSize)) continue;
    held_.emplace_back(buf.begin(), buf.begin() + n);
    bytes += static_cast<size_t>(n);
  }
}

std::vector<uint8_t> VirtioNet::save_state() const {
  BlobWriter w;
  w.put<uint32_t>(kStateMagic);
  w.put<uint32_t>(kStateVersion);
  const MacAddress mac = this->mac();
  for (uint8_t b : mac) w.put<uint8_t>(b);
  w.put<uint8_t>(announce_pending_.load());
  std::lock_guard lock(mu_);
  w.put<uint32_t>(static_cast<uint32_t>(held_.size()));
  for (const auto& f : held_) w.put_bytes(f);
  return w.take();
}

namespace {

// The held frames of a version-2 state; an error names what is wrong.
Result<std::vector<std::vector<uint8_t>>> read_held(BlobReader& r) {
  std::vector<std::vector<uint8_t>> held;
  const uint32_t count = r.get<uint32_t>();
  if (!r.ok() || count > VirtioNet::kMaxHeldFrames) return Status::error("virtio-net state: bad held frame count");
  size_t bytes = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const auto b = r.get_bytes();
    bytes += b.size();
    if (!r.ok()) return Status::error("virtio-net state: held frame " + std::to_string(i) + " is cut short");
    if (b.size() < kHdrSize || b.size() > kHdrSize + NetWorker::kMaxFrame || bytes > VirtioNet::kMaxHeldBytes)
      return Status::error("virtio-net state: held frame " + std::to_string(i) + " has a bad length");
    held.emplace_back(b.begin(), b.end());
  }
  return held;
}

}  // namespace

Status VirtioNet::restore_state(std::span<const uint8_t> blob) {
  BlobReader r(blob);
  const uint32_t magic = r.get<uint32_t>(), version = r.get<uint32_t>();
  MacAddress mac{};
  for (uint8_t& b : mac) b = r.get<uint8_t>();
  const uint8_t announce = r.get<uint8_t>();
  if (!r.ok() || magic != kStateMagic) return Status::error("not a virtio-net state");
  if (version != 1 && version != kStateVersion) return Status::error("virtio-net state version unsupported");
  if (announce > 1) return Status::error("virtio-net state: bad announce flag");
  std::vector<std::vector<uint8_t>> held;
  if (version >= 2) {
    auto h = read_held(r);
    if (!h) return h.status();
    held = std::move(h).value();
  }
  if (!r.at_end()) return Status::error("not a virtio-net state");
  std::lock_guard lock(mu_);
  MINIHV_TRY(check_mac(mac));
  mac_ = mac;
  announce_pending_ = announce;
  held_ = std::move(held);
  hand_held_to_worker();
  return Status::ok();
}

Status VirtioNet::check_mac(const MacAddress& mac) const {
  if (mac_fixed_ && mac != mac_)
    return Status::error("NIC on tap " + tap_.name() + " has mac=" + format_mac(mac_) + ", the guest has " +
                         format_mac(mac) + ": give the destination the same mac= or none");
  return Status::ok();
}

Status VirtioNet::adopt_mac(const MacAddress& mac) {
  std::lock_guard lock(mu_);
  MINIHV_TRY(check_mac(mac));
  mac_ = mac;
  return Status::ok();
}

// ---- self-announce ----

void VirtioNet::send_rarp() {
  const auto frame = rarp_frame(mac());
  uint8_t hdr[kHdrSize] = {};
  iovec iov[2] = {{hdr, sizeof hdr}, {const_cast<uint8_t*>(frame.data()), frame.size()}};
  if (::writev(tap_.fd(), iov, 2) < 0)
    LOG_DEBUG("virtio-net %s: RARP: %s", tap_.name().c_str(), std::strerror(errno));
  else
    ++announcements_;
}

void VirtioNet::announce() {
  if (VirtioSignals* s = signals_.load(); s && (features_.load() & kFGuestAnnounce)) {
    announce_pending_ = true;
    s->signal_config();
  }
  {
    std::lock_guard lock(announce_mu_);
    announce_round_ = 0;
    announce_started_ = true;
  }
  if (!announcer_.joinable())
    announcer_ = std::jthread([this](std::stop_token st) { run_announcer(std::move(st)); });
  announce_cv_.notify_all();
}

void VirtioNet::run_announcer(std::stop_token stop) {
  std::unique_lock lock(announce_mu_);
  for (;;) {
    if (!announce_cv_.wait(lock, stop, [&] { return announce_started_; })) return;
    const unsigned round = announce_round_++;
    if (announce_round_ >= kAnnounceRounds) announce_started_ = false;
    send_rarp();
    if (!announce_started_) continue;
    // Wait out the gap, unless a new announce() starts the series over or we are stopped.
    const unsigned expect = announce_round_;
    announce_cv_.wait_for(lock, stop, announce_gap(round), [&] { return announce_round_ != expect; });
    if (stop.stop_requested()) return;
  }
}

VirtioNet::Stats VirtioNet::stats() const {
  Stats s;
  s.rx_frames = stats_.rx_frames.load();
  s.rx_bytes = stats_.rx_bytes.load();
  s.tx_frames = stats_.tx_frames.load();
  s.tx_bytes = stats_.tx_bytes.load();
  s.rx_dropped = stats_.rx_dropped.load();
  s.tx_dropped = stats_.tx_dropped.load();
  s.errors = stats_.errors.load();
  s.announcements = announcements_.load();
  s.link_up = link_up_.load();
  return s;
}

}  // namespace minihv
