#include "blockdev/lease_record.h"

#include "blockdev/layout.h"

namespace minihv::blockdev {

namespace {
constexpr size_t kState = 32, kGeneration = 40, kNonce = 48, kCounter = 56, kAcquired = 64,
                 kRenewed = 72, kOwner = 80, kResource = 144;
// Fields no minihv writes (a state other than free or held, an owner or resource that is not
// printable text) make a record with a good checksum invalid: it is then treated like a damaged
// one — held by someone unknown until it stands still for `dead` — and never shown as text.
bool fields_valid(const Block& b) {
  Block copy = b;
  RecordView v(copy);
  const uint32_t state = v.u32(kState);
  return (state == static_cast<uint32_t>(LeaseState::kFree) || state == static_cast<uint32_t>(LeaseState::kHeld)) &&
         printable(v.str(kOwner)) && printable(v.str(kResource));
}

}  // namespace

void LeaseRecord::encode(Block& b, uint64_t offset, const Uuid& uuid) const {
  b = Block{};
  RecordView v(b);
  v.put_u32(kState, static_cast<uint32_t>(state));
  v.put_u64(kGeneration, generation);
  v.put_u64(kNonce, nonce);
  v.put_u64(kCounter, counter);
  v.put_u64(kAcquired, static_cast<uint64_t>(acquired_unix_ms));
  v.put_u64(kRenewed, static_cast<uint64_t>(renewed_unix_ms));
  v.put_str(kOwner, owner);
  v.put_str(kResource, resource);
  seal_record(b, RecordKind::kLease, block_index(offset), uuid);
}

LeaseRecord LeaseRecord::decode(const Block& b) {
  Block copy = b;
  RecordView v(copy);
  LeaseRecord r;
  r.state = v.u32(kState) == 1 ? LeaseState::kHeld : LeaseState::kFree;
  r.generation = v.u64(kGeneration);
  r.nonce = v.u64(kNonce);
  r.counter = v.u64(kCounter);
  r.acquired_unix_ms = static_cast<int64_t>(v.u64(kAcquired));
  r.renewed_unix_ms = static_cast<int64_t>(v.u64(kRenewed));
  r.owner = v.str(kOwner);
  r.resource = v.str(kResource);
  return r;
}

Result<LeaseRead> read_lease(Device& dev, const Uuid& uuid, uint64_t offset) {
  LeaseRead r;
  MINIHV_TRY(dev.read(offset, r.raw.span()));
  r.check = check_record(r.raw, RecordKind::kLease, block_index(offset), uuid);
  if (r.ok() && !fields_valid(r.raw)) r.check = RecordCheck::kInvalid;
  if (r.ok()) r.rec = LeaseRecord::decode(r.raw);
  return r;
}

}  // namespace minihv::blockdev
