// migrate/source.cc — the sending side of a live migration: pre-copy rounds, then switchover.
#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "common/log.h"
#include "migrate/frames.h"
#include "migrate/migration.h"
#include "migrate/test_hooks.h"
#include "migrate/verify.h"
#include "migrate/workers.h"
#include "vmm/machine_state.h"

namespace minihv::migrate {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = kPageSize;
constexpr auto kReplyTimeout = std::chrono::seconds(30);
// The ACK needs nothing from the destination but a send (it has the whole state by COMMIT): one
// that does not come this soon is lost, and the switchover is in doubt (in_doubt.h).
constexpr auto kAckTimeout = std::chrono::seconds(10);
// After COMMIT could not be sent: how long stream 0 may still bring the ABORT the destination sent first.
constexpr auto kAbortGrace = std::chrono::milliseconds(1000);
// Then each target is asked whether it committed, this long each, this many times.
constexpr auto kAskTimeout = std::chrono::seconds(2);
constexpr unsigned kAskAttempts = 2;
// Auto-converge: a round that does not shrink the dirty set below this share of the previous one
// counts as "not converging"; two in a row raise the throttle one step.
constexpr double kShrinkFactor = 0.9;
constexpr unsigned kThrottleSteps[] = {20, 40, 60, 80, 95};
// A dirty round lasts at least this long: a round that took microseconds would see almost nothing
// dirty (or nothing at all while the vCPU thread waits for a core) and switch over on a false
// reading of the dirty rate.
constexpr auto kMinRound = std::chrono::milliseconds(50);
// Below this hit rate, hashing every dirty page for the "unchanged" check costs more than it saves
// (a hash costs ~5 % of sending the page raw over a fast link); judged on at least this many pages.
constexpr double kMinUnchangedHitRate = 0.05;
constexpr uint64_t kMinHashedToJudge = 256;
// The switchover beyond the last page: the machine state (tens of KiB), the destination's restore
// and the COMMIT/ACK round trip: 0.3 ms at best on loopback here (downtime_parts in --json). The
// best case, so that a target of 1 ms can still be met by a throttled guest.
constexpr double kSwitchoverFixedMs = 0.3;

// What moving one dirty page has cost end to end in the rounds so far — zero check, hash,
// compression, framing, and the send with the destination's backpressure — in seconds per page.
// The estimate is the worse of the last two rounds (one may be lucky); before any round, a
// pessimistic prior (4 KiB at ~200 MB/s: lz4 of incompressible pages on a slow core).
class PageCost {
public:
  static constexpr double kPriorSecondsPerPage = 20e-6;
  static constexpr uint64_t kMinPagesToMeasure = 64;
  void observe(uint64_t pages, double seconds) {
    if (pages < kMinPagesToMeasure) return;
    older_ = last_;
    last_ = seconds / static_cast<double>(pages);
  }
  double seconds_per_page() const { return last_ > 0 ? std::max(last_, older_) : kPriorSecondsPerPage; }

private:
  double last_ = 0, older_ = 0;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
uint64_t ms_since(Clock::time_point t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

// --max-bandwidth: one stream's share of the limit. After each frame the stream sleeps until its
// bytes of this round could have gone at that rate; the final round (VM paused) goes at full speed.
class Pacer {
public:
  explicit Pacer(double bytes_per_second) : rate_(bytes_per_second) {}

  void sent(uint64_t bytes) {
    if (rate_ <= 0 || off_) return;
    if (due_ == 0) start_ = Clock::now();
    due_ += static_cast<double>(bytes) / rate_;
    std::this_thread::sleep_until(start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(due_)));
  }
  void round_done() { due_ = 0; }  // the time between rounds is no credit for the next
  void set_off(bool off) { off_ = off; }

private:
  const double rate_;
  bool off_ = false;
  double due_ = 0;  // seconds this round's bytes take at the rate
  Clock::time_point start_{};
};

// One stream's share of the pages, on that stream's worker thread: encodes them into batches and
// sends full ones. A page always goes on stream_for_page(gpa), so its copies stay in order.
class StreamSender {
public:
  StreamSender(Session& session, uint16_t stream, const SourceOptions& o, PageHashTable& hashes)
      : session_(session), stream_(stream), enc_(encoder_options(o), &hashes, &chooser_),
        pacer_(static_cast<double>(o.max_bandwidth) / std::max<uint16_t>(o.streams, 1)) {}

