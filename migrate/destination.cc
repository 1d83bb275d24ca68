// migrate/destination.cc — the receiving side of a live migration, and the checks before any
// page moves.
#include <poll.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "common/ether.h"
#include "common/log.h"
#include "cpuid/baseline.h"
#include "cpuid/host.h"
#include "cpuid/profile_json.h"
#include "migrate/frames.h"
#include "migrate/in_doubt.h"
#include "migrate/test_hooks.h"
#include "migrate/migration.h"
#include "migrate/receive_order.h"
#include "migrate/verify.h"
#include "migrate/workers.h"
#include "vmm/machine_state.h"

namespace minihv::migrate {

namespace {

// Longest silence from a source in the middle of a migration before we call it dead.
constexpr auto kIoTimeout = std::chrono::seconds(60);

bool cancelled(int cancel_fd) {
  if (cancel_fd < 0) return false;
  pollfd p{cancel_fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Why this host cannot run the source's CPU profile ("" when it can). Compares with what a guest
// here can really execute (cpuid::capability: the processor itself where CPUID is advisory).
std::string check_cpu(const std::string& profile_json) {
  auto j = nlohmann::json::parse(profile_json, nullptr, false);
  if (j.is_discarded() || j.is_null()) return "";  // a source without a CPU profile: nothing to check
  auto guest = cpuid::profile_from_json(j, "the source VM's CPU profile");
  if (!guest) return "unreadable CPU profile from the source: " + guest.message();
  cpuid::Profile here;
  if (auto fake = host_cpu_profile_from_env()) {
    auto p = cpuid::load_profile(*fake);
    if (!p) return "test host CPU profile: " + p.message();
    here = *p;
  } else {
    auto host = cpuid::read_host_cpu();
    if (!host) return "cannot read this host's CPUID: " + host.message();
    here = cpuid::capability(*host);
  }
  cpuid::Comparison c = cpuid::compare(*guest, here);
  return c.compatible() ? "" : "CPU incompatible: " + c.describe();
}

class DestinationRun {
public:
  DestinationRun(Vm& vm, Session& s, const ProgressFn& progress)
      : vm_(vm), s_(s), progress_(progress), order_(s.streams()) {}

  // Only frames that may come now get here (ReceiveOrder); any other is a protocol error, which
  // migrate_in sends back as ABORT. Runs on the thread of the stream the frame came on: pages and
  // round ends on every stream's, the conversation (HELLO, STATE, VERIFY, COMMIT) on stream 0's.
  // A stream other than 0 is done after its final round end.
  Result<Next> on_frame(const FrameView& v) {
    if (v.type() != FrameType::kRawPages) MINIHV_TRY(accept(v));  // RAW_PAGES: in place_pages
    switch (v.type()) {
      case FrameType::kRawPages: {
        auto h = parse_raw_pages(v);
        if (!h) return h.status();
        MINIHV_TRY(check_raw_pages(*h, vm_.memory().regions()).context("stream " + std::to_string(v.header.stream)));
        return Next::kContinue;
      }
      case FrameType::kHello: return on_hello(v);
      case FrameType::kPages: {
        auto st = decode_page_batch(v.payload, vm_.memory(), &*zero_, affinity(v));
        if (!st) return st.status().context("stream " + std::to_string(v.header.stream));
        return Next::kContinue;
      }
      case FrameType::kDirtyRoundEnd: {
        auto r = parse_round_end(v);
        if (!r) return r.status();
        if (v.header.stream != kControlStream) return r->last ? Next::kStop : Next::kContinue;
        // Stream 0's round end comes after every other stream's (the barrier): the round is in.
        progress_({{"event", "round"}, {"round", r->round}});
        if (r->last && vm_.nic_count() == 0) return Next::kContinue;
        // The last round ends the source's pause-time pages: the guest is paused there, so the
        // network may send its frames here now; the source holds what reached it until our
        // ROUND_ACK and sends that along (VirtioNet::hold_arrivals), so nothing is lost between.
        if (r->last) vm_.announce_nics_once();
        MINIHV_TRY(s_.send(kControlStream, make_round_ack({r->round})));
        MINIHV_TRY(s_.flush());
        return Next::kContinue;
      }
      case FrameType::kState: return on_state(v);
      case FrameType::kVerify: return on_verify(v);
      case FrameType::kCommit: return on_commit();
      case FrameType::kAbort: {
        auto a = parse_abort(v);
        return Status::error("the source aborted the migration: " + (a ? a->reason : std::string("(unreadable reason)")));
      }
      default:
        return Status::error("protocol error: unexpected " + std::string(frame_type_name(v.type())));
    }
  }

  // Where a RAW_PAGES frame's pages go: checked for order and place before a byte of guest memory
  // is written (the transport then receives them there).
  Result<std::vector<uint8_t*>> place_pages(const FrameView& v) {
    MINIHV_TRY(accept(v));
    auto h = parse_raw_pages(v);
    if (!h) return h.status();
    return place_raw_pages(*h, vm_.memory().regions(), &*zero_, affinity(v));
  }

private:
  Status accept(const FrameView& v) {
    std::lock_guard lock(order_mu_);
    return order_.accept(v);
  }

  // Pages may come only on their own stream: then no two streams' threads write one page (or one
  // word of ZeroPages).
  Affinity affinity(const FrameView& v) const { return {v.header.stream, s_.streams()}; }

  Result<Next> on_hello(const FrameView& v) {
    auto h = parse_hello(v);
    if (!h) return h.status();
    auto source = nlohmann::json::parse(h->vm_json, nullptr, false);
    // What was given here must match the source; what was not is taken from it.
    std::string why = source.is_discarded() ? "unreadable VM description" : check_vm_fits(source, describe_vm(vm_));
    if (why.empty()) why = size_from(source);
    if (why.empty()) why = check_vm_fits(source, describe_vm(vm_));  // now the exact layout too
    if (why.empty()) why = check_cpu(h->cpu_profile_json);
    if (why.empty()) why = adopt_nics(source);
    if (why.empty()) {
      // Memory first, then the answer: the source sends pages once it has it, and the other
      // streams' threads write them into this memory (ReceiveOrder refuses any page before).
      prepare_memory();
      std::lock_guard lock(order_mu_);
      order_.hello_answered();
    }
    MINIHV_TRY(s_.send(kControlStream, make_hello_reply({why.empty(), why})));
    MINIHV_TRY(s_.flush());
    if (!why.empty()) return Status::error("refused the incoming VM: " + why);
    progress_({{"event", "accepted"}, {"peer", s_.peer()}});
    return Next::kContinue;
  }

  // The guest keeps its MACs: this VM's NICs take them before a page moves, so the RARP that
  // goes out when the source pauses (on_round_end) already names the guest.
  std::string adopt_nics(const nlohmann::json& source) {
    const auto nics = source.value("nics", nlohmann::json::array());
    if (!nics.is_array()) return "unreadable NIC list";
    std::vector<MacAddress> macs;
    for (const auto& m : nics) {
      auto mac = m.is_string() ? parse_mac(m.get<std::string>()) : Result<MacAddress>(Status::error("not a string"));
      if (!mac) return "unreadable MAC of NIC " + std::to_string(macs.size()) + ": " + mac.message();
      macs.push_back(*mac);
    }
    const Status st = vm_.adopt_nic_macs(macs);
    return st ? "" : st.message();
  }

  // An incoming VM started without --mem/--cpus/--cpu-model is built now, as the source describes it.
  std::string size_from(const nlohmann::json& source) {
    if (vm_.sized()) return "";
    const auto mem = source.value("mem_bytes", uint64_t{0});
    const auto cpus = source.value("cpus", 0u);
    Status st = vm_.size_incoming(mem, cpus, portable_cpu_model(source.value("cpu_model", "")));
    if (!st) return "cannot build the VM here: " + st.message();
    progress_({{"event", "sized"}, {"mem_bytes", vm_.configured_mem_bytes()}, {"cpus", vm_.configured_cpus()},
               {"cpu_model", vm_.configured_cpu_model()}});
    return "";
  }

  // What building the VM wrote is replaced by the source's RAM. A kernel that cannot discard this
  // RAM (hugetlb before Linux 5.18) only costs the zero fast path: every zero page is then checked.
  void prepare_memory() {
    const Status discarded = vm_.memory().discard();
    if (!discarded) LOG_WARN("incoming: %s: zero pages will be checked one by one", discarded.message().c_str());
    zero_.emplace(vm_.memory().regions(), discarded.is_ok());
  }

  Result<Next> on_state(const FrameView& v) {
    auto done = state_.add(v);
    if (!done) return done.status();
    if (!*done) return Next::kContinue;
    auto st = decode_machine_state(state_.take());
    if (!st) return st.status().context("machine state from the source");
    MINIHV_TRY(vm_.restore_machine(*st));
    for (const auto& note : vm_.restore_notes()) LOG_WARN("restore: %s", note.c_str());
    restored_ = true;
    return Next::kContinue;
  }

  Result<Next> on_verify(const FrameView& v) {
    auto expected = parse_verify(v);
    if (!expected) return expected.status();
    auto bad = compare_ram(vm_.memory().regions(), *expected);
    if (!bad) return bad.status();
    MINIHV_TRY(s_.send(kControlStream, make_verify_reply(*bad)));
    MINIHV_TRY(s_.flush());
    if (!bad->empty()) return Status::error("memory verification failed: " + std::to_string(bad->size()) + " range(s) differ");
    progress_({{"event", "verified"}});
    return Next::kContinue;
  }

  Result<Next> on_commit() {
    if (!restored_) return Status::error("protocol error: COMMIT before the machine state");
    if (refuse_commit_from_env()) return Status::error("test hook: refusing COMMIT");
    if (auto hold = hold_before_ack_ms_from_env()) {
      std::fprintf(stderr, "minihv: test hook: holding the ACK for %llu ms\n", static_cast<unsigned long long>(*hold));
      std::this_thread::sleep_for(std::chrono::milliseconds(*hold));
    }
    if (drop_ack_from_env()) {
      std::fprintf(stderr, "minihv: test hook: dropping the ACK\n");
      return Next::kStop;  // the session closes without it, as if it were lost on the way
    }
    // The ACK carries the nonces the source hands our disks' leases over with (Vm::acquire_disk_leases
    // adopts them): asked for now, before it goes out.
    const Vm::LeaseHandOver h = vm_.expect_lease_hand_over();
    MINIHV_TRY(s_.send(kControlStream, make_ack({h.owner, h.nonces})));
    MINIHV_TRY(s_.flush());
    return Next::kStop;
  }

  Vm& vm_;
  Session& s_;
  const ProgressFn& progress_;
  // Each 64-page word is one stream's: written by that stream's thread only. Set when HELLO is
  // accepted (the VM's memory may only exist from then on), before ReceiveOrder takes any page
  // frame: order_mu_ orders this write before every other stream's first read.
  std::optional<ZeroPages> zero_;
  std::mutex order_mu_;
  ReceiveOrder order_;  // one order for every stream: guarded by order_mu_
  StateAssembler state_;
  bool restored_ = false;
};

}  // namespace

Result<std::unique_ptr<CommitWitness>> migrate_in(Vm& vm, const DestinationOptions& options,
                                                  const ProgressFn& progress) {
  if (options.psk) MINIHV_TRY(tls::prepare(tls::Role::kServer));  // while nobody waits for it
  auto listener = Listener::listen(options.listen);
  if (!listener) return listener.status().context("--incoming " + options.listen.text());
  progress({{"event", "listening"}, {"address", options.listen.host + ":" + std::to_string(listener->port())}});
  TransportOptions t;
  t.io_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kIoTimeout);
  t.psk = options.psk;
  auto session = listener->accept(t, options.accept_timeout, options.cancel_fd);
  if (!session) return session.status();
  progress({{"event", "connected"},
            {"peer", (*session)->peer()},
            {"tls", (*session)->tls()},
            {"handshake_ms", (*session)->handshake_ms()}});
  if (cancelled(options.cancel_fd)) {  // a stop that came while the streams connected
    (void)(*session)->send(kControlStream, make_abort({"the destination was stopped before the migration began"}));
    (void)(*session)->flush();
    return Status::error(kAcceptCancelled);
  }
  DestinationRun run(vm, **session, progress);
  (*session)->set_attachment_sink([&](const FrameView& v) { return run.place_pages(v); });
  // Stream 0 on this thread, every other stream on a worker of its own: each receives and decodes
  // its pages; stream 0's round end waits for theirs (the barrier), and carries the conversation.
  const auto io_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kIoTimeout);
  auto on_frame = [&](const FrameView& v) { return run.on_frame(v); };
  StreamWorkers receivers(1, static_cast<uint16_t>((*session)->streams() - 1), "mig-rx");
  receivers.start([&](uint16_t stream) {
    Status st = (*session)->receive_stream(stream, on_frame, io_timeout);
    if (!st) (*session)->stop(st);  // the other streams end too
    return st;
  });
  Status st = (*session)->receive_stream(kControlStream, on_frame, io_timeout);
  if (!st) (*session)->stop(st);
  Status workers = receivers.wait();
  if (st && !workers) st = workers;
  if (!st) {
    (void)(*session)->send(kControlStream, make_abort({st.message()}));
    (void)(*session)->flush();
    return st;
  }
  // Committed: from now on this process answers a source that asks whether it did (in_doubt.h).
  // The session closes on the witness's thread while the VM starts here; nothing of it may reach
  // `run` (ours, gone on return) meanwhile.
  (*session)->set_attachment_sink(nullptr);
  const uint64_t id = (*session)->session_id();
  const auto silent = std::chrono::milliseconds(witness_silent_ms_from_env().value_or(0));
  return CommitWitness::start(std::move(*listener), id, options.psk, silent, std::move(*session));
}

nlohmann::json describe_vm(const Vm& vm) {
  nlohmann::json d{{"mem_bytes", vm.configured_mem_bytes()},
                   {"cpus", vm.configured_cpus()},
                   {"cpu_model", vm.configured_cpu_model()},
                   {"disks", vm.disk_count()}};
  if (!vm.sized()) return d;  // an incoming VM that takes its size from the source: no layout yet
  nlohmann::json nics = nlohmann::json::array();
  for (const MacAddress& m : vm.nic_macs()) nics.push_back(format_mac(m));
  d["nics"] = nics;
  nlohmann::json regions = nlohmann::json::array();
  for (const MemoryRegion& r : vm.memory().regions()) regions.push_back({{"gpa", r.gpa}, {"size", r.size}});
  d["regions"] = regions;
  return d;
}

std::string portable_cpu_model(const std::string& model) {
  // A profile file's path means nothing on another host (the guest's CPUID comes with its vCPU
  // state either way): such a VM is built with the default model here.
  if (model.empty() || model.find('/') != std::string::npos || model.ends_with(".json")) return "";
  return model;
}

std::string check_vm_fits(const nlohmann::json& source, const nlohmann::json& local) {
  auto num = [](const nlohmann::json& j, const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<uint64_t>() : 0; };
  // 0 here: not given, taken from the source.
  const uint64_t mem = num(local, "mem_bytes"), cpus = num(local, "cpus");
  if (mem && num(source, "mem_bytes") != mem)
    return "the VM has " + std::to_string(num(source, "mem_bytes") >> 20) + " MiB of memory, this destination " +
           std::to_string(mem >> 20) + " MiB (start it with the same --mem, or none)";
  if (local.contains("regions") && source.value("regions", nlohmann::json()) != local["regions"])
    return "the guest memory layout differs";
  if (cpus && num(source, "cpus") != cpus)
    return "the VM has " + std::to_string(num(source, "cpus")) + " vCPUs, this destination " +
           std::to_string(cpus) + " (start it with the same --cpus, or none)";
  if (num(source, "disks") != num(local, "disks"))
    return "the VM has " + std::to_string(num(source, "disks")) + " disk(s), this destination " +
           std::to_string(num(local, "disks")) + " (give the incoming VM one --disk for each of the source's)";
  return "";
}

}  // namespace minihv::migrate
