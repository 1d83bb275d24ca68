#include "vmm/devices/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "vmm/devices/virtio_spec.h"

namespace minihv {

namespace {

constexpr unsigned kAllOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;

ifreq named(const std::string& name) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), std::min(name.size(), sizeof ifr.ifr_name - 1));
  return ifr;
}

Status bring_up(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Status::from_errno("tap " + name + ": socket");
  ifreq ifr = named(name);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) return Status::from_errno("tap " + name + ": SIOCGIFFLAGS");
  if (ifr.ifr_flags & IFF_UP) return Status::ok();  // (up already: a tap its node made, changed by nobody)
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return Status::from_errno("tap " + name + ": bring up");
  return Status::ok();
}

// Makes `tap` a port of `bridge` unless it is one already (a node restarting a VM finds it so).
Status join_bridge(const std::string& tap, const std::string& bridge) {
  std::error_code ec;
  if (!std::filesystem::exists("/sys/class/net/" + bridge + "/bridge", ec))
    return Status::invalid("bridge " + bridge + ": no such bridge on this host (create it, e.g. `ip link add " +
                           bridge + " type bridge`)");
  const auto master = std::filesystem::read_symlink("/sys/class/net/" + tap + "/master", ec);
  if (!ec && master.filename() == bridge) return Status::ok();
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Status::from_errno("bridge " + bridge + ": socket");
  ifreq ifr = named(bridge);
  ifr.ifr_ifindex = static_cast<int>(::if_nametoindex(tap.c_str()));
  if (::ioctl(s.get(), SIOCBRADDIF, &ifr) < 0) return Status::from_errno("tap " + tap + ": cannot join bridge " + bridge);
  return Status::ok();
}

// Whether `name` is a tap made without multi_queue: attaching to it the single-queue way works, or
// fails only because another fd holds its one queue. (Not sysfs: a process in another network
// namespace than the one /sys was mounted in sees that namespace's interfaces there.)
bool single_queue_tap(const std::string& name) {
  UniqueFd probe(::open(kTunDevice, O_RDWR | O_NONBLOCK | O_CLOEXEC));
  ifreq ifr = named(name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  return probe.valid() && (::ioctl(probe.get(), TUNSETIFF, &ifr) == 0 || errno == EBUSY);
}

// Why TUNSETIFF may have refused, in words: sysfs shows tun_flags only for tun/tap interfaces.
std::string attach_hint(const std::string& name, bool creating, bool multi_queue) {
  if (creating) return "creating it failed";
  if (multi_queue && single_queue_tap(name))
    return "it exists without multi_queue: give queues=1, or recreate it with `ip tuntap add " + name +
           " mode tap multi_queue`";
  if (::access(("/sys/class/net/" + name + "/tun_flags").c_str(), F_OK) != 0)
    return "an interface of that name exists and is not a tap";
  return multi_queue ? "is it a tap (not a tun), made multi_queue?"
                     : "is it a tap (not a tun), not multi_queue, and not attached to another process?";
}

// One more queue (fd) of the tap `name`, non-blocking, with the virtio 1.x header.
Result<UniqueFd> open_queue(const std::string& name, bool created, bool multi_queue) {
  UniqueFd fd(::open(kTunDevice, O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid())
    return Status::invalid_from_errno(std::string("tap ") + name + ": cannot open " + kTunDevice +
                                      " (is the tun module loaded, and are we root?)");
  ifreq ifr = named(name);
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0));
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0)
    return Status::invalid_from_errno("tap " + name + ": cannot attach (" + attach_hint(name, created, multi_queue) + ")");
  int hdr = virtio::net::kHdrSize;
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) < 0) return Status::from_errno("tap " + name + ": TUNSETVNETHDRSZ");
  return fd;
}

