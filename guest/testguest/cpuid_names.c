/* Test guest: CPUID feature bit names, as Linux prints them in
 * /proc/cpuinfo, in Linux's word order. Bits Linux hides have no name.
 * One table for the ring-0 `cpuid` workload (and a later ring-3 one). */
#include "user.h"

enum reg { EAX, EBX, ECX, EDX };

struct cpuid_word {
    u32 leaf, sub;
    enum reg reg;
    const char *const names[32];
};

static const struct cpuid_word words[] = {
    {1, 0, EDX, {"fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", NULL, "sep", "mtrr",
                 "pge", "mca", "cmov", "pat", "pse36", "pn", "clflush", NULL, "dts", "acpi", "mmx", "fxsr",
                 "sse", "sse2", "ss", "ht", "tm", "ia64", "pbe"}},
    {0x80000001, 0, EDX, {[11] = "syscall", [19] = "mp", [20] = "nx", [22] = "mmxext", [25] = "fxsr_opt",
                          [26] = "pdpe1gb", [27] = "rdtscp", [29] = "lm", [30] = "3dnowext", [31] = "3dnow"}},
    {1, 0, ECX, {"pni", "pclmulqdq", "dtes64", "monitor", "ds_cpl", "vmx", "smx", "est", "tm2", "ssse3", "cid",
                 "sdbg", "fma", "cx16", "xtpr", "pdcm", NULL, "pcid", "dca", "sse4_1", "sse4_2", "x2apic",
                 "movbe", "popcnt", "tsc_deadline_timer", "aes", "xsave", NULL, "avx", "f16c", "rdrand",
                 "hypervisor"}},
    {0x80000001, 0, ECX, {"lahf_lm", "cmp_legacy", "svm", "extapic", "cr8_legacy", "abm", "sse4a",
                          "misalignsse", "3dnowprefetch", "osvw", "ibs", "xop", "skinit", "wdt", NULL, "lwp",
                          "fma4", "tce", NULL, "nodeid_msr", NULL, "tbm", "topoext", "perfctr_core",
                          "perfctr_nb", NULL, "bpext", "ptsc", "perfctr_llc", "mwaitx"}},
    {7, 0, EBX, {"fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle", "avx2", NULL, "smep", "bmi2", "erms",
                 "invpcid", "rtm", "cqm", NULL, "mpx", "rdt_a", "avx512f", "avx512dq", "rdseed", "adx",
                 "smap", "avx512ifma", NULL, "clflushopt", "clwb", "intel_pt", "avx512pf", "avx512er",
                 "avx512cd", "sha_ni", "avx512bw", "avx512vl"}},
    {0xd, 1, EAX, {"xsaveopt", "xsavec", "xgetbv1", "xsaves", "xfd"}},
    {7, 1, EAX, {[4] = "avx_vnni", [5] = "avx512_bf16", [21] = "amx_fp16", [23] = "avx_ifma", [26] = "lam"}},
    {0x80000008, 0, EBX, {[0] = "clzero", [1] = "irperf", [2] = "xsaveerptr", [4] = "rdpru", [9] = "wbnoinvd",
                          [23] = "amd_ppin", [25] = "virt_ssbd", [27] = "cppc"}},
    {7, 0, ECX, {[1] = "avx512vbmi", [2] = "umip", [3] = "pku", [4] = "ospke", [5] = "waitpkg",
                 [6] = "avx512_vbmi2", [8] = "gfni", [9] = "vaes", [10] = "vpclmulqdq", [11] = "avx512_vnni",
                 [12] = "avx512_bitalg", [13] = "tme", [14] = "avx512_vpopcntdq", [16] = "la57",
                 [22] = "rdpid", [23] = "bus_lock_detect", [25] = "cldemote", [27] = "movdiri",
                 [28] = "movdir64b", [29] = "enqcmd", [30] = "sgx_lc"}},
    {7, 0, EDX, {[2] = "avx512_4vnniw", [3] = "avx512_4fmaps", [4] = "fsrm", [8] = "avx512_vp2intersect",
                 [10] = "md_clear", [14] = "serialize", [16] = "tsxldtrk", [18] = "pconfig", [19] = "arch_lbr",
                 [20] = "ibt", [22] = "amx_bf16", [23] = "avx512_fp16", [24] = "amx_tile", [25] = "amx_int8",
                 [28] = "flush_l1d", [29] = "arch_capabilities"}},
    /* invariant TSC: Linux derives both synthetic flags from this bit */
    {0x80000007, 0, EDX, {[8] = "constant_tsc nonstop_tsc"}},
};

static int leaf_ok(cpuid_fn cpuid, u32 leaf, u32 sub, const u32 max[2])
{
    if (leaf >= 0x80000000)
        return leaf <= max[1];
    if (leaf > max[0])
        return 0;
    if (leaf == 7 && sub > 0) {
        u32 r[4];
        cpuid(7, 0, r);
        return sub <= r[0];
    }
    return 1;
}

/* Writes the space-separated names of every set bit, as seen by `cpuid`
 * (cpuid_r0: ring 0 through the gate); returns the length. */
int cpuid_flag_names(cpuid_fn cpuid, char *buf, int size)
{
    u32 r[4], max[2];
    cpuid(0, 0, r);
    max[0] = r[0];
    cpuid(0x80000000, 0, r);
    max[1] = r[0] >= 0x80000000 && r[0] < 0x8000ffff ? r[0] : 0;
    int n = 0;
    for (usize w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        if (!leaf_ok(cpuid, words[w].leaf, words[w].sub, max))
            continue;
        cpuid(words[w].leaf, words[w].sub, r);
        for (int b = 0; b < 32; b++)
            if ((r[words[w].reg] >> b & 1) && words[w].names[b])
                n += fmt(buf + n, size - n, "%s%s", n ? " " : "", words[w].names[b]);
    }
    return n;
}
