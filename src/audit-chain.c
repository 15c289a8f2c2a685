/*
 * audit-chain.c: numbering and chaining records inside the store writer's
 * transaction (the write hook), signed checkpoints and prune anchors, and
 * the record format helpers shared with verify and export.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "tenantd.h"
#include "audit.h"

#define HASH_LEN	32
#define CP_PREFIX	"{\"action\":\"audit.checkpoint\""

enum pending_kind {
	PENDING_RECORD,
	PENDING_CHECKPOINT,
	PENDING_PRUNE,
};

struct pending {
	enum pending_kind	 kind;
	struct abuf		 pre, mid;
	uint64_t		 through;	/* PENDING_PRUNE */
	uint64_t		 pruned;
};

/* The chain as the current write transaction sees it. */
struct chain {
	uint64_t	seq;
	uint8_t		head[HASH_LEN];
	int		last_is_checkpoint;
	uint64_t	anchor_through;
};

static struct {
	struct store	*st;
	struct keyring	*kr;
	uint64_t	 every;
	uint64_t	 interval_us, last_tick_cp;
	uint8_t		 pub[KEYRING_AUDIT_PUB_LEN];
	char		 pub_hex[2 * KEYRING_AUDIT_PUB_LEN + 1];
	char		 key_id[17];
} au;

#ifdef AUDIT_TESTING
int	audit_test_fail;	/* fail this many hook calls */
#endif

const char *const audit_field_names[AF_COUNT] = {
	"action", "actor", "actor_roles", "client_app", "details", "outcome",
	"request_id", "seq", "source", "status", "target", "ts",
};

/* --- small helpers ------------------------------------------------------- */

uint64_t
audit_key_seq(const void *key)
{
	const uint8_t	*k = key;
	uint64_t	 v = 0;
	int		 i;

	for (i = 0; i < AUDIT_KEY_LEN; i++)
		v = v << 8 | k[i];
	return v;
}

void
audit_seq_key(uint64_t seq, uint8_t *key)
{
	int	i;

	for (i = AUDIT_KEY_LEN - 1; i >= 0; i--, seq >>= 8)
		key[i] = seq & 0xff;
}

/* Fetched once: an implicit fetch per digest costs more than the hash. */
static pthread_once_t	 sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD		*sha256_md;

