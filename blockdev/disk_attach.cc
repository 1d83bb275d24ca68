#include "blockdev/disk_attach.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <mutex>
#include <thread>

#include "blockdev/extent_device.h"
#include "common/log.h"

namespace minihv::blockdev {

namespace {

// How often a destination reads the lease record while it waits for the source's hand-over.
constexpr auto kHandOverPoll = std::chrono::milliseconds(2);

// A close-on-exec duplicate of `fd`; `what` names it in the error.
Result<UniqueFd> dup_cloexec(int fd, const std::string& what) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) return Status::from_errno(what);
  return copy;
}

}  // namespace

std::optional<VolumeDiskSpec> split_volume_disk(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  return VolumeDiskSpec{text.substr(0, colon), text.substr(colon + 1)};
}

std::optional<VolumeDiskSpec> parse_volume_disk(const std::string& text) {
  struct stat st {};
  if (::stat(text.c_str(), &st) == 0) return std::nullopt;  // an existing image, colon or not
  auto spec = split_volume_disk(text);
  if (!spec || !Volume::looks_like_volume(spec->volume)) return std::nullopt;
  return spec;
}

struct VolumeDisk::Gate {
  std::mutex mu;
  std::shared_ptr<const LeaseValidity> validity;  // null: no lease yet, no writes
  std::shared_ptr<const Fence> fence;             // set: the node's lease decides instead
};

Result<std::unique_ptr<VolumeDisk>> VolumeDisk::open_without_lease(const VolumeDiskSpec& spec, const std::string& owner,
                                                                   LeaseKeeper::LostFn on_lost) {
  std::unique_ptr<VolumeDisk> d(new VolumeDisk);
  d->spec_ = spec;
  d->owner_ = owner;
  d->on_lost_ = std::move(on_lost);
  d->gate_ = std::make_shared<Gate>();
  auto vol = Volume::open(spec.volume, true);
  if (!vol) return vol.status();
  d->volume_ = std::move(*vol);
  auto disk = d->volume_->find_disk(spec.disk);
  if (!disk) return disk.status();
  d->disk_ = *disk;
  return d;
}

Result<std::unique_ptr<VolumeDisk>> VolumeDisk::attach(const VolumeDiskSpec& spec, const std::string& owner,
                                                       LeaseKeeper::LostFn on_lost) {
  auto d = open_without_lease(spec, owner, std::move(on_lost));
  if (!d) return d.status();
  MINIHV_TRY((*d)->acquire(std::chrono::milliseconds(0)));
  return d;
}

Result<std::unique_ptr<VolumeDisk>> VolumeDisk::open_fenced(const VolumeDiskSpec& spec,
                                                            std::shared_ptr<const Fence> fence) {
  auto d = open_without_lease(spec, "fenced", nullptr);
  if (!d) return d.status();
  (*d)->gate_->fence = std::move(fence);
  return d;
}

Result<std::unique_ptr<VolumeDisk>> VolumeDisk::open_fenced_extent(const VolumeDiskSpec& spec,
                                                                   std::shared_ptr<const Fence> fence, int extent_fd) {
  std::unique_ptr<VolumeDisk> d(new VolumeDisk);
  d->spec_ = spec;
  d->owner_ = "fenced";
  d->gate_ = std::make_shared<Gate>();
  d->gate_->fence = std::move(fence);
  auto extent = dup_cloexec(extent_fd, "disk " + spec.disk + ": the node's extent fd " + std::to_string(extent_fd));
  if (!extent) return extent.status();
  d->extent_ = std::move(*extent);
  auto size = device_size(d->extent_.get());
  if (!size) return size.status().context("disk " + spec.disk + ": the node's extent device");
  d->disk_.size = *size;  // offset 0: the device starts where the extent does
  return d;
}

void VolumeDisk::keep(std::unique_ptr<Lease> lease) {
  keeper_ = std::make_unique<LeaseKeeper>(std::move(lease), on_lost_);
  std::lock_guard lock(gate_->mu);
  gate_->validity = keeper_->validity();
}

