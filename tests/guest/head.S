/* head.S: PVH entry, switch to long mode, interrupt stubs, AP real-mode trampoline, page-dirtying loops. */

#define MSR_EFER	0xc0000080
#define EFER_LME	0x100
#define CR0_PE		0x1
#define CR0_PG		0x80000000
#define CR4_PAE		0x20
#define SEL_CODE64	0x08
#define SEL_DATA	0x10
#define SEL_CODE32	0x18
#define TRAMPOLINE_PA	0x8000
#define AP_STACK_SIZE	4096
#define PDE_2M		0x83		/* present | writable | 2 MiB page */
#define PTE_TABLE	0x03		/* present | writable */
#define LAPIC_EOI	0xfee000b0

/*
 * Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18). Kept 4-byte aligned because QEMU
 * pads note names with the segment alignment. QEMU 7.2 reads the entry of a 64-bit ELF as
 * an 8-byte value, so an empty note follows to make the upper half read as zero.
 */
	.section .note.Xen, "a", @note
	.p2align 2
	.long 4, 4, 18
	.asciz "Xen"
	.long pvh_entry
	.long 0, 0, 0

	.section .text.boot, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	mov	%ebx, %esi		/* hvm_start_info, kept for guest_main */
	lgdt	gdt_ptr
	ljmp	$SEL_CODE32, $1f
1:	mov	$SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs
	mov	$boot_stack_top, %esp

	/* A loader need not zero .bss (QEMU does, others may not). */
	mov	$__bss_start, %edi
	mov	$__bss_end, %ecx
	sub	%edi, %ecx
	shr	$2, %ecx
	xor	%eax, %eax
	rep stosl

	/* Map only the first 4 GiB here (few instructions under emulation); C maps the rest. */
	movl	$(pdpt + PTE_TABLE), pml4
	mov	$(pd_tables + PTE_TABLE), %eax
	mov	$pdpt, %edi
	mov	$4, %ecx
2:	mov	%eax, (%edi)
	add	$4096, %eax
	add	$8, %edi
	dec	%ecx
	jnz	2b
	mov	$pd_tables, %edi
	mov	$PDE_2M, %eax
	mov	$(2048 / 4), %ecx
3:	.irp k, 0, 8, 16, 24
	mov	%eax, \k(%edi)
	movl	$0, \k+4(%edi)
	add	$0x200000, %eax
	.endr
	add	$32, %edi
	dec	%ecx
	jnz	3b

	mov	%cr4, %eax
	or	$CR4_PAE, %eax
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$EFER_LME, %eax
	wrmsr
	mov	%cr0, %eax
	or	$(CR0_PG | CR0_PE), %eax
	mov	%eax, %cr0
	ljmp	$SEL_CODE64, $long_entry

	.code64
long_entry:
	mov	$SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs
	mov	$boot_stack_top, %rsp
	mov	%esi, %edi
	call	guest_main
4:	cli
	hlt
	jmp	4b

/* ---- interrupt stubs ---- */
	.text
	.macro EXC vec
	.p2align 3
exc_\vec:
	.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq	$0			/* uniform frame: fake error code */
	.endif
	pushq	$\vec
	jmp	exc_common
	.endm

	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC \v
	.endr

exc_common:
	mov	(%rsp), %rdi		/* vector */
	mov	8(%rsp), %rsi		/* error code */
	mov	16(%rsp), %rdx		/* faulting rip */
	and	$-16, %rsp
	call	exception_c
5:	cli
	hlt
	jmp	5b

	.globl timer_stub, irq_stub, spurious_stub
timer_stub:
irq_stub:
	push	%rax
	mov	$LAPIC_EOI, %eax
	movl	$0, (%rax)
	pop	%rax
	iretq
spurious_stub:				/* the spurious vector must not be EOI'd */
	iretq

	.section .rodata
	.p2align 3
	.globl exc_stubs
exc_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\v
	.endr

/* ---- working-set loops: about one instruction per page, since ring 0 is emulated ---- */
	.text
	.globl dirty_pages, zero_pages
/* dirty_pages(u8 *p, u64 n): add 1 to byte 0 of n consecutive 4 KiB pages, ascending. */
dirty_pages:
	cmp	$8, %rsi
	jb	2f
1:	addb	$1, (%rdi)
	addb	$1, 0x1000(%rdi)
	addb	$1, 0x2000(%rdi)
	addb	$1, 0x3000(%rdi)
	addb	$1, 0x4000(%rdi)
	addb	$1, 0x5000(%rdi)
	addb	$1, 0x6000(%rdi)
	addb	$1, 0x7000(%rdi)
	add	$0x8000, %rdi
	sub	$8, %rsi
	cmp	$8, %rsi
	jae	1b
2:	test	%rsi, %rsi
	jz	4f
3:	addb	$1, (%rdi)
	add	$0x1000, %rdi
	dec	%rsi
	jnz	3b
4:	ret

/* zero_pages(u8 *p, u64 n): clear byte 0 of n pages (working-set initialisation). */
zero_pages:
	cmp	$8, %rsi
	jb	2f
1:	movb	$0, (%rdi)
	movb	$0, 0x1000(%rdi)
	movb	$0, 0x2000(%rdi)
	movb	$0, 0x3000(%rdi)
	movb	$0, 0x4000(%rdi)
	movb	$0, 0x5000(%rdi)
	movb	$0, 0x6000(%rdi)
	movb	$0, 0x7000(%rdi)
	add	$0x8000, %rdi
	sub	$8, %rsi
	cmp	$8, %rsi
	jae	1b
