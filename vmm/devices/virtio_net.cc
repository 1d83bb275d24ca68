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
// Version 1: MAC and announce flag (still read: one pair, no frames held). Version 2 adds the
// active pair count and the frames held across a migration's switchover.
constexpr uint32_t kStateVersion = 2;
// Offered whether or not the tap takes offloads: they concern only the guest -> tap direction,
// which the tap always accepts (it checks the header itself).
constexpr uint64_t kBaseFeatures = kRingFeatures | kFMac | kFStatus | kFMrgRxbuf | kFCtrlVq |
                                   kFGuestAnnounce | kFCsum | kFHostTso4 | kFHostTso6 | kFHostEcn;
// Tap -> guest offloads: only when the tap can hand us partial checksums and large frames.
constexpr uint64_t kGuestOffloads = kFGuestCsum | kFGuestTso4 | kFGuestTso6 | kFGuestEcn;

}  // namespace

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(Tap tap, MacAddress mac, bool mac_fixed) {
  if (tap.queues() > NicSpec::kMaxQueuePairs)
    return Status::invalid("tap " + tap.name() + ": " + std::to_string(tap.queues()) + " queues, at most " +
                           std::to_string(NicSpec::kMaxQueuePairs) + " queue pairs");
  return std::unique_ptr<VirtioNet>(new VirtioNet(std::move(tap), mac, mac_fixed));
}

VirtioNet::VirtioNet(Tap tap, MacAddress mac, bool mac_fixed)
    : tap_(std::move(tap)), max_pairs_(tap_.queues()), mac_fixed_(mac_fixed), mac_(mac) {}

VirtioNet::~VirtioNet() {
  announcer_ = {};  // stops and joins before the tap closes
  reset();
}

uint32_t VirtioNet::device_id() const { return kDeviceId; }

uint64_t VirtioNet::features() const {
  return kBaseFeatures | (tap_.offloads_available() ? kGuestOffloads : 0) | (max_pairs_ > 1 ? kFMq : 0);
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
  cfg[kCfgMaxPairs] = static_cast<uint8_t>(max_pairs_);
  copy_config_window(cfg, kCfgSize, offset, data, len);
}

void VirtioNet::write_config(uint64_t, const uint8_t*, uint32_t) {
  // The MAC is writable only in legacy devices (VIRTIO_NET_F_CTRL_MAC_ADDR is not offered): ignored.
}

Status VirtioNet::activate(const VirtioActivation& act) {
  std::lock_guard lock(mu_);
  stop_workers();
  const uint64_t f = act.features;
  // A tap deleted under us takes no offloads, but the driver still gets a device: link down, its
  // frames dropped (the worker reports the dead fd), as after a deletion while it ran.
  if (tap_.attached())
    MINIHV_TRY(tap_.set_offloads(f & kFGuestCsum, f & kFGuestTso4, f & kFGuestTso6, f & kFGuestEcn));
  else
    link_up_ = false;
  features_ = f;
  signals_ = act.signals;
  tap_gone_logged_ = false;
  // Without MQ the driver knows one pair and finds the control queue right after it.
  const bool mq = f & kFMq;
  unsigned pairs = 1;
  while (mq && pairs < max_pairs_ && act.queues[rx_queue(pairs)].active() && act.queues[tx_queue(pairs)].active())
    ++pairs;
  // A restored count the driver's queues no longer back falls back to the first pair.
  if (active_pairs_ > pairs) active_pairs_ = 1;
  std::unique_lock plock(pairs_mu_);
  if (tap_.attached()) MINIHV_TRY(tap_.enable_queues(active_pairs_));
  for (unsigned p = 0; p < pairs; ++p) {
    NetWorkerContext ctx;
    ctx.act = act;
    ctx.pair = p;
    ctx.ctrl_queue = p > 0 ? NetWorkerContext::kNoQueue : mq ? 2 * max_pairs_ : kCtrlQueue;
    ctx.tap_fd = tap_.fd(p);
    ctx.stats = &stats_;
    ctx.active_pairs = &active_pairs_;
    if (p == 0) {
      ctx.on_announce_ack = [this] { announce_pending_ = false; };
      ctx.on_pairs_set = [this](unsigned n) { return set_pairs(n); };
    }
    ctx.on_tap_gone = [this](const std::string& why) { tap_gone(why); };
    auto w = NetWorker::start(std::move(ctx), quiesced_);
    if (!w) {
      plock.unlock();
      stop_workers();
      return w.status();
    }
    workers_.push_back(std::move(w).value());
  }
  hand_held_to_worker();
  return Status::ok();
}

// Under mu_ (workers_ changes only under it too). Pair 0's worker delivers them before the tap's frames once it runs.
void VirtioNet::hand_held_to_worker() {
  if (workers_.empty() || held_.empty()) return;
  workers_.front()->inject(std::move(held_));
  held_.clear();
}

