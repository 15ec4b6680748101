/* virtio.c: virtio-pci modern transport (capabilities, status, features, MSI-X), split virtqueues, device dispatch. */
#include "dev.h"

/* struct virtio_pci_common_cfg offsets */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX_CONFIG 0x10
#define CC_NUM_QUEUES 0x12
#define CC_STATUS 0x14
#define CC_CFG_GEN 0x15
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE 0x18
#define CC_Q_MSIX 0x1a
#define CC_Q_ENABLE 0x1c
#define CC_Q_NOFF 0x1e
#define CC_Q_DESC 0x20
#define CC_Q_DRIVER 0x28
#define CC_Q_DEVICE 0x30

#define ST_ACK 0x01
#define ST_DRIVER 0x02
#define ST_DRIVER_OK 0x04
#define ST_FEATURES_OK 0x08
#define ST_FAILED 0x80

#define PCI_CAP_VENDOR 0x09
#define PCI_CAP_MSIX 0x11
#define VIRTIO_NO_VECTOR 0xffff
#define VIRTIO_VENDOR 0x1af4

struct vdev vdevs[VDEV_MAX];
u32 n_vdevs;
int virtio_event_idx = 1;

/* ---------------- DMA arena (irq.S: in .nozero, so the image loader never copies or clears it) ---------------- */
extern u8 dma_arena[], dma_arena_end[];
static u64 arena_next;

static void zero64(void *p, u64 bytes)
{
	u64 n = bytes / 8;
	__asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(0UL) : "memory");
}

void *dma_alloc(u64 bytes, int zero)
{
	u64 align = bytes >= PAGE_SIZE ? PAGE_SIZE : 64;
	if (arena_next == 0)
		arena_next = (u64)dma_arena;
	u64 a = (arena_next + align - 1) & ~(align - 1);
	bytes = (bytes + 63) & ~63UL;
	if (a + bytes > (u64)dma_arena_end)
		return NULL;
	arena_next = a + bytes;
	if (zero)
		zero64((void *)a, bytes);
	return (void *)a;
}

/* ---------------- transport ---------------- */
static u8 status_get(struct vdev *d) { return mmio_read8(d->common + CC_STATUS); }
static void status_set(struct vdev *d, u8 s) { mmio_write8(d->common + CC_STATUS, s); }

int vdev_has(const struct vdev *d, int bit) { return (d->features >> bit) & 1; }

static const char *type_name(int t) { return t == VT_NET ? "net" : t == VT_BLK ? "blk" : "?"; }

void vdev_fail(struct vdev *d, const char *why)
{
	if (d->common)
		status_set(d, (u8)(status_get(d) | ST_FAILED));
	out_str("VIRTIO ");
	out_bdf(d->pci);
	out_str(" ");
	out_str(type_name(d->type));
	out_str(" ERROR ");
	out_str(why);
	out_end();
}

static u8 next_vec = MSIX_VEC_BASE;

/* MSI-X table entries: one per vector the device gets; all aimed at the BSP, edge, fixed delivery. */
static int msix_setup(struct vdev *d, int nvec, int *first_vec)
{
	const struct pci_fn *f = d->pci;
	u32 cap = pci_next_cap(f, 0, PCI_CAP_MSIX);
	if (!cap)
		return 0;
	u16 ctl = pci_read16(f, cap + 2);
	u32 tsize = (ctl & 0x7ffu) + 1;
	if ((u32)nvec > tsize)
		nvec = 1; /* too few entries: config and all queues share entry 0 */
	if (next_vec + nvec > MSIX_VEC_BASE + MSIX_VEC_COUNT)
		return 0;
	u32 t = pci_read32(f, cap + 4);
	u64 bar = pci_bar(f, (int)(t & 7));
	if (!bar)
		return 0;
	u64 table = bar + (t & ~7u);
	if (!ensure_mapped(table, tsize * 16UL))
		return 0;
	pci_write16(f, cap + 2, (u16)(ctl | 0xc000)); /* enable + function mask while programming */
	u32 dest = lapic_id();
	for (int i = 0; i < nvec; i++) {
		u64 e = table + 16UL * (u64)i;
		mmio_write32(e + 0, 0xfee00000u | (dest << 12));
		mmio_write32(e + 4, 0);
		mmio_write32(e + 8, (u32)(next_vec + i));
		mmio_write32(e + 12, 0); /* unmasked */
	}
	pci_write16(f, cap + 2, (u16)((ctl | 0x8000) & ~0x4000));
	*first_vec = next_vec;
	next_vec = (u8)(next_vec + nvec);
	return nvec;
}

static int vec_first[VDEV_MAX], vec_n[VDEV_MAX];

static int dev_slot(const struct vdev *d) { return (int)(d - vdevs); }

