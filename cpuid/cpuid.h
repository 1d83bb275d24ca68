// cpuid/cpuid.h — processor compatibility: CPUID profiles, named features, models, baseline,
// compare, and the table a VM gets.
//
// Owns: what a guest's CPUID says (masking by named features, normalisation for a consistent
// virtual machine), this host's CPUID (KVM_GET_SUPPORTED_CPUID and the processor's own), whether
// KVM can enforce a model here (advisory on PVM), the common set of several hosts, and the
// guest-fits-host check migration runs first.
// Must not know: VMs, vCPU threads, migration or clusters. vmm/ calls build_for_vm(); nothing
// here calls vmm/.
#pragma once

#include "cpuid/baseline.h"
#include "cpuid/dump_import.h"
#include "cpuid/features.h"
#include "cpuid/guest_cpuid.h"
#include "cpuid/host.h"
#include "cpuid/kvm_abi.h"
#include "cpuid/models.h"
#include "cpuid/normalize.h"
#include "cpuid/profile.h"
#include "cpuid/profile_json.h"
#include "cpuid/render.h"
