// Machine state, dirty logging and throttling of real VMs in this process (Vm linked directly):
// VM A is paused, saved, its RAM copied into an incoming VM B, B restored and run — the guest's
// heartbeats must go on with seq +1 and errs=0 as if nothing happened.
#include <algorithm>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/harness/harness.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<Heartbeat> heartbeats(const std::string& text, int cpu) {
  std::vector<Heartbeat> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (auto hb = parse_heartbeat(line); hb && hb->cpu == cpu) out.push_back(*hb);
  return out;
}

// Waits until `cpu` printed at least `count` heartbeats (in the concatenation of `files`).
bool wait_heartbeats(const std::vector<std::string>& files, int cpu, size_t count, Clock::duration timeout) {
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    std::string text;
    for (const auto& f : files) text += read_file(f);
    if (heartbeats(text, cpu).size() >= count) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// seq rises by exactly one and errs stays 0 across the whole console text.
void expect_continuous(const std::string& text, int cpu, size_t min_count) {
  auto hbs = heartbeats(text, cpu);
  ASSERT_GE(hbs.size(), min_count) << "cpu " << cpu << ":\n" << text;
  for (size_t i = 0; i < hbs.size(); ++i) {
    EXPECT_EQ(hbs[i].errs, 0) << "cpu " << cpu << " seq " << hbs[i].seq << ":\n" << text;
    if (i) {
      EXPECT_EQ(hbs[i].seq, hbs[i - 1].seq + 1) << "cpu " << cpu << " heartbeat sequence broke:\n" << text;
    }
  }
  EXPECT_EQ(text.find("CORRUPT"), std::string::npos) << text;
  EXPECT_EQ(text.find("PANIC"), std::string::npos) << text;
}

// A VM and the thread that runs it.
struct Running {
  std::unique_ptr<Vm> vm;
  std::thread thread;
  int exit_status = -1;
  void start() {
    thread = std::thread([this] { exit_status = vm->run(); });
  }
  void stop() {
    if (!thread.joinable()) return;
    vm->stop();
    thread.join();
  }
  ~Running() { stop(); }
};

VmConfig config(const std::string& cmdline, const std::string& console, unsigned cpus = 2) {
  VmConfig c;
  c.kernel = testguest_elf();
  c.cmdline = cmdline;
  c.mem_bytes = 256ull << 20;
  c.cpus = cpus;
  c.console_path = console;
  return c;
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

TEST(MachineState, SaveRestoreIntoAnIncomingVmContinuesTheGuest) {
  TempDir dir;
  Running a;
  auto vm_a = Vm::create(config("dirty mib=64", dir.file("a.txt")));
  ASSERT_TRUE(vm_a) << vm_a.message();
  a.vm = std::move(vm_a).value();
  a.start();
  ASSERT_TRUE(wait_heartbeats({dir.file("a.txt")}, 0, 2, 30s)) << read_file(dir.file("a.txt"));
  ASSERT_TRUE(wait_heartbeats({dir.file("a.txt")}, 1, 2, 30s)) << read_file(dir.file("a.txt"));

  ASSERT_TRUE(a.vm->pause());
  auto t = Clock::now();
  auto saved = a.vm->save_machine();
  ASSERT_TRUE(saved) << saved.message();
  const double save_ms = ms_since(t);
  const auto blob = encode_machine_state(*saved);
  auto state = decode_machine_state(blob);
  ASSERT_TRUE(state) << state.message();

  Running b;
  t = Clock::now();
  auto vm_b = Vm::create_incoming(config("dirty mib=64", dir.file("b.txt")));
  ASSERT_TRUE(vm_b) << vm_b.message();
  const double create_ms = ms_since(t);
  b.vm = std::move(vm_b).value();
  const auto& ra = a.vm->memory().regions();
  const auto& rb = b.vm->memory().regions();
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    ASSERT_EQ(ra[i].size, rb[i].size);
    std::memcpy(rb[i].host, ra[i].host, ra[i].size);
  }
  t = Clock::now();
  Status restored = b.vm->restore_machine(*state);
  ASSERT_TRUE(restored) << restored.message();
  const double restore_ms = ms_since(t);
  a.stop();  // A never runs again: its paused vCPUs go straight to stopped
  EXPECT_EQ(a.exit_status, 0);
  std::printf("[ measured ] state blob %zu bytes for %zu vCPUs (%zu MSRs, xsave %zu bytes each); save %.2f ms, "
              "incoming VM %.1f ms, restore %.2f ms\n",
              blob.size(), state->cpus.size(), state->cpus[0].msrs.size(), state->cpus[0].xsave.size(), save_ms,
              create_ms, restore_ms);
  for (const auto& n : b.vm->restore_notes()) std::printf("[ note ] %s\n", n.c_str());

  const size_t before0 = heartbeats(read_file(dir.file("a.txt")), 0).size();
  const size_t before1 = heartbeats(read_file(dir.file("a.txt")), 1).size();
  b.start();
  const std::vector<std::string> both{dir.file("a.txt"), dir.file("b.txt")};
  EXPECT_TRUE(wait_heartbeats(both, 0, before0 + 3, 30s));
  EXPECT_TRUE(wait_heartbeats(both, 1, before1 + 3, 30s));
  b.stop();
  EXPECT_EQ(b.exit_status, 0);
  // The guest's console across both VMs (a line cut by the pause continues in B's file).
  const std::string text = read_file(dir.file("a.txt")) + read_file(dir.file("b.txt"));
  expect_continuous(text, 0, before0 + 3);
  expect_continuous(text, 1, before1 + 3);
  // The pause as the guest sees it: its TSC-based heartbeat clock across the hand-over.
  const auto hbs = heartbeats(text, 0);
  if (hbs.size() > before0) {
    const long gap = std::stol(hbs[before0].fields.at("ms")) - std::stol(hbs[before0 - 1].fields.at("ms"));
    std::printf("[ measured ] guest heartbeat gap across the hand-over: %ld ms (1000 = no visible pause); "
                "TSC offset attribute: %s\n", gap, state->cpus[0].has_tsc_offset ? "yes" : "no");
  }
}

TEST(MachineState, DiskGuestMovesWithItsVirtqueues) {
  TempDir dir;
  make_image(dir.file("disk.img"), 64ull << 20);
  auto cfg = [&](const std::string& console) {
    VmConfig c = config("disk", console);
    c.disks = {dir.file("disk.img")};
    return c;
  };
  Running a;
  auto vm_a = Vm::create(cfg(dir.file("a.txt")));
  ASSERT_TRUE(vm_a) << vm_a.message();
  a.vm = std::move(vm_a).value();
  a.start();
  ASSERT_TRUE(wait_heartbeats({dir.file("a.txt")}, 0, 2, 30s)) << read_file(dir.file("a.txt"));
  ASSERT_TRUE(a.vm->pause());
  auto saved = a.vm->save_machine();
  ASSERT_TRUE(saved) << saved.message();
  auto state = decode_machine_state(encode_machine_state(*saved));
  ASSERT_TRUE(state) << state.message();
  Running b;
  auto vm_b = Vm::create_incoming(cfg(dir.file("b.txt")));
  ASSERT_TRUE(vm_b) << vm_b.message();
  b.vm = std::move(vm_b).value();
  for (size_t i = 0; i < a.vm->memory().regions().size(); ++i)
    std::memcpy(b.vm->memory().regions()[i].host, a.vm->memory().regions()[i].host, a.vm->memory().regions()[i].size);
  ASSERT_TRUE(b.vm->restore_machine(*state));
  EXPECT_FALSE(b.vm->restore_machine(*state)) << "a second restore must be refused";
  a.stop();
  const auto before = heartbeats(read_file(dir.file("a.txt")), 0);
  const long rec_before = std::stol(before.back().fields.at("rec"));
  b.start();
  const std::vector<std::string> both{dir.file("a.txt"), dir.file("b.txt")};
  EXPECT_TRUE(wait_heartbeats(both, 0, before.size() + 3, 30s));
  b.stop();
  const std::string text = read_file(dir.file("a.txt")) + read_file(dir.file("b.txt"));
  expect_continuous(text, 0, before.size() + 3);
  const long rec_after = std::stol(heartbeats(text, 0).back().fields.at("rec"));
  EXPECT_GT(rec_after, rec_before) << "the disk workload must go on writing on the destination:\n" << text;
  EXPECT_EQ(text.find("ioerr"), std::string::npos) << text;
}

size_t count_bits(std::span<const uint64_t> words, uint64_t first_page, uint64_t end_page) {
  size_t n = 0;
  for (uint64_t p = first_page; p < end_page; ++p) n += (words[p / 64] >> (p % 64)) & 1;
  return n;
}

TEST(DirtyLog, HarvestSeesGuestAndDeviceWritesAndNothingElse) {
  TempDir dir;
  Running r;
  auto vm = Vm::create(config("dirty mib=64", dir.file("c.txt")));
  ASSERT_TRUE(vm) << vm.message();
  r.vm = std::move(vm).value();
  r.start();
  // Past the first pass: every page of the working set has been written once.
  ASSERT_TRUE(wait_heartbeats({dir.file("c.txt")}, 0, 2, 30s)) << read_file(dir.file("c.txt"));
  ASSERT_TRUE(r.vm->start_dirty_log());
  EXPECT_FALSE(r.vm->start_dirty_log()) << "a second start must be refused";
  std::vector<uint64_t> bm(r.vm->dirty_bitmap_words(0));
  ASSERT_TRUE(r.vm->harvest_dirty(0, bm));  // with INITIALLY_SET: everything, once
  std::this_thread::sleep_for(300ms);
  constexpr uint64_t kPage = layout::kPageSize, kMiB = layout::kMiB;
  const uint64_t untouched = 128 * kMiB;  // the working set is 6..70 MiB; nothing lives up here
  const uint64_t probe = 200 * kMiB + 3 * kPage;
  const uint64_t value = 0x5eed;
  ASSERT_TRUE(r.vm->memory().write(probe, &value, sizeof value));  // as a device would
  auto t = Clock::now();
  ASSERT_TRUE(r.vm->harvest_dirty(0, bm));
  const double harvest_ms = ms_since(t);
  const size_t work = count_bits(bm, 6 * kMiB / kPage, 70 * kMiB / kPage);
  const size_t high = count_bits(bm, untouched / kPage, 256 * kMiB / kPage);
  std::printf("[ measured ] 300 ms of `dirty`: %zu dirty pages in the working set, %zu above 128 MiB; harvest of "
              "256 MiB %.2f ms\n", work, high, harvest_ms);
  EXPECT_GT(work, 1000u) << "the guest rewrites its working set all the time";
  EXPECT_EQ(high, 1u) << "only the device write lands above 128 MiB";
  EXPECT_EQ((bm[probe / kPage / 64] >> (probe / kPage % 64)) & 1, 1u) << "the device write must show";
  // A third harvest right away: the device bit was taken and does not come back by itself.
  ASSERT_TRUE(r.vm->harvest_dirty(0, bm));
  EXPECT_EQ((bm[probe / kPage / 64] >> (probe / kPage % 64)) & 1, 0u);
  std::vector<uint64_t> small(3);
  EXPECT_FALSE(r.vm->harvest_dirty(0, small));
  EXPECT_FALSE(r.vm->harvest_dirty(5, bm));
  ASSERT_TRUE(r.vm->stop_dirty_log());
  EXPECT_FALSE(r.vm->harvest_dirty(0, bm)) << "harvest without dirty logging must fail";
  r.stop();
  expect_continuous(read_file(dir.file("c.txt")), 0, 2);
}

long pps_of(const Heartbeat& hb) { return std::stol(hb.fields.at("pps")); }

TEST(Throttle, SlowsTheGuestAndLetsGo) {
  TempDir dir;
  Running r;
  auto vm = Vm::create(config("dirty mib=16", dir.file("t.txt"), 1));
  ASSERT_TRUE(vm) << vm.message();
  r.vm = std::move(vm).value();
  r.start();
  const std::vector<std::string> f{dir.file("t.txt")};
  ASSERT_TRUE(wait_heartbeats(f, 0, 4, 30s)) << read_file(f[0]);
  // Rates are compared on the best second of each phase (skipping the one the change fell in):
  // the host is a shared 2-core machine and any single second may lose the core.
  auto best_pps = [&](size_t from, size_t to) {
    long best = 0;
    const auto hbs = heartbeats(read_file(f[0]), 0);
    for (size_t i = from; i < to && i < hbs.size(); ++i) best = std::max(best, pps_of(hbs[i]));
    return best;
  };
  const long free_pps = best_pps(1, 4);
  r.vm->set_throttle(90);
  const size_t n = heartbeats(read_file(f[0]), 0).size();
  ASSERT_TRUE(wait_heartbeats(f, 0, n + 4, 30s));
  const long slow_pps = best_pps(n + 1, n + 4);
  r.vm->set_throttle(0);
  ASSERT_TRUE(wait_heartbeats(f, 0, n + 8, 30s));
  const long again_pps = best_pps(n + 5, n + 8);
  std::printf("[ measured ] pps free %ld, throttled 90%% %ld, released %ld\n", free_pps, slow_pps, again_pps);
  EXPECT_LT(slow_pps, free_pps / 3);
  EXPECT_GT(again_pps, slow_pps * 2);
  r.stop();
  expect_continuous(read_file(f[0]), 0, n + 8);
}

TEST(MachineState, FailedMigrationRehearsalResumesTheGuestAndItsDisk) {
  TempDir dir;
  make_image(dir.file("disk.img"), 64ull << 20);
  VmConfig c = config("disk", dir.file("d.txt"));
  c.disks = {dir.file("disk.img")};
  Running r;
  auto vm = Vm::create(c);
  ASSERT_TRUE(vm) << vm.message();
  r.vm = std::move(vm).value();
  r.start();
  const std::vector<std::string> f{dir.file("d.txt")};
  ASSERT_TRUE(wait_heartbeats(f, 0, 2, 30s)) << read_file(f[0]);
  // virtio-blk reads land in guest memory through the device dirty bitmap.
  std::vector<uint64_t> dev(r.vm->dirty_bitmap_words(0));
  r.vm->memory().take_device_dirty(0, dev);
  EXPECT_GT(count_bits(dev, 0, r.vm->memory().regions()[0].size / layout::kPageSize), 0u)
      << "virtio-blk must mark the pages it writes";

  ASSERT_TRUE(r.vm->pause());
  auto saved = r.vm->save_machine();
  ASSERT_TRUE(saved) << saved.message();
  EXPECT_EQ(saved->devices.virtio.size(), 1u);
  EXPECT_FALSE(r.vm->restore_machine(*saved)) << "only an incoming VM may be restored";
  const auto hbs = heartbeats(read_file(f[0]), 0);
  const long rec_before = std::stol(hbs.back().fields.at("rec"));
  ASSERT_TRUE(r.vm->resume());
  ASSERT_TRUE(wait_heartbeats(f, 0, hbs.size() + 3, 30s)) << read_file(f[0]);
  const long rec_after = std::stol(heartbeats(read_file(f[0]), 0).back().fields.at("rec"));
  EXPECT_GT(rec_after, rec_before) << "the disk workload must keep writing after the rehearsal";
  r.stop();
  expect_continuous(read_file(f[0]), 0, hbs.size() + 3);
  expect_continuous(read_file(f[0]), 1, 2);
}

}  // namespace
}  // namespace minihv::test
