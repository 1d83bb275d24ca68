// vmm/devices/virtio_blk_request.h — turning a validated descriptor chain into a disk operation.
//
// Owns: the virtio-blk request format (header, data, status byte) without assuming any particular
// split into descriptors (VIRTIO 1.x: the device must not), the request checks (sector alignment,
// capacity, read-only) and copying between guest buffers and a host buffer.
// Must not know: io_uring or threads (a pure function of the chain and the backend).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/devices/virtio_blk_backend.h"
#include "vmm/devices/virtio_spec.h"
#include "vmm/devices/virtqueue.h"
#include "vmm/memory.h"

namespace minihv {

struct BlkRequest {
  enum class Op : uint8_t {
    kRead,   // disk -> data buffers
    kWrite,  // data buffers -> disk
    kFlush,  // fdatasync
    kGetId,  // serial -> data buffers
    kDone,   // nothing to do: answer `status` now (errors, unsupported types, empty transfers)
  };
  Op op = Op::kDone;
  uint16_t head = 0;
  uint8_t status = virtio::blk::kSOk;
  uint64_t offset = 0;            // file offset of a read/write (from BlockBackend::file_offset)
  uint64_t bytes = 0;             // data bytes
  std::vector<VirtqBuffer> data;  // the data part of the chain, cut out of its buffers
  uint8_t* status_host = nullptr; // the status byte (last byte of the chain); null when there is none
  uint64_t status_gpa = 0;
};

// Parses a chain that Virtqueue::pop() returned. For a complete chain (`chain_ok`) this is the
// request; for a broken one (kBadChain) only the status byte is looked for, and the request is
// answered IOERR. Without a status byte (status_host == nullptr) there is no way to answer: the
// caller sets NEEDS_RESET.
void parse_blk_request(const DescriptorChain& chain, bool chain_ok, const BlockBackend& backend,
                       BlkRequest& out);

// Writes the status byte (when there is one) and marks it dirty.
void write_blk_status(GuestMemory& mem, const BlkRequest& req, uint8_t status);

// Copies `src` into the data buffers (at most their size); marks what it wrote dirty. Returns the
// number of bytes copied.
uint64_t scatter_to_guest(GuestMemory& mem, std::span<const VirtqBuffer> data,
                          std::span<const uint8_t> src);
// Copies the data buffers into `dst` (at most dst.size() bytes).
void gather_from_guest(std::span<const VirtqBuffer> data, std::span<uint8_t> dst);

}  // namespace minihv
