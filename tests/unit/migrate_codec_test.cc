#include "migrate/codec.h"

#include <gtest/gtest.h>
#include <lz4.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "migrate/verify.h"
#include "migrate/wire.h"

namespace minihv::migrate {
namespace {

constexpr uint64_t kRamPages = 256;

// A fake guest: two RAM regions with a hole between them, like the MMIO gap.
struct FakeRam {
  std::vector<uint8_t> low = std::vector<uint8_t>(kRamPages / 2 * kPageSize);
  std::vector<uint8_t> high = std::vector<uint8_t>(kRamPages / 2 * kPageSize);
  std::vector<MemoryRegion> regions() {
    return {{0, low.size(), low.data()}, {1ull << 32, high.size(), high.data()}};
  }
  uint8_t* page(uint64_t gpa) {
    return gpa >= (1ull << 32) ? high.data() + (gpa - (1ull << 32)) : low.data() + gpa;
  }
};

void fill_random(uint8_t* p, uint32_t seed) {
  std::mt19937 rng(seed);
  for (size_t i = 0; i < kPageSize; i += 4) {
    uint32_t v = rng();
    std::memcpy(p + i, &v, 4);
  }
}

void fill_text(uint8_t* p, uint32_t seed) {
  static const char* words[] = {"migrate ", "the ", "guest ", "page ", "dirty ", "round ", "kvm "};
  std::mt19937 rng(seed);
  size_t i = 0;
  while (i < kPageSize) {
    const char* w = words[rng() % 7];
    for (; *w && i < kPageSize; ++w) p[i++] = static_cast<uint8_t>(*w);
  }
}

Frame encode(FakeRam& src, const std::vector<uint64_t>& gpas, Compression c, PageHashTable* hashes,
             std::vector<PageOutcome>* outcomes = nullptr) {
  EncoderOptions o;
  o.compression = c;
  o.zero_copy = false;  // every page as a PAGES record (RAW_PAGES: the tests at the end)
  PageBatchEncoder enc(o, hashes);
  for (uint64_t gpa : gpas) {
    auto r = enc.add(gpa, src.page(gpa));
    EXPECT_TRUE(r) << r.message();
    if (outcomes) outcomes->push_back(*r);
  }
  return enc.take_frame();
}

std::span<const uint8_t> payload(const Frame& f) { return std::span<const uint8_t>(f.bytes).subspan(kHeaderSize); }

TEST(MigrateCodec, RoundTripsZeroRandomAndTextPages) {
  for (Compression c : {Compression::kNone, Compression::kLz4, Compression::kAuto}) {
    FakeRam src, dst;
    std::vector<uint64_t> gpas;
    for (uint64_t i = 0; i < kRamPages; ++i) {
      uint64_t gpa = i < kRamPages / 2 ? i * kPageSize : (1ull << 32) + (i - kRamPages / 2) * kPageSize;
      if (i % 3 == 1) fill_random(src.page(gpa), static_cast<uint32_t>(i));
      if (i % 3 == 2) fill_text(src.page(gpa), static_cast<uint32_t>(i));
      gpas.push_back(gpa);
    }
    std::memset(dst.low.data(), 0xEE, dst.low.size());  // stale data the zero pages must clear
    auto ram = dst.regions();
    Frame f = encode(src, gpas, c, nullptr);
    EXPECT_EQ(f.pages, kRamPages);
    auto st = decode_page_batch(payload(f), ram);
    ASSERT_TRUE(st) << st.message();
    EXPECT_EQ(st->zero + st->raw + st->lz4, kRamPages);
    EXPECT_EQ(src.low, dst.low) << compression_name(c);
    EXPECT_EQ(src.high, dst.high) << compression_name(c);
    if (c == Compression::kNone) EXPECT_EQ(st->lz4, 0u);
    else EXPECT_GT(st->lz4, 0u);  // the text pages
  }
}

TEST(MigrateCodec, ChoosesLz4OnlyWhenItPays) {
  FakeRam src;
  fill_random(src.page(0), 1);
  fill_text(src.page(kPageSize), 2);
  std::vector<PageOutcome> out;
  encode(src, {0, kPageSize, 2 * kPageSize}, Compression::kLz4, nullptr, &out);
  EXPECT_EQ(out, (std::vector<PageOutcome>{PageOutcome::kRaw, PageOutcome::kLz4, PageOutcome::kZero}));
}

TEST(MigrateCodec, UnchangedPagesPutNothingOnTheWire) {
  FakeRam src;
  auto ram = src.regions();
  PageHashTable hashes(ram);
  fill_random(src.page(0), 1);
  fill_text(src.page(kPageSize), 2);
  std::vector<PageOutcome> first, second, third;
  encode(src, {0, kPageSize, 2 * kPageSize}, Compression::kLz4, &hashes, &first);
  Frame again = encode(src, {0, kPageSize, 2 * kPageSize}, Compression::kLz4, &hashes, &second);
  EXPECT_EQ(second, std::vector<PageOutcome>(3, PageOutcome::kUnchanged));
  EXPECT_EQ(again.payload_size(), 0u);
  EXPECT_EQ(again.pages, 0u);
  src.page(kPageSize)[100] ^= 1;  // one byte changes: only that page goes again
  encode(src, {0, kPageSize, 2 * kPageSize}, Compression::kLz4, &hashes, &third);
  EXPECT_EQ(third, (std::vector<PageOutcome>{PageOutcome::kUnchanged, PageOutcome::kLz4, PageOutcome::kUnchanged}));
  hashes.clear();
  std::vector<PageOutcome> fourth;
  encode(src, {0}, Compression::kLz4, &hashes, &fourth);
  EXPECT_EQ(fourth[0], PageOutcome::kRaw);
}

TEST(MigrateCodec, ZeroPagesMergeIntoRuns) {
  FakeRam src;
  std::vector<uint64_t> gpas;
  for (uint64_t i = 0; i < 100; ++i) gpas.push_back(i * kPageSize);
  Frame f = encode(src, gpas, Compression::kLz4, nullptr);
  EXPECT_EQ(f.payload_size(), kRecordHeaderSize);  // one record for 100 pages
  FakeRam dst;
  std::memset(dst.low.data(), 1, dst.low.size());
  auto ram = dst.regions();
  auto st = decode_page_batch(payload(f), ram);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->zero, 100u);
  EXPECT_TRUE(is_zero_page(dst.page(99 * kPageSize)));
  EXPECT_FALSE(is_zero_page(dst.page(100 * kPageSize)));
}

TEST(MigrateCodec, FullBatchStaysUnderTheTarget) {
  FakeRam src;
  EncoderOptions o;
  o.compression = Compression::kNone;
  o.zero_copy = false;
  o.target_batch_bytes = 10 * kPageSize;
  PageBatchEncoder enc(o, nullptr);
  size_t added = 0;
  for (uint64_t i = 0; i < kRamPages / 2 && !enc.full(); ++i, ++added) {
    fill_random(src.page(i * kPageSize), static_cast<uint32_t>(i));
    ASSERT_TRUE(enc.add(i * kPageSize, src.page(i * kPageSize)));
  }
  Frame f = enc.take_frame();
  EXPECT_LE(f.payload_size(), o.target_batch_bytes);
  EXPECT_EQ(f.pages, added);
  EXPECT_TRUE(enc.empty());
  EXPECT_FALSE(enc.add(123, src.page(0)));  // unaligned
}

// ---- the decoder refuses every corrupt record ----

std::vector<uint8_t> record(uint64_t gpa, uint8_t kind, uint16_t len, std::span<const uint8_t> data = {}) {
  std::vector<uint8_t> r(kRecordHeaderSize + data.size());
  wire::store<uint64_t>(r.data(), gpa);
  r[8] = kind;
  wire::store<uint16_t>(r.data() + 10, len);
  if (!data.empty()) std::memcpy(r.data() + kRecordHeaderSize, data.data(), data.size());
  return r;
}

TEST(MigrateCodec, DecoderRejectsEveryCorruptRecordKind) {
  FakeRam dst;
  auto ram = dst.regions();
  std::vector<uint8_t> page(kPageSize, 0xAB);
  std::vector<uint8_t> lz(LZ4_compressBound(kPageSize));
  int n = LZ4_compress_default(reinterpret_cast<char*>(page.data()), reinterpret_cast<char*>(lz.data()), kPageSize,
                               static_cast<int>(lz.size()));
  lz.resize(n);
  // A valid lz4 block that decodes to 8192 bytes: a "bomb" for a 4 KiB page.
  std::vector<uint8_t> big(2 * kPageSize, 0xAB), bomb(LZ4_compressBound(2 * kPageSize));
  bomb.resize(LZ4_compress_default(reinterpret_cast<char*>(big.data()), reinterpret_cast<char*>(bomb.data()),
                                   2 * kPageSize, static_cast<int>(bomb.size())));
  // One that decodes to less than a page.
  std::vector<uint8_t> small(100, 1), shortb(LZ4_compressBound(100));
  shortb.resize(LZ4_compress_default(reinterpret_cast<char*>(small.data()), reinterpret_cast<char*>(shortb.data()),
                                     100, static_cast<int>(shortb.size())));
  std::vector<uint8_t> garbage(200, 0xFF);
  const uint64_t end_low = kRamPages / 2 * kPageSize;

  struct Case { const char* name; std::vector<uint8_t> bytes; };
  std::vector<Case> cases = {
      {"raw page in the gap", record(end_low, 2, kPageSize, page)},
      {"raw page past the end", record((1ull << 32) + end_low, 2, kPageSize, page)},
      {"address near 2^64", record(~uint64_t{0} & ~uint64_t{kPageSize - 1}, 2, kPageSize, page)},
      {"unaligned address", record(8, 2, kPageSize, page)},
      {"raw length 4095", record(0, 2, kPageSize - 1, std::span(page).first(kPageSize - 1))},
      {"raw truncated", record(0, 2, kPageSize, std::span(page).first(100))},
      {"zero run crossing the end of a region", record(end_low - kPageSize, 1, 2)},
      {"zero run of 0 pages", record(0, 1, 0)},
      {"zero run wrapping 2^64", record(~uint64_t{0} & ~uint64_t{kPageSize - 1}, 1, 0xFFFF)},
      {"lz4 empty", record(0, 3, 0)},
      {"lz4 over 3/4 page", record(0, 3, kLz4MaxBytes + 1, std::vector<uint8_t>(kLz4MaxBytes + 1))},
      {"lz4 truncated", record(0, 3, static_cast<uint16_t>(lz.size() + 10), lz)},
      {"lz4 bomb (8 KiB)", record(0, 3, static_cast<uint16_t>(bomb.size()), bomb)},
      {"lz4 short (100 bytes)", record(0, 3, static_cast<uint16_t>(shortb.size()), shortb)},
      {"lz4 garbage", record(0, 3, 200, garbage)},
      {"lz4 outside RAM", record(end_low, 3, static_cast<uint16_t>(lz.size()), lz)},
      {"unknown kind", record(0, 9, 0)},
      {"reserved byte set", [&] { auto r = record(0, 1, 1); r[9] = 1; return r; }()},
      {"truncated header", std::vector<uint8_t>(7, 0)},
  };
  for (const auto& c : cases) {
    // A good record first, so "corrupt record #1" is what gets named.
    auto bytes = record(kPageSize, 2, kPageSize, page);
    bytes.insert(bytes.end(), c.bytes.begin(), c.bytes.end());
    std::vector<uint8_t> high_before = dst.high;
    auto st = decode_page_batch(bytes, ram);
    ASSERT_FALSE(st) << c.name;
    EXPECT_NE(st.message().find("record #1"), std::string::npos) << c.name << ": " << st.message();
    EXPECT_EQ(dst.high, high_before) << c.name;
  }
  // The good lz4 record on its own decodes.
  auto ok = decode_page_batch(record(0, 3, static_cast<uint16_t>(lz.size()), lz), ram);
  ASSERT_TRUE(ok) << ok.message();
  EXPECT_EQ(std::memcmp(dst.page(0), page.data(), kPageSize), 0);
}

TEST(MigrateCodec, ChooserPicksFromMeasuredSpeeds) {
  CompressionChooser c;
  EXPECT_EQ(c.choose(), Compression::kLz4);  // nothing measured yet
  // Slow link (1 Gbit/s), fast codec (2 GB/s) that halves the data: lz4 wins.
  c.observe_link(125'000'000, 1.0);
  c.observe_codec(2'000'000'000, 1'000'000'000, 1.0);
  EXPECT_EQ(c.choose(), Compression::kLz4);
  // Loopback (5 GB/s): 1/2e9 + 0.5/5e9 > 1/5e9, so none.
  CompressionChooser fast;
  fast.observe_link(5'000'000'000, 1.0);
  fast.observe_codec(2'000'000'000, 1'000'000'000, 1.0);
  EXPECT_EQ(fast.choose(), Compression::kNone);
  // Slow link but incompressible data: the codec only costs time.
  CompressionChooser random;
  random.observe_link(125'000'000, 1.0);
  random.observe_codec(1'000'000'000, 1'003'000'000, 1.0);
  EXPECT_EQ(random.choose(), Compression::kNone);
  // Averages move towards new samples: a link that slows down flips the choice back.
  for (int i = 0; i < 20; ++i) fast.observe_link(100'000'000, 1.0);
  EXPECT_EQ(fast.choose(), Compression::kLz4);
}

TEST(MigrateCodec, AutoFollowsTheChooserAndStillProbes) {
  FakeRam src;
  for (uint64_t i = 0; i < 64; ++i) fill_text(src.page(i * kPageSize), static_cast<uint32_t>(i));
  CompressionChooser chooser;
  chooser.observe_link(10'000'000'000, 1.0);  // a link far faster than any codec
  chooser.observe_codec(1'000'000'000, 500'000'000, 1.0);
  ASSERT_EQ(chooser.choose(), Compression::kNone);
  EncoderOptions o;
  o.compression = Compression::kAuto;
  o.probe_every = 4;
  PageBatchEncoder enc(o, nullptr, &chooser);
  std::vector<uint64_t> lz4_per_batch;
  for (int batch = 0; batch < 8; ++batch) {
    uint64_t before = enc.stats().lz4;
    for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(enc.add(i * kPageSize, src.page(i * kPageSize)));
    (void)enc.take_frame();
    lz4_per_batch.push_back(enc.stats().lz4 - before);
  }
  // Batches 0 and 4 are probes (compressed, which feeds the chooser); the rest go raw.
  EXPECT_EQ(lz4_per_batch, (std::vector<uint64_t>{8, 0, 0, 0, 8, 0, 0, 0}));
}

TEST(MigrateCodec, ParsesCompressionFlag) {
  EXPECT_EQ(*parse_compression("auto"), Compression::kAuto);
  EXPECT_EQ(*parse_compression("lz4"), Compression::kLz4);
  EXPECT_EQ(*parse_compression("none"), Compression::kNone);
  auto bad = parse_compression("zstd");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.status().is_invalid_input());
}

TEST(MigrateVerify, FindsTheRangeThatDiffers) {
  FakeRam a, b;
  fill_random(a.page(5 * kPageSize), 5);
  fill_random(b.page(5 * kPageSize), 5);
  auto ra = a.regions(), rb = b.regions();
  auto digests = digest_ram(ra, 16 * kPageSize);
  EXPECT_EQ(digests.size(), kRamPages / 16);
  auto same = compare_ram(rb, digests);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->empty());
  b.page((1ull << 32) + 20 * kPageSize)[7] = 1;
  auto diff = compare_ram(rb, digests);
  ASSERT_TRUE(diff);
  ASSERT_EQ(diff->size(), 1u);
  EXPECT_EQ((*diff)[0].gpa, (1ull << 32) + 16 * kPageSize);
  std::vector<RangeDigest> outside = {{1ull << 40, kPageSize, 0}};
  EXPECT_FALSE(compare_ram(rb, outside));
}

}  // namespace
}  // namespace minihv::migrate

