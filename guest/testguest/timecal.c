/* Test guest: TSC frequency (CPUID 0x40000010, kvmclock, or the PIT) and
 * the LAPIC timer period. Decisions and arithmetic in ring 3; the ring-0
 * parts (CPUID, MSR, PIT polling, LAPIC access) are single gate calls. */
#include "user.h"

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

struct pvclock {
    volatile u32 version, pad0;
    volatile u64 tsc_timestamp, system_time;
    volatile u32 mul;
    volatile signed char shift;
    volatile u8 flags, pad[2];
};
static struct pvclock kvmclock ALIGNED(64);

void cpuid_r0(u32 leaf, u32 sub, u32 r[4]) { gate3(G_CPUID, leaf, sub, (long)r); }

static u64 khz_from_kvmclock(void)
{
    gate2(G_WRMSR, MSR_KVM_SYSTEM_TIME_NEW, (u64)&kvmclock | 1);
    u64 t0 = rdtsc();
    while ((kvmclock.version == 0 || (kvmclock.version & 1) || !kvmclock.mul) && rdtsc() - t0 < (1UL << 30))
        cpu_relax();
    u32 mul = kvmclock.mul;
    int shift = kvmclock.shift;
    gate2(G_WRMSR, MSR_KVM_SYSTEM_TIME_NEW, 0);
    if (!mul)
        return 0;
    u64 khz = (1000000UL << 32) / mul;
    return shift < 0 ? khz << -shift : khz >> shift;
}

static void tsc_calibrate(void)
{
    u32 r[4];
    cpuid_r0(1, 0, r);
    if (r[2] & (1u << 31)) {                    /* running under a hypervisor */
        cpuid_r0(0x40000000, 0, r);
        u32 max = r[0];
        int kvm = r[1] == 0x4b4d564b && r[2] == 0x564b4d56 && r[3] == 0x4d;  /* "KVMKVMKVM" */
        if (max >= 0x40000010 && max < 0x40000100) {
            cpuid_r0(0x40000010, 0, r);
            if (r[0]) {
                tg.tsc_khz = r[0];
                tg.tsc_src = "cpuid";
                return;
            }
        }
        if (kvm) {
            cpuid_r0(0x40000001, 0, r);
            if ((r[0] & KVM_FEATURE_CLOCKSOURCE2) && (tg.tsc_khz = khz_from_kvmclock())) {
                tg.tsc_src = "kvmclock";
                return;
            }
        }
    }
    u64 out[2] = {0, 0};
    gate1(G_PIT_CAL, out);
    if (!out[1])
        upanic("no TSC reference (no PIT, kvmclock or CPUID 0x40000010)");
    tg.tsc_khz = out[0] * 1193182 / (out[1] * 1000);
    tg.tsc_src = "pit";
}

static void lapic_calibrate(void)
{
    gate2(G_LAPIC_WR, LAPIC_SVR, 0x100 | VEC_SPURIOUS);
    gate2(G_LAPIC_WR, LAPIC_TMR_DIV, 0xb);                  /* divide by 1 */
    gate2(G_LAPIC_WR, LAPIC_LVT_TIMER, 0x10000 | VEC_TIMER); /* masked one-shot */
    gate2(G_LAPIC_WR, LAPIC_TMR_INIT, 0xffffffffu);
    u64 t0 = rdtsc();
    while (rdtsc() - t0 < tg.tsc_khz * 2)
        cpu_relax();
    u32 cur = (u32)gate1(G_LAPIC_RD, LAPIC_TMR_CUR);
    u64 dt = rdtsc() - t0;
    gate2(G_LAPIC_WR, LAPIC_TMR_INIT, 0);
    u64 ticks = 0xffffffffu - cur;
    if (!ticks)
        upanic("LAPIC timer does not count");
    tg.lapic_10ms = ticks * tg.tsc_khz * 10 / dt;
    if (tg.lapic_10ms > 0xffffffffu)
        tg.lapic_10ms = 0xffffffffu;
}

void time_calibrate(void)
{
    tsc_calibrate();
    if (!tg.tsc_khz)
        upanic("TSC calibration gave 0 kHz");
    lapic_calibrate();
}

/* Periodic 10 ms tick on this CPU: lets `sti; hlt` in G_HALT wake up. */
void lapic_timer_start(void)
{
    gate2(G_LAPIC_WR, LAPIC_SVR, 0x100 | VEC_SPURIOUS);
    gate2(G_LAPIC_WR, LAPIC_LVT_LINT0, 0x10000);
    gate2(G_LAPIC_WR, LAPIC_TMR_DIV, 0xb);
    gate2(G_LAPIC_WR, LAPIC_LVT_TIMER, 0x20000 | VEC_TIMER);
    gate2(G_LAPIC_WR, LAPIC_TMR_INIT, tg.lapic_10ms);
}