/* Interrupts taken by the device's vectors (config and queues). */
u32 vdev_irqs(const struct vdev *d)
{
	u32 s = 0;
	int i = dev_slot(d);
	for (int v = 0; v < vec_n[i]; v++)
		s += msix_counts[vec_first[i] - MSIX_VEC_BASE + v];
	return s;
}

/* MSI-X table entry for queue qi (entry 0 is configuration changes), or NO_VECTOR. */
static u16 queue_entry(const struct vdev *d, u16 qi)
{
	int i = dev_slot(d);
	if (!d->msix)
		return VIRTIO_NO_VECTOR;
	return vec_n[i] == 1 ? 0 : (u16)(qi + 1);
}

int vdev_begin(struct vdev *d, u64 wanted, u64 *offered)
{
	status_set(d, 0);
	for (int i = 0; i < 1000000 && status_get(d) != 0; i++)
		;
	status_set(d, ST_ACK);
	status_set(d, ST_ACK | ST_DRIVER);
	mmio_write32(d->common + CC_DFSELECT, 0);
	u64 f = mmio_read32(d->common + CC_DF);
	mmio_write32(d->common + CC_DFSELECT, 1);
	f |= (u64)mmio_read32(d->common + CC_DF) << 32;
	*offered = f;
	if (!((f >> VIRTIO_F_VERSION_1) & 1)) {
		vdev_fail(d, "no VERSION_1");
		return 0;
	}
	wanted |= (1UL << VIRTIO_F_VERSION_1) | (1UL << VIRTIO_F_ACCESS_PLATFORM);
	if (virtio_event_idx)
		wanted |= 1UL << VIRTIO_F_RING_EVENT_IDX;
	d->features = f & wanted;
	if (d->type == VT_NET && !((d->features >> 17) & 1))
		d->features &= ~(1UL << 21); /* VIRTIO_NET_F_GUEST_ANNOUNCE needs VIRTIO_NET_F_CTRL_VQ */
	mmio_write32(d->common + CC_GFSELECT, 0);
	mmio_write32(d->common + CC_GF, (u32)d->features);
	mmio_write32(d->common + CC_GFSELECT, 1);
	mmio_write32(d->common + CC_GF, (u32)(d->features >> 32));
	status_set(d, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	if (!(status_get(d) & ST_FEATURES_OK)) {
		vdev_fail(d, "FEATURES_OK not accepted");
		return 0;
	}
	return 1;
}

/* After the driver has settled d->nq: MSI-X config on entry 0, queue i on entry i + 1; else one shared entry; else polling. */
int vdev_setup_irqs(struct vdev *d)
{
	u16 nq = mmio_read16(d->common + CC_NUM_QUEUES);
	if (nq < d->nq) {
		vdev_fail(d, "too few queues");
		return 0;
	}
	int slot = dev_slot(d), first = 0;
	int n = msix_setup(d, d->nq + 1, &first);
	if (n > 0) {
		vec_first[slot] = first;
		vec_n[slot] = n;
		d->msix = 1;
		mmio_write16(d->common + CC_MSIX_CONFIG, 0);
		if (mmio_read16(d->common + CC_MSIX_CONFIG) == VIRTIO_NO_VECTOR) {
			d->msix = 0; /* the device could not take it: poll */
		} else {
			d->cfg_vec = first;
		}
	}
	return 1;
}

/* Split queue qi: descriptors in one page, avail ring at 0 and used ring at 1024 of a second, zeroed page. */
struct vq *vdev_queue(struct vdev *d, u16 qi)
{
	mmio_write16(d->common + CC_Q_SELECT, qi);
	u16 max = mmio_read16(d->common + CC_Q_SIZE);
	if (max == 0)
		return NULL;
	u16 size = max < VQ_MAX ? max : VQ_MAX;
	while (size & (size - 1))
		size &= (u16)(size - 1);
	struct vq *q = dma_alloc(sizeof(struct vq), 0);
	void *desc = dma_alloc(PAGE_SIZE, 0);
	u8 *rings = dma_alloc(PAGE_SIZE, 1);
	if (!q || !desc || !rings)
		return NULL;
	q->size = size;
	q->mask = (u16)(size - 1);
	q->index = qi;
	q->desc = desc;
	q->avail = (volatile u16 *)rings;
	q->used = (volatile u32 *)(rings + 1024);
	q->avail_idx = q->notified_idx = q->last_used = 0;
	q->nfree = 0;
	q->vec = -1;
	mmio_write16(d->common + CC_Q_SIZE, size);
	mmio_write32(d->common + CC_Q_DESC, (u32)(u64)desc);
	mmio_write32(d->common + CC_Q_DESC + 4, 0);
	mmio_write32(d->common + CC_Q_DRIVER, (u32)(u64)rings);
	mmio_write32(d->common + CC_Q_DRIVER + 4, 0);
	mmio_write32(d->common + CC_Q_DEVICE, (u32)(u64)(rings + 1024));
	mmio_write32(d->common + CC_Q_DEVICE + 4, 0);
	if (d->msix) {
		u16 e = queue_entry(d, qi);
		mmio_write16(d->common + CC_Q_MSIX, e);
		if (mmio_read16(d->common + CC_Q_MSIX) == e)
			q->vec = vec_first[dev_slot(d)] + e;
	}
	u16 noff = mmio_read16(d->common + CC_Q_NOFF);
	q->notify = d->notify_base + (u64)noff * d->notify_mult;
	mmio_write16(d->common + CC_Q_ENABLE, 1);
	d->q[qi] = q;
	return q;
}

void vdev_driver_ok(struct vdev *d) { status_set(d, (u8)(status_get(d) | ST_DRIVER_OK)); }

/* Device config reads, retried while config_generation changes. */
static u64 cfg_read(struct vdev *d, u32 off, int width)
{
	u64 v;
	u8 g;
	do {
		g = mmio_read8(d->common + CC_CFG_GEN);
		u64 a = d->devcfg + off;
		if (width == 1)
			v = mmio_read8(a);
		else if (width == 2)
			v = mmio_read16(a);
		else if (width == 4)
			v = mmio_read32(a);
		else
			v = mmio_read32(a) | ((u64)mmio_read32(a + 4) << 32);
	} while (g != mmio_read8(d->common + CC_CFG_GEN));
	return v;
}

u8 vdev_cfg8(struct vdev *d, u32 off) { return (u8)cfg_read(d, off, 1); }
u16 vdev_cfg16(struct vdev *d, u32 off) { return (u16)cfg_read(d, off, 2); }
u32 vdev_cfg32(struct vdev *d, u32 off) { return (u32)cfg_read(d, off, 4); }
u64 vdev_cfg64(struct vdev *d, u32 off) { return cfg_read(d, off, 8); }

void vdev_print(struct vdev *d)
{
	out_str("VIRTIO ");
	out_bdf(d->pci);
	out_str(" ");
	out_str(type_name(d->type));
	out_str(" irq=");
	out_str(!d->msix ? "poll" : vec_n[dev_slot(d)] == 1 ? "msix-shared" : "msix");
	out_str(" features=");
	out_hex(d->features);
	out_str(" queues=");
	out_dec((u64)d->nq);
	out_str(" irqs=");
	out_dec(vdev_irqs(d));
	out_end();
}

/* ---------------- split virtqueue ---------------- */
#define AVAIL_EVENT(q) (*(volatile u16 *)((volatile u8 *)(q)->used + 4 + 8 * (u64)(q)->size))
#define USED_EVENT(q) ((q)->avail[2 + (q)->size])

void vq_kick(struct vdev *d, struct vq *q)
{
	u16 new = q->avail_idx, old = q->notified_idx;
	if (new == old)
		return;
	mb(); /* the avail idx store must be visible before the device's flags are read */
	int need;
	if (vdev_has(d, VIRTIO_F_RING_EVENT_IDX))
		need = (u16)(new - AVAIL_EVENT(q) - 1) < (u16)(new - old);
	else
		need = !(((volatile u16 *)q->used)[0] & VRING_USED_F_NO_NOTIFY);
	q->notified_idx = new;
	if (need)
		mmio_write16(q->notify, q->index);
}

/* With EVENT_IDX: interrupt when the device uses the next element. Without: flags stay 0 (always). */
void vq_rearm(struct vq *q)
{
	USED_EVENT(q) = q->last_used;
	mb();
}

/*
 * One step of waiting for a used element of q: heartbeats and network are served; then, with
 * MSI-X, the CPU halts until an interrupt (this queue's) or the next beat/poll deadline. Without
 * MSI-X it returns at once (callers spin). Callers loop, checking their own condition and timeout.
 */
void vdev_wait(struct vdev *d, struct vq *q)
{
	vq_rearm(q);
	if (vq_has_used(q))
		return;
	int more = background();
	if (vq_has_used(q))
		return;
	if (d->msix && q->vec >= 0 && !more)
		sleep_until(next_deadline(clock_ns()));
}

/* ---------------- discovery and dispatch ---------------- */
static int virtio_type(const struct pci_fn *f)
{
	if (f->vendor != VIRTIO_VENDOR || f->hdr != 0)
		return 0;
	if (f->device >= 0x1040 && f->device <= 0x107f)
		return f->device - 0x1040;
	if (f->device == 0x1000)
		return VT_NET;
	if (f->device == 0x1001)
		return VT_BLK;
	if (f->device > 0x1001 && f->device <= 0x103f)
		return pci_read16(f, 0x2e); /* transitional: the subsystem id is the device type */
	return 0;
}

/* Finds the common/notify/ISR/device-config structures; 0 if the device has no modern interface. */
static int find_caps(struct vdev *d)
{
	const struct pci_fn *f = d->pci;
	for (u32 c = pci_next_cap(f, 0, PCI_CAP_VENDOR); c; c = pci_next_cap(f, c, PCI_CAP_VENDOR)) {
		u8 type = pci_read8(f, c + 3), bar = pci_read8(f, c + 4);
		u32 off = pci_read32(f, c + 8), len = pci_read32(f, c + 12);
		if (bar > 5 || type < 1 || type > 4)
			continue;
		u64 base = pci_bar(f, bar);
		if (!base || !ensure_mapped(base + off, len ? len : 1))
			continue;
		u64 a = base + off;
		if (type == 1 && !d->common)
			d->common = a;
		else if (type == 2 && !d->notify_base) {
			d->notify_base = a;
			d->notify_mult = pci_read32(f, c + 16);
		} else if (type == 3 && !d->isr)
			d->isr = a;
		else if (type == 4 && !d->devcfg)
			d->devcfg = a;
	}
	return d->common && d->notify_base && d->devcfg;
}

int word_is(const char *w, size_t n, const char *s) { return strlen(s) == n && !memcmp(w, s, n); }

void bad_arguments(const char *s, size_t n)
{
	out_str("ERROR bad arguments: ");
	out_strn(s, n);
	out_end();
}

static void parse_words(const char *cl, size_t len)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && cl[i] == ' ')
			i++;
		size_t st = i;
		while (i < len && cl[i] != ' ')
			i++;
		const char *wd = cl + st;
		size_t n = i - st;
		if (n > 17 && !memcmp(wd, "virtio_event_idx=", 17))
			virtio_event_idx = !(n == 18 && wd[17] == '0');
		net_cmdline(wd, n);
		blk_cmdline(wd, n);
	}
}

