/*
 * store-writer.c: write batches and the writer thread. Batches queue up
 * while a commit runs; the next transaction takes them all (group commit)
 * and each submitter hears "done" on its own event_base after the commit.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "tenantd.h"
#include "store.h"

#define GROUP_MAX_BATCHES	4096
#define GROUP_MAX_BYTES		(64U << 20)

struct store_batch *
store_batch_new(struct store *st)
{
	struct store_batch	*b;

	b = xcalloc(1, sizeof(*b));
	b->st = st;
	return b;
}

void
store_batch_free(struct store_batch *b)
{
	size_t	i;

	if (b == NULL)
		return;
	for (i = 0; i < b->nops; i++) {
		free(b->ops[i].key);
		free(b->ops[i].val);
		if (b->ops[i].hook_free != NULL)
			b->ops[i].hook_free(b->ops[i].hook_arg);
	}
	free(b->ops);
	free(b);
}

static struct store_op *
store_batch_add(struct store_batch *b, enum store_op_kind kind, size_t db,
    const void *key, size_t keylen)
{
	struct store_op	*op;

	if (b->nops == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 4;
		b->ops = xreallocarray(b->ops, b->cap, sizeof(*b->ops));
	}
	op = &b->ops[b->nops++];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->db = db;
	if (keylen > 0) {
		op->key = xmalloc(keylen);
		memcpy(op->key, key, keylen);
	}
	op->keylen = keylen;
	b->bytes += keylen;
	return op;
}

/* Seal now, on the caller's thread: the writer only copies bytes. */
int
store_batch_put(struct store_batch *b, const char *db, const void *key,
    size_t keylen, const void *val, size_t vallen)
{
	struct store_op	*op;
	uint8_t		*sealed;
	size_t		 idx, len;
	int		 rv;

	if ((rv = store_db_index(b->st, db, &idx)) == STORE_OK)
		rv = store_seal(b->st, idx, key, keylen, val, vallen, &sealed,
		    &len);
	if (rv != STORE_OK) {
		if (b->status == STORE_OK)
			b->status = rv;
		return rv;
	}
	op = store_batch_add(b, STORE_OP_PUT, idx, key, keylen);
	op->val = sealed;
	op->vallen = len;
	b->bytes += len;
	return STORE_OK;
}

int
store_batch_del(struct store_batch *b, const char *db, const void *key,
    size_t keylen)
{
	size_t	idx;
	int	rv;

	if ((rv = store_db_index(b->st, db, &idx)) != STORE_OK ||
	    keylen == 0 || keylen > b->st->max_key) {
		rv = STORE_INVALID;
		if (b->status == STORE_OK)
			b->status = rv;
		return rv;
	}
	store_batch_add(b, STORE_OP_DEL, idx, key, keylen);
	return STORE_OK;
}

/*
 * Run fn(txn, arg) in the writer thread inside the batch's transaction,
 * after the operations added before it; free_arg(arg) when the batch is
 * freed. The audit trail uses it to number and chain its records in commit
 * order (see store_hook_fn in tenantd.h).
 */
int
store_batch_hook(struct store_batch *b, store_hook_fn fn, void *arg,
    void (*free_arg)(void *))
{
	struct store_op	*op;

	op = store_batch_add(b, STORE_OP_HOOK, 0, NULL, 0);
	op->hook = fn;
	op->hook_arg = arg;
	op->hook_free = free_arg;
	b->bytes += 1024;	/* what a hook typically writes */
	return STORE_OK;
}

static int
store_enqueue(struct store_batch *b)
{
	struct store	*st = b->st;

	pthread_mutex_lock(&st->mtx);
	if (st->stopping || !st->running) {
		pthread_mutex_unlock(&st->mtx);
		return STORE_CLOSED;
	}
	TAILQ_INSERT_TAIL(&st->queue, b, entry);
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->mtx);
	return STORE_OK;
}

/*
 * Queue the batch; cb(status, arg) runs later on base's thread, after the
 * commit. A batch that failed while being built, or a closed store, is
 * refused here (no callback) and freed.
 */
int
store_submit(struct store_batch *b, struct event_base *base,
    store_done_fn cb, void *arg)
{
	int	rv;

	if (base == NULL || cb == NULL)
		rv = STORE_INVALID;
	else
		rv = b->status;
	b->base = base;
	b->cb = cb;
	b->arg = arg;
	if (rv == STORE_OK && (rv = store_enqueue(b)) == STORE_OK)
		return STORE_OK;
	store_batch_free(b);
	return rv;
}

