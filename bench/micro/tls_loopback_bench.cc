// Loopback throughput of plain TCP against TLS 1.3 (common/tls.h: kernel TLS where the kernel has
// it, else user space; the label says which), on 1 and 4 streams, and the cost of one handshake.
#include <benchmark/benchmark.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/net.h"
#include "common/tls.h"

namespace minihv::tls {
namespace {

using namespace std::chrono_literals;
constexpr size_t kBytesPerIteration = 256u << 20;  // split over the streams
constexpr size_t kChunk = 1u << 20;

struct Pair {
  UniqueFd client, server;
};

Pair connected_pair() {
  auto l = net::listen_on({"127.0.0.1", 0});
  auto c = net::connect_to({"127.0.0.1", net::local_port(l->get())}, 1s);
  pollfd p{l->get(), POLLIN, 0};
  ::poll(&p, 1, 2000);
  return {std::move(c).value(), UniqueFd(::accept(l->get(), nullptr, nullptr))};
}

Psk bench_psk() {
  std::array<uint8_t, keys::kKeyBytes> bytes;
  bytes.fill(0x42);
  return {keys::Secret(bytes)};
}

// One stream: a TCP pair and, for TLS, a session on each end.
struct Stream {
  Pair fds;
  std::optional<Session> tx, rx;
};

Status secure(Stream& s) {
  const Psk psk = bench_psk();
  std::optional<Result<Session>> server;
  std::thread t([&] { server.emplace(handshake(s.fds.server.get(), Role::kServer, psk, Clock::now() + 5s)); });
  auto client = handshake(s.fds.client.get(), Role::kClient, psk, Clock::now() + 5s);
  t.join();
  if (!client) return client.status();
  if (!*server) return server->status();
  s.tx.emplace(std::move(client).value());
  s.rx.emplace(std::move(*server).value());
  return Status::ok();
}

void send_bytes(Stream& s, const std::string& chunk, size_t bytes) {
  for (size_t sent = 0; sent < bytes; sent += chunk.size()) {
    if (s.tx ? !s.tx->write_all(chunk) : !net::send_all(s.fds.client.get(), chunk)) return;
  }
}

void receive_bytes(Stream& s, size_t bytes) {
  std::vector<char> buf(kChunk);
  for (size_t got = 0; got < bytes;) {
    ssize_t n;
    if (s.rx) {
      auto r = s.rx->read(buf.data(), buf.size());
      n = r ? static_cast<ssize_t>(*r) : -1;
    } else {
      n = ::read(s.fds.server.get(), buf.data(), buf.size());
    }
    if (n <= 0) return;
    got += static_cast<size_t>(n);
  }
}

// Arg 0: streams; arg 1: 0 = plain TCP, 1 = TLS.
void BM_Loopback(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  std::vector<Stream> streams(n);
  for (Stream& s : streams) {
    s.fds = connected_pair();
    if (state.range(1)) {
      if (Status st = secure(s); !st) return state.SkipWithError(st.message().c_str());
    }
  }
  const std::string chunk(kChunk, 'm');
  const size_t per_stream = kBytesPerIteration / n;
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (Stream& s : streams) {
      threads.emplace_back([&] { receive_bytes(s, per_stream); });
      threads.emplace_back([&] { send_bytes(s, chunk, per_stream); });
    }
    for (auto& t : threads) t.join();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBytesPerIteration));
  state.SetLabel(state.range(1) ? streams[0].tx->describe() : "plain TCP");
}
BENCHMARK(BM_Loopback)
    ->ArgsProduct({{1, 4}, {0, 1}})
    ->ArgNames({"streams", "tls"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

// One handshake on a fresh TCP connection: both sides, the server's on a thread started for it
// (the thread's start is counted, the TCP connect is not).
void BM_TlsHandshake(benchmark::State& state) {
  for (auto _ : state) {
    Stream s;
    s.fds = connected_pair();
    const auto start = Clock::now();
    if (Status st = secure(s); !st) return state.SkipWithError(st.message().c_str());
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - start).count());
  }
}
BENCHMARK(BM_TlsHandshake)->Unit(benchmark::kMicrosecond)->UseManualTime()->MinTime(1.0);

}  // namespace
}  // namespace minihv::tls
