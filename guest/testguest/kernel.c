/* Test guest ring 0: descriptor tables, the gate dispatcher, exceptions,
 * console, power control and TSC calibration. Everything here is
 * interpreted on PVM (~0.75 us per instruction): keep it short, and do
 * all parsing and formatting in ring 3 instead. */
#include "tg.h"
#include "kernel.h"

struct idt_entry {
    u16 off0, sel;
    u8 ist, type;
    u16 off1;
    u32 off2, rsv;
};

struct tss {
    u32 rsv0;
    u64 rsp0, rsp1, rsp2, rsv1, ist[7], rsv2;
    u16 rsv3, iomap;
} PACKED;

extern char isr_exc_stubs[], isr_ud[], isr_timer[], isr_spurious[], isr_gate[];
extern u64 tg_gdt_tss[];
NORETURN void enter_user(u64 rip, u64 rsp, u64 arg);
NORETURN void user_main_bsp(u64 cpu);
NORETURN void user_main_ap(u64 cpu);

static struct idt_entry idt[256] ALIGNED(16);
static struct tss tss[TG_MAX_CPUS] ALIGNED(16);
char tg_kstacks[TG_MAX_CPUS * TG_KSTACK_SIZE] ALIGNED(TG_KSTACK_SIZE);
char tg_ustacks[TG_MAX_CPUS * TG_USTACK_SIZE] ALIGNED(4096);
volatile u32 tg_ap_next = 1;
u64 tg_boot_tsc;
u32 tg_start_info_pa;
static volatile u32 con_lock;

static void idt_set(int vec, void *fn, u8 type)
{
    u64 a = (u64)fn;
    idt[vec] = (struct idt_entry){(u16)a, SEL_KCODE, 0, type, (u16)(a >> 16), (u32)(a >> 32), 0};
}

/* Fills the TSS and its GDT descriptor for one CPU. Plain memory writes:
 * the BSP does CPU 0 in ring 0 and the others from ring 3 before SIPI. */
void tss_setup(u32 cpu)
{
    u64 base = (u64)&tss[cpu];
    u64 limit = sizeof(struct tss) - 1;
    tss[cpu].rsp0 = (u64)tg_kstacks + (u64)(cpu + 1) * TG_KSTACK_SIZE - 16;
    tss[cpu].iomap = sizeof(struct tss);
    tg_gdt_tss[2 * cpu] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
                          ((limit >> 16) << 48) | (((base >> 24) & 0xff) << 56);
    tg_gdt_tss[2 * cpu + 1] = base >> 32;
}

/* MSR_STAR as Linux sets it (PVM derives its kernel/user selectors from it). */
#define MSR_STAR 0xc0000081
#define STAR_VALUE (((u64)(SEL_UCODE32 | 3) << 48) | ((u64)SEL_KCODE << 32))

static void load_tables(u32 cpu)
{
    asm volatile("wrmsr" ::"c"(MSR_STAR), "a"((u32)STAR_VALUE), "d"((u32)(STAR_VALUE >> 32)));
    struct PACKED { u16 limit; u64 base; } p = {sizeof(idt) - 1, (u64)idt};
    asm volatile("lidt %0" ::"m"(p));
    asm volatile("ltr %w0" ::"r"(SEL_TSS0 + 16 * cpu));
}

static u64 ustack_top(u64 cpu) { return (u64)tg_ustacks + (cpu + 1) * TG_USTACK_SIZE - 8; }

NORETURN void kmain_bsp(void)
{
    for (int v = 0; v < 32; v++)
        idt_set(v, isr_exc_stubs + 16 * v, 0x8e);
    idt_set(6, isr_ud, 0x8e);       /* #UD: also the PVM path of int $0x81 */
    idt_set(VEC_TIMER, isr_timer, 0x8e);
    idt_set(VEC_SPURIOUS, isr_spurious, 0x8e);
    idt_set(VEC_GATE, isr_gate, 0xee);
    tss_setup(0);
    load_tables(0);
    outb(PORT_PIC1_DATA, 0xff);     /* mask the legacy PIC: its vectors are unset */
    outb(PORT_PIC2_DATA, 0xff);
    outb(PORT_COM1 + 1, 0);         /* UART: no interrupts */
    outb(PORT_COM1 + 2, 0x07);      /* enable and clear the FIFOs */
    enter_user((u64)user_main_bsp, ustack_top(0), 0);
}

NORETURN void kmain_ap(u32 cpu)
{
    load_tables(cpu);
    enter_user((u64)user_main_ap, ustack_top(cpu), cpu);
}

/* ---- console ---- */
void kcon_write(const char *s, usize n, int force)
{
    u32 spins = 0;
    while (__atomic_exchange_n(&con_lock, 1, __ATOMIC_ACQUIRE)) {
        if (force && ++spins > 100000)
            break;
        cpu_relax();
    }
    while (n) {
        usize chunk = n < 16 ? n : 16;
        while (!(inb(PORT_COM1 + 5) & 0x20))    /* LSR.THRE: FIFO empty */
            cpu_relax();
        for (usize i = 0; i < chunk; i++)
            outb(PORT_COM1, (u8)s[i]);
        s += chunk;
        n -= chunk;
    }
    __atomic_store_n(&con_lock, 0, __ATOMIC_RELEASE);
}

