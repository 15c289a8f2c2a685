/*
 * audit-verify.c: reading stored records (a parser for the canonical form)
 * and verifying the chain: every record in sequence, every hash, every
 * checkpoint and the prune anchor; the first break is named with its seq.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenantd.h"
#include "audit.h"

#define HASH_LEN	32

/* --- parsing the canonical form ------------------------------------------ */

/* The end of the JSON value at p, or NULL. Strings may hold escapes. */
static const char *
skip_value(const char *p, const char *end)
{
	int	depth = 0, in_str = 0;

	if (p >= end)
		return NULL;
	if (*p != '"' && *p != '[' && *p != '{') {
		while (p < end && *p != ',' && *p != '}' && *p != ']')
			p++;
		return p;
	}
	for (; p < end; p++) {
		if (in_str) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				in_str = 0;
		} else if (*p == '"')
			in_str = 1;
		else if (*p == '[' || *p == '{')
			depth++;
		else if (*p == ']' || *p == '}')
			depth--;
		if (!in_str && depth == 0)
			return p + 1;
	}
	return NULL;
}

/*
 * Walk the members of the object obj[len]; call fn for each. Keys are
 * plain (the canonical form never escapes a key).
 */
static int
walk_members(const char *obj, size_t len,
    int (*fn)(const char *, size_t, const char *, size_t, void *), void *arg)
{
	const char	*p = obj, *end = obj + len, *k, *tok;
	size_t		 klen;

	if (len < 2 || *p != '{' || end[-1] != '}')
		return -1;
	for (p++; p < end - 1;) {
		if (*p != '"')
			return -1;
		for (k = ++p; p < end && *p != '"'; p++)
			;
		klen = p - k;
		if (++p >= end || *p++ != ':')
			return -1;
		tok = p;
		if ((p = skip_value(p, end - 1)) == NULL)
			return -1;
		if (fn(k, klen, tok, p - tok, arg) == 1)
			return 0;
		if (*p == ',')
			p++;
		else if (p != end - 1)
			return -1;
	}
	return 0;
}

struct member_find {
	const char	*key;
	const char	*tok;
	size_t		 len;
};

static int
member_cb(const char *k, size_t klen, const char *tok, size_t len, void *arg)
{
	struct member_find	*m = arg;

	if (strlen(m->key) != klen || memcmp(k, m->key, klen) != 0)
		return 0;
	m->tok = tok;
	m->len = len;
	return 1;
}

int
audit_member(const char *obj, size_t len, const char *key, const char **tok,
    size_t *toklen)
{
	struct member_find	m = { key, NULL, 0 };

	if (walk_members(obj, len, member_cb, &m) == -1 || m.tok == NULL)
		return -1;
	*tok = m.tok;
	*toklen = m.len;
	return 0;
}

struct view_walk {
	struct audit_view	*v;
	size_t			 next;	/* canonical order: usually a hit */
};

static int
view_cb(const char *k, size_t klen, const char *tok, size_t len, void *arg)
{
	struct view_walk	*w = arg;
	size_t			 i, n;

	for (n = 0; n < AF_COUNT; n++) {
		i = (w->next + n) % AF_COUNT;
		if (strncmp(audit_field_names[i], k, klen) == 0 &&
		    audit_field_names[i][klen] == '\0') {
			w->v->tok[i] = tok;
			w->v->len[i] = len;
			w->next = i + 1;
			break;
		}
	}
	return 0;
}

int
audit_parse(const char *p, size_t len, struct audit_view *v)
{
	struct view_walk	w = { v, 0 };
	size_t			i;
	char			num[24];

	memset(v, 0, sizeof(*v));
	if (walk_members(p, len, view_cb, &w) == -1)
		return -1;
	for (i = 0; i < AF_COUNT; i++)
		if (v->tok[i] == NULL)
			return -1;
	if (v->len[AF_SEQ] == 0 || v->len[AF_SEQ] >= sizeof(num))
		return -1;
	memcpy(num, v->tok[AF_SEQ], v->len[AF_SEQ]);
	num[v->len[AF_SEQ]] = '\0';
	if (strspn(num, "0123456789") != v->len[AF_SEQ])
		return -1;
	v->seq = strtoull(num, NULL, 10);
	return 0;
}

