/* hw.c: the guest's devices: COM1, IDT, PIC, page tables above 4 GiB, clocks, LAPIC timer, ACPI/MP CPU discovery, AP start, power. */
#include "guest.h"

/* ---------------- COM1 ---------------- */
#define COM1 0x3f8
#define LSR (COM1 + 5)
#define LSR_DR 0x01
#define LSR_THRE 0x20

void uart_init(void)
{
	outb(COM1 + 1, 0x00);	/* no UART interrupts: the guest polls */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* divisor 1 = 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0xc7);	/* FIFO on, both cleared, 14-byte trigger */
	outb(COM1 + 4, 0x03);	/* DTR | RTS */
}

/* With the FIFO on, THRE means the 16-byte FIFO is empty, so a burst of 16 is safe. */
void uart_write(const char *s, size_t n)
{
	while (n) {
		while (!(inb(LSR) & LSR_THRE))
			;
		size_t k = n < 16 ? n : 16;
		for (size_t i = 0; i < k; i++)
			outb(COM1, (u8)s[i]);
		s += k;
		n -= k;
	}
}

int uart_getc(void)
{
	if (!(inb(LSR) & LSR_DR))
		return -1;
	return inb(COM1);
}

/* ---------------- IDT ---------------- */
struct idt_gate {
	u16 off0, sel;
	u8 ist, type;
	u16 off1;
	u32 off2, zero;
} __attribute__((packed));

struct idt_ptr {
	u16 limit;
	u64 base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
struct idt_ptr idtr; /* also loaded by the APs in head.S */

static void set_gate(int v, void (*fn)(void))
{
	u64 a = (u64)fn;
	idt[v].off0 = (u16)a;
	idt[v].sel = 0x08;
	idt[v].ist = 0;
	idt[v].type = 0x8e; /* present, DPL 0, 64-bit interrupt gate (IF cleared on entry) */
	idt[v].off1 = (u16)(a >> 16);
	idt[v].off2 = (u32)(a >> 32);
	idt[v].zero = 0;
}

void idt_set_gate(int v, void (*fn)(void)) { set_gate(v, fn); }

void idt_init(void)
{
	for (int v = 0; v < 32; v++)
		set_gate(v, (void (*)(void))exc_stubs[v]);
	for (int v = 32; v < 256; v++)
		set_gate(v, irq_stub);
	set_gate(TIMER_VECTOR, timer_stub);
	set_gate(SPURIOUS_VECTOR, spurious_stub);
	idtr.limit = sizeof(idt) - 1;
	idtr.base = (u64)idt;
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void exception_c(u64 vec, u64 err, u64 rip)
{
	(void)err;
	out_str("EXCEPTION vec=");
	out_dec(vec);
	out_str(" rip=");
	out_hex(rip);
	out_end();
	halt_forever();
}

/* Firmware (SeaBIOS) leaves PIT IRQ0 unmasked on vector 8, which would look like a #DF. */
void pic_disable(void)
{
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 0x20);
	outb(0xa1, 0x28);
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

/* ---------------- page tables ---------------- */
/*
 * The entry code maps 0-4 GiB; each further GiB up to 64 GiB is mapped when first needed, and
 * map_high_memory() completes the map after READY, where its ~50 ms delay nothing.
 */
int ensure_mapped(u64 pa, u64 len)
{
	if (pa >= MAPPED_LIMIT || len > MAPPED_LIMIT - pa)
		return 0;
	u64 last = len ? (pa + len - 1) >> 30 : pa >> 30;
	for (u64 g = pa >> 30; g <= last; g++)
		if (!pdpt[g])
			map_gib(g);
	return 1;
}

void map_high_memory(void) { ensure_mapped(4UL << 30, MAPPED_LIMIT - (4UL << 30)); }

/* ---------------- clocks ---------------- */
struct pvclock {
	u32 version;
	u32 pad0;
	u64 tsc_timestamp;
	u64 system_time;
	u32 tsc_to_system_mul;
	s8 tsc_shift;
	u8 flags;
	u8 pad[2];
} __attribute__((packed));

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

static volatile struct pvclock pvclock __attribute__((aligned(64)));
static int use_kvmclock;
static u64 tsc_mult;	/* ns = tsc * tsc_mult >> 32 */
static u64 last_ns;	/* only the BSP reads the clock: keeps it monotonic */

static u64 kvmclock_read(void)
{
	u32 v;
	u64 ns;
	do {
		v = pvclock.version;
		barrier();
		u64 delta = rdtsc() - pvclock.tsc_timestamp;
		s8 shift = pvclock.tsc_shift;
		if (shift < 0)
			delta >>= -shift;
		else
			delta <<= shift;
		ns = pvclock.system_time +
		     (u64)(((unsigned __int128)delta * pvclock.tsc_to_system_mul) >> 32);
		barrier();
	} while ((v & 1) || v != pvclock.version);
	return ns;
}

u64 clock_ns(void)
{
	u64 ns = use_kvmclock ? kvmclock_read()
			      : (u64)(((unsigned __int128)rdtsc() * tsc_mult) >> 32);
	if (ns < last_ns)
		ns = last_ns;
	last_ns = ns;
	return ns;
}

void delay_ns(u64 ns)
{
	u64 end = clock_ns() + ns;
	while (clock_ns() < end)
		;
}

/* PIT channel 2 one-shot of 10 ms (gate on port 0x61, speaker off), polled on OUT2. */
static u64 pit_tsc_khz(void)
{
	outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01));
	outb(0x43, 0xb0);
	outb(0x42, 11932 & 0xff);
	outb(0x42, 11932 >> 8);
	u64 t0 = rdtsc();
	for (u32 spins = 0; !(inb(0x61) & 0x20); spins++)
		if (spins > 100000) /* no PIT behind port 0x61 */
			return 0;
	u64 t1 = rdtsc();
	return (t1 - t0) / 10;
}

