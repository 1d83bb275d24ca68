// blockdev/disk_attach.h — a volume disk attached to a VM: `minihv run --disk VOLUME:DISK`.
//
// Attaching opens the volume, finds the disk, takes its VM lease (refused, naming the holder,
// while another live process holds it), and keeps renewing it until release. The VM's block
// device gets the disk's extent of the volume (opened O_DIRECT) and a write gate that it must
// ask before every write submission; `on_lost` runs when the lease is lost so the VM can end.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "blockdev/fence.h"
#include "blockdev/lease_keeper.h"
#include "blockdev/volume.h"
#include "common/fd.h"

namespace minihv::blockdev {

struct VolumeDiskSpec {
  std::string volume;  // path of the volume
  std::string disk;    // disk name
};

// "VOLUME:DISK" when the text before the last ':' is a minihv volume and the whole text is not
// an existing file; nullopt for anything else (a plain image path).
std::optional<VolumeDiskSpec> parse_volume_disk(const std::string& text);
// "VOLUME:DISK" split at the last ':', the volume not looked at (nullopt without a ':' inside).
std::optional<VolumeDiskSpec> split_volume_disk(const std::string& text);

class VolumeDisk {
public:
  static Result<std::unique_ptr<VolumeDisk>> attach(const VolumeDiskSpec& spec, const std::string& owner,
                                                    LeaseKeeper::LostFn on_lost);
  // For a VM arriving by live migration: the disk is opened but its lease stays with the source
  // until acquire(); until then the write gate is shut.
  static Result<std::unique_ptr<VolumeDisk>> open_without_lease(const VolumeDiskSpec& spec, const std::string& owner,
                                                                LeaseKeeper::LostFn on_lost);
  // For a VM of a cluster node: the node holds the disk's lease and says through `fence` until when
  // this process may write; nothing here takes or renews a lease.
  static Result<std::unique_ptr<VolumeDisk>> open_fenced(const VolumeDiskSpec& spec, std::shared_ptr<const Fence> fence);
  // The same with the disk's extent opened by the node (`extent_fd`, a loop device over it:
  // blockdev/extent_device.h): the volume is not opened here at all; the fd is dup()ed.
  static Result<std::unique_ptr<VolumeDisk>> open_fenced_extent(const VolumeDiskSpec& spec,
                                                                std::shared_ptr<const Fence> fence, int extent_fd);
  // Takes the lease, retrying while its holder (the migration source, which releases it once it
  // has handed the VM over) still has it; a holder that died instead loses it after `dead`.
  // Fenced: nothing to take (the node holds the lease; the caller waits for the fence to open).
  // With a hand-over expected (expect_hand_over), it first waits for the source to hand the lease
  // over and adopts it; a source that released it instead, or a hand-over later than `fail` after
  // the ACK, gets the lease taken as above.
  Status acquire(std::chrono::milliseconds timeout);
  bool holds_lease() const { return keeper_ != nullptr; }
  // A live move's lease hand-over (migrate/frames.h, ACK). Destination: whether this disk's lease
  // is ours to take (a volume disk, not fenced), and the nonce the source is to hand it over with;
  // `asked_at`: now, before the ACK that carries the nonce goes out.
  bool takes_own_lease() const;
  uint64_t expect_hand_over();
  const std::string& owner() const { return owner_; }
  // Source: hands the lease to the destination's `owner` with its `nonce` instead of releasing it
  // (writes stop at once). Without a lease (fenced): nothing to do.
  Status hand_over(const std::string& owner, uint64_t nonce);
  ~VolumeDisk();  // releases the lease
  VolumeDisk(const VolumeDisk&) = delete;
  VolumeDisk& operator=(const VolumeDisk&) = delete;

  // The volume (or the node's extent device) opened for the disk's data: O_DIRECT, not O_DSYNC (a
  // guest FLUSH is fdatasync).
  Result<UniqueFd> open_data_fd() const;
  uint64_t offset() const { return disk_.offset; }
  uint64_t length() const { return disk_.size; }
  std::string name() const { return spec_.volume + ":" + spec_.disk; }
  // True while the lease is provably current (monotonic clock); every write must ask first.
  std::function<bool()> write_gate() const;
  // Stops renewing and marks the lease free; call once the device's I/O has drained.
  Status release();

private:
  VolumeDisk() = default;
  struct Gate;  // the current lease validity, swapped in by acquire()
  VolumeDiskSpec spec_;
  std::string owner_;
  LeaseKeeper::LostFn on_lost_;
  std::shared_ptr<Gate> gate_;
  DiskEntry disk_;
  std::unique_ptr<Volume> volume_;  // null with an extent fd
  UniqueFd extent_;                  // the node's extent device: the data is there, from byte 0
  std::unique_ptr<LeaseKeeper> keeper_;
  bool released_ = false;
  struct Expected { uint64_t nonce = 0; Nanos asked_at{}; };
  std::optional<Expected> expected_;  // a hand-over the destination waits for

  void keep(std::unique_ptr<Lease> lease);  // renew it from now on, and open the write gate
  bool adopt_handed_over();                 // the expected hand-over, if it has landed in time
};

}  // namespace minihv::blockdev
