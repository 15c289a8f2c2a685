/*
 * keyring.c: the key hierarchy (KEK -> keyring master key -> data keys and
 * the pseudonymization key), the keyring file, and sealing and opening
 * values with AES-256-GCM. The only file that touches key bytes.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "tenantd.h"

#define KR_MAGIC	"TENANTKR"
#define KR_VERSION	1
#define KEY_LEN		32
#define NONCE_LEN	12
#define TAG_LEN		16
#define SLOT_LEN	(NONCE_LEN + KEY_LEN + TAG_LEN)
#define FP_LEN		16
#define SALT_LEN	16
#define MAC_LEN		32
#define MAX_TERMS	256
#define HDR_LEN		(8 + 2 + 1 + 1 + 4 + 4 + SALT_LEN + FP_LEN + \
			 SLOT_LEN + 8 + 1 + FP_LEN + SLOT_LEN + 4 + \
			 SLOT_LEN + 4)
#define TERM_LEN	(4 + 1 + 8 + 8 + SLOT_LEN)
#define FILE_MAX	(HDR_LEN + MAX_TERMS * TERM_LEN + MAC_LEN)
#define SEAL_VERSION	1
#define SEAL_HDR	(1 + 4 + NONCE_LEN)
#define RESERVE_BLOCK	(1ULL << 20)
#define RECOVERY_BYTES	20
#define RECOVERY_CHECK	5
#define PASSPHRASE_MIN	12
#define PASSPHRASE_MAX	1024
#define SCRYPT_LOG2N	17	/* N = 131072, r = 8, p = 1: 128 MiB */
#define SCRYPT_R	8
#define SCRYPT_P	1
#define CTX_POOL	16	/* keyed GCM contexts kept per term */
#define NONCE_POOL	(NONCE_LEN * 85)

enum kek_kind { KEK_RAW = 1, KEK_SCRYPT = 2 };

struct kek_header {
	uint8_t		kind;
	uint8_t		log2n;
	uint32_t	r, p;
	uint8_t		salt[SALT_LEN];
	uint8_t		fp[FP_LEN];
	uint8_t		slot[SLOT_LEN];	/* the master key wrapped by the KEK */
};

struct kr_term {
	uint32_t	term;
	uint8_t		state;
	uint64_t	created;	/* unix seconds */
	uint64_t	reserved;	/* seals reserved in the file */
	uint64_t	seals;		/* atomic; an upper bound */
	uint8_t		slot[SLOT_LEN];
	EVP_CIPHER_CTX	*pool[CTX_POOL];	/* keyed, under pool_mtx */
	int		npool;
};

/* All key bytes, in one locked mapping excluded from core dumps. */
struct kr_secrets {
	uint8_t	kmk[KEY_LEN];
	uint8_t	pseudo[KEY_LEN];
	uint8_t	dk[MAX_TERMS][KEY_LEN];
};

struct keyring {
	pthread_rwlock_t	 lock;
	pthread_mutex_t		 pool_mtx;
	char			*path;
	struct kek_header	 kek;
	uint64_t		 created;
	uint8_t			 has_recovery;
	uint8_t			 recovery_fp[FP_LEN];
	uint8_t			 recovery_slot[SLOT_LEN];
	uint32_t		 pseudo_gen;
	uint8_t			 pseudo_slot[SLOT_LEN];
	struct kr_term		 terms[MAX_TERMS];	/* term i+1 */
	uint32_t		 nterms;
	uint32_t		 active;		/* index */
	uint64_t		 rotate_after, rotate_seals;
	time_t			 retry_at;
	struct kr_secrets	*sec;
	EVP_CIPHER		*gcm;
};

struct wbuf {
	uint8_t	*p;
	size_t	 len;
};

struct rbuf {
	const uint8_t	*p;
	size_t		 len, off;
};

static const char *const kr_state_names[] = {
	[KEYRING_TERM_ACTIVE] = "active",
	[KEYRING_TERM_DECRYPT_ONLY] = "decrypt-only",
	[KEYRING_TERM_DESTROYED] = "destroyed",
};

static const char *const kr_errors[] = {
	[-KEYRING_OK] = "ok",
	[-KEYRING_EAUTH] = "sealed value failed authentication",
	[-KEYRING_EFORMAT] = "not a sealed value",
	[-KEYRING_ETERM] = "value sealed under an unknown or destroyed key",
	[-KEYRING_EIO] = "keyring file could not be updated",
};

static void	kr_ctx_flush(struct kr_term *);

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

const char *
keyring_strerror(int code)
{
	if (code > 0 || (size_t)-code >= nitems(kr_errors))
		return "unknown keyring error";
	return kr_errors[-code];
}

/* --- primitives ------------------------------------------------------- */

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
wput(struct wbuf *w, const void *src, size_t len)
{
	memcpy(w->p + w->len, src, len);
	w->len += len;
}

static void
wput_uint(struct wbuf *w, uint64_t v, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		w->p[w->len + i] = v >> (8 * (len - 1 - i));
	w->len += len;
}

/* Bounded reads: past the end they return zeros; the caller checks off. */
static void
rget(struct rbuf *r, void *dst, size_t len)
{
	if (r->off + len > r->len) {
		memset(dst, 0, len);
		r->off = r->len + 1;
		return;
	}
	memcpy(dst, r->p + r->off, len);
	r->off += len;
}

static uint64_t
rget_uint(struct rbuf *r, size_t len)
{
	uint8_t		b[8];
	uint64_t	v = 0;
	size_t		i;

	rget(r, b, len);
	for (i = 0; i < len; i++)
		v = v << 8 | b[i];
	return v;
}

static void
b32_encode(const uint8_t *in, size_t len, char *out)
{
	size_t		i, bits = 0, o = 0;
	uint32_t	acc = 0;

	for (i = 0; i < len; i++) {
		acc = acc << 8 | in[i];
		for (bits += 8; bits >= 5; bits -= 5)
			out[o++] = b32_alphabet[(acc >> (bits - 5)) & 31];
	}
	if (bits > 0)
		out[o++] = b32_alphabet[(acc << (5 - bits)) & 31];
	out[o] = '\0';
}

static void
random_bytes(void *p, size_t len)
{
	if (RAND_bytes(p, (int)len) != 1)
		fatalx("keyring: RAND_bytes failed");
}

/* HKDF-Expand (RFC 5869) for one SHA-256 block: the inputs are uniform. */
static void
kr_derive(const uint8_t *key, size_t keylen, const char *label, uint8_t *out)
{
	uint8_t		info[64];
	unsigned int	len = KEY_LEN;
	size_t		n = strlen(label);

	memcpy(info, label, n);
	info[n] = 1;
	if (HMAC(EVP_sha256(), key, (int)keylen, info, n + 1, out,
	    &len) == NULL)
		fatalx("keyring: HMAC failed");
}

/* AES-256-GCM over in[len] with a two-part AAD; the tag follows out[len]
 * when sealing and is read from tag when opening. */
