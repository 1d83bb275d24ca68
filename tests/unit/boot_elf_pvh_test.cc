#include "vmm/boot/elf_pvh.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>

#include "boot_test_files.h"
#include "vmm/boot/cpu_setup.h"
#include "vmm/boot/loader.h"
#include "vmm/boot/pvh_start_info.h"
#include "vmm/layout.h"

namespace minihv::boot {
namespace {

using testing::TempFile;
using layout::kMiB;

constexpr uint64_t kLoadAddr = 2 * kMiB;
constexpr uint64_t kCodeOffset = 0x1000;
const std::vector<uint8_t> kCode{0xF4, 0xEB, 0xFD};  // hlt; jmp hlt
constexpr uint64_t kBss = 0x100;

// A minimal x86-64 executable: one PT_LOAD at kLoadAddr (code + bss) and a PT_NOTE holding
// XEN_ELFNOTE_PHYS32_ENTRY = kLoadAddr.
struct ElfSpec {
  uint64_t paddr = kLoadAddr;
  uint64_t entry = kLoadAddr;
  bool with_note = true;
  uint32_t note_type = kXenElfNotePhys32Entry;
  uint64_t load_offset = kCodeOffset;
};

template <class Ehdr, class Phdr>
std::vector<uint8_t> make_elf_class(const ElfSpec& s, uint8_t elf_class, uint16_t machine, uint32_t entry_bytes) {
  std::vector<uint8_t> f(kCodeOffset + kCode.size(), 0);
  Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = elf_class;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = machine;
  eh.e_version = EV_CURRENT;
  eh.e_entry = static_cast<decltype(eh.e_entry)>(s.entry);
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof(Phdr);
  eh.e_phnum = 2;
  std::memcpy(f.data(), &eh, sizeof eh);

  const uint64_t note_off = sizeof eh + 2 * sizeof(Phdr);
  const uint32_t note[] = {4, entry_bytes, s.note_type};
  std::memcpy(f.data() + note_off, note, sizeof note);
  std::memcpy(f.data() + note_off + 12, "Xen", 4);
  std::memcpy(f.data() + note_off + 16, &s.entry, entry_bytes);

  Phdr load{};
  load.p_type = PT_LOAD;
  load.p_flags = PF_R | PF_X;
  load.p_offset = static_cast<decltype(load.p_offset)>(s.load_offset);
  load.p_vaddr = load.p_paddr = static_cast<decltype(load.p_paddr)>(s.paddr);
  load.p_filesz = kCode.size();
  load.p_memsz = kCode.size() + kBss;
  load.p_align = 0x1000;
  Phdr nt{};
  nt.p_type = s.with_note ? PT_NOTE : PT_NULL;
  nt.p_offset = static_cast<decltype(nt.p_offset)>(note_off);
  nt.p_filesz = 16 + entry_bytes;
  std::memcpy(f.data() + sizeof eh, &load, sizeof load);
  std::memcpy(f.data() + sizeof eh + sizeof load, &nt, sizeof nt);
  std::copy(kCode.begin(), kCode.end(), f.begin() + kCodeOffset);
  return f;
}

std::vector<uint8_t> make_elf(const ElfSpec& s) {
  return make_elf_class<Elf64_Ehdr, Elf64_Phdr>(s, ELFCLASS64, EM_X86_64, 8);
}
// The same image as an i386 ELF32 whose note holds a 4-byte entry (as 32-bit Linux writes it).
std::vector<uint8_t> make_elf32(const ElfSpec& s) {
  return make_elf_class<Elf32_Ehdr, Elf32_Phdr>(s, ELFCLASS32, EM_386, 4);
}

std::unique_ptr<GuestMemory> memory(uint64_t size = 64 * kMiB) {
  auto mem = GuestMemory::create(size);
  EXPECT_TRUE(mem) << mem.message();
  return std::move(mem).value();
}

Result<BootPlan> load(GuestMemory& mem, const std::string& kernel, const std::string& initrd = "") {
  BootConfig cfg;
  cfg.kernel_path = kernel;
  cfg.initrd_path = initrd;
  cfg.cmdline = "console=ttyS0";
  cfg.num_cpus = 2;
  cfg.virtio_devices = {{layout::kVirtioMmioBase, layout::kVirtioMmioSize, layout::kVirtioIrqBase}};
  return load_kernel(mem, cfg);
}

TEST(BootElfPvh, ParsesEntryAndSegments) {
  const auto f = make_elf({});
  auto img = parse_pvh_elf(f);
  ASSERT_TRUE(img) << img.message();
  EXPECT_EQ(img->entry, kLoadAddr);
  ASSERT_EQ(img->segments.size(), 1u);
  EXPECT_EQ(img->segments[0].paddr, kLoadAddr);
  EXPECT_EQ(img->highest, kLoadAddr + kCode.size() + kBss);
}

// The PVH ABI allows ELF32 (QEMU boots it): the same image as ELF32 parses to the same plan.
TEST(BootElfPvh, ParsesElf32LikeElf64) {
  auto img32 = parse_pvh_elf(make_elf32({}));
  ASSERT_TRUE(img32) << img32.message();
  auto img64 = parse_pvh_elf(make_elf({}));
  ASSERT_TRUE(img64) << img64.message();
  EXPECT_EQ(img32->entry, img64->entry);
  ASSERT_EQ(img32->segments.size(), 1u);
  EXPECT_EQ(img32->segments[0].paddr, kLoadAddr);
  EXPECT_EQ(img32->segments[0].memsz, kCode.size() + kBss);
  EXPECT_EQ(img32->lowest, img64->lowest);
  EXPECT_EQ(img32->highest, img64->highest);
  ElfSpec no_note;
  no_note.with_note = false;
  EXPECT_FALSE(parse_pvh_elf(make_elf32(no_note)));
  auto wrong = make_elf32({});
  wrong[EI_CLASS] = 3;
  auto st = parse_pvh_elf(wrong);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("neither ELF32 nor ELF64"), std::string::npos) << st.message();
}

TEST(BootElfPvh, LoadsAndWritesStartInfo) {
  auto mem = memory();
  TempFile kernel(make_elf({}));
  TempFile initrd(std::vector<uint8_t>(5000, 0xAB));
  auto plan = load(*mem, kernel.path(), initrd.path());
  ASSERT_TRUE(plan) << plan.message();
  EXPECT_EQ(plan->mode, BootMode::kPvh);
  EXPECT_EQ(plan->entry, kLoadAddr);
  EXPECT_EQ(plan->boot_info, layout::kPvhStartInfo);
  EXPECT_EQ(boot_regs(*plan).rbx, layout::kPvhStartInfo);

  uint8_t code[3];
  ASSERT_TRUE(mem->read(kLoadAddr, code, 3).is_ok());
  EXPECT_EQ(std::vector<uint8_t>(code, code + 3), kCode);
  EXPECT_EQ(*mem->read_obj<uint64_t>(kLoadAddr + kCode.size()), 0u);  // bss zeroed

  const auto si = *mem->read_obj<HvmStartInfo>(layout::kPvhStartInfo);
  EXPECT_EQ(si.magic, kHvmStartMagic);
  EXPECT_EQ(si.version, 1u);
  EXPECT_EQ(si.cmdline_paddr, layout::kCmdline);
  EXPECT_EQ(si.rsdp_paddr, plan->rsdp_addr);
  EXPECT_EQ(si.rsdp_paddr, layout::kAcpiStart);
  EXPECT_EQ(si.memmap_paddr, layout::kPvhMemmap);
  EXPECT_EQ(si.memmap_entries, 3u);
  const auto last = *mem->read_obj<HvmMemmapEntry>(layout::kPvhMemmap + 2 * sizeof(HvmMemmapEntry));
  EXPECT_EQ(last.addr, layout::kHighMem);
  EXPECT_EQ(last.addr + last.size, 64 * kMiB);
  EXPECT_EQ(last.type, 1u);
  ASSERT_EQ(si.nr_modules, 1u);
  const auto mod = *mem->read_obj<HvmModlistEntry>(si.modlist_paddr);
  EXPECT_EQ(mod.paddr, plan->initrd_addr);
  EXPECT_EQ(mod.size, 5000u);
  EXPECT_EQ(mod.paddr % layout::kInitrdAlign, 0u);
  EXPECT_EQ(*mem->read_obj<uint8_t>(mod.paddr + 4999), 0xAB);

  char cmdline[14];
  ASSERT_TRUE(mem->read(layout::kCmdline, cmdline, sizeof cmdline).is_ok());
  EXPECT_STREQ(cmdline, "console=ttyS0");
}

TEST(BootElfPvh, RejectsTruncatedElf) {
  auto f = make_elf({});
  f.resize(40);
  EXPECT_FALSE(parse_pvh_elf(f));
  auto mem = memory();
  TempFile kernel(f);
  auto plan = load(*mem, kernel.path());
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("truncated"), std::string::npos) << plan.message();
}

