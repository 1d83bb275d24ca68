// Vm: the OFD locks of raw disk images (vmm/devices/image_lock.h) and their hand-over in a migration.
#include <condition_variable>

#include "common/log.h"
#include "vmm/vm.h"

namespace minihv {

namespace {

// How often a destination tries again for a lock its source still holds: the source lets go right
// after the ACK, so the first retry or two usually succeed.
constexpr auto kImageLockRetry = std::chrono::milliseconds(10);

}  // namespace

// Writable images are locked for writing, read-only ones for reading. An incoming VM opens them
// without the lock: its source holds it until the ACK (acquire_image_locks()).
Status Vm::lock_image(const BlockBackend& backend, const std::string& path) {
  auto lock = ImageLock::on(backend.fd(), backend.read_only() ? ImageLockMode::kRead : ImageLockMode::kWrite, path);
  if (!lock) return lock.status();
  if (!incoming_) MINIHV_TRY(lock->acquire());
  std::lock_guard guard(image_locks_mu_);
  image_locks_.push_back(std::move(lock).value());
  return Status::ok();
}

void Vm::release_image_locks() {
  std::lock_guard guard(image_locks_mu_);
  image_locks_released_ = true;
  for (ImageLock& l : image_locks_) l.release();
}

void Vm::acquire_image_locks(std::chrono::milliseconds patience) {
  image_lock_waiter_ = std::jthread([this, patience](std::stop_token stop) { wait_for_image_locks(stop, patience); });
}

void Vm::wait_for_image_locks(std::stop_token stop, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  std::mutex m;
  std::condition_variable_any wake;  // only a stop request wakes it early
  while (!try_image_locks(std::chrono::steady_clock::now() >= deadline)) {
    std::unique_lock lock(m);
    (void)wake.wait_for(lock, stop, kImageLockRetry, [] { return false; });
    if (stop.stop_requested()) return;
  }
}

// Tries every lock not held yet; true when nothing is left to try. On the last try, warns for each
// lock still refused, naming its holder.
bool Vm::try_image_locks(bool last_try) {
  std::lock_guard guard(image_locks_mu_);
  if (image_locks_released_) return true;  // handed over again meanwhile
  bool all = true;
  for (ImageLock& l : image_locks_) {
    Status st = l.acquire();
    if (st) continue;
    all = false;
    if (last_try)
      LOG_WARN("disk %s: the image lock is still refused after the migration (%s); the VM runs here without it",
               l.path().c_str(), st.message().c_str());
  }
  return all || last_try;
}

}  // namespace minihv