static int
gcm_crypt(EVP_CIPHER *gcm, int enc, const uint8_t *key, const uint8_t *nonce,
    const void *aad1, size_t aad1len, const void *aad2, size_t aad2len,
    const uint8_t *in, size_t len, uint8_t *out, const uint8_t *tag)
{
	EVP_CIPHER_CTX	*ctx;
	uint8_t		 tagbuf[TAG_LEN];
	int		 n, ok;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		fatalx("keyring: EVP_CIPHER_CTX_new");
	ok = EVP_CipherInit_ex2(ctx, gcm, key, nonce, enc, NULL) == 1 &&
	    (aad1len == 0 || EVP_CipherUpdate(ctx, NULL, &n, aad1,
	    (int)aad1len) == 1) &&
	    (aad2len == 0 || EVP_CipherUpdate(ctx, NULL, &n, aad2,
	    (int)aad2len) == 1) &&
	    (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1);
	if (ok && !enc) {
		memcpy(tagbuf, tag, TAG_LEN);
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
		    tagbuf) == 1;
	}
	ok = ok && EVP_CipherFinal_ex(ctx, out + len, &n) == 1;
	if (ok && enc) {
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
		    tagbuf) == 1;
		memcpy(out + len, tagbuf, TAG_LEN);
	}
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* A slot is nonce || AES-256-GCM(key) || tag, with a label as AAD. */
static void
slot_wrap(EVP_CIPHER *gcm, const uint8_t *wrapkey, const char *label,
    uint32_t n, const uint8_t *key, uint8_t *slot)
{
	uint8_t	aad[4];

	put32(aad, n);
	random_bytes(slot, NONCE_LEN);
	if (gcm_crypt(gcm, 1, wrapkey, slot, label, strlen(label), aad, 4,
	    key, KEY_LEN, slot + NONCE_LEN, NULL) != 0)
		fatalx("keyring: AES-GCM failed");
}

static int
slot_unwrap(EVP_CIPHER *gcm, const uint8_t *wrapkey, const char *label,
    uint32_t n, const uint8_t *slot, uint8_t *key)
{
	uint8_t	aad[4];

	put32(aad, n);
	return gcm_crypt(gcm, 0, wrapkey, slot, label, strlen(label), aad, 4,
	    slot + NONCE_LEN, KEY_LEN, key, slot + NONCE_LEN + KEY_LEN);
}

static struct kr_secrets *
secrets_alloc(void)
{
	static int	 warned;
	void		*p;

	p = mmap(NULL, sizeof(struct kr_secrets), PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fatal("keyring: mmap");
	if (mlock(p, sizeof(struct kr_secrets)) == -1 && !warned++)
		log_warn("keyring: mlock (key material may be swapped)");
	if (madvise(p, sizeof(struct kr_secrets), MADV_DONTDUMP) == -1)
		log_warn("keyring: madvise MADV_DONTDUMP");
	return p;
}

static void
secrets_free(struct kr_secrets *sec)
{
	OPENSSL_cleanse(sec, sizeof(*sec));
	munlock(sec, sizeof(*sec));
	munmap(sec, sizeof(*sec));
}

void
keyring_protect_process(void)
{
	struct rlimit	rl = { 0, 0 };

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("prctl PR_SET_DUMPABLE");
	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		log_warn("setrlimit RLIMIT_CORE");
}

/* --- the KEK ---------------------------------------------------------- */

static int
kek_read_file(const char *ref, uint8_t *buf, size_t max, size_t *len,
    char *err, size_t errlen)
{
	char	*path = NULL;
	ssize_t	 n;
	int	 rv = -1;

	if (secret_resolve(ref, &path, err, errlen) == 0 &&
	    secret_check_file(path, err, errlen) == 0 &&
	    (n = secret_read(path, buf, max, err, errlen)) >= 0) {
		*len = (size_t)n;
		rv = 0;
	}
	free(path);
	return rv;
}

static int
kek_raw(const char *ref, const struct kek_header *h, uint8_t *kek,
    char *err, size_t errlen)
{
	uint8_t	buf[KEY_LEN];
	size_t	len;
	int	rv = -1;

	/* secret_read refuses a file longer than the buffer. */
	if (kek_read_file(ref, buf, sizeof(buf), &len, err, errlen) == -1)
		return -1;
	if (len != KEY_LEN)
		snprintf(err, errlen, "KEK %s: expected exactly %d random "
		    "bytes, found %zu", ref, KEY_LEN, len);
	else {
		memcpy(kek, buf, KEY_LEN);
		rv = 0;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return rv;
}

static int
kek_scrypt(uint8_t *pass, size_t len, const struct kek_header *h,
    uint8_t *kek)
{
	EVP_KDF		*kdf;
	EVP_KDF_CTX	*ctx;
	uint64_t	 n = 1ULL << h->log2n, maxmem = 1ULL << 30;
	uint32_t	 r = h->r, p = h->p;
	uint8_t		 salt[SALT_LEN];
	OSSL_PARAM	 params[7];
	int		 ok;

	memcpy(salt, h->salt, SALT_LEN);
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
	    pass, len);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	    salt, SALT_LEN);
	params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
	params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
	params[5] = OSSL_PARAM_construct_uint64(
	    OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
	params[6] = OSSL_PARAM_construct_end();
	if ((kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL)) == NULL)
		return -1;
	ctx = EVP_KDF_CTX_new(kdf);
	ok = ctx != NULL && EVP_KDF_derive(ctx, kek, KEY_LEN, params) == 1;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : -1;
}

static int
kek_passphrase(const char *ref, const struct kek_header *h, uint8_t *kek,
    char *err, size_t errlen)
{
	uint8_t	buf[PASSPHRASE_MAX + 1];
	size_t	len;
	int	rv = -1;

	if (kek_read_file(ref, buf, sizeof(buf), &len, err, errlen) == -1)
		return -1;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len < PASSPHRASE_MIN || len > PASSPHRASE_MAX)
		snprintf(err, errlen, "KEK passphrase-file:%s: a passphrase "
		    "must have %d to %d bytes", ref, PASSPHRASE_MIN,
		    PASSPHRASE_MAX);
	else if (kek_scrypt(buf, len, h, kek) == -1)
		snprintf(err, errlen, "KEK passphrase-file:%s: scrypt failed "
		    "(N=2^%u r=%u p=%u)", ref, h->log2n, h->r, h->p);
	else
		rv = 0;
	OPENSSL_cleanse(buf, sizeof(buf));
	return rv;
}

static const struct kek_source {
	const char	*prefix;
	int		 keep_prefix;	/* pass "credential:NAME" whole */
	uint8_t		 kind;
	int		(*load)(const char *, const struct kek_header *,
			    uint8_t *, char *, size_t);
} kek_sources[] = {
	{ "file:", 0, KEK_RAW, kek_raw },
	{ "credential:", 1, KEK_RAW, kek_raw },
	{ "passphrase-file:", 0, KEK_SCRYPT, kek_passphrase },
};

