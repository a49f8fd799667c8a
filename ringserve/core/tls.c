/*
 * tls.c - kTLS support: capture a connection's traffic secrets from OpenSSL,
 * install keys in the kernel.  See tls.h for the contract.
 */
#include "tls.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/tls.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TLS_SET_RECORD_TYPE
#define TLS_SET_RECORD_TYPE 1
#endif

#define RS_SECRETS_MAX 1024

struct rs_secrets {
	unsigned int len;
	char buf[RS_SECRETS_MAX];
};

static int rs_secrets_index = -1;

static void rs_secrets_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			    int idx, long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	if (ptr)
		OPENSSL_clear_free(ptr, sizeof(struct rs_secrets));
}

static int rs_wanted(const char *line)
{
	static const char *const labels[] = {
		"CLIENT_RANDOM ", "SERVER_TRAFFIC_SECRET_0 ",
		"CLIENT_TRAFFIC_SECRET_0 ",
	};
	unsigned int i;

	for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		if (!strncmp(line, labels[i], strlen(labels[i])))
			return 1;
	return 0;
}

/*
 * OpenSSL calls this during SSL_do_handshake() (with the GIL released by
 * Python's ssl module): keep only the lines kTLS needs, in the SSL's own
 * ex_data, so they die with the connection.  A line that does not fit is
 * dropped; the Python side then finds no secret and stays in userspace.
 */
static void rs_keylog(const SSL *ssl, const char *line)
{
	struct rs_secrets *s;
	size_t n;

	if (!rs_wanted(line))
		return;
	s = SSL_get_ex_data(ssl, rs_secrets_index);
	if (!s) {
		s = OPENSSL_zalloc(sizeof(*s));
		if (!s)
			return;
		if (!SSL_set_ex_data((SSL *)ssl, rs_secrets_index, s)) {
			OPENSSL_free(s);
			return;
		}
	}
	n = strlen(line);
	if (s->len + n + 1 > sizeof(s->buf))
		return;
	memcpy(s->buf + s->len, line, n);
	s->buf[s->len + n] = '\n';
	s->len += n + 1;
}

unsigned long rs_tls_openssl_version(void)
{
	return OpenSSL_version_num();
}

uint64_t rs_tls_ctx_options(void *ctx)
{
	return SSL_CTX_get_options(ctx);
}

int rs_tls_check(void *ctx, void *ssl)
{
	return SSL_get_SSL_CTX(ssl) == ctx ? 0 : -EINVAL;
}

int rs_tls_watch(void *ctx)
{
	if (rs_secrets_index < 0) {
		rs_secrets_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
							rs_secrets_free);
		if (rs_secrets_index < 0)
			return -ENOMEM;
	}
	SSL_CTX_set_keylog_callback(ctx, rs_keylog);
	return 0;
}

int rs_tls_take(void *ssl, char *out, unsigned int len)
{
	struct rs_secrets *s;
	int n;

	if (rs_secrets_index < 0)
		return -ENOENT;
	s = SSL_get_ex_data(ssl, rs_secrets_index);
	if (!s || !s->len)
		return -ENOENT;
	if (s->len > len)
		return -ENOSPC;
	memcpy(out, s->buf, s->len);
	n = s->len;
	OPENSSL_cleanse(s->buf, sizeof(s->buf));
	s->len = 0;
	return n;
}

int rs_tls_server_random(void *ssl, unsigned char *out)
{
	return SSL_get_server_random(ssl, out, 32) == 32 ? 0 : -EINVAL;
}

int rs_ktls_attach(int fd)
{
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return errno == EEXIST ? 0 : -errno;
	return 0;
}

int rs_ktls_set(int fd, int dir, const void *info, unsigned int len)
{
	return setsockopt(fd, SOL_TLS, dir, info, len) < 0 ? -errno : 0;
}

/*
 * A non-data record through kTLS TX: the record type travels in a
 * TLS_SET_RECORD_TYPE control message (Documentation/networking/tls.rst).
 */
int rs_ktls_alert(int fd, unsigned char level, unsigned char description)
{
	unsigned char alert[2] = { level, description };
	union {		/* aligned for struct cmsghdr, as CMSG_FIRSTHDR assumes */
		char buf[CMSG_SPACE(sizeof(unsigned char))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = alert, .iov_len = sizeof(alert) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg;
	ssize_t n;

	memset(&control, 0, sizeof(control));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(cmsg) = 21;	/* alert */
	n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n < 0 ? -errno : (int)n;
}
