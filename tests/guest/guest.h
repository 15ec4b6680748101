/* guest.h: shared types, constants, CPU helpers and cross-file declarations of the tsvirt test guest. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;
typedef signed char s8;
typedef unsigned long size_t;

#define NULL ((void *)0)
#define MIB (1024UL * 1024UL)
#define PAGE_SIZE 4096UL
#define NS_PER_MS 1000000UL
#define NS_PER_S 1000000000UL

/* Must match head.S. */
#define TRAMPOLINE_PA 0x8000UL
#define MAX_CPUS 64
#define AP_STACK_SIZE 4096UL
#define TIMER_VECTOR 0x40
#define SPURIOUS_VECTOR 0xff
#define LAPIC_BASE 0xfee00000UL

#define MAPPED_LIMIT (64UL << 30)
#define MAX_E820 128
#define CMDLINE_MAX 2048

struct e820_entry {
	u64 addr;
	u64 size;
	u32 type;
	u32 reserved;
};

/* --- CPU helpers: only instructions KVM's instruction emulator knows (PVM emulates ring 0). --- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	/* No lfence: the emulator rejects it, and the pvclock version loop tolerates the reorder. */
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((u64)hi << 32) | lo;
}
static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}
static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }
static inline void cli(void) { __asm__ volatile("cli" : : : "memory"); }
/* sti's one-instruction interrupt shadow makes "sti; hlt" race-free against an already pending tick. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" : : : "memory"); }
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }

/* lib.c */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int parse_u64(const char *s, size_t n, u64 *out);
void out_str(const char *s);
void out_strn(const char *s, size_t n);
void out_dec(u64 v);
void out_sdec(s64 v);
void out_hex(u64 v);
void out_hexn(u64 v, int digits);	/* lowercase, zero-padded, no 0x */
void out_end(void);
void say(const char *s);

/* hw.c */
void uart_init(void);
void uart_write(const char *s, size_t n);
int uart_getc(void);
void idt_init(void);
void idt_set_gate(int v, void (*fn)(void));
void pic_disable(void);
void map_high_memory(void);
int ensure_mapped(u64 pa, u64 len);
int clock_init(void); /* 1 = kvmclock, 0 = tsc */
u64 clock_ns(void);
void delay_ns(u64 ns);
void lapic_init(void);
void lapic_calibrate(void);
void timer_arm(u64 ns);
void sleep_until(u64 deadline_ns);
void smp_init(u64 rsdp_pa);
u32 cpus_found(void);
u32 cpus_started(void);
const u8 *acpi_table(const char *sig);	/* after smp_init; NULL if absent */
u32 lapic_id(void);
void poweroff(void);
void reset(void);
void halt_forever(void) __attribute__((noreturn));

/* head.S */
extern char tramp_start[], tramp_end[];
extern char __image_end[];
extern volatile u32 ap_running;
extern u64 pml4[], pdpt[];
extern u64 pd_tables[];
void map_gib(u64 g);
void dirty_pages(u8 *p, u64 n);
void zero_pages(u8 *p, u64 n);
u64 same_run(const u8 *p, u64 n, u8 v);
extern u64 exc_stubs[32];
void timer_stub(void);
void irq_stub(void);
void spurious_stub(void);

#endif
