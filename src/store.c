/*
 * store.c: the LMDB environment (the only caller of mdb_*): opening and
 * locking it, sealed values bound to their database and key, reads on the
 * caller's thread, and group commits for the writer thread.
 */
#include "config.h"

#include <sys/mman.h>

#include <sys/file.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "tenantd.h"
#include "store.h"

#define STORE_INITIAL_SIZE	(64ULL << 20)
#define STORE_MIN_SIZE		(256ULL << 10)
#define STORE_MAX_VALUE		(1U << 20)
#define STORE_MAX_READERS	126
#define STORE_AAD_LABEL		"tenantd store v1"
#define STORE_AAD_MAX		(sizeof(STORE_AAD_LABEL) + 1 + 255 + 2 + 512)
#define STORE_PAGE		4096ULL
#define STORE_RESERVE_MIN	(32ULL << 10)	/* kept for audit records */
#define STORE_RESERVE_MAX	(64ULL << 20)

static const char *const store_errors[] = {
	[-STORE_OK] = "ok",
	[-STORE_NOTFOUND] = "no such record",
	[-STORE_FULL] = "storage full",
	[-STORE_CORRUPT] = "stored value failed authentication (tampered, "
	    "moved or corrupted)",
	[-STORE_KEY] = "stored value is sealed under an unknown or "
	    "destroyed key term",
	[-STORE_INVALID] = "invalid request (unknown database or size limit)",
	[-STORE_IO] = "storage I/O error",
	[-STORE_CLOSED] = "the store is closed",
};

static const struct {
	int	mdb;
	int	status;
} store_mdb_map[] = {
	{ MDB_SUCCESS, STORE_OK },
	{ MDB_NOTFOUND, STORE_NOTFOUND },
	{ MDB_MAP_FULL, STORE_FULL },
	{ ENOSPC, STORE_FULL },
	{ EDQUOT, STORE_FULL },
	{ MDB_BAD_VALSIZE, STORE_INVALID },
	{ EINVAL, STORE_INVALID },
};

static const struct {
	int	keyring;
	int	status;
} store_keyring_map[] = {
	{ KEYRING_OK, STORE_OK },
	{ KEYRING_EAUTH, STORE_CORRUPT },
	{ KEYRING_EFORMAT, STORE_CORRUPT },
	{ KEYRING_ETERM, STORE_KEY },
	{ KEYRING_EIO, STORE_IO },
};

const char *
store_strerror(int status)
{
	if (status > 0 || (size_t)-status >= nitems(store_errors))
		return "unknown storage error";
	return store_errors[-status];
}

/* Map an LMDB (or errno) code; log the ones an operator must see. */
static int
store_status(int rc, const char *what)
{
	size_t	i;

	for (i = 0; i < nitems(store_mdb_map); i++)
		if (store_mdb_map[i].mdb == rc)
			break;
	if (i == nitems(store_mdb_map) || (rc != MDB_SUCCESS &&
	    rc != MDB_NOTFOUND && rc != MDB_MAP_FULL))
		log_warnx("store: %s: %s", what, mdb_strerror(rc));
	return i == nitems(store_mdb_map) ? STORE_IO : store_mdb_map[i].status;
}

static int
store_keyring_status(int rc)
{
	size_t	i;

	for (i = 0; i < nitems(store_keyring_map); i++)
		if (store_keyring_map[i].keyring == rc)
			return store_keyring_map[i].status;
	return STORE_IO;
}

int
store_db_index(struct store *st, const char *name, size_t *idx)
{
	for (*idx = 0; *idx < st->ndbs; (*idx)++)
		if (strcmp(st->dbs[*idx].name, name) == 0)
			return STORE_OK;
	return STORE_INVALID;
}

/* --- sealing ---------------------------------------------------------- */

/* The AAD binds a value to its database and record key. */
static size_t
store_aad(struct store *st, size_t db, const void *key, size_t keylen,
    uint8_t *aad)
{
	const char	*name = st->dbs[db].name;
	size_t		 namelen = strlen(name), n = sizeof(STORE_AAD_LABEL);

	memcpy(aad, STORE_AAD_LABEL, n);
	aad[n++] = (uint8_t)namelen;
	memcpy(aad + n, name, namelen);
	n += namelen;
	aad[n++] = keylen >> 8;
	aad[n++] = keylen & 0xff;
	memcpy(aad + n, key, keylen);
	return n + keylen;
}

