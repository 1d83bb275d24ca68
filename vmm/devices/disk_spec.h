// vmm/devices/disk_spec.h — what `--disk` says beyond the image: what a failed read or write does.
//
// Owns: the text of a disk specification (`PATH[,on-error=stop|report]`, `VOLUME:DISK[,...]`), the
// errors that pause a VM rather than reach its guest, and the words status uses for them.
// Must not know: images, volumes or virtio (the target is opened by the VM; the worker applies the
// policy).
#pragma once

#include <functional>
#include <string>

#include "common/status.h"

namespace minihv {

enum class DiskErrorAction {
  kStop,    // the request waits unanswered, the VM pauses; `resume` retries it (QEMU's werror=stop)
  kReport,  // the guest gets VIRTIO_BLK_S_IOERR
};

struct DiskSpec {
  std::string target;  // an image path or VOLUME:DISK, as given before any ",on-error="
  DiskErrorAction on_error = DiskErrorAction::kStop;
};

// Parses one `--disk` value. A text that names an existing file is that file, commas and all;
// otherwise a last field `,on-error=VALUE` is the option (a bad VALUE is refused) and the rest the
// target. A path with a comma but no ",on-error=" is taken whole, as before the option existed.
Result<DiskSpec> parse_disk_spec(const std::string& text);

// The kernel's answers (positive errno) that stop a VM under on-error=stop: a full filesystem, a
// quota, a failing device. Everything else (and what the lease gate refuses) is reported.
bool stops_on_error(int err);

// Given to a disk with on-error=stop: called once per stop, from the disk's I/O thread, with why
// (e.g. "disk error: /img: No space left on device"). It must not block on the disk.
using DiskStopFn = std::function<void(const std::string& reason)>;

// What a disk device does with a read or write the kernel failed with a stops_on_error() errno.
struct DiskErrorPolicy {
  DiskErrorAction action = DiskErrorAction::kReport;
  DiskStopFn on_stop;  // kStop: told each time the disk stops (may be empty in tests)
};

}  // namespace minihv
