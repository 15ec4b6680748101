/* irq.S: MSI-X interrupt stubs (count per vector, EOI) and the unrolled disk sector pattern fill/check loops. */

#define LAPIC_EOI	0xfee000b0
#define MSIX_VEC_COUNT	32

	.text
/* One stub per vector 0x50 + n: count the interrupt, EOI, return (the main loop does the work). */
	.macro MSIX n
	.p2align 3
msix_stub_\n:
	lock incl msix_counts+4*\n(%rip)
	push	%rax
	mov	$LAPIC_EOI, %eax
	movl	$0, (%rax)
	pop	%rax
	iretq
	.endm

	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	MSIX \n
	.endr

	.section .rodata
	.p2align 3
	.globl msix_stubs
msix_stubs:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad msix_stub_\n
	.endr

	.section .bss
	.p2align 2
	.globl msix_counts
msix_counts:	.skip	4 * MSIX_VEC_COUNT

/*
 * Sector pattern: 64-bit little-endian word i (0..63) of sector s is base ^ (s * 64 + i), with
 * base = seed * 0x100000001. Since i < 64, s * 64 + i = (s << 6) | i, so within a sector the words
 * are c ^ 0, c ^ 1, ... with c = base ^ (s << 6): each next word is one xor away (2 instructions per
 * word, which matters when every instruction is emulated).
 */
	.text
	.globl pat_fill, pat_check
/* pat_fill(u64 *dst, u64 base, u64 sector, u64 nsect) */
pat_fill:
	test	%rcx, %rcx
	jz	2f
1:	mov	%rdx, %rax
	shl	$6, %rax
	xor	%rsi, %rax
	.set i, 0
	.rept 64
	mov	%rax, 8*i(%rdi)
	.if i < 63
	xor	$(i ^ (i + 1)), %rax
	.endif
	.set i, i + 1
	.endr
	add	$512, %rdi
	inc	%rdx
	dec	%rcx
	jnz	1b
2:	ret

/* pat_check(const u64 *src, u64 base, u64 sector, u64 nsect): how many sectors match before the first that does not. */
pat_check:
	mov	%rcx, %r8
	test	%rcx, %rcx
	jz	3f
1:	mov	%rdx, %rax
	shl	$6, %rax
	xor	%rsi, %rax
	.set i, 0
	.rept 64
	cmp	%rax, 8*i(%rdi)
	jne	3f
	.if i < 63
	xor	$(i ^ (i + 1)), %rax
	.endif
	.set i, i + 1
	.endr
	add	$512, %rdi
	inc	%rdx
	dec	%rcx
	jnz	1b
3:	mov	%r8, %rax
	sub	%rcx, %rax
	ret

/*
 * DMA arena for virtqueues, request headers and data buffers (dma_alloc in virtio.c). In .nozero:
 * the loader neither copies nor clears it; the drivers initialise what they use.
 */
	.section .nozero, "aw", @nobits
	.p2align 12
	.globl dma_arena, dma_arena_end
dma_arena:	.skip	3 * 1024 * 1024
dma_arena_end:
