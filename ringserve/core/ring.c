// SPDX-License-Identifier: MIT
/*
 * ring.c - ringserve's io_uring core on liburing (>= 2.3).
 *
 * One ring per worker process, created after fork and used from one thread
 * (SINGLE_ISSUER).  Python prepares requests with the rs_* calls below and
 * reaps completions with rs_wait(), which submits, waits and copies a whole
 * batch of CQEs into an array Python owns: one cffi call and one
 * io_uring_enter per loop iteration.
 *
 * Receives use one provided-buffer ring (buffer group 0).  A buffer handed
 * out in a CQE belongs to Python until rs_recycle() gives it back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/un.h>
#include <liburing.h>

#include "ring.h"

#define RS_BGID		0
#define RS_MIN_ENTRIES	32
#define RS_BATCH	256

struct rs_ring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	unsigned char *bufs;
	size_t br_bytes;
	size_t bufs_bytes;
	unsigned int buf_mask;
	bool ring_ok;
	bool br_registered;
	struct rs_info info;
	struct rs_counters c;
};

/*
 * Setup flag sets, newest first.  DEFER_TASKRUN (6.1) runs completion work
 * only when we enter the ring, which is what a single-threaded loop wants;
 * older kernels reject unknown flags with -EINVAL, so we fall back one set
 * at a time.  The last set drops CQSIZE/SUBMIT_ALL for very old kernels.
 */
static const unsigned int rs_flag_sets[] = {
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
		IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	0,
};

static const unsigned int rs_sqpoll_sets[] = {
	IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER,
	IORING_SETUP_SQPOLL,
};

int rs_raise_memlock(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
		return -errno;
	if (rl.rlim_cur >= rl.rlim_max)
		return 0;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0)
		return -errno;
	return 1;
}

/*
 * Try one flag set, halving the ring on -ENOMEM (RLIMIT_MEMLOCK is still
 * charged for ring memory when the process lacks CAP_IPC_LOCK).
 */
static int rs_try_setup(struct rs_ring *r, unsigned int *entries,
			unsigned int flags, bool extras)
{
	struct io_uring_params p;
	int ret;

	for (;;) {
		memset(&p, 0, sizeof(p));
		p.flags = flags;
		if (extras) {
			p.flags |= IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
			p.cq_entries = *entries * 4;
		}
		if (flags & IORING_SETUP_SQPOLL)
			p.sq_thread_idle = 100;
		ret = io_uring_queue_init_params(*entries, &r->ring, &p);
		if (ret != -ENOMEM || *entries <= RS_MIN_ENTRIES)
			break;
		*entries /= 2;
	}
	if (ret == 0) {
		r->info.setup_flags = p.flags;
		r->info.features = p.features;
	}
	return ret;
}

static int rs_setup(struct rs_ring *r, unsigned int entries, unsigned int want)
{
	const unsigned int *sets = rs_flag_sets;
	size_t n = sizeof(rs_flag_sets) / sizeof(rs_flag_sets[0]);
	size_t i;
	int ret = -EINVAL;

	if (want & RS_WANT_SQPOLL) {
		sets = rs_sqpoll_sets;
		n = sizeof(rs_sqpoll_sets) / sizeof(rs_sqpoll_sets[0]);
	}
	for (i = 0; i < n; i++) {
		if ((want & RS_WANT_NO_DEFER) &&
		    (sets[i] & IORING_SETUP_DEFER_TASKRUN))
			continue;
		ret = rs_try_setup(r, &entries, sets[i], true);
		if (ret != -EINVAL)
			break;
		r->info.fell_back++;
	}
	if (ret == -EINVAL && !(want & RS_WANT_SQPOLL))
		ret = rs_try_setup(r, &entries, 0, false);
	if (ret == 0)
		r->info.entries = entries;
	return ret;
}

/*
 * A seccomp profile may allow io_uring_setup and block io_uring_enter, so a
 * ring is only usable once a NOP has made the round trip.
 */
