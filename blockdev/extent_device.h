// blockdev/extent_device.h — one disk's extent of the volume as a block device of its own, for a VM
// process that must reach that disk and nothing else of the volume.
//
// Owns: making a loop device whose first byte is the extent's first byte and whose size is the
// extent's (offset and size limit set by the kernel, which refuses I/O past the end), with direct
// I/O to the volume (no page cache of its own: a write the VM was told is done is on the volume,
// as with the volume opened O_DIRECT) and autoclear (the kernel unbinds it when its last fd
// closes: nothing to remove after the VM ends, even when the node died first).
// Must not know: leases, fences, VMs. The caller (a cluster node) holds the disk's lease and hands
// the fd to the VM process; the VM never opens the volume (docs/security.md).
// Why loop and not a device-mapper linear target: loop is in every Debian kernel (built in on this
// machine), needs no dmsetup or udev, and its autoclear ties its life to the fds; a dm target must
// be removed by whoever made it, which a node killed mid-way cannot do.
#pragma once

#include <cstdint>
#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace minihv::blockdev {

struct ExtentDevice {
  UniqueFd fd;       // the loop device, O_RDWR|O_DIRECT|O_CLOEXEC
  std::string path;  // /dev/loopN, for messages
};

// The extent [offset, offset + length) of the volume at `volume_path` as a new loop device. offset
// and length must be multiples of 4 KiB (the device's logical block size).
Result<ExtentDevice> make_extent_device(const std::string& volume_path, uint64_t offset, uint64_t length);

// Whether this host can make extent devices at all (the loop driver's control device opens); the
// error says what is missing. make_extent_device may still fail on a given volume.
Status extent_devices_available();

// How many requests the block device open as `fd` has in the kernel, reads and writes (its
// /sys/dev/block/MAJOR:MINOR/inflight). A process that ends with io_uring requests still in flight
// does not wait for them: the kernel finishes them after it is gone, and a VM's writes may land
// after its pid is reaped. Its own extent device is how the node sees them finish (an fd, not a
// name: while it is open the loop device cannot be unbound and given to another VM).
Result<uint64_t> requests_in_flight(int fd);

// The size in bytes of the block device or file open as `fd`.
Result<uint64_t> device_size(int fd);

}  // namespace minihv::blockdev