void virtio_init(const char *cmdline, size_t len)
{
	for (int v = 0; v < MSIX_VEC_COUNT; v++)
		idt_set_gate(MSIX_VEC_BASE + v, (void (*)(void))msix_stubs[v]);
	parse_words(cmdline, len);
	int any_net = 0;
	for (u32 i = 0; i < pci_nfns && n_vdevs < VDEV_MAX; i++) {
		struct pci_fn *f = &pci_fns[i];
		int t = virtio_type(f);
		if (t != VT_NET && t != VT_BLK)
			continue;
		struct vdev *d = &vdevs[n_vdevs];
		memset(d, 0, sizeof(*d)); /* the slot may hold a device whose probe failed */
		vec_first[n_vdevs] = vec_n[n_vdevs] = 0;
		d->pci = f;
		d->type = t;
		d->cfg_vec = -1;
		if (!find_caps(d)) {
			vdev_fail(d, "no modern capabilities");
			continue;
		}
		u16 cmd = pci_read16(f, 0x04);
		pci_write16(f, 0x04, (u16)(cmd | 0x6)); /* memory space + bus mastering */
		n_vdevs++;
		int ok = t == VT_BLK ? blk_probe(d) : net_probe(d);
		if (!ok) {
			n_vdevs--;
			continue;
		}
		any_net |= t == VT_NET;
	}
	if (any_net)
		net_print_ip();
}

