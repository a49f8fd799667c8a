/*
 * tls.h - the C half of ringserve's kernel TLS (kTLS) support.
 *
 * The TLS handshake runs in OpenSSL (Python's ssl module, memory BIOs fed by
 * the ring).  Afterwards the keys go to the kernel with setsockopt(SOL_TLS),
 * so the ring's plain send/recv/splice carry plaintext.  OpenSSL offers no
 * getter for TLS 1.3 traffic secrets, only its keylog callback: rs_tls_watch()
 * installs one on the context that keeps the lines a connection needs in the
 * SSL object's ex_data, and rs_tls_take() hands them over once (then wipes
 * them).  Keys are derived in Python (ringserve/ktls.py).
 *
 * Pointers to SSL_CTX and SSL are passed as void * so that this header (also
 * the cffi cdef, see _build.py) needs no OpenSSL types.  Every function
 * returns >= 0 on success or a negative errno, and nothing calls into Python.
 */
#ifndef RINGSERVE_TLS_H
#define RINGSERVE_TLS_H

#include <stdint.h>

/* OpenSSL the extension was linked with (OpenSSL_version_num()) */
unsigned long rs_tls_openssl_version(void);
/* SSL_CTX_get_options(): lets Python check that a pointer is the context it thinks */
uint64_t rs_tls_ctx_options(void *ctx);
/* 0 when @ssl belongs to @ctx (SSL_get_SSL_CTX), else -EINVAL */
int rs_tls_check(void *ctx, void *ssl);

/* Install the keylog callback that captures traffic secrets on @ctx. */
int rs_tls_watch(void *ctx);
/*
 * Copy the captured keylog lines of @ssl ("CLIENT_RANDOM ...",
 * "SERVER_TRAFFIC_SECRET_0 ...", "CLIENT_TRAFFIC_SECRET_0 ...", each ending
 * in '\n') to @out and wipe them.  Returns their length, -ENOENT if none were
 * captured, -ENOSPC if @len is too small.
 */
int rs_tls_take(void *ssl, char *out, unsigned int len);
/* The 32-byte server random of @ssl's handshake (TLS 1.2 key expansion). */
int rs_tls_server_random(void *ssl, unsigned char *out);

/* Attach the "tls" upper layer protocol to a connected TCP socket. */
int rs_ktls_attach(int fd);
/* Install a struct tls12_crypto_info_* for @dir (1 = TLS_TX, 2 = TLS_RX). */
int rs_ktls_set(int fd, int dir, const void *info, unsigned int len);
/*
 * Send a TLS alert record (close_notify: level 1, description 0) through
 * kTLS TX, non-blocking.  Returns the bytes sent or -errno.
 */
int rs_ktls_alert(int fd, unsigned char level, unsigned char description);

#endif /* RINGSERVE_TLS_H */
