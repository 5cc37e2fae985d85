/*
 * ra-responder: answers IPv6 router solicitations from an allow-list of link-local addresses
 * with a router advertisement that says nothing (router lifetime 0, no prefix, M/O off), and
 * reports every router advertisement it hears from elsewhere. Never sends an advertisement
 * unasked. Policy (who is on the list, when to go quiet) lives in the appliance (appliance/ra/);
 * this program only does what Node cannot: a raw ICMPv6 socket.
 *
 * Why it exists: iPXE configures IPv6 next to DHCPv4 and waits for a router advertisement before
 * it uses either (about 15-18 s on a LAN without one). An empty RA ends that wait.
 *
 *   ra-responder IFNAME
 *
 * stdin, one command per line:
 *   allow [ADDR ...]   replace the allow-list (no address: answer nobody)
 *   solicit            send one router solicitation to ff02::2 (find routers already on the link)
 * stdout, one event per line:
 *   ready IFINDEX
 *   rs SRC answered|refused|limited
 *   ra SRC LIFETIME FLAGS     an RA from another router (FLAGS: the M/O/... byte, hex)
 * ("refused", "limited" and "ra" lines: at most MAX_REPORTS_PER_SECOND a second.)
 *   error TEXT
 * EOF on stdin ends it (the appliance is gone).
 *
 * Privilege: needs CAP_NET_RAW to open the socket (and to bind it to the interface); it drops
 * every capability right after, before reading any packet.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip6.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Upper bound of the allow-list; the appliance never sends more (registered + recent unknown). */
#define MAX_CLIENTS 8192 /* policy.ts MAX_ALLOWED */
/* One answer per client per this many milliseconds: iPXE retransmits an RS after 1-2 s at the
 * earliest, so this only bounds a flood that spoofs an allowed address (RFC 4861 §6.2.6 leaves
 * unicast answers unlimited; we are not a real router and have no reason to answer faster). */
#define MIN_ANSWER_INTERVAL_MS 500
/* Answers in all per second, whatever the sources. */
#define MAX_ANSWERS_PER_SECOND 50
/* Reports of refused solicitations and of other routers' RAs per second: a flood of forged
 * packets costs the appliance a bounded number of lines (the rest are not reported). */
#define MAX_REPORTS_PER_SECOND 20

struct client {
	struct in6_addr addr;
	long long last_ms;
};

static struct client clients[MAX_CLIENTS];
static int nclients;
static int ifindex;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Drops every capability (effective, permitted, inheritable, ambient): after the socket is
 * open nothing here needs one. */
static int drop_capabilities(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	return (int)syscall(SYS_capset, &hdr, data);
}

static int open_socket(const char *ifname)
{
	int s = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
	if (s < 0) {
		emit("error socket: %s", strerror(errno));
		return -1;
	}
	if (setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, ifname, strlen(ifname)) < 0) {
		emit("error bind to %s: %s", ifname, strerror(errno));
		return -1;
	}
	/* Only RS and RA reach us (RFC 3542 §3.2). */
	struct icmp6_filter filter;
	ICMP6_FILTER_SETBLOCKALL(&filter);
	ICMP6_FILTER_SETPASS(ND_ROUTER_SOLICIT, &filter);
	ICMP6_FILTER_SETPASS(ND_ROUTER_ADVERT, &filter);
	int on = 1, hops = 255, off = 0;
	struct ipv6_mreq all_routers;
	inet_pton(AF_INET6, "ff02::2", &all_routers.ipv6mr_multiaddr);
	all_routers.ipv6mr_interface = ifindex;
	/* ND messages go out with hop limit 255 and are accepted only with it (RFC 4861 §6.1). */
	if (setsockopt(s, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof(filter)) < 0 ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on)) < 0 ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &off, sizeof(off)) < 0 ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0 ||
	    /* RSs go to all-routers, which a host (forwarding off) has not joined. */
	    setsockopt(s, IPPROTO_IPV6, IPV6_JOIN_GROUP, &all_routers, sizeof(all_routers)) < 0) {
		emit("error setsockopt: %s", strerror(errno));
		return -1;
	}
	return s;
}

static struct client *find_client(const struct in6_addr *a)
{
	for (int i = 0; i < nclients; i++)
		if (memcmp(&clients[i].addr, a, sizeof(*a)) == 0)
			return &clients[i];
	return NULL;
}

/* "allow A B C": replaces the list; a client kept from the old list keeps its rate state. */
static void set_allow_list(char *args)
{
	static struct client next[MAX_CLIENTS];
	int n = 0;
	for (char *tok = strtok(args, " \t"); tok && n < MAX_CLIENTS; tok = strtok(NULL, " \t")) {
		struct in6_addr a;
		if (inet_pton(AF_INET6, tok, &a) != 1 || !IN6_IS_ADDR_LINKLOCAL(&a)) {
			emit("error not a link-local address: %s", tok);
			continue;
		}
		struct client *old = find_client(&a);
		next[n].addr = a;
		next[n].last_ms = old ? old->last_ms : 0;
		n++;
	}
	memcpy(clients, next, sizeof(next[0]) * n);
	nclients = n;
}

