#include "vmm/boot/loader.h"

#include <algorithm>
#include <optional>

#include "vmm/boot/acpi.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/cpu_setup.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/elf_pvh.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/kernel_file.h"
#include "vmm/boot/mptable.h"
#include "vmm/boot/pvh_start_info.h"
#include "vmm/boot/vmlinux.h"
#include "vmm/layout.h"

namespace minihv::boot {

namespace {

// What both paths share once the kernel's format is known.
struct Common {
  std::vector<E820Entry> e820;
  uint64_t rsdp = 0;
  std::vector<uint8_t> initrd;  // empty: none
};

Status write_cmdline(GuestMemory& mem, const std::string& cmdline, uint64_t kernel_max) {
  const uint64_t limit = std::min<uint64_t>(kernel_max, layout::kCmdlineMax - 1);
  if (cmdline.size() > limit)
    return Status::error("command line is " + std::to_string(cmdline.size()) + " bytes; this kernel takes at most " +
                         std::to_string(limit));
  return mem.write(layout::kCmdline, cmdline.c_str(), cmdline.size() + 1).context("writing the command line");
}

Result<BootPlan> load_pvh(GuestMemory& mem, const BootConfig& cfg, std::span<const uint8_t> file, Common& c) {
  auto img = parse_pvh_elf(file);
  if (!img) return img.status();
  MINIHV_TRY(check_pvh_placement(*img, mem));
  MINIHV_TRY(write_cmdline(mem, cfg.cmdline, layout::kCmdlineMax - 1));
  MINIHV_TRY(load_pvh_segments(mem, file, *img));
  BootPlan plan;
  plan.mode = BootMode::kPvh;
  plan.entry = img->entry;
  plan.boot_info = layout::kPvhStartInfo;
  plan.stack = layout::kBootStack;
  plan.kernel_start = img->lowest;
  plan.kernel_end = img->highest;
  std::optional<PvhModule> module;
  if (!c.initrd.empty()) {
    auto at = place_initrd(c.initrd.size(), img->highest, low_ram_end(mem));
    if (!at) return at.status();
    MINIHV_TRY(write_initrd(mem, *at, c.initrd));
    module = PvhModule{*at, c.initrd.size()};
    plan.initrd_addr = *at;
    plan.initrd_size = c.initrd.size();
  }
  MINIHV_TRY(write_pvh_start_info(mem, layout::kCmdline, c.e820, c.rsdp, module));
  return plan;
}

Result<BootPlan> load_linux64(GuestMemory& mem, const BootConfig& cfg, std::span<const uint8_t> file, Common& c) {
  auto img = parse_bzimage(file);
  if (!img) return img.status();
  MINIHV_TRY(check_bzimage_placement(*img, mem));
  MINIHV_TRY(write_cmdline(mem, cfg.cmdline, img->cmdline_size));
  BootPlan plan;
  plan.mode = BootMode::kLinux64;
  plan.boot_info = layout::kZeroPage;
  plan.stack = layout::kBootStack;
  // Unpack the kernel here when we can (vmlinux.h says why); else let it decompress itself.
  auto elf = unpack_bzimage_payload(file, *img);
  if (!elf) return elf.status();
  if (*elf) {
    auto v = parse_vmlinux(**elf);
    if (!v) return v.status();
    MINIHV_TRY(load_vmlinux(mem, **elf, *v));
    plan.entry = v->entry;
    plan.kernel_start = v->lowest;
    plan.kernel_end = std::max(v->highest, img->run_end);
  } else {
    MINIHV_TRY(load_bzimage_kernel(mem, file, *img));
    plan.entry = img->load_addr + kEntry64Offset;
    plan.kernel_start = img->load_addr;
    plan.kernel_end = img->run_end;
  }
  ZeroPageInputs in{layout::kCmdline, 0, 0, c.rsdp};
  if (!c.initrd.empty()) {
    const uint64_t limit = std::min(low_ram_end(mem), img->initrd_addr_max + 1);
    auto at = place_initrd(c.initrd.size(), plan.kernel_end, limit);
    if (!at) return at.status();
    MINIHV_TRY(write_initrd(mem, *at, c.initrd));
    in.initrd_paddr = plan.initrd_addr = *at;
    in.initrd_size = plan.initrd_size = c.initrd.size();
  }
  const boot_params bp = build_zero_page(file, *img, in, c.e820);
  MINIHV_TRY(mem.write_obj(layout::kZeroPage, bp).context("writing the zero page"));
  MINIHV_TRY(write_identity_page_tables(mem));
  return plan;
}

}  // namespace

Result<BootPlan> load_kernel(GuestMemory& mem, const BootConfig& cfg) {
  auto file = read_boot_file(cfg.kernel_path, "kernel");
  if (!file) return file.status();
  const bool pvh = looks_like_elf(*file);
  if (!pvh && !looks_like_bzimage(*file))
    return Status::error(cfg.kernel_path + ": not a kernel: neither an ELF with a PVH note nor a bzImage");

  Common c;
  if (!cfg.initrd_path.empty()) {
    auto initrd = read_boot_file(cfg.initrd_path, "initrd");
    if (!initrd) return initrd.status();
    if (initrd->empty()) return Status::error("initrd " + cfg.initrd_path + " is empty");
    c.initrd = std::move(initrd).value();
  }
  const FirmwareConfig fw{cfg.num_cpus, cfg.virtio_devices};
  MINIHV_TRY(validate(fw));
  c.e820 = build_e820(mem.regions());
  auto rsdp = build_acpi(mem, fw);
  if (!rsdp) return rsdp.status().context("building the ACPI tables");
  c.rsdp = *rsdp;
  MINIHV_TRY(build_mptable(mem, fw));

  auto plan = pvh ? load_pvh(mem, cfg, *file, c) : load_linux64(mem, cfg, *file, c);
  if (!plan) return plan.status().context(cfg.kernel_path);
  plan->rsdp_addr = c.rsdp;
  MINIHV_TRY(write_boot_gdt(mem));
  return plan;
}

}  // namespace minihv::boot