namespace minihv::migrate {
namespace {

// The receiver skips zero records for pages it knows are zero, and only for those: a page that a
// raw record wrote is cleared again by a later zero record.
TEST(MigrateZeroPages, ZeroRecordsSkipKnownZeroPagesAndClearWrittenOnes) {
  FakeRam src, dst;
  auto ram = dst.regions();
  ZeroPages zero(ram, true);
  const uint64_t a = 0, b = kPageSize;
  fill_random(src.page(a), 7);
  Frame written = encode(src, {a}, Compression::kNone, nullptr);
  ASSERT_TRUE(decode_page_batch(payload(written), ram, &zero));
  EXPECT_FALSE(zero.known_zero(a));
  EXPECT_TRUE(zero.known_zero(b));
  std::memset(dst.page(b), 0xEE, kPageSize);  // contradicts what `zero` knows: proves b is not read
  std::memset(src.page(a), 0, kPageSize);
  Frame zeros = encode(src, {a, b}, Compression::kNone, nullptr);
  auto st = decode_page_batch(payload(zeros), ram, &zero);
  ASSERT_TRUE(st) << st.message();
  EXPECT_EQ(st->zero, 2u);
  EXPECT_TRUE(std::all_of(dst.page(a), dst.page(a) + kPageSize, [](uint8_t x) { return x == 0; }))
      << "a page written earlier must be cleared";
  EXPECT_EQ(dst.page(b)[0], 0xEE) << "a known-zero page is not touched";
  EXPECT_TRUE(zero.known_zero(a));
}

}  // namespace
}  // namespace minihv::migrate