// Pair 0 first: its thread is the one that reads the others (set_pairs), and it may be waiting
// for pairs_mu_ this very moment, so it is joined without holding it.
void VirtioNet::stop_workers() {
  std::unique_ptr<NetWorker> first;
  {
    std::lock_guard plock(pairs_mu_);
    if (!workers_.empty()) first = std::move(workers_.front());
  }
  first.reset();
  std::lock_guard plock(pairs_mu_);
  workers_.clear();
}

// On pair 0's thread. The pairs beyond `pairs` have stopped touching their queues, and the tap
// hands them nothing, before the driver sees the answer.
bool VirtioNet::set_pairs(unsigned pairs) {
  std::lock_guard plock(pairs_mu_);
  if (pairs < 1 || pairs > workers_.size()) return false;
  if (Status s = tap_.enable_queues(pairs); !s) {
    LOG_WARN("virtio-net %s: %s", tap_.name().c_str(), s.message().c_str());
    return false;
  }
  active_pairs_ = pairs;
  for (size_t p = 1; p < workers_.size(); ++p) workers_[p]->refresh();
  return true;
}

void VirtioNet::reset() {
  std::lock_guard lock(mu_);
  stop_workers();  // joins the threads; nothing of the guest's is touched afterwards
  features_ = 0;
  signals_ = nullptr;
  announce_pending_ = false;
  active_pairs_ = 1;
}

Status VirtioNet::quiesce() {
  hold_announcements(true);  // outside mu_: the announcer takes mu_ (mac()) under announce_mu_
  std::lock_guard lock(mu_);
  quiesced_ = true;
  for (auto& w : workers_) w->pause();
  return Status::ok();
}

void VirtioNet::resume() {
  {
    std::lock_guard lock(mu_);
    quiesced_ = false;
    hand_held_to_worker();
    for (auto& w : workers_) w->unpause();
  }
  hold_announcements(false);
}

void VirtioNet::tap_gone(const std::string& why) {
  link_up_ = false;
  if (tap_gone_logged_.exchange(true)) return;  // another pair's worker said it already
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
  // Every queue the kernel hands frames to (the active pairs'), one after the other.
  const unsigned queues = std::min(active_pairs_.load(), tap_.queues());
  for (unsigned q = 0; q < queues; ++q) {
    while (tap_.attached() && held_.size() < kMaxHeldFrames && bytes + buf.size() <= kMaxHeldBytes) {
      const ssize_t n = ::read(tap_.fd(q), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // EAGAIN: nothing more (or the tap is gone: the worker says so when it runs)
      if (n < static_cast<ssize_t>(kHdrSize)) continue;
      held_.emplace_back(buf.begin(), buf.begin() + n);
      bytes += static_cast<size_t>(n);
    }
  }
}

std::vector<uint8_t> VirtioNet::save_state() const {
  BlobWriter w;
  w.put<uint32_t>(kStateMagic);
  w.put<uint32_t>(kStateVersion);
  const MacAddress mac = this->mac();
  for (uint8_t b : mac) w.put<uint8_t>(b);
  w.put<uint8_t>(announce_pending_.load());
  w.put<uint16_t>(static_cast<uint16_t>(active_pairs_.load()));
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
  const unsigned pairs = version >= 2 ? r.get<uint16_t>() : 1;
  if (!r.ok() || magic != kStateMagic) return Status::error("not a virtio-net state");
  if (version != 1 && version != kStateVersion) return Status::error("virtio-net state version unsupported");
  if (announce > 1) return Status::error("virtio-net state: bad announce flag");
  if (pairs < 1 || pairs > max_pairs_)
    return Status::error("virtio-net state: the guest uses " + std::to_string(pairs) + " queue pairs, tap " +
                         tap_.name() + " has " + std::to_string(max_pairs_));
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
  active_pairs_ = pairs;
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

// A quiesced device does not speak for its guest: after a migration's pause the network must
// learn the destination's port, and a round from here (this series began when the guest last
// arrived) would take the guest's frames back to a source that is about to exit. The rounds left
// go on when the device resumes here. Returns once no round is being sent.
void VirtioNet::hold_announcements(bool hold) {
  {
    std::lock_guard lock(announce_mu_);
    announce_held_ = hold;
  }
  announce_cv_.notify_all();
}

void VirtioNet::run_announcer(std::stop_token stop) {
  std::unique_lock lock(announce_mu_);
  for (;;) {
    if (!announce_cv_.wait(lock, stop, [&] { return announce_started_ && !announce_held_; })) return;
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
  s.queue_pairs = active_pairs_.load();
  return s;
}

}  // namespace minihv
