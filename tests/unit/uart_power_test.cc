// The UART and the power devices, driven as a guest driver would drive them.
#include <gtest/gtest.h>

#include <poll.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "vmm/devices/power.h"
#include "vmm/devices/uart.h"

namespace minihv {
namespace {

struct CountingIrq : IrqLine {
  int count = 0;
  void trigger() override { ++count; }
};

class UartTest : public ::testing::Test {
protected:
  void SetUp() override { ASSERT_EQ(pipe(fds_), 0); }
  void TearDown() override {
    close(fds_[0]);
    close(fds_[1]);
  }
  void out(Uart& u, uint64_t reg, uint8_t v) { u.bus_write(reg, &v, 1); }
  uint8_t in(Uart& u, uint64_t reg) {
    uint8_t v = 0;
    u.bus_read(reg, &v, 1);
    return v;
  }
  // What reached the console, or "" after 200 ms (a test fails rather than hangs).
  std::string drain() {
    pollfd p{fds_[0], POLLIN, 0};
    if (poll(&p, 1, 200) != 1) return "";
    char buf[256];
    ssize_t n = read(fds_[0], buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  int fds_[2];
  CountingIrq irq_;
};

TEST_F(UartTest, TransmitsWholeLines) {
  Uart u(fds_[1], irq_);
  for (char c : std::string("hello\n")) out(u, 0, static_cast<uint8_t>(c));
  EXPECT_EQ(drain(), "hello\n");
  EXPECT_EQ(u.tx_bytes(), 6u);
  EXPECT_EQ(in(u, 5) & 0x60, 0x60) << "LSR: transmitter always empty";
}

TEST_F(UartTest, TheTapGetsEachByteAtOnceTheFdWholeLines) {
  Uart u(fds_[1], irq_);
  std::string tapped;
  u.set_tap([&](const char* data, size_t n) { tapped.append(data, n); });
  for (char c : std::string("$ ")) out(u, 0, static_cast<uint8_t>(c));
  EXPECT_EQ(tapped, "$ ") << "a prompt without a newline reaches attached consoles";
  EXPECT_EQ(drain(), "");
  out(u, 0, '\n');
  EXPECT_EQ(tapped, "$ \n");
  EXPECT_EQ(drain(), "$ \n");
}

TEST_F(UartTest, DivisorLatchDoesNotTransmit) {
  Uart u(fds_[1], irq_);
  out(u, 3, 0x80);  // DLAB on
  out(u, 0, 0x01);
  out(u, 1, 0x00);
  EXPECT_EQ(in(u, 0), 0x01);
  out(u, 3, 0x03);  // 8N1, DLAB off
  EXPECT_EQ(u.tx_bytes(), 0u);
}

TEST_F(UartTest, ThreInterruptWhenEnabledAndAcknowledgedByIir) {
  Uart u(fds_[1], irq_);
  out(u, 1, 0x02);  // IER: THRI
  EXPECT_EQ(irq_.count, 1);
  EXPECT_EQ(in(u, 2) & 0x0f, 0x02);
  EXPECT_EQ(in(u, 2) & 0x0f, 0x01) << "reading IIR acknowledges THRE";
  out(u, 0, 'x');
  EXPECT_EQ(irq_.count, 2);
}

TEST_F(UartTest, ReceivedBytesRaiseRdaAndReadBack) {
  Uart u(fds_[1], irq_);
  out(u, 1, 0x01);  // IER: RDI
  u.receive("ok");
  EXPECT_EQ(irq_.count, 1);
  EXPECT_EQ(in(u, 5) & 0x01, 0x01);
  EXPECT_EQ(in(u, 2) & 0x0f, 0x04);
  EXPECT_EQ(in(u, 0), 'o');
  EXPECT_EQ(in(u, 0), 'k');
  EXPECT_EQ(in(u, 5) & 0x01, 0x00);
  EXPECT_EQ(in(u, 2) & 0x0f, 0x01);
}

TEST_F(UartTest, LoopbackModeEchoesAndModemLinesFollowMcr) {
  Uart u(fds_[1], irq_);
  out(u, 4, 0x10 | 0x01);  // loop + DTR
  EXPECT_EQ(in(u, 6) & 0xf0, 0x20) << "DTR loops to DSR";
  out(u, 0, 'z');
  EXPECT_EQ(in(u, 0), 'z');
  EXPECT_EQ(u.tx_bytes(), 0u);
}

TEST(Power, SleepS5PowersOffAndResetReboots) {
  std::vector<PowerEvent> events;
  AcpiPower p([&](PowerEvent e) { events.push_back(e); });
  uint8_t v = (5 << 2);  // S5 without SLP_EN: nothing
  p.bus_write(0, &v, 1);
  EXPECT_TRUE(events.empty());
  v = (3 << 2) | (1 << 5);  // S3: not supported, ignored
  p.bus_write(0, &v, 1);
  EXPECT_TRUE(events.empty());
  v = (5 << 2) | (1 << 5);
  p.bus_write(0, &v, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], PowerEvent::kPowerOff);
  v = 1;
  p.bus_write(2, &v, 1);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1], PowerEvent::kReboot);
}

TEST(Power, I8042SelfTestAndResetCommand) {
  std::vector<PowerEvent> events;
  I8042 kbc([&](PowerEvent e) { events.push_back(e); });
  uint8_t v = 0xaa, r = 0;
  kbc.bus_write(4, &v, 1);
  kbc.bus_read(4, &r, 1);
  EXPECT_EQ(r & 0x01, 0x01) << "output buffer full after a self-test";
  kbc.bus_read(0, &r, 1);
  EXPECT_EQ(r, 0x55);
  EXPECT_TRUE(events.empty());
  v = 0xfe;
  kbc.bus_write(4, &v, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], PowerEvent::kReboot);
}

}  // namespace
}  // namespace minihv