int
store_seal(struct store *st, size_t db, const void *key, size_t keylen,
    const void *val, size_t vallen, uint8_t **sealed, size_t *len)
{
	uint8_t	aad[STORE_AAD_MAX];
	size_t	aadlen;
	int	rv;

	if (keylen == 0 || keylen > st->max_key || vallen > st->max_value)
		return STORE_INVALID;
	aadlen = store_aad(st, db, key, keylen, aad);
	*len = vallen + KEYRING_SEAL_OVERHEAD;
	*sealed = xmalloc(*len);
	rv = keyring_seal(st->kr, aad, aadlen, val, vallen, *sealed);
	if (rv != KEYRING_OK) {
		free(*sealed);
		*sealed = NULL;
	}
	return store_keyring_status(rv);
}

/* Open into out (vallen - overhead bytes); wiped on failure. */
static int
store_unseal(struct store *st, size_t db, const MDB_val *k, const MDB_val *v,
    uint8_t *out)
{
	uint8_t	aad[STORE_AAD_MAX];
	size_t	aadlen;
	int	rv;

	aadlen = store_aad(st, db, k->mv_data, k->mv_size, aad);
	rv = keyring_open(st->kr, aad, aadlen, v->mv_data, v->mv_size, out);
	if (rv != KEYRING_OK)
		log_warnx("store: %s: a value of %zu bytes: %s",
		    st->dbs[db].name, v->mv_size, keyring_strerror(rv));
	return store_keyring_status(rv);
}

/* --- transactions and the map size ------------------------------------ */

static void
store_reader_check(struct store *st)
{
	int	dead = 0;

	if (mdb_reader_check(st->env, &dead) == 0 && dead > 0)
		log_warnx("store: cleared %d stale reader slots", dead);
}

/* Another process grew the map: adopt its size (readers held off). */
static void
store_adopt_mapsize(struct store *st, int reader)
{
	MDB_envinfo	info;

	if (reader)
		pthread_rwlock_unlock(&st->maplock);
	pthread_rwlock_wrlock(&st->maplock);
	if (mdb_env_set_mapsize(st->env, 0) == 0 &&
	    mdb_env_info(st->env, &info) == 0)
		st->mapsize = info.me_mapsize;
	pthread_rwlock_unlock(&st->maplock);
	if (reader)
		pthread_rwlock_rdlock(&st->maplock);
}

static int
store_txn_begin(struct store *st, MDB_txn *parent, unsigned flags,
    MDB_txn **txn)
{
	int	rc = 0, tries;

	for (tries = 0; tries < 3; tries++) {
		rc = mdb_txn_begin(st->env, parent, flags, txn);
		if (rc == MDB_READERS_FULL)
			store_reader_check(st);
		else if (rc == MDB_MAP_RESIZED)
			store_adopt_mapsize(st, flags & MDB_RDONLY);
		else
			break;
	}
	return rc;
}

static int
store_read_begin(struct store *st, MDB_txn **txn)
{
	int	rc;

	pthread_rwlock_rdlock(&st->maplock);
	if ((rc = store_txn_begin(st, NULL, MDB_RDONLY, txn)) != 0) {
		pthread_rwlock_unlock(&st->maplock);
		return store_status(rc, "read transaction");
	}
	return STORE_OK;
}

static void
store_read_end(struct store *st, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&st->maplock);
}

/* Double the map, up to max_size. Only the writer, between transactions. */
static int
store_grow(struct store *st)
{
	uint64_t	max = __atomic_load_n(&st->max_size, __ATOMIC_RELAXED);
	uint64_t	size;
	int		rc;

	if (st->mapsize >= max)
		return -1;
	size = MINIMUM(st->mapsize * 2, max) / STORE_PAGE * STORE_PAGE;
	if (size <= st->mapsize)
		return -1;
	pthread_rwlock_wrlock(&st->maplock);
	rc = mdb_env_set_mapsize(st->env, size);
	pthread_rwlock_unlock(&st->maplock);
	if (rc != 0) {
		log_warnx("store: growing the map to %llu bytes: %s",
		    (unsigned long long)size, mdb_strerror(rc));
		return -1;
	}
	log_info("store: map grown to %llu bytes (limit %llu)",
	    (unsigned long long)size, (unsigned long long)max);
	st->mapsize = size;
	return 0;
}

