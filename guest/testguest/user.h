/* Test guest ring 3: boot information, configuration, the per-CPU monitor
 * (heartbeat, STALL, DONE) and the workloads. */
#ifndef TG_USER_H
#define TG_USER_H

#include "tg.h"

/* ---- boot information (bootinfo.c) ---- */
#define TG_MAX_MEMMAP 64
struct memrange {
    u64 base, size;
    u32 type;                   /* 1 = RAM */
};
extern char tg_cmdline[1024];
extern struct memrange tg_memmap[TG_MAX_MEMMAP];
extern int tg_nmemmap;
extern u64 tg_rsdp_pa;
void bootinfo_read(void);
int addr_is_ram(u64 a);

/* ---- configuration from the command line (config.c) ---- */
enum workload { W_IDLE, W_DIRTY, W_DISK, W_CPUID, W_CPUID3, W_POWEROFF, W_REBOOT, W_PANIC,
               W_DISKBENCH, W_CHATTER, W_ECHO, W_NET };
enum bench_pattern { P_RANDREAD, P_RANDWRITE, P_SEQREAD, P_SEQWRITE };
/* dirty: what a page holds (docs/test-guest.md) */
enum dirty_fill { F_MIXED, F_RANDOM, F_TEXT, F_ZEROS };
#define TG_MAX_VMMIO 8
struct config {
    enum workload wl;
    const char *wl_name;
    u64 secs, stall_ms, mib, rate, slots, same_ms;
    u64 bs, qd;                 /* diskbench */
    enum bench_pattern pattern; /* diskbench */
    enum dirty_fill fill;       /* dirty */
    u32 ip, prefix;             /* net: ip=A.B.C.D[/N], host byte order */
    u64 vmmio[TG_MAX_VMMIO];    /* virtio_mmio.device= base addresses */
    int nvmmio;
    char error[96];             /* first problem found, reported after boot */
};
extern struct config cfg;
void config_parse(const char *cmdline);

/* ---- platform (acpi.c, timecal.c, smp.c) ---- */
void acpi_read(void);
void cpuid_r0(u32 leaf, u32 sub, u32 r[4]);
void cpuid_r3(u32 leaf, u32 sub, u32 r[4]);
void time_calibrate(void);
void lapic_timer_start(void);
void smp_start(void);

/* ---- the per-CPU monitor (monitor.c) ---- */
struct mon {
    u32 cpu;
    u64 seq;                    /* last heartbeat printed */
    u64 errs;
    u64 last;                   /* TSC at the previous check */
    u64 next_hb;
    u64 deadline;               /* 0 = run forever */
    u64 stall_ticks;
    u64 sec;                    /* TSC ticks per second */
};
void mon_init(struct mon *m, u32 cpu);
void mon_stall(struct mon *m, u64 now);
void mon_hb(struct mon *m, const char *extra);
NORETURN void mon_done(struct mon *m);
NORETURN void halt_forever(void);

/* Cheap check, call every few microseconds of work: reports stalls and
 * returns nonzero when a heartbeat is due (then call mon_hb). */
static inline int mon_poll(struct mon *m)
{
    u64 now = rdtsc();
    if (now - m->last >= m->stall_ticks)
        mon_stall(m, now);
    m->last = now;
    return now >= m->next_hb;
}

/* ---- workloads ---- */
NORETURN void work_idle(u32 cpu);
NORETURN void work_dirty(u32 cpu);
NORETURN void work_disk(u32 cpu);
NORETURN void work_diskbench(u32 cpu);
NORETURN void work_chatter(u32 cpu);
NORETURN void work_echo(u32 cpu);
NORETURN void work_net(u32 cpu);
extern const char *const bench_patterns[4];
extern const char *const dirty_fills[4];
NORETURN void work_cpuid(void (*cpuid)(u32, u32, u32[4]));
typedef void (*cpuid_fn)(u32 leaf, u32 sub, u32 r[4]);
int cpuid_flag_names(cpuid_fn cpuid, char *buf, int size);

#endif