/* Decode a JSON string token (with its quotes) into out (len bytes). */
size_t
audit_unquote(const char *tok, size_t len, char *out)
{
	size_t	i, o = 0;

	if (len < 2 || tok[0] != '"')
		return 0;
	for (i = 1; i < len - 1; i++) {
		if (tok[i] != '\\' || i + 1 >= len - 1) {
			out[o++] = tok[i];
			continue;
		}
		switch (tok[++i]) {
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		default: out[o++] = tok[i]; break;
		}
	}
	out[o] = '\0';
	return o;
}

/* Is string field f exactly s? */
int
audit_is(const struct audit_view *v, enum audit_field f, const char *s)
{
	size_t	n = strlen(s);

	return v->len[f] == n + 2 && memcmp(v->tok[f] + 1, s, n) == 0;
}

int
audit_detail_str(const struct audit_view *v, const char *key, char *out,
    size_t outlen)
{
	const char	*tok;
	size_t		 len;

	if (audit_member(v->tok[AF_DETAILS], v->len[AF_DETAILS], key, &tok,
	    &len) == -1 || len - (tok[0] == '"' ? 2 : 0) >= outlen)
		return -1;
	if (tok[0] == '"')
		audit_unquote(tok, len, out);
	else {
		memcpy(out, tok, len);
		out[len] = '\0';
	}
	return 0;
}

/* --- verification -------------------------------------------------------- */

struct verify {
	uint64_t	 from, expect, records, checkpoints, anchor;
	uint64_t	 last_seq, last_cp;
	uint8_t		 head[HASH_LEN];
	int		 started, failed;
	uint64_t	 bad_seq;
	const char	*reason;
	char		 detail[256];
};

static int
vfail(struct verify *vs, uint64_t seq, const char *reason, const char *fmt,
    ...) PRINTFLIKE(4, 5);

static int
vfail(struct verify *vs, uint64_t seq, const char *reason, const char *fmt,
    ...)
{
	va_list	ap;

	vs->failed = 1;
	vs->bad_seq = seq;
	vs->reason = reason;
	va_start(ap, fmt);
	vsnprintf(vs->detail, sizeof(vs->detail), fmt, ap);
	va_end(ap);
	return 1;
}

static int
verify_anchor(struct verify *vs, const char *val, size_t len)
{
	const char	*tok;
	size_t		 toklen;
	char		 head[2 * HASH_LEN + 1], ts[40], sig[160], num[24];
	struct abuf	 msg = { 0 };
	uint64_t	 through;
	int		 ok;

	if (audit_member(val, len, "head", &tok, &toklen) == -1 ||
	    toklen != sizeof(head) + 1 ||
	    audit_unquote(tok, toklen, head) != 2 * HASH_LEN ||
	    audit_member(val, len, "ts", &tok, &toklen) == -1 ||
	    toklen >= sizeof(ts) || !audit_unquote(tok, toklen, ts) ||
	    audit_member(val, len, "sig", &tok, &toklen) == -1 ||
	    toklen >= sizeof(sig) || !audit_unquote(tok, toklen, sig) ||
	    audit_member(val, len, "pruned_through_seq", &tok, &toklen) ==
	    -1 || toklen >= sizeof(num))
		return vfail(vs, 0, "bad_anchor", "the prune anchor is not "
		    "readable");
	memcpy(num, tok, toklen);
	num[toklen] = '\0';
	through = strtoull(num, NULL, 10);
	audit_signed_message(&msg, AUDIT_ANCHOR_PREFIX, "pruned_through_seq",
	    through, head, ts);
	ok = audit_sig_ok(audit_pub(), &msg, sig);
	abuf_free(&msg);
	if (!ok)
		return vfail(vs, 0, "bad_anchor_signature", "the prune anchor "
		    "(through seq %llu) has a bad signature",
		    (unsigned long long)through);
	audit_unhex(head, 2 * HASH_LEN, vs->head, HASH_LEN);
	vs->anchor = through;
	vs->expect = through + 1;
	vs->started = 1;
	return 0;
}

