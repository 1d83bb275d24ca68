// `--net` text, MAC addresses and the self-announce frame and schedule: pure functions.
#include "vmm/devices/net_spec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include "vmm/devices/net_announce.h"

namespace minihv {
namespace {

using std::chrono::milliseconds;

constexpr MacAddress kMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr uint8_t kMulticastBit = 0x01, kLocalBit = 0x02;

// Expects `text` to be refused with a message containing every one of `words`.
void expect_bad_spec(const std::string& text, std::initializer_list<const char*> words) {
  auto r = parse_nic_spec(text);
  ASSERT_FALSE(r) << text;
  EXPECT_TRUE(r.status().is_invalid_input()) << text;
  for (const char* w : words) EXPECT_NE(r.message().find(w), std::string::npos) << text << ": " << r.message();
}

void expect_bad_mac(const std::string& text, const char* why) {
  auto r = parse_mac(text);
  ASSERT_FALSE(r) << text;
  EXPECT_NE(r.message().find("mac=" + text), std::string::npos) << r.message();
  EXPECT_NE(r.message().find(why), std::string::npos) << r.message();
}

// --- MAC text ---

TEST(NetSpec, ParsesMacWithColonsOrDashesInEitherCase) {
  for (const char* text : {"52:54:00:12:34:56", "52-54-00-12-34-56", "52:54-00:12-34:56"}) {
    auto m = parse_mac(text);
    ASSERT_TRUE(m) << text << ": " << m.message();
    EXPECT_EQ(*m, kMac) << text;
  }
  auto upper = parse_mac("02:AB:cd:EF:0a:F0");
  ASSERT_TRUE(upper) << upper.message();
  EXPECT_EQ(*upper, (MacAddress{0x02, 0xab, 0xcd, 0xef, 0x0a, 0xf0}));
}

TEST(NetSpec, RefusesMalformedMacsNamingTheProblem) {
  for (const char* text : {"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54:00:12:34:5", "zz:54:00:12:34:56",
                           "52:54:00:12:34:5g", "52.54.00.12.34.56", "52:54:00:12:34:56 ", "525400123456"})
    expect_bad_mac(text, "not a MAC address");
}

TEST(NetSpec, RefusesMulticastAndZeroMacs) {
  expect_bad_mac("01:00:5e:00:00:01", "multicast");
  expect_bad_mac("ff:ff:ff:ff:ff:ff", "multicast");
  expect_bad_mac("00:00:00:00:00:00", "all zeros");
}

TEST(NetSpec, FormatsMacAsLowerCaseColonHex) {
  EXPECT_EQ(format_mac(kMac), "52:54:00:12:34:56");
  EXPECT_EQ(format_mac({0x02, 0xab, 0xcd, 0xef, 0x0a, 0xf0}), "02:ab:cd:ef:0a:f0");
  EXPECT_EQ(format_mac({0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54}), "fe:dc:ba:98:76:54");
  auto back = parse_mac(format_mac({0x02, 0xab, 0xcd, 0xef, 0x0a, 0xf0}));
  ASSERT_TRUE(back);
  EXPECT_EQ(format_mac(*back), "02:ab:cd:ef:0a:f0");
}

TEST(NetSpec, RandomMacIsUnicastLocallyAdministeredAndVaries) {
  std::set<MacAddress> seen;
  constexpr int kDraws = 64;
  for (int i = 0; i < kDraws; ++i) {
    const MacAddress m = random_mac();
    EXPECT_EQ(m[0] & kMulticastBit, 0) << format_mac(m);
    EXPECT_EQ(m[0] & kLocalBit, kLocalBit) << format_mac(m);
    EXPECT_TRUE(parse_mac(format_mac(m))) << format_mac(m);  // usable as mac= on a destination
    seen.insert(m);
  }
  EXPECT_GT(seen.size(), kDraws - 2u);  // 46 random bits: a repeat in 64 draws means no randomness
}

// --- interface names ---

TEST(NetSpec, InterfaceNames) {
  for (const char* good : {"tap0", "t", "mhv-tap_1.2", "123456789012345"})
    EXPECT_TRUE(valid_interface_name(good)) << good;
  for (const char* bad : {"", "1234567890123456", ".", "..", "a/b", "a:b", "a b", "a\tb", "a\nb", "\x7f"})
    EXPECT_FALSE(valid_interface_name(bad)) << bad;
}

// --- --net text ---

TEST(NetSpec, ParsesTapAlone) {
  auto s = parse_nic_spec("tap=tap0");
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(s->tap, "tap0");
  EXPECT_FALSE(s->mac.has_value());
  EXPECT_EQ(s->queues, 1u);
}

TEST(NetSpec, ParsesMacAndQueuesInAnyOrder) {
  for (const char* text : {"tap=tap0,mac=52:54:00:12:34:56,queues=1", "queues=1,mac=52:54:00:12:34:56,tap=tap0"}) {
    auto s = parse_nic_spec(text);
    ASSERT_TRUE(s) << text << ": " << s.message();
    EXPECT_EQ(s->tap, "tap0");
    ASSERT_TRUE(s->mac.has_value());
    EXPECT_EQ(*s->mac, kMac);
    EXPECT_EQ(s->queues, 1u);
  }
}

TEST(NetSpec, ParsesOneToEightQueuePairs) {
  for (unsigned n = 1; n <= NicSpec::kMaxQueuePairs; ++n) {
    auto s = parse_nic_spec("tap=tap0,queues=" + std::to_string(n));
    ASSERT_TRUE(s) << n << ": " << s.message();
    EXPECT_EQ(s->queues, n);
  }
  auto s = parse_nic_spec("tap=tap0,queues=08");
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(s->queues, 8u);
}

TEST(NetSpec, ParsesABridge) {
  auto s = parse_nic_spec("tap=tap0,bridge=br-lab");
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(s->bridge, "br-lab");
  auto none = parse_nic_spec("tap=tap0");
  ASSERT_TRUE(none) << none.message();
  EXPECT_TRUE(none->bridge.empty());
}

TEST(NetSpec, RefusesBadSpecsNamingThePart) {
  expect_bad_spec("tap=tap0,bridge=a b", {"bridge=a b", "not an interface name"});
  expect_bad_spec("", {"want KEY=VALUE"});
  expect_bad_spec("tap0", {"'tap0'", "want KEY=VALUE"});
  expect_bad_spec("tap=", {"'tap='", "want KEY=VALUE"});
  expect_bad_spec("tap=tap0,", {"want KEY=VALUE"});
  expect_bad_spec("tap=a/b", {"tap=a/b", "not an interface name"});
  expect_bad_spec("tap=1234567890123456", {"not an interface name"});
  expect_bad_spec("tap=tap0,mac=zz", {"mac=zz", "not a MAC address"});
  expect_bad_spec("tap=tap0,mac=01:00:5e:00:00:01", {"multicast"});
  expect_bad_spec("tap=tap0,queues=0", {"queues=0", "want 1 to 8 queue pairs"});
  expect_bad_spec("tap=tap0,queues=9", {"queues=9", "want 1 to 8 queue pairs"});
  expect_bad_spec("tap=tap0,queues=100", {"queues=100", "want 1 to 8"});
  expect_bad_spec("tap=tap0,queues=-1", {"queues=-1", "want 1 to 8"});
  expect_bad_spec("tap=tap0,queues=2x", {"queues=2x", "want 1 to 8"});
  expect_bad_spec("tap=tap0,queues=x", {"queues=x"});
  expect_bad_spec("tap=tap0,speed=10", {"unknown option 'speed'", "tap, mac, bridge, queues"});
  expect_bad_spec("mac=52:54:00:12:34:56", {"tap=NAME is required"});
}

// --- self-announce ---

TEST(NetAnnounce, RarpFrameBytes) {
  const auto f = rarp_frame(kMac);
  ASSERT_EQ(f.size(), 60u);
  const std::array<uint8_t, 42> want{
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // destination: broadcast
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // source: the guest
      0x80, 0x35,                          // EtherType RARP
      0x00, 0x01,                          // hardware type Ethernet
      0x08, 0x00,                          // protocol type IPv4
      6,    4,                             // address lengths
      0x00, 0x03,                          // opcode: request reverse
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // sender hardware address
      0,    0,    0,    0,                 // sender protocol address
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // target hardware address
      0,    0,    0,    0,                 // target protocol address
  };
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(f[i], want[i]) << "byte " << i;
  for (size_t i = want.size(); i < f.size(); ++i) EXPECT_EQ(f[i], 0) << "padding byte " << i;
}

TEST(NetAnnounce, RarpFrameCarriesTheGivenMac) {
  const MacAddress other{0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  const auto f = rarp_frame(other);
  for (size_t at : {6u, 22u, 32u})
    EXPECT_TRUE(std::equal(other.begin(), other.end(), f.begin() + at)) << "at " << at;
}

TEST(NetAnnounce, ScheduleIsQemus) {
  EXPECT_EQ(kAnnounceRounds, 5u);
  EXPECT_EQ(announce_gap(0), milliseconds(50));
  EXPECT_EQ(announce_gap(1), milliseconds(150));
  EXPECT_EQ(announce_gap(2), milliseconds(250));
  EXPECT_EQ(announce_gap(3), milliseconds(350));
  EXPECT_EQ(announce_gap(4), milliseconds(450));
  EXPECT_EQ(announce_gap(5), milliseconds(550));
  EXPECT_EQ(announce_gap(6), milliseconds(550));  // capped
  EXPECT_EQ(announce_gap(1000), milliseconds(550));
}

}  // namespace
}  // namespace minihv
