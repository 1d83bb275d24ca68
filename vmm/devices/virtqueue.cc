#include "vmm/devices/virtqueue.h"

#include <atomic>
#include <bit>
#include <cstring>
#include <string>

#include "vmm/devices/virtio_spec.h"

namespace minihv {

using namespace virtio;

namespace {

// A descriptor as the guest wrote it; read once (memcpy), then only the copy is looked at, so a
// guest changing the table under us cannot make a checked value differ from a used one.
struct RawDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(RawDesc) == kDescSize);

RawDesc read_desc(const uint8_t* p) {
  RawDesc d;
  std::memcpy(&d, p, sizeof d);
  return d;
}

// Ring indices shared with the guest: aligned (activate() checks), accessed atomically.
uint16_t load16(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}
void store16(uint8_t* p, uint16_t v) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE);
}
void store32(uint8_t* p, uint32_t v) {
  __atomic_store_n(reinterpret_cast<uint32_t*>(p), v, __ATOMIC_RELAXED);
}

uint64_t avail_bytes(uint16_t size, bool event_idx) {
  return kRingHeaderSize + 2ull * size + (event_idx ? 2 : 0);
}
uint64_t used_bytes(uint16_t size, bool event_idx) {
  return kRingHeaderSize + uint64_t{kUsedElemSize} * size + (event_idx ? 2 : 0);
}

}  // namespace

const char* queue_error_name(QueueError e) {
  switch (e) {
    case QueueError::kNone: return "no error";
    case QueueError::kRingOutsideRam: return "virtqueue ring outside guest RAM";
    case QueueError::kBadConfig: return "virtqueue size or ring alignment invalid";
    case QueueError::kAvailIdxJump: return "avail idx more than the queue size ahead";
    case QueueError::kHeadOutOfRange: return "avail ring head index out of range";
    case QueueError::kDescOutsideRam: return "descriptor buffer outside guest RAM";
    case QueueError::kNextOutOfRange: return "descriptor next index out of range";
    case QueueError::kChainTooLong: return "descriptor chain longer than the queue (loop?)";
    case QueueError::kIndirectNotNegotiated: return "indirect descriptor without INDIRECT_DESC";
    case QueueError::kIndirectWithNext: return "indirect descriptor with NEXT set";
    case QueueError::kIndirectBadSize: return "indirect table length invalid";
    case QueueError::kIndirectOutsideRam: return "indirect table outside guest RAM";
    case QueueError::kNestedIndirect: return "nested indirect descriptor";
    case QueueError::kReadAfterWrite: return "device-readable descriptor after a writable one";
  }
  return "unknown virtqueue error";
}

uint64_t DescriptorChain::readable_bytes() const {
  uint64_t n = 0;
  for (const VirtqBuffer& b : buffers) n += b.writable ? 0 : b.len;
  return n;
}

uint64_t DescriptorChain::writable_bytes() const {
  uint64_t n = 0;
  for (const VirtqBuffer& b : buffers) n += b.writable ? b.len : 0;
  return n;
}

Virtqueue::Virtqueue(uint16_t max_size) : max_size_(max_size) { reset(); }

void Virtqueue::reset() {
  st_ = VirtqueueState{};
  st_.size = max_size_;
  mem_ = nullptr;
  desc_ = avail_ = used_ = nullptr;
  indirect_ = event_idx_ = false;
  broken_ = QueueError::kNone;
}

Status Virtqueue::restore(const VirtqueueState& st) {
  if (st.size > max_size_ || (st.size && !std::has_single_bit(st.size)))
    return Status::error("queue size " + std::to_string(st.size) + " invalid (max " +
                         std::to_string(max_size_) + ")");
  if (st.ready && st.size == 0) return Status::error("ready queue with size 0");
  reset();
  st_ = st;
  return Status::ok();
}