namespace minihv::migrate {
namespace {

// The "unchanged" hit rate is that of the hash check, which zero pages never need: a guest that
// keeps rewriting zeros must not keep hashing on for pages that do not repeat.
TEST(MigrateCodec, UnchangedHitRateCountsOnlyHashedPages) {
  FakeRam src;
  fill_random(src.page(kPageSize), 3);   // repeats: a hit the second time
  fill_random(src.page(2 * kPageSize), 4);
  std::vector<uint64_t> gpas = {0, kPageSize, 2 * kPageSize};
  PageHashTable hashes(src.regions());
  EncoderOptions eo;
  eo.compression = Compression::kNone;
  PageBatchEncoder enc(eo, &hashes);
  for (uint64_t g : gpas) ASSERT_TRUE(enc.add(g, src.page(g)));
  fill_random(src.page(2 * kPageSize), 5);  // changed
  for (uint64_t g : gpas) ASSERT_TRUE(enc.add(g, src.page(g)));
  const CodecStats& st = enc.stats();
  EXPECT_EQ(st.unchanged, 2u) << "the zero page and the repeated one";
  EXPECT_EQ(st.hashed, 4u);
  EXPECT_EQ(st.hash_hits, 1u);
  EXPECT_DOUBLE_EQ(st.unchanged_hit_rate(), 0.25);
}

}  // namespace
}  // namespace minihv::migrate

