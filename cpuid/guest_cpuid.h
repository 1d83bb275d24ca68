// cpuid/guest_cpuid.h — the CPUID table one VM gets: model applied to this host, normalised.
//
// This is the module's face to vmm/: build_for_vm() once per VM, entries_for() per vCPU, and
// status_json() for the VM's `status` (the migration issue compares its `profile`).
#pragma once

#include <linux/kvm.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "cpuid/host.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

struct BuildOptions {
  unsigned ncpus = 1;
  bool tsc_pinned = false;
};

struct GuestCpuid {
  std::string model;
  Profile table;      // what KVM_SET_CPUID2 gets (APIC id 0; see entries_for)
  Profile effective;  // what the guest can really use: the table, or the processor's own CPUID when advisory
  bool advisory = false;
  std::string reason;

  std::vector<kvm_cpuid_entry2> entries_for(unsigned apic_id) const;
};

// Pure: the model applied to `host` (see capability()) and normalised for `opts.ncpus` vCPUs.
Result<GuestCpuid> build_for_vm(const std::string& model, const HostCpu& host, const BuildOptions& opts);
// The same for this machine, given KVM_GET_SUPPORTED_CPUID (the VMM already has it).
Result<GuestCpuid> build_for_vm(const std::string& model, std::span<const kvm_cpuid_entry2> kvm_supported,
                                unsigned ncpus);

// KVM_GET_CPUID2 on a vCPU: the table KVM really holds.
Result<Profile> read_vcpu_cpuid(int vcpu_fd);

// {model, vendor, advisory, reason, features, model_features, profile, applied?}: `features`
// and `profile` are the effective ones (what migration must preserve); `applied` is the
// read-back table when given.
nlohmann::json status_json(const GuestCpuid& g, const Profile* applied = nullptr);
// The one-line warning `run` and `cpuid show` print when the model is advisory.
std::string advisory_warning(const GuestCpuid& g);

}  // namespace minihv::cpuid
