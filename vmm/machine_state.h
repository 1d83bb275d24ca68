// vmm/machine_state.h — everything of a VM that is not guest RAM, and its binary form.
//
// Owns: the state structs (per vCPU, per VM, devices) and their versioned, length-checked,
// checksummed serialisation (layout: docs/vm-state.md). Reading a blob never trusts it: a short,
// long or corrupt blob is an error naming the field, never a crash.
// Must not know: how state is read from KVM (vcpu_state.h, vm.h), where the blob travels.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "vmm/devices/uart.h"

namespace minihv {

struct MsrValue {
  uint32_t index = 0;
  uint64_t value = 0;
};

// One vCPU, as the KVM_GET_* ioctls return it.
struct CpuState {
  uint32_t id = 0;
  kvm_regs regs{};
  bool has_sregs2 = false;  // which one of the two below is meaningful
  kvm_sregs sregs{};
  kvm_sregs2 sregs2{};
  std::vector<uint8_t> xsave;  // KVM_GET_XSAVE2 (KVM_CAP_XSAVE2's size) or KVM_GET_XSAVE (4 KiB)
  bool has_xcrs = false;
  kvm_xcrs xcrs{};
  std::vector<MsrValue> msrs;  // every MSR KVM would GET, in KVM_GET_MSR_INDEX_LIST order
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  kvm_mp_state mp_state{};
  kvm_debugregs debugregs{};
  std::vector<kvm_cpuid_entry2> cpuid;  // the table the vCPU was given (KVM_GET_CPUID2)
  bool has_tsc_offset = false;          // KVM_VCPU_TSC_OFFSET where the host has it
  uint64_t tsc_offset = 0;
};

// The VM-wide in-kernel state.
struct KvmVmState {
  kvm_clock_data clock{};  // kvmclock; flags say whether realtime/host_tsc are valid
  kvm_irqchip pic_master{}, pic_slave{}, ioapic{};
  kvm_pit_state2 pit{};
  uint32_t tsc_khz = 0;  // of vCPU 0 (every vCPU of a minihv VM has the same rate)
};

struct DeviceState {
  Uart::Registers uart;
  std::vector<std::vector<uint8_t>> virtio;  // VirtioMmio::save() of each window, in window order
};

struct MachineState {
  KvmVmState vm;
  std::vector<CpuState> cpus;
  DeviceState devices;
};

// Blob format version this minihv writes and the only one it reads.
inline constexpr uint32_t kMachineStateVersion = 1;

std::vector<uint8_t> encode_machine_state(const MachineState& state);
// Checks magic, version, length and checksum, then every field; the message names what is wrong.
Result<MachineState> decode_machine_state(std::span<const uint8_t> blob);

}  // namespace minihv