bool VolumeDisk::takes_own_lease() const { return !gate_->fence && volume_ && !keeper_; }

uint64_t VolumeDisk::expect_hand_over() {
  expected_ = Expected{new_lease_nonce(), volume_->clock().now()};
  return expected_->nonce;
}

bool VolumeDisk::adopt_handed_over() {
  const Expected e = *expected_;
  auto lease = adopt_lease(volume_->device(), volume_->clock(), volume_->super().uuid, volume_->disk_slot(disk_),
                           volume_->super().timings, owner_, e.nonce, e.asked_at);
  if (!lease) return false;
  LOG_INFO("disk %s: lease handed over (%s)", name().c_str(), owner_.c_str());
  keep(std::move(*lease));
  return true;
}

Status VolumeDisk::hand_over(const std::string& owner, uint64_t nonce) {
  if (!keeper_ || released_) return Status::ok();
  released_ = true;  // the record is the destination's now: nothing of ours to release
  return keeper_->hand_over(owner, nonce).context("disk " + name() + ": handing the lease over");
}

Status VolumeDisk::acquire(std::chrono::milliseconds timeout) {
  if (keeper_) return Status::ok();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Fenced: there is no lease to take here; the VM waits for its node's fence before it runs
  // (cli/run.cc), and every write asks the fence.
  if (gate_->fence) return Status::ok();
  // A hand-over lands within milliseconds of the ACK; one that has not within `fail` of it cannot
  // be adopted any more (adopt_lease) — then, or when the source released the lease instead (a
  // lost ACK settled by asking), the lease is taken over below.
  if (expected_) {
    const Nanos until = expected_->asked_at + volume_->super().timings.fail;
    for (;;) {
      if (adopt_handed_over()) return Status::ok();
      if (volume_->clock().now() >= until) break;
      std::this_thread::sleep_for(kHandOverPoll);
    }
    LOG_WARN("disk %s: the source did not hand the lease over in time: taking it over", name().c_str());
  }
  // Waiting (an incoming migration: the source lets go after its ACK): watch the holder until it
  // releases or its record stands still for `dead` after its last change; only a holder that keeps
  // renewing for `timeout` is refused. Not waiting: a live holder is refused at once.
  AcquireOptions o;
  if (timeout.count() > 0) {
    o.wait_for_live_holder = true;
    o.max_wait = timeout;
  }
  for (;;) {
    auto lease = volume_->acquire(volume_->disk_slot(disk_), owner_, o);
    if (lease) {
      LOG_INFO("disk %s: lease taken (%s)", name().c_str(), owner_.c_str());
      keep(std::move(*lease));
      return Status::ok();
    }
    if (std::chrono::steady_clock::now() >= deadline) return lease.status();  // after a lost race only
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

VolumeDisk::~VolumeDisk() {
  if (Status s = release(); !s) LOG_WARN("disk %s: %s", name().c_str(), s.message().c_str());
}

Result<UniqueFd> VolumeDisk::open_data_fd() const {
  if (extent_.valid()) return dup_cloexec(extent_.get(), "disk " + spec_.disk + ": dup of the extent fd");
  UniqueFd fd(::open(spec_.volume.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno(spec_.volume + ": open for disk " + spec_.disk);
  return fd;
}

std::function<bool()> VolumeDisk::write_gate() const {
  if (gate_->fence)
    return [f = gate_->fence, &clock = volume_ ? volume_->clock() : system_clock()] { return f->may_write(clock); };
  return [g = gate_] {
    std::lock_guard lock(g->mu);
    return g->validity && g->validity->may_write();
  };
}

Status VolumeDisk::release() {
  if (released_ || !keeper_) return Status::ok();
  released_ = true;
  Status s = keeper_->release();
  if (s) LOG_INFO("disk %s: lease released", name().c_str());
  return s;
}

}  // namespace minihv::blockdev