// The tap `name` attached (made if there is none) on a fresh fd, as root.
Result<UniqueFd> attach_as_root(const std::string& name) {
  UniqueFd fd(::open(kTunDevice, O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return Status::from_errno(std::string("tap ") + name + ": cannot open " + kTunDevice);
  ifreq ifr = named(name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return Status::from_errno("tap " + name + ": TUNSETIFF");
  return fd;
}

}  // namespace

Status make_tap_for(const std::string& name, const std::string& bridge, uid_t uid, gid_t gid) {
  auto fd = attach_as_root(name);
  if (!fd) return fd.status();
  if (::ioctl(fd->get(), TUNSETOWNER, static_cast<unsigned long>(uid)) < 0 ||
      ::ioctl(fd->get(), TUNSETGROUP, static_cast<unsigned long>(gid)) < 0 || ::ioctl(fd->get(), TUNSETPERSIST, 1) < 0)
    return Status::from_errno("tap " + name + ": giving it to uid " + std::to_string(uid));
  MINIHV_TRY(join_bridge(name, bridge));
  return bring_up(name);
}

Status remove_persistent_tap(const std::string& name) {
  if (::if_nametoindex(name.c_str()) == 0) return Status::ok();
  auto fd = attach_as_root(name);
  if (!fd) return fd.status();
  if (::ioctl(fd->get(), TUNSETPERSIST, 0) < 0) return Status::from_errno("tap " + name + ": TUNSETPERSIST 0");
  return Status::ok();  // gone as the fd closes
}

Result<Tap> Tap::open(const std::string& name, const std::string& bridge, unsigned queues) {
  Tap t;
  t.name_ = name;
  t.created_ = ::if_nametoindex(name.c_str()) == 0;
  // A single queue is opened without IFF_MULTI_QUEUE, as before multi-queue: an existing tap made
  // without multi_queue keeps working with queues=1.
  const bool multi_queue = queues > 1;
  for (unsigned q = 0; q < queues; ++q) {
    auto fd = open_queue(name, t.created_ && q == 0, multi_queue);
    if (!fd) return fd.status();
    t.fds_.push_back(std::move(fd).value());
  }
  t.enabled_ = queues;
  t.offloads_available_ = ::ioctl(t.fd(), TUNSETOFFLOAD, kAllOffloads) == 0;
  MINIHV_TRY(t.set_offloads(false, false, false, false));
  MINIHV_TRY(t.enable_queues(1));
  if (!bridge.empty()) MINIHV_TRY(join_bridge(name, bridge));
  if (t.created_ || !bridge.empty()) MINIHV_TRY(bring_up(name));
  return t;
}

Status Tap::enable_queues(unsigned n) {
  for (; enabled_ < n; ++enabled_) MINIHV_TRY(set_queue(enabled_, IFF_ATTACH_QUEUE, "enable"));
  for (; enabled_ > n; --enabled_) MINIHV_TRY(set_queue(enabled_ - 1, IFF_DETACH_QUEUE, "disable"));
  return Status::ok();
}

// TUNSETQUEUE refuses to attach an attached queue or detach a detached one: enabled_ tracks them.
Status Tap::set_queue(unsigned q, short flag, const char* what) {
  ifreq ifr{};
  ifr.ifr_flags = flag;
  if (::ioctl(fds_[q].get(), TUNSETQUEUE, &ifr) < 0)
    return Status::from_errno("tap " + name_ + ": cannot " + what + " queue " + std::to_string(q));
  return Status::ok();
}

bool Tap::attached() const {
  ifreq ifr{};
  return ::ioctl(fd(), TUNGETIFF, &ifr) == 0;  // EBADFD once detached
}

Status Tap::set_offloads(bool csum, bool tso4, bool tso6, bool ecn) {
  unsigned flags = 0;
  if (csum && offloads_available_) {  // TSO without checksum offload is refused by the tap
    flags = TUN_F_CSUM;
    if (tso4) flags |= TUN_F_TSO4;
    if (tso6) flags |= TUN_F_TSO6;
    if (ecn && (tso4 || tso6)) flags |= TUN_F_TSO_ECN;
  }
  for (const UniqueFd& fd : fds_)
    if (::ioctl(fd.get(), TUNSETOFFLOAD, flags) < 0) return Status::from_errno("tap " + name_ + ": TUNSETOFFLOAD");
  return Status::ok();
}

}  // namespace minihv
