// libFuzzer target for virtio-net, the device a guest drives hardest. The first byte picks the
// mode (bit 0), the device (bit 1: one queue pair, or two on a multi-queue tap) and, for two
// pairs, whether the driver negotiates MQ (bit 2):
//   mode 0: fuzz bytes become the negotiated features, the sizes and contents of the RX, TX and
//           control rings and buffers (VQ_PAIRS_SET among the commands), and the frames waiting on
//           the tap, of a real VirtioNet on a real tap; its I/O threads run one full pass over
//           them (resume() returns after it);
//   mode 1: fuzz bytes are a virtio-net device-state blob (restore_state must refuse or accept,
//           never crash, and what it accepted must save back the same).
// The tap lives in a network namespace of its own (tests/unit/net_test_netns.h, needs root): the
// fuzzer's own namespace never sees it or anything the fuzzed guest sends.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "tests/unit/net_test_netns.h"
#include "tests/unit/virtio_test_driver.h"
#include "vmm/devices/virtio_mmio.h"
#include "vmm/devices/virtio_net.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

using namespace virtio;
using namespace virtio::net;
using testing::HostPort;
using testing::TestLayout;
using testing::TestNetns;
using testing::VirtioTestDriver;

constexpr uint64_t kRam = 16 * layout::kMiB;
constexpr uint64_t kScratch = 2 * layout::kMiB;  // rings and buffers: cleared before each input
constexpr uint64_t kBuffers = TestLayout::kData;  // where the rest of the input goes
constexpr unsigned kPairsMq = 2;  // the multi-queue device's pairs
constexpr unsigned kMaxFrames = 4;       // frames waiting on the tap per input
constexpr size_t kMaxFrameBytes = 1514;  // the tap's MTU plus the Ethernet header
constexpr size_t kMinFrameBytes = 14;
// Feature bits the fuzzer switches, one input bit each (VERSION_1 is always on).
constexpr uint64_t kFuzzedFeatures[] = {kFRingIndirectDesc, kFRingEventIdx, kFMrgRxbuf, kFCtrlVq,
                                        kFGuestAnnounce,    kFCsum,         kFHostTso4, kFGuestCsum};

class NullIrq final : public IrqLine {
public:
  void trigger() override {}
};

// One device on its own tap; both live in one namespace.
struct World {
  unsigned pairs = 1;
  std::unique_ptr<GuestMemory> mem;
  NullIrq irq;
  std::vector<UniqueFd> tap;  // second fds of the device's tap queues: drain what an input left
  std::unique_ptr<HostPort> host;
  VirtioNet* net = nullptr;
  std::unique_ptr<VirtioMmio> mmio;
  std::unique_ptr<VirtioTestDriver> drv;
};

TestNetns& netns() {
  static TestNetns* ns = [] {
    auto* n = new TestNetns;
    if (!n->valid()) {
      std::fprintf(stderr, "virtio_net_fuzz: unshare(CLONE_NEWNET) failed: run as root\n");
      std::abort();
    }
    return n;
  }();
  return *ns;
}

World* make_world(unsigned pairs) {
  auto* x = new World;
  x->pairs = pairs;
  const std::string name = "fz" + std::to_string(pairs) + "-" + std::to_string(::getpid());
  auto tap = netns().run([&] { return Tap::open(name, "", pairs); });
  if (!tap) {
    std::fprintf(stderr, "virtio_net_fuzz: %s\n", tap.message().c_str());
    std::abort();
  }
  for (unsigned q = 0; q < pairs; ++q) x->tap.emplace_back(::dup(tap->fd(q)));
  x->host = std::make_unique<HostPort>(netns(), name);
  x->mem = std::move(GuestMemory::create(kRam).value());
  auto net = std::move(VirtioNet::create(std::move(*tap), MacAddress{2, 0, 0, 0, 0, 1}, false).value());
  x->net = net.get();
  x->mmio = std::move(VirtioMmio::create(*x->mem, x->irq, std::move(net)).value());
  x->drv = std::make_unique<VirtioTestDriver>(*x->mmio, *x->mem);
  return x;
}

World& world(bool multi_queue) {
  static World* single = make_world(1);
  static World* multi = make_world(kPairsMq);
  return multi_queue ? *multi : *single;
}