static const struct kek_source *
kek_source_find(const char *spec, char *err, size_t errlen)
{
	size_t	i;

	for (i = 0; spec != NULL && i < nitems(kek_sources); i++)
		if (strncmp(spec, kek_sources[i].prefix,
		    strlen(kek_sources[i].prefix)) == 0)
			return &kek_sources[i];
	snprintf(err, errlen, "KEK source '%s' is not file:PATH, "
	    "credential:NAME or passphrase-file:PATH",
	    spec == NULL ? "" : spec);
	return NULL;
}

/*
 * Derive the KEK from spec. When fresh, the header's kind and scrypt
 * parameters are set (new salt); otherwise they come from the file and
 * must match the source's kind. Fills h->fp and returns the KEK wrap key.
 */
static int
kek_load(const char *spec, struct kek_header *h, int fresh, unsigned log2n,
    uint8_t *wrapkey, char *err, size_t errlen)
{
	const struct kek_source	*src;
	uint8_t			 kek[KEY_LEN], fp[KEY_LEN];

	if ((src = kek_source_find(spec, err, errlen)) == NULL)
		return -1;
	if (fresh) {
		h->kind = src->kind;
		h->log2n = log2n ? log2n : SCRYPT_LOG2N;
		h->r = SCRYPT_R;
		h->p = SCRYPT_P;
		random_bytes(h->salt, SALT_LEN);
	} else if (h->kind != src->kind) {
		snprintf(err, errlen, "the keyring was made with a %s KEK "
		    "but the KEK source is %s", h->kind == KEK_SCRYPT ?
		    "passphrase" : "raw key", spec);
		return -1;
	}
	if (src->load(spec + (src->keep_prefix ? 0 :
	    strlen(src->prefix)), h, kek, err, errlen) == -1)
		return -1;
	kr_derive(kek, KEY_LEN, "tenantd keyring kek fingerprint v1", fp);
	kr_derive(kek, KEY_LEN, "tenantd keyring kek wrap v1", wrapkey);
	OPENSSL_cleanse(kek, sizeof(kek));
	if (!fresh && !timingsafe_eq(fp, h->fp, FP_LEN)) {
		snprintf(err, errlen, "the KEK from %s is not the key this "
		    "keyring was made with (fingerprint mismatch)", spec);
		OPENSSL_cleanse(wrapkey, KEY_LEN);
		return -1;
	}
	memcpy(h->fp, fp, FP_LEN);
	return 0;
}

/* --- the keyring file ------------------------------------------------- */

static size_t
kr_serialize(struct keyring *kr, uint8_t *buf)
{
	struct wbuf	 w = { buf, 0 };
	struct kr_term	*t;
	uint8_t		 mackey[KEY_LEN];
	unsigned int	 maclen = MAC_LEN;
	uint32_t	 i;

	wput(&w, KR_MAGIC, 8);
	wput_uint(&w, KR_VERSION, 2);
	wput_uint(&w, kr->kek.kind, 1);
	wput_uint(&w, kr->kek.log2n, 1);
	wput_uint(&w, kr->kek.r, 4);
	wput_uint(&w, kr->kek.p, 4);
	wput(&w, kr->kek.salt, SALT_LEN);
	wput(&w, kr->kek.fp, FP_LEN);
	wput(&w, kr->kek.slot, SLOT_LEN);
	wput_uint(&w, kr->created, 8);
	wput_uint(&w, kr->has_recovery, 1);
	wput(&w, kr->recovery_fp, FP_LEN);
	wput(&w, kr->recovery_slot, SLOT_LEN);
	wput_uint(&w, kr->pseudo_gen, 4);
	wput(&w, kr->pseudo_slot, SLOT_LEN);
	wput_uint(&w, kr->nterms, 4);
	for (i = 0; i < kr->nterms; i++) {
		t = &kr->terms[i];
		wput_uint(&w, t->term, 4);
		wput_uint(&w, t->state, 1);
		wput_uint(&w, t->created, 8);
		wput_uint(&w, t->reserved, 8);
		wput(&w, t->slot, SLOT_LEN);
	}
	kr_derive(kr->sec->kmk, KEY_LEN, "tenantd keyring file mac v1", mackey);
	if (HMAC(EVP_sha256(), mackey, KEY_LEN, buf, w.len, buf + w.len,
	    &maclen) == NULL)
		fatalx("keyring: HMAC failed");
	OPENSSL_cleanse(mackey, sizeof(mackey));
	return w.len + MAC_LEN;
}

static int
kr_parse_terms(struct keyring *kr, struct rbuf *r, char *err, size_t errlen)
{
	struct kr_term	*t;
	uint32_t	 i, nactive = 0;

	for (i = 0; i < kr->nterms; i++) {
		t = &kr->terms[i];
		t->term = rget_uint(r, 4);
		t->state = rget_uint(r, 1);
		t->created = rget_uint(r, 8);
		t->reserved = rget_uint(r, 8);
		t->seals = t->reserved;
		rget(r, t->slot, SLOT_LEN);
		if (r->off > r->len)
			return 0;	/* the length check reports it */
		if (t->term != i + 1 || t->state < KEYRING_TERM_ACTIVE ||
		    t->state > KEYRING_TERM_DESTROYED) {
			snprintf(err, errlen, "keyring %s: term entry %u is "
			    "malformed", kr->path, i + 1);
			return -1;
		}
		if (t->state == KEYRING_TERM_ACTIVE) {
			kr->active = i;
			nactive++;
		}
	}
	if (nactive != 1) {
		snprintf(err, errlen, "keyring %s: %u active terms (expected "
		    "one)", kr->path, nactive);
		return -1;
	}
	return 0;
}

