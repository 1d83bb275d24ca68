/* Test guest ring-0 helpers: port I/O (ring 0 only on this machine). */
#ifndef TG_KERNEL_H
#define TG_KERNEL_H

#include "tg.h"

static inline void outb(u16 p, u8 v) { asm volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { asm volatile("outw %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { asm volatile("outl %0, %1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; asm volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; asm volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; asm volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

void tss_setup(u32 cpu);
void kcon_write(const char *s, usize n, int force);
NORETURN void k_poweroff(void);
NORETURN void k_reboot(void);
NORETURN void k_triple(void);

#endif
