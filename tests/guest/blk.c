/* blk.c: virtio-blk driver: boot report, pattern write/read/verify, flush, GET_ID, throughput bench, blktest= cmdline. */
#include "dev.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8

#define BLK_MAX 8
#define CHUNK_MAX (64 * 1024)		/* bytes per request */
#define SLOTS_MAX 8			/* requests in flight */
#define PAT_MUL 0x100000001UL
#define STATUS_UNSET 0xff
#define ST_TIMEOUT 0x100		/* not a device status: the request never completed */

struct blk {
	struct vdev *d;
	struct vq *q;
	u64 capacity;
	int ro, dead;
	u8 *req;			/* slot s: 16-byte header at 32*s, status byte at 32*s + 16; GET_ID data at 512 */
	u32 seg;			/* bytes per data descriptor */
	u32 chunk;			/* bytes per request */
	u32 dpr;			/* descriptors per request */
	u32 nslots;
	char serial[21];
};

static struct blk blks[BLK_MAX];
static u32 n_blk;
static u8 *blk_data;			/* SLOTS_MAX * CHUNK_MAX, shared: block commands run one at a time */

/* ---------------- requests ---------------- */
static u8 *slot_status(struct blk *b, u32 s) { return b->req + 32 * s + 16; }

static void submit(struct blk *b, u32 slot, u32 type, u64 sector, u8 *buf, u32 bytes)
{
	struct vring_desc *dt = b->q->desc;
	u8 *hdr = b->req + 32 * slot;
	*(u32 *)hdr = type;
	*(u32 *)(hdr + 4) = 0;
	*(u64 *)(hdr + 8) = sector;
	*slot_status(b, slot) = STATUS_UNSET;
	u16 head = (u16)(slot * b->dpr), i = head;
	dt[i].addr = (u64)hdr;
	dt[i].len = 16;
	dt[i].flags = VRING_DESC_F_NEXT;
	dt[i].next = (u16)(i + 1);
	i++;
	u16 wflag = type == BLK_T_OUT ? 0 : VRING_DESC_F_WRITE;
	for (u32 off = 0; off < bytes; off += b->seg) {
		u32 l = bytes - off < b->seg ? bytes - off : b->seg;
		dt[i].addr = (u64)(buf + off);
		dt[i].len = l;
		dt[i].flags = (u16)(VRING_DESC_F_NEXT | wflag);
		dt[i].next = (u16)(i + 1);
		i++;
	}
	dt[i].addr = (u64)slot_status(b, slot);
	dt[i].len = 1;
	dt[i].flags = VRING_DESC_F_WRITE;
	dt[i].next = 0;
	vq_push(b->q, head);
}

static u32 done_mask;

static void collect(struct blk *b)
{
	u32 id, len;
	while (vq_pop(b->q, &id, &len))
		if (id / b->dpr < SLOTS_MAX)
			done_mask |= 1u << (id / b->dpr);
}

/* Waits for slot; 0 on completion, ST_TIMEOUT after 30 s (the disk is then given up). */
static u32 wait_slot(struct blk *b, u32 slot)
{
	u64 end = clock_ns() + 30 * NS_PER_S;
	for (;;) {
		collect(b);
		if (done_mask & (1u << slot)) {
			done_mask &= ~(1u << slot);
			return 0;
		}
		if (clock_ns() > end) {
			b->dead = 1;
			return ST_TIMEOUT;
		}
		vdev_wait(b->d, b->q);
	}
}

/* One request without data streaming (flush, GET_ID); returns the status (or ST_TIMEOUT). */
static u32 simple_request(struct blk *b, u32 type, u8 *buf, u32 bytes)
{
	submit(b, 0, type, 0, buf, bytes);
	vq_kick(b->d, b->q);
	u32 r = wait_slot(b, 0);
	return r ? r : *slot_status(b, 0);
}

enum { R_OK, R_MISMATCH, R_ERROR };

/*
 * Moves count sectors from sector on, CHUNK-sized requests, up to nslots in flight. pattern: fill
 * before writing / verify after reading. wrap (bench): sector offsets wrap modulo wrap sectors.
 * On error or mismatch no new requests are started, the ones in flight are drained.
 */