static void send_to(int s, const void *msg, size_t len, const char *dst)
{
	struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_scope_id = ifindex };
	inet_pton(AF_INET6, dst, &to.sin6_addr);
	if (sendto(s, msg, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		emit("error send to %s: %s", dst, strerror(errno));
}

/* RS to all-routers (RFC 4861 §4.1), no options: the kernel picks our link-local source. */
static void solicit(int s)
{
	struct nd_router_solicit rs;
	memset(&rs, 0, sizeof(rs));
	rs.nd_rs_type = ND_ROUTER_SOLICIT;
	send_to(s, &rs, sizeof(rs), "ff02::2");
}

/* The RA that says nothing (RFC 4861 §4.2): cur hop limit, M/O flags, reachable and retrans
 * timers unspecified (0), router lifetime 0 (not a default router), no options. The kernel fills
 * the checksum (RFC 3542 §3.1). */
static void answer(int s, const struct in6_addr *dst)
{
	struct nd_router_advert ra;
	memset(&ra, 0, sizeof(ra));
	ra.nd_ra_type = ND_ROUTER_ADVERT;
	char text[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, dst, text, sizeof(text));
	send_to(s, &ra, sizeof(ra), text);
}

/* True while this second's report budget lasts. */
static int may_report(long long now)
{
	static long long second_start;
	static int reports;
	if (now - second_start >= 1000) {
		second_start = now;
		reports = 0;
	}
	return reports++ < MAX_REPORTS_PER_SECOND;
}

static void receive(int s)
{
	unsigned char buf[1500];
	unsigned char cbuf[CMSG_SPACE(sizeof(int))];
	struct sockaddr_in6 from;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	ssize_t len = recvmsg(s, &mh, MSG_DONTWAIT);
	if (len < 0)
		return;
	int hoplimit = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)
			memcpy(&hoplimit, CMSG_DATA(c), sizeof(int));
	/* RFC 4861 §6.1.1, §6.1.2: hop limit 255 (never forwarded), code 0, long enough, and for an
	 * RA a link-local source. Anything else is dropped without a word. */
	if (hoplimit != 255 || len < 8 || buf[1] != 0)
		return;
	char src[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, &from.sin6_addr, src, sizeof(src));
	if (buf[0] == ND_ROUTER_ADVERT) {
		if (len < (ssize_t)sizeof(struct nd_router_advert) || !IN6_IS_ADDR_LINKLOCAL(&from.sin6_addr))
			return;
		const struct nd_router_advert *ra = (const void *)buf;
		if (may_report(now_ms()))
			emit("ra %s %u %02x", src, ntohs(ra->nd_ra_router_lifetime), ra->nd_ra_flags_reserved);
		return;
	}
	long long now = now_ms();
	/* An RS from the unspecified address cannot be answered by unicast; it is not on any list. */
	struct client *c = find_client(&from.sin6_addr);
	if (!c) {
		if (may_report(now))
			emit("rs %s refused", src);
		return;
	}
	static long long second_start;
	static int answers_this_second;
	if (now - second_start >= 1000) {
		second_start = now;
		answers_this_second = 0;
	}
	if (now - c->last_ms < MIN_ANSWER_INTERVAL_MS || answers_this_second >= MAX_ANSWERS_PER_SECOND) {
		if (may_report(now))
			emit("rs %s limited", src);
		return;
	}
	c->last_ms = now;
	answers_this_second++;
	answer(s, &from.sin6_addr);
	emit("rs %s answered", src);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s IFNAME\n", argv[0]);
		return 2;
	}
	/* The appliance going away without closing our stdin still ends us. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGPIPE, SIG_DFL);
	ifindex = (int)if_nametoindex(argv[1]);
	if (!ifindex) {
		emit("error no interface %s", argv[1]);
		return 1;
	}
	int s = open_socket(argv[1]);
	if (s < 0)
		return 1;
	if (drop_capabilities() < 0) {
		emit("error dropping capabilities: %s", strerror(errno));
		return 1;
	}
	emit("ready %d", ifindex);

	/* One "allow" line: up to MAX_CLIENTS addresses of at most 45 characters and a space. */
	static char line[MAX_CLIENTS * 46 + 64];
	size_t have = 0;
	struct pollfd fds[2] = { { .fd = 0, .events = POLLIN }, { .fd = s, .events = POLLIN } };
	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (fds[1].revents & POLLIN)
			receive(s);
		if (fds[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(0, line + have, sizeof(line) - 1 - have);
			if (n <= 0)
				return 0;
			have += (size_t)n;
			char *start = line, *nl;
			while ((nl = memchr(start, '\n', have - (size_t)(start - line)))) {
				*nl = 0;
				if (strncmp(start, "allow", 5) == 0 && (start[5] == ' ' || start[5] == 0))
					set_allow_list(start + 5);
				else if (strcmp(start, "solicit") == 0)
					solicit(s);
				else
					emit("error unknown command");
				start = nl + 1;
			}
			have -= (size_t)(start - line);
			memmove(line, start, have);
			if (have == sizeof(line) - 1) {
				emit("error command too long");
				have = 0;
			}
		}
	}
}
