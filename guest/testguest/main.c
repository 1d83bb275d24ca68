/* Test guest ring-3 main: the BSP reads boot information, calibrates,
 * starts the APs, prints the boot line and releases every CPU into its
 * workload. */
#include "user.h"

struct tg_shared tg;

static NORETURN void run(u32 cpu)
{
    switch (cfg.wl) {
    case W_IDLE:
        work_idle(cpu);
    case W_DIRTY:
        work_dirty(cpu);
    case W_DISK:
        if (cpu == 0)
            work_disk(cpu);
        work_idle(cpu);
    case W_DISKBENCH:
        if (cpu == 0)
            work_diskbench(cpu);
        work_idle(cpu);
    case W_CHATTER:
        if (cpu == 0)
            work_chatter(cpu);
        work_idle(cpu);
    case W_ECHO:
        if (cpu == 0)
            work_echo(cpu);
        work_idle(cpu);
    case W_NET:
        if (cpu == 0)
            work_net(cpu);
        work_idle(cpu);
    default:
        break;
    }
    if (cpu != 0)
        halt_forever();
    switch (cfg.wl) {
    case W_CPUID:
        work_cpuid(cpuid_r0);
    case W_CPUID3:
        work_cpuid(cpuid_r3);
    case W_POWEROFF:
        uputs("BYE\n");
        upoweroff();
    case W_REBOOT:
        uputs("BYE\n");
        gate0(G_REBOOT);
        break;
    case W_PANIC:
        gate0(G_TRIPLE);
        break;
    default:
        break;
    }
    halt_forever();
}

NORETURN void user_main_bsp(u64 cpu)
{
    bootinfo_read();
    config_parse(tg_cmdline);
    acpi_read();
    time_calibrate();
    lapic_timer_start();
    smp_start();
    uprintf("minihv-testguest: boot cpus=%u mem_mib=%lu tsc_khz=%lu workload=%s cmdline=\"%s\"\n",
            tg.ncpus, tg.mem_bytes >> 20, tg.tsc_khz, cfg.wl_name, tg_cmdline);
    if (cfg.error[0])
        upanic("%s", cfg.error);
    barrier();
    tg.go = 1;
    run((u32)cpu);
}

NORETURN void user_main_ap(u64 cpu)
{
    lapic_timer_start();
    atomic_inc(&tg.online);
    while (!tg.go)
        cpu_relax();
    run((u32)cpu);
}

/* chatter: the console never rests, so a pause nearly always finds the vCPU at a port write. */
NORETURN void work_chatter(u32 cpu)
{
    struct mon m;
    mon_init(&m, cpu);
    for (u64 n = 1;; n++) {
        if (mon_poll(&m))
            mon_hb(&m, "");
        uprintf("TICK %lu\n", n);
    }
}

NORETURN void work_idle(u32 cpu)
{
    struct mon m;
    mon_init(&m, cpu);
    for (;;) {
        if (mon_poll(&m))
            mon_hb(&m, "");
        gate0(G_HALT);
    }
}