static int stream(struct blk *b, int write, u64 sector, u64 count, int pattern, u64 seed, u64 wrap,
		  u64 *bad, u32 *status)
{
	u64 cs = b->chunk / 512;
	u64 nreq = (count + cs - 1) / cs, sub = 0, fin = 0;
	u64 base = seed * PAT_MUL;
	int res = R_OK;
	done_mask = 0;
	while (fin < nreq) {
		while (sub < nreq && sub - fin < b->nslots) {
			u32 slot = (u32)(sub % b->nslots);
			u64 off = sub * cs;
			u64 s = sector + (wrap ? off % wrap : off);
			u64 c = count - off < cs ? count - off : cs;
			u8 *buf = blk_data + (u64)slot * CHUNK_MAX;
			if (write && pattern) {
				background(); /* a 64 KiB fill is ~10 ms of emulated instructions: beats between fills */
				pat_fill((u64 *)buf, base, s, c);
			}
			submit(b, slot, write ? BLK_T_OUT : BLK_T_IN, s, buf, (u32)(c * 512));
			sub++;
		}
		vq_kick(b->d, b->q);
		u32 slot = (u32)(fin % b->nslots);
		u32 r = wait_slot(b, slot);
		if (r) {
			*status = r;
			return R_ERROR; /* timed out: nothing can be drained */
		}
		u8 st = *slot_status(b, slot);
		u64 off = fin * cs;
		fin++;
		if (res != R_OK)
			continue;
		if (st != 0) {
			*status = st;
			res = R_ERROR;
			nreq = sub;
		} else if (!write && pattern) {
			u64 s = sector + off;
			u64 c = count - off < cs ? count - off : cs;
			background();
			u64 m = pat_check((const u64 *)(blk_data + (u64)slot * CHUNK_MAX), base, s, c);
			if (m < c) {
				*bad = s + m;
				res = R_MISMATCH;
				nreq = sub;
			}
		}
	}
	return res;
}

/* ---------------- probe ---------------- */
static void out_serial(const char *s)
{
	out_str(s[0] ? s : "-");
}

/* GET_ID into b->serial: up to 20 bytes, NUL-padded; unprintable bytes become '?'. */
static void read_serial(struct blk *b)
{
	u8 *id = b->req + 512;
	for (int i = 0; i < 20; i++)
		id[i] = 0;
	u32 st = simple_request(b, BLK_T_GET_ID, id, 20);
	int i = 0;
	if (st == 0)
		for (; i < 20 && id[i]; i++)
			b->serial[i] = (id[i] > ' ' && id[i] < 0x7f) ? (char)id[i] : '?';
	b->serial[i] = 0;
}

