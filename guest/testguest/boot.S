/* Test guest boot code: PVH note, 32-bit entry, static page tables, GDT,
 * AP trampoline, 64-bit entries, interrupt stubs, ring-3 entry.
 * Everything here runs in ring 0 (interpreted on PVM): keep it short. */
#include "layout.h"

/* ---- PVH entry note: QEMU reads the descriptor as 8 bytes, so .quad ---- */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz */
	.long 8                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry
	.balign 4

/* ---- 32-bit PVH entry: %ebx = struct hvm_start_info (physical) ---- */
	.section .text.boot, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	rdtsc
	mov %eax, tg_boot_tsc
	mov %edx, tg_boot_tsc + 4
	mov %ebx, tg_start_info_pa
	lgdt gdt_ptr
	mov $TG_CR4, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov $TG_CR0, %eax
	mov %eax, %cr0
	ljmp $SEL_KCODE, $bsp_entry64

	.code64
bsp_entry64:
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $(tg_kstacks + TG_KSTACK_SIZE - 16), %rsp
	call kmain_bsp          /* never returns */
1:	hlt
	jmp 1b

/* APs arrive here from the trampoline, already in long mode. */
	.globl ap_entry64
ap_entry64:
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $1, %eax
	lock xadd %eax, tg_ap_next
	cmp $TG_MAX_CPUS, %eax
	jae 2f
	mov %eax, %edi
	lea 1(%rax), %ecx
	imul $TG_KSTACK_SIZE, %ecx, %ecx
	lea tg_kstacks - 16(%rcx), %rsp
	mov %rdi, 8(%rsp)       /* CPU index at top-8 of the ring-0 stack */
	call kmain_ap           /* never returns */
2:	cli
	hlt
	jmp 2b

/* void enter_user(u64 rip, u64 rsp, u64 arg) -- iretq to ring 3, IF=1 */
	.globl enter_user
enter_user:
	pushq $(SEL_UDATA | 3)
	pushq %rsi
	pushq $0x202
	pushq $(SEL_UCODE | 3)
	pushq %rdi
	mov %rdx, %rdi
	iretq

/* ---- interrupt stubs: 32 exceptions, 16 bytes apart ---- */
	.balign 16
	.globl isr_exc_stubs
isr_exc_stubs:
	vec = 0
	.rept 32
	.balign 16
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_exception
	vec = vec + 1
	.endr

isr_exception:
	mov %rsp, %rdi          /* frame: vec, err, rip, cs, rflags, rsp, ss */
	and $-16, %rsp
	call exception_panic    /* never returns */
3:	hlt
	jmp 3b

/* #UD. On PVM (this machine's KVM) `int $0x81` from ring 3 is not
 * delivered through the IDT: it raises #UD at the int instruction. So a
 * #UD whose faulting instruction is `int $0x81` (cd 81) is that gate
 * call: continue after it and dispatch it like the real gate. */
	.globl isr_ud
isr_ud:
	push %rax
	mov 8(%rsp), %rax       /* faulting RIP */
	cmpw $0x81cd, (%rax)
	pop %rax
	jne 4f
	addq $2, (%rsp)
	jmp isr_gate
4:	pushq $0
	pushq $6
	jmp isr_exception

	.globl isr_timer
isr_timer:
	push %rax
	mov $(LAPIC_BASE + LAPIC_EOI), %eax
	movl $0, (%rax)
	pop %rax
	iretq

	.globl isr_spurious
isr_spurious:
	iretq

/* int $0x81 from ring 3: rax = call number, rdi/rsi/rdx = args, rax = result.
 * The ring-3 caller treats every caller-saved register as clobbered. */
	.globl isr_gate
isr_gate:
	mov %rax, %rcx
	sub $8, %rsp
	call gate_dispatch
	add $8, %rsp
	iretq

/* ---- AP trampoline: copied to TG_TRAMP_BASE by ring 3, entered by SIPI ---- */
	.section .rodata.tramp, "a"
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl (tramp_gdt_ptr - tramp_start)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $SEL_CODE32, $(TG_TRAMP_BASE + tramp32 - tramp_start)
	.code32
tramp32:
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %ss
	mov $TG_CR4, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov $TG_CR0, %eax
	mov %eax, %cr0
	ljmp $SEL_KCODE, $ap_entry64
	.balign 8
tramp_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
tramp_end:
	.code64

/* ---- GDT (accessed bits preset so the CPU never writes them) ---- */
	.section .data.gdt, "aw"
	.balign 16
	.globl gdt, tg_gdt_tss
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff        /* 0x08 ring-0 code, 32-bit (trampoline) */
	.quad 0x00af9b000000ffff        /* 0x10 ring-0 code, 64-bit */
	.quad 0x00cf93000000ffff        /* 0x18 ring-0 data */
	.quad 0x00cffb000000ffff        /* 0x20 ring-3 code, 32-bit (unused) */
	.quad 0x00cff3000000ffff        /* 0x28 ring-3 data */
	.quad 0x00affb000000ffff        /* 0x30 ring-3 code, 64-bit */
	.quad 0                         /* 0x38 */
tg_gdt_tss:
	.fill TG_MAX_CPUS * 2, 8, 0     /* 0x40 + 16*i: TSS of CPU i (filled at run time) */
gdt_end:
	.balign 8
	.word 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

/* ---- static identity page tables: 2 MiB pages, 0..64 GiB, U/S set ----
 * PDE flags 0xe7 = P|RW|US|A|D|PS; 3..4 GiB (MMIO) adds PWT|PCD (0x18).
 * A/D are preset so the CPU (the emulator, on PVM) never writes them. */
	.section .data.pt, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + 0x27
	.fill 511, 8, 0
pdpt:
	i = 0
	.rept TG_MAPPED_GIB
	.quad pd + i * 4096 + 0x27
	i = i + 1
	.endr
	.fill 512 - TG_MAPPED_GIB, 8, 0
pd:
	i = 0
	.rept 1536
	.quad (i << 21) + 0xe7
	i = i + 1
	.endr
	.rept 512
	.quad (i << 21) + 0xff
	i = i + 1
	.endr
	.rept (TG_MAPPED_GIB - 4) * 512
	.quad (i << 21) + 0xe7
	i = i + 1
	.endr

	.section .note.GNU-stack, "", @progbits