TEST(BootElfPvh, RejectsSegmentOutsideFile) {
  ElfSpec s;
  s.load_offset = 0x100000;
  auto img = parse_pvh_elf(make_elf(s));
  ASSERT_FALSE(img);
  EXPECT_NE(img.message().find("outside the file"), std::string::npos) << img.message();
}

TEST(BootElfPvh, RejectsMissingNote) {
  ElfSpec s;
  s.with_note = false;
  auto img = parse_pvh_elf(make_elf(s));
  ASSERT_FALSE(img);
  EXPECT_NE(img.message().find("PVH"), std::string::npos) << img.message();
  s.with_note = true;
  s.note_type = 17;  // another Xen note
  EXPECT_FALSE(parse_pvh_elf(make_elf(s)));
}

TEST(BootElfPvh, RejectsLoadAddressInMmioGap) {
  ElfSpec s;
  s.paddr = s.entry = layout::kMmioGapStart + kMiB;
  auto img = parse_pvh_elf(make_elf(s));
  ASSERT_TRUE(img) << img.message();
  auto mem = memory();
  const Status st = check_pvh_placement(*img, *mem);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("not inside guest RAM"), std::string::npos) << st.message();
}

TEST(BootElfPvh, RejectsBootDataAreaAndEntryOutsideSegments) {
  auto mem = memory();
  ElfSpec low;
  low.paddr = low.entry = 0x8000;
  auto img = parse_pvh_elf(make_elf(low));
  ASSERT_TRUE(img);
  EXPECT_FALSE(check_pvh_placement(*img, *mem));
  ElfSpec stray;
  stray.entry = 8 * kMiB;
  img = parse_pvh_elf(make_elf(stray));
  ASSERT_TRUE(img);
  EXPECT_FALSE(check_pvh_placement(*img, *mem));
}

TEST(BootLoader, MissingFileNamesThePath) {
  auto mem = memory();
  auto plan = load(*mem, "/nonexistent/vmlinux");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("/nonexistent/vmlinux"), std::string::npos) << plan.message();
}

TEST(BootLoader, MissingInitrdNamesThePath) {
  auto mem = memory();
  TempFile kernel(make_elf({}));
  auto plan = load(*mem, kernel.path(), "/nonexistent/initrd.img");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("/nonexistent/initrd.img"), std::string::npos) << plan.message();
}

TEST(BootLoader, NotAKernel) {
  auto mem = memory();
  TempFile junk(std::vector<uint8_t>(4096, 0x5A));
  auto plan = load(*mem, junk.path());
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.message(), junk.path() + ": not a kernel: neither an ELF with a PVH note nor a bzImage");
}

TEST(BootLoader, CommandLineTooLong) {
  auto mem = memory();
  TempFile kernel(make_elf({}));
  BootConfig cfg;
  cfg.kernel_path = kernel.path();
  cfg.cmdline.assign(layout::kCmdlineMax, 'x');
  auto plan = load_kernel(*mem, cfg);
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("command line"), std::string::npos) << plan.message();
}

}  // namespace
}  // namespace minihv::boot