int
store_set_max_size(struct store *st, uint64_t max_size)
{
	if (max_size < STORE_MIN_SIZE)
		return STORE_INVALID;
	__atomic_store_n(&st->max_size, max_size, __ATOMIC_RELAXED);
	return STORE_OK;
}

/* --- reads ------------------------------------------------------------ */

int
store_get(struct store *st, const char *db, const void *key, size_t keylen,
    void **val, size_t *vallen)
{
	MDB_txn		*txn;
	MDB_val		 k = { keylen, (void *)(uintptr_t)key }, v;
	size_t		 idx;
	uint8_t		*buf;
	int		 rv;

	*val = NULL;
	if (store_db_index(st, db, &idx) != STORE_OK || keylen == 0 ||
	    keylen > st->max_key)
		return STORE_INVALID;
	if ((rv = store_read_begin(st, &txn)) != STORE_OK)
		return rv;
	rv = store_status(mdb_get(txn, st->dbs[idx].dbi, &k, &v), "get");
	if (rv == STORE_OK && v.mv_size < KEYRING_SEAL_OVERHEAD)
		rv = STORE_CORRUPT;
	if (rv == STORE_OK) {
		*vallen = v.mv_size - KEYRING_SEAL_OVERHEAD;
		buf = xmalloc(*vallen + 1);
		if ((rv = store_unseal(st, idx, &k, &v, buf)) == STORE_OK) {
			buf[*vallen] = '\0';
			*val = buf;
		} else
			free(buf);
	}
	store_read_end(st, txn);
	return rv;
}

static int
store_has_prefix(const MDB_val *k, const void *prefix, size_t len)
{
	return len == 0 || (k->mv_size >= len &&
	    memcmp(k->mv_data, prefix, len) == 0);
}

/*
 * Call fn for every record from start (or the first) whose key starts with
 * prefix, in key order, inside one read transaction: fn must not wait for
 * a write.
 */
static int
store_scan_keys(struct store *st, const char *db, const MDB_val *start,
    const void *prefix, size_t prefixlen, store_scan_fn fn, void *arg)
{
	MDB_txn		*txn;
	MDB_cursor	*cur;
	MDB_val		 k = *start, v;
	uint8_t		*buf = NULL;
	size_t		 idx, cap = 0, len;
	int		 rc, rv;

	if (store_db_index(st, db, &idx) != STORE_OK)
		return STORE_INVALID;
	if ((rv = store_read_begin(st, &txn)) != STORE_OK)
		return rv;
	if ((rc = mdb_cursor_open(txn, st->dbs[idx].dbi, &cur)) != 0) {
		store_read_end(st, txn);
		return store_status(rc, "cursor");
	}
	rc = mdb_cursor_get(cur, &k, &v, k.mv_size ? MDB_SET_RANGE : MDB_FIRST);
	for (; rc == 0 && store_has_prefix(&k, prefix, prefixlen);
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size < KEYRING_SEAL_OVERHEAD) {
			rv = STORE_CORRUPT;
			break;
		}
		len = v.mv_size - KEYRING_SEAL_OVERHEAD;
		if (len + 1 > cap)
			buf = xreallocarray(buf, 1, cap = len + 1);
		if ((rv = store_unseal(st, idx, &k, &v, buf)) != STORE_OK ||
		    (rv = fn(k.mv_data, k.mv_size, buf, len, arg)) != 0)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		rv = store_status(rc, "cursor");
	mdb_cursor_close(cur);
	store_read_end(st, txn);
	if (buf != NULL)
		OPENSSL_cleanse(buf, cap);
	free(buf);
	return rv < 0 ? rv : STORE_OK;
}