/* ---- power ---- */
static void gas_write(const struct gas *g, u32 v)
{
    if (g->space == 1) {
        if (g->width == 16)
            outw((u16)g->addr, (u16)v);
        else if (g->width == 32)
            outl((u16)g->addr, v);
        else
            outb((u16)g->addr, (u8)v);
    } else if (g->space == 0) {
        if (g->width == 16)
            *(volatile u16 *)g->addr = (u16)v;
        else if (g->width == 32)
            *(volatile u32 *)g->addr = v;
        else
            *(volatile u8 *)g->addr = (u8)v;
    }
}

NORETURN void k_triple(void)
{
    struct PACKED { u16 limit; u64 base; } p = {0, 0};
    asm volatile("lidt %0; ud2" ::"m"(p));
    for (;;)
        asm volatile("cli; hlt");
}

NORETURN void k_poweroff(void)
{
    if (tg.have_sleep_ctl)
        gas_write(&tg.sleep_ctl, (5 << 2) | (1 << 5));      /* SLP_TYP=5, SLP_EN */
    if (tg.have_pm1a)
        gas_write(&tg.pm1a_cnt, (5 << 10) | (1 << 13));     /* PM1 layout: same fields */
    outb(PORT_MINIHV_SLEEP, (5 << 2) | (1 << 5));
    for (;;)
        asm volatile("cli; hlt");
}

NORETURN void k_reboot(void)
{
    if (tg.have_reset)
        gas_write(&tg.reset_reg, tg.reset_value);
    outb(PORT_I8042_CMD, 0xfe);
    k_triple();
}

/* ---- TSC calibration against PIT channel 0 (~10 ms of polling) ---- */
static u16 pit_read(void)
{
    outb(PORT_PIT_CMD, 0x00);       /* latch channel 0 */
    u8 lo = inb(PORT_PIT_CH0);
    u8 hi = inb(PORT_PIT_CH0);
    return (u16)(lo | (hi << 8));
}

static void pit_calibrate(u64 *out)
{
    outb(PORT_PIT_CMD, 0x34);       /* channel 0, lo/hi, mode 2, count 65536 */
    outb(PORT_PIT_CH0, 0);
    outb(PORT_PIT_CH0, 0);
    u16 prev = pit_read();
    u64 t0 = rdtsc(), t1 = t0;
    u64 ticks = 0;
    while (ticks < 11932) {         /* 10 ms at 1.193182 MHz */
        u16 c = pit_read();
        t1 = rdtsc();
        ticks += (u16)(prev - c);
        prev = c;
        if (t1 - t0 > (1UL << 36))  /* no PIT: give up after many seconds */
            break;
    }
    outb(PORT_PIT_CMD, 0x30);       /* mode 0, one final edge, then quiet */
    outb(PORT_PIT_CH0, 0xff);
    outb(PORT_PIT_CH0, 0xff);
    out[0] = t1 - t0;
    out[1] = ticks >= 11932 ? ticks : 0;
}

/* ---- the gate: int $0x81 from ring 3 ---- */
long gate_dispatch(long a0, long a1, long a2, long nr)
{
    switch (nr) {
    case G_WRITE:
        kcon_write((const char *)a0, (usize)a1, 0);
        return 0;
    case G_HALT:
        asm volatile("sti; hlt; cli" ::: "memory");
        return 0;
    case G_LAPIC_RD:
        return mmio_rd32(LAPIC_BASE + (u64)a0);
    case G_LAPIC_WR:
        mmio_wr32(LAPIC_BASE + (u64)a0, (u32)a1);
        return 0;
    case G_OUT:
        if (a2 == 4)
            outl((u16)a0, (u32)a1);
        else if (a2 == 2)
            outw((u16)a0, (u16)a1);
        else
            outb((u16)a0, (u8)a1);
        return 0;
    case G_IN:
        return a1 == 4 ? inl((u16)a0) : a1 == 2 ? inw((u16)a0) : inb((u16)a0);
    case G_CPUID: {
        u32 *o = (u32 *)a2;
        asm volatile("cpuid" : "=a"(o[0]), "=b"(o[1]), "=c"(o[2]), "=d"(o[3]) : "a"((u32)a0), "c"((u32)a1));
        return 0;
    }
    case G_WRMSR:
        asm volatile("wrmsr" ::"c"((u32)a0), "a"((u32)a1), "d"((u32)((u64)a1 >> 32)));
        return 0;
    case G_PIT_CAL:
        pit_calibrate((u64 *)a0);
        return 0;
    case G_POWEROFF:
        k_poweroff();
    case G_REBOOT:
        k_reboot();
    case G_TRIPLE:
        k_triple();
    }
    return -1;
}

/* ---- exceptions: print one PANIC line and power off ---- */
NORETURN void exception_panic(u64 *f)
{
    u64 cr2, cpu = 999;
    asm volatile("mov %%cr2, %0" : "=r"(cr2));
    u64 top = ((u64)f | (TG_KSTACK_SIZE - 1)) + 1;
    if (top > (u64)tg_kstacks && top <= (u64)tg_kstacks + sizeof(tg_kstacks))
        cpu = *(u64 *)(top - 8);
    char buf[160];
    int n = fmt(buf, sizeof(buf), "PANIC exception vec=%lu cpu=%lu rip=0x%lx err=0x%lx cr2=0x%lx cs=0x%lx\n",
                f[0], cpu, f[2], f[1], cr2, f[3]);
    kcon_write(buf, (usize)n, 1);
    k_poweroff();
}