static int
kr_parse(struct keyring *kr, const uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	struct rbuf	r = { buf, len, 0 };
	char		magic[8];
	size_t		want;

	rget(&r, magic, 8);
	if (len < 8) {
		snprintf(err, errlen, "keyring %s is truncated (%zu bytes)",
		    kr->path, len);
		return -1;
	}
	if (len < HDR_LEN + MAC_LEN && memcmp(magic, KR_MAGIC, 8) == 0) {
		snprintf(err, errlen, "keyring %s is truncated (%zu bytes)",
		    kr->path, len);
		return -1;
	}
	if (len < HDR_LEN + MAC_LEN || memcmp(magic, KR_MAGIC, 8) != 0) {
		snprintf(err, errlen, "%s is not a tenantd keyring (bad magic)",
		    kr->path);
		return -1;
	}
	if (rget_uint(&r, 2) != KR_VERSION) {
		snprintf(err, errlen, "keyring %s: unsupported format version",
		    kr->path);
		return -1;
	}
	kr->kek.kind = rget_uint(&r, 1);
	kr->kek.log2n = rget_uint(&r, 1);
	kr->kek.r = rget_uint(&r, 4);
	kr->kek.p = rget_uint(&r, 4);
	rget(&r, kr->kek.salt, SALT_LEN);
	rget(&r, kr->kek.fp, FP_LEN);
	rget(&r, kr->kek.slot, SLOT_LEN);
	kr->created = rget_uint(&r, 8);
	kr->has_recovery = rget_uint(&r, 1);
	rget(&r, kr->recovery_fp, FP_LEN);
	rget(&r, kr->recovery_slot, SLOT_LEN);
	kr->pseudo_gen = rget_uint(&r, 4);
	rget(&r, kr->pseudo_slot, SLOT_LEN);
	kr->nterms = rget_uint(&r, 4);
	if (kr->nterms == 0 || kr->nterms > MAX_TERMS ||
	    (kr->kek.kind != KEK_RAW && kr->kek.kind != KEK_SCRYPT) ||
	    (kr->kek.kind == KEK_SCRYPT && (kr->kek.log2n < 10 ||
	    kr->kek.log2n > 20 || kr->kek.r == 0 || kr->kek.r > 32 ||
	    kr->kek.p == 0 || kr->kek.p > 16))) {
		snprintf(err, errlen, "keyring %s: header is malformed "
		    "(tampered?)", kr->path);
		kr->nterms = 0;
		return -1;
	}
	want = HDR_LEN + (size_t)kr->nterms * TERM_LEN + MAC_LEN;
	if (len != want) {
		snprintf(err, errlen, "keyring %s is %s (%zu bytes, expected "
		    "%zu)", kr->path, len < want ? "truncated" :
		    "followed by garbage", len, want);
		kr->nterms = 0;
		return -1;
	}
	return kr_parse_terms(kr, &r, err, errlen);
}

static int
kr_verify_mac(struct keyring *kr, const uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	uint8_t		mackey[KEY_LEN], mac[MAC_LEN];
	unsigned int	maclen = MAC_LEN;
	int		ok;

	kr_derive(kr->sec->kmk, KEY_LEN, "tenantd keyring file mac v1", mackey);
	if (HMAC(EVP_sha256(), mackey, KEY_LEN, buf, len - MAC_LEN, mac,
	    &maclen) == NULL)
		fatalx("keyring: HMAC failed");
	OPENSSL_cleanse(mackey, sizeof(mackey));
	ok = timingsafe_eq(mac, buf + len - MAC_LEN, MAC_LEN);
	if (!ok)
		snprintf(err, errlen, "keyring %s failed authentication: the "
		    "file was modified or corrupted", kr->path);
	return ok ? 0 : -1;
}

/* Unwrap the pseudonymization key and every live data key with the KMK. */
static int
kr_unwrap_keys(struct keyring *kr, char *err, size_t errlen)
{
	uint8_t		wrap[KEY_LEN];
	uint32_t	i;
	int		rv = 0;

	kr_derive(kr->sec->kmk, KEY_LEN, "tenantd keyring key wrap v1", wrap);
	if (slot_unwrap(kr->gcm, wrap, "tenantd pseudonym key",
	    kr->pseudo_gen, kr->pseudo_slot, kr->sec->pseudo) != 0)
		rv = -1;
	for (i = 0; rv == 0 && i < kr->nterms; i++) {
		if (kr->terms[i].state != KEYRING_TERM_DESTROYED &&
		    slot_unwrap(kr->gcm, wrap, "tenantd data key",
		    kr->terms[i].term, kr->terms[i].slot,
		    kr->sec->dk[i]) != 0)
			rv = -1;
	}
	OPENSSL_cleanse(wrap, sizeof(wrap));
	if (rv != 0)
		snprintf(err, errlen, "keyring %s: a wrapped key failed "
		    "authentication (tampered?)", kr->path);
	return rv;
}

static int
fsync_dir(const char *path, char *err, size_t errlen)
{
	char	*dir, *slash;
	int	 fd, rv = -1;

	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) == NULL)
		strcpy(dir, ".");
	else
		*(slash == dir ? slash + 1 : slash) = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(fd) == -1)
		snprintf(err, errlen, "fsync %s: %s", dir, strerror(errno));
	else
		rv = 0;
	if (fd != -1)
		close(fd);
	free(dir);
	return rv;
}

/* Temporary file, fsync, rename, fsync the directory. */
static int
write_atomic(const char *path, const uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	char	*tmp;
	int	 fd, rv = -1;

	xasprintf(&tmp, "%s.tmp", path);
	(void)unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1)
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
	else if (write(fd, buf, len) != (ssize_t)len || fsync(fd) == -1) {
		snprintf(err, errlen, "%s: write: %s", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
	} else if (close(fd) == -1 || rename(tmp, path) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		(void)unlink(tmp);
	} else
		rv = fsync_dir(path, err, errlen);
	free(tmp);
	return rv;
}

static int
kr_save(struct keyring *kr, char *err, size_t errlen)
{
	uint8_t	buf[FILE_MAX];
	size_t	len;

	len = kr_serialize(kr, buf);
	return write_atomic(kr->path, buf, len, err, errlen);
}

/* --- loading, creating, recovering ----------------------------------- */

static struct keyring *
kr_alloc(const struct keyring_params *p)
{
	struct keyring		*kr;
	pthread_rwlockattr_t	 attr;

	kr = xcalloc(1, sizeof(*kr));
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&kr->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&kr->pool_mtx, NULL);
	kr->path = xstrdup(p->path);
	kr->rotate_after = p->rotate_after;
	kr->rotate_seals = p->rotate_seals ? p->rotate_seals :
	    KEYRING_ROTATE_SEALS;
	kr->sec = secrets_alloc();
	if ((kr->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL)
		fatalx("keyring: AES-256-GCM is not available");
	return kr;
}

void
keyring_free(struct keyring *kr)
{
	uint32_t	i;

	if (kr == NULL)
		return;
	for (i = 0; i < MINIMUM(kr->nterms, MAX_TERMS); i++)
		kr_ctx_flush(&kr->terms[i]);
	pthread_mutex_destroy(&kr->pool_mtx);
	secrets_free(kr->sec);
	EVP_CIPHER_free(kr->gcm);
	pthread_rwlock_destroy(&kr->lock);
	free(kr->path);
	OPENSSL_cleanse(kr, sizeof(*kr));
	free(kr);
}

static int
kr_read_file(const char *path, uint8_t *buf, size_t *len, char *err,
    size_t errlen)
{
	ssize_t	n;
	size_t	off = 0;
	int	fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "keyring %s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = read(fd, buf + off, FILE_MAX + 1 - off)) > 0)
		off += (size_t)n;
	close(fd);
	if (n == -1) {
		snprintf(err, errlen, "keyring %s: %s", path, strerror(errno));
		return -1;
	}
	*len = off;
	return 0;
}

/* Read and parse the file, without any key: the caller unwraps the KMK. */
static struct keyring *
kr_read(const struct keyring_params *p, uint8_t *buf, size_t *len,
    char *err, size_t errlen)
{
	struct keyring	*kr;

	if (kr_read_file(p->path, buf, len, err, errlen) == -1)
		return NULL;
	kr = kr_alloc(p);
	if (kr_parse(kr, buf, *len, err, errlen) == -1) {
		keyring_free(kr);
		return NULL;
	}
	return kr;
}