Status Virtqueue::activate(GuestMemory& mem, uint64_t features) {
  const uint16_t n = st_.size;
  if (!st_.ready || n == 0 || n > max_size_ || !std::has_single_bit(n) ||
      st_.desc_gpa % kDescAlign || st_.driver_gpa % kAvailAlign || st_.device_gpa % kUsedAlign)
    return Status::error(queue_error_name(QueueError::kBadConfig));
  const bool event_idx = features & kFRingEventIdx;
  uint8_t* desc = mem.host_ptr(st_.desc_gpa, uint64_t{kDescSize} * n);
  uint8_t* avail = mem.host_ptr(st_.driver_gpa, avail_bytes(n, event_idx));
  uint8_t* used = mem.host_ptr(st_.device_gpa, used_bytes(n, event_idx));
  if (!desc || !avail || !used) return Status::error(queue_error_name(QueueError::kRingOutsideRam));
  mem_ = &mem;
  desc_ = desc;
  avail_ = avail;
  used_ = used;
  indirect_ = features & kFRingIndirectDesc;
  event_idx_ = event_idx;
  broken_ = QueueError::kNone;
  return Status::ok();
}

uint16_t Virtqueue::load_avail_idx() const { return load16(avail_ + 2); }

uint16_t Virtqueue::pending() const {
  if (!active() || broken_ != QueueError::kNone) return 0;
  return static_cast<uint16_t>(load_avail_idx() - st_.last_avail_idx);
}

Virtqueue::Pop Virtqueue::fail(QueueError e) {
  broken_ = e;
  return Pop::kBroken;
}

// With EVENT_IDX the driver kicks only when its avail idx passes avail_event: publish how far we
// got, then look again, because the driver may have added a buffer before it saw the new value.
void Virtqueue::publish_avail_event() {
  uint8_t* p = used_ + kRingHeaderSize + uint64_t{kUsedElemSize} * st_.size;
  store16(p, st_.last_avail_idx);
  mem_->mark_dirty(st_.device_gpa + (p - used_), 2);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

Virtqueue::Pop Virtqueue::pop(DescriptorChain& out) {
  out.buffers.clear();
  out.error = QueueError::kNone;
  if (!active()) return Pop::kEmpty;
  if (broken_ != QueueError::kNone) return Pop::kBroken;
  uint16_t avail_idx = load_avail_idx();
  if (avail_idx == st_.last_avail_idx && event_idx_) {
    publish_avail_event();
    avail_idx = load_avail_idx();
  }
  const uint16_t ahead = static_cast<uint16_t>(avail_idx - st_.last_avail_idx);
  if (ahead == 0) return Pop::kEmpty;
  if (ahead > st_.size) return fail(QueueError::kAvailIdxJump);
  // The acquire load of idx orders the ring entry and descriptor reads after it.
  const uint16_t slot = st_.last_avail_idx & (st_.size - 1);
  const uint16_t head = load16(avail_ + kRingHeaderSize + 2u * slot);
  if (head >= st_.size) return fail(QueueError::kHeadOutOfRange);
  ++st_.last_avail_idx;
  out.head = head;
  out.error = walk(head, out);
  return out.error == QueueError::kNone ? Pop::kChain : Pop::kBadChain;
}

QueueError Virtqueue::append(uint64_t addr, uint32_t len, uint16_t flags,
                             DescriptorChain& out) const {
  // Whole chain, direct and indirect together, is bounded by the queue's maximum size.
  if (out.buffers.size() >= max_size_) return QueueError::kChainTooLong;
  const bool writable = flags & kDescFWrite;
  if (!writable && !out.buffers.empty() && out.buffers.back().writable)
    return QueueError::kReadAfterWrite;
  uint8_t* host = mem_->host_ptr(addr, len);  // rejects addr+len wrapping and straddling
  if (!host) return QueueError::kDescOutsideRam;
  out.buffers.push_back({addr, len, writable, host});
  return QueueError::kNone;
}

QueueError Virtqueue::walk(uint16_t head, DescriptorChain& out) const {
  uint16_t idx = head;
  for (unsigned steps = 0;; ++steps) {
    if (steps >= st_.size) return QueueError::kChainTooLong;
    const RawDesc d = read_desc(desc_ + uint64_t{kDescSize} * idx);
    if (d.flags & kDescFIndirect) {
      if (!indirect_) return QueueError::kIndirectNotNegotiated;
      if (d.flags & kDescFNext) return QueueError::kIndirectWithNext;
      return walk_indirect(d.addr, d.len, out);  // an indirect descriptor ends the chain
    }
    if (QueueError e = append(d.addr, d.len, d.flags, out); e != QueueError::kNone) return e;
    if (!(d.flags & kDescFNext)) return QueueError::kNone;
    if (d.next >= st_.size) return QueueError::kNextOutOfRange;
    idx = d.next;
  }
}

QueueError Virtqueue::walk_indirect(uint64_t table_gpa, uint32_t table_len,
                                    DescriptorChain& out) const {
  if (table_len == 0 || table_len % kDescSize || table_len / kDescSize > max_size_)
    return QueueError::kIndirectBadSize;
  const uint8_t* table = mem_->host_ptr(table_gpa, table_len);
  if (!table) return QueueError::kIndirectOutsideRam;
  const uint32_t entries = table_len / kDescSize;
  uint32_t idx = 0;
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= entries) return QueueError::kChainTooLong;
    const RawDesc d = read_desc(table + uint64_t{kDescSize} * idx);
    if (d.flags & kDescFIndirect) return QueueError::kNestedIndirect;
    if (QueueError e = append(d.addr, d.len, d.flags, out); e != QueueError::kNone) return e;
    if (!(d.flags & kDescFNext)) return QueueError::kNone;
    if (d.next >= entries) return QueueError::kNextOutOfRange;
    idx = d.next;
  }
}