int clock_init(void)
{
	u32 a, b, c, d;
	u32 max_hv = 0;
	cpuid(0x40000000, &a, &b, &c, &d);
	int is_kvm = b == 0x4b4d564b && c == 0x564b4d56 && d == 0x0000004d; /* "KVMKVMKVM\0\0\0" */
	if (is_kvm || a >= 0x40000010)
		max_hv = a;
	if (is_kvm && max_hv >= 0x40000001) {
		cpuid(0x40000001, &a, &b, &c, &d);
		if (a & KVM_FEATURE_CLOCKSOURCE2) {
			wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (u64)&pvclock | 1);
			cpuid(0, &a, &b, &c, &d); /* an exit, so the host has filled the struct */
			if (pvclock.version != 0 && pvclock.tsc_to_system_mul != 0) {
				use_kvmclock = 1;
				return 1;
			}
			wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
		}
	}
	u64 khz = 0;
	if (max_hv >= 0x40000010) {
		cpuid(0x40000010, &a, &b, &c, &d);
		khz = a;
	}
	if (khz == 0)
		khz = pit_tsc_khz();
	if (khz == 0)
		khz = 1000000; /* nothing worked: assume 1 GHz rather than divide by zero */
	tsc_mult = (1000000UL << 32) / khz;
	return 0;
}

/* ---------------- LAPIC ---------------- */
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_MASKED (1u << 16)
#define MSR_APIC_BASE 0x1b

static u64 lapic_ticks_per_ms;

static u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }

u32 lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

static u64 calib_t0;

/* Starts the timer calibration; lapic_calibrate() ends it, so the AP start-up wait overlaps it. */
void lapic_init(void)
{
	u64 base = rdmsr(MSR_APIC_BASE);
	if (!(base & (1u << 11)))
		wrmsr(MSR_APIC_BASE, base | (1u << 11));
	lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_write(LAPIC_TIMER_DIV, 0x3); /* divide by 16 */
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffff);
	calib_t0 = clock_ns();
}

/* Counts over at least 10 ms of guest time, so a host preemption of a few ms skews it little. */
void lapic_calibrate(void)
{
	u64 t1;
	do
		t1 = clock_ns();
	while (t1 - calib_t0 < 10 * NS_PER_MS);
	u32 cur = lapic_read(LAPIC_TIMER_CUR);
	lapic_write(LAPIC_TIMER_INIT, 0);
	lapic_ticks_per_ms = (u64)(0xffffffffu - cur) * NS_PER_MS / (t1 - calib_t0);
	if (lapic_ticks_per_ms == 0)
		lapic_ticks_per_ms = 1;
	lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR); /* one-shot, unmasked */
}

void timer_arm(u64 ns)
{
	u64 ticks = ns * lapic_ticks_per_ms / NS_PER_MS;
	if (ticks == 0)
		ticks = 1;
	if (ticks > 0xffffffffu)
		ticks = 0xffffffffu;
	lapic_write(LAPIC_TIMER_INIT, (u32)ticks);
}

/* Interrupts stay off outside hlt, so the only interrupt handlers ever run are EOI stubs. */
void sleep_until(u64 deadline)
{
	u64 now = clock_ns();
	if (now >= deadline)
		return;
	timer_arm(deadline - now);
	sti_hlt();
	cli();
}

/* ---------------- CPU discovery and AP start ---------------- */
static u32 n_found;
static u8 apic_ids[256];

static int checksum_ok(const u8 *p, u64 n)
{
	u8 s = 0;
	for (u64 i = 0; i < n; i++)
		s += p[i];
	return s == 0;
}

static u64 find_rsdp(void)
{
	for (u64 a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp((void *)a, "RSD PTR ", 8) && checksum_ok((u8 *)a, 20))
			return a;
	return 0;
}

