/* dev.h: PCI, virtio transport, virtio-blk and virtio-net declarations shared by pci.c, virtio.c, blk.c, net.c and main.c. */
#ifndef DEV_H
#define DEV_H

#include "guest.h"

static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u16 inw(u16 port)
{
	u16 v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u64 a) { return *(volatile u16 *)a; }
static inline void mmio_write8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(u64 a, u16 v) { *(volatile u16 *)a = v; }
/* A full fence the instruction emulator knows (mfence/lfence may not be): orders a ring store before a flag load. */
static inline void mb(void) { __asm__ volatile("lock addl $0, (%%rsp)" : : : "memory", "cc"); }

/* ---------------- pci.c ---------------- */
#define PCI_MAX_FNS 64
#define PCI_MMIO_START 0xc0000000UL	/* BARs the guest assigns itself (no firmware) */
#define PCI_MMIO_END 0xfec00000UL

struct pci_fn {
	u8 slot, fn, hdr;
	u16 vendor, device;
	u32 class; /* base << 16 | sub << 8 | prog-if */
};

extern struct pci_fn pci_fns[PCI_MAX_FNS];
extern u32 pci_nfns;

void pci_init(void);			/* prints the PCI lines */
u32 pci_read32(const struct pci_fn *f, u32 off);
u16 pci_read16(const struct pci_fn *f, u32 off);
u8 pci_read8(const struct pci_fn *f, u32 off);
void pci_write32(const struct pci_fn *f, u32 off, u32 v);
void pci_write16(const struct pci_fn *f, u32 off, u16 v);
u64 pci_bar(const struct pci_fn *f, int bar);	/* memory BAR address, 0 if none / I/O / unassigned */
u32 pci_next_cap(const struct pci_fn *f, u32 prev, u8 id);	/* prev 0 = first; 0 = none */
void out_bdf(const struct pci_fn *f);		/* "00:<slot>.<fn>" */

/* ---------------- irq.S ---------------- */
#define MSIX_VEC_BASE 0x50
#define MSIX_VEC_COUNT 32
extern volatile u32 msix_counts[MSIX_VEC_COUNT];
extern u64 msix_stubs[MSIX_VEC_COUNT];
void pat_fill(u64 *dst, u64 base, u64 sector, u64 nsect);
u64 pat_check(const u64 *src, u64 base, u64 sector, u64 nsect); /* sectors matching before the first bad one */

/* ---------------- virtio.c ---------------- */
#define VQ_MAX 256
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

struct vq {
	u16 size, mask, index;
	struct vring_desc *desc;
	volatile u16 *avail;		/* flags, idx, ring[size], used_event */
	volatile u32 *used;		/* u16 flags | u16 idx, then {id, len}[size], avail_event */
	u16 avail_idx;			/* next avail index to publish */
	u16 notified_idx;		/* avail index at the last notify (event-idx) */
	u16 last_used;			/* next used index to consume */
	u64 notify;			/* notify register address */
	int vec;			/* IDT vector, -1 without MSI-X */
	u16 free[VQ_MAX];		/* free descriptor stack (net) */
	u16 nfree;
};

#define VDEV_MAX 8
enum { VT_NET = 1, VT_BLK = 2 };

struct vdev {
	struct pci_fn *pci;
	int type, index;		/* index among devices of the type */
	u64 common, notify_base, isr, devcfg;
	u32 notify_mult;
	u64 features;			/* negotiated */
	int msix;			/* 1 = MSI-X vectors programmed */
	int cfg_vec;			/* IDT vector of config changes, -1 if none */
	u32 cfg_seen;			/* config interrupts already handled */
	int nq;
	struct vq *q[3];
	void *priv;
};

extern struct vdev vdevs[VDEV_MAX];
extern u32 n_vdevs;
extern int virtio_event_idx;		/* negotiate VIRTIO_F_RING_EVENT_IDX when offered (cmdline) */

#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33

void *dma_alloc(u64 bytes, int zero);		/* 4 KiB aligned, from a static arena; NULL if full */
int vdev_has(const struct vdev *d, int bit);
int vdev_begin(struct vdev *d, u64 wanted, u64 *offered);	/* reset .. FEATURES_OK; 0 on failure */
int vdev_setup_irqs(struct vdev *d);		/* MSI-X for config + d->nq queues (or polling) */
struct vq *vdev_queue(struct vdev *d, u16 qi);	/* sets up queue qi (before DRIVER_OK) */
void vdev_driver_ok(struct vdev *d);
void vdev_fail(struct vdev *d, const char *why);
u8 vdev_cfg8(struct vdev *d, u32 off);
u16 vdev_cfg16(struct vdev *d, u32 off);
u32 vdev_cfg32(struct vdev *d, u32 off);
u64 vdev_cfg64(struct vdev *d, u32 off);
u32 vdev_irqs(const struct vdev *d);
void vdev_print(struct vdev *d);		/* the VIRTIO line */
void vq_kick(struct vdev *d, struct vq *q);	/* notify if the device wants it */
void vq_rearm(struct vq *q);			/* ask for an interrupt at the next used element */

/* Inline: these run a few times per packet, and every instruction counts when ring 0 is emulated. */
#define USED_IDX(q) (((volatile u16 *)(q)->used)[1])

/* Publishes a descriptor chain (no notify). */
static inline void vq_push(struct vq *q, u16 head)
{
	q->avail[2 + (q->avail_idx & q->mask)] = head;
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
}

static inline int vq_has_used(struct vq *q) { return USED_IDX(q) != q->last_used; }

/* The next used element (id = head descriptor, len = bytes written); 0 if none. */
static inline int vq_pop(struct vq *q, u32 *id, u32 *len)
{
	if (USED_IDX(q) == q->last_used)
		return 0;
	barrier();
	u32 i = q->last_used & q->mask;
	*id = q->used[1 + 2 * i];
	*len = q->used[2 + 2 * i];
	q->last_used++;
	return 1;
}
void vdev_wait(struct vdev *d, struct vq *q);	/* one idle step: background work, hlt with MSI-X */

void virtio_init(const char *cmdline, size_t len);	/* after pci_init: drivers, boot lines */
int devices_poll(void);			/* main loop: 1 = more work pending, do not sleep */
int devices_fast_poll(void);		/* 1 = some device needs polling (no MSI-X): short sleeps */
void devices_tick(void);		/* once per heartbeat */
void devices_after_ready(void);		/* cmdline actions (blktest=) */
int devices_command(const char **w, const size_t *wl, int k, const char *s, size_t n);

/* main.c */
int background(void);			/* heartbeats and network from inside long commands; 1 = more network work */
u64 next_deadline(u64 now);		/* when the caller must return to background work */

/* ---------------- blk.c ---------------- */
int blk_probe(struct vdev *d);
int blk_command(const char **w, const size_t *wl, int k, const char *s, size_t n);
void blk_cmdline(const char *wd, size_t n);
void blk_after_ready(void);

/* ---------------- net.c ---------------- */
int net_probe(struct vdev *d);
int net_poll(struct vdev *d);
void net_tick(struct vdev *d);
int net_command(const char **w, const size_t *wl, int k, const char *s, size_t n);
void net_cmdline(const char *wd, size_t n);
void net_print_ip(void);

int word_is(const char *w, size_t n, const char *s);
void bad_arguments(const char *s, size_t n);

#endif
