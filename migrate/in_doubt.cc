// QUERY / QUERY_REPLY: one frame each way on a connection of their own (protocol.h).
#include "migrate/in_doubt.h"

#include <poll.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/net.h"
#include "common/tls.h"

namespace minihv::migrate {

namespace {

using Clock = std::chrono::steady_clock;

// How often the witness looks at its stop flag while no query comes.
constexpr auto kWitnessPoll = std::chrono::milliseconds(100);
// A query connection that has not sent its frame by then is dropped (a source sends it at once;
// a peer that connects and says nothing must not hold the witness through a source's 2 s).
constexpr auto kQueryReadTimeout = std::chrono::milliseconds(500);
// QUERY and QUERY_REPLY are tiny: each read asks the parser for this much room.
constexpr size_t kQueryFrameRoom = kHeaderSize + 64;

// One QUERY connection: the TCP socket, through TLS unless plain (--insecure).
struct Link {
  int fd;
  std::optional<tls::Session> tls;

  static Result<Link> open(int fd, tls::Role role, const std::optional<tls::Psk>& psk, Clock::time_point deadline) {
    Link l{fd, std::nullopt};
    if (!psk) return l;
    auto s = tls::handshake(fd, role, *psk, deadline);
    if (!s) return s.status();
    l.tls.emplace(std::move(s).value());
    return l;
  }

  Status send(std::string_view bytes, Clock::time_point deadline) {
    if (tls) return tls->write_all(bytes, deadline);
    while (!bytes.empty()) {
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return Status::from_errno("send");
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return Status::error("send timed out");
      pollfd p{fd, POLLOUT, 0};
      (void)::poll(&p, 1, static_cast<int>(left.count()));
    }
    return Status::ok();
  }

  // Some bytes, or 0 when nothing came before the deadline; an error when the peer closed.
  Result<size_t> receive(std::span<uint8_t> room, Clock::time_point deadline) {
    if (tls) {
      if (!tls->has_pending()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return size_t{0};
      }
      auto n = tls->read(room.data(), room.size(), deadline);
      if (n && *n == 0) return Status::error("closed");
      return n;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return size_t{0};
    ssize_t n = ::recv(fd, room.data(), room.size(), MSG_DONTWAIT);
    if (n == 0) return Status::error("closed");
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return Status::from_errno("recv");
    return static_cast<size_t>(std::max<ssize_t>(n, 0));
  }
};

Status send_frame(Link& link, Frame f, Clock::time_point deadline) {
  seal(f, kControlStream, 0);
  return link.send(std::string_view(reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size()), deadline);
}

// Reads exactly one frame of `type` from `link` into `parser` before `deadline`.
Result<FrameView> read_frame(Link& link, FrameParser& parser, FrameType type, Clock::time_point deadline) {
  while (true) {
    auto f = parser.next();
    if (!f) return f.status();
    if (*f) {
      if ((*f)->type() != type)
        return Status::error("expected " + std::string(frame_type_name(type)) + ", got " +
                             std::string(frame_type_name((*f)->type())));
      return **f;
    }
    if (Clock::now() >= deadline) return Status::error("no " + std::string(frame_type_name(type)) + " in time");
    auto n = link.receive(parser.prepare(kQueryFrameRoom), deadline);
    if (!n) return n.status().context(std::string(frame_type_name(type)) + " not received");
    parser.commit(*n);
  }
}

Result<CommitAnswer> ask_one(const Endpoint& ep, uint64_t session, std::chrono::milliseconds timeout,
                             const std::optional<tls::Psk>& psk) {
  const auto deadline = Clock::now() + timeout;
  auto fd = net::connect_to(ep, timeout);
  if (!fd) return fd.status();
  auto link = Link::open(fd->get(), tls::Role::kClient, psk, deadline);
  if (!link) return link.status();
  MINIHV_TRY(send_frame(*link, make_query({session}), deadline));
  FrameParser parser(kControlStream, 0);
  auto reply = read_frame(*link, parser, FrameType::kQueryReply, deadline);
  if (!reply) return reply.status();
  auto m = parse_query_reply(*reply);
  if (!m) return m.status();
  if (m->session_id != session) return Status::error("the answer is about another session");
  return m->answer;
}

}  // namespace

Asked ask_committed(std::span<const Endpoint> targets, uint64_t session, std::chrono::milliseconds per_target,
                    const std::optional<tls::Psk>& psk) {
  Asked out;
  for (const Endpoint& ep : targets) {
    auto a = ask_one(ep, session, per_target, psk);
    const std::string said = a ? (*a == CommitAnswer::kCommitted ? "committed" : "does not know the session")
                               : "no answer: " + a.message();
    out.detail += (out.detail.empty() ? "" : "; ") + ep.text() + " " + said;
    if (a && *a == CommitAnswer::kCommitted) {
      out.answer = CommitAnswer::kCommitted;
      break;
    }
  }
  return out;
}

std::unique_ptr<CommitWitness> CommitWitness::start(Listener listener, uint64_t session,
                                                    std::optional<tls::Psk> psk,
                                                    std::chrono::milliseconds silent_for,
                                                    std::unique_ptr<Session> finished) {
  std::unique_ptr<CommitWitness> w(new CommitWitness(std::move(listener), session, std::move(psk)));
  w->thread_ = std::thread([p = w.get(), silent_for, f = std::move(finished)]() mutable {
    p->serve(silent_for, std::move(f));
  });
  return w;
}

CommitWitness::~CommitWitness() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void CommitWitness::serve(std::chrono::milliseconds silent_for, std::unique_ptr<Session> finished) {
  finished.reset();
  const auto speak_from = Clock::now() + silent_for;
  while (!stop_) {
    if (Clock::now() < speak_from) {
      std::this_thread::sleep_for(kWitnessPoll);
      continue;
    }
    auto c = listener_.accept_one(kWitnessPoll);
    if (!c) {  // e.g. out of fds: say it once, then keep trying quietly
      if (!complained_) LOG_WARN("migration witness: %s", c.message().c_str());
      complained_ = true;
      std::this_thread::sleep_for(kWitnessPoll);
      continue;
    }
    complained_ = false;
    if (*c) answer((*c)->get());
  }
}

void CommitWitness::answer(int fd) {
  const auto deadline = Clock::now() + kQueryReadTimeout;
  auto link = Link::open(fd, tls::Role::kServer, psk_, deadline);
  if (!link) {
    LOG_WARN("migration witness: dropping a connection: %s", link.message().c_str());
    return;
  }
  FrameParser parser(kControlStream, 0);
  auto q = read_frame(*link, parser, FrameType::kQuery, deadline);
  if (!q) {
    LOG_WARN("migration witness: dropping a connection: %s", q.message().c_str());
    return;
  }
  auto m = parse_query(*q);
  if (!m) {
    LOG_WARN("migration witness: %s", m.message().c_str());
    return;
  }
  const CommitAnswer a = m->session_id == session_ ? CommitAnswer::kCommitted : CommitAnswer::kUnknown;
  if (Status s = send_frame(*link, make_query_reply({m->session_id, a}), deadline); !s)
    LOG_WARN("migration witness: answering: %s", s.message().c_str());
}

}  // namespace minihv::migrate