  // `page` null: a page known to be zero (untouched), not read.
  Status send(uint64_t gpa, const uint8_t* page) {
    auto outcome = page ? enc_.add(gpa, page) : enc_.add_known_zero(gpa);
    if (!outcome) return outcome.status();
    if (enc_.full()) MINIHV_TRY(ship(enc_.take_frame()));
    if (enc_.raw_full()) MINIHV_TRY(ship(enc_.take_raw_frame()));
    return Status::ok();
  }

  // Sends what is batched and waits until the kernel has it all.
  Status finish() {
    if (!enc_.empty()) MINIHV_TRY(ship(enc_.take_frame()));
    if (!enc_.raw_empty()) MINIHV_TRY(ship(enc_.take_raw_frame()));
    pacer_.round_done();
    return session_.flush_stream(stream_);
  }

  // Set by the migration thread between rounds (see PageBatchEncoder).
  void set_paused(bool paused) {
    enc_.set_paused(paused);
    pacer_.set_off(paused);
  }
  void set_hash_unchanged(bool on) { enc_.set_hash_unchanged(on); }
  const CodecStats& stats() const { return enc_.stats(); }

private:
  static EncoderOptions encoder_options(const SourceOptions& o) {
    EncoderOptions eo;
    eo.compression = o.compression;
    eo.zero_copy = o.zero_copy;
    return eo;
  }

  Status ship(Frame f) {
    session_.count_pages(stream_, f.pages);
    const uint64_t wire_bytes = f.wire_size();
    MINIHV_TRY(session_.send(stream_, std::move(f)));
    pacer_.sent(wire_bytes);
    // `--compress auto` weighs this stream's share of the link against its own codec.
    if (++shipped_ % kLinkSampleEvery == 0) {
      auto [bytes, seconds] = session_.take_link_sample(stream_);
      if (seconds > 0) chooser_.observe_link(bytes, seconds);
    }
    return Status::ok();
  }

  static constexpr unsigned kLinkSampleEvery = 8;  // frames (~8 MiB) between link measurements

  Session& session_;
  const uint16_t stream_;
  CompressionChooser chooser_;
  PageBatchEncoder enc_;
  Pacer pacer_;
  uint64_t shipped_ = 0;
};

// Pending pages are one bit per page; a bitmap word is one affinity chunk, so one stream's.
static_assert((uint64_t{64} << kPageShift) == (uint64_t{1} << kAffinityShift), "a bitmap word is one chunk");

// One migration attempt's state; every step returns a Status and the caller rolls back on error.
class SourceRun {
public:
  SourceRun(Vm& vm, const SourceOptions& o, const ProgressFn& progress, Summary& sum)
      : vm_(vm), o_(o), progress_(progress), sum_(sum), hashes_(vm.memory().regions()) {}

  Status run() {
    start_ = Clock::now();
    MINIHV_TRY(connect());
    MINIHV_TRY(hello());
    MINIHV_TRY(send_out_of_order("after-hello"));
    sum_.setup_ms = ms_since(start_);
    MINIHV_TRY(vm_.start_dirty_log());
    sum_.dirty_log.method = vm_.dirty_log_method();
    logging_ = true;
    // The log starts with every page marked (KVM_DIRTY_LOG_INITIALLY_SET): clear it, so that the
    // first round after the full pass holds only what the guest wrote during it, not all of RAM.
    MINIHV_TRY(harvest().status());
    for (auto& bm : bitmaps_) std::fill(bm.begin(), bm.end(), 0);
    last_round_ = Clock::now();
    MINIHV_TRY(full_pass());
    MINIHV_TRY(send_out_of_order("after-full-pass"));
    MINIHV_TRY(dirty_rounds());
    return switchover();
  }

  // COMMIT went out and nothing proves the destination did not take it: the VM must not run here.
  bool in_doubt() const { return committed_; }

