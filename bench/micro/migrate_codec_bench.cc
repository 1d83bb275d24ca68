// Page codec and xxh3 scanning speed (docs/benchmarks.md, "migrate: wire"). Bytes/s are page bytes in.
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <xxhash.h>

#include <cstring>
#include <random>
#include <vector>

#include "migrate/codec.h"

namespace minihv::migrate {
namespace {

constexpr size_t kBatchPages = 256;  // one 1 MiB batch

enum class Content { kZero, kRandom, kText };

std::vector<uint8_t> make_pages(Content c, size_t pages) {
  std::vector<uint8_t> v(pages * kPageSize);
  std::mt19937_64 rng(7);
  static const char* words[] = {"kernel ", "page ", "cache ", "dirty ", "struct ", "return ", "0x1f; "};
  size_t i = 0;
  switch (c) {
    case Content::kZero: break;
    case Content::kRandom:
      for (; i + 8 <= v.size(); i += 8) {
        uint64_t r = rng();
        std::memcpy(&v[i], &r, 8);
      }
      break;
    case Content::kText:
      while (i < v.size())
        for (const char* w = words[rng() % 7]; *w && i < v.size(); ++w) v[i++] = static_cast<uint8_t>(*w);
      break;
  }
  return v;
}

void BM_Encode(benchmark::State& state, Content content, Compression compression) {
  auto pages = make_pages(content, kBatchPages);
  EncoderOptions o;
  o.compression = compression;
  o.target_batch_bytes = kBatchPages * (kPageSize + kRecordHeaderSize) + 1;
  PageBatchEncoder enc(o, nullptr);
  for (auto _ : state) {
    for (size_t p = 0; p < kBatchPages; ++p) (void)enc.add(p * kPageSize, &pages[p * kPageSize]);
    Frame f = enc.take_frame();
    benchmark::DoNotOptimize(f.bytes.data());
  }
  state.SetBytesProcessed(state.iterations() * kBatchPages * kPageSize);
  const auto& st = enc.stats();
  state.counters["wire_ratio"] = static_cast<double>(st.bytes_out) / static_cast<double>(st.bytes_in);
}
BENCHMARK_CAPTURE(BM_Encode, zero, Content::kZero, Compression::kLz4);
BENCHMARK_CAPTURE(BM_Encode, random_none, Content::kRandom, Compression::kNone);
BENCHMARK_CAPTURE(BM_Encode, random_lz4, Content::kRandom, Compression::kLz4);
BENCHMARK_CAPTURE(BM_Encode, text_none, Content::kText, Compression::kNone);
BENCHMARK_CAPTURE(BM_Encode, text_lz4, Content::kText, Compression::kLz4);

void BM_EncodeUnchanged(benchmark::State& state) {
  auto pages = make_pages(Content::kRandom, kBatchPages);
  std::vector<MemoryRegion> ram = {{0, pages.size(), pages.data()}};
  PageHashTable hashes(ram);
  PageBatchEncoder enc({}, &hashes);
  for (size_t p = 0; p < kBatchPages; ++p) (void)enc.add(p * kPageSize, &pages[p * kPageSize]);
  (void)enc.take_frame();
  for (auto _ : state)
    for (size_t p = 0; p < kBatchPages; ++p) benchmark::DoNotOptimize(enc.add(p * kPageSize, &pages[p * kPageSize]));
  state.SetBytesProcessed(state.iterations() * kBatchPages * kPageSize);
}
BENCHMARK(BM_EncodeUnchanged);

void BM_Decode(benchmark::State& state, Content content, Compression compression) {
  auto pages = make_pages(content, kBatchPages);
  EncoderOptions o;
  o.compression = compression;
  o.target_batch_bytes = kBatchPages * (kPageSize + kRecordHeaderSize) + 1;
  PageBatchEncoder enc(o, nullptr);
  for (size_t p = 0; p < kBatchPages; ++p) (void)enc.add(p * kPageSize, &pages[p * kPageSize]);
  Frame f = enc.take_frame();
  std::vector<uint8_t> dst(pages.size());
  std::vector<MemoryRegion> ram = {{0, dst.size(), dst.data()}};
  std::span<const uint8_t> payload(f.bytes.data() + kHeaderSize, f.payload_size());
  for (auto _ : state) benchmark::DoNotOptimize(decode_page_batch(payload, ram));
  state.SetBytesProcessed(state.iterations() * kBatchPages * kPageSize);
}
BENCHMARK_CAPTURE(BM_Decode, zero, Content::kZero, Compression::kLz4);
BENCHMARK_CAPTURE(BM_Decode, random_raw, Content::kRandom, Compression::kNone);
BENCHMARK_CAPTURE(BM_Decode, text_lz4, Content::kText, Compression::kLz4);

// The cost of "unchanged?" for a whole 1 GiB guest: xxh3 of every 4 KiB page.
void BM_Xxh3Scan1GiB(benchmark::State& state) {
  constexpr size_t kBytes = size_t{1} << 30;
  void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    state.SkipWithError("mmap 1 GiB failed");
    return;
  }
  auto* mem = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < kBytes; i += 64) mem[i] = static_cast<uint8_t>(i >> 12);
  for (auto _ : state) {
    uint64_t acc = 0;
    for (size_t off = 0; off < kBytes; off += kPageSize) acc ^= XXH3_64bits(mem + off, kPageSize);
    benchmark::DoNotOptimize(acc);
  }
  state.SetBytesProcessed(state.iterations() * kBytes);
  munmap(p, kBytes);
}
BENCHMARK(BM_Xxh3Scan1GiB)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace minihv::migrate
