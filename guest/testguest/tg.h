/* Test guest: shared types, the shared page, gate calls, library. */
#ifndef TG_H
#define TG_H

#include "layout.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef unsigned long usize;

#define NORETURN __attribute__((noreturn))
#define ALIGNED(n) __attribute__((aligned(n)))
#define PACKED __attribute__((packed))
#define NULL ((void *)0)

/* ---- gate calls (int $0x81 from ring 3) ---- */
enum gate_nr {
    G_WRITE = 1,      /* (buf, len): console write, one atomic line */
    G_HALT,           /* sti; hlt: sleep until the next interrupt */
    G_LAPIC_RD,       /* (reg) -> value */
    G_LAPIC_WR,       /* (reg, value) */
    G_OUT,            /* (port, value, width 1/2/4) */
    G_IN,             /* (port, width) -> value */
    G_CPUID,          /* (leaf, subleaf, u32 out[4]) executed in ring 0 */
    G_WRMSR,          /* (msr, value) */
    G_PIT_CAL,        /* (u64 out[2]) -> out[0]=TSC ticks, out[1]=PIT ticks */
    G_POWEROFF,
    G_REBOOT,
    G_TRIPLE,         /* empty IDT + exception: triple fault */
};

static inline long gate3(long nr, long a, long b, long c)
{
    asm volatile("int $0x81"
                 : "+a"(nr), "+D"(a), "+S"(b), "+d"(c)
                 :
                 : "rcx", "r8", "r9", "r10", "r11", "memory");
    return nr;
}
#define gate0(nr) gate3((nr), 0, 0, 0)
#define gate1(nr, a) gate3((nr), (long)(a), 0, 0)
#define gate2(nr, a, b) gate3((nr), (long)(a), (long)(b), 0)

/* ---- ACPI power control, parsed by ring 3, used by ring 0 ---- */
struct gas {                 /* ACPI Generic Address Structure, unpacked */
    u8 space;                /* 0 = system memory, 1 = system I/O */
    u8 width;                /* register bit width */
    u64 addr;
};

/* ---- the shared page: published at boot, read by everyone ---- */
struct tg_shared {
    u64 tsc_khz;             /* calibrated TSC frequency */
    const char *tsc_src;     /* "cpuid", "kvmclock" or "pit" */
    u64 lapic_10ms;          /* LAPIC timer initial count for a 10 ms period */
    u32 ncpus;               /* CPUs from the MADT (and started) */
    u32 apic_ids[TG_MAX_CPUS];
    u64 mem_bytes;           /* RAM in the memmap */
    /* power control from the FADT */
    int have_sleep_ctl, have_pm1a, have_reset;
    struct gas sleep_ctl, pm1a_cnt, reset_reg;
    u8 reset_value;
    /* SMP bring-up */
    volatile u32 online;     /* APs that reached ring 3 */
    volatile u32 go;         /* set by the BSP when the workloads may start */
    volatile u32 done;       /* CPUs that printed DONE */
};
extern struct tg_shared tg;
extern u64 tg_boot_tsc;          /* TSC at the first instruction of the 32-bit entry */
extern u32 tg_start_info_pa;     /* %ebx at entry */

/* ---- library (lib.c, fmt.c) ---- */
void *memcpy(void *d, const void *s, usize n);
void *memset(void *d, int c, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int strncmp(const char *a, const char *b, usize n);
int fmt(char *buf, int size, const char *f, ...) __attribute__((format(printf, 3, 4)));
int vfmt(char *buf, int size, const char *f, __builtin_va_list ap);

/* ring-3 console: one call = one atomic line chunk */
void uprintf(const char *f, ...) __attribute__((format(printf, 1, 2)));
void uputs(const char *s);
NORETURN void upanic(const char *f, ...) __attribute__((format(printf, 1, 2)));
NORETURN void upoweroff(void);

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
static inline void cpu_relax(void) { asm volatile("pause" ::: "memory"); }
static inline void barrier(void) { asm volatile("" ::: "memory"); }
static inline void mb(void) { asm volatile("lock addl $0,(%%rsp)" ::: "memory", "cc"); }
static inline u32 atomic_inc(volatile u32 *p)
{
    u32 v = 1;
    asm volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) :: "memory");
    return v + 1;
}
static inline u32 mmio_rd32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }

/* time, from ring 3 */
static inline u64 ms_since_boot(u64 t) { return (t - tg_boot_tsc) / tg.tsc_khz; }

#endif