int
store_scan(struct store *st, const char *db, const void *prefix,
    size_t prefixlen, store_scan_fn fn, void *arg)
{
	MDB_val	start = { prefixlen, (void *)(uintptr_t)prefix };

	return store_scan_keys(st, db, &start, prefix, prefixlen, fn, arg);
}

/* Like store_scan, for every key >= start; fn returns 1 to stop early. */
int
store_scan_from(struct store *st, const char *db, const void *start,
    size_t startlen, store_scan_fn fn, void *arg)
{
	MDB_val	k = { startlen, (void *)(uintptr_t)start };

	return store_scan_keys(st, db, &k, NULL, 0, fn, arg);
}

/* How many stored values are sealed under term (reads headers only). */
int
store_count_term(struct store *st, uint32_t term, uint64_t *count)
{
	MDB_txn		*txn;
	MDB_cursor	*cur;
	MDB_val		 k, v;
	uint32_t	 t;
	size_t		 i;
	int		 rc = 0, rv;

	*count = 0;
	if ((rv = store_read_begin(st, &txn)) != STORE_OK)
		return rv;
	for (i = 0; i < st->ndbs && rc == 0; i++) {
		if ((rc = mdb_cursor_open(txn, st->dbs[i].dbi, &cur)) != 0)
			break;
		/* A value whose header cannot be read counts as in use. */
		while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0)
			if (keyring_sealed_term(v.mv_data, v.mv_size, &t) !=
			    KEYRING_OK || t == term)
				(*count)++;
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	store_read_end(st, txn);
	return rc == 0 ? STORE_OK : store_status(rc, "count");
}

/* --- group commit (called by the writer thread) ----------------------- */