/* The first table with signature sig in the XSDT (or RSDT), mapped in full; NULL if absent. */
static const u8 *find_table(u64 rsdp, const char *sig)
{
	const u8 *r = (const u8 *)rsdp;
	if (!ensure_mapped(rsdp, 36) || memcmp(r, "RSD PTR ", 8))
		return NULL;
	u64 root;
	int esz;
	if (r[15] >= 2 && *(const u64 *)(r + 24) != 0) {
		root = *(const u64 *)(r + 24);
		esz = 8;
	} else {
		root = *(const u32 *)(r + 16);
		esz = 4;
	}
	if (root == 0 || !ensure_mapped(root, 36))
		return NULL;
	const u8 *t = (const u8 *)root;
	u32 len = *(const u32 *)(t + 4);
	if (len < 36 || len > 65536 || !ensure_mapped(root, len))
		return NULL;
	for (u32 off = 36; off + esz <= len; off += esz) {
		u64 a = esz == 8 ? *(const u64 *)(t + off) : *(const u32 *)(t + off);
		if (a == 0 || !ensure_mapped(a, 36))
			continue;
		if (!memcmp((const void *)a, sig, 4) && ensure_mapped(a, *(const u32 *)(a + 4)))
			return (const u8 *)a;
	}
	return NULL;
}

static const u8 *find_madt(u64 rsdp) { return find_table(rsdp, "APIC"); }

static u64 acpi_rsdp; /* as smp_init found it (start_info or the BIOS-area scan) */

const u8 *acpi_table(const char *sig) { return acpi_rsdp ? find_table(acpi_rsdp, sig) : NULL; }

static void add_cpu(u32 apic_id)
{
	if (n_found < 256)
		apic_ids[n_found] = (u8)apic_id;
	n_found++;
}

static int scan_madt(const u8 *m)
{
	u32 len = *(const u32 *)(m + 4);
	if (len > 65536)
		return 0;
	for (u32 off = 44; off + 2 <= len;) {
		u8 type = m[off], elen = m[off + 1];
		if (elen < 2)
			break;
		/* Type 0, flags bit 0 = enabled; online-capable-only entries are not running CPUs. */
		if (type == 0 && elen >= 8 && (*(const u32 *)(m + off + 4) & 1))
			add_cpu(m[off + 3]);
		off += elen;
	}
	return 1;
}

static int scan_mptable(void)
{
	for (u64 a = 0xf0000; a < 0x100000; a += 16) {
		if (memcmp((void *)a, "_MP_", 4) || !checksum_ok((u8 *)a, 16))
			continue;
		u64 cfg = *(const u32 *)(a + 4);
		if (cfg == 0 || memcmp((void *)cfg, "PCMP", 4))
			return 0;
		const u8 *c = (const u8 *)cfg;
		u16 count = *(const u16 *)(c + 34);
		const u8 *e = c + 44;
		for (u16 i = 0; i < count; i++) {
			if (e[0] == 0) {
				if (e[3] & 1)
					add_cpu(e[1]);
				e += 20;
			} else {
				e += 8;
			}
		}
		return 1;
	}
	return 0;
}

static void ipi(u32 apic_id, u32 lo)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, lo);
	for (u32 spins = 0; spins < 100000; spins++) /* delivery pending; bounded for odd VMMs */
		if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
			break;
}

void smp_init(u64 rsdp)
{
	if (rsdp == 0)
		rsdp = find_rsdp();
	acpi_rsdp = rsdp;
	const u8 *madt = rsdp ? find_madt(rsdp) : NULL;
	if (!(madt && scan_madt(madt)) && !scan_mptable())
		n_found = 0;
	if (n_found == 0)
		return;

	u32 self = lapic_read(LAPIC_ID) >> 24;
	u32 limit = n_found < 256 ? n_found : 256;
	memcpy((void *)TRAMPOLINE_PA, tramp_start, (size_t)(tramp_end - tramp_start));

	/* INIT to all, one 10 ms wait, then SIPI twice: the second SIPI is ignored by an AP already running. */
	u32 sent = 0;
	for (u32 i = 0; i < limit; i++) {
		if (apic_ids[i] == self || sent >= MAX_CPUS - 1)
			continue;
		ipi(apic_ids[i], 0x4500); /* INIT, level assert */
		sent++;
	}
	if (sent == 0)
		return;
	delay_ns(10 * NS_PER_MS);
	for (int round = 0; round < 2; round++) {
		u32 s = 0;
		for (u32 i = 0; i < limit; i++) {
			if (apic_ids[i] == self || s >= MAX_CPUS - 1)
				continue;
			ipi(apic_ids[i], 0x4600 | (TRAMPOLINE_PA >> 12)); /* STARTUP */
			s++;
		}
		delay_ns(200 * 1000);
	}
	u64 end = clock_ns() + 500 * NS_PER_MS;
	while (ap_running < sent && clock_ns() < end)
		;
}

u32 cpus_found(void) { return n_found; }
u32 cpus_started(void) { return 1 + ap_running; }

/* ---------------- power ---------------- */
void poweroff(void)
{
	outw(0x604, 0x2000); /* ICH9 PM1a_CNT (PM base 0x600): SLP_EN, SLP_TYP 0 = S5 on q35 */
}

void reset(void)
{
	outb(0x64, 0xfe); /* i8042: pulse the reset line */
	delay_ns(100 * NS_PER_MS);
	outb(0xcf9, 0x06); /* reset control register: full reset */
}
