// Loopback throughput: plain TCP (the yardstick) against the migration pipeline — encode pages,
// send over N io_uring streams, validate and decode straight into the receiver's RAM.
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "migrate/codec.h"
#include "common/net.h"
#include "migrate/transport.h"

namespace minihv::migrate {
namespace {

using namespace std::chrono_literals;
constexpr size_t kRamBytes = 256u << 20;

std::vector<uint8_t> random_ram() {
  std::vector<uint8_t> v(kRamBytes);
  std::mt19937_64 rng(3);
  for (size_t i = 0; i + 8 <= v.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(&v[i], &r, 8);
  }
  return v;
}

// Plain blocking TCP over loopback, 1 MiB writes, one connection: what "loopback bandwidth" means.
void BM_TcpLoopback(benchmark::State& state) {
  auto l = net::listen_on({"127.0.0.1", 0});
  if (!l) return state.SkipWithError(l.message().c_str());
  const uint16_t port = net::local_port(l->get());
  std::vector<uint8_t> buf(1u << 20, 0x5A);
  auto c = net::connect_to({"127.0.0.1", port}, 1000ms);
  if (!c) return state.SkipWithError(c.message().c_str());
  int a;
  while ((a = ::accept(l->get(), nullptr, nullptr)) < 0) std::this_thread::yield();
  UniqueFd server(a);
  std::thread reader([&] {
    std::vector<uint8_t> in(1u << 20);
    while (::recv(server.get(), in.data(), in.size(), 0) > 0) {
    }
  });
  for (auto _ : state)
    for (size_t sent = 0; sent < kRamBytes;) {
      ssize_t n = ::send(c->get(), buf.data(), buf.size(), 0);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
  ::shutdown(c->get(), SHUT_WR);
  reader.join();
  state.SetBytesProcessed(state.iterations() * kRamBytes);
}
BENCHMARK(BM_TcpLoopback)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

// The whole pipeline on incompressible pages. Arg 0: streams; arg 1: 0 = none, 1 = lz4, 2 = auto.
void BM_MigratePipeline(benchmark::State& state) {
  const auto streams = static_cast<uint16_t>(state.range(0));
  const auto compression = static_cast<Compression>(state.range(1));
  static std::vector<uint8_t> src = random_ram();
  std::vector<uint8_t> dst(kRamBytes);
  std::vector<MemoryRegion> dst_ram = {{0, dst.size(), dst.data()}};

  auto l = Listener::listen({"127.0.0.1", 0});
  if (!l) return state.SkipWithError(l.message().c_str());
  std::thread receiver([&] {
    auto s = l->accept({}, 5000ms);
    if (!s) return;
    (void)(*s)->receive(
        [&](const FrameView& v) -> Result<Next> {
          if (v.type() == FrameType::kPages) {
            auto st = decode_page_batch(v.payload, dst_ram);
            if (!st) return st.status();
          } else if (v.type() == FrameType::kDirtyRoundEnd && v.header.stream == kControlStream) {
            MINIHV_TRY((*s)->send(kControlStream, make_ack()));  // every page of the pass is in
            MINIHV_TRY((*s)->flush());
          } else if (v.type() == FrameType::kCommit) {
            return Next::kStop;
          }
          return Next::kContinue;
        },
        30000ms);
  });

  TransportOptions o;
  o.streams = streams;
  const Endpoint target{"127.0.0.1", l->port()};
  auto s = Session::connect(std::span(&target, 1), o);
  if (!s) {
    receiver.join();
    return state.SkipWithError(s.message().c_str());
  }
  Session& tx = **s;
  CompressionChooser chooser;
  EncoderOptions eo;
  eo.compression = compression;
  std::vector<std::unique_ptr<PageBatchEncoder>> enc;
  for (uint16_t i = 0; i < streams; ++i) enc.push_back(std::make_unique<PageBatchEncoder>(eo, nullptr, &chooser));
  uint32_t round = 0;
  for (auto _ : state) {
    for (size_t off = 0; off < kRamBytes; off += kPageSize) {
      uint16_t k = stream_for_page(off, streams);
      (void)enc[k]->add(off, &src[off]);
      if (enc[k]->full()) {
        if (!tx.send(k, enc[k]->take_frame())) return state.SkipWithError("send failed");
        auto [bytes, secs] = tx.take_link_sample(k);
        chooser.observe_link(bytes, secs);
      }
    }
    for (uint16_t k = 0; k < streams; ++k)
      if (!enc[k]->empty() && !tx.send(k, enc[k]->take_frame())) return state.SkipWithError("send failed");
    (void)tx.send_round_end({round++, 0, 0, false});
    Status st = tx.receive([](const FrameView&) -> Result<Next> { return Next::kStop; }, 30000ms);
    if (!st) return state.SkipWithError(st.message().c_str());
  }
  (void)tx.send(kControlStream, make_commit());
  (void)tx.flush();
  receiver.join();
  state.SetBytesProcessed(state.iterations() * kRamBytes);
  state.counters["wire_per_ram"] =
      static_cast<double>(tx.stats().bytes_sent) / static_cast<double>(state.iterations() * kRamBytes);
  if (std::memcmp(src.data(), dst.data(), kRamBytes) != 0) state.SkipWithError("pages differ");
}
BENCHMARK(BM_MigratePipeline)
    ->ArgsProduct({{1, 2, 4}, {0}})
    ->Args({1, 2})
    ->Args({1, 1})
    ->ArgNames({"streams", "compress"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace
}  // namespace minihv::migrate
