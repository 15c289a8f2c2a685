/*
 * jwks.c: the authority's signing keys. Converts JWKS JSON into OpenSSL keys
 * and PEM for libjwt, fetches OpenID metadata and key sets through httpc,
 * and publishes immutable key sets that every thread may read.
 */
#include "config.h"

#include <sys/queue.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "tenantd.h"

#define JWKS_MAX_KEYS		64
#define JWKS_MIN_BITS		2048
#define JWKS_MAX_N		1024	/* bytes: 8192-bit modulus */
#define JWKS_MAX_E		8
#define JWKS_MAX_DOC		(256 * 1024)
#define JWKS_RETRY_MIN		10	/* s, first retry after a failure */
#define JWKS_RETRY_MAX		300
#define JWKS_DEFAULT_TIMEOUT_MS	10000
#define JWKS_BLOB_FORMAT	1

struct jwks_keyset {
	int			 refcnt;	/* atomic */
	char			*issuer[2];	/* [0] v1, [1] v2 */
	struct jwks_key		*keys;
	size_t			 nkeys;
};

struct jwks_waiter {
	TAILQ_ENTRY(jwks_waiter) entry;
	struct jwks		*j;
	int			 queued;	/* under j->mtx */
	struct event		*ev;
	jwks_wait_fn		 fn;
	void			*arg;
};
TAILQ_HEAD(jwks_waiters, jwks_waiter);

struct jwks_fetch;

struct jwks_slot {
	struct jwks_fetch	*f;
	int			 idx;		/* 0 v1, 1 v2 */
	char			*url;
	struct httpc_xfer	*xfer;
};

struct jwks_fetch {
	struct jwks		*j;
	int			 pending;
	int			 failed;
	char			*issuer[2];
	char			*jwks_uri[2];
	struct jwks_keyset	*set;
	struct jwks_slot	 slot[2];
};

struct jwks {
	struct event_base	*base;
	struct httpc		*httpc;
	char			*authority;
	char			*tenant_id;
	char			*ca_file;
	uint64_t		 refresh;
	uint64_t		 min_refetch;
	uint64_t		 timeout_ms;
	uint64_t		 retry;		/* s, current backoff */
	jwks_save_fn		 save;
	jwks_load_fn		 load;
	void			*hook_arg;
	struct event		*timer;		/* periodic refresh */
	struct event		*kick;		/* refresh request */
	struct jwks_fetch	*fetch;		/* in flight, base thread */

	pthread_mutex_t		 mtx;		/* guards what follows */
	struct jwks_keyset	*current;
	enum jwks_state		 state;
	int			 busy;		/* kicked or in flight */
	uint64_t		 last_miss;	/* now_usec of a kid-miss kick */
	uint64_t		 fetches;
	struct jwks_waiters	 waiters;
};

static void	jwks_fetch_start(struct jwks *);

/* --- base64url ---------------------------------------------------------- */

static int
base64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict unpadded base64url: only the URL alphabet, no '=', no length of
 * 1 mod 4 and no stray bits in the last character. Returns the decoded
 * length or -1.
 */
ssize_t
base64url_decode(const char *in, size_t inlen, unsigned char *out,
    size_t outlen)
{
	uint32_t	acc = 0;
	size_t		i, n = 0, need;
	int		bits = 0, v;

	need = inlen / 4 * 3 + (inlen % 4 == 0 ? 0 : inlen % 4 - 1);
	if (inlen % 4 == 1 || need > outlen)
		return -1;
	for (i = 0; i < inlen; i++) {
		if ((v = base64url_value((unsigned char)in[i])) == -1)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[n++] = (acc >> bits) & 0xff;
		}
	}
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (ssize_t)n;
}

char *
base64url_encode(const unsigned char *in, size_t len)
{
	static const char	 alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	char			*out, *p;
	uint32_t		 acc = 0;
	size_t			 i;
	int			 bits = 0;

	out = p = xmalloc(len / 3 * 4 + 5);
	for (i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		for (bits += 8; bits >= 6; bits -= 6)
			*p++ = alphabet[(acc >> (bits - 6)) & 0x3f];
	}
	if (bits > 0)
		*p++ = alphabet[(acc << (6 - bits)) & 0x3f];
	*p = '\0';
	return out;
}

