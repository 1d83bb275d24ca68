/* Test guest: every fixed address, selector, vector and size in one place.
 * Included by C and by assembler (so: #defines only). */
#ifndef TG_LAYOUT_H
#define TG_LAYOUT_H

#define TG_LOAD_ADDR      0x100000   /* image is linked and loaded at 1 MiB */
#define TG_TRAMP_BASE     0x70000    /* AP real-mode trampoline page (SIPI vector 0x70) */
#define TG_TRAMP_VECTOR   (TG_TRAMP_BASE >> 12)
#define TG_MAPPED_GIB     64         /* static identity map covers 0..64 GiB */

#define TG_MAX_CPUS       64
#define TG_KSTACK_SIZE    8192       /* ring-0 stack per CPU (interrupts, gates) */
#define TG_USTACK_SIZE    32768      /* ring-3 stack per CPU (workloads) */

/* GDT selectors */
/* GDT selectors: Linux's layout. PVM checks the user selectors against the
 * host's (__USER_CS 0x33, __USER_DS 0x2b) and derives CS from MSR_STAR. */
#define SEL_CODE32        0x08       /* ring-0 32-bit code (AP trampoline) */
#define SEL_KCODE         0x10
#define SEL_KDATA         0x18
#define SEL_UCODE32       0x20       /* unused, keeps the STAR layout */
#define SEL_UDATA         0x28       /* used as 0x2b */
#define SEL_UCODE         0x30       /* used as 0x33 */
#define SEL_TSS0          0x40       /* CPU i: SEL_TSS0 + 16*i */

/* control register values for entering long mode */
#define TG_CR4            0x620      /* PAE | OSFXSR | OSXMMEXCPT */
#define TG_CR0            0x80000033 /* PG | NE | ET | MP | PE */
#define MSR_EFER          0xc0000080
#define EFER_LME          0x100

/* interrupt vectors */
#define VEC_TIMER         0x40
#define VEC_GATE          0x81       /* DPL 3: ring-3 system calls */
#define VEC_SPURIOUS      0xff

/* local APIC (xAPIC MMIO) */
#define LAPIC_BASE        0xfee00000
#define LAPIC_ID          0x020
#define LAPIC_EOI         0x0b0
#define LAPIC_SVR         0x0f0
#define LAPIC_ICR_LO      0x300
#define LAPIC_ICR_HI      0x310
#define LAPIC_LVT_TIMER   0x320
#define LAPIC_LVT_LINT0   0x350
#define LAPIC_LVT_LINT1   0x360
#define LAPIC_LVT_ERROR   0x370
#define LAPIC_TMR_INIT    0x380
#define LAPIC_TMR_CUR     0x390
#define LAPIC_TMR_DIV     0x3e0

/* legacy ports */
#define PORT_COM1         0x3f8
#define PORT_PIC1_DATA    0x21
#define PORT_PIC2_DATA    0xa1
#define PORT_PIT_CH0      0x40
#define PORT_PIT_CMD      0x43
#define PORT_I8042_CMD    0x64
#define PORT_MINIHV_SLEEP 0x600      /* minihv's ACPI sleep control port (last resort) */

#endif