namespace minihv::migrate {
namespace {

// Zero-copy raw pages: sent from guest memory only when no digest describes them — or when the VM
// is paused, and then with a hash of their bytes the receiver checks.
TEST(MigrateRawPages, GoZeroCopyOnlyWhenNoDigestIsKeptOrTheVmIsPaused) {
  FakeRam src;
  fill_random(src.page(0), 1);
  fill_random(src.page(kPageSize), 2);
  EncoderOptions o;
  o.compression = Compression::kNone;
  PageBatchEncoder plain(o, nullptr);
  ASSERT_EQ(*plain.add(0, src.page(0)), PageOutcome::kRaw);
  EXPECT_TRUE(plain.empty()) << "no PAGES record for a zero-copy page";
  Frame raw = plain.take_raw_frame();
  ASSERT_EQ(raw.attachment.size(), 1u);
  EXPECT_EQ(raw.attachment[0], src.page(0)) << "the page is sent from where it is, not copied";
  EXPECT_EQ(raw.pages, 1u);

  auto ram = src.regions();
  PageHashTable hashes(ram);
  PageBatchEncoder hashed(o, &hashes);
  ASSERT_EQ(*hashed.add(0, src.page(0)), PageOutcome::kRaw);
  EXPECT_TRUE(hashed.raw_empty()) << "a hashed page of a running guest is copied";
  EXPECT_FALSE(hashed.empty());
  hashed.set_paused(true);
  ASSERT_EQ(*hashed.add(kPageSize, src.page(kPageSize)), PageOutcome::kRaw);
  ASSERT_FALSE(hashed.raw_empty());
  Frame final_raw = hashed.take_raw_frame();
  FrameView v{decode_header(final_raw.bytes.data()), payload(final_raw)};
  auto h = parse_raw_pages(v);
  ASSERT_TRUE(h) << h.message();
  EXPECT_EQ(h->flags, RawFlag::kDataHashed);
  EXPECT_EQ(h->gpas, std::vector<uint64_t>{kPageSize});
  EXPECT_TRUE(check_raw_pages(*h, ram));
  src.page(kPageSize)[7] ^= 1;  // the bytes the receiver got are not the ones hashed
  EXPECT_FALSE(check_raw_pages(*h, ram));
}

// With hashing off, an unsampled page goes zero-copy and its digest is forgotten: once hashing is
// back on, the page is not "unchanged" though its bytes are the same (what was sent is unknown).
TEST(MigrateRawPages, AZeroCopyPageOfARunningGuestKeepsNoDigest) {
  FakeRam src;
  const uint64_t gpa = 3 * kPageSize;  // not in the 1-in-16 sample (page 3)
  fill_random(src.page(gpa), 9);
  auto ram = src.regions();
  PageHashTable hashes(ram);
  EncoderOptions o;
  o.compression = Compression::kNone;
  PageBatchEncoder enc(o, &hashes);
  ASSERT_EQ(*enc.add(gpa, src.page(gpa)), PageOutcome::kRaw);  // hashed and copied (hashing on)
  EXPECT_NE(*hashes.slot(gpa), 0u);
  enc.set_hash_unchanged(false);
  ASSERT_EQ(*enc.add(gpa, src.page(gpa)), PageOutcome::kRaw);
  EXPECT_FALSE(enc.raw_empty()) << "unhashed: sent from guest memory";
  EXPECT_EQ(*hashes.slot(gpa), 0u) << "its old digest must never match again";
  enc.set_hash_unchanged(true);
  EXPECT_EQ(*enc.add(gpa, src.page(gpa)), PageOutcome::kRaw) << "not unchanged: nothing vouches for what was sent";
}

TEST(MigrateRawPages, ThePlaceOfEveryPageIsCheckedBeforeAByteLands) {
  FakeRam dst;
  auto ram = dst.regions();
  ZeroPages zero(ram, true);
  RawPagesHeader h;
  h.gpas = {0, kPageSize};
  auto where = place_raw_pages(h, ram, &zero);
  ASSERT_TRUE(where) << where.message();
  EXPECT_EQ((*where)[1], dst.page(kPageSize));
  EXPECT_FALSE(zero.known_zero(kPageSize)) << "a page about to be written is not known zero";
  h.gpas = {0, 1ull << 40};
  EXPECT_FALSE(place_raw_pages(h, ram, &zero));
}

// With one thread per stream, a page may arrive only on its own stream (stream_for_page): a batch
// with a page of another stream is refused before it lands, so no two threads write one page.
TEST(MigrateAffinity, APageOnAnotherStreamIsRefused) {
  const uint64_t chunk = uint64_t{1} << kAffinityShift;
  EXPECT_TRUE(stream_owns(0, 64, 0, 2));
  EXPECT_FALSE(stream_owns(0, 65, 0, 2)) << "a run into the next chunk (stream 1's)";
  EXPECT_TRUE(stream_owns(chunk, 1, 1, 2));
  EXPECT_FALSE(stream_owns(chunk, 1, 0, 2));
  EXPECT_TRUE(stream_owns(0, 1000, 0, 1)) << "one stream owns every page";
  EXPECT_FALSE(stream_owns(0, 1, 1, 1));
  EXPECT_FALSE(stream_owns(~uint64_t{0} & ~(kPageSize - 1), 2, 0, 2)) << "wraps around";

  FakeRam src, dst;
  fill_random(src.page(chunk), 7);
  Frame f = encode(src, {chunk}, Compression::kNone, nullptr);
  auto ram = dst.regions();
  EXPECT_TRUE(decode_page_batch(payload(f), ram, nullptr, {1, 2}));
  auto wrong = decode_page_batch(payload(f), ram, nullptr, {0, 2});
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.message().find("belongs to another stream"), std::string::npos) << wrong.message();

  RawPagesHeader h;
  h.gpas = {chunk};
  EXPECT_TRUE(place_raw_pages(h, ram, nullptr, {1, 2}));
  EXPECT_FALSE(place_raw_pages(h, ram, nullptr, {0, 2}));
}

}  // namespace
}  // namespace minihv::migrate
