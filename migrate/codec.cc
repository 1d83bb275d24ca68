// Page encoder (sender) and batch decoder (receiver). Wire layout of a record: protocol.h.
#include "migrate/codec.h"

#include <lz4.h>
#include <xxhash.h>

#include <chrono>
#include <cstring>

#include "migrate/wire.h"

namespace minihv::migrate {

namespace {

uint64_t zero_page_digest() {
  static const uint64_t digest = [] {
    static const uint8_t zeros[kPageSize] = {};
    return XXH3_64bits(zeros, kPageSize);
  }();
  return digest;
}

void put_record_header(uint8_t* at, uint64_t gpa, PageKind kind, uint16_t length) {
  wire::store<uint64_t>(at, gpa);
  at[8] = static_cast<uint8_t>(kind);
  at[9] = 0;
  wire::store<uint16_t>(at + 10, length);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string_view compression_name(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kLz4: return "lz4";
    case Compression::kAuto: return "auto";
  }
  return "?";
}

Result<Compression> parse_compression(std::string_view s) {
  if (s == "none") return Compression::kNone;
  if (s == "lz4") return Compression::kLz4;
  if (s == "auto") return Compression::kAuto;
  return Status::invalid("--compress must be auto, lz4 or none, not '" + std::string(s) + "'");
}

void CodecStats::add(const CodecStats& o) {
  zero += o.zero;
  unchanged += o.unchanged;
  lz4 += o.lz4;
  raw += o.raw;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  hashed += o.hashed;
  hash_hits += o.hash_hits;
  lz4_tried += o.lz4_tried;
}

CodecStats CodecStats::minus(const CodecStats& e) const {
  CodecStats d;
  d.zero = zero - e.zero;
  d.unchanged = unchanged - e.unchanged;
  d.lz4 = lz4 - e.lz4;
  d.raw = raw - e.raw;
  d.bytes_in = bytes_in - e.bytes_in;
  d.bytes_out = bytes_out - e.bytes_out;
  d.hashed = hashed - e.hashed;
  d.hash_hits = hash_hits - e.hash_hits;
  d.lz4_tried = lz4_tried - e.lz4_tried;
  return d;
}

bool is_zero_page(const uint8_t* page) {
  // Eight independent lanes let the compiler vectorise; the early exit per 256 bytes keeps non-zero
  // pages cheap.
  constexpr size_t kBlock = 256;
  for (size_t off = 0; off < kPageSize; off += kBlock) {
    uint64_t acc = 0;
    for (size_t i = 0; i < kBlock; i += sizeof(uint64_t)) acc |= wire::load<uint64_t>(page + off + i);
    if (acc) return false;
  }
  return true;
}

// ---- hash table ----

PageHashTable::PageHashTable(std::span<const MemoryRegion> ram) {
  size_t pages = 0;
  for (const auto& r : ram) {
    ranges_.push_back({r.gpa, r.size, pages});
    pages += r.size >> kPageShift;
  }
  digests_.assign(pages, 0);
}

uint64_t* PageHashTable::slot(uint64_t gpa) {
  for (const auto& r : ranges_)
    if (gpa >= r.gpa && gpa - r.gpa < r.size) return &digests_[r.first + ((gpa - r.gpa) >> kPageShift)];
  return nullptr;
}

void PageHashTable::clear() { std::fill(digests_.begin(), digests_.end(), 0); }

// ---- compression chooser ----

namespace {
void smooth(double& avg, double sample, double weight) { avg = avg == 0 ? sample : avg + weight * (sample - avg); }
}  // namespace

void CompressionChooser::observe_link(uint64_t bytes, double seconds) {
  if (bytes == 0 || seconds <= 0) return;
  smooth(link_bps_, bytes / seconds, kSmoothing);
}

void CompressionChooser::observe_codec(uint64_t in, uint64_t out, double seconds) {
  if (in == 0 || seconds <= 0) return;
  smooth(codec_bps_, in / seconds, kSmoothing);
  double r = static_cast<double>(out) / static_cast<double>(in);
  ratio_ = ratio_ == 1.0 ? r : ratio_ + kSmoothing * (r - ratio_);
}

Compression CompressionChooser::choose() const {
  if (link_bps_ <= 0 || codec_bps_ <= 0) return Compression::kLz4;
  double t_none = 1.0 / link_bps_;
  double t_lz4 = 1.0 / codec_bps_ + ratio_ / link_bps_;
  return t_lz4 < t_none * (1.0 - kMargin) ? Compression::kLz4 : Compression::kNone;
}

// ---- encoder ----

PageBatchEncoder::PageBatchEncoder(EncoderOptions options, PageHashTable* hashes, CompressionChooser* chooser)
    : options_(options), hashes_(hashes), chooser_(chooser) {
  begin_batch();
}

void PageBatchEncoder::begin_batch() {
  // Room for one more worst-case record past the target, so the buffer never reallocates.
  builder_.begin(FrameType::kPages, 0, options_.target_batch_bytes + kRecordHeaderSize + kPageSize);
  records_ = pages_in_batch_ = 0;
  zero_run_at_.reset();
  codec_seconds_ = 0;
  codec_in_ = codec_out_ = 0;
  choose_mode();
}

void PageBatchEncoder::choose_mode() {
  switch (options_.compression) {
    case Compression::kNone: batch_mode_ = Compression::kNone; break;
    case Compression::kLz4: batch_mode_ = Compression::kLz4; break;
    case Compression::kAuto:
      batch_mode_ = chooser_ ? chooser_->choose() : Compression::kLz4;
      if (batch_mode_ == Compression::kNone && options_.probe_every && batches_ % options_.probe_every == 0)
        batch_mode_ = Compression::kLz4;
      break;
  }
}

void PageBatchEncoder::close_zero_run() { zero_run_at_.reset(); }

bool PageBatchEncoder::full() const {
  return builder_.payload_size() + kRecordHeaderSize + kPageSize > options_.target_batch_bytes;
}

Result<PageOutcome> PageBatchEncoder::add(uint64_t gpa, const uint8_t* page) {
  // The zero check first: it stops at the first non-zero 256 bytes, and a zero page needs no hash.
  return add_page(gpa, page, is_zero_page(page));
}

Result<PageOutcome> PageBatchEncoder::add_known_zero(uint64_t gpa) { return add_page(gpa, nullptr, true); }

Result<PageOutcome> PageBatchEncoder::add_page(uint64_t gpa, const uint8_t* page, bool zero) {
  if (gpa & (kPageSize - 1)) return Status::error("page address " + std::to_string(gpa) + " is not 4 KiB aligned");
  stats_.bytes_in += kPageSize;
  uint64_t* slot = hashes_ ? hashes_->slot(gpa) : nullptr;
  const bool hash = slot && (zero || hash_all_ || ((gpa >> kPageShift) % kHashSampleEvery) == 0);
  if (slot && !hash) *slot = 0;  // sent unhashed: its old digest must never match again
  if (zero) {
    if (hash && !record_digest(slot, zero_page_digest(), false)) return PageOutcome::kUnchanged;
    return add_zero(gpa);
  }
  // Zero-copy: sent straight from guest memory. Only when no digest is kept, or the VM is paused
  // (the bytes hashed are then the bytes sent).
  if (options_.zero_copy && batch_mode_ == Compression::kNone && (!hash || paused_)) {
    if (hash && !record_digest(slot, XXH3_64bits(page, kPageSize), true)) return PageOutcome::kUnchanged;
    raw_.emplace_back(gpa, page);
    ++stats_.raw;
    stats_.bytes_out += sizeof(uint64_t) + kPageSize;
    return PageOutcome::kRaw;
  }
  // The guest runs: the bytes hashed must be the bytes sent, or a digest could describe bytes never
  // sent, and a later write back to them would pass as "unchanged" for good. So the page is copied
  // once — into the batch (raw) or the snapshot (lz4) — and hashed and sent from that copy.
  const size_t record_at = builder_.payload_size();
  const uint8_t* copy = snapshot_.bytes;
  if (batch_mode_ == Compression::kLz4) {
    std::memcpy(snapshot_.bytes, page, kPageSize);
  } else {
    uint8_t* data = builder_.extend(kRecordHeaderSize + kPageSize) + kRecordHeaderSize;
    std::memcpy(data, page, kPageSize);
    copy = data;
  }
  if (hash && !record_digest(slot, XXH3_64bits(copy, kPageSize), true)) {
    builder_.shrink_to(record_at);
    return PageOutcome::kUnchanged;
  }
  ++pages_in_batch_;
  close_zero_run();
  ++records_;
  if (batch_mode_ == Compression::kLz4 && add_lz4(gpa, copy)) return PageOutcome::kLz4;
  if (batch_mode_ == Compression::kLz4) {  // did not pay: send it raw, from the snapshot
    uint8_t* data = builder_.extend(kRecordHeaderSize + kPageSize) + kRecordHeaderSize;
    std::memcpy(data, copy, kPageSize);
  }
  put_record_header(builder_.payload_at(record_at), gpa, PageKind::kRaw, kPageSize);
  ++stats_.raw;
  stats_.bytes_out += kRecordHeaderSize + kPageSize;
  return PageOutcome::kRaw;
}

bool PageBatchEncoder::record_digest(uint64_t* slot, uint64_t digest, bool counted) {
  if (counted) ++stats_.hashed;
  if (*slot == digest && digest != 0) {
    ++stats_.unchanged;
    if (counted) ++stats_.hash_hits;
    return false;
  }
  *slot = digest;
  return true;
}

PageOutcome PageBatchEncoder::add_zero(uint64_t gpa) {
  ++pages_in_batch_;
  ++stats_.zero;
  if (zero_run_at_ && zero_run_len_ < kMaxZeroRun && gpa == zero_run_gpa_ + uint64_t{zero_run_len_} * kPageSize) {
    ++zero_run_len_;
    wire::store<uint16_t>(builder_.payload_at(*zero_run_at_ + 10), zero_run_len_);
    return PageOutcome::kZero;
  }
  zero_run_at_ = builder_.payload_size();
  zero_run_gpa_ = gpa;
  zero_run_len_ = 1;
  put_record_header(builder_.extend(kRecordHeaderSize), gpa, PageKind::kZero, 1);
  ++records_;
  stats_.bytes_out += kRecordHeaderSize;
  return PageOutcome::kZero;
}

bool PageBatchEncoder::add_lz4(uint64_t gpa, const uint8_t* page) {
  const size_t record_at = builder_.payload_size();
  builder_.extend(kRecordHeaderSize);
  char* dst = reinterpret_cast<char*>(builder_.extend(kLz4MaxBytes));
  ++stats_.lz4_tried;
  auto t0 = std::chrono::steady_clock::now();
  int n = LZ4_compress_default(reinterpret_cast<const char*>(page), dst, kPageSize, kLz4MaxBytes);
  codec_seconds_ += seconds_since(t0);
  codec_in_ += kPageSize;
  if (n <= 0) {
    codec_out_ += kRecordHeaderSize + kPageSize;
    builder_.shrink_to(record_at);
    return false;
  }
  builder_.shrink_to(record_at + kRecordHeaderSize + n);
  put_record_header(builder_.payload_at(record_at), gpa, PageKind::kLz4, static_cast<uint16_t>(n));
  ++stats_.lz4;
  stats_.bytes_out += kRecordHeaderSize + n;
  codec_out_ += kRecordHeaderSize + n;
  return true;
}

Frame PageBatchEncoder::take_raw_frame() {
  Frame f = make_raw_pages(raw_, paused_);
  raw_.clear();
  // Zero-copy pages fill no PAGES batch: a RAW_PAGES batch counts as one for `auto`'s choice
  // (and its probe of lz4 every probe_every batches).
  ++batches_;
  choose_mode();
  return f;
}

Frame PageBatchEncoder::take_frame() {
  if (chooser_ && codec_in_) chooser_->observe_codec(codec_in_, codec_out_, codec_seconds_);
  Frame f = builder_.finish();
  f.pages = static_cast<uint32_t>(pages_in_batch_);
  ++batches_;
  begin_batch();
  return f;
}

}  // namespace minihv::migrate
