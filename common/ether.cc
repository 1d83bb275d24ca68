#include "common/ether.h"

#include <sys/random.h>

#include <cctype>
#include <cstdio>

namespace minihv {

namespace {

constexpr uint8_t kMulticastBit = 0x01;       // first octet: a group address
constexpr uint8_t kLocalBit = 0x02;           // first octet: locally administered
constexpr size_t kMaxInterfaceName = 15;      // IFNAMSIZ - 1

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

Status bad_mac(const std::string& text, const char* why) {
  return Status::invalid("mac=" + text + ": " + why + " (want six hex pairs, e.g. 52:54:00:12:34:56)");
}

}  // namespace

Result<MacAddress> parse_mac(const std::string& text) {
  MacAddress mac{};
  if (text.size() != 17) return bad_mac(text, "not a MAC address");
  for (size_t i = 0; i < mac.size(); ++i) {
    const int hi = hex_digit(text[3 * i]), lo = hex_digit(text[3 * i + 1]);
    if (hi < 0 || lo < 0) return bad_mac(text, "not a MAC address");
    if (i + 1 < mac.size() && text[3 * i + 2] != ':' && text[3 * i + 2] != '-')
      return bad_mac(text, "not a MAC address");
    mac[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  if (mac[0] & kMulticastBit) return bad_mac(text, "a multicast address cannot be a NIC's own");
  if (mac == MacAddress{}) return bad_mac(text, "all zeros is not an address");
  return mac;
}

std::string format_mac(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

MacAddress random_mac() {
  MacAddress mac{};
  for (size_t got = 0; got < mac.size();) {
    const ssize_t n = getrandom(mac.data() + got, mac.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  mac[0] = static_cast<uint8_t>((mac[0] & ~kMulticastBit) | kLocalBit);
  return mac;
}

bool valid_interface_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxInterfaceName || name == "." || name == "..") return false;
  for (char c : name)
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
      return false;
  return true;
}

}  // namespace minihv