/* Re-seal up to b->rewrap_limit values not under the active term. */
static int
store_rewrap_txn(struct store *st, MDB_txn *txn, struct store_batch *b)
{
	MDB_cursor	*cur;
	MDB_val		 k, v, nv;
	uint8_t		*plain, *sealed;
	uint32_t	 t, active = keyring_active_term(st->kr);
	size_t		 i, len;
	int		 rc = 0;

	for (i = 0; i < st->ndbs && rc == 0; i++) {
		if ((rc = mdb_cursor_open(txn, st->dbs[i].dbi, &cur)) != 0)
			break;
		while (b->rewrapped < b->rewrap_limit &&
		    (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
			if (keyring_sealed_term(v.mv_data, v.mv_size, &t) !=
			    KEYRING_OK || t == active)
				continue;
			plain = xmalloc(v.mv_size);
			len = v.mv_size - KEYRING_SEAL_OVERHEAD;
			if (store_unseal(st, i, &k, &v, plain) == STORE_OK &&
			    store_seal(st, i, k.mv_data, k.mv_size, plain, len,
			    &sealed, &nv.mv_size) == STORE_OK) {
				nv.mv_data = sealed;
				rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
				free(sealed);
				b->rewrapped++;
			}
			OPENSSL_cleanse(plain, v.mv_size);
			free(plain);
			if (rc != 0)
				break;
		}
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	return rc;
}

/* --- write hooks (run by the writer inside its transaction) ------------ */

/* A hook's failure is a store_status; map it back for the commit code. */
static int
store_run_hook(struct store *st, MDB_txn *txn, struct store_op *op)
{
	struct store_txn	t = { st, txn };
	int			rv;

	if ((rv = op->hook(&t, op->hook_arg)) == STORE_OK)
		return 0;
	if (rv == STORE_FULL)
		return MDB_MAP_FULL;
	return rv == STORE_INVALID ? EINVAL : EIO;
}

int
store_txn_put(struct store_txn *t, const char *db, const void *key,
    size_t keylen, const void *val, size_t vallen)
{
	MDB_val	k = { keylen, (void *)(uintptr_t)key }, v;
	uint8_t	*sealed;
	size_t	 idx;
	int	 rv;

	if ((rv = store_db_index(t->st, db, &idx)) != STORE_OK ||
	    (rv = store_seal(t->st, idx, key, keylen, val, vallen, &sealed,
	    &v.mv_size)) != STORE_OK)
		return rv;
	v.mv_data = sealed;
	rv = mdb_put(t->txn, t->st->dbs[idx].dbi, &k, &v, 0);
	free(sealed);
	return rv == MDB_MAP_FULL ? STORE_FULL :
	    rv == 0 ? STORE_OK : store_status(rv, "hook put");
}

int
store_txn_del(struct store_txn *t, const char *db, const void *key,
    size_t keylen)
{
	MDB_val	k = { keylen, (void *)(uintptr_t)key };
	size_t	idx;
	int	rc;

	if (store_db_index(t->st, db, &idx) != STORE_OK || keylen == 0 ||
	    keylen > t->st->max_key)
		return STORE_INVALID;
	rc = mdb_del(t->txn, t->st->dbs[idx].dbi, &k, NULL);
	return rc == MDB_NOTFOUND ? STORE_OK : store_status(rc, "hook del");
}

/* Open v (of db idx, key k) into a new NUL-terminated buffer. */
static int
store_txn_unseal(struct store *st, size_t idx, const MDB_val *k,
    const MDB_val *v, void **val, size_t *vallen)
{
	uint8_t	*buf;
	int	 rv;

	if (v->mv_size < KEYRING_SEAL_OVERHEAD)
		return STORE_CORRUPT;
	*vallen = v->mv_size - KEYRING_SEAL_OVERHEAD;
	buf = xmalloc(*vallen + 1);
	if ((rv = store_unseal(st, idx, k, v, buf)) == STORE_OK) {
		buf[*vallen] = '\0';
		*val = buf;
	} else
		free(buf);
	return rv;
}

int
store_txn_get(struct store_txn *t, const char *db, const void *key,
    size_t keylen, void **val, size_t *vallen)
{
	MDB_val	k = { keylen, (void *)(uintptr_t)key }, v;
	size_t	idx;
	int	rv;

	*val = NULL;
	if (store_db_index(t->st, db, &idx) != STORE_OK || keylen == 0 ||
	    keylen > t->st->max_key)
		return STORE_INVALID;
	rv = store_status(mdb_get(t->txn, t->st->dbs[idx].dbi, &k, &v),
	    "hook get");
	if (rv == STORE_OK)
		rv = store_txn_unseal(t->st, idx, &k, &v, val, vallen);
	return rv;
}

/* The last record of db as this transaction sees it; key holds max_key. */
int
store_txn_last(struct store_txn *t, const char *db, void *key,
    size_t *keylen, void **val, size_t *vallen)
{
	MDB_cursor	*cur;
	MDB_val		 k, v;
	size_t		 idx;
	int		 rc, rv;

	*val = NULL;
	if (store_db_index(t->st, db, &idx) != STORE_OK)
		return STORE_INVALID;
	if ((rc = mdb_cursor_open(t->txn, t->st->dbs[idx].dbi, &cur)) != 0)
		return store_status(rc, "hook cursor");
	rv = store_status(mdb_cursor_get(cur, &k, &v, MDB_LAST), "hook last");
	if (rv == STORE_OK) {
		memcpy(key, k.mv_data, *keylen = k.mv_size);
		rv = store_txn_unseal(t->st, idx, &k, &v, val, vallen);
	}
	mdb_cursor_close(cur);
	return rv;
}

static int
store_apply_op(struct store *st, MDB_txn *txn, struct store_batch *b,
    struct store_op *op)
{
	MDB_val	k = { op->keylen, op->key }, v = { op->vallen, op->val };
	int	rc;

	switch (op->kind) {
	case STORE_OP_PUT:
		return mdb_put(txn, st->dbs[op->db].dbi, &k, &v, 0);
	case STORE_OP_DEL:
		rc = mdb_del(txn, st->dbs[op->db].dbi, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	case STORE_OP_REWRAP:
		return store_rewrap_txn(st, txn, b);
	case STORE_OP_HOOK:
		return store_run_hook(st, txn, op);
	}
	return EINVAL;
}

static int
store_apply_ops(struct store *st, MDB_txn *txn, struct store_batch *b)
{
	size_t	i;
	int	rc = 0;

	b->rewrapped = 0;
	for (i = 0; i < b->nops && rc == 0; i++)
		rc = store_apply_op(st, txn, b, &b->ops[i]);
	return rc;
}

/* One batch in a child transaction, so that a failure undoes it alone. */
static int
store_apply_batch(struct store *st, MDB_txn *parent, struct store_batch *b)
{
	MDB_txn	*txn;
	int	 rc;

	if ((rc = mdb_txn_begin(st->env, parent, 0, &txn)) != 0)
		return rc;
	if ((rc = store_apply_ops(st, txn, b)) != 0)
		mdb_txn_abort(txn);
	else
		rc = mdb_txn_commit(txn);
	return rc;
}

static int
store_can_grow(struct store *st)
{
	return st->mapsize < __atomic_load_n(&st->max_size, __ATOMIC_RELAXED);
}

/*
 * The last part of a full map is kept for the audit trail, so that with
 * storage full the refusals, the operator's diagnostics and the reload
 * that raises the limit can still be recorded: ordinary batches are
 * refused once the pages in use reach it.
 */
static int
store_in_reserve(struct store *st)
{
	uint64_t	max = __atomic_load_n(&st->max_size, __ATOMIC_RELAXED);
	uint64_t	reserve, used;
	MDB_envinfo	info;
	MDB_stat	stat;

	if (mdb_env_info(st->env, &info) != 0 ||
	    mdb_env_stat(st->env, &stat) != 0)
		return 0;
	reserve = MINIMUM(MAXIMUM(max / 64, STORE_RESERVE_MIN),
	    STORE_RESERVE_MAX);
	used = ((uint64_t)info.me_last_pgno + 1) * stat.ms_psize;
	return used + reserve > max;
}

/*
 * The common case: every batch applies. Try them all in one transaction
 * without child transactions; on any error the caller starts over with
 * one child transaction per batch.
 */
static int
store_commit_fast(struct store *st, struct store_batch **batches, size_t n)
{
	MDB_txn	*txn;
	size_t	 i;
	int	 rc;

	for (i = 0; i < n; i++)		/* the slow path refuses them */
		if (!batches[i]->reserve_ok && store_in_reserve(st))
			return MDB_MAP_FULL;
	if ((rc = store_txn_begin(st, NULL, 0, &txn)) != 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++)
		rc = store_apply_ops(st, txn, batches[i]);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return rc;
	for (i = 0; i < n; i++)
		batches[i]->status = STORE_OK;
	return 0;
}

/*
 * Drop this process's mappings of the map's pages: a long scan (an audit
 * export) would otherwise keep every page it read in the resident set.
 * The map is a read-only shared file mapping (no MDB_WRITEMAP), so the
 * data stay in the page cache and the next access maps them again.
 */
void
store_release_pages(struct store *st)
{
	char		 line[PATH_MAX + 128], dir[PATH_MAX], *path;
	unsigned long	 start, end;
	size_t		 len;
	FILE		*f;

	/* LMDB does not tell where it mapped the file: ask the kernel */
	if (realpath(st->dir, dir) == NULL ||
	    (f = fopen("/proc/self/maps", "re")) == NULL)
		return;
	xasprintf(&path, "%s/data.mdb\n", dir);
	len = strlen(path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strlen(line) < len ||
		    strcmp(line + strlen(line) - len, path) != 0 ||
		    sscanf(line, "%lx-%lx", &start, &end) != 2)
			continue;
		if (madvise((void *)start, end - start, MADV_DONTNEED) == -1)
			log_debug("store: madvise: %s", strerror(errno));
	}
	free(path);
	fclose(f);
}

void
store_batch_use_reserve(struct store_batch *b)
{
	b->reserve_ok = 1;
}

/*
 * Apply batches[from..n) in one transaction and return the index reached;
 * stop early (setting *grow) when the map is full but may still grow.
 */
static size_t
store_commit_some(struct store *st, struct store_batch **batches,
    size_t from, size_t n, int *grow)
{
	MDB_txn	*txn;
	size_t	 i, j, ok = 0;
	int	 rc;

	*grow = 0;
	if ((rc = store_txn_begin(st, NULL, 0, &txn)) != 0) {
		for (i = from; i < n; i++)
			batches[i]->status = store_status(rc, "write txn");
		return n;
	}
	for (i = from; i < n; i++) {
		if (!batches[i]->reserve_ok && store_in_reserve(st)) {
			batches[i]->status = STORE_FULL;
			continue;
		}
		rc = store_apply_batch(st, txn, batches[i]);
		if (rc == MDB_MAP_FULL && store_can_grow(st)) {
			*grow = 1;
			break;
		}
		batches[i]->status = store_status(rc, "write");
		ok += rc == 0;
	}
	if (ok == 0) {
		mdb_txn_abort(txn);
		return i;
	}
	if ((rc = mdb_txn_commit(txn)) == MDB_MAP_FULL && store_can_grow(st)) {
		*grow = 1;
		return from;
	}
	for (j = from; rc != 0 && j < i; j++)
		if (batches[j]->status == STORE_OK)
			batches[j]->status = store_status(rc, "commit");
	return i;
}

/* Commit every batch; each gets its own status. Durable on return. */
void
store_commit_group(struct store *st, struct store_batch **batches, size_t n)
{
	size_t	i = 0;
	int	grow;

	if (store_commit_fast(st, batches, n) == 0)
		return;
	while (i < n) {
		i = store_commit_some(st, batches, i, n, &grow);
		if (grow && store_grow(st) == -1 && i < n)
			batches[i++]->status = STORE_FULL;
	}
}

/* --- opening and closing ---------------------------------------------- */

static int
store_lock(struct store *st, char *err, size_t errlen)
{
	char	*path, pid[32];
	ssize_t	 n;

	xasprintf(&path, "%s/lock", st->dir);
	st->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lockfd == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (flock(st->lockfd, LOCK_EX | LOCK_NB) == -1) {
		n = pread(st->lockfd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen, "store %s is in use by another process "
		    "(pid %s holds %s)", st->dir, pid[0] ? pid : "?", path);
		free(path);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(st->lockfd, 0) == -1 ||
	    pwrite(st->lockfd, pid, (size_t)n, 0) != n)
		log_warn("store: %s", path);
	free(path);
	return 0;
}

static int
store_mkdir(const char *dir, char *err, size_t errlen)
{
	struct stat	sb;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "store directory %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (stat(dir, &sb) == -1 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "store directory %s: not a directory",
		    dir);
		return -1;
	}
	return 0;
}

