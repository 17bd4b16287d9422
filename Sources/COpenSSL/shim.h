#ifndef WHP_COPENSSL_SHIM_H
#define WHP_COPENSSL_SHIM_H

// Only the OpenSSL 3 API, nothing deprecated.
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// One-shot SHA-256. Returns 1 on success.
static inline int whp_sha256(const unsigned char *data, size_t len, unsigned char out[32]) {
    unsigned int outlen = 0;
    return EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) == 1 && outlen == 32;
}

// One-shot HMAC-SHA256. Returns 1 on success.
static inline int whp_hmac_sha256(const unsigned char *key, size_t keylen,
                                  const unsigned char *data, size_t len,
                                  unsigned char out[32]) {
    unsigned int outlen = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) != NULL && outlen == 32;
}

// Streaming SHA-256 for files and exports.
static inline EVP_MD_CTX *whp_sha256_new(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
static inline int whp_sha256_update(EVP_MD_CTX *ctx, const unsigned char *data, size_t len) {
    return EVP_DigestUpdate(ctx, data, len);
}
static inline int whp_sha256_final(EVP_MD_CTX *ctx, unsigned char out[32]) {
    unsigned int outlen = 0;
    int ok = EVP_DigestFinal_ex(ctx, out, &outlen) == 1 && outlen == 32;
    EVP_MD_CTX_free(ctx);
    return ok;
}
static inline void whp_sha256_free(EVP_MD_CTX *ctx) { EVP_MD_CTX_free(ctx); }

static inline int whp_rand_bytes(unsigned char *buf, int num) { return RAND_bytes(buf, num); }

static inline void whp_cleanse(void *ptr, size_t len) { OPENSSL_cleanse(ptr, len); }

// ---------------------------------------------------------------------------
// Fast paths: the same libcrypto SHA-256 and HMAC-SHA256, byte-identical to the
// one-shot functions above, without their per-call costs. OpenSSL 3's one-shot
// EVP_Digest/HMAC look the algorithm up (under a lock) and allocate a context
// on every call: about 1 us per HMAC, 0.45 us per short SHA-256 here. These
// fetch each algorithm once per process and reuse contexts.

// Fetched once per process, kept for its lifetime (a lost race frees its copy).
static inline EVP_MD *whp_sha256_md(void) {
    static EVP_MD *md = NULL;
    EVP_MD *m = __atomic_load_n(&md, __ATOMIC_ACQUIRE);
    if (m != NULL) return m;
    m = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (m == NULL) return NULL;
    EVP_MD *expected = NULL;
    if (!__atomic_compare_exchange_n(&md, &expected, m, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_MD_free(m);
        return expected;
    }
    return m;
}

static inline EVP_MAC *whp_hmac_mac(void) {
    static EVP_MAC *mac = NULL;
    EVP_MAC *m = __atomic_load_n(&mac, __ATOMIC_ACQUIRE);
    if (m != NULL) return m;
    m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (m == NULL) return NULL;
    EVP_MAC *expected = NULL;
    if (!__atomic_compare_exchange_n(&mac, &expected, m, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_MAC_free(m);
        return expected;
    }
    return m;
}

// An HMAC-SHA256 context with its digest set and no key yet. One thread at a time.
static inline EVP_MAC_CTX *whp_hmac_ctx_new(void) {
    EVP_MAC *mac = whp_hmac_mac();
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);
    if (c == NULL) return NULL;
    OSSL_PARAM p[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(c, p) != 1) {
        EVP_MAC_CTX_free(c);
        return NULL;
    }
    return c;
}
static inline void whp_hmac_ctx_free(EVP_MAC_CTX *c) { EVP_MAC_CTX_free(c); }

// HMAC(key, data) on a reusable context: sets the key (the key schedule is
// computed here) and MACs one message. Returns 1 on success.
static inline int whp_hmac_ctx_keyed(EVP_MAC_CTX *c, const unsigned char *key, size_t keylen,
                                     const unsigned char *data, size_t len, unsigned char out[32]) {
    size_t outl = 0;
    return EVP_MAC_init(c, key, keylen, NULL) == 1 && EVP_MAC_update(c, data, len) == 1
        && EVP_MAC_final(c, out, &outl, 32) == 1 && outl == 32;
}

// Whether re-initialising a keyed HMAC context without a key restarts it under
// the same key (OpenSSL 3's HMAC provider does: the key schedule is kept). Checked
// once per process against the one-shot HMAC; if it ever fails, callers re-key.
static inline int whp__hmac_reinit_works(void) {
    static int state = 0;  // 0 unknown, 1 yes, 2 no
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s != 0) return s == 1;
    int ok = 0;
    EVP_MAC_CTX *c = whp_hmac_ctx_new();
    if (c != NULL) {
        const unsigned char key[32] = {7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                       16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
        const unsigned char m1[3] = {'a', 'b', 'c'}, m2[5] = {'w', 'h', 'p', '/', '1'};
        unsigned char a[32], b[32], ea[32], eb[32];
        size_t la = 0, lb = 0;
        unsigned int ua = 0, ub = 0;
        ok = EVP_MAC_init(c, key, 32, NULL) == 1 && EVP_MAC_update(c, m1, 3) == 1 && EVP_MAC_final(c, a, &la, 32) == 1
            && EVP_MAC_init(c, NULL, 0, NULL) == 1 && EVP_MAC_update(c, m2, 5) == 1 && EVP_MAC_final(c, b, &lb, 32) == 1
            && HMAC(EVP_sha256(), key, 32, m1, 3, ea, &ua) != NULL && HMAC(EVP_sha256(), key, 32, m2, 5, eb, &ub) != NULL
            && la == 32 && lb == 32 && ua == 32 && ub == 32 && memcmp(a, ea, 32) == 0 && memcmp(b, eb, 32) == 0;
        EVP_MAC_CTX_free(c);
    }
    __atomic_store_n(&state, ok ? 1 : 2, __ATOMIC_RELEASE);
    return ok;
}

// A context keyed once (the key schedule precomputed), then used for many
// messages under that key with whp_hmac_ctx_mac. The key bytes are copied.
typedef struct {
    EVP_MAC_CTX *ctx;
    int reinit;                 // 1: restart with EVP_MAC_init(ctx, NULL, ...)
    unsigned char key[64];      // for re-keying when reinit is not available
    size_t keylen;
} whp_hmac_key;

static inline whp_hmac_key *whp_hmac_key_new(const unsigned char *key, size_t keylen) {
    if (keylen > 64) return NULL;
    whp_hmac_key *k = (whp_hmac_key *)calloc(1, sizeof(whp_hmac_key));
    if (k == NULL) return NULL;
    k->ctx = whp_hmac_ctx_new();
    if (k->ctx == NULL || EVP_MAC_init(k->ctx, key, keylen, NULL) != 1) {
        EVP_MAC_CTX_free(k->ctx);
        free(k);
        return NULL;
    }
    memcpy(k->key, key, keylen);
    k->keylen = keylen;
    k->reinit = whp__hmac_reinit_works();
    return k;
}

static inline void whp_hmac_key_free(whp_hmac_key *k) {
    if (k == NULL) return;
    EVP_MAC_CTX_free(k->ctx);
    OPENSSL_cleanse(k->key, sizeof k->key);
    free(k);
}

// HMAC(key, data ‖ data2) under the precomputed key (data2 may be NULL/0). Returns 1 on success.
static inline int whp_hmac_key_mac2(whp_hmac_key *k, const unsigned char *data, size_t len,
                                    const unsigned char *data2, size_t len2, unsigned char out[32]) {
    size_t outl = 0;
    int ok = k->reinit ? EVP_MAC_init(k->ctx, NULL, 0, NULL) : EVP_MAC_init(k->ctx, k->key, k->keylen, NULL);
    return ok == 1 && EVP_MAC_update(k->ctx, data, len) == 1
        && (len2 == 0 || EVP_MAC_update(k->ctx, data2, len2) == 1)
        && EVP_MAC_final(k->ctx, out, &outl, 32) == 1 && outl == 32;
}

// Per-thread contexts for the stateless entry points (Crypto.sha256 / Crypto.hmac),
// freed when the thread exits.
typedef struct {
    EVP_MD_CTX *md;
    EVP_MAC_CTX *mac;
} whp__thread_ctx;

// (Function-local statics: file-scope ones in a header are not emitted for Swift.)
static inline pthread_key_t *whp__thread_key(void) {
    static pthread_key_t key;
    return &key;
}

static inline void whp__thread_ctx_free(void *p) {
    whp__thread_ctx *t = (whp__thread_ctx *)p;
    EVP_MD_CTX_free(t->md);
    EVP_MAC_CTX_free(t->mac);
    free(t);
}
static inline void whp__thread_key_init(void) { (void)pthread_key_create(whp__thread_key(), whp__thread_ctx_free); }

static inline whp__thread_ctx *whp__thread(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (pthread_once(&once, whp__thread_key_init) != 0) return NULL;
    whp__thread_ctx *t = (whp__thread_ctx *)pthread_getspecific(*whp__thread_key());
    if (t != NULL) return t;
    t = (whp__thread_ctx *)calloc(1, sizeof(whp__thread_ctx));
    if (t == NULL) return NULL;
    t->md = EVP_MD_CTX_new();
    t->mac = whp_hmac_ctx_new();
    if (t->md == NULL || t->mac == NULL || pthread_setspecific(*whp__thread_key(), t) != 0) {
        whp__thread_ctx_free(t);
        return NULL;
    }
    return t;
}

// SHA-256 of a ‖ b (b may be NULL/0) on this thread's reusable context. Returns 1 on success.
static inline int whp_sha256_fast2(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen,
                                   unsigned char out[32]) {
    whp__thread_ctx *t = whp__thread();
    EVP_MD *md = whp_sha256_md();
    if (t == NULL || md == NULL) return 0;
    unsigned int outlen = 0;
    return EVP_DigestInit_ex2(t->md, md, NULL) == 1 && EVP_DigestUpdate(t->md, a, alen) == 1
        && (blen == 0 || EVP_DigestUpdate(t->md, b, blen) == 1)
        && EVP_DigestFinal_ex(t->md, out, &outlen) == 1 && outlen == 32;
}

// HMAC-SHA256 with any key on this thread's reusable context. Returns 1 on success.
static inline int whp_hmac_sha256_fast(const unsigned char *key, size_t keylen,
                                       const unsigned char *data, size_t len, unsigned char out[32]) {
    whp__thread_ctx *t = whp__thread();
    if (t == NULL) return 0;
    return whp_hmac_ctx_keyed(t->mac, key, keylen, data, len, out);
}

// A reusable SHA-256 context with the fetched algorithm.
static inline EVP_MD_CTX *whp_sha256_ctx_new(void) { return EVP_MD_CTX_new(); }
static inline int whp_sha256_ctx_init(EVP_MD_CTX *ctx) {
    EVP_MD *md = whp_sha256_md();
    return md != NULL && EVP_DigestInit_ex2(ctx, md, NULL) == 1;
}
static inline int whp_sha256_ctx_final(EVP_MD_CTX *ctx, unsigned char out[32]) {
    unsigned int outlen = 0;
    return EVP_DigestFinal_ex(ctx, out, &outlen) == 1 && outlen == 32;
}

#endif
