/* Test guest workloads `cpuid` and `cpuid3`: CPUID executed in ring 0 (where the hypervisor's
 * CPUID table applies) or in ring 3 (what user code sees: on a software KVM such as PVM, the
 * processor's own values), printed, then power off. */
#include "user.h"

void cpuid_r3(u32 leaf, u32 sub, u32 r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

NORETURN void work_cpuid(void (*cpuid)(u32, u32, u32[4]))
{
    u32 r[4];
    char vendor[13];
    cpuid(0, 0, r);
    memcpy(vendor, &r[1], 4);
    memcpy(vendor + 4, &r[3], 4);
    memcpy(vendor + 8, &r[2], 4);
    vendor[12] = 0;
    cpuid(1, 0, r);
    u32 family = (r[0] >> 8) & 0xf, model = (r[0] >> 4) & 0xf, stepping = r[0] & 0xf;
    if (family == 0xf)
        family += (r[0] >> 20) & 0xff;
    if (family == 0x6 || family >= 0xf)
        model += ((r[0] >> 16) & 0xf) << 4;
    uprintf("CPUID vendor=%s family=%u model=%u stepping=%u\n", vendor, family, model, stepping);
    static char line[2048];
    int n = fmt(line, sizeof(line), "CPUID flags: ");
    n += cpuid_flag_names(cpuid, line + n, (int)sizeof(line) - n - 1);
    line[n++] = '\n';
    gate2(G_WRITE, line, n);
    cpuid(0x80000000, 0, r);
    if (r[0] >= 0x80000008 && r[0] < 0x8000ffff) {
        cpuid(0x80000008, 0, r);
        uprintf("CPUID addr phys_bits=%u virt_bits=%u\n", r[0] & 0xff, (r[0] >> 8) & 0xff);
    }
    upoweroff();
}