static int
store_open_dbs(struct store *st, const char *const *names, char *err,
    size_t errlen)
{
	MDB_txn	*txn;
	size_t	 i;
	int	 rc;

	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0) {
		snprintf(err, errlen, "store %s: %s", st->dir,
		    mdb_strerror(rc));
		return -1;
	}
	for (i = 0; i < st->ndbs; i++) {
		st->dbs[i].name = xstrdup(names[i]);
		if ((rc = mdb_dbi_open(txn, names[i], MDB_CREATE,
		    &st->dbs[i].dbi)) != 0) {
			snprintf(err, errlen, "store %s: database '%s': %s",
			    st->dir, names[i], mdb_strerror(rc));
			mdb_txn_abort(txn);
			return -1;
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		snprintf(err, errlen, "store %s: creating databases: %s",
		    st->dir, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int
store_open_env(struct store *st, const struct store_params *p, char *err,
    size_t errlen)
{
	MDB_envinfo	info;
	uint64_t	size;
	int		rc;

	size = p->initial_size ? p->initial_size : STORE_INITIAL_SIZE;
	size = MINIMUM(size, p->max_size) / STORE_PAGE * STORE_PAGE;
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, (MDB_dbi)st->ndbs)) != 0 ||
	    (rc = mdb_env_set_maxreaders(st->env, p->max_readers ?
	    p->max_readers : STORE_MAX_READERS)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, size)) != 0 ||
	    (rc = mdb_env_open(st->env, st->dir, MDB_NOTLS, 0600)) != 0) {
		snprintf(err, errlen, "store %s: %s", st->dir,
		    mdb_strerror(rc));
		return -1;
	}
	mdb_env_info(st->env, &info);
	st->mapsize = info.me_mapsize;	/* an existing file may be larger */
	st->max_key = (size_t)mdb_env_get_maxkeysize(st->env);
	store_reader_check(st);
	return 0;
}

