#include "vmm/boot/elf_pvh.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "vmm/boot/bytes.h"
#include "vmm/layout.h"

namespace minihv::boot {

namespace {

constexpr uint16_t kMaxProgramHeaders = 128;
constexpr uint64_t kNoteAlign = 4;
constexpr char kXenNoteName[] = "Xen";  // namesz 4, NUL included

std::string hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// True when [off, off+len) lies inside a file of `size` bytes (no overflow).
bool in_file(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

// Scans one PT_NOTE segment for the PVH entry. Returns 0 when the segment has none.
Result<uint64_t> find_pvh_entry(std::span<const uint8_t> notes) {
  uint64_t pos = 0;
  while (notes.size() - pos >= 12) {
    const uint32_t namesz = *read_le<uint32_t>(notes, pos);
    const uint32_t descsz = *read_le<uint32_t>(notes, pos + 4);
    const uint32_t type = *read_le<uint32_t>(notes, pos + 8);
    const uint64_t name_off = pos + 12;
    const uint64_t desc_off = name_off + align_up(namesz, kNoteAlign);
    const uint64_t next = desc_off + align_up(descsz, kNoteAlign);
    if (!in_file(name_off, namesz, notes.size()) || desc_off > notes.size() ||
        !in_file(desc_off, descsz, notes.size()))
      return Status::error("ELF note runs past its segment");
    const bool xen = namesz == sizeof kXenNoteName &&
                     std::memcmp(notes.data() + name_off, kXenNoteName, sizeof kXenNoteName) == 0;
    if (xen && type == kXenElfNotePhys32Entry) {
      if (descsz == 4) return uint64_t{*read_le<uint32_t>(notes, desc_off)};
      if (descsz == 8) return *read_le<uint64_t>(notes, desc_off);
      return Status::error("PVH entry note has a " + std::to_string(descsz) + "-byte value");
    }
    pos = std::min<uint64_t>(next, notes.size());
  }
  return uint64_t{0};
}

}  // namespace

bool looks_like_elf(std::span<const uint8_t> file) {
  return file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0;
}

namespace {

// The PVH ABI takes ELF32 and ELF64 images alike (QEMU boots both): one reader for either class.
template <class Ehdr, class Phdr>
Result<PvhImage> parse_pvh_elf_class(std::span<const uint8_t> file, std::initializer_list<uint16_t> machines) {
  Ehdr eh;
  if (file.size() < sizeof eh) return Status::error("truncated ELF header");
  std::memcpy(&eh, file.data(), sizeof eh);
  if (std::find(machines.begin(), machines.end(), eh.e_machine) == machines.end())
    return Status::error("ELF machine " + std::to_string(eh.e_machine) + " is not x86");
  if (eh.e_type != ET_EXEC) return Status::error("ELF type " + std::to_string(eh.e_type) + " is not an executable");
  if (eh.e_phentsize != sizeof(Phdr)) return Status::error("unexpected ELF program header size");
  if (eh.e_phnum == 0 || eh.e_phnum > kMaxProgramHeaders)
    return Status::error("ELF has " + std::to_string(eh.e_phnum) + " program headers");
  if (!in_file(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Phdr), file.size()))
    return Status::error("ELF program headers lie outside the file");

  PvhImage img;
  img.lowest = std::numeric_limits<uint64_t>::max();
  uint64_t entry = 0;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Phdr ph;
    std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    const uint64_t offset = ph.p_offset, filesz = ph.p_filesz, memsz = ph.p_memsz, paddr = ph.p_paddr;
    const std::string what = "ELF segment " + std::to_string(i);
    if (ph.p_type == PT_NOTE) {
      if (!in_file(offset, filesz, file.size())) return Status::error(what + " (note) lies outside the file");
      auto e = find_pvh_entry(file.subspan(offset, filesz));
      if (!e) return e.status();
      if (*e) entry = *e;
      continue;
    }
    if (ph.p_type != PT_LOAD || memsz == 0) continue;
    if (!in_file(offset, filesz, file.size())) return Status::error(what + " lies outside the file");
    if (filesz > memsz) return Status::error(what + " has filesz > memsz");
    if (paddr + memsz < paddr) return Status::error(what + " wraps around the address space");
    img.segments.push_back({offset, filesz, paddr, memsz});
    img.lowest = std::min(img.lowest, paddr);
    img.highest = std::max(img.highest, paddr + memsz);
  }
  if (entry == 0) return Status::error("no XEN_ELFNOTE_PHYS32_ENTRY (PVH) note");
  if (entry > std::numeric_limits<uint32_t>::max()) return Status::error("PVH entry " + hex(entry) + " is above 4 GiB");
  if (img.segments.empty()) return Status::error("ELF has no loadable segment");
  img.entry = static_cast<uint32_t>(entry);
  return img;
}

}  // namespace

Result<PvhImage> parse_pvh_elf(std::span<const uint8_t> file) {
  if (file.size() < EI_NIDENT) return Status::error("truncated ELF header");
  if (file[EI_DATA] != ELFDATA2LSB) return Status::error("not a little-endian ELF file");
  // ELF32: i386, or x86-64 code in an ELF32 container (x32 linkers); ELF64: x86-64.
  if (file[EI_CLASS] == ELFCLASS32) return parse_pvh_elf_class<Elf32_Ehdr, Elf32_Phdr>(file, {EM_386, EM_X86_64});
  if (file[EI_CLASS] == ELFCLASS64) return parse_pvh_elf_class<Elf64_Ehdr, Elf64_Phdr>(file, {EM_X86_64});
  return Status::error("ELF class " + std::to_string(file[EI_CLASS]) + " is neither ELF32 nor ELF64");
}

Status check_pvh_placement(const PvhImage& image, const GuestMemory& mem) {
  bool entry_loaded = false;
  for (const ElfLoadSegment& s : image.segments) {
    const std::string where = "segment [" + hex(s.paddr) + ", " + hex(s.paddr + s.memsz) + ")";
    if (s.paddr < layout::kHighMem)
      return Status::error(where + " overlaps the boot data area below 1 MiB");
    if (!mem.contains(s.paddr, s.memsz))
      return Status::error(where + " is not inside guest RAM (RAM ends at " + hex(mem.regions().front().size) +
                           " below 4 GiB; the MMIO gap is [" + hex(layout::kMmioGapStart) + ", 4 GiB))");
    if (image.entry >= s.paddr && image.entry < s.paddr + s.memsz) entry_loaded = true;
  }
  if (!entry_loaded) return Status::error("PVH entry " + hex(image.entry) + " is outside every loaded segment");
  return Status::ok();
}

Status load_pvh_segments(GuestMemory& mem, std::span<const uint8_t> file, const PvhImage& image) {
  for (const ElfLoadSegment& s : image.segments) {
    uint8_t* dst = mem.host_ptr(s.paddr, s.memsz);
    if (!dst) return Status::error("segment at " + hex(s.paddr) + " is outside guest RAM");
    MINIHV_TRY(mem.write(s.paddr, file.data() + s.offset, s.filesz));
    if (s.memsz > s.filesz) {
      std::memset(dst + s.filesz, 0, s.memsz - s.filesz);
      mem.mark_dirty(s.paddr + s.filesz, s.memsz - s.filesz);
    }
  }
  return Status::ok();
}

}  // namespace minihv::boot
