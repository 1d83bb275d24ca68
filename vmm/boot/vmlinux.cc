#include "vmm/boot/vmlinux.h"

#include <elf.h>
#include <lz4.h>

#include <cstring>
#include <string>

#include "vmm/layout.h"

namespace minihv::boot {

namespace {

template <typename T>
std::optional<T> read_at(std::span<const uint8_t> b, uint64_t off) {
  if (off > b.size() || b.size() - off < sizeof(T)) return std::nullopt;
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

// LZ4 legacy frames: magic, then blocks of {u32 compressed size, data}; the kernel build appends
// the decompressed size as a final u32, which also ends the block list.
Result<std::vector<uint8_t>> lz4_legacy(std::span<const uint8_t> in) {
  if (in.size() < 8) return Status::error("LZ4 payload too short");
  const uint32_t total = *read_at<uint32_t>(in, in.size() - 4);
  if (total == 0 || total > kMaxVmlinuxBytes) return Status::error("LZ4 payload claims " + std::to_string(total) + " bytes");
  std::vector<uint8_t> out(total);
  uint64_t at = 4, produced = 0;
  const uint64_t end = in.size() - 4;
  while (at < end) {
    auto csize = read_at<uint32_t>(in, at);
    if (!csize) return Status::error("LZ4 payload truncated");
    if (*csize == kLz4LegacyMagic) {  // concatenated frames start again with the magic
      at += 4;
      continue;
    }
    at += 4;
    if (*csize == 0 || *csize > end - at ||
        *csize > static_cast<uint32_t>(LZ4_compressBound(static_cast<int>(kLz4LegacyBlock))))
      return Status::error("LZ4 block at payload offset " + std::to_string(at - 4) + " has a bad size");
    const uint64_t room = std::min<uint64_t>(kLz4LegacyBlock, total - produced);
    const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data() + at),
                                      reinterpret_cast<char*>(out.data() + produced), static_cast<int>(*csize),
                                      static_cast<int>(room));
    if (n < 0) return Status::error("LZ4 block at payload offset " + std::to_string(at - 4) + " is corrupt");
    produced += static_cast<uint64_t>(n);
    at += *csize;
  }
  if (produced != total)
    return Status::error("LZ4 payload decoded to " + std::to_string(produced) + " bytes, expected " + std::to_string(total));
  return out;
}

}  // namespace

Result<std::optional<std::vector<uint8_t>>> unpack_bzimage_payload(std::span<const uint8_t> file, const BzImage& img) {
  const auto off = read_at<uint32_t>(file, offsetof(boot_params, hdr) + offsetof(setup_header, payload_offset));
  const auto len = read_at<uint32_t>(file, offsetof(boot_params, hdr) + offsetof(setup_header, payload_length));
  if (!off || !len || *len == 0) return std::optional<std::vector<uint8_t>>();
  const uint64_t start = img.payload_offset + *off;
  if (start > file.size() || file.size() - start < *len) return Status::error("payload_offset/length point past the file");
  const auto payload = file.subspan(start, *len);
  if (read_at<uint32_t>(payload, 0) != kLz4LegacyMagic) return std::optional<std::vector<uint8_t>>();
  auto elf = lz4_legacy(payload);
  if (!elf) return elf.status().context("decompressing the kernel");
  return std::optional<std::vector<uint8_t>>(std::move(elf).value());
}

Result<Vmlinux> parse_vmlinux(std::span<const uint8_t> elf) {
  auto eh = read_at<Elf64_Ehdr>(elf, 0);
  if (!eh || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_machine != EM_X86_64)
    return Status::error("the decompressed kernel is not an x86-64 ELF");
  if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 64)
    return Status::error("the decompressed kernel has a bad program header table");
  Vmlinux v;
  v.entry = eh->e_entry;
  v.lowest = UINT64_MAX;
  for (unsigned i = 0; i < eh->e_phnum; ++i) {
    auto ph = read_at<Elf64_Phdr>(elf, eh->e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (!ph) return Status::error("the decompressed kernel's program headers are truncated");
    if (ph->p_type != PT_LOAD) continue;
    if (ph->p_offset > elf.size() || elf.size() - ph->p_offset < ph->p_filesz || ph->p_filesz > ph->p_memsz ||
        ph->p_paddr < layout::kHighMem || ph->p_memsz > kMaxVmlinuxBytes)
      return Status::error("the decompressed kernel has a segment outside the file or below 1 MiB");
    v.segments.push_back({ph->p_paddr, ph->p_offset, ph->p_filesz, ph->p_memsz});
    v.lowest = std::min(v.lowest, ph->p_paddr);
    v.highest = std::max(v.highest, ph->p_paddr + ph->p_memsz);
  }
  if (v.segments.empty()) return Status::error("the decompressed kernel has no loadable segment");
  if (v.entry < v.lowest || v.entry >= v.highest) return Status::error("the decompressed kernel's entry is outside it");
  return v;
}

Status load_vmlinux(GuestMemory& mem, std::span<const uint8_t> elf, const Vmlinux& v) {
  for (const VmlinuxSegment& s : v.segments) {
    uint8_t* dst = mem.host_ptr(s.paddr, s.memsz);
    if (!dst) return Status::error("the kernel does not fit in guest RAM: give the guest more memory");
    std::memcpy(dst, elf.data() + s.offset, s.filesz);
    std::memset(dst + s.filesz, 0, s.memsz - s.filesz);
  }
  return Status::ok();
}

}  // namespace minihv::boot
