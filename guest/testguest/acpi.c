/* Test guest: read the ACPI tables we need, in ring 3 at native speed.
 * MADT -> CPU list; FADT -> sleep control / PM1a / reset registers. */
#include "user.h"

static u8 rd8(u64 a) { return *(const u8 *)a; }
static u32 rd32(u64 a) { u32 v; memcpy(&v, (const void *)a, 4); return v; }
static u64 rd64(u64 a) { u64 v; memcpy(&v, (const void *)a, 8); return v; }

static int sum_ok(u64 a, u32 n)
{
    u8 s = 0;
    for (u32 i = 0; i < n; i++)
        s = (u8)(s + rd8(a + i));
    return s == 0;
}

static u64 find_rsdp(void)
{
    if (tg_rsdp_pa && !memcmp((const void *)tg_rsdp_pa, "RSD PTR ", 8))
        return tg_rsdp_pa;
    for (u64 a = 0xe0000; a < 0x100000; a += 16)
        if (!memcmp((const void *)a, "RSD PTR ", 8) && sum_ok(a, 20))
            return a;
    return 0;
}

static struct gas gas_read(u64 a)
{
    return (struct gas){.space = rd8(a), .width = rd8(a + 1), .addr = rd64(a + 4)};
}

static void read_madt(u64 t)
{
    u32 len = rd32(t + 4);
    for (u64 e = t + 44; e + 2 <= t + len;) {
        u8 type = rd8(e), elen = rd8(e + 1);
        if (elen < 2)
            break;
        u32 id = ~0u, flags = 0;
        if (type == 0 && elen >= 8) {           /* Processor Local APIC */
            id = rd8(e + 3);
            flags = rd32(e + 4);
        } else if (type == 9 && elen >= 16) {   /* Processor Local x2APIC */
            id = rd32(e + 4);
            flags = rd32(e + 8);
        }
        if (id != ~0u && (flags & 1) && tg.ncpus < TG_MAX_CPUS)
            tg.apic_ids[tg.ncpus++] = id;
        e += elen;
    }
}

static void read_fadt(u64 t)
{
    u32 len = rd32(t + 4);
    u32 flags = len >= 116 ? rd32(t + 112) : 0;
    if (len >= 256) {
        tg.sleep_ctl = gas_read(t + 244);
        tg.have_sleep_ctl = tg.sleep_ctl.addr != 0 && tg.sleep_ctl.space <= 1;
    }
    if (!(flags & (1u << 20))) {                /* not HW_REDUCED_ACPI: PM1a */
        if (len >= 184 && rd64(t + 176)) {
            tg.pm1a_cnt = gas_read(t + 172);
        } else if (len >= 68 && rd32(t + 64)) {
            tg.pm1a_cnt = (struct gas){.space = 1, .width = 16, .addr = rd32(t + 64)};
        }
        tg.have_pm1a = tg.pm1a_cnt.addr != 0 && tg.pm1a_cnt.space <= 1;
    }
    if (len >= 129 && (flags & (1u << 10))) {   /* RESET_REG_SUP */
        tg.reset_reg = gas_read(t + 116);
        tg.reset_value = rd8(t + 128);
        tg.have_reset = tg.reset_reg.addr != 0 && tg.reset_reg.space <= 1;
    }
}

void acpi_read(void)
{
    u64 rsdp = find_rsdp();
    if (rsdp) {
        int x = rd8(rsdp + 15) >= 2 && rd64(rsdp + 24);
        u64 sdt = x ? rd64(rsdp + 24) : rd32(rsdp + 16);
        u32 len = sdt ? rd32(sdt + 4) : 0;
        u32 esz = x ? 8 : 4;
        for (u64 p = sdt + 36; sdt && p + esz <= sdt + len; p += esz) {
            u64 t = x ? rd64(p) : rd32(p);
            if (!t)
                continue;
            if (!memcmp((const void *)t, "APIC", 4))
                read_madt(t);
            else if (!memcmp((const void *)t, "FACP", 4))
                read_fadt(t);
        }
    }
    if (tg.ncpus == 0) {                        /* no MADT: uniprocessor */
        tg.ncpus = 1;
        tg.apic_ids[0] = (u32)gate1(G_LAPIC_RD, LAPIC_ID) >> 24;
    }
}
