/*
 * ring.h - the whole C API of ringserve's io_uring core.
 *
 * This header is also the only source of the cffi cdef (see _build.py, which
 * drops the preprocessor lines), so it holds plain declarations only.
 *
 * The core knows nothing of HTTP and never calls into Python.  Every function
 * returns >= 0 on success or a negative errno.  Python owns every buffer it
 * hands to rs_send()/rs_sendmsg() and keeps it alive until the final CQE of
 * that request; the core owns the provided receive buffers.
 *
 * user_data: ringserve packs (key << 8) | op; the low byte is one of the
 * RS_OP_* values below.  The core reads nothing else of it.
 */
#ifndef RINGSERVE_RING_H
#define RINGSERVE_RING_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

enum rs_op {
	RS_OP_ACCEPT = 1,
	RS_OP_RECV = 2,
	RS_OP_SEND = 3,
	RS_OP_CLOSE = 4,
	RS_OP_CANCEL = 5,
	RS_OP_POLL = 6,
	RS_OP_SPLICE_IN = 7,
	RS_OP_SPLICE_OUT = 8,
	RS_OP_NOP = 9,
	RS_OP_WAKE = 11,
};

/* rs_ring_create() wants */
enum rs_want {
	RS_WANT_SQPOLL = 1,
	RS_WANT_NO_DEFER = 2,	/* skip DEFER_TASKRUN (eventfd-driven loops) */
};

/* rs_info.caps bits: what this kernel gave us */
enum rs_cap {
	RS_CAP_SINGLE_ISSUER = 1,
	RS_CAP_DEFER_TASKRUN = 2,
	RS_CAP_COOP_TASKRUN = 4,
	RS_CAP_SQPOLL = 8,
	RS_CAP_EXT_ARG = 16,
	RS_CAP_FAST_POLL = 32,
	RS_CAP_REG_RING_FD = 64,
	RS_CAP_SPLICE = 128,
	RS_CAP_CQE_SKIP = 256,
};

/* CQE flag bits, as the kernel sets them */
enum rs_cqe_flag {
	RS_F_BUFFER = 1,
	RS_F_MORE = 2,
	RS_F_SOCK_NONEMPTY = 4,
	RS_BUFFER_SHIFT = 16,
};

struct rs_info {
	unsigned int entries;		/* SQ entries after ENOMEM shrinking */
	unsigned int setup_flags;	/* IORING_SETUP_* in use */
	unsigned int features;		/* IORING_FEAT_* from the kernel */
	unsigned int caps;		/* RS_CAP_* */
	unsigned int buf_count;
	unsigned int buf_size;
	int memlock_raised;		/* 1 if the soft RLIMIT_MEMLOCK was raised */
	int fell_back;			/* setup attempts that failed with -EINVAL */
};

struct rs_counters {
	uint64_t sqes;		/* SQEs prepared */
	uint64_t enters;	/* io_uring_enter calls made by rs_wait */
	uint64_t cqes;		/* CQEs reaped */
	int64_t inflight;	/* requests without their final CQE yet */
	int64_t bufs_out;	/* provided buffers handed out, not recycled */
	uint64_t enobufs;	/* receives that ended with -ENOBUFS */
	uint64_t waits;		/* rs_wait calls */
};

struct rs_ring;

int rs_ring_create(struct rs_ring **out, unsigned int entries,
		   unsigned int buf_count, unsigned int buf_size,
		   unsigned int want);
void rs_ring_destroy(struct rs_ring *r);
void rs_ring_info(const struct rs_ring *r, struct rs_info *info);
void rs_ring_counters(const struct rs_ring *r, struct rs_counters *c);
int rs_ring_fd(const struct rs_ring *r);
unsigned char *rs_buf_base(const struct rs_ring *r);

int rs_wait(struct rs_ring *r, int64_t *out, unsigned int max,
	    int64_t timeout_ns);
int rs_submit(struct rs_ring *r);
int rs_register_eventfd(struct rs_ring *r, int efd);

int rs_accept(struct rs_ring *r, int fd, uint64_t ud, int multishot);
int rs_recv(struct rs_ring *r, int fd, uint64_t ud, int multishot);
void rs_recycle(struct rs_ring *r, unsigned int bid);
int rs_send(struct rs_ring *r, int fd, const char *buf, unsigned int len,
	    uint64_t ud);
int rs_sendmsg(struct rs_ring *r, int fd, const struct msghdr *msg,
	       uint64_t ud);
int rs_send_partial(struct rs_ring *r, int fd, const char *buf,
		    unsigned int len, uint64_t ud);
int rs_sendmsg_partial(struct rs_ring *r, int fd, const struct msghdr *msg,
		       uint64_t ud);
int rs_splice(struct rs_ring *r, int file_fd, int64_t off, int pipe_w,
	      int pipe_r, int sock_fd, unsigned int len, uint64_t ud_in,
	      uint64_t ud_out);
int rs_splice_out(struct rs_ring *r, int pipe_r, int sock_fd,
		  unsigned int len, uint64_t ud);
int rs_poll(struct rs_ring *r, int fd, unsigned int mask, uint64_t ud);
int rs_cancel(struct rs_ring *r, uint64_t target, uint64_t ud);
int rs_close(struct rs_ring *r, int fd, uint64_t ud);
int rs_nop(struct rs_ring *r, uint64_t ud);
int rs_read(struct rs_ring *r, int fd, void *buf, unsigned int len,
	    uint64_t ud);

int rs_peer(int fd, char *host, unsigned int hostlen, int *port);
int rs_shutdown_fd(int fd, int how);
int rs_raise_memlock(void);

#endif /* RINGSERVE_RING_H */
