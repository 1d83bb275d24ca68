#include "cpuid/guest_cpuid.h"


#include "cpuid/features.h"
#include "cpuid/kvm_abi.h"
#include "cpuid/models.h"
#include "cpuid/normalize.h"
#include "cpuid/profile_json.h"

namespace minihv::cpuid {

namespace {
constexpr unsigned kMaxVcpuEntries = 256;  // KVM_MAX_CPUID_ENTRIES
}

std::vector<kvm_cpuid_entry2> GuestCpuid::entries_for(unsigned apic_id) const {
  std::vector<kvm_cpuid_entry2> e = table.to_kvm();
  apply_apic_id(e, apic_id);
  return e;
}

Result<GuestCpuid> build_for_vm(const std::string& model, const HostCpu& host, const BuildOptions& opts) {
  auto spec = resolve_model(model, host.kvm.vendor);
  if (!spec) return spec.status();
  // `host` is what KVM offers; the other models are granted from what the guest can really be
  // given (on PVM: the processor's own features, which its guests execute anyway).
  const Profile offered = spec->passthrough ? host.kvm : capability(host);
  auto table = apply_model(offered, *spec);
  if (!table) return table.status();
  normalize(*table, NormalizeOptions{opts.ncpus, opts.tsc_pinned, spec->phys_bits});
  if (table->leaves.size() > kMaxVcpuEntries)
    return Status::error("CPU model " + model + ": " + std::to_string(table->leaves.size()) +
                         " CPUID entries, more than KVM takes (256)");
  GuestCpuid g;
  g.model = model;
  g.table = std::move(*table);
  g.advisory = host.enforcement.advisory;
  g.reason = host.enforcement.reason;
  g.effective = g.advisory ? host.native : g.table;
  return g;
}

Result<GuestCpuid> build_for_vm(const std::string& model, std::span<const kvm_cpuid_entry2> kvm_supported,
                                unsigned ncpus) {
  HostCpu host{Profile::from_kvm(kvm_supported), native_profile(), decide_enforcement(read_host_facts())};
  return build_for_vm(model, host, BuildOptions{ncpus, false});
}

Result<Profile> read_vcpu_cpuid(int vcpu_fd) {
  auto entries = kvm_get_cpuid2(vcpu_fd);
  if (!entries) return entries.status();
  return Profile::from_kvm(*entries);
}

nlohmann::json status_json(const GuestCpuid& g, const Profile* applied) {
  nlohmann::json j{{"model", g.model},
                   {"vendor", g.table.vendor},
                   {"advisory", g.advisory},
                   {"reason", g.reason},
                   {"features", enabled_features(g.effective)},
                   {"model_features", enabled_features(g.table)},
                   {"profile", to_json(g.effective)}};
  if (applied) j["applied"] = to_json(*applied);
  return j;
}

std::string advisory_warning(const GuestCpuid& g) {
  if (!g.advisory) return "";
  return "warning: CPU model '" + g.model + "' is advisory on this host: " + g.reason;
}

}  // namespace minihv::cpuid