/* With the KMK in place: check the file MAC and unwrap everything. */
static int
kr_finish(struct keyring *kr, const uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	if (kr_verify_mac(kr, buf, len, err, errlen) == -1 ||
	    kr_unwrap_keys(kr, err, errlen) == -1)
		return -1;
	return 0;
}

static int
kr_load_existing(const struct keyring_params *p, struct keyring **krp,
    char *err, size_t errlen)
{
	struct keyring	*kr;
	uint8_t		 buf[FILE_MAX + 1], wrap[KEY_LEN];
	size_t		 len;
	int		 rv = -1;

	if ((kr = kr_read(p, buf, &len, err, errlen)) == NULL)
		return -1;
	if (kek_load(p->kek, &kr->kek, 0, 0, wrap, err, errlen) == 0) {
		if (slot_unwrap(kr->gcm, wrap, "tenantd keyring master key",
		    0, kr->kek.slot, kr->sec->kmk) != 0)
			snprintf(err, errlen, "keyring %s: the master key "
			    "slot failed authentication (tampered?)", p->path);
		else
			rv = kr_finish(kr, buf, len, err, errlen);
	}
	OPENSSL_cleanse(wrap, sizeof(wrap));
	if (rv == -1)
		keyring_free(kr);
	else
		*krp = kr;
	return rv;
}

static void
kr_add_term(struct keyring *kr, uint64_t now)
{
	struct kr_term	*t = &kr->terms[kr->nterms];
	uint8_t		 wrap[KEY_LEN];

	memset(t, 0, sizeof(*t));
	t->term = kr->nterms + 1;
	t->state = KEYRING_TERM_ACTIVE;
	t->created = now;
	t->reserved = MINIMUM(RESERVE_BLOCK, kr->rotate_seals);
	random_bytes(kr->sec->dk[kr->nterms], KEY_LEN);
	kr_derive(kr->sec->kmk, KEY_LEN, "tenantd keyring key wrap v1", wrap);
	slot_wrap(kr->gcm, wrap, "tenantd data key", t->term,
	    kr->sec->dk[kr->nterms], t->slot);
	OPENSSL_cleanse(wrap, sizeof(wrap));
	kr->active = kr->nterms++;
}

static void
kr_make_recovery(struct keyring *kr, char *out)
{
	uint8_t	raw[RECOVERY_BYTES + RECOVERY_CHECK], sum[KEY_LEN];
	uint8_t	wrap[KEY_LEN];
	char	b32[64];
	size_t	i, o = 0;

	random_bytes(raw, RECOVERY_BYTES);
	SHA256(raw, RECOVERY_BYTES, sum);
	memcpy(raw + RECOVERY_BYTES, sum, RECOVERY_CHECK);
	kr_derive(raw, RECOVERY_BYTES, "tenantd keyring recovery fp v1", sum);
	memcpy(kr->recovery_fp, sum, FP_LEN);
	kr_derive(raw, RECOVERY_BYTES, "tenantd keyring recovery wrap v1",
	    wrap);
	slot_wrap(kr->gcm, wrap, "tenantd keyring master key", 1,
	    kr->sec->kmk, kr->recovery_slot);
	kr->has_recovery = 1;
	b32_encode(raw, sizeof(raw), b32);	/* 40 characters */
	for (i = 0; b32[i] != '\0'; i++) {
		if (i > 0 && i % 5 == 0)
			out[o++] = '-';
		out[o++] = toupper((unsigned char)b32[i]);
	}
	out[o] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(wrap, sizeof(wrap));
	OPENSSL_cleanse(b32, sizeof(b32));
}

static int
kr_create(const struct keyring_params *p, struct keyring **krp,
    char *recovery, char *err, size_t errlen)
{
	struct keyring	*kr;
	uint8_t		 wrap[KEY_LEN];
	int		 rv;

	kr = kr_alloc(p);
	if (kek_load(p->kek, &kr->kek, 1, p->scrypt_log2n, wrap, err,
	    errlen) == -1) {
		keyring_free(kr);
		return -1;
	}
	random_bytes(kr->sec->kmk, KEY_LEN);
	slot_wrap(kr->gcm, wrap, "tenantd keyring master key", 0,
	    kr->sec->kmk, kr->kek.slot);
	OPENSSL_cleanse(wrap, sizeof(wrap));
	kr->created = (uint64_t)time(NULL);
	kr->pseudo_gen = 1;
	random_bytes(kr->sec->pseudo, KEY_LEN);
	kr_derive(kr->sec->kmk, KEY_LEN, "tenantd keyring key wrap v1", wrap);
	slot_wrap(kr->gcm, wrap, "tenantd pseudonym key", kr->pseudo_gen,
	    kr->sec->pseudo, kr->pseudo_slot);
	OPENSSL_cleanse(wrap, sizeof(wrap));
	kr_add_term(kr, kr->created);
	if (p->recovery && recovery != NULL)
		kr_make_recovery(kr, recovery);
	if ((rv = kr_save(kr, err, errlen)) == -1)
		keyring_free(kr);
	else
		*krp = kr;
	return rv;
}

int
keyring_load(const struct keyring_params *p, struct keyring **krp,
    int *created, char *recovery, char *err, size_t errlen)
{
	if (created != NULL)
		*created = 0;
	if (access(p->path, F_OK) == -1 && errno == ENOENT) {
		if (!p->create) {
			snprintf(err, errlen, "keyring %s does not exist",
			    p->path);
			return -1;
		}
		if (kr_create(p, krp, recovery, err, errlen) == -1)
			return -1;
		log_warnx("created a NEW keyring %s (data key term 1, KEK "
		    "from %s%s); values sealed under an earlier keyring "
		    "cannot be read", p->path, p->kek, p->recovery ?
		    ", recovery key issued" : ", no recovery key");
		if (created != NULL)
			*created = 1;
		return 0;
	}
	return kr_load_existing(p, krp, err, errlen);
}

static int
recovery_parse(const char *s, uint8_t *raw, char *err, size_t errlen)
{
	uint8_t		 sum[KEY_LEN];
	uint32_t	 acc = 0;
	size_t		 bits = 0, o = 0;
	const char	*pos;
	int		 c;

	for (; *s != '\0'; s++) {
		if (*s == '-' || *s == ' ')
			continue;
		c = *s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s;
		if ((pos = strchr(b32_alphabet, c)) == NULL || c == '\0' ||
		    o >= RECOVERY_BYTES + RECOVERY_CHECK) {
			snprintf(err, errlen, "recovery key: not a recovery "
			    "key (bad character or length)");
			return -1;
		}
		acc = acc << 5 | (uint32_t)(pos - b32_alphabet);
		if ((bits += 5) >= 8) {
			raw[o++] = acc >> (bits - 8);
			bits -= 8;
		}
	}
	if (o != RECOVERY_BYTES + RECOVERY_CHECK) {
		snprintf(err, errlen, "recovery key: too short");
		return -1;
	}
	SHA256(raw, RECOVERY_BYTES, sum);
	if (!timingsafe_eq(sum, raw + RECOVERY_BYTES, RECOVERY_CHECK)) {
		snprintf(err, errlen, "recovery key: checksum mismatch "
		    "(mistyped?)");
		return -1;
	}
	return 0;
}