/* A checkpoint signs {seq, head, ts} of the record before it. */
static int
verify_checkpoint(struct verify *vs, const struct audit_view *v)
{
	struct abuf	msg = { 0 };
	char		head[2 * HASH_LEN + 1], want[2 * HASH_LEN + 1];
	char		sig[160], covers[24], ts[40];
	int		ok;

	if (audit_detail_str(v, "head", head, sizeof(head)) == -1 ||
	    audit_detail_str(v, "sig", sig, sizeof(sig)) == -1 ||
	    audit_detail_str(v, "covers_seq", covers, sizeof(covers)) == -1 ||
	    v->len[AF_TS] >= sizeof(ts))
		return vfail(vs, v->seq, "bad_checkpoint", "checkpoint without "
		    "head, covers_seq or sig");
	audit_unquote(v->tok[AF_TS], v->len[AF_TS], ts);
	audit_signed_message(&msg, AUDIT_CHECKPOINT_PREFIX, "seq",
	    strtoull(covers, NULL, 10), head, ts);
	ok = audit_sig_ok(audit_pub(), &msg, sig);
	abuf_free(&msg);
	if (!ok)
		return vfail(vs, v->seq, "bad_checkpoint_signature",
		    "checkpoint %llu: the signature does not verify with the "
		    "audit key", (unsigned long long)v->seq);
	audit_hex(vs->head, HASH_LEN, want);
	if (strtoull(covers, NULL, 10) != v->seq - 1 ||
	    strcmp(head, want) != 0)
		return vfail(vs, v->seq, "checkpoint_mismatch", "checkpoint "
		    "%llu signs seq %s with a head the records before it do "
		    "not produce", (unsigned long long)v->seq, covers);
	vs->checkpoints++;
	vs->last_cp = v->seq;
	return 0;
}

static int
verify_record(struct verify *vs, uint64_t seq, const uint8_t *val,
    size_t len)
{
	struct audit_view	v;
	uint8_t			h[HASH_LEN];

	if (len < HASH_LEN || audit_parse((const char *)val + HASH_LEN,
	    len - HASH_LEN, &v) == -1)
		return vfail(vs, seq, "changed", "record %llu is not a "
		    "canonical record", (unsigned long long)seq);
	if (v.seq != seq)
		return vfail(vs, seq, "reordered", "the record stored at "
		    "position %llu carries seq %llu",
		    (unsigned long long)seq, (unsigned long long)v.seq);
	if (audit_is(&v, AF_ACTION, "audit.checkpoint") &&
	    verify_checkpoint(vs, &v) != 0)
		return 1;
	audit_chain(vs->head, val + HASH_LEN, len - HASH_LEN, h);
	if (memcmp(h, val, HASH_LEN) != 0)
		return vfail(vs, seq, "changed", "record %llu does not hash "
		    "to its chain value (its content, or the record before "
		    "it, was changed)", (unsigned long long)seq);
	memcpy(vs->head, h, HASH_LEN);
	return 0;
}

