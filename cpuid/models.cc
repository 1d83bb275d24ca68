#include "cpuid/models.h"

#include <algorithm>
#include <array>

#include "cpuid/features.h"
#include "cpuid/profile_json.h"
#include "cpuid/suggest.h"

namespace minihv::cpuid {

namespace {

using Names = std::vector<std::string_view>;

// x86-64 psABI levels (System V ABI AMD64 supplement, "Micro-architecture levels"): what each level
// defines is what a model of that level requires. v1 (the baseline), with long mode itself:
const Names kLevel1 = {"cmov", "cx8", "fpu", "fxsr", "mmx", "syscall", "sse", "sse2", "lm"};
// Every physical x86-64 processor has these too, but no level defines them and an emulated one
// may lack some (QEMU TCG's has no VME): a model grants them when the host has them.
const Names kLegacy = {"vme", "de", "pse", "tsc", "msr", "pae", "mce", "apic", "sep", "mtrr", "pge", "mca",
                       "pat", "pse36", "clflush", "nx"};
const Names kLevel2 = {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"};
const Names kLevel3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"};
const Names kLevel4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"};
// compat: what every virtualisable processor generation of the vendor has. Both vendors' first
// processors with VT-x (Pentium 4 6x2) and AMD-V (K8 revision F) have SSE3 and CMPXCHG16B: required.
// AMD's also have LAHF in long mode, MMX extensions, FXSR optimisations and RDTSCP: granted when
// the host has them (an emulated AMD processor may not). Hidden: SSSE3, SSE4.1/4.2, SSE4A,
// POPCNT, LZCNT, misaligned SSE, 3DNow! and everything later.
const Names kCompat = {"pni", "cx16"};
const Names kCompatAmdExtras = {"lahf_lm", "mmxext", "fxsr_opt", "rdtscp"};
// Emulated by KVM itself rather than executed by the processor: kept when the host offers them.
const Names kPlatform = {"x2apic", "tsc_deadline_timer", "arat", "kvmclock", "kvm_nopiodelay", "kvmclock2",
                         "kvm_asyncpf", "kvm_steal_time", "kvm_pv_eoi", "kvm_pv_unhalt", "kvm_pv_tlb_flush",
                         "kvm_pv_ipi", "kvm_poll_control", "kvm_pv_sched_yield", "kvm_asyncpf_int",
                         "kvm_msi_ext_dest_id", "kvmclock_stable_bit"};
// Set or cleared by normalisation, never by a model.
const Names kNormalised = {"hypervisor", "osxsave", "ospke", "ht", "cmp_legacy", "invtsc"};
// Never granted by a model: power and thermal management, tracing, monitoring, nested
// virtualisation, SGX, TME and other things a migratable guest must not see.
const Names kHostOnly = {
    "pn", "dts", "acpi", "ss", "tm", "ia64", "pbe", "dtes64", "monitor", "ds_cpl", "vmx", "smx", "est", "tm2",
    "cid", "sdbg", "xtpr", "pdcm", "dca", "dtherm", "ida", "pln", "pts", "hwp", "hwp_notify", "hwp_act_window",
    "hwp_epp", "hwp_pkg_req", "hfi", "aperfmperf", "epb", "sgx", "cqm", "rdt_a", "intel_pt", "tme", "sgx_lc",
    "pconfig", "arch_lbr", "hybrid_cpu", "svm", "extapic", "ibs", "skinit", "wdt", "lwp", "tce", "nodeid_msr",
    "perfctr_core", "perfctr_nb", "perfctr_llc", "bpext", "ptsc", "mwaitx", "osvw", "hw_pstate", "cpb",
    "proc_feedback", "irperf", "amd_ppin", "cppc", "kvm_mmu", "kvm_asyncpf_vmexit", "kvm_hc_map_gpa_range",
    "kvm_migration_control", "kvm_hint_realtime"};

// Leaves a non-host model describes; the rest (SGX, PT, RDT, SVM, SEV, PMU, ...) are dropped.
constexpr std::array kModelLeaves = {0x0u,        0x1u,        0x2u,        0x4u,        0x6u,
                                     0x7u,        0xBu,        0xDu,        0x15u,       0x16u,
                                     0x1Fu,       0x40000000u, 0x40000001u, 0x80000000u, 0x80000001u,
                                     0x80000002u, 0x80000003u, 0x80000004u, 0x80000005u, 0x80000006u,
                                     0x80000007u, 0x80000008u};

constexpr std::array kBuiltins = std::to_array<ModelInfo>({
    {"host", "everything this host's KVM offers (normalised: topology, hypervisor bit, XSAVE sizes)"},
    {"compat", "the vendor's minimal set, for moving between any generations of one vendor"},
    {"x86-64-v1", "psABI baseline: CMOV, CX8, FPU, FXSR, MMX, SYSCALL, SSE, SSE2"},
    {"x86-64-v2", "v1 + CMPXCHG16B, LAHF/SAHF, POPCNT, SSE3, SSSE3, SSE4.1, SSE4.2"},
    {"x86-64-v3", "v2 + AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE, XSAVE"},
    {"x86-64-v4", "v3 + AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL"},
});

bool contains(const Names& names, std::string_view n) {
  return std::find(names.begin(), names.end(), n) != names.end();
}

Names join(std::initializer_list<const Names*> parts) {
  Names out;
  for (const Names* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

bool keeps_leaf(uint32_t leaf) {
  return std::find(kModelLeaves.begin(), kModelLeaves.end(), leaf) != kModelLeaves.end();
}

}  // namespace

std::span<const ModelInfo> builtin_models() { return kBuiltins; }
bool is_host_only(std::string_view f) { return contains(kHostOnly, f); }
bool is_normalised(std::string_view f) { return contains(kNormalised, f); }

Result<ModelSpec> builtin_model(std::string_view name, const std::string& vendor) {
  ModelSpec s;
  s.name = std::string(name);
  s.optional = join({&kPlatform, &kLegacy});
  if (name == "host") {
    s.passthrough = true;
    s.optional.clear();
  } else if (name == "compat") {
    s.required = join({&kLevel1, &kCompat});
    if (vendor == kVendorAmd) s.optional = join({&kPlatform, &kLegacy, &kCompatAmdExtras});
  } else if (name == "x86-64-v1") {
    s.required = kLevel1;
  } else if (name == "x86-64-v2") {
    s.required = join({&kLevel1, &kLevel2});
  } else if (name == "x86-64-v3") {
    s.required = join({&kLevel1, &kLevel2, &kLevel3});
  } else if (name == "x86-64-v4") {
    s.required = join({&kLevel1, &kLevel2, &kLevel3, &kLevel4});
  } else {
    std::vector<std::string> names;
    for (const ModelInfo& m : kBuiltins) names.emplace_back(m.name);
    std::string hint = did_you_mean(name, names);
    return Status::invalid("unknown CPU model '" + std::string(name) + "'" + (hint.empty() ? "" : "; " + hint) +
                           " (models: host, compat, x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4, or a profile "
                           "file ending in .json)");
  }
  return s;
}

Result<ModelSpec> resolve_model(const std::string& name, const std::string& vendor) {
  if (name.size() < 5 || name.compare(name.size() - 5, 5, ".json") != 0) return builtin_model(name, vendor);
  auto file = load_profile(name);
  if (!file) return file.status();
  if (file->vendor != vendor)
    return Status::invalid("CPU model " + name + " is a " + file->vendor + " profile; this host is " + vendor +
                           " (no compatibility across vendors)");
  ModelSpec s;
  s.name = name;
  s.optional = kPlatform;
  s.phys_bits = file->phys_bits();
  for (const Feature& f : all_features()) {
    if (f.kind == FeatureKind::kXsaveState || is_host_only(f.name) || is_normalised(f.name)) continue;
    if (!has(*file, f)) continue;
    if (contains(kPlatform, f.name)) continue;  // stays optional: emulated by the VMM's KVM
    s.required.push_back(f.name);
  }
  return s;
}

Result<Profile> apply_model(const Profile& host, const ModelSpec& spec) {
  if (spec.passthrough) return host;
  std::string missing;
  for (std::string_view n : spec.required)
    if (!has(host, n)) missing += (missing.empty() ? "" : ", ") + std::string(n);
  if (!missing.empty())
    return Status::invalid("CPU model " + spec.name + " needs features this host cannot give: " + missing);
  Profile p;
  p.vendor = host.vendor;
  for (const auto& [k, r] : host.leaves)
    if (keeps_leaf(k.leaf)) p.leaves[k] = r;
  for (const FeatureReg& fr : feature_registers())
    if (Regs* r = p.find(fr.leaf, fr.subleaf)) (*r)[fr.reg] = 0;
  for (const Names* list : {&spec.required, &spec.optional})
    for (std::string_view n : *list)
      if (const Feature* f = find_feature(n); f && has(host, *f)) set(p, *f, true);
  return p;
}

}  // namespace minihv::cpuid
