// cpuid/models.h — named CPU models: which features a guest gets, as lists of feature names.
//
// `host` passes through what the host offers; `compat` is the vendor's fixed minimal set (as
// Hyper-V's processor compatibility mode); `x86-64-v1`..`v4` are the x86-64 psABI levels; a path
// to a profile JSON (e.g. `minihv cpuid baseline` output) grants exactly that profile's features.
// Every model other than `host` also keeps the platform features a VMM emulates itself (x2apic,
// TSC deadline, ARAT, KVM paravirt) when the host offers them, and hides everything else.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "cpuid/profile.h"

namespace minihv::cpuid {

struct ModelInfo {
  std::string_view name;
  std::string_view summary;
};
// The built-in models, in documentation order.
std::span<const ModelInfo> builtin_models();

struct ModelSpec {
  std::string name;
  bool passthrough = false;               // `host`: keep every feature the host offers
  std::vector<std::string_view> required;  // the host must have each (else an error naming them)
  std::vector<std::string_view> optional;  // kept when the host has them
  unsigned phys_bits = 0;                  // a ceiling on the guest's physical address bits (0: none)
};

// `name` is a built-in model or a path to a profile JSON (anything ending in .json). `vendor`
// picks the `compat` variant. Unknown names → Status::invalid with the closest valid names.
Result<ModelSpec> resolve_model(const std::string& name, const std::string& vendor);
// The built-in model's feature list for a vendor (both vendors for the psABI levels).
Result<ModelSpec> builtin_model(std::string_view name, const std::string& vendor);

// Masks `host` to the model: every feature register keeps only the model's features; leaves a
// model does not describe are dropped. Fails, listing them, when required features are missing.
Result<Profile> apply_model(const Profile& host, const ModelSpec& spec);

// Features KVM guests never get from a model (power management, tracing, nested virtualisation,
// performance monitoring...), and features normalisation sets itself.
bool is_host_only(std::string_view feature);
bool is_normalised(std::string_view feature);

}  // namespace minihv::cpuid