void Virtqueue::add_used(uint16_t head, uint32_t len) {
  const UsedElem e{head, len};
  add_used(std::span<const UsedElem>(&e, 1));
}

void Virtqueue::add_used(std::span<const UsedElem> elems) {
  if (!active() || elems.empty()) return;
  for (const UsedElem& e : elems) {
    const uint16_t slot = st_.used_idx & (st_.size - 1);
    uint8_t* elem = used_ + kRingHeaderSize + uint64_t{kUsedElemSize} * slot;
    store32(elem, e.head);
    store32(elem + 4, e.len);
    mem_->mark_dirty(st_.device_gpa + (elem - used_), kUsedElemSize);
    ++st_.used_idx;
  }
  store16(used_ + 2, st_.used_idx);  // release: the elements are visible before the new idx
  mem_->mark_dirty(st_.device_gpa + 2, 2);
}

void Virtqueue::rewind(uint16_t n) { st_.last_avail_idx = static_cast<uint16_t>(st_.last_avail_idx - n); }

void Virtqueue::set_kicks(bool wanted) {
  if (!active() || event_idx_) return;
  store16(used_, wanted ? 0 : kUsedFNoNotify);
  mem_->mark_dirty(st_.device_gpa, 2);
  // The flag must be visible before the caller looks at the avail idx again.
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool Virtqueue::should_notify() {
  if (!active()) return false;
  // Our used idx store must be visible before we read the driver's suppression fields.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) return !(load16(avail_) & kAvailFNoInterrupt);
  const uint16_t old_idx = st_.signalled_used, new_idx = st_.used_idx;
  const bool valid = st_.signalled_used_valid;
  st_.signalled_used = new_idx;
  st_.signalled_used_valid = true;
  if (!valid) return true;
  const uint16_t used_event = load16(avail_ + kRingHeaderSize + 2u * st_.size);
  // Notify when used_event lies in [old_idx, new_idx): the spec's vring_need_event().
  return static_cast<uint16_t>(new_idx - used_event - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

}  // namespace minihv
