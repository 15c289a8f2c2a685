/*
 * store.h: internals shared by store.c (LMDB, sealing) and store-writer.c
 * (write batches, the writer thread, completions). Nothing else includes it.
 */
#ifndef STORE_H
#define STORE_H

#include <sys/queue.h>
#include <pthread.h>

#include <lmdb.h>

enum store_op_kind {
	STORE_OP_PUT,
	STORE_OP_DEL,
	STORE_OP_REWRAP,	/* re-seal old-term values, bounded */
	STORE_OP_HOOK,		/* call a function inside the write txn */
};

struct store_op {
	enum store_op_kind	 kind;
	size_t			 db;		/* index into store.dbs */
	uint8_t			*key;
	size_t			 keylen;
	uint8_t			*val;		/* sealed */
	size_t			 vallen;
	store_hook_fn		 hook;		/* STORE_OP_HOOK */
	void			*hook_arg;
	void			(*hook_free)(void *);
};

/* A write transaction as a hook sees it (store_txn_* in store.c). */
struct store_txn {
	struct store	*st;
	MDB_txn		*txn;
};

struct store_batch {
	struct store		*st;
	struct store_op		*ops;
	size_t			 nops, cap;
	size_t			 bytes;
	int			 status;	/* first error while building */
	int			 done;		/* synchronous writes */
	struct event_base	*base;
	store_done_fn		 cb;
	void			*arg;
	size_t			 rewrap_limit, rewrapped;
	int			 reserve_ok;	/* may use the audit reserve */
	TAILQ_ENTRY(store_batch) entry;
};
TAILQ_HEAD(store_queue, store_batch);

struct store_db {
	char		*name;
	MDB_dbi		 dbi;
};

struct store {
	char			*dir;
	int			 lockfd;
	MDB_env			*env;
	struct store_db		*dbs;
	size_t			 ndbs;
	struct keyring		*kr;
	uint64_t		 mapsize;
	uint64_t		 max_size;	/* atomic */
	size_t			 max_value;
	size_t			 max_key;
	/* Read transactions hold it shared; a map resize holds it alone. */
	pthread_rwlock_t	 maplock;

	pthread_t		 writer;
	pthread_mutex_t		 mtx;
	pthread_cond_t		 cond;		/* queue or stopping changed */
	pthread_cond_t		 donecond;	/* a synchronous batch ended */
	struct store_queue	 queue;
	int			 stopping;
	int			 running;
};

/* store.c */
int	store_db_index(struct store *, const char *, size_t *);
int	store_seal(struct store *, size_t db, const void *key, size_t keylen,
	    const void *val, size_t vallen, uint8_t **sealed, size_t *len);
void	store_commit_group(struct store *, struct store_batch **, size_t);

/* store-writer.c */
int	store_writer_start(struct store *, char *err, size_t errlen);
void	store_writer_stop(struct store *);

#endif /* STORE_H */
