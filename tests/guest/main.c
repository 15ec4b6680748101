/* main.c: boot report, heartbeat loop, serial/cmdline commands, memory dirtier and its self-check. */
#include "dev.h"

#define START_INFO_MAGIC 0x336ec578
#define POLL_NS (10 * NS_PER_MS)	/* serial input is polled at least this often */
#define BATCH_PAGES 256			/* pages between clock checks: well under 1 ms here */
#define MAX_RATE 1000000UL		/* MiB/s; keeps the credit arithmetic in 64 bits */
#define MAX_MIB (64UL * 1024)		/* the identity map ends at 64 GiB */
#define CREDIT_CAP_NS (20 * NS_PER_MS)	/* no catch-up burst after a pause or a check */
#define FAST_POLL_NS (1 * NS_PER_MS)	/* sleep cap while a network device has no MSI-X */

static char cmdline[CMDLINE_MAX];
static size_t cmdline_len;
static struct e820_entry e820[MAX_E820];
static u32 n_e820;
static u64 hb_period = 100 * NS_PER_MS;

enum { D_NONE, D_INIT, D_RUN, D_STOPPED };
static int d_state;
static u8 *ws_base;
static u64 ws_pages, ws_mib, ws_rate;
static u64 d_pos, d_sweeps;
static u64 init_pos;
static u64 credit, credit_t;	/* credit in pages * 1e9 (pages scaled by ns) */

static int checking;
static u32 checks_pending;	/* check commands that arrived during a check or initialisation */
static u64 ck_pos;
static u8 ck_prev;
static s64 ck_edge;

static int job_active(void) { return d_state == D_INIT || checking; }

/* ---------------- boot information ---------------- */
static void read_start_info(u64 pa, u64 *rsdp)
{
	*rsdp = 0;
	if (pa == 0 || *(const u32 *)pa != START_INFO_MAGIC) {
		out_str("ERROR bad start_info at ");
		out_hex(pa);
		out_end();
		return;
	}
	const u8 *si = (const u8 *)pa;
	u32 version = *(const u32 *)(si + 4);
	u64 cl = *(const u64 *)(si + 24);
	if (cl && ensure_mapped(cl, CMDLINE_MAX)) {
		const char *s = (const char *)cl;
		while (cmdline_len < CMDLINE_MAX - 1 && s[cmdline_len])
			cmdline_len++;
		memcpy(cmdline, s, cmdline_len);
	}
	*rsdp = *(const u64 *)(si + 32);
	if (version >= 1) {
		u64 mm = *(const u64 *)(si + 40);
		u32 n = *(const u32 *)(si + 48);
		if (n > MAX_E820)
			n = MAX_E820;
		if (mm == 0 || !ensure_mapped(mm, n * sizeof(struct e820_entry)))
			n = 0;
		memcpy(e820, (const void *)mm, n * sizeof(struct e820_entry));
		n_e820 = n;
	}
}

static void print_mem(void)
{
	u64 ram = 0;
	for (u32 i = 0; i < n_e820; i++) {
		out_str("E820 ");
		out_hex(e820[i].addr);
		out_str(" ");
		out_hex(e820[i].size);
		out_str(" ");
		out_dec(e820[i].type);
		out_end();
		if (e820[i].type == 1)
			ram += e820[i].size;
	}
	out_str("MEM ram=");
	out_dec(ram);
	out_end();
}

static void print_cpus(void)
{
	out_str("CPUS found=");
	out_dec(cpus_found());
	out_str(" started=");
	out_dec(cpus_started());
	out_end();
}

/* ---------------- dirtier ---------------- */
static void dirty_some(u64 n)
{
	while (n) {
		u64 k = ws_pages - d_pos;
		if (k > n)
			k = n;
		dirty_pages(ws_base + d_pos * PAGE_SIZE, k);
		d_pos += k;
		n -= k;
		if (d_pos == ws_pages) {
			d_pos = 0;
			d_sweeps++;
		}
	}
}