int
store_open(const struct store_params *p, struct store **stp, char *err,
    size_t errlen)
{
	struct store		*st;
	pthread_rwlockattr_t	 attr;

	if (p->max_size < STORE_MIN_SIZE || p->keyring == NULL ||
	    p->dbs == NULL || p->dbs[0] == NULL) {
		snprintf(err, errlen, "store %s: needs a keyring, databases "
		    "and max_size >= %llu", p->dir,
		    (unsigned long long)STORE_MIN_SIZE);
		return -1;
	}
	st = xcalloc(1, sizeof(*st));
	st->dir = xstrdup(p->dir);
	st->lockfd = -1;
	st->kr = p->keyring;
	st->max_size = p->max_size;
	st->max_value = p->max_value ? p->max_value : STORE_MAX_VALUE;
	while (p->dbs[st->ndbs] != NULL)
		st->ndbs++;
	st->dbs = xcalloc(st->ndbs, sizeof(*st->dbs));
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->maplock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (store_mkdir(st->dir, err, errlen) == -1 ||
	    store_lock(st, err, errlen) == -1 ||
	    store_open_env(st, p, err, errlen) == -1 ||
	    store_open_dbs(st, p->dbs, err, errlen) == -1 ||
	    store_writer_start(st, err, errlen) == -1) {
		store_close(st);
		return -1;
	}
	*stp = st;
	return 0;
}

