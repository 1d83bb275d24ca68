#include "vmm/vcpu_setup.h"

#include <cstring>
#include <memory>
#include <string>

#include "vmm/kvm.h"
#include "vmm/vcpu.h"

namespace minihv {

namespace {
constexpr uint32_t kApicLvtLint0 = 0x350, kApicLvtLint1 = 0x360;
constexpr uint32_t kApicDeliveryExtInt = 7u << 8, kApicDeliveryNmi = 4u << 8;
constexpr uint32_t kApicDeliveryMask = 7u << 8;
constexpr uint16_t kFpuControlReset = 0x37f;
constexpr uint32_t kMxcsrReset = 0x1f80;

uint32_t lapic_reg(const kvm_lapic_state& s, uint32_t off) {
  uint32_t v;
  std::memcpy(&v, s.regs + off, sizeof v);
  return v;
}
void set_lapic_reg(kvm_lapic_state& s, uint32_t off, uint32_t v) { std::memcpy(s.regs + off, &v, sizeof v); }

std::string on_vcpu(const char* what, const Vcpu& v) {
  return std::string(what) + " (vcpu " + std::to_string(v.id()) + ")";
}
}  // namespace

Status setup_vcpu_lapic(Vcpu& vcpu) {
  kvm_lapic_state s{};
  int rc = kvm_ioctl(vcpu.fd(), KVM_GET_LAPIC, &s);
  if (rc < 0) return kvm_error(on_vcpu("KVM_GET_LAPIC", vcpu).c_str(), rc);
  set_lapic_reg(s, kApicLvtLint0, (lapic_reg(s, kApicLvtLint0) & ~kApicDeliveryMask) | kApicDeliveryExtInt);
  set_lapic_reg(s, kApicLvtLint1, (lapic_reg(s, kApicLvtLint1) & ~kApicDeliveryMask) | kApicDeliveryNmi);
  rc = kvm_ioctl(vcpu.fd(), KVM_SET_LAPIC, &s);
  if (rc < 0) return kvm_error(on_vcpu("KVM_SET_LAPIC", vcpu).c_str(), rc);
  return Status::ok();
}

Status setup_vcpu_fpu(Vcpu& vcpu) {
  kvm_fpu fpu{};
  fpu.fcw = kFpuControlReset;
  fpu.mxcsr = kMxcsrReset;
  int rc = kvm_ioctl(vcpu.fd(), KVM_SET_FPU, &fpu);
  if (rc < 0) return kvm_error(on_vcpu("KVM_SET_FPU", vcpu).c_str(), rc);
  return Status::ok();
}

Status set_vcpu_registers(Vcpu& vcpu, const kvm_regs& regs, const kvm_sregs& sregs) {
  int rc = kvm_ioctl(vcpu.fd(), KVM_SET_SREGS, const_cast<kvm_sregs*>(&sregs));
  if (rc < 0) return kvm_error(on_vcpu("KVM_SET_SREGS", vcpu).c_str(), rc);
  rc = kvm_ioctl(vcpu.fd(), KVM_SET_REGS, const_cast<kvm_regs*>(&regs));
  if (rc < 0) return kvm_error(on_vcpu("KVM_SET_REGS", vcpu).c_str(), rc);
  return Status::ok();
}

}  // namespace minihv
