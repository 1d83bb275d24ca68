#include "vmm/devices/net_announce.h"

#include <algorithm>
#include <cstring>

namespace minihv {

namespace {

constexpr uint16_t kEtherTypeRarp = 0x8035;
constexpr uint16_t kArpHwEthernet = 1;
constexpr uint16_t kArpProtoIpv4 = 0x0800;
constexpr uint8_t kArpHwLen = 6, kArpProtoLen = 4;
constexpr uint16_t kRarpOpRequestReverse = 3;

uint8_t* put_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
  return p + 2;
}

uint8_t* put_mac(uint8_t* p, const MacAddress& mac) { return std::copy(mac.begin(), mac.end(), p); }

}  // namespace

std::chrono::milliseconds announce_gap(unsigned round) {
  return std::min(kAnnounceFirstGap + kAnnounceGapStep * round, kAnnounceMaxGap);
}

std::array<uint8_t, kRarpFrameSize> rarp_frame(const MacAddress& mac) {
  std::array<uint8_t, kRarpFrameSize> f{};  // the padding stays zero
  uint8_t* p = f.data();
  p = put_mac(p, MacAddress{0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  p = put_mac(p, mac);
  p = put_be16(p, kEtherTypeRarp);
  p = put_be16(p, kArpHwEthernet);
  p = put_be16(p, kArpProtoIpv4);
  *p++ = kArpHwLen;
  *p++ = kArpProtoLen;
  p = put_be16(p, kRarpOpRequestReverse);
  p = put_mac(p, mac);  // sender hardware address; sender protocol address stays 0.0.0.0
  p += kArpProtoLen;
  p = put_mac(p, mac);  // target hardware address; target protocol address stays 0.0.0.0
  return f;
}

}  // namespace minihv
