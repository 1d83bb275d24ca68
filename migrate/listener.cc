// The destination's side of set-up: accept the N connections of one session (STREAM_OPEN on each).
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <optional>

#include "common/log.h"
#include "common/net.h"
#include "migrate/session_impl.h"

namespace minihv::migrate {

namespace {

// A connection that has not said which session and stream it is yet: in its TLS handshake (hs),
// then waiting for STREAM_OPEN on its channel.
struct Pending {
  UniqueFd tcp;  // until the channel takes it
  std::optional<tls::Handshake> hs;
  std::optional<StreamChannel> ch;
  FrameParser parser{FrameParser::kAnyStream};
  std::string from;
  Clock::time_point deadline;
  double handshake_ms = 0;

  int fd() const { return ch ? ch->recv_fd() : tcp.get(); }
  short events() const { return hs ? hs->events() : short{POLLIN}; }
};

std::string address_of(const sockaddr_storage& ss, socklen_t len) {
  char host[64] = "?";
  getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST);
  return host;
}

// Advances the handshake; true once it is done and the channel made.
Result<bool> advance_handshake(Pending& p, Clock::time_point since) {
  tls::Failure why;
  auto done = p.hs->step(&why);
  if (!done) return done.status();
  if (!*done) return false;
  auto ch = StreamChannel::secure(std::move(p.tcp), std::move(*p.hs).take());
  p.hs.reset();
  if (!ch) return ch.status();
  p.ch.emplace(std::move(ch).value());
  p.handshake_ms = std::chrono::duration<double, std::milli>(Clock::now() - since).count();
  return true;
}

// Reads what is there; returns the STREAM_OPEN once whole, nullopt while incomplete, or an error
// (peer closed, corrupt, not a STREAM_OPEN): the caller drops the connection.
Result<std::optional<StreamOpen>> read_open(Pending& p) {
  auto room = p.parser.prepare(4096);
  ssize_t n = ::recv(p.fd(), room.data(), room.size(), MSG_DONTWAIT);
  if (n == 0) return Status::error("closed before STREAM_OPEN");
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return Status::from_errno("recv");
  if (n > 0) p.parser.commit(static_cast<size_t>(n));
  auto f = p.parser.next();
  if (!f) return f.status();
  if (!*f) return std::optional<StreamOpen>();
  auto m = parse_stream_open(**f);
  if (!m) return m.status();
  if ((*f)->header.stream != m->index) return Status::error("STREAM_OPEN header and payload disagree on the stream");
  return std::optional<StreamOpen>(*m);
}

// One step of a pending connection that poll found ready.
Result<std::optional<StreamOpen>> advance(Pending& p, Clock::time_point since) {
  if (p.hs) {
    auto done = advance_handshake(p, since);
    if (!done) return done.status().context("TLS");
    if (!*done) return std::optional<StreamOpen>();
  }
  return read_open(p);
}

}  // namespace

struct Listener::State {
  UniqueFd fd;
  Endpoint where;
};

Listener::Listener() : s_(std::make_unique<State>()) {}
Listener::~Listener() = default;
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;

Result<Listener> Listener::listen(const Endpoint& where) {
  auto fd = net::listen_on(where);
  if (!fd) return fd.status().context("listening for a migration on " + where.text());
  Listener l;
  l.s_->fd = std::move(fd).value();
  l.s_->where = where;
  return l;
}

uint16_t Listener::port() const { return net::local_port(s_->fd.get()); }

