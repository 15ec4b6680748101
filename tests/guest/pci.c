/* pci.c: PCI bus 0 enumeration through ECAM (ACPI MCFG) or ports 0xCF8/0xCFC, BAR assignment, capability walk. */
#include "dev.h"

#define PCI_CFG_ADDR 0xcf8
#define PCI_CFG_DATA 0xcfc
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define CMD_IO 0x1
#define CMD_MEM 0x2
#define CMD_MASTER 0x4
#define STATUS_CAP_LIST 0x10

struct pci_fn pci_fns[PCI_MAX_FNS];
u32 pci_nfns;
static u64 ecam;		/* ECAM address of bus 0, 0 = use the ports */
static u64 mmio_next = PCI_MMIO_START;

/* ---------------- config access ---------------- */
static u64 ecam_addr(u8 slot, u8 fn, u32 off) { return ecam + ((u64)slot << 15) + ((u64)fn << 12) + off; }
static u32 port_addr(u8 slot, u8 fn, u32 off)
{
	return 0x80000000u | ((u32)slot << 11) | ((u32)fn << 8) | (off & 0xfc);
}

static u32 cfg_read32(u8 slot, u8 fn, u32 off)
{
	if (ecam)
		return mmio_read32(ecam_addr(slot, fn, off));
	if (off >= 256)
		return 0xffffffff;
	outl(PCI_CFG_ADDR, port_addr(slot, fn, off));
	return inl(PCI_CFG_DATA);
}

u32 pci_read32(const struct pci_fn *f, u32 off) { return cfg_read32(f->slot, f->fn, off); }

u16 pci_read16(const struct pci_fn *f, u32 off)
{
	if (ecam)
		return mmio_read16(ecam_addr(f->slot, f->fn, off));
	return (u16)(cfg_read32(f->slot, f->fn, off & ~3u) >> ((off & 2) * 8));
}

u8 pci_read8(const struct pci_fn *f, u32 off)
{
	if (ecam)
		return mmio_read8(ecam_addr(f->slot, f->fn, off));
	return (u8)(cfg_read32(f->slot, f->fn, off & ~3u) >> ((off & 3) * 8));
}

void pci_write32(const struct pci_fn *f, u32 off, u32 v)
{
	if (ecam) {
		mmio_write32(ecam_addr(f->slot, f->fn, off), v);
	} else if (off < 256) {
		outl(PCI_CFG_ADDR, port_addr(f->slot, f->fn, off));
		outl(PCI_CFG_DATA, v);
	}
}

/* 16-bit writes, so writing the command register never touches the RW1C status bits next to it. */
void pci_write16(const struct pci_fn *f, u32 off, u16 v)
{
	if (ecam) {
		mmio_write16(ecam_addr(f->slot, f->fn, off), v);
	} else if (off < 256) {
		outl(PCI_CFG_ADDR, port_addr(f->slot, f->fn, off));
		outw((u16)(PCI_CFG_DATA + (off & 2)), v);
	}
}

/* ---------------- BARs ---------------- */
u64 pci_bar(const struct pci_fn *f, int bar)
{
	if (bar < 0 || bar > 5 || f->hdr != 0)
		return 0;
	u32 lo = pci_read32(f, PCI_BAR0 + 4 * (u32)bar);
	if (lo & 1)
		return 0;
	u64 a = lo & ~0xfu;
	if (((lo >> 1) & 3) == 2 && bar < 5)
		a |= (u64)pci_read32(f, PCI_BAR0 + 4 * (u32)bar + 4) << 32;
	return a;
}

/* Size of memory BAR b (decoding off meanwhile, contents restored); 0 = unimplemented or I/O. */
static u64 bar_size(const struct pci_fn *f, int b, int *is64)
{
	u32 off = PCI_BAR0 + 4 * (u32)b;
	u32 lo = pci_read32(f, off);
	*is64 = !(lo & 1) && ((lo >> 1) & 3) == 2 && b < 5;
	if (lo & 1)
		return 0;
	u32 hi = *is64 ? pci_read32(f, off + 4) : 0;
	u16 cmd = pci_read16(f, PCI_COMMAND);
	pci_write16(f, PCI_COMMAND, (u16)(cmd & ~(CMD_MEM | CMD_IO)));
	pci_write32(f, off, 0xffffffff);
	u32 mlo = pci_read32(f, off);
	u32 mhi = 0xffffffff;
	if (*is64) {
		pci_write32(f, off + 4, 0xffffffff);
		mhi = pci_read32(f, off + 4);
		pci_write32(f, off + 4, hi);
	}
	pci_write32(f, off, lo);
	pci_write16(f, PCI_COMMAND, cmd);
	if ((mlo & ~0xfu) == 0)
		return 0;
	return ~(((u64)mhi << 32) | (mlo & ~0xfu)) + 1;
}

/*
 * Memory BARs still at 0 (no firmware ran) get an address in [PCI_MMIO_START, PCI_MMIO_END),
 * naturally aligned, 64-bit ones too (upper half 0); then memory decoding and bus mastering are
 * enabled. Functions whose memory decoding is already on (firmware configured them) are left alone.
 */
