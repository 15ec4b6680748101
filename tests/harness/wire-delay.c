/* The wire between two test hosts: forwards every frame between two interfaces, each one a fixed delay after it arrived.
 *
 * This kernel has no netem (nor fq or etf, which honour an eBPF-set departure time), so the delay is made here: in the
 * middle namespace of A <-veth-> [wa  wire-delay  wb] <-veth-> B. Frames are read and written through AF_PACKET
 * sockets with virtio-net headers, so TSO/GSO super-frames (up to 64 KiB) cross whole and 1 Gbit/s costs a few
 * thousand frames a second. A frame leaves at (kernel receive time + delay), in arrival order; the rate is shaped by
 * tc on the hosts' own veth ends, not here.
 *
 * usage: wire-delay IFACE_A IFACE_B DELAY_US OWNER_PID
 * Binds both sockets, then forks: the parent prints the child's pid and exits (so the caller knows the wire is up when
 * the command returns), the child forwards until killed, until an interface goes away (its namespace was deleted), or
 * until OWNER_PID is gone (the test process died without cleaning up).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAX (256 * 1024)         /* virtio-net header + the largest GSO frame, with room to spare */
#define QUEUE_BYTES_MAX (64 << 20)     /* per direction; beyond this the wire drops, as a full link would */
#define SOCK_BUF (8 << 20)

struct frame {
  struct frame *next;
  int64_t due_ns; /* CLOCK_REALTIME, the clock of SO_TIMESTAMPNS */
  size_t len;
  unsigned char data[];
};

struct direction {
  int in, out;
  struct frame *head, *tail;
  size_t queued;
};

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int open_port(const char *ifname) {
  unsigned idx = if_nametoindex(ifname);
  if (!idx) { fprintf(stderr, "wire-delay: no interface %s\n", ifname); exit(2); }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) { perror("wire-delay: socket"); exit(2); }
  int one = 1, size = SOCK_BUF;
  /* Frames keep their GSO and checksum-offload state across the wire; our own sends are not read back. */
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) {
    perror("wire-delay: setsockopt");
    exit(2);
  }
  struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx };
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { perror("wire-delay: bind"); exit(2); }
  return fd;
}

/* Reads every frame waiting on d->in and queues it to leave delay_ns after the kernel received it. */
static int take_in(struct direction *d, int64_t delay_ns, unsigned char *buf) {
  for (;;) {
    char ctrl[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = { buf, FRAME_MAX };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl };
    ssize_t n = recvmsg(d->in, &m, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    int64_t now = now_ns(), at = now;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec t;
        memcpy(&t, CMSG_DATA(c), sizeof t);
        int64_t stamp = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
        if (stamp <= now && now - stamp < 1000000000LL) at = stamp; /* ignore a stamp from a clock step */
      }
    if (n > FRAME_MAX || d->queued + (size_t)n > QUEUE_BYTES_MAX) continue; /* dropped */
    struct frame *f = malloc(sizeof *f + (size_t)n);
    if (!f) continue;
    f->next = NULL;
    f->due_ns = at + delay_ns;
    f->len = (size_t)n;
    memcpy(f->data, buf, (size_t)n);
    if (d->tail) d->tail->next = f; else d->head = f;
    d->tail = f;
    d->queued += f->len;
  }
}

/* Sends the frames that are due; returns the due time of the next one, or INT64_MAX when none is queued. */
static int64_t give_out(struct direction *d) {
  int64_t now = now_ns();
  while (d->head && d->head->due_ns <= now) {
    struct frame *f = d->head;
    if (send(d->out, f->data, f->len, 0) < 0 && (errno == EAGAIN || errno == ENOBUFS))
      return now + 20000; /* the socket's send buffer is full: retry shortly; any other error drops the frame */
    d->head = f->next;
    if (!d->head) d->tail = NULL;
    d->queued -= f->len;
    free(f);
  }
  return d->head ? d->head->due_ns : INT64_MAX;
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: wire-delay IFACE_A IFACE_B DELAY_US OWNER_PID\n"); return 2; }
  int64_t delay_ns = atoll(argv[3]) * 1000;
  pid_t owner = (pid_t)atoi(argv[4]);
  int a = open_port(argv[1]), b = open_port(argv[2]);
  pid_t child = fork();
  if (child < 0) { perror("wire-delay: fork"); return 2; }
  if (child > 0) { printf("%d\n", (int)child); return 0; }
  setsid();
  /* Let go of the caller's pipes, so the command that started us returns now. */
  if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) return 2;
  prctl(PR_SET_TIMERSLACK, 1UL); /* wake on the microsecond, not 50 us late */

  struct direction dirs[2] = { { .in = a, .out = b }, { .in = b, .out = a } };
  unsigned char *buf = malloc(FRAME_MAX);
  int64_t last_owner_check = 0;
  for (int stop = 0; !stop;) {
    int64_t next = INT64_MAX;
    for (int i = 0; i < 2; i++) {
      int64_t due = give_out(&dirs[i]);
      if (due < next) next = due;
    }
    int64_t now = now_ns();
    if (now - last_owner_check > 1000000000LL) {
      if (kill(owner, 0) < 0 && errno == ESRCH) break;
      last_owner_check = now;
    }
    int64_t wait = next == INT64_MAX ? 1000000000LL : next - now;
    if (wait < 0) wait = 0;
    if (wait > 1000000000LL) wait = 1000000000LL;
    struct timespec ts = { wait / 1000000000, wait % 1000000000 };
    struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
    int r = ppoll(p, 2, &ts, NULL);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if ((p[0].revents | p[1].revents) & (POLLERR | POLLHUP | POLLNVAL)) break; /* an interface went away */
    for (int i = 0; i < 2; i++)
      if (p[i].revents & POLLIN && take_in(&dirs[i], delay_ns, buf) < 0) stop = 1;
  }
  return 0;
}
