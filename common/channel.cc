#include "common/channel.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "common/net.h"

namespace minihv {

Result<size_t> PlainChannel::read_some(void* buf, size_t n, std::optional<Deadline> deadline) {
  for (;;) {
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(std::clamp<long long>(left.count(), 0, INT_MAX)));
      if (rc < 0 && errno == EINTR) continue;
      if (rc == 0) return Status::error("no bytes before the deadline");
    }
    const ssize_t got = ::recv(fd_, buf, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Status::from_errno("recv");
    return static_cast<size_t>(got);
  }
}

Status PlainChannel::write_all(std::string_view bytes) { return net::send_all(fd_, bytes); }

Result<size_t> TlsChannel::read_some(void* buf, size_t n, std::optional<Deadline> deadline) {
  return session_.read(buf, n, deadline);
}

Status TlsChannel::write_all(std::string_view bytes) {
  std::optional<Deadline> deadline;
  if (write_timeout_) deadline = std::chrono::steady_clock::now() + *write_timeout_;
  return session_.write_all(bytes, deadline);
}

}  // namespace minihv