static int
kr_unwrap_recovery(struct keyring *kr, const uint8_t *raw, char *err,
    size_t errlen)
{
	uint8_t	derived[KEY_LEN];
	int	rv = -1;

	kr_derive(raw, RECOVERY_BYTES, "tenantd keyring recovery fp v1",
	    derived);
	if (!kr->has_recovery)
		snprintf(err, errlen, "keyring %s has no recovery key",
		    kr->path);
	else if (!timingsafe_eq(derived, kr->recovery_fp, FP_LEN))
		snprintf(err, errlen, "this recovery key does not belong to "
		    "keyring %s", kr->path);
	else {
		kr_derive(raw, RECOVERY_BYTES,
		    "tenantd keyring recovery wrap v1", derived);
		if (slot_unwrap(kr->gcm, derived, "tenantd keyring master key",
		    1, kr->recovery_slot, kr->sec->kmk) == 0)
			rv = 0;
		else
			snprintf(err, errlen, "keyring %s: the recovery slot "
			    "failed authentication (tampered?)", kr->path);
	}
	OPENSSL_cleanse(derived, sizeof(derived));
	return rv;
}

/* Unwrap the keyring with the recovery key; rewrap it under params->kek. */
int
keyring_recover(const struct keyring_params *p, const char *recovery,
    char *err, size_t errlen)
{
	struct keyring	*kr;
	uint8_t		 buf[FILE_MAX + 1], raw[RECOVERY_BYTES +
			    RECOVERY_CHECK], wrap[KEY_LEN];
	size_t		 len;
	int		 rv = -1;

	if (recovery_parse(recovery, raw, err, errlen) == -1)
		return -1;
	if ((kr = kr_read(p, buf, &len, err, errlen)) == NULL)
		return -1;
	if (kr_unwrap_recovery(kr, raw, err, errlen) == 0 &&
	    kr_finish(kr, buf, len, err, errlen) == 0 &&
	    kek_load(p->kek, &kr->kek, 1, p->scrypt_log2n, wrap, err,
	    errlen) == 0) {
		slot_wrap(kr->gcm, wrap, "tenantd keyring master key", 0,
		    kr->sec->kmk, kr->kek.slot);
		if ((rv = kr_save(kr, err, errlen)) == 0)
			log_warnx("keyring %s recovered with its recovery key; "
			    "now wrapped by the KEK from %s", p->path, p->kek);
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(wrap, sizeof(wrap));
	keyring_free(kr);
	return rv;
}

/* --- rotation and retirement ----------------------------------------- */

static int
kr_rotate_locked(struct keyring *kr, char *err, size_t errlen)
{
	uint32_t	old = kr->active;

	if (kr->nterms >= MAX_TERMS) {
		snprintf(err, errlen, "keyring %s: %d terms exist; rewrap "
		    "and retire old ones first", kr->path, MAX_TERMS);
		return -1;
	}
	kr->terms[old].state = KEYRING_TERM_DECRYPT_ONLY;
	kr_add_term(kr, (uint64_t)time(NULL));
	if (kr_save(kr, err, errlen) == 0) {
		log_info("keyring %s: rotated to data key term %u", kr->path,
		    kr->terms[kr->active].term);
		return 0;
	}
	kr->nterms--;
	OPENSSL_cleanse(kr->sec->dk[kr->nterms], KEY_LEN);
	kr->active = old;
	kr->terms[old].state = KEYRING_TERM_ACTIVE;
	return -1;
}

int
keyring_rotate(struct keyring *kr, uint32_t *term, char *err, size_t errlen)
{
	int	rv;

	pthread_rwlock_wrlock(&kr->lock);
	rv = kr_rotate_locked(kr, err, errlen);
	if (term != NULL)
		*term = kr->terms[kr->active].term;
	pthread_rwlock_unlock(&kr->lock);
	return rv;
}

int
keyring_retire(struct keyring *kr, uint32_t term, uint64_t in_use, char *err,
    size_t errlen)
{
	struct kr_term	*t;
	uint8_t		 slot[SLOT_LEN];
	int		 rv = -1;

	pthread_rwlock_wrlock(&kr->lock);
	t = term >= 1 && term <= kr->nterms ? &kr->terms[term - 1] : NULL;
	if (t == NULL || t->state == KEYRING_TERM_DESTROYED)
		snprintf(err, errlen, "key term %u does not exist or is "
		    "already destroyed", term);
	else if (t->state == KEYRING_TERM_ACTIVE)
		snprintf(err, errlen, "key term %u is the active term; rotate "
		    "first", term);
	else if (in_use > 0)
		snprintf(err, errlen, "key term %u still seals %llu stored "
		    "values; rewrap first", term, (unsigned long long)in_use);
	else {
		memcpy(slot, t->slot, SLOT_LEN);
		t->state = KEYRING_TERM_DESTROYED;
		memset(t->slot, 0, SLOT_LEN);
		if ((rv = kr_save(kr, err, errlen)) == 0) {
			kr_ctx_flush(t);
			OPENSSL_cleanse(kr->sec->dk[term - 1], KEY_LEN);
			log_info("keyring %s: destroyed key term %u", kr->path,
			    term);
		} else {
			t->state = KEYRING_TERM_DECRYPT_ONLY;
			memcpy(t->slot, slot, SLOT_LEN);
		}
	}
	pthread_rwlock_unlock(&kr->lock);
	return rv;
}

uint32_t
keyring_active_term(struct keyring *kr)
{
	uint32_t	term;

	pthread_rwlock_rdlock(&kr->lock);
	term = kr->terms[kr->active].term;
	pthread_rwlock_unlock(&kr->lock);
	return term;
}

int
keyring_term_state(struct keyring *kr, uint32_t term)
{
	int	state = 0;

	pthread_rwlock_rdlock(&kr->lock);
	if (term >= 1 && term <= kr->nterms)
		state = kr->terms[term - 1].state;
	pthread_rwlock_unlock(&kr->lock);
	return state;
}

json_t *
keyring_status_json(struct keyring *kr)
{
	json_t		*terms, *o;
	struct kr_term	*t;
	uint32_t	 i;

	terms = json_array();
	pthread_rwlock_rdlock(&kr->lock);
	for (i = 0; i < kr->nterms; i++) {
		t = &kr->terms[i];
		json_array_append_new(terms, json_pack("{s:I, s:s, s:I, s:I}",
		    "term", (json_int_t)t->term, "state",
		    kr_state_names[t->state], "created", (json_int_t)t->created,
		    "seals", (json_int_t)__atomic_load_n(&t->seals,
		    __ATOMIC_RELAXED)));
	}
	o = json_pack("{s:s, s:s, s:I, s:b, s:I, s:o}", "path", kr->path,
	    "kek", kr->kek.kind == KEK_SCRYPT ? "passphrase" : "key",
	    "created", (json_int_t)kr->created, "recovery",
	    kr->has_recovery, "active_term",
	    (json_int_t)kr->terms[kr->active].term, "terms", terms);
	pthread_rwlock_unlock(&kr->lock);
	return o;
}

/* --- sealing ---------------------------------------------------------- */

/*
 * Random nonces, drawn from the DRBG a buffer at a time (one RAND_bytes
 * call costs more than sealing 1 KiB). The buffer is per thread and
 * dropped after fork, so two processes never share it.
 */
static void
kr_nonce(uint8_t *nonce)
{
	static __thread uint8_t	pool[NONCE_POOL];
	static __thread size_t	used = NONCE_POOL;
	static __thread pid_t	pid;

	if (used == NONCE_POOL || pid != getpid()) {
		random_bytes(pool, sizeof(pool));
		pid = getpid();
		used = 0;
	}
	memcpy(nonce, pool + used, NONCE_LEN);
	OPENSSL_cleanse(pool + used, NONCE_LEN);
	used += NONCE_LEN;
}

/* A GCM context keyed with term idx's data key; caller holds the rdlock. */
static EVP_CIPHER_CTX *
kr_ctx_get(struct keyring *kr, uint32_t idx)
{
	struct kr_term	*t = &kr->terms[idx];
	EVP_CIPHER_CTX	*ctx = NULL;

	pthread_mutex_lock(&kr->pool_mtx);
	if (t->npool > 0)
		ctx = t->pool[--t->npool];
	pthread_mutex_unlock(&kr->pool_mtx);
	if (ctx != NULL)
		return ctx;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_CipherInit_ex2(ctx, kr->gcm, kr->sec->dk[idx], NULL, 1,
	    NULL) != 1)
		fatalx("keyring: cannot set up AES-256-GCM");
	return ctx;
}

