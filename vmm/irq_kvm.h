// vmm/irq_kvm.h — an IrqLine backed by a KVM irqfd on one GSI of the in-kernel irqchip.
#pragma once

#include <memory>

#include "common/fd.h"
#include "common/status.h"
#include "vmm/devices/irq.h"

namespace minihv {

class KvmIrqLine : public IrqLine {
public:
  static Result<std::unique_ptr<KvmIrqLine>> create(int vm_fd, unsigned gsi);
  void trigger() override;
  unsigned gsi() const { return gsi_; }
  int eventfd() const { return fd_.get(); }

private:
  KvmIrqLine(unsigned gsi, UniqueFd fd) : gsi_(gsi), fd_(std::move(fd)) {}
  unsigned gsi_;
  UniqueFd fd_;
};

}  // namespace minihv