int devices_poll(void)
{
	int more = 0;
	for (u32 i = 0; i < n_vdevs; i++)
		if (vdevs[i].type == VT_NET)
			more |= net_poll(&vdevs[i]);
	return more;
}

int devices_fast_poll(void)
{
	for (u32 i = 0; i < n_vdevs; i++)
		if (vdevs[i].type == VT_NET && (!vdevs[i].msix || !vdevs[i].q[0] || vdevs[i].q[0]->vec < 0))
			return 1;
	return 0;
}

void devices_tick(void)
{
	for (u32 i = 0; i < n_vdevs; i++)
		if (vdevs[i].type == VT_NET)
			net_tick(&vdevs[i]);
}

void devices_after_ready(void) { blk_after_ready(); }

int devices_command(const char **w, const size_t *wl, int k, const char *s, size_t n)
{
	if (word_is(w[0], wl[0], "virtio")) {
		if (k != 1) {
			bad_arguments(s, n);
			return 1;
		}
		for (u32 i = 0; i < n_vdevs; i++)
			vdev_print(&vdevs[i]);
		out_str("VIRTIO devices=");
		out_dec(n_vdevs);
		out_end();
		return 1;
	}
	return blk_command(w, wl, k, s, n) || net_command(w, wl, k, s, n);
}