// Takes `n` bytes off the front of the input (fewer when it runs out).
struct Input {
  const uint8_t* p;
  size_t left;
  size_t take(uint8_t* dst, size_t n) {
    n = std::min(n, left);
    if (n) std::memcpy(dst, p, n);
    p += n;
    left -= n;
    return n;
  }
  uint8_t byte() {
    uint8_t b = 0;
    take(&b, 1);
    return b;
  }
};

void drain(World& w) {
  uint8_t buf[kMaxFrameBytes + 64];
  for (const UniqueFd& fd : w.tap)
    while (::read(fd.get(), buf, sizeof buf) > 0) {
    }
  while (w.host->recv(0)) {
  }
}

void fuzz_device(World& w, bool mq, Input in) {
  VirtioTestDriver& drv = *w.drv;
  drv.wr(mmio::kStatus, 0);  // reset: the previous input's I/O thread is gone
  drain(w);
  std::memset(w.mem->host_ptr(0, kScratch), 0, kScratch);

  const uint8_t fbits = in.byte(), sizes = in.byte(), frames = in.byte();
  uint64_t features = kFVersion1 | (mq ? kFMq : 0);
  for (unsigned i = 0; i < std::size(kFuzzedFeatures); ++i)
    if (fbits & (1u << i)) features |= kFuzzedFeatures[i];
  // The device starts quiesced: nothing runs until resume(), so the input is all in place first.
  if (!w.net->quiesce()) std::abort();
  if (!drv.negotiate(features)) return;
  // Without MQ the driver sets up the first pair (and the control queue after it) only.
  const unsigned pairs = mq ? w.pairs : 1;
  const unsigned queues = 2 * pairs + (features & kFCtrlVq ? 1 : 0);
  for (unsigned q = 0; q < queues; ++q) {
    drv.select(q);
    drv.setup_queue(static_cast<uint16_t>(1u << (2 * ((sizes >> (2 * (q % 4))) & 3))));  // 1, 4, 16, 64
    // Its rings from the input: the avail ring (with used_event), then the descriptor table.
    const testing::TestRing& r = drv.ring();
    in.take(w.mem->host_ptr(r.avail, 1), 4 + 2ull * r.size + 2);
    in.take(w.mem->host_ptr(r.desc, 1), 16ull * r.size);
  }
  // Frames for the host to send: a length byte pair (clamped), then the bytes.
  std::vector<std::vector<uint8_t>> host_frames;
  for (unsigned i = 0; i < frames % (kMaxFrames + 1); ++i) {
    const size_t len = std::clamp<size_t>(in.byte() | size_t{in.byte()} << 8, kMinFrameBytes, kMaxFrameBytes);
    std::vector<uint8_t> f(len);
    f.resize(in.take(f.data(), len));
    if (f.size() >= kMinFrameBytes) host_frames.push_back(std::move(f));
  }
  // The rest: buffer contents (TX frames, control commands).
  in.take(w.mem->host_ptr(kBuffers, 1), std::min<size_t>(in.left, kScratch - kBuffers));

  drv.add_status(kStatusDriverOk);
  for (const auto& f : host_frames) (void)w.host->send(f);
  w.net->resume();  // returns after one full pass of the I/O thread over the rings and the tap
  if (!w.net->quiesce()) std::abort();  // and stops it, as a migration would, to save the state
  if (!w.net->restore_state(w.net->save_state())) std::abort();
}

void fuzz_state(World& w, const uint8_t* data, size_t size) {
  const std::span<const uint8_t> blob(data, size);
  if (!w.net->restore_state(blob)) return;
  // A version-2 blob's fixed part (magic, version, MAC, announce, pairs) must be what save writes
  // back (its held frames may be with a running worker by now; a version-1 blob comes back as
  // version 2); and what save wrote must come back unchanged.
  constexpr size_t kFixed = 4 + 4 + 6 + 1 + 2;
  const std::vector<uint8_t> saved = w.net->save_state();
  if (size >= kFixed && data[4] == 2 && (saved.size() < kFixed || !std::equal(data, data + kFixed, saved.begin())))
    std::abort();
  if (!w.net->restore_state(saved) || w.net->save_state() != saved) std::abort();
}

}  // namespace
}  // namespace minihv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minihv;
  if (size < 1) return 0;
  World& w = world(data[0] & 2);
  switch (data[0] % 2) {
    case 0: fuzz_device(w, (data[0] & 4) && w.pairs > 1, {data + 1, size - 1}); break;
    case 1: fuzz_state(w, data + 1, size - 1); break;
  }
  return 0;
}