/* --- keys --------------------------------------------------------------- */

static BIGNUM *
jwks_bn(json_t *jwk, const char *name, size_t max)
{
	unsigned char	 buf[JWKS_MAX_N];
	const char	*s;
	ssize_t		 n;

	if ((s = json_string_value(json_object_get(jwk, name))) == NULL)
		return NULL;
	n = base64url_decode(s, strlen(s), buf, MINIMUM(max, sizeof(buf)));
	if (n <= 0)
		return NULL;
	return BN_bin2bn(buf, (int)n, NULL);
}

static EVP_PKEY *
jwks_rsa_from_bn(const BIGNUM *n, const BIGNUM *e)
{
	OSSL_PARAM_BLD	*bld;
	OSSL_PARAM	*params = NULL;
	EVP_PKEY_CTX	*ctx = NULL;
	EVP_PKEY	*pkey = NULL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

static char *
jwks_pem(EVP_PKEY *pkey, size_t *len)
{
	BIO	*bio;
	char	*data, *pem = NULL;
	long	 n;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return NULL;
	if (PEM_write_bio_PUBKEY(bio, pkey) == 1 &&
	    (n = BIO_get_mem_data(bio, &data)) > 0) {
		pem = xstrndup(data, (size_t)n);
		*len = (size_t)n;
	}
	BIO_free(bio);
	return pem;
}

/* One JWK into *key; 0, or -1 with err set (the key is skipped). */
static int
jwks_key_from_jwk(json_t *jwk, struct jwks_key *key, char *err, size_t len)
{
	const char	*kid, *use;
	BIGNUM		*n, *e;

	memset(key, 0, sizeof(*key));
	kid = json_string_value(json_object_get(jwk, "kid"));
	if (kid == NULL || *kid == '\0' || strlen(kid) >= sizeof(key->kid)) {
		snprintf(err, len, "key without a usable kid");
		return -1;
	}
	use = json_string_value(json_object_get(jwk, "use"));
	if (json_object_get(jwk, "use") != NULL &&
	    (use == NULL || strcmp(use, "sig") != 0)) {
		snprintf(err, len, "key %s: use is not sig", kid);
		return -1;
	}
	if (!json_is_string(json_object_get(jwk, "kty")) ||
	    strcmp(json_string_value(json_object_get(jwk, "kty")), "RSA")) {
		snprintf(err, len, "key %s: kty is not RSA", kid);
		return -1;
	}
	n = jwks_bn(jwk, "n", JWKS_MAX_N);
	e = jwks_bn(jwk, "e", JWKS_MAX_E);
	if (n != NULL && e != NULL && BN_num_bits(n) >= JWKS_MIN_BITS &&
	    BN_is_odd(e) && !BN_is_one(e))
		key->pkey = jwks_rsa_from_bn(n, e);
	BN_free(n);
	BN_free(e);
	if (key->pkey == NULL ||
	    (key->pem = jwks_pem(key->pkey, &key->pem_len)) == NULL) {
		EVP_PKEY_free(key->pkey);
		snprintf(err, len, "key %s: bad or weak RSA n/e", kid);
		return -1;
	}
	snprintf(key->kid, sizeof(key->kid), "%s", kid);
	return 0;
}

json_t *
jwks_jwk_from_pkey(const struct evp_pkey_st *pkey, const char *kid)
{
	BIGNUM		*bn[2] = { NULL, NULL };
	const char	*names[2] = { OSSL_PKEY_PARAM_RSA_N,
			    OSSL_PKEY_PARAM_RSA_E };
	unsigned char	 buf[JWKS_MAX_N];
	char		*enc[2] = { NULL, NULL };
	json_t		*jwk = NULL;
	int		 i, n;

	for (i = 0; i < 2; i++) {
		if (EVP_PKEY_get_bn_param(pkey, names[i], &bn[i]) != 1 ||
		    (n = BN_num_bytes(bn[i])) > (int)sizeof(buf))
			goto done;
		BN_bn2bin(bn[i], buf);
		enc[i] = base64url_encode(buf, (size_t)n);
	}
	jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "use",
	    "sig", "kid", kid, "n", enc[0], "e", enc[1]);
done:
	for (i = 0; i < 2; i++) {
		BN_free(bn[i]);
		free(enc[i]);
	}
	return jwk;
}