static void
kr_ctx_put(struct keyring *kr, uint32_t idx, EVP_CIPHER_CTX *ctx)
{
	struct kr_term	*t = &kr->terms[idx];

	pthread_mutex_lock(&kr->pool_mtx);
	if (t->npool < CTX_POOL) {
		t->pool[t->npool++] = ctx;
		ctx = NULL;
	}
	pthread_mutex_unlock(&kr->pool_mtx);
	EVP_CIPHER_CTX_free(ctx);	/* cleanses the key schedule */
}

/* Free a term's contexts: with the wrlock held, or when freeing. */
static void
kr_ctx_flush(struct kr_term *t)
{
	while (t->npool > 0)
		EVP_CIPHER_CTX_free(t->pool[--t->npool]);
}

static int
kr_gcm_tag(EVP_CIPHER_CTX *ctx, int set, uint8_t *tag)
{
	OSSL_PARAM	params[2];

	params[0] = OSSL_PARAM_construct_octet_string(
	    OSSL_CIPHER_PARAM_AEAD_TAG, tag, TAG_LEN);
	params[1] = OSSL_PARAM_construct_end();
	return set ? EVP_CIPHER_CTX_set_params(ctx, params) :
	    EVP_CIPHER_CTX_get_params(ctx, params);
}

/* Seal or open a value with term idx: hdr and aad are authenticated. */
static int
kr_value_crypt(struct keyring *kr, uint32_t idx, int enc, const uint8_t *hdr,
    const void *aad, size_t aadlen, const uint8_t *in, size_t len,
    uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER_CTX	*ctx = kr_ctx_get(kr, idx);
	int		 n, ok;

	ok = EVP_CipherInit_ex2(ctx, NULL, NULL, hdr + 5, enc, NULL) == 1 &&
	    EVP_CipherUpdate(ctx, NULL, &n, hdr, SEAL_HDR) == 1 &&
	    (aadlen == 0 || EVP_CipherUpdate(ctx, NULL, &n, aad,
	    (int)aadlen) == 1) &&
	    (len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1);
	if (ok && !enc)
		ok = kr_gcm_tag(ctx, 1, tag) == 1;
	ok = ok && EVP_CipherFinal_ex(ctx, out + len, &n) == 1;
	if (ok && enc)
		ok = kr_gcm_tag(ctx, 0, tag) == 1;
	kr_ctx_put(kr, idx, ctx);
	return ok ? 0 : -1;
}

static int
kr_due(struct keyring *kr, struct kr_term *t, time_t now)
{
	uint64_t	seals = __atomic_load_n(&t->seals, __ATOMIC_RELAXED);

	return seals >= t->reserved || seals >= kr->rotate_seals ||
	    (kr->rotate_after > 0 && now >= kr->retry_at &&
	    (uint64_t)now >= t->created + kr->rotate_after);
}

/* Rotate when due, and reserve the next block of seals in the file. */
static int
kr_maintain(struct keyring *kr, time_t now)
{
	struct kr_term	*t;
	char		 err[256];
	uint64_t	 old;
	int		 rv = KEYRING_OK;

	pthread_rwlock_wrlock(&kr->lock);
	t = &kr->terms[kr->active];
	if (t->seals >= kr->rotate_seals || (kr->rotate_after > 0 &&
	    now >= kr->retry_at && (uint64_t)now >= t->created +
	    kr->rotate_after)) {
		if (kr_rotate_locked(kr, err, sizeof(err)) == -1) {
			log_warnx("automatic key rotation failed: %s", err);
			kr->retry_at = now + 60;
			if (t->seals >= kr->rotate_seals)
				rv = KEYRING_EIO;
		}
		t = &kr->terms[kr->active];
	}
	if (rv == KEYRING_OK && t->seals >= t->reserved) {
		old = t->reserved;
		t->reserved = MINIMUM(t->seals + RESERVE_BLOCK,
		    kr->rotate_seals);
		if (kr_save(kr, err, sizeof(err)) == -1) {
			log_warnx("keyring: cannot reserve seals: %s", err);
			t->reserved = old;
			rv = KEYRING_EIO;
		}
	}
	pthread_rwlock_unlock(&kr->lock);
	return rv;
}

int
keyring_seal(struct keyring *kr, const void *aad, size_t aadlen,
    const void *in, size_t len, uint8_t *out)
{
	struct kr_term	*t;
	time_t		 now = time(NULL);
	int		 rv;

	for (;;) {
		pthread_rwlock_rdlock(&kr->lock);
		t = &kr->terms[kr->active];
		if (!kr_due(kr, t, now) && __atomic_fetch_add(&t->seals, 1,
		    __ATOMIC_RELAXED) < t->reserved)
			break;
		pthread_rwlock_unlock(&kr->lock);
		if ((rv = kr_maintain(kr, now)) != KEYRING_OK)
			return rv;
	}
	out[0] = SEAL_VERSION;
	put32(out + 1, t->term);
	kr_nonce(out + 5);
	rv = kr_value_crypt(kr, kr->active, 1, out, aad, aadlen, in, len,
	    out + SEAL_HDR, out + SEAL_HDR + len);
	pthread_rwlock_unlock(&kr->lock);
	return rv == 0 ? KEYRING_OK : KEYRING_EIO;
}