2:	test	%rsi, %rsi
	jz	4f
3:	movb	$0, (%rdi)
	add	$0x1000, %rdi
	dec	%rsi
	jnz	3b
4:	ret

/* same_run(const u8 *p, u64 n, u8 v): how many leading pages of n have byte 0 equal to v. */
	.globl same_run
same_run:
	mov	%rdi, %r8
1:	cmp	$8, %rsi
	jb	2f
	cmpb	%dl, (%rdi)
	jne	2f
	cmpb	%dl, 0x1000(%rdi)
	jne	2f
	cmpb	%dl, 0x2000(%rdi)
	jne	2f
	cmpb	%dl, 0x3000(%rdi)
	jne	2f
	cmpb	%dl, 0x4000(%rdi)
	jne	2f
	cmpb	%dl, 0x5000(%rdi)
	jne	2f
	cmpb	%dl, 0x6000(%rdi)
	jne	2f
	cmpb	%dl, 0x7000(%rdi)
	jne	2f
	add	$0x8000, %rdi
	sub	$8, %rsi
	jmp	1b
2:	test	%rsi, %rsi		/* a mismatch in a group of 8 is located page by page */
	jz	3f
	cmpb	%dl, (%rdi)
	jne	3f
	add	$0x1000, %rdi
	dec	%rsi
	jmp	2b
3:	mov	%rdi, %rax
	sub	%r8, %rax
	shr	$12, %rax
	ret

/*
 * map_gib(u64 g): identity-map GiB g (page directory g, PDPT entry g) in 2 MiB pages. Unrolled:
 * under PVM ring 0 costs about 1 us per instruction, and all of 4-64 GiB is 30720 entries.
 */
	.globl map_gib
map_gib:
	mov	%rdi, %rax
	shl	$12, %rax
	lea	pd_tables(%rax), %rsi		/* page directory g */
	mov	%rdi, %rax
	shl	$30, %rax
	or	$PDE_2M, %rax
	mov	$0x200000, %edx
	mov	$(512 / 8), %ecx
	mov	%rsi, %r8
1:	mov	%rax, (%rsi)
	add	%rdx, %rax
	mov	%rax, 8(%rsi)
	add	%rdx, %rax
	mov	%rax, 16(%rsi)
	add	%rdx, %rax
	mov	%rax, 24(%rsi)
	add	%rdx, %rax
	mov	%rax, 32(%rsi)
	add	%rdx, %rax
	mov	%rax, 40(%rsi)
	add	%rdx, %rax
	mov	%rax, 48(%rsi)
	add	%rdx, %rax
	mov	%rax, 56(%rsi)
	add	%rdx, %rax
	add	$64, %rsi
	dec	%ecx
	jnz	1b
	or	$PTE_TABLE, %r8			/* no TLB flush: the entry was not present */
	mov	%r8, pdpt(,%rdi,8)
	ret

/* ---- AP entry, reached from the trampoline in long mode on the shared page tables ---- */
	.globl ap_entry
ap_entry:
	mov	$1, %eax
	lock xadd %eax, ap_stack_next(%rip)
	inc	%eax
	imul	$AP_STACK_SIZE, %eax, %eax
	lea	ap_stacks(%rip), %rsp
	add	%rax, %rsp
	lidt	idtr(%rip)
	lock incl ap_running(%rip)
6:	cli
	hlt
	jmp	6b

/*
 * AP trampoline: copied to TRAMPOLINE_PA; the SIPI vector is TRAMPOLINE_PA >> 12.
 * It runs from the copy, so addresses of its own labels are rebased with TR().
 */
#define TR(x) ((x) - tramp_start + TRAMPOLINE_PA)
	.section .rodata
	.p2align 4
	.globl tramp_start, tramp_end
	.code16
tramp_start:
	cli
	cld
	xor	%ax, %ax
	mov	%ax, %ds
	lgdtl	TR(tramp_gdt_ptr)
	mov	%cr0, %eax
	or	$CR0_PE, %eax
	mov	%eax, %cr0
	ljmpl	$SEL_CODE32, $TR(tramp32)
	.code32
tramp32:
	mov	$SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%cr4, %eax
	or	$CR4_PAE, %eax
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$EFER_LME, %eax
	wrmsr
	mov	%cr0, %eax
	or	$CR0_PG, %eax
	mov	%eax, %cr0
	ljmp	$SEL_CODE64, $TR(tramp64)
	.code64
tramp64:
	mov	$SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$ap_entry, %eax
	jmp	*%rax
	.p2align 3
tramp_gdt_ptr:
	.word	gdt_end - gdt - 1
	.long	gdt
tramp_end:

	.section .data
	.p2align 3
gdt:
	.quad	0
	.quad	0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: flat data */
	.quad	0x00cf9a000000ffff	/* 0x18: flat 32-bit code */
gdt_end:
gdt_ptr:
	.word	gdt_end - gdt - 1
	.quad	gdt

	.section .bss
	.p2align 12
	.globl pml4, pdpt, ap_running
pml4:	.skip	4096
pdpt:	.skip	4096
	.p2align 2
ap_running:	.long	0
ap_stack_next:	.long	0

	/* Fully written before use, so the loader or entry code need not zero them. */
	.section .nozero, "aw", @nobits
	.p2align 12
	.globl pd_tables
pd_tables:	.skip	64 * 4096	/* 64 page directories: 64 GiB in 2 MiB pages */
	.p2align 4
ap_stacks:	.skip	64 * AP_STACK_SIZE	/* the n-th AP to arrive uses slot n */
	.p2align 4
	.skip	16384
boot_stack_top:
