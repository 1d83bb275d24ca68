// migrate/codec.h — the page codec: 4 KiB pages in, PAGES payload records out, and back.
//
// Owns: classifying a page (unchanged / zero / lz4 / raw), the table of xxh3 digests last sent per
// page, writing records into a frame payload, the auto-compression decision, and decoding a PAGES
// payload straight into guest memory with every record checked.
// Must not know: sockets, frames' headers, KVM, dirty logs. The caller (migrate/source.*) decides which
// pages to offer; the encoder decides how each travels.
//
// Sender, per stream:                               Receiver, per PAGES frame:
//   PageBatchEncoder enc(options, &hashes);          auto st = decode_page_batch(view.payload, regions);
//   for each dirty page on this stream:              // st: error = corrupt record, abort the migration
//     enc.add(gpa, host_ptr);   // may be "unchanged" → nothing
//     if (enc.full()) send(enc.take_frame());
//   send(enc.take_frame()) if !enc.empty()
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "migrate/frames.h"
#include "migrate/protocol.h"
#include "vmm/memory.h"

namespace minihv::migrate {

enum class Compression { kNone, kLz4, kAuto };
std::string_view compression_name(Compression c);
// "none" | "lz4" | "auto" (the --compress flag).
Result<Compression> parse_compression(std::string_view s);

// What add() did with a page. kUnchanged means no bytes on the wire.
enum class PageOutcome : uint8_t { kUnchanged, kZero, kRaw, kLz4 };

struct CodecStats {
  uint64_t zero = 0, unchanged = 0, lz4 = 0, raw = 0;
  uint64_t bytes_in = 0;   // page bytes offered (4096 per page, including unchanged ones)
  uint64_t bytes_out = 0;  // payload bytes produced (record headers + data)
  uint64_t hashed = 0;     // non-zero pages checked for "unchanged"
  uint64_t hash_hits = 0;  // ... and found unchanged (hash_hits / hashed = the check's hit rate)
  uint64_t lz4_tried = 0;  // pages given to lz4 (lz4 / lz4_tried = its hit rate)
  void add(const CodecStats& o);
  CodecStats minus(const CodecStats& earlier) const;  // this round's share of running totals
  double unchanged_hit_rate() const { return hashed ? static_cast<double>(hash_hits) / hashed : 0; }
  double lz4_hit_rate() const { return lz4_tried ? static_cast<double>(lz4) / lz4_tried : 0; }
};

// The xxh3-64 of each page as last sent, for every page of the RAM regions. A digest of 0 means
// "never sent" (a real page hashing to 0 merely gets sent again).
class PageHashTable {
public:
  explicit PageHashTable(std::span<const MemoryRegion> ram);
  // Slot of the page at `gpa`, or nullptr when gpa is not in RAM.
  uint64_t* slot(uint64_t gpa);
  // Forget everything (after a failed attempt, the next one starts from a full pass).
  void clear();
  size_t pages() const { return digests_.size(); }

private:
  struct Range { uint64_t gpa, size; size_t first; };
  std::vector<Range> ranges_;
  std::vector<uint64_t> digests_;
};

// Decides lz4 vs none for Compression::kAuto from measured speeds. Time per input byte:
//   none: 1/link                 lz4: 1/codec + ratio/link   (ratio = compressed / input)
// lz4 wins when it is at least kMargin faster. Until the link has been measured it says lz4.
class CompressionChooser {
public:
  static constexpr double kMargin = 0.05;
  static constexpr double kSmoothing = 0.25;  // weight of a new sample in the moving averages

  // Bytes that left over the link in `seconds` (from the transport).
  void observe_link(uint64_t bytes, double seconds);
  // lz4 compressed `in` input bytes into `out` bytes in `seconds` (from the encoder).
  void observe_codec(uint64_t in, uint64_t out, double seconds);
  Compression choose() const;  // kLz4 or kNone
  double link_bytes_per_s() const { return link_bps_; }
  double codec_bytes_per_s() const { return codec_bps_; }
  double ratio() const { return ratio_; }

private:
  double link_bps_ = 0, codec_bps_ = 0, ratio_ = 1.0;
};

struct EncoderOptions {
  Compression compression = Compression::kAuto;
  size_t target_batch_bytes = kTargetBatchBytes;
  // kAuto with the chooser saying "none" still compresses one batch in this many to keep measuring.
  unsigned probe_every = 16;
  // Raw pages go as RAW_PAGES, sent from guest memory without a copy, whenever that is safe: the
  // page is not hashed for "unchanged" (or the VM is paused: set_paused). Off: every page is copied
  // into PAGES records.
  bool zero_copy = true;
};

// Builds PAGES frames for one stream. Offer only that stream's pages (stream_for_page), in any order;
// consecutive zero pages offered one after the other are merged into one run record.
class PageBatchEncoder {
public:
  // `hashes` may be shared by the encoders of all streams (each page belongs to one stream, so the
  // slots they touch never overlap) and must outlive the encoder; nullptr disables "unchanged".
  // `chooser` is consulted for kAuto and may be shared (single-threaded) or nullptr (= lz4).
  PageBatchEncoder(EncoderOptions options, PageHashTable* hashes, CompressionChooser* chooser = nullptr);