  // In doubt: the VM stays paused here (the destination may run it); logging and throttle end.
  void leave_paused() {
    vm_.set_throttle(0);
    if (logging_) (void)vm_.stop_dirty_log();
    sum_.session_id = session_ ? session_->session_id() : 0;
  }

  // Puts the VM back as it was: running here, no logging, no throttle. Safe to call at any point
  // before COMMIT, or after it once the destination is known not to run the VM.
  void rollback(const std::string& why) {
    if (session_) {
      (void)session_->send(kControlStream, make_abort({why}));
      (void)session_->flush();
    }
    if (paused_) {
      Status s = vm_.resume();
      if (!s) LOG_ERROR("migration rollback: resume failed: %s", s.message().c_str());
      vm_.announce_nics();  // the destination may have announced the guest already
    }
    vm_.set_throttle(0);
    if (logging_) (void)vm_.stop_dirty_log();
  }

  void finish_stats() {
    sum_.pages = page_stats();
    if (session_) {
      sum_.bytes_sent = session_->stats().bytes_sent;
      sum_.streams = session_->streams();
    }
    sum_.throughput_mbps = send_seconds_ > 0 ? sum_.bytes_sent * 8 / send_seconds_ / 1e6 : 0;
    sum_.total_ms = ms_since(start_);
  }

private:
  Status connect() {
    TransportOptions t;
    t.streams = o_.streams;
    t.psk = o_.psk;
    auto s = Session::connect(o_.targets, t, &sum_.tried);
    for (const auto& a : sum_.tried)
      if (!a.result) progress_({{"event", "target_skipped"}, {"address", a.address}, {"error", a.result.message()}});
    if (!s) return s.status();
    session_ = std::move(s).value();
    sum_.target = session_->peer();
    sum_.tls = session_->tls();
    sum_.handshake_ms = session_->handshake_ms();
    for (uint16_t i = 0; i < session_->streams(); ++i) {
      senders_.push_back(std::make_unique<StreamSender>(*session_, i, o_, hashes_));
      // "Unchanged" hashing starts off: its 1-in-16 sample turns it on once it is seen to pay
      // (adapt_hashing). Off, raw pages go zero-copy — the full pass, the biggest round, included.
      senders_.back()->set_hash_unchanged(false);
    }
    workers_ = std::make_unique<StreamWorkers>(0, session_->streams(), "mig-tx");
    return Status::ok();
  }

  Status hello() {
    const nlohmann::json status = vm_.status();
    Hello h{describe_vm(vm_).dump(), status.contains("cpu") ? status["cpu"].value("profile", nlohmann::json()).dump() : "null"};
    MINIHV_TRY(session_->send(kControlStream, make_hello(h)));
    MINIHV_TRY(session_->flush());
    MINIHV_TRY(send_out_of_order("before-hello-reply"));
    std::optional<HelloReply> reply;
    MINIHV_TRY(wait_for(FrameType::kHelloReply, [&](const FrameView& v) -> Status {
      auto r = parse_hello_reply(v);
      if (!r) return r.status();
      reply = *r;
      return Status::ok();
    }));
    if (!reply->accepted) return Status::error("the destination refused the VM: " + reply->reason);
    return Status::ok();
  }

  // Sends every page of guest RAM once (zero pages as markers). Pages the guest never touched hold
  // no host memory: they are zero without being read (reading would fault each one in).
  Status full_pass() {
    const auto t = Clock::now();
    untouched_.resize(bitmaps_.size());
    for (size_t i = 0; i < bitmaps_.size(); ++i) {
      std::fill(bitmaps_[i].begin(), bitmaps_[i].end(), ~uint64_t{0});
      untouched_[i].assign(bitmaps_[i].size(), 0);
      vm_.memory().untouched_pages(i, 0, untouched_[i]);
    }
    MINIHV_TRY(send_pending(true));
    untouched_.clear();
    MINIHV_TRY(session_->send_round_end({0, 0, 0, false}));
    MINIHV_TRY(await_round_ack(0));
    send_seconds_ += seconds_since(t);
    sum_.rounds = 1;
    return check_abort();
  }

