// The destination's side of set-up: accept the N connections of one session (STREAM_OPEN on each).
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <optional>

#include "common/log.h"
#include "common/net.h"
#include "migrate/session_impl.h"

namespace minihv::migrate {

namespace {

// A connection that has not said which session and stream it is yet.
struct Pending {
  UniqueFd fd;
  FrameParser parser{FrameParser::kAnyStream};
};

// Reads what is there; returns the STREAM_OPEN once whole, nullopt while incomplete, or an error
// (peer closed, corrupt, not a STREAM_OPEN): the caller drops the connection.
Result<std::optional<StreamOpen>> read_open(Pending& p) {
  auto room = p.parser.prepare(4096);
  ssize_t n = ::recv(p.fd.get(), room.data(), room.size(), MSG_DONTWAIT);
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

Result<std::unique_ptr<Session>> Listener::accept(const TransportOptions& options, std::chrono::milliseconds timeout,
                                                 int cancel_fd) {
  const auto deadline = Clock::now() + timeout;
  std::vector<Pending> pending;
  std::vector<std::optional<Pending>> slots;  // by stream index, once the session is known
  uint64_t session = 0;
  size_t filled = 0;
  std::string peer;

  while (slots.empty() || filled < slots.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      if (slots.empty()) return Status::error("no migration arrived on " + s_->where.text() + " within " +
                                              std::to_string(timeout.count()) + " ms");
      return Status::error("only " + std::to_string(filled) + " of " + std::to_string(slots.size()) +
                           " migration streams connected within " + std::to_string(timeout.count()) + " ms");
    }
    std::vector<pollfd> pfds{{s_->fd.get(), POLLIN, 0}};
    for (auto& p : pending) pfds.push_back({p.fd.get(), POLLIN, 0});
    pfds.push_back({cancel_fd, POLLIN, 0});  // a negative fd is ignored by poll
    int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return Status::from_errno("poll");
    if (n <= 0) continue;
    if (pfds.back().revents) return Status::error(kAcceptCancelled);
    pfds.pop_back();

    for (size_t i = pending.size(); i-- > 0;) {
      if (!pfds[i + 1].revents) continue;
      auto open = read_open(pending[i]);
      if (open && !*open) continue;
      Pending p = std::move(pending[i]);
      pending.erase(pending.begin() + static_cast<ptrdiff_t>(i));
      if (!open) {
        LOG_WARN("migration listener: dropping a connection: %s", open.message().c_str());
        continue;
      }
      const StreamOpen& m = **open;
      if (slots.empty()) {
        session = m.session_id;
        slots.resize(m.count);
      }
      if (m.session_id != session || m.count != slots.size() || slots[m.index]) {
        LOG_WARN("migration listener: dropping a stream of another session or a duplicate");
        continue;
      }
      p.parser.set_stream(m.index);
      slots[m.index] = std::move(p);
      ++filled;
    }
    if (pfds[0].revents & POLLIN) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      int c;
      while ((c = ::accept4(s_->fd.get(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC)) >= 0) {
        Pending p;
        p.fd.reset(c);
        pending.push_back(std::move(p));
        len = sizeof addr;
      }
    }
  }

  std::vector<UniqueFd> fds;
  std::vector<FrameParser> parsers;
  for (auto& s : slots) {
    fds.push_back(std::move(s->fd));
    parsers.push_back(std::move(s->parser));  // keeps whatever arrived after STREAM_OPEN
  }
  TransportOptions opt = options;
  opt.streams = static_cast<uint16_t>(slots.size());
  opt.session_id = session;
  char host[64] = "source";
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fds[0].get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST);
  auto impl = std::make_unique<Session::Impl>(std::move(fds), std::move(parsers), opt, session, host);
  MINIHV_TRY(impl->init());
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

}  // namespace minihv::migrate