int blk_probe(struct vdev *d)
{
	if (n_blk >= BLK_MAX) {
		vdev_fail(d, "too many disks");
		return 0;
	}
	struct blk *b = &blks[n_blk];
	u64 offered;
	d->nq = 1;
	if (!vdev_begin(d, (1UL << VIRTIO_BLK_F_SIZE_MAX) | (1UL << VIRTIO_BLK_F_SEG_MAX) | (1UL << VIRTIO_BLK_F_RO) |
			(1UL << VIRTIO_BLK_F_BLK_SIZE) | (1UL << VIRTIO_BLK_F_FLUSH), &offered) ||
	    !vdev_setup_irqs(d))
		return 0;
	if (!blk_data)
		blk_data = dma_alloc(SLOTS_MAX * CHUNK_MAX, 0);
	b->req = dma_alloc(PAGE_SIZE, 0);
	b->q = vdev_queue(d, 0);
	if (!blk_data || !b->req || !b->q) {
		vdev_fail(d, "queue setup failed");
		return 0;
	}
	/* Segment and request sizes within size_max / seg_max; nslots requests fit the queue. */
	u32 seg = CHUNK_MAX;
	if (vdev_has(d, VIRTIO_BLK_F_SIZE_MAX)) {
		u32 sm = vdev_cfg32(d, 8) & ~4095u;
		if (sm && sm < seg)
			seg = sm;
		if (seg == 0)
			seg = 4096;
	}
	u32 chunk = CHUNK_MAX;
	if (vdev_has(d, VIRTIO_BLK_F_SEG_MAX)) {
		u32 sgm = vdev_cfg32(d, 12);
		while (sgm && chunk / seg > sgm && chunk > seg)
			chunk /= 2;
	}
	while (chunk / seg + 2 > b->q->size && chunk > seg)
		chunk /= 2;
	if (chunk < seg)
		seg = chunk;
	b->seg = seg;
	b->chunk = chunk;
	b->dpr = chunk / seg + 2;
	b->nslots = b->q->size / b->dpr;
	if (b->nslots > SLOTS_MAX)
		b->nslots = SLOTS_MAX;
	if (b->nslots == 0) {
		vdev_fail(d, "queue too small");
		return 0;
	}
	b->d = d;
	b->capacity = vdev_cfg64(d, 0);
	b->ro = vdev_has(d, VIRTIO_BLK_F_RO);
	d->index = (int)n_blk;
	d->priv = b;
	vdev_driver_ok(d);
	n_blk++;
	read_serial(b);
	vdev_print(d);
	out_str("BLK ");
	out_dec((u64)d->index);
	out_str(" capacity=");
	out_dec(b->capacity);
	out_str(" ro=");
	out_dec((u64)b->ro);
	out_str(" serial=");
	out_serial(b->serial);
	out_end();
	return 1;
}

/* ---------------- commands ---------------- */
static void reply_status(const char *what, u32 st)
{
	out_str(what);
	out_str(" ERROR status=");
	if (st == ST_TIMEOUT)
		out_str("timeout");
	else
		out_dec(st);
	out_end();
}

static struct blk *disk(const char *what, u64 i)
{
	if (i < n_blk && !blks[i].dead)
		return &blks[i];
	out_str(what);
	out_str(i < n_blk ? " ERROR disk timed out earlier" : " ERROR no disk");
	out_end();
	return NULL;
}

static void do_write(u64 di, u64 sector, u64 count, u64 seed)
{
	struct blk *b = disk("BLKWRITE", di);
	if (!b)
		return;
	u64 bad;
	u32 st = 0;
	if (stream(b, 1, sector, count, 1, seed, 0, &bad, &st) == R_OK)
		say("BLKWRITE OK");
	else
		reply_status("BLKWRITE", st);
}

static void do_read(u64 di, u64 sector, u64 count, u64 seed)
{
	struct blk *b = disk("BLKREAD", di);
	if (!b)
		return;
	u64 bad = 0;
	u32 st = 0;
	int r = stream(b, 0, sector, count, 1, seed, 0, &bad, &st);
	if (r == R_OK) {
		say("BLKREAD OK");
	} else if (r == R_MISMATCH) {
		out_str("BLKREAD MISMATCH sector=");
		out_dec(bad);
		out_end();
	} else {
		reply_status("BLKREAD", st);
	}
}

/* Without VIRTIO_BLK_F_FLUSH the device is write-through: nothing to send. */
static void do_flush(u64 di)
{
	struct blk *b = disk("BLKFLUSH", di);
	if (!b)
		return;
	u32 st = vdev_has(b->d, VIRTIO_BLK_F_FLUSH) ? simple_request(b, BLK_T_FLUSH, NULL, 0) : 0;
	if (st == 0)
		say("BLKFLUSH OK");
	else
		reply_status("BLKFLUSH", st);
}

static void do_id(u64 di)
{
	struct blk *b = disk("BLKID", di);
	if (!b)
		return;
	read_serial(b);
	if (b->dead) {
		reply_status("BLKID", ST_TIMEOUT);
		return;
	}
	out_str("BLKID ");
	out_serial(b->serial);
	out_end();
}

