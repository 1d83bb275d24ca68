// vmm/devices/uart.h — an 8250/16550A serial port (COM1): the guest console.
//
// Owns: the register file (with DLAB), transmit to an output fd (line-buffered) and to a tap (each
// byte at once: attached consoles), the receive FIFO that receive() fills (the VMM's console
// input: a terminal, attached consoles), and the THRE/RDA interrupts. Must not know: where the
// output fd and the tap lead, or where input comes from.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include "vmm/bus.h"
#include "vmm/devices/irq.h"

namespace minihv {

class Uart : public BusDevice {
public:
  // Receives every transmitted byte as it leaves, on the vCPU's thread: must not block.
  using Tap = std::function<void(const char* data, size_t n)>;

  // Where guest output goes, a line (or 1 KiB) at a time, with the device's lock held.
  using Output = std::function<void(const char* data, size_t n)>;

  Uart(Output out, IrqLine& irq) : out_(std::move(out)), irq_(irq) {}
  // out_fd: not owned; output that cannot be written is dropped (the guest keeps running).
  Uart(int out_fd, IrqLine& irq);
  ~Uart() override;
  // Before the guest runs.
  void set_tap(Tap tap) { tap_ = std::move(tap); }

  void bus_read(uint64_t offset, uint8_t* data, uint32_t len) override;
  void bus_write(uint64_t offset, const uint8_t* data, uint32_t len) override;

  // Queues bytes as if typed (console input; tests). Beyond the FIFO's 4 KiB they are dropped.
  void receive(const std::string& bytes);
  void flush_output();
  uint64_t tx_bytes() const { return tx_bytes_; }

  struct Registers {  // everything a live migration must carry
    uint8_t ier = 0, iir = 1, lcr = 0, mcr = 0, lsr = 0x60, msr = 0xb0, scr = 0, dll = 0x0c, dlm = 0;
    bool thri_pending = false;
  };
  Registers registers() const;
  void set_registers(const Registers& r);

private:
  uint8_t read_reg(uint64_t reg);
  void write_reg(uint64_t reg, uint8_t v);
  void update_irq();  // recomputes IIR; raises an edge when an interrupt becomes pending
  void transmit(uint8_t c);
  void write_out();  // the buffered line to out_ (mu_ held)

  Output out_;
  IrqLine& irq_;
  Tap tap_;
  mutable std::mutex mu_;
  Registers r_;
  std::deque<uint8_t> rx_;
  std::string tx_buf_;
  uint64_t tx_bytes_ = 0;
  bool irq_pending_ = false;
};

}  // namespace minihv