  // Adds the pages dirtied since the last harvest to the pending set (bitmaps_); returns how many
  // pages are pending. Pages stay pending until send_dirty() sends them: a harvest whose pages were
  // not sent yet (the round that decided to switch over) is never lost.
  Result<uint64_t> harvest() {
    const auto start = Clock::now();
    const auto& regions = vm_.memory().regions();
    bitmaps_.resize(regions.size());
    uint64_t pages = 0;
    for (size_t i = 0; i < regions.size(); ++i) {
      scratch_.assign(vm_.dirty_bitmap_words(i), 0);
      MINIHV_TRY(vm_.harvest_dirty(i, scratch_));
      bitmaps_[i].resize(scratch_.size(), 0);
      for (size_t w = 0; w < scratch_.size(); ++w) {
        bitmaps_[i][w] |= scratch_[w];
        pages += static_cast<uint64_t>(__builtin_popcountll(bitmaps_[i][w]));
      }
    }
    ++sum_.dirty_log.harvests;
    sum_.dirty_log.harvest_ms += std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return pages;
  }

  // Sends the pending pages, each stream's on its own worker, and clears them.
  // `full`: the full pass (untouched_ says which pages are zero without reading them).
  Status send_pending(bool full) {
    Status st = workers_->run([&](uint16_t stream) { return send_stream_pages(stream, full); });
    for (auto& bm : bitmaps_) std::fill(bm.begin(), bm.end(), 0);
    return st;
  }

  // On `stream`'s worker: the pending pages of the chunks that are that stream's (stream_for_page),
  // i.e. every streams-th bitmap word. Reads bitmaps_ and untouched_, which nobody writes meanwhile.
  Status send_stream_pages(uint16_t stream, bool full) {
    const auto& regions = vm_.memory().regions();
    const uint16_t n = static_cast<uint16_t>(senders_.size());
    StreamSender& tx = *senders_[stream];
    for (size_t i = 0; i < regions.size(); ++i) {
      const MemoryRegion& r = regions[i];
      const auto& bm = bitmaps_[i];
      const uint64_t first_chunk = r.gpa >> kAffinityShift;
      for (size_t w = (stream + n - first_chunk % n) % n; w < bm.size(); w += n) {
        if (workers_->cancelled()) return Status::ok();  // another stream failed: its error is the one
        for (uint64_t bits = bm[w]; bits; bits &= bits - 1) {
          const uint64_t page = w * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
          if (page * kPage >= r.size) break;
          const bool zero = full && (untouched_[i][w] >> (page % 64) & 1);
          MINIHV_TRY(tx.send(r.gpa + page * kPage, zero ? nullptr : r.host + page * kPage));
        }
      }
    }
    return tx.finish();
  }

  CodecStats page_stats() const {
    CodecStats all;
    for (const auto& tx : senders_) all.add(tx->stats());
    return all;
  }

  double bandwidth() const {  // bytes per second actually achieved while sending pages
    const double bw = send_seconds_ > 0 ? session_->stats().bytes_sent / send_seconds_ : 0;
    return std::max(bw, 1e6);  // never divide by ~0 on a first tiny round
  }

  // The final round's time if the pause began now: the pages left at what moving one has cost,
  // plus the machine state and the round trips of the switchover.
  double expected_downtime_ms(uint64_t pages) const {
    return static_cast<double>(pages) * page_cost_.seconds_per_page() * 1000 + kSwitchoverFixedMs;
  }

  // "unchanged" hashing pays when it hits: after each round, keep it on for every page only if its
  // hit rate (measured on every page, or on the sample while it is off) is worth the hash.
  void adapt_hashing(const CodecStats& round) {
    if (round.hashed < kMinHashedToJudge) return;
    const bool on = round.unchanged_hit_rate() >= kMinUnchangedHitRate;
    for (auto& tx : senders_) tx->set_hash_unchanged(on);
    ++(on ? sum_.adaptive.hash_on_rounds : sum_.adaptive.hash_off_rounds);
  }