/* Above the image and 16 MiB, 2 MiB aligned, inside the largest usable region. */
static u64 place_working_set(u64 bytes)
{
	int best = -1;
	for (u32 i = 0; i < n_e820; i++)
		if (e820[i].type == 1 && (best < 0 || e820[i].size > e820[best].size))
			best = (int)i;
	if (best < 0)
		return 0;
	u64 lo = e820[best].addr, end = e820[best].addr + e820[best].size;
	if (lo < 16 * MIB)
		lo = 16 * MIB;
	if (lo < (u64)__image_end)
		lo = (u64)__image_end;
	lo = (lo + 2 * MIB - 1) & ~(2 * MIB - 1);
	if (end > MAPPED_LIMIT)
		end = MAPPED_LIMIT;
	if (lo >= end || end - lo < bytes || !ensure_mapped(lo, bytes))
		return 0;
	return lo;
}

static void dirty_start(u64 mib, u64 rate)
{
	u64 base = place_working_set(mib * MIB);
	if (!base) {
		say("DIRTY ERROR no room");
		return;
	}
	ws_base = (u8 *)base;
	ws_pages = mib * MIB / PAGE_SIZE;
	ws_mib = mib;
	ws_rate = rate;
	d_pos = 0;
	d_sweeps = 0;
	init_pos = 0;
	d_state = D_INIT; /* old RAM contents would fail the check: clear the set first */
}

static void check_start(void);

static void start_pending_check(void)
{
	if (checks_pending) {
		checks_pending--;
		check_start();
	}
}

static void init_done(void)
{
	d_state = D_RUN;
	credit = 0;
	credit_t = clock_ns();
	out_str("DIRTY mib=");
	out_dec(ws_mib);
	out_str(" rate=");
	out_dec(ws_rate);
	out_str(" base=");
	out_hex((u64)ws_base);
	out_end();
	start_pending_check();
}

static void check_start(void)
{
	checking = 1;
	ck_pos = 0;
	ck_edge = -1;
	ck_prev = ws_base[0];
}

static void check_end(void)
{
	checking = 0;
	credit = 0;
	credit_t = clock_ns();
	start_pending_check();
}

/* Returns 1 when the walk has finished (result printed). */
static int check_batch(u64 n)
{
	u64 end = ck_pos + n;
	if (end > ws_pages)
		end = ws_pages;
	while (ck_pos < end) {
		ck_pos += same_run(ws_base + ck_pos * PAGE_SIZE, end - ck_pos, ck_prev);
		if (ck_pos == end)
			break;
		u8 cur = ws_base[ck_pos * PAGE_SIZE];
		if (cur == (u8)(ck_prev - 1) && ck_edge < 0) {
			ck_edge = (s64)ck_pos;
			ck_prev = cur;
			ck_pos++;
			continue;
		}
		out_str("CHECK FAIL page=");
		out_dec(ck_pos);
		out_str(" prev=");
		out_dec(ck_prev);
		out_str(" cur=");
		out_dec(cur);
		out_end();
		check_end();
		return 1;
	}
	if (ck_pos < ws_pages)
		return 0;
	out_str("CHECK OK pages=");
	out_dec(ws_pages);
	out_str(" edge=");
	out_sdec(ck_edge);
	out_end();
	check_end();
	return 1;
}

/* Initialisation and check run in slices so heartbeats stay on time for large working sets. */
static void run_job(u64 deadline)
{
	do {
		if (d_state == D_INIT) {
			u64 k = ws_pages - init_pos;
			if (k > BATCH_PAGES)
				k = BATCH_PAGES;
			zero_pages(ws_base + init_pos * PAGE_SIZE, k);
			init_pos += k;
			if (init_pos == ws_pages) {
				init_done();
				return;
			}
		} else if (checking) {
			if (check_batch(BATCH_PAGES))
				return;
		} else {
			return;
		}
	} while (clock_ns() < deadline);
}

static void dirty_until(u64 deadline)
{
	do
		dirty_some(BATCH_PAGES);
	while (clock_ns() < deadline);
}

