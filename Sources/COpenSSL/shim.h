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

#endif