int
keyring_sealed_term(const uint8_t *in, size_t len, uint32_t *term)
{
	if (len < KEYRING_SEAL_OVERHEAD || in[0] != SEAL_VERSION)
		return KEYRING_EFORMAT;
	*term = get32(in + 1);
	return KEYRING_OK;
}

int
keyring_open(struct keyring *kr, const void *aad, size_t aadlen,
    const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t		tag[TAG_LEN];
	uint32_t	term;
	size_t		ctlen;
	int		rv;

	if ((rv = keyring_sealed_term(in, len, &term)) != KEYRING_OK)
		return rv;
	ctlen = len - KEYRING_SEAL_OVERHEAD;
	memcpy(tag, in + SEAL_HDR + ctlen, TAG_LEN);
	pthread_rwlock_rdlock(&kr->lock);
	if (term < 1 || term > kr->nterms ||
	    kr->terms[term - 1].state == KEYRING_TERM_DESTROYED)
		rv = KEYRING_ETERM;
	else if (kr_value_crypt(kr, term - 1, 0, in, aad, aadlen,
	    in + SEAL_HDR, ctlen, out, tag) != 0) {
		OPENSSL_cleanse(out, ctlen);
		rv = KEYRING_EAUTH;
	}
	pthread_rwlock_unlock(&kr->lock);
	return rv;
}

int
keyring_pseudonym(struct keyring *kr, const char *tenant_id, const char *oid,
    char *out)
{
	uint8_t		 mac[MAC_LEN], msg[2 * 256 + 1];
	unsigned int	 maclen = MAC_LEN;
	size_t		 tlen = strlen(tenant_id), olen = strlen(oid);

	if (tlen == 0 || tlen > 256 || olen == 0 || olen > 256)
		return -1;
	memcpy(msg, tenant_id, tlen);
	msg[tlen] = '\0';
	memcpy(msg + tlen + 1, oid, olen);
	/* The pseudonymization key never changes after load: no lock. */
	if (HMAC(EVP_sha256(), kr->sec->pseudo, KEY_LEN, msg, tlen + 1 + olen,
	    mac, &maclen) == NULL)
		fatalx("keyring: HMAC failed");
	memcpy(out, "p_", 2);
	b32_encode(mac, 16, out + 2);
	return 0;
}

/*
 * Make a raw KEK file (32 random bytes, mode 0600) unless one exists: the
 * development KEK when keyring.kek is not set.
 */
int
keyring_kek_generate(const char *path, int *created, char *err,
    size_t errlen)
{
	uint8_t	kek[KEY_LEN];
	ssize_t	n;
	int	fd;

	*created = 0;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd == -1 && errno == EEXIST)
		return 0;
	if (fd == -1) {
		snprintf(err, errlen, "KEK file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	random_bytes(kek, sizeof(kek));
	n = write(fd, kek, sizeof(kek));
	OPENSSL_cleanse(kek, sizeof(kek));
	if (n != (ssize_t)sizeof(kek) || fsync(fd) == -1) {
		snprintf(err, errlen, "KEK file %s: %s", path,
		    n == -1 ? strerror(errno) : "short write");
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	*created = 1;
	return 0;
}

/* When the active data key term was made (Unix seconds). */
int
keyring_active_age(struct keyring *kr, uint64_t *created)
{
	pthread_rwlock_rdlock(&kr->lock);
	*created = kr->terms[kr->active].created;
	pthread_rwlock_unlock(&kr->lock);
	return 0;
}

/*
 * A new recovery key goes to the terminal if there is one, else to a
 * 0600 file the operator must move offline: never into the log.
 */
static void
kr_hand_over_recovery(const char *keyring_path, const char *key)
{
	char	*path;
	FILE	*f;
	int	 fd;

	if (isatty(STDERR_FILENO)) {
		fprintf(stderr, "\nRECOVERY KEY for %s (shown once; store it "
		    "offline):\n\n    %s\n\n", keyring_path, key);
		return;
	}
	xasprintf(&path, "%s.recovery", keyring_path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		log_warn("recovery key: cannot write %s; it is lost, make a "
		    "new keyring to get one", path);
		if (fd != -1)
			close(fd);
		free(path);
		return;
	}
	fprintf(f, "%s\n", key);
	if (fflush(f) != 0 || fsync(fd) == -1)
		log_warn("recovery key: %s", path);
	fclose(f);
	log_warnx("the recovery key of %s was written to %s: move it "
	    "offline and delete the file", keyring_path, path);
	free(path);
}

/* The KEK source of kc, or the development KEK under state_dir. */
static int
kr_conf_kek(const struct keyring_conf *kc, const char *state_dir,
    char **spec, char *err, size_t errlen)
{
	char	*path;
	int	 created;

	if (kc->kek != NULL) {
		*spec = xstrdup(kc->kek);
		return 0;
	}
	xasprintf(&path, "%s/kek", state_dir);
	if (keyring_kek_generate(path, &created, err, errlen) == -1) {
		free(path);
		return -1;
	}
	log_warnx("keyring.kek is not set: %s the development KEK %s, "
	    "which lies next to the data it protects; set keyring.kek for "
	    "production", created ? "generated" : "using", path);
	xasprintf(spec, "file:%s", path);
	free(path);
	return 0;
}

/* Load (or create) the keyring a configuration section describes. */
int
keyring_load_conf(const struct keyring_conf *kc, const char *state_dir,
    struct keyring **kr, char *err, size_t errlen)
{
	struct keyring_params	 p;
	char			 recovery[KEYRING_RECOVERY_LEN], *spec;
	int			 created, rv;

	if (kr_conf_kek(kc, state_dir, &spec, err, errlen) == -1)
		return -1;
	memset(&p, 0, sizeof(p));
	p.path = kc->path;
	p.kek = spec;
	p.rotate_after = kc->rotate_after;
	p.create = 1;
	p.recovery = kc->recovery;
	recovery[0] = '\0';
	rv = keyring_load(&p, kr, &created, recovery, err, errlen);
	if (rv == 0 && created && recovery[0] != '\0')
		kr_hand_over_recovery(kc->path, recovery);
	OPENSSL_cleanse(recovery, sizeof(recovery));
	free(spec);
	return rv;
}

/* Recover kc's keyring with a recovery key, rewrapping it under kc->kek. */
int
keyring_recover_conf(const struct keyring_conf *kc, const char *state_dir,
    const char *recovery, char *err, size_t errlen)
{
	struct keyring_params	 p;
	char			*spec;
	int			 rv;

	if (kr_conf_kek(kc, state_dir, &spec, err, errlen) == -1)
		return -1;
	memset(&p, 0, sizeof(p));
	p.path = kc->path;
	p.kek = spec;
	rv = keyring_recover(&p, recovery, err, errlen);
	free(spec);
	return rv;
}