/* Token bucket: rate*elapsed pages, capped so a stall is not followed by a burst. */
static void dirty_rated(u64 now, u64 deadline)
{
	u64 pps = ws_rate * (MIB / PAGE_SIZE);
	u64 dt = now - credit_t;
	if (dt > NS_PER_S)
		dt = NS_PER_S;
	credit_t = now;
	credit += dt * pps;
	if (credit > CREDIT_CAP_NS * pps)
		credit = CREDIT_CAP_NS * pps;
	u64 pages = credit / NS_PER_S;
	while (pages) {
		u64 k = pages < BATCH_PAGES ? pages : BATCH_PAGES;
		dirty_some(k);
		pages -= k;
		credit -= k * NS_PER_S;
		if (clock_ns() >= deadline)
			break;
	}
}

/* ---------------- commands ---------------- */
static int word_eq(const char *w, size_t n, const char *s) { return strlen(s) == n && !memcmp(w, s, n); }

/* Splits on spaces; returns the number of words found (at most max). */
static int split(const char *s, size_t n, const char **w, size_t *wl, int max)
{
	int k = 0;
	size_t i = 0;
	while (i < n && k < max) {
		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			break;
		size_t st = i;
		while (i < n && s[i] != ' ')
			i++;
		w[k] = s + st;
		wl[k] = i - st;
		k++;
	}
	return k;
}

static void bad_args(const char *s, size_t n)
{
	out_str("ERROR bad arguments: ");
	out_strn(s, n);
	out_end();
}

static void handle_line(const char *s, size_t n)
{
	const char *w[6];
	size_t wl[6];
	int k = split(s, n, w, wl, 6);
	if (k == 0)
		return;
	if (word_eq(w[0], wl[0], "echo")) {
		size_t rest = (size_t)(w[0] + 4 - s); /* the text after "echo", spaces and all */
		out_str("ECHO");
		out_strn(s + rest, n - rest);
		out_end();
	} else if (word_eq(w[0], wl[0], "dirty")) {
		u64 mib, rate = 0;
		if (k < 2 || k > 3 || !parse_u64(w[1], wl[1], &mib) || mib == 0 || mib > MAX_MIB ||
		    (k == 3 && (!parse_u64(w[2], wl[2], &rate) || rate > MAX_RATE))) {
			bad_args(s, n);
			return;
		}
		while (checking) /* the old set's verdict first, then it is replaced */
			check_batch(BATCH_PAGES);
		dirty_start(mib, rate);
	} else if (word_eq(w[0], wl[0], "stop")) {
		if (d_state == D_RUN) {
			d_state = D_STOPPED;
		} else if (d_state == D_INIT) {
			d_state = D_NONE; /* a half-cleared set would fail any check */
			for (; checks_pending; checks_pending--)
				say("CHECK ERROR no working set");
		}
		out_str("STOPPED sweeps=");
		out_dec(d_sweeps);
		out_end();
	} else if (word_eq(w[0], wl[0], "check")) {
		if (checking || d_state == D_INIT)
			checks_pending++;
		else if (d_state == D_RUN || d_state == D_STOPPED)
			check_start();
		else
			say("CHECK ERROR no working set");
	} else if (word_eq(w[0], wl[0], "poweroff")) {
		say("POWEROFF");
		poweroff();
		delay_ns(500 * NS_PER_MS);
		say("POWEROFF FAILED");
		halt_forever();
	} else if (word_eq(w[0], wl[0], "reset")) {
		say("RESET");
		reset();
		delay_ns(500 * NS_PER_MS);
		say("RESET FAILED");
		halt_forever();
	} else if (word_eq(w[0], wl[0], "cpus")) {
		print_cpus();
	} else if (word_eq(w[0], wl[0], "mem")) {
		print_mem();
	} else if (devices_command(w, wl, k, s, n)) {
		/* PCI/virtio commands (blk*, netstat, announce, virtio) */
	} else {
		out_str("ERROR unknown command: ");
		out_strn(s, n);
		out_end();
	}
}

static char rx[256];
static size_t rx_len;