/* Submit and wait for the durable commit. */
int
store_write(struct store_batch *b)
{
	struct store	*st = b->st;
	int		 rv;

	if ((rv = b->status) != STORE_OK ||
	    (rv = store_enqueue(b)) != STORE_OK) {
		store_batch_free(b);
		return rv;
	}
	pthread_mutex_lock(&st->mtx);
	while (!b->done)
		pthread_cond_wait(&st->donecond, &st->mtx);
	pthread_mutex_unlock(&st->mtx);
	rv = b->status;
	store_batch_free(b);
	return rv;
}

/* Re-seal up to limit old-term values under the active term. */
int
store_rewrap(struct store *st, size_t limit, size_t *rewrapped)
{
	struct store_batch	*b;
	int			 rv;

	b = store_batch_new(st);
	store_batch_add(b, STORE_OP_REWRAP, 0, NULL, 0);
	b->rewrap_limit = limit;
	if ((rv = store_enqueue(b)) != STORE_OK) {
		store_batch_free(b);
		return rv;
	}
	pthread_mutex_lock(&st->mtx);
	while (!b->done)
		pthread_cond_wait(&st->donecond, &st->mtx);
	pthread_mutex_unlock(&st->mtx);
	rv = b->status;
	*rewrapped = b->rewrapped;
	store_batch_free(b);
	return rv;
}

static void
store_deliver_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct store_batch	*b = arg;

	b->cb(b->status, b->arg);
	store_batch_free(b);
}

/*
 * Hand async completions to their event_base; an async batch belongs to
 * the other thread from then on, so sync batches are gathered first.
 */
static void
store_deliver(struct store *st, struct store_batch **batches, size_t n)
{
	struct timeval	 now = { 0, 0 };
	size_t		 i, nsync = 0;

	for (i = 0; i < n; i++) {
		if (batches[i]->cb == NULL) {
			batches[nsync++] = batches[i];
			continue;
		}
		if (event_base_once(batches[i]->base, -1, EV_TIMEOUT,
		    store_deliver_cb, batches[i], &now) == -1)
			log_warnx("store: cannot deliver a write completion");
	}
	if (nsync == 0)
		return;
	pthread_mutex_lock(&st->mtx);
	for (i = 0; i < nsync; i++)
		batches[i]->done = 1;
	pthread_cond_broadcast(&st->donecond);
	pthread_mutex_unlock(&st->mtx);
}

/* Take queued batches, bounded in count and bytes. Called locked. */
static size_t
store_take(struct store *st, struct store_batch **batches)
{
	struct store_batch	*b;
	size_t			 n = 0, bytes = 0;

	while ((b = TAILQ_FIRST(&st->queue)) != NULL &&
	    n < GROUP_MAX_BATCHES && (n == 0 || bytes + b->bytes <=
	    GROUP_MAX_BYTES)) {
		TAILQ_REMOVE(&st->queue, b, entry);
		bytes += b->bytes;
		batches[n++] = b;
	}
	return n;
}

static void *
store_writer_main(void *arg)
{
	struct store		 *st = arg;
	struct store_batch	**batches;
	size_t			  n;

	batches = xcalloc(GROUP_MAX_BATCHES, sizeof(*batches));
	pthread_mutex_lock(&st->mtx);
	for (;;) {
		while (TAILQ_EMPTY(&st->queue) && !st->stopping)
			pthread_cond_wait(&st->cond, &st->mtx);
		if ((n = store_take(st, batches)) == 0)
			break;		/* stopping and drained */
		pthread_mutex_unlock(&st->mtx);
		store_commit_group(st, batches, n);
		store_deliver(st, batches, n);
		pthread_mutex_lock(&st->mtx);
	}
	pthread_mutex_unlock(&st->mtx);
	free(batches);
	return NULL;
}

int
store_writer_start(struct store *st, char *err, size_t errlen)
{
	int	rc;

	TAILQ_INIT(&st->queue);
	pthread_mutex_init(&st->mtx, NULL);
	pthread_cond_init(&st->cond, NULL);
	pthread_cond_init(&st->donecond, NULL);
	if ((rc = pthread_create(&st->writer, NULL, store_writer_main,
	    st)) != 0) {
		snprintf(err, errlen, "store %s: writer thread: %s", st->dir,
		    strerror(rc));
		return -1;
	}
	st->running = 1;
	return 0;
}

/* Finish every queued batch, then stop the thread. */
void
store_writer_stop(struct store *st)
{
	if (!st->running)
		return;
	pthread_mutex_lock(&st->mtx);
	st->stopping = 1;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->mtx);
	pthread_join(st->writer, NULL);
	st->running = 0;
	pthread_cond_destroy(&st->cond);
	pthread_cond_destroy(&st->donecond);
	pthread_mutex_destroy(&st->mtx);
}
