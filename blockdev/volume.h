// blockdev/volume.h — the shared volume: minihv's stand-in for a Cluster Shared Volume.
//
// Owns: the on-disk format (layout.h, record.h), formatting, the disk table (name -> extent),
// the cluster configuration area, and delta leases for nodes, VMs/disks and administration
// (lease.h, lease_keeper.h); attaching a disk for a VM (disk_attach.h).
// Must not know: KVM, virtio, guests, the cluster's policies (cluster/ stores its state here).
// Every node opens the same device at once; every record is 4 KiB, aligned and checksummed, and a
// record that fails its checks is reported, never trusted.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "blockdev/clock.h"
#include "blockdev/device.h"
#include "blockdev/layout.h"
#include "blockdev/lease.h"

namespace minihv::blockdev {

struct FormatOptions {
  uint64_t size = 0;        // 0: keep the size of the existing file or device
  std::string cluster;
  bool force = false;       // overwrite a volume or a non-empty file
  // Called when `force` is about to destroy a volume nobody live holds a lease on, before anything
  // is written; a failed Status leaves everything as it was (the CLI asks the user here).
  std::function<Status()> confirm;
  LeaseTimings timings;
  std::string created_by;   // empty: default_owner()
};

struct DiskEntry {
  uint32_t slot = 0;        // disk-table index; VM lease slot `slot` guards it
  std::string name;
  uint64_t offset = 0, size = 0;
  int64_t created_unix_ms = 0;
};

// One disk-table slot as read (inspect shows damaged slots too).
struct DiskSlot {
  uint32_t slot = 0;
  RecordCheck check = RecordCheck::kBlank;
  std::optional<DiskEntry> disk;  // set when the record is ok and in use
  std::string problem;            // kInvalid: which rule the record breaks
  // What a damaged record says (when it can be decoded): never used, but whatever part of its
  // extent lies in the data area is never given to a new disk (it may still be someone's).
  std::optional<DiskEntry> untrusted;
};

class Volume {
public:
  // Formats a file (created or grown to options.size) or a block device at `path`.
  static Status format(const std::string& path, const FormatOptions& options);
  // Formats any device (tests: memory); refuses a device that holds a volume unless forced.
  static Status format_device(Device& dev, const FormatOptions& options, Clock& clock);
  // Opens a volume; the device must outlive the Volume when borrowed.
  static Result<std::unique_ptr<Volume>> open(const std::string& path, bool writable,
                                              Clock& clock = system_clock());
  static Result<std::unique_ptr<Volume>> open_device(std::shared_ptr<Device> dev, Clock& clock);
  // Whether `path` is a file or device that starts with a volume superblock (any checksum).
  static bool looks_like_volume(const std::string& path);

  const Superblock& super() const { return sb_; }
  const Geometry& geometry() const { return sb_.geo; }
  Device& device() { return *dev_; }
  Clock& clock() { return clock_; }

  // --- leases ---
  LeaseSlot admin_slot() const;
  Result<LeaseSlot> node_slot(uint32_t host_id) const;  // 1..kNodeSlots
  Result<LeaseSlot> vm_slot(uint32_t slot, const std::string& resource) const;
  LeaseSlot disk_slot(const DiskEntry& d) const;
  std::vector<LeaseSlot> all_lease_slots() const;  // admin, every node slot, every VM slot
  Result<LeaseRead> read_lease(const LeaseSlot& slot);
  Result<std::unique_ptr<Lease>> acquire(const LeaseSlot& slot, const std::string& owner,
                                         AcquireOptions opts = {});

  // --- disk table (create/remove take the admin lease themselves) ---
  Result<std::vector<DiskSlot>> read_disk_table();
  Result<std::vector<DiskEntry>> list_disks();
  Result<DiskEntry> find_disk(const std::string& name);
  Result<DiskEntry> create_disk(const std::string& name, uint64_t size, const std::string& owner);
  // Refused while the disk's lease is held by a live holder.
  Status remove_disk(const std::string& name, const std::string& owner);

  // --- cluster configuration (JSON; the writer must hold the admin lease) ---
  struct Config {
    uint64_t generation = 0;  // 0: never written
    nlohmann::json doc = nlohmann::json::object();
  };
  Result<Config> read_config();
  Status write_config(const nlohmann::json& doc, const Lease& admin);

  // "disk web held by host/pid 42 (since ..., renewed 3 ms ago)" for every lease whose holder is
  // alive: its record changes within the dead timeout. Watches up to `dead` when anything is held.
  Result<std::vector<std::string>> live_holders();

  // Everything `minihv volume inspect` shows, including who holds which lease and since when.
  Result<nlohmann::json> inspect();
  // Why block 0's superblock was not used (the second copy was), or "".
  const std::string& super_note() const { return super_note_; }

private:
  Volume(std::shared_ptr<Device> dev, Clock& clock, Superblock sb)
      : dev_(std::move(dev)), clock_(clock), sb_(std::move(sb)) {}
  // Writes a new, empty volume over `dev` (the checks are the caller's).
  static Status write_volume(Device& dev, const FormatOptions& o, Clock& clock);
  Status write_disk_record(uint32_t slot, const DiskEntry* entry, const Lease& admin);
  Result<uint64_t> allocate_extent(const std::vector<DiskSlot>& table, uint64_t size) const;
  DiskSlot read_disk_slot(const Block& b, uint32_t slot) const;
  std::string entry_problem(const DiskEntry& e) const;
  static void refuse_overlaps(std::vector<DiskSlot>& table);
  Result<std::unique_ptr<Lease>> acquire_admin(const std::string& owner);

  static Result<Superblock> read_super_copy(Device& dev);
  // The second copy's state as `inspect` shows it: "ok", blank, torn, ... or that it differs.
  std::string super_copy_state();

  std::shared_ptr<Device> dev_;
  Clock& clock_;
  Superblock sb_;
  std::string super_note_;
};

}  // namespace minihv::blockdev
