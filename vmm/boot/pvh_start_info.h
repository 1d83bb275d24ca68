// vmm/boot/pvh_start_info.h — the Xen PVH boot ABI's hvm_start_info (version 1) and its lists.
//
// Owns: the layout of hvm_start_info, hvm_memmap_table_entry and hvm_modlist_entry (as
// xen/include/public/arch-x86/hvm/start_info.h defines them) and writing them at
// layout::kPvhStartInfo / kPvhMemmap / kPvhModlist.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "common/status.h"
#include "vmm/boot/e820.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr uint32_t kHvmStartMagic = 0x336ec578;  // "xEn3" with the high bit of each byte cleared
constexpr uint32_t kHvmStartInfoVersion = 1;     // version 1 adds the memory map

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // e820 types
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

struct PvhModule {
  uint64_t paddr = 0;
  uint64_t size = 0;
};

Status write_pvh_start_info(GuestMemory& mem, uint64_t cmdline_paddr, std::span<const E820Entry> e820,
                            uint64_t rsdp_paddr, std::optional<PvhModule> initrd);

}  // namespace minihv::boot