static int
verify_cb(const void *key, size_t keylen, const void *val, size_t len,
    void *arg)
{
	struct verify	*vs = arg;
	uint64_t	 seq;

	if (keylen != AUDIT_KEY_LEN)
		return vfail(vs, vs->expect, "changed", "a record key of %zu "
		    "bytes is in the audit database", keylen);
	if ((seq = audit_key_seq(key)) == 0)
		return verify_anchor(vs, val, len);
	if (!vs->started && vs->from > 1) {
		/* the stored hash before --from seeds the chain */
		if (seq != vs->from - 1 || len < HASH_LEN)
			return vfail(vs, vs->from - 1, "missing", "record "
			    "%llu (before --from) is missing",
			    (unsigned long long)vs->from - 1);
		memcpy(vs->head, val, HASH_LEN);
		vs->expect = vs->from;
		vs->started = 1;
		return 0;
	}
	if (!vs->started) {
		vs->expect = 1;
		vs->started = 1;
	}
	if (seq != vs->expect)
		return vfail(vs, vs->expect, "missing", "records %llu to %llu "
		    "are missing", (unsigned long long)vs->expect,
		    (unsigned long long)seq - 1);
	if (verify_record(vs, seq, val, len) != 0)
		return 1;
	vs->records++;
	vs->last_seq = seq;
	vs->expect++;
	return 0;
}

/* A value the store could not open: which one? The next expected. */
static void
verify_unreadable(struct verify *vs, int rv)
{
	uint8_t	 key[AUDIT_KEY_LEN];
	void	*val = NULL;
	size_t	 len;
	uint64_t seq = vs->started ? vs->expect : vs->from > 1 ?
	    vs->from - 1 : 1;

	audit_seq_key(seq, key);
	if (store_get(audit_store(), AUDIT_DB, key, sizeof(key), &val,
	    &len) == STORE_NOTFOUND)
		vfail(vs, seq, "missing", "record %llu is missing",
		    (unsigned long long)seq);
	else
		vfail(vs, seq, "changed", "record %llu: %s",
		    (unsigned long long)seq, store_strerror(rv));
	free(val);
}

static json_t *
verify_result(struct verify *vs)
{
	char	head[2 * HASH_LEN + 1], pub[80], id[24];
	json_t	*r;

	audit_hex(vs->head, HASH_LEN, head);
	audit_pubkey(pub, sizeof(pub), id, sizeof(id));
	r = json_pack("{s:b,s:I,s:I,s:I,s:I,s:s,s:s,s:s}", "ok", !vs->failed,
	    "records", (json_int_t)vs->records,
	    "checkpoints", (json_int_t)vs->checkpoints,
	    "last_seq", (json_int_t)vs->last_seq,
	    "last_checkpoint_seq", (json_int_t)vs->last_cp,
	    "head", head, "pubkey", pub, "key_id", id);
	if (vs->anchor > 0)
		json_object_set_new(r, "pruned_through_seq",
		    json_integer((json_int_t)vs->anchor));
	if (vs->failed) {
		json_object_set_new(r, "seq",
		    json_integer((json_int_t)vs->bad_seq));
		json_object_set_new(r, "reason", json_string(vs->reason));
		json_object_set_new(r, "detail", json_string(vs->detail));
		json_object_del(r, "head");
	}
	return r;
}

/*
 * Walk from from_seq (0: the beginning or the anchor). With from_seq > 1
 * the chain is seeded from the stored hash of the record before it.
 */
json_t *
audit_verify(uint64_t from)
{
	struct verify	vs;
	uint8_t		key[AUDIT_KEY_LEN] = { 0 };
	int		rv;

	if (audit_store() == NULL)
		return NULL;
	memset(&vs, 0, sizeof(vs));
	vs.from = from;
	if (from > 1)
		audit_seq_key(from - 1, key);
	rv = store_scan_from(audit_store(), AUDIT_DB, key, sizeof(key),
	    verify_cb, &vs);
	if (rv < 0 && !vs.failed)
		verify_unreadable(&vs, rv);
	else if (!vs.started && from > 1)
		vfail(&vs, from - 1, "missing", "record %llu (before --from) "
		    "is missing", (unsigned long long)from - 1);
	return verify_result(&vs);
}