static int rs_nop_round_trip(struct rs_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	struct io_uring_cqe *cqe;
	int ret;

	if (!sqe)
		return -EBUSY;
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, RS_OP_NOP);
	ret = io_uring_submit_and_wait(&r->ring, 1);
	if (ret < 0)
		return ret;
	ret = io_uring_peek_cqe(&r->ring, &cqe);
	if (ret < 0)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(&r->ring, cqe);
	return ret;
}

/* The opcodes the core cannot do without; SPLICE is optional (a cap). */
static int rs_probe(struct rs_ring *r)
{
	static const int needed[] = {
		IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SEND,
		IORING_OP_SENDMSG, IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD,
		IORING_OP_CLOSE,
	};
	struct io_uring_probe *probe = io_uring_get_probe_ring(&r->ring);
	size_t i;
	int ret = 0;

	if (!probe)
		return -ENOSYS;
	for (i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		if (!io_uring_opcode_supported(probe, needed[i]))
			ret = -EOPNOTSUPP;
	if (io_uring_opcode_supported(probe, IORING_OP_SPLICE))
		r->info.caps |= RS_CAP_SPLICE;
	io_uring_free_probe(probe);
	return ret;
}

/*
 * The provided-buffer ring, registered by hand: liburing 2.3 lacks
 * io_uring_setup_buf_ring().  Both areas are mmap()ed so they are page
 * aligned, as the kernel requires of the ring.
 */
static int rs_setup_bufs(struct rs_ring *r, unsigned int count,
			 unsigned int size)
{
	struct io_uring_buf_reg reg;
	unsigned int i;
	int ret;

	if (count == 0 || (count & (count - 1)) || count > 32768 || size == 0)
		return -EINVAL;
	r->br_bytes = count * sizeof(struct io_uring_buf);
	r->br = mmap(NULL, r->br_bytes, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (r->br == MAP_FAILED) {
		r->br = NULL;
		return -ENOMEM;
	}
	r->bufs_bytes = (size_t)count * size;
	r->bufs = mmap(NULL, r->bufs_bytes, PROT_READ | PROT_WRITE,
		       MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (r->bufs == MAP_FAILED) {
		r->bufs = NULL;
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)r->br;
	reg.ring_entries = count;
	reg.bgid = RS_BGID;
	ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (ret < 0)
		return ret;
	r->br_registered = true;
	io_uring_buf_ring_init(r->br);
	r->buf_mask = io_uring_buf_ring_mask(count);
	for (i = 0; i < count; i++)
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * size, size,
				      i, r->buf_mask, i);
	io_uring_buf_ring_advance(r->br, count);
	r->info.buf_count = count;
	r->info.buf_size = size;
	return 0;
}

static void rs_fill_caps(struct rs_ring *r)
{
	unsigned int f = r->info.setup_flags;

	if (f & IORING_SETUP_SINGLE_ISSUER)
		r->info.caps |= RS_CAP_SINGLE_ISSUER;
	if (f & IORING_SETUP_DEFER_TASKRUN)
		r->info.caps |= RS_CAP_DEFER_TASKRUN;
	if (f & IORING_SETUP_COOP_TASKRUN)
		r->info.caps |= RS_CAP_COOP_TASKRUN;
	if (f & IORING_SETUP_SQPOLL)
		r->info.caps |= RS_CAP_SQPOLL;
	if (r->info.features & IORING_FEAT_EXT_ARG)
		r->info.caps |= RS_CAP_EXT_ARG;
	if (r->info.features & IORING_FEAT_FAST_POLL)
		r->info.caps |= RS_CAP_FAST_POLL;
	if (r->info.features & IORING_FEAT_CQE_SKIP)
		r->info.caps |= RS_CAP_CQE_SKIP;
}

int rs_ring_create(struct rs_ring **out, unsigned int entries,
		   unsigned int buf_count, unsigned int buf_size,
		   unsigned int want)
{
	struct rs_ring *r;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->info.memlock_raised = rs_raise_memlock() > 0;
	ret = rs_setup(r, entries, want);
	if (ret < 0)
		goto fail;
	r->ring_ok = true;
	rs_fill_caps(r);
	ret = rs_nop_round_trip(r);
	if (ret < 0)
		goto fail;
	ret = rs_probe(r);
	if (ret < 0)
		goto fail;
	if (io_uring_register_ring_fd(&r->ring) == 1)
		r->info.caps |= RS_CAP_REG_RING_FD;
	ret = rs_setup_bufs(r, buf_count, buf_size);
	if (ret < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	rs_ring_destroy(r);
	return ret;
}

void rs_ring_destroy(struct rs_ring *r)
{
	if (!r)
		return;
	if (r->br_registered)
		io_uring_unregister_buf_ring(&r->ring, RS_BGID);
	if (r->ring_ok)
		io_uring_queue_exit(&r->ring);
	if (r->br)
		munmap(r->br, r->br_bytes);
	if (r->bufs)
		munmap(r->bufs, r->bufs_bytes);
	free(r);
}

void rs_ring_info(const struct rs_ring *r, struct rs_info *info)
{
	*info = r->info;
}

void rs_ring_counters(const struct rs_ring *r, struct rs_counters *c)
{
	*c = r->c;
}

int rs_ring_fd(const struct rs_ring *r)
{
	return r->ring.ring_fd;
}

unsigned char *rs_buf_base(const struct rs_ring *r)
{
	return r->bufs;
}

/*
 * Get @n SQEs' worth of room, submitting what is queued when the SQ is full
 * (rare: the SQ is sized for a whole batch).  Counts the requests as in
 * flight until their final CQE.
 */
static struct io_uring_sqe *rs_sqe(struct rs_ring *r, unsigned int n)
{
	struct io_uring_sqe *sqe;

	if (io_uring_sq_space_left(&r->ring) < n) {
		io_uring_submit(&r->ring);
		r->c.enters++;
		if (io_uring_sq_space_left(&r->ring) < n)
			return NULL;
	}
	sqe = io_uring_get_sqe(&r->ring);
	if (sqe) {
		r->c.sqes++;
		r->c.inflight++;
	}
	return sqe;
}

int rs_submit(struct rs_ring *r)
{
	r->c.enters++;
	return io_uring_submit(&r->ring);
}

/*
 * For loops that only wait on readiness (uvloop): the eventfd is a hint that
 * completions may be ready; with DEFER_TASKRUN they are posted by the next
 * rs_wait(), which enters with GETEVENTS.
 */
int rs_register_eventfd(struct rs_ring *r, int efd)
{
	return io_uring_register_eventfd(&r->ring, efd);
}

/*
 * Decide whether this iteration has to enter the kernel at all when it must
 * not block: with SQEs queued, with DEFER_TASKRUN (completions are only
 * posted when we enter) or when the kernel flagged pending task work.
 */
static bool rs_must_enter(struct rs_ring *r)
{
	if (io_uring_sq_ready(&r->ring))
		return true;
	if (io_uring_cq_ready(&r->ring))
		return false;
	if (r->info.setup_flags & IORING_SETUP_DEFER_TASKRUN)
		return true;
	return IO_URING_READ_ONCE(*r->ring.sq.kflags) &
	       (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
}

static int rs_enter(struct rs_ring *r, int64_t timeout_ns)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;

	if (timeout_ns == 0 || io_uring_cq_ready(&r->ring)) {
		if (!rs_must_enter(r))
			return 0;
		r->c.enters++;
		return io_uring_submit_and_get_events(&r->ring);
	}
	r->c.enters++;
	if (timeout_ns < 0)
		return io_uring_submit_and_wait(&r->ring, 1);
	ts.tv_sec = timeout_ns / 1000000000;
	ts.tv_nsec = timeout_ns % 1000000000;
	return io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
}

/*
 * Submit what is queued, wait up to @timeout_ns (0: don't wait, < 0:
 * forever) for at least one CQE, and copy up to @max CQEs into @out as
 * (user_data, res, flags) triples.  Returns the number of CQEs copied.
 * A request whose CQE lacks IORING_CQE_F_MORE is finished: multishot
 * requests end that way too, and the caller re-arms them.
 */
int rs_wait(struct rs_ring *r, int64_t *out, unsigned int max,
	    int64_t timeout_ns)
{
	struct io_uring_cqe *cqes[RS_BATCH];
	unsigned int got = 0, n, i;
	int ret;

	r->c.waits++;
	ret = rs_enter(r, timeout_ns);
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN &&
	    ret != -EBUSY)
		return ret;
	while (got < max) {
		n = max - got;
		if (n > RS_BATCH)
			n = RS_BATCH;
		n = io_uring_peek_batch_cqe(&r->ring, cqes, n);
		if (!n)
			break;
		for (i = 0; i < n; i++, got++) {
			const struct io_uring_cqe *cqe = cqes[i];

			out[3 * got] = (int64_t)cqe->user_data;
			out[3 * got + 1] = cqe->res;
			out[3 * got + 2] = cqe->flags;
			if (!(cqe->flags & IORING_CQE_F_MORE))
				r->c.inflight--;
			if (cqe->flags & IORING_CQE_F_BUFFER)
				r->c.bufs_out++;
			if (cqe->res == -ENOBUFS)
				r->c.enobufs++;
		}
		io_uring_cq_advance(&r->ring, n);
	}
	r->c.cqes += got;
	return (int)got;
}

/*
 * Multishot accept (5.19) posts one CQE per connection and stays armed while
 * IORING_CQE_F_MORE is set; the caller re-arms when it clears (-ENFILE,
 * -EMFILE end it).  No address is asked for: each connection would overwrite
 * it.  Accepted sockets inherit TCP_NODELAY from the listener.
 */
int rs_accept(struct rs_ring *r, int fd, uint64_t ud, int multishot)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	if (multishot)
		io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * Receive into a buffer the kernel picks from group 0.  Multishot (6.0)
 * keeps posting CQEs; it ends on EOF, error, cancel or -ENOBUFS (the buffer
 * ring ran dry), all without IORING_CQE_F_MORE.
 */
int rs_recv(struct rs_ring *r, int fd, uint64_t ud, int multishot)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	if (multishot)
		io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RS_BGID;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/* Give buffer @bid back to the kernel once Python has consumed it. */
void rs_recycle(struct rs_ring *r, unsigned int bid)
{
	if (bid >= r->info.buf_count)
		return;
	io_uring_buf_ring_add(r->br, r->bufs + (size_t)bid * r->info.buf_size,
			      r->info.buf_size, bid, r->buf_mask, 0);
	io_uring_buf_ring_advance(r->br, 1);
	r->c.bufs_out--;
}

static int rs_prep_send(struct rs_ring *r, int fd, const char *buf,
			unsigned int len, uint64_t ud, int flags)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_send(sqe, fd, buf, len, flags);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/* Gather send: @msg and every iovec behind it live until the CQE. */
static int rs_prep_sendmsg(struct rs_ring *r, int fd,
			   const struct msghdr *msg, uint64_t ud, int flags)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_sendmsg(sqe, fd, msg, flags);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * MSG_WAITALL makes io_uring retry a short send internally, so one CQE
 * reports the whole buffer (or an error).  The caller keeps one send in
 * flight per socket: two unlinked sends can interleave their bytes.
 */
int rs_send(struct rs_ring *r, int fd, const char *buf, unsigned int len,
	    uint64_t ud)
{
	return rs_prep_send(r, fd, buf, len, ud, MSG_NOSIGNAL | MSG_WAITALL);
}

int rs_sendmsg(struct rs_ring *r, int fd, const struct msghdr *msg,
	       uint64_t ud)
{
	return rs_prep_sendmsg(r, fd, msg, ud, MSG_NOSIGNAL | MSG_WAITALL);
}

/*
 * The same two without MSG_WAITALL, for kTLS sockets: tls_sw_sendmsg()
 * refuses any flag but MORE, DONTWAIT and NOSIGNAL with -EOPNOTSUPP, so a
 * short send comes back as such and the caller sends the rest.
 */
int rs_send_partial(struct rs_ring *r, int fd, const char *buf,
		    unsigned int len, uint64_t ud)
{
	return rs_prep_send(r, fd, buf, len, ud, MSG_NOSIGNAL);
}

int rs_sendmsg_partial(struct rs_ring *r, int fd, const struct msghdr *msg,
		       uint64_t ud)
{
	return rs_prep_sendmsg(r, fd, msg, ud, MSG_NOSIGNAL);
}

/*
 * File to socket with no copy through userspace: there is no sendfile
 * opcode, so splice file -> pipe and pipe -> socket, linked.  A short first
 * splice fails the link (the second CQE is -ECANCELED); the caller then
 * moves what reached the pipe with rs_splice_out().
 */
int rs_splice(struct rs_ring *r, int file_fd, int64_t off, int pipe_w,
	      int pipe_r, int sock_fd, unsigned int len, uint64_t ud_in,
	      uint64_t ud_out)
{
	struct io_uring_sqe *sqe;

	sqe = rs_sqe(r, 2);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_splice(sqe, file_fd, off, pipe_w, -1, len, 0);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ud_in);
	sqe = rs_sqe(r, 1);
	io_uring_prep_splice(sqe, pipe_r, -1, sock_fd, -1, len, 0);
	io_uring_sqe_set_data64(sqe, ud_out);
	return 0;
}

int rs_splice_out(struct rs_ring *r, int pipe_r, int sock_fd,
		  unsigned int len, uint64_t ud)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_splice(sqe, pipe_r, -1, sock_fd, -1, len, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/* One-shot readiness poll for descriptors the core does not own. */
int rs_poll(struct rs_ring *r, int fd, unsigned int mask, uint64_t ud)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, fd, mask);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int rs_cancel(struct rs_ring *r, uint64_t target, uint64_t ud)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel64(sqe, target, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * Closing the descriptor does not end requests the ring holds on it (they
 * keep a file reference), so cancel everything on @fd first.  HARDLINK: the
 * close must run even when there was nothing to cancel (-ENOENT).
 */
int rs_close(struct rs_ring *r, int fd, uint64_t ud)
{
	struct io_uring_sqe *sqe;

	sqe = rs_sqe(r, 2);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	sqe->flags |= IOSQE_IO_HARDLINK;
	io_uring_sqe_set_data64(sqe, (ud & ~0xffULL) | RS_OP_CANCEL);
	sqe = rs_sqe(r, 1);
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * A plain read into a caller-owned buffer that outlives the CQE: ringserve
 * reads an eventfd this way, so a thread's wake-up costs the loop thread no
 * syscall of its own (the CQE arrives with the batch).
 */
int rs_read(struct rs_ring *r, int fd, void *buf, unsigned int len,
	    uint64_t ud)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int rs_nop(struct rs_ring *r, uint64_t ud)
{
	struct io_uring_sqe *sqe = rs_sqe(r, 1);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * shutdown(2) now, not through the ring: IORING_OP_SHUTDOWN is always
 * punted to io-wq (REQ_F_FORCE_ASYNC), where the fd number is looked up
 * only when a worker runs it.  By then the connection may have been closed
 * and the number reused by the next accept, and the shutdown would hit that
 * new connection (it did: a fresh request got a FIN with nothing sent).
 */
int rs_shutdown_fd(int fd, int how)
{
	return shutdown(fd, how) < 0 ? -errno : 0;
}

/*
 * The peer's address, once per connection (io_uring has no getpeername
 * before 6.19).  Returns the address family; host is "" for AF_UNIX.
 */
int rs_peer(int fd, char *host, unsigned int hostlen, int *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	*port = 0;
	if (hostlen)
		host[0] = '\0';
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		if (!inet_ntop(AF_INET, &sin->sin_addr, host, hostlen))
			return -errno;
		*port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		if (!inet_ntop(AF_INET6, &sin6->sin6_addr, host, hostlen))
			return -errno;
		*port = ntohs(sin6->sin6_port);
	}
	return ss.ss_family;
}