static void poll_serial(void)
{
	for (;;) {
		int c = uart_getc();
		if (c < 0)
			return;
		if (c == '\r' || c == '\n') {
			size_t n = rx_len;
			rx_len = 0;
			if (n)
				handle_line(rx, n);
		} else if (rx_len < sizeof(rx)) {
			rx[rx_len++] = (char)c;
		}
	}
}

/* key=value words; anything else (console=ttyS0, ...) is ignored. */
static void parse_cmdline(u64 *mib, u64 *rate)
{
	size_t i = 0;
	while (i < cmdline_len) {
		while (i < cmdline_len && cmdline[i] == ' ')
			i++;
		size_t st = i;
		while (i < cmdline_len && cmdline[i] != ' ')
			i++;
		const char *wd = cmdline + st;
		size_t n = i - st, eq = 0;
		while (eq < n && wd[eq] != '=')
			eq++;
		if (eq == n)
			continue;
		u64 v;
		if (!parse_u64(wd + eq + 1, n - eq - 1, &v))
			continue;
		if (word_eq(wd, eq, "hb_ms") && v > 0 && v <= 3600000)
			hb_period = v * NS_PER_MS;
		else if (word_eq(wd, eq, "dirty_mib") && v <= MAX_MIB)
			*mib = v;
		else if (word_eq(wd, eq, "dirty_rate") && v <= MAX_RATE)
			*rate = v;
	}
}

static void heartbeat(u64 seq, u64 now)
{
	out_str("HB seq=");
	out_dec(seq);
	out_str(" t=");
	out_dec(now);
	if (d_state == D_RUN) {
		out_str(" sweeps=");
		out_dec(d_sweeps);
	}
	out_end();
}

static int hb_started;
static u64 hb_seq, hb_next;

static void beat_if_due(void)
{
	if (!hb_started)
		return;
	u64 now = clock_ns();
	if (now >= hb_next) {
		heartbeat(hb_seq++, now);
		hb_next += hb_period;
		if (hb_next <= now) /* after a long stall (VM paused): no burst of late beats */
			hb_next = now + hb_period;
		devices_tick();
	}
}

/* The next time the main loop would wake: a beat, the serial poll, or the network poll without MSI-X. */
u64 next_deadline(u64 now)
{
	u64 deadline = now + POLL_NS;
	if (hb_started && hb_next < deadline)
		deadline = hb_next;
	if (devices_fast_poll() && deadline > now + FAST_POLL_NS)
		deadline = now + FAST_POLL_NS;
	return deadline;
}

/* Work that goes on while a command waits for a device: heartbeats and the network. */
int background(void)
{
	beat_if_due();
	return devices_poll();
}

void guest_main(u32 start_info_pa)
{
	uart_init();
	say("TSVIRT-GUEST BOOT");
	idt_init();
	pic_disable();

	u64 rsdp;
	read_start_info(start_info_pa, &rsdp);
	out_str("CMDLINE ");
	out_strn(cmdline, cmdline_len);
	out_end();
	print_mem();

	say(clock_init() ? "CLOCK kvmclock" : "CLOCK tsc");
	lapic_init();
	smp_init(rsdp);
	lapic_calibrate();
	print_cpus();
	pci_init();
	virtio_init(cmdline, cmdline_len);

	u64 mib = 0, rate = 0;
	parse_cmdline(&mib, &rate);
	say("READY");
	hb_next = clock_ns() + hb_period;
	hb_started = 1;
	map_high_memory();
	if (mib)
		dirty_start(mib, rate);
	devices_after_ready();

	for (;;) {
		beat_if_due();
		poll_serial();
		int more = devices_poll();
		u64 now = clock_ns();
		u64 deadline = more ? now : next_deadline(now);
		if (job_active()) {
			run_job(deadline);
		} else if (d_state == D_RUN && ws_rate == 0) {
			dirty_until(deadline);
		} else {
			if (d_state == D_RUN)
				dirty_rated(now, deadline);
			sleep_until(deadline);
		}
	}
}