void
store_close(struct store *st)
{
	size_t	i;

	if (st == NULL)
		return;
	store_writer_stop(st);
	if (st->env != NULL)
		mdb_env_close(st->env);
	if (st->lockfd != -1)
		close(st->lockfd);	/* releases the flock */
	for (i = 0; i < st->ndbs; i++)
		free(st->dbs[i].name);
	free(st->dbs);
	pthread_rwlock_destroy(&st->maplock);
	free(st->dir);
	free(st);
}

/* Map use and record counts, for metrics and status (any thread). */
int
store_stats(struct store *st, struct store_stats *ss)
{
	MDB_envinfo	 info;
	MDB_stat	 ms;
	MDB_txn		*txn;
	size_t		 i;
	int		 rv;

	memset(ss, 0, sizeof(*ss));
	if ((rv = store_read_begin(st, &txn)) != STORE_OK)
		return rv;
	if (mdb_env_info(st->env, &info) == 0 &&
	    mdb_env_stat(st->env, &ms) == 0) {
		ss->used = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
		ss->mapsize = info.me_mapsize;
	}
	for (i = 0; i < st->ndbs; i++)
		if (mdb_stat(txn, st->dbs[i].dbi, &ms) == 0)
			ss->entries += ms.ms_entries;
	store_read_end(st, txn);
	ss->max_size = __atomic_load_n(&st->max_size, __ATOMIC_RELAXED);
	return STORE_OK;
}

/* Number of records in one database. */
int
store_db_entries(struct store *st, const char *db, uint64_t *n)
{
	MDB_stat	 ms;
	MDB_txn		*txn;
	size_t		 idx;
	int		 rv;

	*n = 0;
	if (store_db_index(st, db, &idx) != STORE_OK)
		return STORE_INVALID;
	if ((rv = store_read_begin(st, &txn)) != STORE_OK)
		return rv;
	rv = store_status(mdb_stat(txn, st->dbs[idx].dbi, &ms), "stat");
	if (rv == STORE_OK)
		*n = ms.ms_entries;
	store_read_end(st, txn);
	return rv;
}

/* 1 if another process holds dir's state lock (its pid in *pid), else 0. */
int
store_lock_holder(const char *dir, long *pid)
{
	char	*path, buf[32];
	ssize_t	 n;
	int	 fd, held = 0;

	*pid = 0;
	xasprintf(&path, "%s/lock", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK) {
		held = 1;
		if ((n = pread(fd, buf, sizeof(buf) - 1, 0)) > 0) {
			buf[n] = '\0';
			*pid = strtol(buf, NULL, 10);
		}
	}
	close(fd);	/* drops the lock if we took it */
	return held;
}
