#include "vmm/devices/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "vmm/devices/virtio_spec.h"

namespace minihv {

namespace {

constexpr const char* kTunDevice = "/dev/net/tun";
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

// Why TUNSETIFF may have refused, in words: sysfs shows tun_flags only for tun/tap interfaces.
std::string attach_hint(const std::string& name, bool creating) {
  if (creating) return "creating it failed";
  if (::access(("/sys/class/net/" + name + "/tun_flags").c_str(), F_OK) != 0)
    return "an interface of that name exists and is not a tap";
  return "is it a tap (not a tun), and not attached to another process?";
}

}  // namespace

Result<Tap> Tap::open(const std::string& name, const std::string& bridge) {
  Tap t;
  t.name_ = name;
  t.created_ = ::if_nametoindex(name.c_str()) == 0;
  t.fd_.reset(::open(kTunDevice, O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!t.fd_.valid())
    return Status::invalid_from_errno(std::string("tap ") + name + ": cannot open " + kTunDevice +
                                      " (is the tun module loaded, and are we root?)");
  ifreq ifr = named(name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(t.fd_.get(), TUNSETIFF, &ifr) < 0) return Status::invalid_from_errno("tap " + name + ": cannot attach (" + attach_hint(name, t.created_) + ")");
  int hdr = virtio::net::kHdrSize;
  if (::ioctl(t.fd_.get(), TUNSETVNETHDRSZ, &hdr) < 0)
    return Status::from_errno("tap " + name + ": TUNSETVNETHDRSZ");
  t.offloads_available_ = ::ioctl(t.fd_.get(), TUNSETOFFLOAD, kAllOffloads) == 0;
  MINIHV_TRY(t.set_offloads(false, false, false, false));
  if (!bridge.empty()) MINIHV_TRY(join_bridge(name, bridge));
  if (t.created_ || !bridge.empty()) MINIHV_TRY(bring_up(name));
  return t;
}

bool Tap::attached() const {
  ifreq ifr{};
  return ::ioctl(fd_.get(), TUNGETIFF, &ifr) == 0;  // EBADFD once detached
}

Status Tap::set_offloads(bool csum, bool tso4, bool tso6, bool ecn) {
  unsigned flags = 0;
  if (csum && offloads_available_) {  // TSO without checksum offload is refused by the tap
    flags = TUN_F_CSUM;
    if (tso4) flags |= TUN_F_TSO4;
    if (tso6) flags |= TUN_F_TSO6;
    if (ecn && (tso4 || tso6)) flags |= TUN_F_TSO_ECN;
  }
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) < 0) return Status::from_errno("tap " + name_ + ": TUNSETOFFLOAD");
  return Status::ok();
}

}  // namespace minihv
