// Volume: the cluster configuration area — two copies, the newest valid generation wins, so a
// write torn half-way leaves the previous configuration readable.
#include <xxhash.h>

#include <cstring>

#include "blockdev/disk_record.h"
#include "blockdev/volume.h"
#include "common/json_text.h"

namespace minihv::blockdev {

namespace {

struct Copy {
  bool valid = false;
  ConfigHeader header;
  std::string json;
};

Result<Copy> read_copy(Device& dev, const Geometry& g, const Uuid& uuid, unsigned c) {
  Copy out;
  Block h;
  const uint64_t off = g.config_copy(c);
  MINIHV_TRY(dev.read(off, h.span()));
  if (check_record(h, RecordKind::kConfig, block_index(off), uuid) != RecordCheck::kOk) return out;
  out.header = decode_config_header(h);
  const uint64_t max = uint64_t{g.config_copy_blocks - 1} * kBlockSize;
  if (out.header.generation == 0 || out.header.length > max) return out;
  AlignedBuffer buf(out.header.length);
  if (out.header.length) MINIHV_TRY(dev.read(off + kBlockSize, buf.span()));
  if (XXH3_64bits(buf.data(), out.header.length) != out.header.payload_hash) return out;
  out.json.assign(reinterpret_cast<const char*>(buf.data()), out.header.length);
  out.valid = true;
  return out;
}

}  // namespace

Result<Volume::Config> Volume::read_config() {
  Config best;
  for (unsigned c = 0; c < 2; ++c) {
    auto copy = read_copy(*dev_, sb_.geo, sb_.uuid, c);
    if (!copy) return copy.status();
    if (!copy->valid || copy->header.generation <= best.generation) continue;
    auto doc = nlohmann::json::parse(copy->json, nullptr, false);
    if (doc.is_discarded()) continue;
    best.generation = copy->header.generation;
    best.doc = std::move(doc);
  }
  return best;
}

Status Volume::write_config(const nlohmann::json& doc, const Lease& admin) {
  if (admin.slot().offset != sb_.geo.admin_lease) return Status::error("writing the cluster configuration needs the admin lease");
  Copy copies[2];
  for (unsigned c = 0; c < 2; ++c) {
    auto copy = read_copy(*dev_, sb_.geo, sb_.uuid, c);
    if (!copy) return copy.status();
    copies[c] = std::move(*copy);
  }
  // Overwrite the older (or invalid) copy; the newer one stays intact until this one is complete.
  const unsigned newer = copies[1].valid && (!copies[0].valid || copies[1].header.generation > copies[0].header.generation);
  const unsigned target = 1 - newer;
  const std::string text = json_text(doc);
  if (text.size() > uint64_t{sb_.geo.config_copy_blocks - 1} * kBlockSize)
    return Status::invalid("cluster configuration too large (" + std::to_string(text.size()) + " bytes)");
  ConfigHeader h;
  h.generation = std::max(copies[0].valid ? copies[0].header.generation : 0,
                          copies[1].valid ? copies[1].header.generation : 0) + 1;
  h.length = text.size();
  h.payload_hash = XXH3_64bits(text.data(), text.size());
  AlignedBuffer buf(text.size());
  std::memset(buf.data(), 0, buf.size());
  std::memcpy(buf.data(), text.data(), text.size());
  const uint64_t off = sb_.geo.config_copy(target);
  if (!admin.valid()) return Status::error("the admin lease expired; configuration not written");
  if (buf.size()) MINIHV_TRY(dev_->write(off + kBlockSize, buf.span()));
  Block hb;
  encode_config_header(h, hb, off, sb_.uuid);
  if (!admin.valid()) return Status::error("the admin lease expired; configuration not written");
  return dev_->write(off, hb.span());
}

}  // namespace minihv::blockdev