static void assign_bars(const struct pci_fn *f)
{
	int assigned = 0, is64;
	if (pci_read16(f, PCI_COMMAND) & CMD_MEM)
		return;
	for (int b = 0; b < 6; b++) {
		u32 off = PCI_BAR0 + 4 * (u32)b;
		u32 lo = pci_read32(f, off);
		u64 cur = pci_bar(f, b);
		if ((lo & 1) || cur) {
			b += !(lo & 1) && ((lo >> 1) & 3) == 2;
			continue;
		}
		u64 size = bar_size(f, b, &is64);
		if (size == 0) {
			b += is64;
			continue;
		}
		u64 base = (mmio_next + size - 1) & ~(size - 1);
		if (base + size > PCI_MMIO_END || base + size < base) {
			out_str("PCI ");
			out_bdf(f);
			out_str(" ERROR no room for bar ");
			out_dec((u64)b);
			out_end();
			b += is64;
			continue;
		}
		mmio_next = base + size;
		pci_write32(f, off, (u32)base | (lo & 0xf));
		if (is64)
			pci_write32(f, off + 4, 0);
		assigned = 1;
		b += is64;
	}
	if (assigned) {
		u16 cmd = pci_read16(f, PCI_COMMAND);
		pci_write16(f, PCI_COMMAND, (u16)(cmd | CMD_MEM | CMD_MASTER));
	}
}

/* Keeps the allocator above every BAR that firmware already placed in the window. */
static void note_existing_bars(const struct pci_fn *f)
{
	int is64;
	for (int b = 0; b < 6; b++) {
		u64 a = pci_bar(f, b);
		u64 size = a ? bar_size(f, b, &is64) : 0;
		if (!a) {
			u32 lo = pci_read32(f, PCI_BAR0 + 4 * (u32)b);
			is64 = !(lo & 1) && ((lo >> 1) & 3) == 2;
		}
		b += is64;
		if (a >= PCI_MMIO_START && a < PCI_MMIO_END && a + size > mmio_next)
			mmio_next = a + size;
	}
}

/* Whether some implemented memory BAR is still at 0. */
static int any_unassigned(void)
{
	int is64;
	for (u32 i = 0; i < pci_nfns; i++) {
		const struct pci_fn *f = &pci_fns[i];
		if (f->hdr != 0 || (pci_read16(f, PCI_COMMAND) & CMD_MEM))
			continue; /* firmware enabled it: its BARs are as firmware wants them */
		for (int b = 0; b < 6; b++) {
			u32 lo = pci_read32(f, PCI_BAR0 + 4 * (u32)b);
			if (lo & 1)
				continue;
			if (pci_bar(f, b)) {
				b += ((lo >> 1) & 3) == 2;
				continue;
			}
			if (bar_size(f, b, &is64))
				return 1;
			b += is64;
		}
	}
	return 0;
}

/* ---------------- capabilities ---------------- */
u32 pci_next_cap(const struct pci_fn *f, u32 prev, u8 id)
{
	u32 p;
	if (prev == 0) {
		if (!(pci_read16(f, PCI_STATUS) & STATUS_CAP_LIST))
			return 0;
		p = pci_read8(f, PCI_CAP_PTR) & 0xfc;
	} else {
		p = pci_read8(f, prev + 1) & 0xfc;
	}
	for (int guard = 0; p >= 0x40 && guard < 48; guard++) {
		if (pci_read8(f, p) == id)
			return p;
		p = pci_read8(f, p + 1) & 0xfc;
	}
	return 0;
}

/* ---------------- enumeration ---------------- */
void out_bdf(const struct pci_fn *f)
{
	out_str("00:");
	out_hexn(f->slot, 2);
	out_str(".");
	out_hexn(f->fn, 1);
}

static void find_ecam(void)
{
	const u8 *m = acpi_table("MCFG");
	if (!m)
		return;
	u32 len = *(const u32 *)(m + 4);
	for (u32 off = 44; off + 16 <= len; off += 16) {
		u64 base = *(const u64 *)(m + off);
		u16 seg = *(const u16 *)(m + off + 8);
		u8 start = m[off + 10];
		if (seg == 0 && start == 0 && base && ensure_mapped(base, 1UL << 20)) {
			ecam = base;
			return;
		}
	}
}

static void add_fn(u8 slot, u8 fn, u32 id)
{
	if (pci_nfns >= PCI_MAX_FNS)
		return;
	struct pci_fn *f = &pci_fns[pci_nfns++];
	f->slot = slot;
	f->fn = fn;
	f->vendor = (u16)id;
	f->device = (u16)(id >> 16);
	f->class = pci_read32(f, 0x08) >> 8;
	f->hdr = pci_read8(f, PCI_HEADER_TYPE) & 0x7f;
}

void pci_init(void)
{
	find_ecam();
	for (u8 slot = 0; slot < 32; slot++) {
		u32 id = cfg_read32(slot, 0, 0);
		if ((u16)id == 0xffff || (u16)id == 0)
			continue;
		add_fn(slot, 0, id);
		if (!(cfg_read32(slot, 0, PCI_HEADER_TYPE & ~3u) >> 16 & 0x80))
			continue; /* not multifunction */
		for (u8 fn = 1; fn < 8; fn++) {
			id = cfg_read32(slot, fn, 0);
			if ((u16)id != 0xffff && (u16)id != 0)
				add_fn(slot, fn, id);
		}
	}
	for (u32 i = 0; i < pci_nfns; i++) {
		struct pci_fn *f = &pci_fns[i];
		out_str("PCI ");
		out_bdf(f);
		out_str(" ");
		out_hexn(f->vendor, 4);
		out_str(":");
		out_hexn(f->device, 4);
		out_str(" class=");
		out_hexn(f->class, 6);
		out_end();
	}
	if (!any_unassigned())
		return; /* firmware did it all: leave the BARs alone */
	for (u32 i = 0; i < pci_nfns; i++)
		if (pci_fns[i].hdr == 0)
			note_existing_bars(&pci_fns[i]);
	for (u32 i = 0; i < pci_nfns; i++)
		if (pci_fns[i].hdr == 0)
			assign_bars(&pci_fns[i]);
}