  Status dirty_rounds() {
    uint64_t previous = UINT64_MAX;
    unsigned not_shrinking = 0, step = 0;
    for (;;) {
      const auto since = Clock::now() - last_round_;
      auto dirty = harvest();
      if (!dirty) return dirty.status();
      // A round that took microseconds sees almost nothing dirty (or nothing while the vCPU thread
      // waits for a core): unless the rest already fits, watch for at least kMinRound.
      if (expected_downtime_ms(*dirty) > static_cast<double>(o_.downtime_ms) && since < kMinRound) {
        std::this_thread::sleep_for(kMinRound - since);
        dirty = harvest();
        if (!dirty) return dirty.status();
      }
      const auto round_start = Clock::now();
      const double expected_ms = expected_downtime_ms(*dirty);
      const double round_s = std::max(1e-3, std::chrono::duration<double>(round_start - last_round_).count());
      progress_({{"round", sum_.rounds},
                 {"remaining_bytes", static_cast<uint64_t>(*dirty * kPage)},
                 {"dirty_pages", *dirty},
                 {"dirty_rate_mbps", *dirty * kPage * 8 / round_s / 1e6},
                 {"throughput_mbps", bandwidth() * 8 / 1e6},
                 {"page_cost_us", page_cost_.seconds_per_page() * 1e6},
                 {"expected_downtime_ms", static_cast<uint64_t>(expected_ms)},
                 {"unchanged_hit_rate", last_round_stats_.unchanged_hit_rate()},
                 {"lz4_hit_rate", last_round_stats_.lz4_hit_rate()},
                 {"throttle", sum_.throttle_percent}});
      last_round_ = round_start;
      if (*dirty == 0 || expected_ms <= static_cast<double>(o_.downtime_ms)) return Status::ok();  // the rest fits
      if (seconds_since(start_) > o_.max_seconds)
        return Status::error("did not converge within --max-time " + std::to_string(static_cast<int>(o_.max_seconds)) +
                             " s (the guest dirties memory faster than the link moves it)");
      if (*dirty > previous * kShrinkFactor) {
        if (++not_shrinking >= 2 && step < std::size(kThrottleSteps)) {
          sum_.throttle_percent = kThrottleSteps[step++];
          vm_.set_throttle(sum_.throttle_percent);
          not_shrinking = 0;
        }
      } else {
        not_shrinking = 0;
      }
      previous = *dirty;
      MINIHV_TRY(send_round(*dirty, false));
      MINIHV_TRY(check_abort());
    }
  }

  // Sends the pending pages and the round's end; measures what each page cost end to end.
  Status send_round(uint64_t pages, bool last) {
    const CodecStats before = page_stats();
    const auto t = Clock::now();
    MINIHV_TRY(send_pending(false));
    MINIHV_TRY(session_->send_round_end({sum_.rounds, 0, pages * kPage, last}));
    // Until the destination has decoded the round: its backlog (lz4 pages are cheap on the wire
    // and dear to decode) is part of what a page costs, and must not spill into the pause.
    if (!last) MINIHV_TRY(await_round_ack(sum_.rounds));
    const double took = seconds_since(t);
    send_seconds_ += took;
    page_cost_.observe(pages, took);
    last_round_stats_ = page_stats().minus(before);
    adapt_hashing(last_round_stats_);
    ++sum_.rounds;
    return Status::ok();
  }

