/*
 * shipper.h: internals shared by shipper.c (thread, intake), shipper-send.c
 * (batches, responses), shipper-queue.c (durable queue, dead letters,
 * cursor) and shipper-status.c. Nothing else includes it.
 */
#ifndef SHIPPER_H
#define SHIPPER_H

#include <sys/queue.h>
#include <pthread.h>

#define SHIP_KEY_LEN		9	/* stream id (1) + seq (8, BE) */
#define SHIP_STAGE_MAX		(8 * 1024 * 1024)	/* sink hand-off */
#define SHIP_COMMIT_RECORDS	4096	/* records per store batch */
#define SHIP_DEAD_BODY_MAX	2048	/* response body kept per record */
#define SHIP_RETRY_BASE_MS	500
#define SHIP_LOG_EVERY_US	(10 * 1000000ULL)	/* rate of warnings */

enum ship_origin {
	SHIP_FROM_QUEUE = 0,	/* a copy in ship_queue, deleted on 2xx */
	SHIP_FROM_CURSOR,	/* read from a source; the cursor moves */
};

struct ship_rec {
	TAILQ_ENTRY(ship_rec)	 entry;
	uint64_t		 seq;
	uint64_t		 wall_us;	/* enqueued, for the lag */
	int			 origin;
	size_t			 len;
	char			 json[];	/* one object, no NUL needed */
};
TAILQ_HEAD(ship_recq, ship_rec);

struct ship_stream;

struct ship_batch {
	TAILQ_ENTRY(ship_batch)	 entry;
	struct ship_stream	*s;
	struct ship_recq	 recs;
	size_t			 nrecs;
	size_t			 bytes;		/* of the JSON array */
	struct httpc_xfer	*xfer;
	char			*token;
	uint64_t		 started_us;
	int			 waiting_token;
	int			 auth_retried;	/* refreshed after a 401 */
};
TAILQ_HEAD(ship_batchq, ship_batch);

/* Counters: one writer (the shipper thread), read from any thread. */
struct ship_counters {
	uint64_t	enqueued;
	uint64_t	shipped;
	uint64_t	failed;		/* records in failed attempts */
	uint64_t	dropped;
	uint64_t	dead;		/* records sent to dead letter */
	uint64_t	queue_bytes;
	uint64_t	queue_records;
	uint64_t	dead_records;	/* now in the dead-letter store */
	uint64_t	oldest_us;	/* wall time of the oldest; 0: none */
	uint64_t	last_success_us;	/* wall */
	uint64_t	cursor;
};

/* Cursor window: seqs read from the source, in order, with acks. */
struct ship_window {
	uint64_t	*seq;
	uint8_t		*acked;
	size_t		 head, tail, cap;
};

struct ship_stream {
	enum ship_stream_id		 id;
	const struct ship_stream_conf	*conf;
	struct ship_recq		 pending;	/* committed, idle */
	struct ship_batchq		 retry;		/* failed, to resend */
	struct ship_batchq		 sending;	/* in flight */
	size_t				 inflight;
	uint64_t			 committing_bytes;
	uint64_t			 next_seq;
	uint64_t			 attempt;	/* failures in a row */
	uint64_t			 not_before_us;	/* backoff, mono */
	uint64_t			 last_warn_us;
	uint64_t			 drops_unreported;
	uint64_t			 pending_bytes;
	struct ship_counters		 c;
	/* cursor streams (audit) */
	struct ship_window		 win;
	uint64_t			 read_seq;	/* last read */
	uint64_t			 win_bytes;
	uint64_t			 cursor_saved;
	int				 cursor_writing;
	int				 source_ok;
};

/* A record source read by a durable cursor (the audit log). */
typedef void (*ship_emit_fn)(void *ctx, uint64_t seq, const char *json,
    size_t len);
struct ship_source {
	const char	*name;
	/* emit records with seq > after, at most max_bytes; -1: error */
	int		(*read)(void *arg, uint64_t after, size_t max_bytes,
			    ship_emit_fn, void *ctx);
	void		*arg;
};

struct shipper {
	struct config		*conf;
	const struct log_shipping_conf *ls;
	struct store		*st;
	struct store		*own_st;	/* interim private store */
	struct keyring		*own_kr;
	struct event_base	*base;
	struct httpc		*hc;
	struct ship_cred	*cred;
	pthread_t		 thread;
	struct event		*ev_wake, *ev_flush, *ev_retry, *ev_health;
	struct event		*ev_stop;
	struct ship_stream	 streams[SHIP_NSTREAMS];
	const struct ship_source *source;	/* audit; NULL: none yet */
	char			 instance[17];	/* RecordId prefix */
	unsigned char		*shared_key;	/* data-collector */
	size_t			 shared_key_len;
	int			 commits;	/* store writes in flight */
	int			 stopping;
	/* the sink's hand-off, under mtx */
	pthread_mutex_t		 mtx;
	char			**stage;
	size_t			 nstage, stage_cap, stage_bytes;
	uint64_t		 stage_dropped;
	/* request durations, seconds buckets */
	uint64_t		 hist[12];
	uint64_t		 hist_count, hist_sum_us;
};

extern struct shipper	*shipper;
extern const double	 ship_hist_le[12];

#define SHIP_BUMP(field, n) \
	__atomic_store_n(&(field), __atomic_load_n(&(field), \
	    __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define SHIP_SET(field, v)	__atomic_store_n(&(field), (v), \
	    __ATOMIC_RELAXED)
#define SHIP_READ(field)	__atomic_load_n(&(field), __ATOMIC_RELAXED)

/* shipper.c */
struct ship_rec	*ship_rec_new(uint64_t seq, int origin, const char *json,
		    size_t len);
void		 ship_wake(void);
void		 ship_intake(enum ship_stream_id, json_t *, int flush);
void		 ship_log_muted(enum log_level, const char *, ...)
		    PRINTFLIKE(2, 3);

/* shipper-send.c */
void		 ship_send_all(int force);
void		 ship_batch_free(struct ship_batch *);
void		 ship_stream_drain_free(struct ship_stream *);

/* shipper-queue.c */
void		 ship_key(uint8_t *, enum ship_stream_id, uint64_t seq);
int		 ship_queue_load(struct ship_stream *);
void		 ship_queue_commit(struct ship_stream *, struct ship_recq *,
		    size_t n);
void		 ship_queue_ack(struct ship_stream *, struct ship_recq *);
void		 ship_dead_letter(struct ship_stream *, struct ship_recq *,
		    long status, const char *body, size_t body_len);
void		 ship_pending_add(struct ship_stream *, struct ship_rec *);
void		 ship_pending_remove(struct ship_stream *, struct ship_rec *);
void		 ship_update_oldest(struct ship_stream *);
int		 ship_dead_count(void);
void		 ship_dead_retry(void);
void		 ship_cursor_read(struct ship_stream *);
const struct ship_source *ship_audit_source(void);

#endif /* SHIPPER_H */