Result<std::optional<UniqueFd>> Listener::accept_one(std::chrono::milliseconds timeout) {
  pollfd p{s_->fd.get(), POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (n < 0 && errno != EINTR) return Status::from_errno("poll");
  if (n <= 0) return std::optional<UniqueFd>();
  int c = ::accept4(s_->fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return std::optional<UniqueFd>();
    return Status::from_errno("accept");
  }
  return std::optional<UniqueFd>(UniqueFd(c));
}

namespace {

// The connections of one session as they come in, and the ones not placed yet.
struct Gathering {
  std::vector<Pending> pending;               // oldest first
  std::vector<std::optional<Pending>> slots;  // by stream index, once the session is known
  uint64_t session = 0;
  size_t filled = 0;
  size_t next_report = 1;

  void place(Pending p, const StreamOpen& m) {
    if (slots.empty()) {
      session = m.session_id;
      slots.resize(m.count);
    }
    if (m.session_id != session || m.count != slots.size() || slots[m.index]) {
      LOG_WARN("migration listener: dropping a stream of another session or a duplicate from %s", p.from.c_str());
      return;
    }
    p.parser.set_stream(m.index);
    slots[m.index] = std::move(p);
    ++filled;
  }
  size_t evicted = 0;

  // Beyond the caps, the oldest from the same address goes, else the oldest of all.
  void add(Pending p) {
    auto same = [&](const Pending& q) { return q.from == p.from; };
    auto victim = pending.end();
    if (static_cast<size_t>(std::ranges::count_if(pending, same)) >= kMaxHalfOpenPerAddress)
      victim = std::ranges::find_if(pending, same);
    else if (pending.size() >= kMaxHalfOpen)
      victim = pending.begin();
    if (victim != pending.end()) evict(victim);
    pending.push_back(std::move(p));
  }
  void evict(std::vector<Pending>::iterator victim) {
    // Said at the 1st, 10th, 100th, ...: a flood must not flood the log too.
    if (++evicted == next_report) {
      LOG_WARN("migration listener: %zu connections without TLS handshake and STREAM_OPEN (at most %zu, %zu from one "
               "address): closing the oldest of %s (%zu closed so far)",
               pending.size(), kMaxHalfOpen, kMaxHalfOpenPerAddress, victim->from.c_str(), evicted);
      next_report *= 10;
    }
    pending.erase(victim);
  }
  void expire(Clock::time_point now) {
    std::erase_if(pending, [&](const Pending& p) {
      if (now < p.deadline) return false;
      LOG_WARN("migration listener: dropping %s: no TLS handshake and STREAM_OPEN within %lld ms", p.from.c_str(),
               static_cast<long long>(kOpenDeadline.count()));
      return true;
    });
  }
};

void accept_ready(int listen_fd, Gathering& g, const TransportOptions& options);
Result<std::unique_ptr<Session::Impl>> make_impl(Gathering& g, const TransportOptions& options);

}  // namespace

Result<std::unique_ptr<Session>> Listener::accept(const TransportOptions& options, std::chrono::milliseconds timeout,
                                                 int cancel_fd) {
  const auto deadline = Clock::now() + timeout;
  Gathering g;

  while (g.slots.empty() || g.filled < g.slots.size()) {
    const auto now = Clock::now();
    g.expire(now);
    auto wake = deadline;
    for (const auto& p : g.pending) wake = std::min(wake, p.deadline);
    auto left = std::chrono::ceil<std::chrono::milliseconds>(wake - now);
    if (now >= deadline) {
      if (g.slots.empty()) return Status::error("no migration arrived on " + s_->where.text() + " within " +
                                                std::to_string(timeout.count()) + " ms");
      return Status::error("only " + std::to_string(g.filled) + " of " + std::to_string(g.slots.size()) +
                           " migration streams connected within " + std::to_string(timeout.count()) + " ms");
    }
    std::vector<pollfd> pfds{{s_->fd.get(), POLLIN, 0}};
    for (auto& p : g.pending) pfds.push_back({p.fd(), p.events(), 0});
    pfds.push_back({cancel_fd, POLLIN, 0});  // a negative fd is ignored by poll
    int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(std::max<long long>(left.count(), 0)));
    if (n < 0 && errno != EINTR) return Status::from_errno("poll");
    if (n <= 0) continue;
    if (pfds.back().revents) return Status::error(kAcceptCancelled);
    pfds.pop_back();

    for (size_t i = g.pending.size(); i-- > 0;) {
      if (!pfds[i + 1].revents) continue;
      Pending& p = g.pending[i];
      auto open = advance(p, p.deadline - kOpenDeadline);
      if (open && !*open) continue;
      Pending taken = std::move(p);
      g.pending.erase(g.pending.begin() + static_cast<ptrdiff_t>(i));
      if (!open) {
        LOG_WARN("migration listener: dropping %s: %s", taken.from.c_str(), open.message().c_str());
        continue;
      }
      g.place(std::move(taken), **open);
    }
    if (pfds[0].revents & POLLIN) accept_ready(s_->fd.get(), g, options);
  }
  auto session = make_impl(g, options);
  if (!session) return session.status();
  return std::unique_ptr<Session>(new Session(std::move(session).value()));
}

namespace {

void accept_ready(int listen_fd, Gathering& g, const TransportOptions& options) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int c;
  while ((c = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC)) >= 0) {
    Pending p;
    p.tcp.reset(c);
    p.from = address_of(addr, len);
    p.deadline = Clock::now() + kOpenDeadline;
    if (options.psk) {
      ::fcntl(c, F_SETFL, ::fcntl(c, F_GETFL) | O_NONBLOCK);
      auto hs = tls::Handshake::start(c, tls::Role::kServer, *options.psk);
      if (!hs) {
        LOG_WARN("migration listener: %s", hs.message().c_str());
        len = sizeof addr;
        continue;
      }
      p.hs.emplace(std::move(hs).value());
    } else {
      p.ch.emplace(StreamChannel::plain(std::move(p.tcp)));
    }
    g.add(std::move(p));
    len = sizeof addr;
  }
}

Result<std::unique_ptr<Session::Impl>> make_impl(Gathering& g, const TransportOptions& options) {
  std::vector<StreamChannel> channels;
  std::vector<FrameParser> parsers;
  double handshake_ms = 0;
  for (auto& s : g.slots) {
    channels.push_back(std::move(*s->ch));
    parsers.push_back(std::move(s->parser));  // keeps whatever arrived after STREAM_OPEN
    handshake_ms = std::max(handshake_ms, s->handshake_ms);
  }
  TransportOptions opt = options;
  opt.streams = static_cast<uint16_t>(g.slots.size());
  opt.session_id = g.session;
  const std::string peer = g.slots[0]->from;
  auto impl = std::make_unique<Session::Impl>(std::move(channels), std::move(parsers), opt, g.session, peer);
  impl->handshake_ms = handshake_ms;
  MINIHV_TRY(impl->init());
  return impl;
}

}  // namespace

}  // namespace minihv::migrate
