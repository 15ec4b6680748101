/* net.c: virtio-net driver with a static IPv4 address: ARP replies, ICMP echo, UDP echo on port 7, gratuitous ARP, control queue. */
#include "dev.h"

#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0

#define NET_MAX 4
#define HDR 12				/* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define BUF 2048			/* one frame per buffer (no MRG_RXBUF, no GSO) */
#define BUDGET 32			/* received frames handled per poll (~10 ms of work at most) */
#define ETH_ARP 0x0608			/* ethertypes as read little-endian from the frame */
#define ETH_IP 0x0008

struct net {
	struct vdev *d;
	struct vq *rx, *tx, *ctrl;
	u8 mac[6];
	u8 *pool;			/* nbuf buffers of BUF bytes: rx posts + one for locally made frames */
	u32 nbuf;
	u8 *own;			/* the local-frame buffer (gratuitous ARP) */
	int own_busy;
	u8 *ctrl_buf;
	u16 status;
};

static struct net nets[NET_MAX];
static u32 n_net;
static u8 my_ip[4] = {10, 0, 2, 15};
static u64 st_rx, st_tx, st_arp, st_icmp, st_udp;

/* ---------------- cmdline ---------------- */
static int parse_ip(const char *s, size_t n, u8 *ip)
{
	size_t i = 0;
	for (int k = 0; k < 4; k++) {
		size_t st = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		u64 v;
		if (!parse_u64(s + st, i - st, &v) || v > 255)
			return 0;
		ip[k] = (u8)v;
		if (k < 3) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	return i == n || s[i] == '/'; /* a /prefix is accepted and ignored */
}

void net_cmdline(const char *wd, size_t n)
{
	u8 ip[4];
	if (n > 3 && !memcmp(wd, "ip=", 3) && parse_ip(wd + 3, n - 3, ip))
		memcpy(my_ip, ip, 4);
}

void net_print_ip(void)
{
	out_str("NET ip=");
	for (int i = 0; i < 4; i++) {
		if (i)
			out_str(".");
		out_dec(my_ip[i]);
	}
	out_end();
}

/* ---------------- buffers and queues ---------------- */
static void rx_post(struct net *nt, u8 *buf)
{
	struct vq *q = nt->rx;
	u16 i = q->free[--q->nfree];
	q->desc[i].addr = (u64)buf;
	q->desc[i].len = BUF;
	q->desc[i].flags = VRING_DESC_F_WRITE;
	q->desc[i].next = 0;
	vq_push(q, i);
}

/* Queues buf (virtio header + len bytes of frame) for transmission; 0 if the tx ring is full. */
static int tx_send(struct net *nt, u8 *buf, u32 len)
{
	struct vq *q = nt->tx;
	if (q->nfree == 0)
		return 0;
	u16 i = q->free[--q->nfree];
	*(u32 *)buf = 0; /* flags, gso_type = NONE, hdr_len */
	*(u32 *)(buf + 4) = 0;
	*(u32 *)(buf + 8) = 0;
	q->desc[i].addr = (u64)buf;
	q->desc[i].len = HDR + len;
	q->desc[i].flags = 0;
	q->desc[i].next = 0;
	vq_push(q, i);
	st_tx++;
	return 1;
}

/* Sent buffers go back to the receive ring (the local-frame buffer is just freed). */
static int tx_reclaim(struct net *nt)
{
	struct vq *q = nt->tx;
	u32 id, len;
	int n = 0;
	while (vq_pop(q, &id, &len)) {
		u8 *buf = (u8 *)q->desc[id & q->mask].addr;
		q->free[q->nfree++] = (u16)(id & q->mask);
		if (buf == nt->own) {
			nt->own_busy = 0;
		} else {
			rx_post(nt, buf);
			n++;
		}
	}
	return n;
}

/* ---------------- protocols ---------------- */
static inline u16 rd16(const u8 *p) { return *(const u16 *)p; }	/* as stored (network order) */
static inline u32 rd32(const u8 *p) { return *(const u32 *)p; }

/* Ones' complement sum of n bytes (n even), in memory byte order (RFC 1071's byte-order independence). */
static u32 csum_add(const u8 *p, u32 n, u32 sum)
{
	for (u32 i = 0; i < n; i += 2)
		sum += *(const u16 *)(p + i);
	return sum;
}

static u16 csum_fold(u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (u16)sum;
}

static void mac_copy(u8 *d, const u8 *s)
{
	*(u32 *)d = *(const u32 *)s;
	*(u16 *)(d + 4) = *(const u16 *)(s + 4);
}

/* ARP request for our address: answered in place. Returns the reply length or 0. */
static u32 arp_in(struct net *nt, u8 *f, u32 len)
{
	if (len < 42 || rd16(f + 14) != 0x0100 || rd16(f + 16) != 0x0008 || f[18] != 6 || f[19] != 4 ||
	    rd16(f + 20) != 0x0100 || rd32(f + 38) != rd32(my_ip))
		return 0;
	mac_copy(f, f + 22);		/* eth dst = requester */
	mac_copy(f + 6, nt->mac);
	f[21] = 2;			/* reply */
	mac_copy(f + 32, f + 22);	/* tha/tpa = sha/spa */
	*(u32 *)(f + 38) = rd32(f + 28);
	mac_copy(f + 22, nt->mac);
	*(u32 *)(f + 28) = rd32(my_ip);
	st_arp++;
	return 42;
}

/* ICMP echo request or UDP to port 7 for our address: turned around in place. Returns the length or 0. */
static u32 ip_in(struct net *nt, u8 *f, u32 len)
{
	u8 *ip = f + 14;
	if (len < 34 || (ip[0] >> 4) != 4)
		return 0;
	u32 hl = (u32)(ip[0] & 15) * 4;
	u32 tot = (u32)ip[2] << 8 | ip[3];
	if (hl < 20 || tot < hl + 8 || 14 + tot > len || (rd16(ip + 6) & 0xff3f) != 0 || rd32(ip + 16) != rd32(my_ip))
		return 0; /* short, fragmented or not ours */
	const u16 *h = (const u16 *)ip; /* header checksum check, unrolled for the usual 20 bytes */
	u32 sum = hl == 20 ? (u32)h[0] + h[1] + h[2] + h[3] + h[4] + h[5] + h[6] + h[7] + h[8] + h[9]
			   : csum_add(ip, hl, 0);
	if (csum_fold(sum) != 0xffff)
		return 0;
	u8 *l4 = ip + hl;
	if (ip[9] == 1) {
		if (l4[0] != 8 || l4[1] != 0)
			return 0;
		l4[0] = 0; /* echo reply: checksum += 0x0800 (RFC 1624), byte-swapped view */
		*(u16 *)(l4 + 2) = csum_fold((u32)rd16(l4 + 2) + 0x0008);
		st_icmp++;
	} else if (ip[9] == 17) {
		if (rd16(l4 + 2) != 0x0700)
			return 0;
		u16 sp = rd16(l4); /* swap ports; the UDP checksum (if any) stays valid: the sum is order-free */
		*(u16 *)l4 = rd16(l4 + 2);
		*(u16 *)(l4 + 2) = sp;
		st_udp++;
	} else {
		return 0;
	}
	u32 src = rd32(ip + 12);
	*(u32 *)(ip + 12) = rd32(ip + 16);
	*(u32 *)(ip + 16) = src;
	/* TTL 64: header checksum updated per RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'); the address swap leaves it as is */
	u16 hc = rd16(ip + 10), m = rd16(ip + 8);
	ip[8] = 64;
	*(u16 *)(ip + 10) = (u16)~csum_fold((u32)(u16)~hc + (u16)~m + rd16(ip + 8));
	mac_copy(f, f + 6);
	mac_copy(f + 6, nt->mac);
	return 14 + tot;
}

/* Broadcasts "who has <our ip>, tell <our ip>" from our MAC; 0 if the previous one is still queued or tx is full. */
static int gratuitous_arp(struct net *nt)
{
	if (nt->own_busy)
		tx_reclaim(nt);
	if (nt->own_busy)
		return 0;
	u8 *f = nt->own + HDR;
	for (int i = 0; i < 60; i += 4)
		*(u32 *)(f + i) = 0;
	for (int i = 0; i < 6; i++)
		f[i] = 0xff;
	mac_copy(f + 6, nt->mac);
	*(u16 *)(f + 12) = ETH_ARP;
	*(u16 *)(f + 14) = 0x0100;	/* Ethernet */
	*(u16 *)(f + 16) = 0x0008;	/* IPv4 */
	f[18] = 6;
	f[19] = 4;
	*(u16 *)(f + 20) = 0x0100;	/* request, sender = target = our address */
	mac_copy(f + 22, nt->mac);
	*(u32 *)(f + 28) = rd32(my_ip);
	*(u32 *)(f + 38) = rd32(my_ip);
	if (!tx_send(nt, nt->own, 60))
		return 0;
	nt->own_busy = 1;
	vq_kick(nt->d, nt->tx);
	return 1;
}

/* ---------------- poll ---------------- */
/* Handles up to BUDGET received frames; returns 1 if more are waiting. */
int net_poll(struct vdev *d)
{
	struct net *nt = d->priv;
	if (!nt)
		return 0;
	struct vq *rx = nt->rx;
	int reposted = tx_reclaim(nt), sent = 0, n = 0;
	u32 id, len;
	while (n < BUDGET && vq_pop(rx, &id, &len)) {
		n++;
		st_rx++;
		u16 di = (u16)(id & rx->mask);
		u8 *buf = (u8 *)rx->desc[di].addr;
		rx->free[rx->nfree++] = di;
		u8 *f = buf + HDR;
		u32 fl = len > HDR ? len - HDR : 0, out = 0;
		u16 et = fl >= 14 ? rd16(f + 12) : 0;
		if (et == ETH_IP)
			out = ip_in(nt, f, fl);
		else if (et == ETH_ARP)
			out = arp_in(nt, f, fl);
		if (out && tx_send(nt, buf, out)) {
			sent = 1;
		} else {
			rx_post(nt, buf);
			reposted = 1;
		}
	}
	if (sent)
		vq_kick(d, nt->tx);
	if (reposted)
		vq_kick(d, rx);
	if (vq_has_used(rx))
		return 1;
	vq_rearm(rx);
	vq_rearm(nt->tx);
	if (d->cfg_vec >= 0 && msix_counts[d->cfg_vec - MSIX_VEC_BASE] != d->cfg_seen) {
		d->cfg_seen = msix_counts[d->cfg_vec - MSIX_VEC_BASE];
		net_tick(d);
	}
	return vq_has_used(rx);
}

/* ---------------- control queue, announce ---------------- */
/* Sends class/cmd without data; returns the ack byte (0 = OK), or -1 on no control queue / timeout. */
static int ctrl_cmd(struct net *nt, u8 cls, u8 cmd)
{
	struct vq *q = nt->ctrl;
	if (!q)
		return -1;
	u8 *b = nt->ctrl_buf;
	b[0] = cls;
	b[1] = cmd;
	b[16] = 0xff;
	q->desc[0].addr = (u64)b;
	q->desc[0].len = 2;
	q->desc[0].flags = VRING_DESC_F_NEXT;
	q->desc[0].next = 1;
	q->desc[1].addr = (u64)(b + 16);
	q->desc[1].len = 1;
	q->desc[1].flags = VRING_DESC_F_WRITE;
	q->desc[1].next = 0;
	vq_push(q, 0);
	vq_kick(nt->d, q);
	u64 end = clock_ns() + NS_PER_S;
	u32 id, len;
	while (!vq_pop(q, &id, &len)) {
		if (clock_ns() > end)
			return -1; /* the descriptor stays with the device: no more control commands */
		vdev_wait(nt->d, q);
	}
	return b[16];
}

static int announce_pending;

/* Config status: link, and VIRTIO_NET_S_ANNOUNCE (gratuitous ARP, then ANNOUNCE_ACK). */
void net_tick(struct vdev *d)
{
	struct net *nt = d->priv;
	if (!nt || !vdev_has(d, VIRTIO_NET_F_STATUS) || announce_pending)
		return;
	nt->status = vdev_cfg16(d, 6);
	if (!(nt->status & VIRTIO_NET_S_ANNOUNCE) || !vdev_has(d, VIRTIO_NET_F_GUEST_ANNOUNCE))
		return;
	announce_pending = 1; /* ctrl_cmd waits in background(): no nested announce */
	gratuitous_arp(nt);
	int ack = ctrl_cmd(nt, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK);
	if (ack < 0)
		nt->ctrl = NULL;
	announce_pending = 0;
	out_str("ANNOUNCE AUTO net=");
	out_dec((u64)d->index);
	out_str(" ack=");
	out_sdec(ack);
	out_end();
}

/* ---------------- probe ---------------- */
int net_probe(struct vdev *d)
{
	if (n_net >= NET_MAX) {
		vdev_fail(d, "too many net devices");
		return 0;
	}
	struct net *nt = &nets[n_net];
	u64 offered;
	u64 want = (1UL << VIRTIO_NET_F_MAC) | (1UL << VIRTIO_NET_F_STATUS) | (1UL << VIRTIO_NET_F_CTRL_VQ) |
		   (1UL << VIRTIO_NET_F_GUEST_ANNOUNCE);
	if (!vdev_begin(d, want, &offered))
		return 0;
	d->nq = vdev_has(d, VIRTIO_NET_F_CTRL_VQ) ? 3 : 2;
	if (!vdev_setup_irqs(d))
		return 0;
	nt->d = d;
	nt->rx = vdev_queue(d, 0);
	nt->tx = vdev_queue(d, 1);
	nt->ctrl = d->nq == 3 ? vdev_queue(d, 2) : NULL;
	if (!nt->rx || !nt->tx || (d->nq == 3 && !nt->ctrl)) {
		vdev_fail(d, "queue setup failed");
		return 0;
	}
	nt->nbuf = (u32)nt->rx->size + 1;
	nt->pool = dma_alloc((u64)nt->nbuf * BUF, 0);
	nt->ctrl_buf = nt->ctrl ? dma_alloc(PAGE_SIZE, 0) : NULL;
	if (!nt->pool || (nt->ctrl && !nt->ctrl_buf)) {
		vdev_fail(d, "out of memory");
		return 0;
	}
	nt->own = nt->pool + (u64)(nt->nbuf - 1) * BUF;
	if (vdev_has(d, VIRTIO_NET_F_MAC)) {
		for (u32 i = 0; i < 6; i++)
			nt->mac[i] = vdev_cfg8(d, i);
	} else {
		static const u8 dflt[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x00};
		memcpy(nt->mac, dflt, 6);
		nt->mac[5] = (u8)(0x60 + n_net);
	}
	for (u16 i = 0; i < nt->tx->size; i++)
		nt->tx->free[i] = (u16)(nt->tx->size - 1 - i);
	nt->tx->nfree = nt->tx->size;
	for (u16 i = 0; i < nt->rx->size; i++)
		nt->rx->free[i] = (u16)(nt->rx->size - 1 - i);
	nt->rx->nfree = nt->rx->size;
	for (u32 i = 0; i + 1 < nt->nbuf; i++)
		rx_post(nt, nt->pool + (u64)i * BUF);
	d->index = (int)n_net;
	n_net++;
	vdev_driver_ok(d);
	vq_kick(d, nt->rx);
	nt->status = vdev_has(d, VIRTIO_NET_F_STATUS) ? vdev_cfg16(d, 6) : VIRTIO_NET_S_LINK_UP;
	vdev_print(d);
	out_str("NET ");
	out_dec((u64)d->index);
	out_str(" mac=");
	for (int i = 0; i < 6; i++) {
		if (i)
			out_str(":");
		out_hexn(nt->mac[i], 2);
	}
	out_str(" link=");
	out_str(nt->status & VIRTIO_NET_S_LINK_UP ? "up" : "down");
	out_end();
	d->priv = nt;
	if (d->msix && d->cfg_vec >= 0)
		d->cfg_seen = msix_counts[d->cfg_vec - MSIX_VEC_BASE];
	return 1;
}

/* ---------------- commands ---------------- */
int net_command(const char **w, const size_t *wl, int k, const char *s, size_t n)
{
	if (word_is(w[0], wl[0], "netstat")) {
		if (k != 1) {
			bad_arguments(s, n);
			return 1;
		}
		out_str("NETSTAT rx=");
		out_dec(st_rx);
		out_str(" tx=");
		out_dec(st_tx);
		out_str(" arp=");
		out_dec(st_arp);
		out_str(" icmp=");
		out_dec(st_icmp);
		out_str(" udp=");
		out_dec(st_udp);
		out_end();
		return 1;
	}
	if (word_is(w[0], wl[0], "announce")) {
		if (k != 1) {
			bad_arguments(s, n);
			return 1;
		}
		if (n_net == 0) {
			say("ANNOUNCE ERROR no net");
			return 1;
		}
		u64 sent = 0;
		for (u32 i = 0; i < n_net; i++)
			sent += (u64)gratuitous_arp(&nets[i]);
		out_str("ANNOUNCE OK sent=");
		out_dec(sent);
		out_end();
		return 1;
	}
	return 0;
}