  Status switchover() {
    const auto pause_start = Clock::now();
    DowntimeParts& parts = sum_.downtime_parts;
    auto at = [&] { return std::chrono::duration<double, std::milli>(Clock::now() - pause_start).count(); };
    MINIHV_TRY(vm_.pause());
    paused_ = true;
    parts.paused = at();
    // Save (which quiesces the devices: in-flight disk reads land in guest memory and mark the
    // device dirty bitmap) BEFORE the last harvest, or a read completing after it would be lost.
    auto state = vm_.save_machine();
    if (!state) return state.status().context("saving the machine state");
    parts.saved = at();
    auto dirty = harvest();  // everything still pending, now final
    if (!dirty) return dirty.status();
    parts.final_pages = *dirty;
    parts.expected = expected_downtime_ms(*dirty);
    for (auto& tx : senders_) tx->set_paused(true);
    MINIHV_TRY(send_round(*dirty, true));
    MINIHV_TRY(send_out_of_order("after-final-round"));
    parts.last_page = at();
    // A destination with NICs announces the guest on the last round's end and then acknowledges
    // it: from then on the network sends the guest's frames there. What reached this side's taps
    // until then goes with the state.
    if (vm_.nic_count() > 0) {
      MINIHV_TRY(await_round_ack(sum_.rounds - 1));
      parts.announced = at();
    }
    vm_.hold_network_arrivals(*state);
    const std::vector<uint8_t> blob = encode_machine_state(*state);
    parts.state_bytes = blob.size();
    for (Frame& f : make_state_frames(blob)) MINIHV_TRY(session_->send(kControlStream, std::move(f)));
    MINIHV_TRY(session_->flush());
    parts.state_sent = at();
    if (o_.verify) {
      MINIHV_TRY(verify());
      parts.verified = at();
    }
    committed_ = true;  // from here, only proof that the destination did not commit resumes the VM
    MINIHV_TRY(await_commit(session_->send(kControlStream, make_commit())));
    parts.acked = at();
    // The destination runs the guest once it holds the disks' leases: handed over now, it adopts
    // them at once (without the ACK's nonces — settled by asking — they are released at the end).
    if (hand_over_) vm_.hand_over_disk_leases(*hand_over_);
    vm_.release_image_locks();  // the destination has the VM: its raw images are its to lock now
    sum_.downtime_ms = ms_since(pause_start);
    return Status::ok();
  }

  // After COMMIT: the ACK or, when it does not come, the destination's word that it committed.
  // An ABORT is proof that it did not; so is a lease it needs before it may run that this side
  // still holds. Anything else leaves the switchover in doubt: the VM stays paused here.
  // `sent`: queueing COMMIT (a failure there may still have let some of it out).
  Status await_commit(Status sent) {
    if (sent) sent = session_->flush();
    Status acked = sent ? wait_for(FrameType::kAck,
                                   [this](const FrameView& v) -> Status {
                                     auto ack = parse_ack(v);
                                     if (!ack) return ack.status();
                                     hand_over_ = Vm::LeaseHandOver{ack->owner, ack->nonces};
                                     return Status::ok();
                                   },
                                   kAckTimeout)
                        : sent.context("sending COMMIT");
    if (!sent) heard_abort_before_close();
    if (acked) {
      sum_.switchover = "ack";
      return Status::ok();
    }
    if (destination_aborted_) {
      committed_ = false;  // it said no: proof enough, the VM resumes here
      return acked;
    }
    progress_({{"event", "in_doubt"}, {"error", acked.message()}});
    Asked asked;
    for (unsigned i = 0; i < kAskAttempts && asked.answer != CommitAnswer::kCommitted; ++i)
      asked = ask_committed(targets_peer_first(), session_->session_id(), kAskTimeout, o_.psk);
    if (asked.answer == CommitAnswer::kCommitted) {
      sum_.switchover = "query";
      return Status::ok();
    }
    const std::string why = "no ACK after COMMIT (" + acked.message() + ") and no destination says it committed (" +
                            asked.detail + ")";
    if (vm_.holds_guest_leases()) {
      sum_.switchover = "lease";
      committed_ = false;  // the destination cannot run the VM without our leases: resume here
      return Status::error(why + "; the VM resumes here: the destination cannot run it without the leases held here");
    }
    return Status::error(why);
  }

  // COMMIT could not go out: the destination closed. If it gave up first, its ABORT is still
  // readable on stream 0 — proof that it did not commit.
  void heard_abort_before_close() {
    (void)session_->receive_remaining(
        [&](const FrameView& v) -> Result<Next> {
          if (v.type() != FrameType::kAbort) return Next::kContinue;
          destination_aborted_ = true;
          return Next::kStop;
        },
        kAbortGrace);
  }

  // The target that took the session first (it is the one that may have committed), then the rest.
  std::vector<Endpoint> targets_peer_first() const {
    std::vector<Endpoint> out;
    for (const Endpoint& e : o_.targets)
      if (e.text() == session_->peer()) out.push_back(e);
    for (const Endpoint& e : o_.targets)
      if (e.text() != session_->peer()) out.push_back(e);
    return out;
  }

