#include "vmm/boot/pvh_start_info.h"

#include <vector>

#include "vmm/layout.h"

namespace minihv::boot {

namespace {
constexpr uint64_t kMaxMemmapEntries = (layout::kPvhModlist - layout::kPvhMemmap) / sizeof(HvmMemmapEntry);
static_assert(layout::kPvhStartInfo + sizeof(HvmStartInfo) <= layout::kPvhMemmap);
static_assert(layout::kPvhModlist + sizeof(HvmModlistEntry) <= layout::kZeroPage);
}  // namespace

Status write_pvh_start_info(GuestMemory& mem, uint64_t cmdline_paddr, std::span<const E820Entry> e820,
                            uint64_t rsdp_paddr, std::optional<PvhModule> initrd) {
  if (e820.size() > kMaxMemmapEntries) return Status::error("too many memory map entries for the PVH memmap");
  std::vector<HvmMemmapEntry> memmap;
  for (const E820Entry& e : e820) memmap.push_back({e.addr, e.size, static_cast<uint32_t>(e.type), 0});
  MINIHV_TRY(mem.write(layout::kPvhMemmap, memmap.data(), memmap.size() * sizeof(HvmMemmapEntry)));

  HvmStartInfo si{};
  si.magic = kHvmStartMagic;
  si.version = kHvmStartInfoVersion;
  si.cmdline_paddr = cmdline_paddr;
  si.rsdp_paddr = rsdp_paddr;
  si.memmap_paddr = layout::kPvhMemmap;
  si.memmap_entries = static_cast<uint32_t>(memmap.size());
  if (initrd) {
    const HvmModlistEntry mod{initrd->paddr, initrd->size, 0, 0};
    MINIHV_TRY(mem.write_obj(layout::kPvhModlist, mod));
    si.nr_modules = 1;
    si.modlist_paddr = layout::kPvhModlist;
  }
  return mem.write_obj(layout::kPvhStartInfo, si).context("writing hvm_start_info");
}

}  // namespace minihv::boot
