#include "vmm/boot/cpu_setup.h"

#include <gtest/gtest.h>

#include <cstring>

#include "vmm/boot/gdt.h"
#include "vmm/layout.h"

namespace minihv::boot {
namespace {

TEST(BootGdt, ExactDescriptorBytes) {
  constexpr Gdt gdt = boot_gdt();
  EXPECT_EQ(gdt[0], 0u);
  EXPECT_EQ(gdt[kSelCode32 / 8], 0x00CF9B000000FFFFull);
  EXPECT_EQ(gdt[kSelCode64 / 8], 0x00AF9B000000FFFFull);
  EXPECT_EQ(gdt[kSelData / 8], 0x00CF93000000FFFFull);
  EXPECT_EQ(gdt[kSelTss / 8], 0x00008B0000000067ull);
  EXPECT_EQ(gdt[kSelTss / 8 + 1], 0u);
  // Linux's __BOOT_CS / __BOOT_DS.
  EXPECT_EQ(kSelCode64, 0x10);
  EXPECT_EQ(kSelData, 0x18);
}

TEST(BootGdt, EntryEncodesBaseAndLimit) {
  EXPECT_EQ(gdt_entry(0xC, 0x93, 0x12345678, 0xABCDE), 0x12CA93345678BCDEull);
}

TEST(BootGdt, SegmentFromGdtDecodesEverything) {
  const kvm_segment cs = segment_from_gdt(boot_gdt()[2], kSelCode64);
  EXPECT_EQ(cs.base, 0u);
  EXPECT_EQ(cs.limit, 0xFFFFFFFFu);
  EXPECT_EQ(cs.selector, 0x10);
  EXPECT_EQ(cs.type, 0xB);
  EXPECT_EQ(cs.present, 1);
  EXPECT_EQ(cs.dpl, 0);
  EXPECT_EQ(cs.db, 0);
  EXPECT_EQ(cs.s, 1);
  EXPECT_EQ(cs.l, 1);
  EXPECT_EQ(cs.g, 1);
  EXPECT_EQ(cs.unusable, 0);
  const kvm_segment tr = segment_from_gdt(boot_gdt()[4], kSelTss);
  EXPECT_EQ(tr.limit, 0x67u);
  EXPECT_EQ(tr.type, 0xB);
  EXPECT_EQ(tr.s, 0);
  EXPECT_EQ(tr.g, 0);
  const kvm_segment null = segment_from_gdt(0, 0);
  EXPECT_EQ(null.unusable, 1);
}

TEST(BootSregs, Linux64LongModeState) {
  BootPlan plan;
  plan.mode = BootMode::kLinux64;
  kvm_sregs current{};
  current.apic_base = 0xFEE00900;
  const kvm_sregs s = boot_sregs(plan, current);
  EXPECT_EQ(s.cr0, 0x80000011u);  // PG | ET | PE
  EXPECT_EQ(s.cr3, layout::kPml4);
  EXPECT_EQ(s.cr4, 0x20u);        // PAE
  EXPECT_EQ(s.efer, 0x500u);      // LMA | LME
  EXPECT_EQ(s.cs.selector, 0x10);
  EXPECT_EQ(s.cs.l, 1);
  EXPECT_EQ(s.cs.db, 0);
  for (const kvm_segment* seg : {&s.ds, &s.es, &s.fs, &s.gs, &s.ss}) {
    EXPECT_EQ(seg->selector, 0x18);
    EXPECT_EQ(seg->type, 0x3);
    EXPECT_EQ(seg->db, 1);
    EXPECT_EQ(seg->g, 1);
    EXPECT_EQ(seg->limit, 0xFFFFFFFFu);
  }
  EXPECT_EQ(s.tr.selector, 0x20);
  EXPECT_EQ(s.gdt.base, layout::kGdtAddr);
  EXPECT_EQ(s.gdt.limit, 6 * 8 - 1);
  EXPECT_EQ(s.apic_base, 0xFEE00900u);  // kept from KVM_GET_SREGS
}

TEST(BootSregs, PvhProtectedModeState) {
  BootPlan plan;
  plan.mode = BootMode::kPvh;
  const kvm_sregs s = boot_sregs(plan, kvm_sregs{});
  EXPECT_EQ(s.cr0, 0x11u);  // ET | PE, paging off
  EXPECT_EQ(s.cr3, 0u);
  EXPECT_EQ(s.cr4, 0u);
  EXPECT_EQ(s.efer, 0u);
  EXPECT_EQ(s.cs.selector, 0x08);
  EXPECT_EQ(s.cs.db, 1);
  EXPECT_EQ(s.cs.l, 0);
  EXPECT_EQ(s.cs.limit, 0xFFFFFFFFu);
  EXPECT_EQ(s.ss.selector, 0x18);
  EXPECT_EQ(s.tr.limit, 0x67u);  // PVH ABI: 32-bit TSS, base 0, limit 0x67
}

TEST(BootRegs, EntryRegistersPerMode) {
  BootPlan linux64{BootMode::kLinux64, 0x1000200, layout::kZeroPage, layout::kBootStack};
  kvm_regs r = boot_regs(linux64);
  EXPECT_EQ(r.rip, 0x1000200u);
  EXPECT_EQ(r.rsi, layout::kZeroPage);
  EXPECT_EQ(r.rbx, 0u);
  EXPECT_EQ(r.rsp, layout::kBootStack);
  EXPECT_EQ(r.rflags, 0x2u);
  BootPlan pvh{BootMode::kPvh, 0x200000, layout::kPvhStartInfo, layout::kBootStack};
  r = boot_regs(pvh);
  EXPECT_EQ(r.rip, 0x200000u);
  EXPECT_EQ(r.rbx, layout::kPvhStartInfo);
  EXPECT_EQ(r.rsi, 0u);
}

TEST(BootPageTables, IdentityMapsFourGiB) {
  auto mem = GuestMemory::create(16 * layout::kMiB);
  ASSERT_TRUE(mem) << mem.message();
  ASSERT_TRUE(write_identity_page_tables(**mem).is_ok());
  ASSERT_TRUE(write_boot_gdt(**mem).is_ok());
  auto rd = [&](uint64_t gpa) { return *(*mem)->read_obj<uint64_t>(gpa); };
  EXPECT_EQ(rd(layout::kPml4), layout::kPdpt | 0x3);
  EXPECT_EQ(rd(layout::kPml4 + 8), 0u);
  for (unsigned i = 0; i < 4; ++i) EXPECT_EQ(rd(layout::kPdpt + 8 * i), (layout::kPd + i * 0x1000) | 0x3);
  EXPECT_EQ(rd(layout::kPdpt + 32), 0u);
  EXPECT_EQ(rd(layout::kPd), 0x83u);
  EXPECT_EQ(rd(layout::kPd + 8), 0x200083u);
  EXPECT_EQ(rd(layout::kPd + 3 * 0x1000 + 511 * 8), 0xFFE00083u);  // last 2 MiB below 4 GiB
  EXPECT_EQ(rd(layout::kGdtAddr + 0x10), 0x00AF9B000000FFFFull);
}

}  // namespace
}  // namespace minihv::boot