  // Classifies the page at `gpa` (4096 bytes at `page`) and appends its record unless unchanged.
  // Fails only if gpa is unaligned. Check full() after each call.
  Result<PageOutcome> add(uint64_t gpa, const uint8_t* page);
  // The page at `gpa` is known to be zero without reading it (GuestMemory::untouched_pages).
  Result<PageOutcome> add_known_zero(uint64_t gpa);
  // Whether every non-zero page is hashed for the "unchanged" check (the default). Off, only a
  // sample (1 page in kHashSampleEvery) is, so its hit rate stays measured; the others are sent
  // and their digests forgotten (a stale digest could match an older copy of the page).
  void set_hash_unchanged(bool on) { hash_all_ = on; }
  static constexpr uint64_t kHashSampleEvery = 16;
  // The VM is paused (the final round): pages cannot change, so hashed pages go zero-copy too and
  // RAW_PAGES carry a hash of their bytes.
  void set_paused(bool paused) { paused_ = paused; }
  bool full() const;
  bool empty() const { return records_ == 0; }
  // The finished PAGES frame (unsealed: the transport stamps stream and sequence); resets the batch.
  Frame take_frame();
  // The RAW_PAGES batch (zero-copy raw pages): full at kMaxRawPages; take it like take_frame().
  bool raw_full() const { return raw_.size() >= kMaxRawPages; }
  bool raw_empty() const { return raw_.empty(); }
  Frame take_raw_frame();
  const CodecStats& stats() const { return stats_; }

private:
  Result<PageOutcome> add_page(uint64_t gpa, const uint8_t* page, bool zero);
  // Compares `digest` with the page's slot and stores it; false when it matched (unchanged).
  // `counted`: a non-zero page, counted in the hash hit rate.
  bool record_digest(uint64_t* slot, uint64_t digest, bool counted);
  PageOutcome add_zero(uint64_t gpa);
  // Appends `page` lz4-compressed; false (nothing appended) when it would not shrink enough.
  bool add_lz4(uint64_t gpa, const uint8_t* page);
  void begin_batch();
  void choose_mode();  // batch_mode_ for the pages that follow (kAuto: the chooser, and probes)
  void close_zero_run();
  EncoderOptions options_;
  PageHashTable* hashes_;
  CompressionChooser* chooser_;
  FrameBuilder builder_;
  CodecStats stats_;
  size_t records_ = 0, pages_in_batch_ = 0;
  Compression batch_mode_ = Compression::kLz4;
  bool hash_all_ = true;
  bool paused_ = false;
  std::vector<std::pair<uint64_t, const uint8_t*>> raw_;  // the RAW_PAGES batch: gpa, guest page
  alignas(64) struct { uint8_t bytes[kPageSize]; } snapshot_;  // lz4: the page as hashed and compressed
  uint64_t batches_ = 0;
  // Open zero run: the record's offset in the payload, its first gpa and page count.
  std::optional<size_t> zero_run_at_;
  uint64_t zero_run_gpa_ = 0;
  uint16_t zero_run_len_ = 0;
  double codec_seconds_ = 0;
  uint64_t codec_in_ = 0, codec_out_ = 0;
};

// True when the 4096 bytes at `page` are all zero.
bool is_zero_page(const uint8_t* page);

// The receiver's knowledge of which RAM pages are zero without reading them: after the VM's RAM was
// discarded (GuestMemory::discard) every page is; a page written by a record no longer is, until a
// zero record clears it again. A zero record for a known-zero page then costs one bit test instead
// of a read of the page (which, for untouched RAM, also faults it in). One bit per page; the 64
// pages of a word are one affinity chunk (protocol.h), so one stream's decoder owns each word.
class ZeroPages {
public:
  // known_zero: every page starts known zero (the RAM was discarded); false: none does.
  ZeroPages(std::span<const MemoryRegion> ram, bool known_zero);
  bool known_zero(uint64_t gpa) const;
  void set(uint64_t gpa, bool zero);

private:
  uint64_t* word(uint64_t gpa, uint64_t& bit) const;
  struct Range { uint64_t gpa, size; size_t first_word; };
  std::vector<Range> ranges_;
  mutable std::vector<uint64_t> bits_;
};

// Which stream a batch came on, of how many: its pages must all be that stream's (stream_owns).
// streams = 0: not checked (a decoder outside a session).
struct Affinity {
  uint16_t stream = 0, streams = 0;
  bool allows(uint64_t gpa, uint64_t pages) const { return streams == 0 || stream_owns(gpa, pages, stream, streams); }
};

// RAW_PAGES at the receiver: where each page of the attachment goes (checked to lie in `ram`; the
// pages stop being known zero), then, once they are in, whether their bytes match the frame's
// data hash when it carries one.
Result<std::vector<uint8_t*>> place_raw_pages(const RawPagesHeader& h, std::span<const MemoryRegion> ram,
                                              ZeroPages* zero, Affinity affinity = {});
Status check_raw_pages(const RawPagesHeader& h, std::span<const MemoryRegion> ram);

// Checks every record of a PAGES payload and writes the pages into RAM. A record outside `ram`,
// with a bad kind or length, or an lz4 block that does not decode to exactly 4096 bytes fails the
// whole batch with a message naming the record; nothing is written outside `ram`. Records before
// the bad one may already have been written (the migration is aborted anyway).
// With `zero` (the receiver's ZeroPages), zero records skip pages known to be zero already. A record
// for a page of another stream (`affinity`) fails the batch too.
Result<CodecStats> decode_page_batch(std::span<const uint8_t> payload, std::span<const MemoryRegion> ram,
                                     ZeroPages* zero = nullptr, Affinity affinity = {});
inline Result<CodecStats> decode_page_batch(std::span<const uint8_t> payload, const GuestMemory& mem,
                                            ZeroPages* zero = nullptr, Affinity affinity = {}) {
  return decode_page_batch(payload, mem.regions(), zero, affinity);
}

}  // namespace minihv::migrate
