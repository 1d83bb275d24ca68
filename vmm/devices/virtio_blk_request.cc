#include "vmm/devices/virtio_blk_request.h"

#include <algorithm>
#include <cstring>

namespace minihv {

using namespace virtio::blk;

namespace {

// Appends to `out` the bytes [skip, skip+len) of the chain's buffers of one direction, as buffer
// pieces (empty pieces left out). The caller made sure the chain has that many bytes.
void slice(std::span<const VirtqBuffer> buffers, bool writable, uint64_t skip, uint64_t len,
           std::vector<VirtqBuffer>& out) {
  for (const VirtqBuffer& b : buffers) {
    if (b.writable != writable || len == 0) continue;
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(b.len - skip, len));
    if (take) out.push_back({b.gpa + skip, take, writable, b.host + skip});
    len -= take;
    skip = 0;
  }
}

// The status byte is the chain's last byte, and must be device-writable. In a broken chain we
// only have a prefix, so the best we can do is the last writable byte of that prefix.
const VirtqBuffer* find_status(std::span<const VirtqBuffer> buffers, bool chain_ok) {
  for (auto it = buffers.rbegin(); it != buffers.rend(); ++it) {
    if (it->len == 0) continue;
    if (it->writable) return &*it;
    if (chain_ok) return nullptr;
  }
  return nullptr;
}

struct Header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(Header) == kHeaderSize);

void answer(BlkRequest& out, uint8_t status) {
  out.op = BlkRequest::Op::kDone;
  out.status = status;
}

void parse_data(const DescriptorChain& chain, const BlockBackend& backend, const Header& h,
                BlkRequest& out) {
  const bool is_read = h.type == kTIn;
  // Read data is every writable byte before the status byte; write data follows the header.
  const uint64_t bytes = is_read ? chain.writable_bytes() - 1 : chain.readable_bytes() - kHeaderSize;
  const uint32_t block = backend.block_size();
  if (h.sector > UINT64_MAX / kSectorSize || bytes % block || (h.sector * kSectorSize) % block)
    return answer(out, kSIoErr);
  const auto offset = backend.file_offset(h.sector, bytes);
  if (!offset) return answer(out, kSIoErr);
  if (!is_read && backend.read_only()) return answer(out, kSIoErr);
  if (bytes == 0) return answer(out, kSOk);
  out.op = is_read ? BlkRequest::Op::kRead : BlkRequest::Op::kWrite;
  out.offset = *offset;
  out.bytes = bytes;
  slice(chain.buffers, is_read, is_read ? 0 : kHeaderSize, bytes, out.data);
}

}  // namespace

void parse_blk_request(const DescriptorChain& chain, bool chain_ok, const BlockBackend& backend,
                       BlkRequest& out) {
  out = BlkRequest{};
  out.head = chain.head;
  if (const VirtqBuffer* s = find_status(chain.buffers, chain_ok)) {
    out.status_host = s->host + s->len - 1;
    out.status_gpa = s->gpa + s->len - 1;
  }
  if (!chain_ok || !out.status_host || chain.readable_bytes() < kHeaderSize)
    return answer(out, kSIoErr);
  Header h;
  std::vector<VirtqBuffer> hdr;
  slice(chain.buffers, false, 0, kHeaderSize, hdr);
  gather_from_guest(hdr, {reinterpret_cast<uint8_t*>(&h), sizeof h});
  switch (h.type) {
    case kTIn:
    case kTOut: return parse_data(chain, backend, h, out);
    case kTFlush: out.op = BlkRequest::Op::kFlush; return;
    case kTGetId:
      out.op = BlkRequest::Op::kGetId;
      out.bytes = std::min<uint64_t>(chain.writable_bytes() - 1, kIdBytes);
      slice(chain.buffers, true, 0, out.bytes, out.data);
      return;
    default: return answer(out, kSUnsupp);
  }
}

void write_blk_status(GuestMemory& mem, const BlkRequest& req, uint8_t status) {
  if (!req.status_host) return;
  __atomic_store_n(req.status_host, status, __ATOMIC_RELAXED);
  mem.mark_dirty(req.status_gpa, 1);
}

uint64_t scatter_to_guest(GuestMemory& mem, std::span<const VirtqBuffer> data,
                          std::span<const uint8_t> src) {
  uint64_t done = 0;
  for (const VirtqBuffer& b : data) {
    if (done == src.size()) break;
    const uint64_t n = std::min<uint64_t>(b.len, src.size() - done);
    std::memcpy(b.host, src.data() + done, n);
    mem.mark_dirty(b.gpa, n);
    done += n;
  }
  return done;
}

void gather_from_guest(std::span<const VirtqBuffer> data, std::span<uint8_t> dst) {
  uint64_t done = 0;
  for (const VirtqBuffer& b : data) {
    if (done == dst.size()) break;
    const uint64_t n = std::min<uint64_t>(b.len, dst.size() - done);
    std::memcpy(dst.data() + done, b.host, n);
    done += n;
  }
}

}  // namespace minihv
