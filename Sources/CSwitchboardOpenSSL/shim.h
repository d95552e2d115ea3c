#ifndef C_SWITCHBOARD_OPENSSL_SHIM_H
#define C_SWITCHBOARD_OPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/opensslv.h>

// OpenSSL 3 exposes these as macros, which Swift cannot import. Each shim is
// a one-line static inline wrapper with the macro's exact meaning.

static inline int switchboard_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int switchboard_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline int switchboard_SSL_CTX_get_min_proto_version(SSL_CTX *ctx) {
    return (int)SSL_CTX_get_min_proto_version(ctx);
}

static inline long switchboard_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline uint64_t switchboard_SSL_CTX_set_options(SSL_CTX *ctx, uint64_t options) {
    return SSL_CTX_set_options(ctx, options);
}

static inline int switchboard_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline void switchboard_BIO_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
static inline void switchboard_BIO_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }

static const uint64_t switchboard_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t switchboard_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t switchboard_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const long switchboard_SSL_MODE_ENABLE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long switchboard_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;

static inline int switchboard_SSL_R_UNEXPECTED_EOF_WHILE_READING(void) {
    return SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

// Used by the TLS handler in Transport (Sources/Transport/TLS).

// A memory BIO that runs dry reports "retry" (-1) instead of end-of-file (0), so that OpenSSL
// asks for more bytes rather than treating an empty buffer as the peer closing.
static inline long switchboard_BIO_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}

static inline int switchboard_ERR_GET_LIB(unsigned long code) { return ERR_GET_LIB(code); }
static inline int switchboard_ERR_GET_REASON(unsigned long code) { return ERR_GET_REASON(code); }

static const unsigned long switchboard_XN_FLAG_RFC2253 = XN_FLAG_RFC2253;

static inline int switchboard_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}

static inline GENERAL_NAME *switchboard_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}

static const long switchboard_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;

// ALPN on a server that speaks HTTP/1.1 (https:// listeners): "http/1.1" when the client offers
// it; a client that offers protocols but not this one is refused with no_application_protocol
// (RFC 7301, 3.2); a client that offers none is served without ALPN.
static int switchboard_select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                     const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    static const unsigned char supported[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, supported, sizeof(supported), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static inline void switchboard_SSL_CTX_select_http11(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, switchboard_select_http11, NULL);
}


#endif