/* --- key sets ----------------------------------------------------------- */

static struct jwks_keyset *
jwks_keyset_new(const char *issuer_v1, const char *issuer_v2)
{
	struct jwks_keyset	*set;

	set = xcalloc(1, sizeof(*set));
	set->refcnt = 1;
	set->keys = xcalloc(JWKS_MAX_KEYS, sizeof(*set->keys));
	if (issuer_v1 != NULL)
		set->issuer[0] = xstrdup(issuer_v1);
	if (issuer_v2 != NULL)
		set->issuer[1] = xstrdup(issuer_v2);
	return set;
}

void
jwks_keyset_put(struct jwks_keyset *set)
{
	size_t	i;

	if (set == NULL || __atomic_sub_fetch(&set->refcnt, 1,
	    __ATOMIC_ACQ_REL) != 0)
		return;
	for (i = 0; i < set->nkeys; i++) {
		EVP_PKEY_free(set->keys[i].pkey);
		free(set->keys[i].pem);
	}
	free(set->keys);
	free(set->issuer[0]);
	free(set->issuer[1]);
	free(set);
}

const struct jwks_key *
jwks_keyset_find(const struct jwks_keyset *set, const char *kid)
{
	size_t	i;

	for (i = 0; set != NULL && i < set->nkeys; i++)
		if (strcmp(set->keys[i].kid, kid) == 0)
			return &set->keys[i];
	return NULL;
}

const char *
jwks_keyset_issuer(const struct jwks_keyset *set, int ver)
{
	if (set == NULL || ver < 1 || ver > 2)
		return NULL;
	return set->issuer[ver - 1];
}

size_t
jwks_keyset_count(const struct jwks_keyset *set)
{
	return set != NULL ? set->nkeys : 0;
}

/* Add the usable keys of a JWKS "keys" array; first kid wins. */
static void
jwks_keyset_add(struct jwks_keyset *set, json_t *keys)
{
	struct jwks_key	 key;
	json_t		*jwk;
	size_t		 i;
	char		 err[160];

	json_array_foreach(keys, i, jwk) {
		if (set->nkeys == JWKS_MAX_KEYS) {
			log_warnx("jwks: more than %d keys, rest ignored",
			    JWKS_MAX_KEYS);
			return;
		}
		if (jwks_key_from_jwk(jwk, &key, err, sizeof(err)) == -1) {
			log_debug("jwks: skipped: %s", err);
			continue;
		}
		if (jwks_keyset_find(set, key.kid) != NULL) {
			EVP_PKEY_free(key.pkey);
			free(key.pem);
			continue;
		}
		set->keys[set->nkeys++] = key;
	}
}