static void
sha256_fetch(void)
{
	if ((sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		fatalx("audit: SHA-256 is not available");
}

/* h[n] = SHA-256(prefix || h[n-1] || canonical(record[n])) */
void
audit_chain(const uint8_t *prev, const void *canon, size_t len,
    uint8_t *out)
{
	uint8_t	 small[4096], *buf = small;
	size_t	 plen = sizeof(AUDIT_CHAIN_PREFIX) - 1;
	size_t	 n = plen + HASH_LEN + len;

	if (n > sizeof(small))
		buf = xmalloc(n);
	memcpy(buf, AUDIT_CHAIN_PREFIX, plen);
	memcpy(buf + plen, prev, HASH_LEN);
	memcpy(buf + plen + HASH_LEN, canon, len);
	pthread_once(&sha256_once, sha256_fetch);
	if (EVP_Digest(buf, n, out, NULL, sha256_md, NULL) != 1)
		fatalx("audit: SHA-256 failed");
	if (buf != small)
		free(buf);
}

void
audit_hex(const uint8_t *p, size_t n, char *out)
{
	static const char	digits[] = "0123456789abcdef";
	size_t			i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
audit_unhex(const char *s, size_t len, uint8_t *out, size_t outlen)
{
	size_t	i;
	int	hi, lo;

	if (len != 2 * outlen)
		return -1;
	for (i = 0; i < outlen; i++) {
		if ((hi = hexval(s[2 * i])) < 0 ||
		    (lo = hexval(s[2 * i + 1])) < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* prefix || {"head":"HEX","SEQKEY":N,"ts":"TS"}: what a signature covers. */
void
audit_signed_message(struct abuf *b, const char *prefix, const char *seq_key,
    uint64_t seq, const char *head_hex, const char *ts)
{
	abuf_str(b, prefix);
	abuf_printf(b, "{\"head\":\"%s\",\"%s\":%llu,\"ts\":\"%s\"}",
	    head_hex, seq_key, (unsigned long long)seq, ts);
}

int
audit_sig_ok(const uint8_t *pub, const struct abuf *msg, const char *sig_hex)
{
	EVP_PKEY	*pkey;
	EVP_MD_CTX	*ctx;
	uint8_t		 sig[KEYRING_AUDIT_SIG_LEN];
	int		 ok;

	if (audit_unhex(sig_hex, strlen(sig_hex), sig, sizeof(sig)) == -1)
		return 0;
	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
	    KEYRING_AUDIT_PUB_LEN);
	if (pkey == NULL || (ctx = EVP_MD_CTX_new()) == NULL)
		fatalx("audit: cannot load the audit public key");
	ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
	    EVP_DigestVerify(ctx, sig, sizeof(sig), (const uint8_t *)msg->p,
	    msg->len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok;
}

struct store *
audit_store(void)
{
	return au.st;
}

struct keyring *
audit_keyring(void)
{
	return au.kr;
}

int
audit_enabled(void)
{
	return au.st != NULL;
}

void
audit_pubkey(char *hex, size_t hexlen, char *key_id, size_t idlen)
{
	if (hex != NULL)
		strlcpy(hex, au.pub_hex, hexlen);
	if (key_id != NULL)
		strlcpy(key_id, au.key_id, idlen);
}

/* --- reading the chain head inside the transaction ------------------------ */

static int
anchor_head(const char *val, size_t len, struct chain *c)
{
	json_t		*a;
	const char	*head;
	int		 rv = STORE_CORRUPT;

	if ((a = json_loadb(val, len, 0, NULL)) == NULL)
		return rv;
	head = json_string_value(json_object_get(a, "head"));
	c->seq = (uint64_t)json_integer_value(json_object_get(a,
	    "pruned_through_seq"));
	if (head != NULL && audit_unhex(head, strlen(head), c->head,
	    HASH_LEN) == 0)
		rv = STORE_OK;
	c->anchor_through = c->seq;
	json_decref(a);
	return rv;
}

static int
chain_read(struct store_txn *t, struct chain *c)
{
	uint8_t		 key[512];
	size_t		 klen, vlen;
	void		*val;
	int		 rv;

	memset(c, 0, sizeof(*c));
	c->last_is_checkpoint = 1;	/* nothing to sign yet */
	rv = store_txn_last(t, AUDIT_DB, key, &klen, &val, &vlen);
	if (rv == STORE_NOTFOUND)
		return STORE_OK;
	if (rv != STORE_OK)
		return rv;
	if (klen != AUDIT_KEY_LEN)
		rv = STORE_CORRUPT;
	else if ((c->seq = audit_key_seq(key)) == 0)
		rv = anchor_head(val, vlen, c);
	else if (vlen < HASH_LEN)
		rv = STORE_CORRUPT;
	else {
		memcpy(c->head, val, HASH_LEN);
		c->last_is_checkpoint = vlen - HASH_LEN >= strlen(CP_PREFIX) &&
		    memcmp((char *)val + HASH_LEN, CP_PREFIX,
		    strlen(CP_PREFIX)) == 0;
	}
	free(val);
	if (rv != STORE_OK)
		log_warnx("audit: the last audit record is unreadable: %s",
		    store_strerror(rv));
	return rv;
}

/* --- appending ------------------------------------------------------------ */

static int
chain_append(struct store_txn *t, struct chain *c, const struct abuf *pre,
    const struct abuf *mid, uint64_t ts_us)
{
	struct abuf	v = { 0 };
	uint8_t		key[AUDIT_KEY_LEN], h[HASH_LEN] = { 0 };
	char		ts[40];
	int		rv;

	format_iso8601(ts, sizeof(ts), ts_us);
	abuf_add(&v, h, HASH_LEN);
	abuf_add(&v, pre->p, pre->len);
	abuf_printf(&v, "\"seq\":%llu,", (unsigned long long)c->seq + 1);
	abuf_add(&v, mid->p, mid->len);
	abuf_printf(&v, "\"ts\":\"%s\"}", ts);
	audit_chain(c->head, v.p + HASH_LEN, v.len - HASH_LEN, h);
	memcpy(v.p, h, HASH_LEN);
	audit_seq_key(c->seq + 1, key);
	rv = store_txn_put(t, AUDIT_DB, key, sizeof(key), v.p, v.len);
	abuf_free(&v);
	if (rv == STORE_OK) {
		c->seq++;
		memcpy(c->head, h, HASH_LEN);
		c->last_is_checkpoint = 0;
	}
	return rv;
}

static void
sign_hex(const struct abuf *msg, char *out)
{
	uint8_t	sig[KEYRING_AUDIT_SIG_LEN];

	if (keyring_audit_sign(au.kr, msg->p, msg->len, sig) != KEYRING_OK)
		fatalx("audit: Ed25519 signing failed");
	audit_hex(sig, sizeof(sig), out);
}

/* A checkpoint record signing {seq, head, ts} of the record before it. */
static int
checkpoint_append(struct store_txn *t, struct chain *c)
{
	struct audit_record	 rec;
	struct abuf		 msg = { 0 }, pre = { 0 }, mid = { 0 };
	uint64_t		 now = wall_usec();
	char			 head[2 * HASH_LEN + 1], ts[40];
	char			 sig[2 * KEYRING_AUDIT_SIG_LEN + 1];
	int			 rv;

	audit_hex(c->head, HASH_LEN, head);
	format_iso8601(ts, sizeof(ts), now);
	audit_signed_message(&msg, AUDIT_CHECKPOINT_PREFIX, "seq", c->seq,
	    head, ts);
	sign_hex(&msg, sig);
	audit_record_init(&rec, "audit.checkpoint", "system");
	audit_record_detail_int(&rec, "covers_seq", (long long)c->seq);
	audit_record_detail(&rec, "head", "%s", head);
	audit_record_detail(&rec, "key_id", "%s", au.key_id);
	audit_record_detail(&rec, "sig", "%s", sig);
	audit_render(&rec, &pre, &mid);
	rv = chain_append(t, c, &pre, &mid, now);
	abuf_free(&msg);
	abuf_free(&pre);
	abuf_free(&mid);
	if (rv == STORE_OK)
		c->last_is_checkpoint = 1;
	return rv;
}

/* The hash stored with record seq, read in the transaction. */
static int
stored_hash(struct store_txn *t, uint64_t seq, uint8_t *h)
{
	uint8_t	 key[AUDIT_KEY_LEN];
	void	*val;
	size_t	 len;
	int	 rv;

	audit_seq_key(seq, key);
	if ((rv = store_txn_get(t, AUDIT_DB, key, sizeof(key), &val,
	    &len)) != STORE_OK)
		return rv;
	if (len >= HASH_LEN)
		memcpy(h, val, HASH_LEN);
	else
		rv = STORE_CORRUPT;
	free(val);
	return rv;
}

/* The signed anchor at key 0: where the chain resumes after a prune. */
static int
anchor_put(struct store_txn *t, uint64_t through, const uint8_t *h)
{
	struct abuf	msg = { 0 }, v = { 0 };
	uint8_t		key[AUDIT_KEY_LEN] = { 0 };
	char		head[2 * HASH_LEN + 1], ts[40];
	char		sig[2 * KEYRING_AUDIT_SIG_LEN + 1];
	int		rv;

	audit_hex(h, HASH_LEN, head);
	format_iso8601(ts, sizeof(ts), wall_usec());
	audit_signed_message(&msg, AUDIT_ANCHOR_PREFIX, "pruned_through_seq",
	    through, head, ts);
	sign_hex(&msg, sig);
	abuf_printf(&v, "{\"head\":\"%s\",\"key_id\":\"%s\","
	    "\"pruned_through_seq\":%llu,\"sig\":\"%s\",\"ts\":\"%s\"}", head,
	    au.key_id, (unsigned long long)through, sig, ts);
	rv = store_txn_put(t, AUDIT_DB, key, sizeof(key), v.p, v.len);
	abuf_free(&msg);
	abuf_free(&v);
	return rv;
}

/* Where the previous prune stopped (0: never pruned). */
static int
anchor_through(struct store_txn *t, uint64_t *through)
{
	struct chain	 a;
	uint8_t		 key[AUDIT_KEY_LEN] = { 0 };
	void		*val;
	size_t		 len;
	int		 rv;

	*through = 0;
	rv = store_txn_get(t, AUDIT_DB, key, sizeof(key), &val, &len);
	if (rv == STORE_NOTFOUND)
		return STORE_OK;
	if (rv == STORE_OK) {
		rv = anchor_head(val, len, &a);
		*through = a.anchor_through;
		free(val);
	}
	return rv;
}

static int
prune_apply(struct store_txn *t, struct chain *c, struct pending *p)
{
	struct audit_record	rec;
	struct abuf		pre = { 0 }, mid = { 0 };
	uint8_t			key[AUDIT_KEY_LEN], h[HASH_LEN];
	uint64_t		s;
	char			hex[2 * HASH_LEN + 1];
	int			rv;

	if ((rv = anchor_through(t, &c->anchor_through)) != STORE_OK)
		return rv;
	if (p->through <= c->anchor_through || p->through > c->seq)
		return STORE_INVALID;
	if ((rv = stored_hash(t, p->through, h)) != STORE_OK)
		return rv;
	for (s = c->anchor_through + 1, p->pruned = 0; s <= p->through; s++) {
		audit_seq_key(s, key);
		if ((rv = store_txn_del(t, AUDIT_DB, key, sizeof(key))) !=
		    STORE_OK)
			return rv;
		p->pruned++;
	}
	if ((rv = anchor_put(t, p->through, h)) != STORE_OK)
		return rv;
	audit_hex(h, HASH_LEN, hex);
	audit_record_init(&rec, "audit.prune", "system");
	audit_record_detail_int(&rec, "pruned_through_seq",
	    (long long)p->through);
	audit_record_detail(&rec, "head", "%s", hex);
	audit_render(&rec, &pre, &mid);
	rv = chain_append(t, c, &pre, &mid, wall_usec());
	abuf_free(&pre);
	abuf_free(&mid);
	return rv;
}

/*
 * The write hook: runs in the writer thread inside the transaction, so seq
 * and the chain follow commit order and a failed batch leaves no number
 * behind. It keeps no state of its own: it reads the head every time.
 */
static int
chain_hook(struct store_txn *t, void *arg)
{
	struct pending	*p = arg;
	struct chain	 c;
	int		 rv;

#ifdef AUDIT_TESTING
	if (audit_test_fail > 0) {
		audit_test_fail--;
		return STORE_IO;
	}
#endif
	if ((rv = chain_read(t, &c)) != STORE_OK)
		return rv;
	switch (p->kind) {
	case PENDING_RECORD:
		if ((c.seq + 1) % au.every == 0 && !c.last_is_checkpoint &&
		    (rv = checkpoint_append(t, &c)) != STORE_OK)
			return rv;
		return chain_append(t, &c, &p->pre, &p->mid, wall_usec());
	case PENDING_CHECKPOINT:
		return c.last_is_checkpoint ? STORE_OK :
		    checkpoint_append(t, &c);
	case PENDING_PRUNE:
		return prune_apply(t, &c, p);
	}
	return STORE_INVALID;
}

static int
fail_hook(struct store_txn *t, void *arg)
{
	return STORE_INVALID;
}

static void
pending_free(void *arg)
{
	struct pending	*p = arg;

	OPENSSL_cleanse(p->pre.p, p->pre.len);
	OPENSSL_cleanse(p->mid.p, p->mid.len);
	abuf_free(&p->pre);
	abuf_free(&p->mid);
	free(p);
}

static struct pending *
pending_add(struct store_batch *b, enum pending_kind kind)
{
	struct pending	*p;

	p = xcalloc(1, sizeof(*p));
	p->kind = kind;
	store_batch_hook(b, chain_hook, p, pending_free);
	return p;
}

/*
 * Fail-closed: the record commits with the batch or not at all. A record
 * that cannot be added makes the whole batch fail when it is written.
 */
int
audit_batch_add(struct store_batch *b, const struct audit_record *rec)
{
	struct pending	*p;

	if (au.st == NULL || rec->action == NULL) {
		store_batch_hook(b, fail_hook, NULL, NULL);
		return au.st == NULL ? STORE_CLOSED : STORE_INVALID;
	}
	p = pending_add(b, PENDING_RECORD);
	audit_render(rec, &p->pre, &p->mid);
	return STORE_OK;
}

/* Sign the head now unless the last record is already a checkpoint. */
int
audit_checkpoint(void)
{
	struct store_batch	*b;

	if (au.st == NULL)
		return STORE_CLOSED;
	b = store_batch_new(au.st);
	store_batch_use_reserve(b);
	pending_add(b, PENDING_CHECKPOINT);
	return store_write(b);
}

/*
 * Remove records 1..through (after verifying them), leaving a signed
 * anchor {pruned_through_seq, head} and an audit.prune record.
 */
int
audit_prune(uint64_t through, char *err, size_t errlen)
{
	struct store_batch	*b;
	int			 rv;

	if (au.st == NULL) {
		snprintf(err, errlen, "the audit trail is not open");
		return STORE_CLOSED;
	}
	b = store_batch_new(au.st);
	pending_add(b, PENDING_PRUNE)->through = through;
	if ((rv = store_write(b)) != STORE_OK)
		snprintf(err, errlen, "audit prune through %llu: %s",
		    (unsigned long long)through, rv == STORE_INVALID ?
		    "not after the current anchor, or past the last record" :
		    store_strerror(rv));
	return rv;
}

/* Called about once a minute by the daemon. */
void
audit_tick(struct event_base *base)
{
	uint64_t	now = now_usec();

	if (au.st == NULL)
		return;
	audit_deny_flush(base, 0);
	if (now - au.last_tick_cp >= au.interval_us) {
		au.last_tick_cp = now;
		audit_checkpoint();
	}
}

int
audit_init(struct store *st, struct keyring *kr,
    const struct audit_params *p, char *err, size_t errlen)
{
	uint8_t	 probe[AUDIT_KEY_LEN] = { 0 }, id[HASH_LEN];
	void	*val = NULL;
	size_t	 len;

	if (store_get(st, AUDIT_DB, probe, sizeof(probe), &val, &len) ==
	    STORE_INVALID) {
		snprintf(err, errlen, "audit: the store has no '%s' database",
		    AUDIT_DB);
		return -1;
	}
	free(val);
	au.st = st;
	au.kr = kr;
	au.every = p != NULL && p->checkpoint_every ? p->checkpoint_every :
	    1000;
	au.interval_us = (p != NULL && p->checkpoint_interval ?
	    p->checkpoint_interval : 300) * 1000000ULL;
	au.last_tick_cp = now_usec();
	audit_deny_limits(p != NULL ? p->denied_per_source : 0,
	    p != NULL ? p->denied_total : 0);
	keyring_audit_pubkey(kr, au.pub);
	audit_hex(au.pub, sizeof(au.pub), au.pub_hex);
	SHA256(au.pub, sizeof(au.pub), id);
	audit_hex(id, 8, au.key_id);
	return 0;
}

/* Record what is still suppressed, then forget the store. */
void
audit_shutdown(void)
{
	if (au.st == NULL)
		return;
	audit_deny_flush(NULL, 1);
	memset(&au, 0, sizeof(au));
}

const uint8_t *
audit_pub(void)
{
	return au.pub;
}
