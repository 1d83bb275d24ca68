/* Test guest: start the APs listed in the MADT with INIT-SIPI-SIPI through
 * the real-mode trampoline at TG_TRAMP_BASE. Runs in ring 3 on the BSP;
 * each IPI is one gate call. */
#include "user.h"
#include "kernel.h"

extern char tramp_start[], tramp_end[];

static void ipi(u32 apic_id, u32 icr)
{
    gate2(G_LAPIC_WR, LAPIC_ICR_HI, apic_id << 24);
    gate2(G_LAPIC_WR, LAPIC_ICR_LO, icr);
}

static void delay_us(u64 us)
{
    u64 t0 = rdtsc(), n = tg.tsc_khz * us / 1000;
    while (rdtsc() - t0 < n)
        cpu_relax();
}

static int wait_online(u32 want, u64 us)
{
    u64 t0 = rdtsc(), n = tg.tsc_khz * us / 1000;
    while (tg.online < want && rdtsc() - t0 < n)
        cpu_relax();
    return tg.online >= want;
}

void smp_start(void)
{
    u32 self = (u32)gate1(G_LAPIC_RD, LAPIC_ID) >> 24;
    u32 n = tg.ncpus;
    if (n <= 1)
        return;
    for (u32 i = 1; i < n; i++)
        tss_setup(i);
    memcpy((void *)TG_TRAMP_BASE, tramp_start, (usize)(tramp_end - tramp_start));
    mb();
    for (u32 i = 0; i < n; i++)
        if (tg.apic_ids[i] != self)
            ipi(tg.apic_ids[i], 0x4500);                     /* INIT, assert */
    delay_us(1000);
    for (int round = 0; round < 2; round++) {
        for (u32 i = 0; i < n; i++)
            if (tg.apic_ids[i] != self)
                ipi(tg.apic_ids[i], 0x4600 | TG_TRAMP_VECTOR); /* STARTUP */
        if (wait_online(n - 1, 200))
            return;
    }
    if (!wait_online(n - 1, 1000000))
        upanic("smp: only %u of %u CPUs came up", tg.online + 1, n);
}