static json_t *
jwks_json_load(const char *json, size_t len, char *err, size_t errlen)
{
	json_error_t	 jerr;
	json_t		*doc;

	if (len > JWKS_MAX_DOC) {
		snprintf(err, errlen, "document larger than %d bytes",
		    JWKS_MAX_DOC);
		return NULL;
	}
	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL || !json_is_object(doc)) {
		snprintf(err, errlen, "not a JSON object: %s",
		    doc == NULL ? jerr.text : "wrong type");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/*
 * The persisted form, also accepted from the local provider:
 * {"format":1,"issuer_v1":"...","issuer_v2":"...","keys":[JWK...]}.
 * A plain JWKS document parses too (without issuers).
 */
struct jwks_keyset *
jwks_keyset_parse(const char *json, size_t len, char *err, size_t errlen)
{
	struct jwks_keyset	*set;
	json_t			*doc, *keys;

	if ((doc = jwks_json_load(json, len, err, errlen)) == NULL)
		return NULL;
	if (!json_is_array(keys = json_object_get(doc, "keys"))) {
		snprintf(err, errlen, "no \"keys\" array");
		json_decref(doc);
		return NULL;
	}
	set = jwks_keyset_new(
	    json_string_value(json_object_get(doc, "issuer_v1")),
	    json_string_value(json_object_get(doc, "issuer_v2")));
	jwks_keyset_add(set, keys);
	json_decref(doc);
	if (set->nkeys == 0) {
		snprintf(err, errlen, "no usable RSA signing key");
		jwks_keyset_put(set);
		return NULL;
	}
	return set;
}

char *
jwks_keyset_dump(const struct jwks_keyset *set, size_t *len)
{
	json_t	*doc, *keys;
	char	*out;
	size_t	 i;

	keys = json_array();
	for (i = 0; i < set->nkeys; i++)
		json_array_append_new(keys, jwks_jwk_from_pkey(
		    set->keys[i].pkey, set->keys[i].kid));
	doc = json_pack("{s:i, s:o}", "format", JWKS_BLOB_FORMAT,
	    "keys", keys);
	if (set->issuer[0] != NULL)
		json_object_set_new(doc, "issuer_v1",
		    json_string(set->issuer[0]));
	if (set->issuer[1] != NULL)
		json_object_set_new(doc, "issuer_v2",
		    json_string(set->issuer[1]));
	out = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (out == NULL)
		fatalx("jwks: json_dumps failed");
	*len = strlen(out);
	return out;
}

/* --- metadata ----------------------------------------------------------- */

static int
jwks_contains_nocase(const char *hay, const char *needle)
{
	size_t	n = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return 1;
	return 0;
}

/* An OpenID metadata document: its issuer (for this tenant) and jwks_uri. */
int
jwks_metadata_parse(const char *json, size_t len, const char *tenant_id,
    char **issuer, char **jwks_uri, char *err, size_t errlen)
{
	json_t		*doc;
	const char	*iss, *uri;
	int		 rv = -1;

	if ((doc = jwks_json_load(json, len, err, errlen)) == NULL)
		return -1;
	iss = json_string_value(json_object_get(doc, "issuer"));
	uri = json_string_value(json_object_get(doc, "jwks_uri"));
	if (iss == NULL || strncmp(iss, "https://", 8) != 0)
		snprintf(err, errlen, "no https issuer");
	else if (!jwks_contains_nocase(iss, tenant_id))
		snprintf(err, errlen, "issuer %s is not for tenant %s", iss,
		    tenant_id);
	else if (uri == NULL || strncmp(uri, "https://", 8) != 0)
		snprintf(err, errlen, "no https jwks_uri");
	else {
		*issuer = xstrdup(iss);
		*jwks_uri = xstrdup(uri);
		rv = 0;
	}
	json_decref(doc);
	return rv;
}

/* --- state shared with other threads ------------------------------------ */

struct jwks_keyset *
jwks_keyset_get(struct jwks *j)
{
	struct jwks_keyset	*set;

	pthread_mutex_lock(&j->mtx);
	if ((set = j->current) != NULL)
		__atomic_add_fetch(&set->refcnt, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&j->mtx);
	return set;
}

enum jwks_state
jwks_state(struct jwks *j)
{
	enum jwks_state	state;

	pthread_mutex_lock(&j->mtx);
	state = j->state;
	pthread_mutex_unlock(&j->mtx);
	return state;
}

const char *
jwks_state_name(enum jwks_state state)
{
	static const char *const names[] = {
		[JWKS_NONE] = "none",
		[JWKS_STALE] = "stale",
		[JWKS_FRESH] = "fresh",
	};

	return (size_t)state < nitems(names) ? names[state] : "none";
}

uint64_t
jwks_fetch_count(struct jwks *j)
{
	uint64_t	n;

	pthread_mutex_lock(&j->mtx);
	n = j->fetches;
	pthread_mutex_unlock(&j->mtx);
	return n;
}

static void
jwks_publish(struct jwks *j, struct jwks_keyset *set, enum jwks_state state)
{
	struct jwks_keyset	*old;

	pthread_mutex_lock(&j->mtx);
	old = j->current;
	j->current = set;
	j->state = state;
	pthread_mutex_unlock(&j->mtx);
	jwks_keyset_put(old);
}

/* Install a set from the store or the local provider. */
int
jwks_install(struct jwks *j, const char *json, size_t len, int fresh,
    char *err, size_t errlen)
{
	struct jwks_keyset	*set;

	if ((set = jwks_keyset_parse(json, len, err, errlen)) == NULL)
		return -1;
	jwks_publish(j, set, fresh ? JWKS_FRESH : JWKS_STALE);
	return 0;
}

/* --- refresh requests and waiters --------------------------------------- */

/* Called with j->mtx held. */
static void
jwks_kick_locked(struct jwks *j)
{
	if (j->busy)
		return;
	j->busy = 1;
	event_active(j->kick, EV_TIMEOUT, 1);
}

void
jwks_refresh_now(struct jwks *j)
{
	pthread_mutex_lock(&j->mtx);
	jwks_kick_locked(j);
	pthread_mutex_unlock(&j->mtx);
}

/*
 * A token named a kid we do not know: refresh unless a kid miss already
 * did within min_refetch. Returns 1 when a refresh is pending or in
 * flight (jwks_wait_refresh() can wait for it), 0 when throttled.
 */
int
jwks_kid_miss(struct jwks *j)
{
	uint64_t	now = now_usec();
	int		rv = 1;

	pthread_mutex_lock(&j->mtx);
	if (j->busy)
		rv = 1;
	else if (j->last_miss != 0 &&
	    now - j->last_miss < j->min_refetch * 1000000)
		rv = 0;
	else {
		j->last_miss = now;
		jwks_kick_locked(j);
	}
	pthread_mutex_unlock(&j->mtx);
	return rv;
}

static void
jwks_waiter_run(evutil_socket_t fd, short what, void *arg)
{
	struct jwks_waiter	*w = arg;
	jwks_wait_fn		 fn = w->fn;
	void			*fn_arg = w->arg;

	event_free(w->ev);
	free(w);
	fn(fn_arg);
}

struct jwks_waiter *
jwks_wait_refresh(struct jwks *j, struct event_base *base, jwks_wait_fn fn,
    void *arg)
{
	struct jwks_waiter	*w;

	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->j = j;
	if ((w->ev = event_new(base, -1, 0, jwks_waiter_run, w)) == NULL) {
		log_warnx("jwks: event_new failed for a waiter");
		free(w);
		return NULL;
	}
	pthread_mutex_lock(&j->mtx);
	if (j->busy) {
		TAILQ_INSERT_TAIL(&j->waiters, w, entry);
		w->queued = 1;
	}
	pthread_mutex_unlock(&j->mtx);
	if (!w->queued) {
		event_free(w->ev);
		free(w);
		return NULL;
	}
	return w;
}

void
jwks_wait_cancel(struct jwks_waiter *w)
{
	struct jwks	*j = w->j;

	pthread_mutex_lock(&j->mtx);
	if (w->queued)
		TAILQ_REMOVE(&j->waiters, w, entry);
	w->queued = 0;
	pthread_mutex_unlock(&j->mtx);
	event_free(w->ev);	/* also drops a pending activation */
	free(w);
}

/* The refresh ended: wake every waiter on its own base. */
static void
jwks_refresh_done(struct jwks *j)
{
	struct jwks_waiter	*w;

	pthread_mutex_lock(&j->mtx);
	j->busy = 0;
	while ((w = TAILQ_FIRST(&j->waiters)) != NULL) {
		TAILQ_REMOVE(&j->waiters, w, entry);
		w->queued = 0;
		event_active(w->ev, EV_TIMEOUT, 1);
	}
	pthread_mutex_unlock(&j->mtx);
}

/* --- fetching (on the jwks base) ---------------------------------------- */

static void
jwks_schedule(struct jwks *j, uint64_t seconds)
{
	struct timeval	tv = { .tv_sec = (time_t)seconds, .tv_usec = 0 };

	evtimer_add(j->timer, &tv);
}

static void
jwks_fetch_free(struct jwks_fetch *f)
{
	int	i;

	for (i = 0; i < 2; i++) {
		httpc_cancel(f->slot[i].xfer);
		free(f->slot[i].url);
		free(f->issuer[i]);
		free(f->jwks_uri[i]);
	}
	jwks_keyset_put(f->set);
	free(f);
}

static void
jwks_fetch_finish(struct jwks_fetch *f)
{
	struct jwks	*j = f->j;
	char		*blob;
	size_t		 len, nkeys = jwks_keyset_count(f->set);

	if (!f->failed && nkeys > 0) {
		if (j->save != NULL) {
			blob = jwks_keyset_dump(f->set, &len);
			j->save(blob, len, j->hook_arg);
			free(blob);
		}
		jwks_publish(j, f->set, JWKS_FRESH);
		f->set = NULL;
		j->retry = 0;
		jwks_schedule(j, j->refresh);
		log_info("jwks: %zu signing keys from %s", nkeys, j->authority);
	} else {
		pthread_mutex_lock(&j->mtx);
		j->state = j->current != NULL ? JWKS_STALE : JWKS_NONE;
		pthread_mutex_unlock(&j->mtx);
		j->retry = j->retry == 0 ? JWKS_RETRY_MIN :
		    MINIMUM(j->retry * 2, JWKS_RETRY_MAX);
		jwks_schedule(j, MINIMUM(j->retry, j->refresh));
		log_warnx("jwks: refresh from %s failed; keeping the last "
		    "good keys, retry in %llus", j->authority,
		    (unsigned long long)MINIMUM(j->retry, j->refresh));
	}
	j->fetch = NULL;
	jwks_fetch_free(f);
	jwks_refresh_done(j);
}

static int
jwks_response_ok(struct jwks_slot *slot, const struct httpc_response *resp)
{
	if (resp->error != HTTPC_OK) {
		log_warnx("jwks: %s: %s", slot->url, resp->errmsg);
		return -1;
	}
	if (resp->status != 200) {
		log_warnx("jwks: %s: HTTP status %ld", slot->url, resp->status);
		return -1;
	}
	return 0;
}

static void
jwks_get(struct jwks_fetch *f, int idx, const char *url, httpc_cb cb)
{
	static const char *const headers[] = { "Accept: application/json",
	    NULL };
	struct jwks			*j = f->j;
	struct jwks_slot		*slot = &f->slot[idx];
	struct httpc_request		 req;

	memset(&req, 0, sizeof(req));
	req.url = url;
	req.headers = headers;
	req.timeout_ms = j->timeout_ms;
	req.max_body = JWKS_MAX_DOC;
	req.ca_file = j->ca_file;
	slot->f = f;
	slot->idx = idx;
	free(slot->url);
	slot->url = xstrdup(url);
	if ((slot->xfer = httpc_start(j->httpc, &req, cb, slot)) == NULL)
		f->failed = 1;
	else
		f->pending++;
}

static void
jwks_on_keys(const struct httpc_response *resp, void *arg)
{
	struct jwks_slot	*slot = arg;
	struct jwks_fetch	*f = slot->f;
	json_t			*doc = NULL, *keys;
	char			 err[160];

	slot->xfer = NULL;
	f->pending--;
	if (jwks_response_ok(slot, resp) == -1)
		f->failed = 1;
	else if ((doc = jwks_json_load(resp->body, resp->body_len, err,
	    sizeof(err))) == NULL ||
	    !json_is_array(keys = json_object_get(doc, "keys"))) {
		log_warnx("jwks: %s: %s", slot->url,
		    doc == NULL ? err : "no \"keys\" array");
		f->failed = 1;
	} else
		jwks_keyset_add(f->set, keys);
	json_decref(doc);
	if (f->pending == 0)
		jwks_fetch_finish(f);
}

static void
jwks_on_metadata(const struct httpc_response *resp, void *arg)
{
	struct jwks_slot	*slot = arg;
	struct jwks_fetch	*f = slot->f;
	int			 i = slot->idx;
	char			 err[256];

	slot->xfer = NULL;
	f->pending--;
	if (jwks_response_ok(slot, resp) == -1)
		f->failed = 1;
	else if (jwks_metadata_parse(resp->body, resp->body_len,
	    f->j->tenant_id, &f->issuer[i], &f->jwks_uri[i], err,
	    sizeof(err)) == -1) {
		log_warnx("jwks: %s: %s", slot->url, err);
		f->failed = 1;
	}
	if (f->pending > 0)
		return;
	if (!f->failed) {
		f->set = jwks_keyset_new(f->issuer[0], f->issuer[1]);
		jwks_get(f, 0, f->jwks_uri[0], jwks_on_keys);
		if (strcmp(f->jwks_uri[0], f->jwks_uri[1]) != 0)
			jwks_get(f, 1, f->jwks_uri[1], jwks_on_keys);
	}
	if (f->pending == 0)
		jwks_fetch_finish(f);
}

/* Both metadata documents first, then the key sets they name. */
static void
jwks_fetch_start(struct jwks *j)
{
	struct jwks_fetch	*f;
	char			*url;
	int			 i;

	f = xcalloc(1, sizeof(*f));
	f->j = j;
	j->fetch = f;
	pthread_mutex_lock(&j->mtx);
	j->fetches++;
	pthread_mutex_unlock(&j->mtx);
	for (i = 0; i < 2; i++) {
		xasprintf(&url, "%s/%s%s/.well-known/openid-configuration",
		    j->authority, j->tenant_id, i == 1 ? "/v2.0" : "");
		jwks_get(f, i, url, jwks_on_metadata);
		free(url);
	}
	if (f->pending == 0)
		jwks_fetch_finish(f);
}

static void
jwks_kick_event(evutil_socket_t fd, short what, void *arg)
{
	struct jwks	*j = arg;

	if (j->fetch == NULL)
		jwks_fetch_start(j);
}

static void
jwks_timer_event(evutil_socket_t fd, short what, void *arg)
{
	struct jwks	*j = arg;
	int		 start;

	pthread_mutex_lock(&j->mtx);
	start = !j->busy;
	j->busy = 1;
	pthread_mutex_unlock(&j->mtx);
	if (start)
		jwks_fetch_start(j);
}

/* --- life cycle --------------------------------------------------------- */

struct jwks *
jwks_new(struct event_base *base, struct httpc *httpc,
    const struct jwks_params *p)
{
	struct jwks	*j;
	size_t		 len;

	j = xcalloc(1, sizeof(*j));
	j->base = base;
	j->httpc = httpc;
	j->authority = xstrdup(p->authority);
	len = strlen(j->authority);
	while (len > 0 && j->authority[len - 1] == '/')
		j->authority[--len] = '\0';
	j->tenant_id = xstrdup(p->tenant_id);
	j->ca_file = p->ca_file != NULL ? xstrdup(p->ca_file) : NULL;
	j->refresh = p->refresh ? p->refresh : 3600;
	j->min_refetch = p->min_refetch ? p->min_refetch : JWKS_MIN_REFETCH;
	j->timeout_ms = p->timeout_ms ? p->timeout_ms :
	    JWKS_DEFAULT_TIMEOUT_MS;
	j->save = p->save;
	j->load = p->load;
	j->hook_arg = p->hook_arg;
	TAILQ_INIT(&j->waiters);
	if (pthread_mutex_init(&j->mtx, NULL) != 0)
		fatalx("jwks: pthread_mutex_init failed");
	j->timer = evtimer_new(base, jwks_timer_event, j);
	j->kick = event_new(base, -1, 0, jwks_kick_event, j);
	if (j->timer == NULL || j->kick == NULL)
		fatalx("jwks: event_new failed");
	return j;
}

/* Load the persisted set (stale until a fetch succeeds), then fetch. */
void
jwks_start(struct jwks *j)
{
	char	*blob, err[160];
	size_t	 len;

	if (j->load != NULL && (blob = j->load(&len, j->hook_arg)) != NULL) {
		if (jwks_install(j, blob, len, 0, err, sizeof(err)) == -1)
			log_warnx("jwks: stored key set ignored: %s", err);
		else
			log_info("jwks: %zu stored signing keys loaded",
			    jwks_keyset_count(j->current));
		free(blob);
	}
	jwks_refresh_now(j);
}

void
jwks_free(struct jwks *j)
{
	if (j == NULL)
		return;
	if (j->fetch != NULL)
		jwks_fetch_free(j->fetch);
	jwks_refresh_done(j);
	event_free(j->timer);
	event_free(j->kick);
	jwks_keyset_put(j->current);
	pthread_mutex_destroy(&j->mtx);
	free(j->authority);
	free(j->tenant_id);
	free(j->ca_file);
	free(j);
}