  Status verify() {
    const std::vector<RangeDigest> digests = digest_ram(vm_.memory().regions());
    MINIHV_TRY(session_->send(kControlStream, make_verify(digests)));
    MINIHV_TRY(session_->flush());
    std::vector<RangeDigest> bad;
    MINIHV_TRY(wait_for(FrameType::kVerifyReply, [&](const FrameView& v) -> Status {
      auto r = parse_verify(v);
      if (!r) return r.status();
      bad = std::move(r).value();
      return Status::ok();
    }));
    if (!bad.empty()) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "%zu range(s) differ, first at guest address 0x%llx", bad.size(),
                    static_cast<unsigned long long>(bad[0].gpa));
      return Status::error(std::string("memory verification failed: ") + buf);
    }
    sum_.verified = true;
    return Status::ok();
  }

  // Waits for one frame of `type` from the destination (an ABORT ends the wait with its reason).
  Status wait_for(FrameType type, const std::function<Status(const FrameView&)>& on_frame,
                  std::chrono::seconds timeout = kReplyTimeout) {
    Status result = Status::error(std::string("the destination did not answer with ") +
                                  std::string(frame_type_name(type)));
    Status rs = session_->receive(
        [&](const FrameView& v) -> Result<Next> {
          if (v.type() == FrameType::kAbort) {
            destination_aborted_ = true;
            auto a = parse_abort(v);
            return Status::error("the destination aborted: " + (a ? a->reason : std::string("(unreadable reason)")));
          }
          if (v.type() != type)
            return Status::error("protocol error: expected " + std::string(frame_type_name(type)) + ", got " +
                                 std::string(frame_type_name(v.type())));
          result = on_frame(v);
          return Next::kStop;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
    MINIHV_TRY(rs);
    return result;
  }

  // ROUND_ACK(round): the destination has every page of the round in guest memory.
  Status await_round_ack(uint32_t round) {
    MINIHV_TRY(session_->flush());
    return wait_for(FrameType::kRoundAck, [round](const FrameView& v) -> Status {
      auto a = parse_round_ack(v);
      if (!a) return a.status();
      if (a->round != round)
        return Status::error("protocol error: ROUND_ACK for round " + std::to_string(a->round) + ", expected " +
                             std::to_string(round));
      return Status::ok();
    });
  }

  // Test hook (test_hooks.h): at `point`, the one frame the destination must refuse.
  Status send_out_of_order(std::string_view point) {
    if (!out_of_order_) return Status::ok();
    const std::string& c = *out_of_order_;
    std::optional<Frame> f;
    uint16_t stream = kControlStream;
    if (point == "before-hello-reply" && c == "pages-before-hello-reply") {
      PageBatchEncoder enc({}, nullptr);
      (void)enc.add_known_zero(0);
      f = enc.take_frame();
      stream = static_cast<uint16_t>(session_->streams() - 1);  // another stream's thread takes it
    }
    if (point == "after-hello" && c == "second-hello") f = make_hello({"{}", "null"});
    if (point == "after-hello" && c == "commit-before-state") f = make_commit();
    if (point == "after-hello" && c == "state-during-rounds") f = make_state_frames(std::vector<uint8_t>(16)).front();
    if (point == "after-full-pass" && c == "round-repeated") f = make_round_end({0, 0, 0, false});
    if (point == "after-final-round" && c == "pages-after-final-round") {
      PageBatchEncoder enc({}, nullptr);
      (void)enc.add_known_zero(0);
      f = enc.take_frame();
    }
    if (!f) return Status::ok();
    LOG_WARN("test hook: sending %s out of order (%s)", c.c_str(), std::string(point).c_str());
    MINIHV_TRY(session_->send(stream, std::move(*f)));
    return session_->flush();
  }

  // The destination may give up at any time (e.g. a corrupt frame): stop at once if it did.
  Status check_abort() {
    return session_->poll([](const FrameView& v) -> Result<Next> {
      if (v.type() == FrameType::kAbort) {
        auto a = parse_abort(v);
        return Status::error("the destination aborted: " + (a ? a->reason : std::string("(unreadable reason)")));
      }
      return Status::error("protocol error: unexpected " + std::string(frame_type_name(v.type())) + " during pre-copy");
    });
  }

  Vm& vm_;
  const SourceOptions& o_;
  const ProgressFn& progress_;
  Summary& sum_;
  PageHashTable hashes_;
  std::unique_ptr<Session> session_;
  std::vector<std::unique_ptr<StreamSender>> senders_;  // one per stream, used by its worker
  std::unique_ptr<StreamWorkers> workers_;              // destroyed first: idle, it touches nothing
  std::vector<std::vector<uint64_t>> bitmaps_;  // pages dirty and not yet sent, per region
  std::vector<std::vector<uint64_t>> untouched_;  // the full pass: pages known zero, per region
  std::vector<uint64_t> scratch_;
  PageCost page_cost_;
  CodecStats last_round_stats_;
  Clock::time_point start_, last_round_ = Clock::now();
  double send_seconds_ = 0;
  bool logging_ = false, paused_ = false;
  bool committed_ = false, destination_aborted_ = false;
  std::optional<Vm::LeaseHandOver> hand_over_;  // what the ACK asked for: the disks' leases, handed over
  const std::optional<std::string> out_of_order_ = out_of_order_from_env();
};

}  // namespace

Summary migrate_out(Vm& vm, const SourceOptions& options, const ProgressFn& progress) {
  Summary sum;
  sum.ram_bytes = vm.memory().size();
  SourceRun run(vm, options, progress, sum);
  Status st = run.run();
  run.finish_stats();
  if (!st) {
    sum.ok = false;
    sum.error = st.message();
    if (run.in_doubt()) {
      run.leave_paused();
      sum.in_doubt = true;
      return sum;
    }
    run.rollback(st.message());
    return sum;
  }
  sum.ok = true;
  return sum;
}

nlohmann::json DowntimeParts::to_json() const {
  return {{"paused_ms", paused},       {"saved_ms", saved},           {"last_page_ms", last_page},
          {"final_pages", final_pages}, {"state_sent_ms", state_sent}, {"state_bytes", state_bytes},
          {"verified_ms", verified},   {"acked_ms", acked},           {"expected_ms", expected},
          {"announced_ms", announced}};
}

nlohmann::json Summary::to_json() const {
  nlohmann::json tried_json = nlohmann::json::array();
  for (const auto& a : tried)
    tried_json.push_back({{"address", a.address}, {"ok", a.result.is_ok()}, {"error", a.result.is_ok() ? "" : a.result.message()}});
  char session[17];
  std::snprintf(session, sizeof session, "%016llx", static_cast<unsigned long long>(session_id));
  return {{"result", ok ? "ok" : in_doubt ? "in-doubt" : "failed"},
          {"switchover", switchover},
          {"session", in_doubt ? session : ""},
          {"total_ms", total_ms},
          {"downtime_ms", downtime_ms},
          {"setup_ms", setup_ms},
          {"rounds", rounds},
          {"ram_bytes", ram_bytes},
          {"bytes_sent", bytes_sent},
          {"pages", {{"zero", pages.zero}, {"unchanged", pages.unchanged}, {"lz4", pages.lz4}, {"raw", pages.raw}}},
          {"hit_rates", {{"unchanged", pages.unchanged_hit_rate()}, {"lz4", pages.lz4_hit_rate()},
                         {"hash_off_rounds", adaptive.hash_off_rounds},
                         {"hash_on_rounds", adaptive.hash_on_rounds}}},
          {"throughput_mbps", throughput_mbps},
          {"streams", streams},
          {"tls", tls},
          {"handshake_ms", handshake_ms},
          {"verified", verified},
          {"downtime_parts", downtime_parts.to_json()},
          {"dirty_log", {{"method", dirty_log.method}, {"harvests", dirty_log.harvests}, {"harvest_ms", dirty_log.harvest_ms}}},
          {"throttle_percent", throttle_percent},
          {"target", target},
          {"tried", tried_json},
          {"error", error}};
}

}  // namespace minihv::migrate
