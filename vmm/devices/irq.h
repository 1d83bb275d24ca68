// vmm/devices/irq.h — how a device raises its interrupt line, without knowing KVM.
#pragma once

namespace minihv {

class IrqLine {
public:
  virtual ~IrqLine() = default;
  // Edge: one interrupt per call (an irqfd write, or KVM_IRQ_LINE high then low).
  virtual void trigger() = 0;
};

}  // namespace minihv