static void do_bench(u64 di, u64 mib, int write, u32 depth)
{
	struct blk *b = disk("BLKBENCH", di);
	if (!b)
		return;
	u32 nslots = b->nslots;
	if (depth < b->nslots)
		b->nslots = depth;
	u64 wrap = b->capacity / (b->chunk / 512) * (b->chunk / 512);
	if (wrap == 0) {
		say("BLKBENCH ERROR disk too small");
		return;
	}
	u64 bad;
	u32 st = 0;
	u64 t0 = clock_ns();
	int r = stream(b, write, 0, mib * 2048, 0, 0, wrap, &bad, &st);
	u64 t1 = clock_ns();
	b->nslots = nslots;
	if (r != R_OK) {
		reply_status("BLKBENCH", st);
		return;
	}
	out_str("BLKBENCH MiB=");
	out_dec(mib);
	out_str(" ns=");
	out_dec(t1 - t0);
	out_end();
}

static int args_u64(const char **w, const size_t *wl, int from, int k, u64 *v)
{
	for (int i = from; i < k; i++)
		if (!parse_u64(w[i], wl[i], &v[i - from]))
			return 0;
	return 1;
}

int blk_command(const char **w, const size_t *wl, int k, const char *s, size_t n)
{
	u64 v[4];
	int wr = word_is(w[0], wl[0], "blkwrite"), rd = word_is(w[0], wl[0], "blkread");
	if (wr || rd) {
		/* count: 1 .. 2^32 sectors; sector + count must not wrap */
		if (k != 5 || !args_u64(w, wl, 1, 5, v) || v[2] == 0 || v[2] > (1UL << 32) || v[1] + v[2] < v[1]) {
			bad_arguments(s, n);
			return 1;
		}
		if (wr)
			do_write(v[0], v[1], v[2], v[3]);
		else
			do_read(v[0], v[1], v[2], v[3]);
		return 1;
	}
	if (word_is(w[0], wl[0], "blkflush") || word_is(w[0], wl[0], "blkid")) {
		if (k != 2 || !args_u64(w, wl, 1, 2, v)) {
			bad_arguments(s, n);
			return 1;
		}
		if (wl[0] == 8)
			do_flush(v[0]);
		else
			do_id(v[0]);
		return 1;
	}
	if (word_is(w[0], wl[0], "blkbench")) {
		/* blkbench <disk> <MiB> <read|write> [depth 1..8, default 8] */
		int bw = k >= 4 && word_is(w[3], wl[3], "write");
		v[2] = SLOTS_MAX;
		if (k < 4 || k > 5 || !args_u64(w, wl, 1, 3, v) || v[1] == 0 || v[1] > (1UL << 30) ||
		    !(bw || word_is(w[3], wl[3], "read")) ||
		    (k == 5 && (!parse_u64(w[4], wl[4], &v[2]) || v[2] == 0 || v[2] > SLOTS_MAX))) {
			bad_arguments(s, n);
			return 1;
		}
		do_bench(v[0], v[1], bw, (u32)v[2]);
		return 1;
	}
	return 0;
}

/* ---------------- blktest=<disk>:<sectors>:<seed> ---------------- */
#define BLKTEST_MAX 4
static u64 bt[BLKTEST_MAX][3];
static u32 n_bt;

void blk_cmdline(const char *wd, size_t n)
{
	if (n < 8 || memcmp(wd, "blktest=", 8) || n_bt >= BLKTEST_MAX)
		return;
	const char *p = wd + 8, *end = wd + n;
	u64 v[3];
	for (int i = 0; i < 3; i++) {
		const char *q = p;
		while (q < end && *q != ':')
			q++;
		if ((i < 2) != (q < end) || !parse_u64(p, (size_t)(q - p), &v[i]))
			return;
		p = q + 1;
	}
	if (v[1] == 0 || v[1] > (1UL << 32))
		return;
	bt[n_bt][0] = v[0];
	bt[n_bt][1] = v[1];
	bt[n_bt][2] = v[2];
	n_bt++;
}

/* Each blktest: write sectors 0..n-1 with the pattern, flush, read back and verify (three reply lines). */
void blk_after_ready(void)
{
	for (u32 i = 0; i < n_bt; i++) {
		do_write(bt[i][0], 0, bt[i][1], bt[i][2]);
		do_flush(bt[i][0]);
		do_read(bt[i][0], 0, bt[i][1], bt[i][2]);
	}
}
