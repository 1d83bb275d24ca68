// migrate/source.cc — the sending side of a live migration: pre-copy rounds, then switchover.
#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "common/log.h"
#include "migrate/frames.h"
#include "migrate/migration.h"
#include "migrate/verify.h"
#include "vmm/machine_state.h"

namespace minihv::migrate {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = kPageSize;
constexpr auto kReplyTimeout = std::chrono::seconds(30);
// Auto-converge: a round that does not shrink the dirty set below this share of the previous one
// counts as "not converging"; two in a row raise the throttle one step.
constexpr double kShrinkFactor = 0.9;
constexpr unsigned kThrottleSteps[] = {20, 40, 60, 80, 95};
// A dirty round lasts at least this long: a round that took microseconds would see almost nothing
// dirty (or nothing at all while the vCPU thread waits for a core) and switch over on a false
// reading of the dirty rate.
constexpr auto kMinRound = std::chrono::milliseconds(50);

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
uint64_t ms_since(Clock::time_point t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

// Encodes pages into one batch per stream and sends full batches; a page always goes on
// stream_for_page(gpa), so its copies stay in order.
class PageSender {
public:
  PageSender(Session& session, const SourceOptions& o, PageHashTable& hashes, CompressionChooser& chooser)
      : session_(session), chooser_(chooser) {
    EncoderOptions eo;
    eo.compression = o.compression;
    for (uint16_t s = 0; s < session.streams(); ++s)
      enc_.push_back(std::make_unique<PageBatchEncoder>(eo, &hashes, &chooser));
  }

  Status send(uint64_t gpa, const uint8_t* page) {
    const uint16_t s = stream_for_page(gpa, session_.streams());
    auto outcome = enc_[s]->add(gpa, page);
    if (!outcome) return outcome.status();
    if (enc_[s]->full()) return ship(s);
    return Status::ok();
  }

  Status flush() {
    for (uint16_t s = 0; s < enc_.size(); ++s)
      if (!enc_[s]->empty()) MINIHV_TRY(ship(s));
    return session_.flush();
  }

  CodecStats stats() const {
    CodecStats all;
    for (const auto& e : enc_) all.add(e->stats());
    return all;
  }

private:
  Status ship(uint16_t s) {
    Frame f = enc_[s]->take_frame();
    session_.count_pages(s, f.pages);
    MINIHV_TRY(session_.send(s, std::move(f)));
    // `--compress auto` weighs the link against the codec: tell it how fast the link goes.
    if (++shipped_ % kLinkSampleEvery == 0) {
      auto [bytes, seconds] = session_.take_link_sample();
      if (seconds > 0) chooser_.observe_link(bytes, seconds);
    }
    return Status::ok();
  }

  static constexpr unsigned kLinkSampleEvery = 8;  // frames (~8 MiB) between link measurements

  Session& session_;
  CompressionChooser& chooser_;
  std::vector<std::unique_ptr<PageBatchEncoder>> enc_;
  uint64_t shipped_ = 0;
};

// One migration attempt's state; every step returns a Status and the caller rolls back on error.
class SourceRun {
public:
  SourceRun(Vm& vm, const SourceOptions& o, const ProgressFn& progress, Summary& sum)
      : vm_(vm), o_(o), progress_(progress), sum_(sum), hashes_(vm.memory().regions()) {}

  Status run() {
    start_ = Clock::now();
    MINIHV_TRY(connect());
    MINIHV_TRY(hello());
    sum_.setup_ms = ms_since(start_);
    MINIHV_TRY(vm_.start_dirty_log());
    logging_ = true;
    // The log starts with every page marked (KVM_DIRTY_LOG_INITIALLY_SET): clear it, so that the
    // first round after the full pass holds only what the guest wrote during it, not all of RAM.
    MINIHV_TRY(harvest().status());
    for (auto& bm : bitmaps_) std::fill(bm.begin(), bm.end(), 0);
    MINIHV_TRY(full_pass());
    MINIHV_TRY(dirty_rounds());
    return switchover();
  }

  // Puts the VM back as it was: running here, no logging, no throttle. Safe to call at any point.
  void rollback(const std::string& why) {
    if (session_) {
      (void)session_->send(kControlStream, make_abort({why}));
      (void)session_->flush();
    }
    if (paused_) {
      Status s = vm_.resume();
      if (!s) LOG_ERROR("migration rollback: resume failed: %s", s.message().c_str());
    }
    vm_.set_throttle(0);
    if (logging_) (void)vm_.stop_dirty_log();
  }

  void finish_stats() {
    sum_.pages = sender_ ? sender_->stats() : CodecStats{};
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
    auto s = Session::connect(o_.targets, t, &sum_.tried);
    for (const auto& a : sum_.tried)
      if (!a.result) progress_({{"event", "target_skipped"}, {"address", a.address}, {"error", a.result.message()}});
    if (!s) return s.status();
    session_ = std::move(s).value();
    sum_.target = session_->peer();
    sender_ = std::make_unique<PageSender>(*session_, o_, hashes_, chooser_);
    return Status::ok();
  }

  Status hello() {
    const nlohmann::json status = vm_.status();
    Hello h{describe_vm(vm_).dump(), status.contains("cpu") ? status["cpu"].value("profile", nlohmann::json()).dump() : "null"};
    MINIHV_TRY(session_->send(kControlStream, make_hello(h)));
    MINIHV_TRY(session_->flush());
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

  // Sends every page of guest RAM once (zero pages as markers).
  Status full_pass() {
    const auto t = Clock::now();
    for (const MemoryRegion& r : vm_.memory().regions())
      for (uint64_t off = 0; off < r.size; off += kPage) MINIHV_TRY(sender_->send(r.gpa + off, r.host + off));
    MINIHV_TRY(sender_->flush());
    MINIHV_TRY(session_->send_round_end({0, 0, 0, false}));
    send_seconds_ += seconds_since(t);
    sum_.rounds = 1;
    return check_abort();
  }

  // Adds the pages dirtied since the last harvest to the pending set (bitmaps_); returns how many
  // pages are pending. Pages stay pending until send_dirty() sends them: a harvest whose pages were
  // not sent yet (the round that decided to switch over) is never lost.
  Result<uint64_t> harvest() {
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
    return pages;
  }

  Status send_dirty() {
    const auto& regions = vm_.memory().regions();
    for (size_t i = 0; i < regions.size(); ++i) {
      const auto& bm = bitmaps_[i];
      for (size_t w = 0; w < bm.size(); ++w) {
        for (uint64_t bits = bm[w]; bits; bits &= bits - 1) {
          const uint64_t page = w * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
          if (page * kPage >= regions[i].size) break;
          MINIHV_TRY(sender_->send(regions[i].gpa + page * kPage, regions[i].host + page * kPage));
        }
      }
      std::fill(bitmaps_[i].begin(), bitmaps_[i].end(), 0);
    }
    return sender_->flush();
  }

  double bandwidth() const {  // bytes per second actually achieved while sending pages
    const double bw = send_seconds_ > 0 ? session_->stats().bytes_sent / send_seconds_ : 0;
    return std::max(bw, 1e6);  // never divide by ~0 on a first tiny round
  }

  // Bytes on the wire per dirty page, as the codec has done so far (zero/unchanged pages are cheap).
  double wire_bytes_per_page() const {
    const CodecStats s = sender_->stats();
    return s.bytes_in ? std::max(64.0, static_cast<double>(s.bytes_out) / (s.bytes_in / kPage)) : kPage;
  }

  Status dirty_rounds() {
    uint64_t previous = UINT64_MAX;
    unsigned not_shrinking = 0, step = 0;
    for (;;) {
      const auto since = Clock::now() - last_round_;
      if (since < kMinRound) std::this_thread::sleep_for(kMinRound - since);
      const auto round_start = Clock::now();
      auto dirty = harvest();
      if (!dirty) return dirty.status();
      const double remaining = static_cast<double>(*dirty) * wire_bytes_per_page();
      const double expected_ms = remaining / bandwidth() * 1000;
      const double round_s = std::max(1e-3, std::chrono::duration<double>(round_start - last_round_).count());
      progress_({{"round", sum_.rounds},
                 {"remaining_bytes", static_cast<uint64_t>(*dirty * kPage)},
                 {"dirty_pages", *dirty},
                 {"dirty_rate_mbps", *dirty * kPage * 8 / round_s / 1e6},
                 {"throughput_mbps", bandwidth() * 8 / 1e6},
                 {"expected_downtime_ms", static_cast<uint64_t>(expected_ms)},
                 {"throttle", sum_.throttle_percent}});
      last_round_ = Clock::now();
      if (expected_ms <= static_cast<double>(o_.downtime_ms)) return Status::ok();  // the rest fits
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
      const auto t = Clock::now();
      MINIHV_TRY(send_dirty());
      MINIHV_TRY(session_->send_round_end({sum_.rounds, 0, static_cast<uint64_t>(remaining), false}));
      send_seconds_ += seconds_since(t);
      ++sum_.rounds;
      MINIHV_TRY(check_abort());
    }
  }

  Status switchover() {
    const auto pause_start = Clock::now();
    MINIHV_TRY(vm_.pause());
    paused_ = true;
    // Save (which quiesces the devices: in-flight disk reads land in guest memory and mark the
    // device dirty bitmap) BEFORE the last harvest, or a read completing after it would be lost.
    auto state = vm_.save_machine();
    if (!state) return state.status().context("saving the machine state");
    auto dirty = harvest();  // everything still pending, now final
    if (!dirty) return dirty.status();
    const auto t = Clock::now();
    MINIHV_TRY(send_dirty());
    MINIHV_TRY(session_->send_round_end({sum_.rounds, 0, 0, true}));
    send_seconds_ += seconds_since(t);
    ++sum_.rounds;
    for (Frame& f : make_state_frames(encode_machine_state(*state))) MINIHV_TRY(session_->send(kControlStream, std::move(f)));
    if (o_.verify) MINIHV_TRY(verify());
    MINIHV_TRY(session_->send(kControlStream, make_commit()));
    MINIHV_TRY(session_->flush());
    MINIHV_TRY(wait_for(FrameType::kAck, [](const FrameView&) { return Status::ok(); }));
    sum_.downtime_ms = ms_since(pause_start);
    return Status::ok();
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
  Status wait_for(FrameType type, const std::function<Status(const FrameView&)>& on_frame) {
    Status result = Status::error(std::string("the destination did not answer with ") +
                                  std::string(frame_type_name(type)));
    Status rs = session_->receive(
        [&](const FrameView& v) -> Result<Next> {
          if (v.type() == FrameType::kAbort) {
            auto a = parse_abort(v);
            return Status::error("the destination aborted: " + (a ? a->reason : std::string("(unreadable reason)")));
          }
          if (v.type() != type)
            return Status::error("protocol error: expected " + std::string(frame_type_name(type)) + ", got " +
                                 std::string(frame_type_name(v.type())));
          result = on_frame(v);
          return Next::kStop;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(kReplyTimeout));
    MINIHV_TRY(rs);
    return result;
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
  CompressionChooser chooser_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<PageSender> sender_;
  std::vector<std::vector<uint64_t>> bitmaps_;  // pages dirty and not yet sent, per region
  std::vector<uint64_t> scratch_;
  Clock::time_point start_, last_round_ = Clock::now();
  double send_seconds_ = 0;
  bool logging_ = false, paused_ = false;
};

}  // namespace

Summary migrate_out(Vm& vm, const SourceOptions& options, const ProgressFn& progress) {
  Summary sum;
  sum.ram_bytes = vm.memory().size();
  SourceRun run(vm, options, progress, sum);
  Status st = run.run();
  run.finish_stats();
  if (!st) {
    run.rollback(st.message());
    sum.ok = false;
    sum.error = st.message();
    return sum;
  }
  sum.ok = true;
  return sum;
}

nlohmann::json Summary::to_json() const {
  nlohmann::json tried_json = nlohmann::json::array();
  for (const auto& a : tried)
    tried_json.push_back({{"address", a.address}, {"ok", a.result.is_ok()}, {"error", a.result.is_ok() ? "" : a.result.message()}});
  return {{"result", ok ? "ok" : "failed"},
          {"total_ms", total_ms},
          {"downtime_ms", downtime_ms},
          {"setup_ms", setup_ms},
          {"rounds", rounds},
          {"ram_bytes", ram_bytes},
          {"bytes_sent", bytes_sent},
          {"pages", {{"zero", pages.zero}, {"unchanged", pages.unchanged}, {"lz4", pages.lz4}, {"raw", pages.raw}}},
          {"throughput_mbps", throughput_mbps},
          {"streams", streams},
          {"verified", verified},
          {"throttle_percent", throttle_percent},
          {"target", target},
          {"tried", tried_json},
          {"error", error}};
}

}  // namespace minihv::migrate
