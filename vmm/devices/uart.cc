#include "vmm/devices/uart.h"

#include <unistd.h>

namespace minihv {

namespace {
// Register offsets from the base port (DLAB=0 unless noted).
constexpr uint64_t kRbrThrDll = 0, kIerDlm = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                   kScr = 7;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRdi = 0x01, kIerThri = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThri = 0x02, kIirRdi = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLsrDr = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kMcrLoop = 0x10;
constexpr size_t kTxFlushAt = 1024;
constexpr size_t kRxMax = 4096;
}  // namespace

Uart::Uart(int out_fd, IrqLine& irq)
    : Uart(
          [out_fd](const char* p, size_t left) {
            while (left > 0) {
              const ssize_t n = ::write(out_fd, p, left);
              if (n <= 0) return;  // console gone: the guest keeps running, output is dropped
              p += n;
              left -= static_cast<size_t>(n);
            }
          },
          irq) {}

Uart::~Uart() { flush_output(); }

void Uart::bus_read(uint64_t offset, uint8_t* data, uint32_t len) {
  std::lock_guard lock(mu_);
  data[0] = read_reg(offset);
  for (uint32_t i = 1; i < len; ++i) data[i] = 0;
}

void Uart::bus_write(uint64_t offset, const uint8_t* data, uint32_t /*len*/) {
  std::lock_guard lock(mu_);
  write_reg(offset, data[0]);
}

uint8_t Uart::read_reg(uint64_t reg) {
  const bool dlab = r_.lcr & kLcrDlab;
  switch (reg) {
    case kRbrThrDll: {
      if (dlab) return r_.dll;
      uint8_t c = 0;
      if (!rx_.empty()) {
        c = rx_.front();
        rx_.pop_front();
      }
      update_irq();
      return c;
    }
    case kIerDlm: return dlab ? r_.dlm : r_.ier;
    case kIirFcr: {
      uint8_t v = r_.iir | kIirFifo;
      if ((r_.iir & 0x0f) == kIirThri) {  // reading IIR acknowledges THRE
        r_.thri_pending = false;
        update_irq();
      }
      return v;
    }
    case kLcr: return r_.lcr;
    case kMcr: return r_.mcr;
    case kLsr: return static_cast<uint8_t>(kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr));
    case kMsr:
      if (r_.mcr & kMcrLoop)  // loopback: outputs wired back to inputs (used by Linux's probe)
        return static_cast<uint8_t>(((r_.mcr & 0x0c) << 4) | ((r_.mcr & 0x01) << 5) | ((r_.mcr & 0x02) << 3));
      return r_.msr;
    case kScr: return r_.scr;
  }
  return 0xff;
}

void Uart::write_reg(uint64_t reg, uint8_t v) {
  const bool dlab = r_.lcr & kLcrDlab;
  switch (reg) {
    case kRbrThrDll:
      if (dlab) {
        r_.dll = v;
      } else if (r_.mcr & kMcrLoop) {
        if (rx_.size() < kRxMax) rx_.push_back(v);
        update_irq();
      } else {
        transmit(v);
        r_.thri_pending = true;  // the byte left at once: THR is empty again
        update_irq();
      }
      break;
    case kIerDlm:
      if (dlab) {
        r_.dlm = v;
      } else {
        const bool thri_on = !(r_.ier & kIerThri) && (v & kIerThri);
        r_.ier = v & 0x0f;
        if (thri_on) r_.thri_pending = true;
        update_irq();
      }
      break;
    case kIirFcr: break;  // FIFO control: our FIFO is always on and always empty on transmit
    case kLcr: r_.lcr = v; break;
    case kMcr: r_.mcr = v & 0x1f; break;
    case kScr: r_.scr = v; break;
    default: break;
  }
}

void Uart::update_irq() {
  uint8_t iir = kIirNone;
  if ((r_.ier & kIerRdi) && !rx_.empty())
    iir = kIirRdi;
  else if ((r_.ier & kIerThri) && r_.thri_pending)
    iir = kIirThri;
  r_.iir = iir;
  const bool pending = iir != kIirNone;
  if (pending && !irq_pending_) irq_.trigger();
  irq_pending_ = pending;
}

void Uart::transmit(uint8_t c) {
  tx_buf_.push_back(static_cast<char>(c));
  ++tx_bytes_;
  if (tap_) tap_(&tx_buf_.back(), 1);
  if (c == '\n' || tx_buf_.size() >= kTxFlushAt) write_out();
}

void Uart::write_out() {
  if (!tx_buf_.empty()) out_(tx_buf_.data(), tx_buf_.size());
  tx_buf_.clear();
}

void Uart::flush_output() {
  std::lock_guard lock(mu_);
  write_out();
}

void Uart::receive(const std::string& bytes) {
  std::lock_guard lock(mu_);
  for (char c : bytes)
    if (rx_.size() < kRxMax) rx_.push_back(static_cast<uint8_t>(c));
  update_irq();
}

Uart::Registers Uart::registers() const {
  std::lock_guard lock(mu_);
  return r_;
}

void Uart::set_registers(const Registers& r) {
  std::lock_guard lock(mu_);
  r_ = r;
  update_irq();
}

}  // namespace minihv
