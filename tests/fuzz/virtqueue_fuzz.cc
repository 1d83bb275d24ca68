// libFuzzer target for everything a guest or a migration stream can hand the virtio code:
//   mode 0: fuzz bytes become a split ring (avail ring, descriptor table, indirect tables) in real
//           guest memory; chains are popped, parsed as virtio-blk requests and completed;
//   mode 1: fuzz bytes are a VirtioMmio save blob (restore() must refuse or accept, never crash);
//   mode 2: fuzz bytes are a virtio-blk device-state blob;
//   mode 3: fuzz bytes are a sequence of register writes/reads against the transport.
// Every buffer a chain yields is read and written in full, so ASan sees any pointer that escaped
// guest RAM.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "vmm/devices/virtio_blk.h"
#include "vmm/devices/virtio_blk_request.h"
#include "vmm/devices/virtio_mmio.h"
#include "vmm/devices/virtqueue.h"
#include "vmm/layout.h"

namespace minihv {
namespace {

constexpr uint64_t kRam = 16 * layout::kMiB;
constexpr uint64_t kAvail = 0x1000, kDesc = 0x2000, kUsed = 0x6000, kExtra = 0x8000;
constexpr uint64_t kScratch = 0x20000;  // what mode 0 clears between inputs
constexpr uint16_t kMaxQueue = 256;
constexpr unsigned kMaxPops = 64;

class NullIrq final : public IrqLine {
public:
  void trigger() override {}
};

// A device without threads, so that restore() can activate it cheaply.
class FuzzDevice final : public VirtioDevice {
public:
  uint32_t device_id() const override { return 2; }
  uint64_t features() const override { return virtio::kRingFeatures | virtio::feature(9); }
  unsigned num_queues() const override { return 2; }
  uint16_t queue_max_size() const override { return kMaxQueue; }
  void read_config(uint64_t, uint8_t* d, uint32_t len) const override { std::memset(d, 0, len); }
  void write_config(uint64_t, const uint8_t*, uint32_t) override {}
  Status activate(const VirtioActivation& act) override {
    // Touch what a real device would: pop from every active queue.
    DescriptorChain c;
    for (Virtqueue& q : act.queues)
      for (unsigned i = 0; i < 4 && q.active() && q.pop(c) != Virtqueue::Pop::kEmpty; ++i) {}
    return Status::ok();
  }
  void reset() override {}
  std::vector<uint8_t> save_state() const override { return {}; }
};

struct World {
  std::unique_ptr<GuestMemory> mem;
  NullIrq irq;
  std::unique_ptr<VirtioMmio> mmio;
  std::unique_ptr<BlockBackend> backend;
  std::unique_ptr<VirtioBlk> blk;  // never activated: only restore_state() is fuzzed
};

World& world() {
  static World* w = [] {
    auto* x = new World;
    x->mem = std::move(GuestMemory::create(kRam).value());
    x->mmio = std::move(VirtioMmio::create(*x->mem, x->irq, std::make_unique<FuzzDevice>()).value());
    const int fd = memfd_create("fuzzdisk", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) abort();
    BlockBackend::Extent e;
    e.fd = UniqueFd(fd);
    e.length = 1 << 20;
    e.name = "fuzzdisk";
    x->backend = std::make_unique<BlockBackend>(std::move(BlockBackend::from_extent(std::move(e)).value()));
    auto b2 = BlockBackend::from_extent({UniqueFd(dup(x->backend->fd())), 0, 1 << 20, false, 1, "d"});
    x->blk = std::move(VirtioBlk::create(std::move(b2.value())).value());
    return x;
  }();
  return *w;
}

// Reads and writes every byte of every buffer: ASan flags any pointer outside guest RAM.
uint8_t touch(const DescriptorChain& c) {
  uint8_t sum = 0;
  for (const VirtqBuffer& b : c.buffers) {
    for (uint32_t i = 0; i < b.len; i += 512) sum = static_cast<uint8_t>(sum + b.host[i]);
    if (b.len) sum = static_cast<uint8_t>(sum + b.host[b.len - 1]);
    if (b.writable && b.len) b.host[b.len - 1] = sum;
  }
  return sum;
}

void fuzz_ring(const uint8_t* data, size_t size) {
  if (size < 2) return;
  World& w = world();
  GuestMemory& mem = *w.mem;
  std::memset(mem.host_ptr(0, kScratch), 0, kScratch);
  const uint16_t qsize = static_cast<uint16_t>(1u << (data[0] % 9));  // 1..256
  const uint64_t features = (data[1] & 1 ? virtio::kFRingIndirectDesc : 0) |
                            (data[1] & 2 ? virtio::kFRingEventIdx : 0);
  data += 2;
  size -= 2;
  // Avail ring first (short inputs still make requests), then descriptors, then the rest.
  const uint64_t avail_len = 4 + 2ull * qsize + 2;
  const uint64_t parts[][2] = {{kAvail, avail_len}, {kDesc, 16ull * qsize}, {kExtra, kScratch - kExtra}};
  for (const auto& p : parts) {
    const size_t n = std::min<size_t>(size, p[1]);
    std::memcpy(mem.host_ptr(p[0], n ? n : 1), data, n);
    data += n;
    size -= n;
  }
  Virtqueue q(kMaxQueue);
  q.set_size(qsize);
  q.set_desc_gpa(kDesc);
  q.set_driver_gpa(kAvail);
  q.set_device_gpa(kUsed);
  q.set_ready(true);
  if (!q.activate(mem, features)) abort();  // our own layout: must be valid
  DescriptorChain c;
  BlkRequest req;
  for (unsigned i = 0; i < kMaxPops; ++i) {
    const Virtqueue::Pop r = q.pop(c);
    if (r == Virtqueue::Pop::kEmpty || r == Virtqueue::Pop::kBroken) break;
    touch(c);
    parse_blk_request(c, r == Virtqueue::Pop::kChain, *w.backend, req);
    write_blk_status(mem, req, 1);
    if (req.op == BlkRequest::Op::kGetId) {
      const uint8_t id[20] = {'f', 'u', 'z', 'z'};
      scatter_to_guest(mem, req.data, {id, std::min<uint64_t>(req.bytes, sizeof id)});
    }
    if (req.op == BlkRequest::Op::kWrite) {
      uint8_t buf[4096];
      gather_from_guest(req.data, {buf, std::min<uint64_t>(req.bytes, sizeof buf)});
    }
    q.add_used(c.head, 1);
    (void)q.should_notify();
  }
  const VirtqueueState st = q.save();
  Virtqueue again(kMaxQueue);
  if (!again.restore(st)) abort();  // a state we produced must restore
}

void fuzz_registers(const uint8_t* data, size_t size) {
  World& w = world();
  std::memset(w.mem->host_ptr(0, kScratch), 0, kScratch);
  const uint32_t zero = 0;
  w.mmio->bus_write(virtio::mmio::kStatus, reinterpret_cast<const uint8_t*>(&zero), 4);
  // Each step: 1 byte register index (x4), 4 bytes value, reads in between.
  for (size_t i = 0; i + 5 <= size; i += 5) {
    const uint64_t off = (data[i] & 0x7f) * 4ull;
    uint32_t v;
    std::memcpy(&v, data + i + 1, 4);
    if (off == virtio::mmio::kQueueNotify) continue;  // nobody reads the eventfd here
    w.mmio->bus_write(off, reinterpret_cast<const uint8_t*>(&v), 4);
    uint32_t r;
    w.mmio->bus_read(off ^ 4, reinterpret_cast<uint8_t*>(&r), 4);
  }
  (void)w.mmio->restore(w.mmio->save());  // whatever state we reached must round-trip
  w.mmio->bus_write(virtio::mmio::kStatus, reinterpret_cast<const uint8_t*>(&zero), 4);
}

}  // namespace
}  // namespace minihv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minihv;
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  ++data;
  --size;
  switch (mode) {
    case 0: fuzz_ring(data, size); break;
    case 1:
      std::memset(world().mem->host_ptr(0, kScratch), 0, kScratch);
      (void)world().mmio->restore({data, size});
      break;
    case 2: (void)world().blk->restore_state({data, size}); break;
    case 3: fuzz_registers(data, size); break;
  }
  return 0;
}
