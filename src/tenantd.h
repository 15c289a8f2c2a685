/*
 * tenantd: private header shared by tenantd, tenantd-vault and tenantctl.
 * Prototypes are grouped by the file that defines them.
 */
#ifndef TENANTD_H
#define TENANTD_H

#include <sys/types.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define TENANTD_VERSION		PACKAGE_VERSION
#define TENANTD_CONF		"/etc/tenantd/tenantd.yaml"

#define nitems(a)		(sizeof(a) / sizeof((a)[0]))
#define MINIMUM(a, b)		((a) < (b) ? (a) : (b))
#define MAXIMUM(a, b)		((a) > (b) ? (a) : (b))

#define PRINTFLIKE(f, a)	__attribute__((format(printf, f, a)))
#define DEAD			__attribute__((noreturn))

struct event_base;
struct evbuffer;

/* log.c */
enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};
struct log_field {
	const char	*key;
	const char	*value;
};
/* Receives every formatted JSON line (without newline) at or above info. */
typedef void (*log_sink_fn)(enum log_level, const char *line, size_t len);

void	log_init(const char *procname, enum log_level, int to_stderr);
void	log_setlevel(enum log_level);
enum log_level log_getlevel(void);
int	log_level_parse(const char *, enum log_level *);
const char *log_level_name(enum log_level);
void	log_set_sink(log_sink_fn);
void	log_set_request_id(const char *);	/* per thread; NULL clears */
void	log_fields(enum log_level, const struct log_field *, size_t,
	    const char *, ...) PRINTFLIKE(4, 5);
void	log_warn(const char *, ...) PRINTFLIKE(1, 2);
void	log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void	log_info(const char *, ...) PRINTFLIKE(1, 2);
void	log_debug(const char *, ...) PRINTFLIKE(1, 2);
void	fatal(const char *, ...) PRINTFLIKE(1, 2) DEAD;
void	fatalx(const char *, ...) PRINTFLIKE(1, 2) DEAD;

/* xmalloc.c */
void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);
void	 freezero_str(char *);

/* util.c */
int	 timingsafe_eq(const void *, const void *, size_t);
uint64_t now_usec(void);		/* CLOCK_MONOTONIC */
uint64_t wall_usec(void);		/* CLOCK_REALTIME */
void	 format_iso8601(char *, size_t, uint64_t wall_us);
int	 is_loopback_addr(const struct sockaddr *);
int	 parse_hostport(const char *, struct sockaddr_storage *, socklen_t *,
	    char *err, size_t errlen);
void	 format_sockaddr(char *, size_t, const struct sockaddr *);
void	 random_hex(char *, size_t nbytes);	/* writes 2*nbytes+1 */
#ifndef HAVE_STRLCPY
size_t	 strlcpy(char *, const char *, size_t);
#endif
#ifndef HAVE_STRLCAT
size_t	 strlcat(char *, const char *, size_t);
#endif

/*
 * conf.c, conf-schema.c: the configuration, parsed from YAML through a
 * table-driven schema. A struct config is immutable once loaded and shared
 * between threads by reference count.
 */
struct listen_conf {
	char			*address;	/* as written, "host:port" */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 tls;
};

struct tls_conf {
	int		 self_signed;
	char		*certificate;	/* PEM path (generated if self_signed) */
	char		*key;		/* PEM path, resolved from a secret ref */
	uint64_t	 hsts_max_age;	/* seconds; 0 disables */
};

struct cors_conf {
	char		**origins;
	size_t		  norigins;
	uint64_t	  max_age;	/* seconds */
};

struct http_conf {
	int		 workers;	/* 0: one per CPU */
	int		 max_connections;
	uint64_t	 max_header_size;
	uint64_t	 max_body_size;
	uint64_t	 idle_timeout;	/* ms, keep-alive idle and I/O */
	uint64_t	 request_timeout; /* ms, to receive one request */
	uint64_t	 shutdown_timeout; /* ms, drain on TERM */
};

struct metrics_conf {
	int		 allow_remote;	/* serve /metrics to non-loopback */
};

struct control_conf {
	char		*socket;
	char		*group;		/* admin group; NULL: root only */
};

/* license.c: the license section */
struct license_conf {
	char		**trusted_keys;	/* PEM paths or inline PEM */
	size_t		  ntrusted_keys;
	uint64_t	  grace;	/* s after valid_until */
};

/* notice.c, notice-webhook.c: the notifications section */
enum webhook_format {
	WEBHOOK_JSON = 0,	/* signed JSON */
	WEBHOOK_TEAMS,		/* Teams Workflows, Adaptive Card */
};

struct webhook_conf {
	char		*url;
	int		*kinds;		/* enum notice_kind; none: all */
	size_t		 nkinds;
	int		 format;	/* enum webhook_format */
	char		*secret_file;	/* secret reference, resolved */
	char		*ca_file;	/* extra CAs for the receiver */
};

struct notifications_conf {
	struct webhook_conf	*webhooks;
	size_t			 nwebhooks;
	uint64_t		 retry_for;	/* s, then failed */
	uint64_t		 retry_backoff;	/* ms, the first retry */
};

/* auth: (defined here for struct config; see auth.c below) */
enum auth_provider {
	AUTH_PROVIDER_ENTRA = 0,
	AUTH_PROVIDER_LOCAL,
};

/*
 * auth.roles: for each tenantd role (index i is AUTH_ROLE_* bit 1 << i,
 * in the order of auth_role_name), the Entra app-role values that grant it.
 */
#define AUTH_NROLES		2
struct auth_roles_conf {
	char		**values[AUTH_NROLES];
	size_t		  nvalues[AUTH_NROLES];
};

struct auth_conf {
	int			 configured;	/* an auth: section was given */
	enum auth_provider	 provider;
	char			*authority;	/* default public cloud */
	char			*ca_file;	/* extra CAs for the authority */
	char			**audiences;
	size_t			  naudiences;
	char			**allowed_clients;	/* azp/appid; 0: any */
	size_t			  nallowed_clients;
	char			**required_scopes;
	size_t			  nrequired_scopes;
	int			  allow_app_tokens;
	struct auth_roles_conf	  roles;
	uint64_t		  clock_skew;	/* s; default 120, max 300 */
	uint64_t		  jwks_refresh;	/* s; default 3600 */
};

/* log_shipping: (shipper*.c), see docs/azure/LOG-ANALYTICS.md */
enum ship_api {
	SHIP_API_LOGS_INGESTION = 0,
	SHIP_API_DATA_COLLECTOR,
};
enum ship_cred_type {
	SHIP_CRED_MANAGED_IDENTITY = 0,
	SHIP_CRED_CLIENT_SECRET,
	SHIP_CRED_CLIENT_CERTIFICATE,
};
enum ship_stream_id {
	SHIP_AUDIT = 0,
	SHIP_OPS,
	SHIP_USAGE,
	SHIP_NSTREAMS
};

struct ship_cred_conf {
	int		 type;		/* enum ship_cred_type */
	char		*client_id;	/* app, or user-assigned identity */
	char		*imds_endpoint;	/* http://169.254.169.254 */
	char		*tenant_id;	/* NULL: the top-level tenant_id */
	char		*authority;	/* https://login.microsoftonline.com */
	char		*client_secret;	/* secret reference, resolved */
	char		*certificate;	/* PEM path */
	char		*key;		/* secret reference, resolved */
};

struct ship_stream_conf {
	int		 enabled;
	char		*name;		/* DCR stream, or Log-Type (legacy) */
	uint64_t	 queue_limit;	/* bytes */
};

struct log_shipping_conf {
	int			 configured;	/* the section is present */
	int			 enabled;
	int			 api;		/* enum ship_api */
	char			*endpoint;
	char			*dcr_immutable_id;
	char			*workspace_id;	/* data-collector */
	char			*shared_key;	/* data-collector, resolved */
	char			*audience;
	char			*ca_file;	/* extra CAs (tests) */
	struct ship_cred_conf	 credential;
	struct ship_stream_conf	 audit, ops, usage;	/* enum order */
	uint64_t		 flush_interval;	/* ms */
	int			 max_in_flight;	/* per stream */
	uint64_t		 max_batch_size;	/* bytes of JSON */
	uint64_t		 request_timeout;	/* ms */
	uint64_t		 retry_max_delay;	/* ms, backoff cap */
	uint64_t		 health_interval;	/* s; 0: none */
};

struct keyring_conf {
	char		*kek;		/* NULL: the development KEK file */
	char		*path;		/* default STATE_DIR/keyring */
	uint64_t	 rotate_after;	/* seconds; 0: never by age */
	int		 recovery;	/* issue a recovery key at creation */
};

struct storage_conf {
	char		*path;		/* default STATE_DIR/store */
	uint64_t	 max_size;	/* bytes */
};

/* Where a vault listens or is reached: a unix socket or mutual TLS. */
struct vault_tls_conf {
	char		*certificate;	/* own certificate (PEM path) */
	char		*key;		/* secret reference, resolved */
	char		*ca;		/* CA that signs the peer */
};

enum vault_mode {
	VAULT_CHILD = 0,	/* tenantd runs tenantd-vault itself */
	VAULT_EXTERNAL,		/* a separate unit, maybe another host */
};

struct vault_conf {
	int			 mode;		/* enum vault_mode */
	char			*address;	/* socket path or tls://h:p */
	char			*config;	/* child: the vault's config */
	char			*program;	/* child: NULL = found */
	struct vault_tls_conf	 tls;
	uint64_t		 timeout;	/* ms, one request */
	int			 pending_max;	/* puts kept while down */
};

struct config {
	int			 refcnt;
	char			*path;
	char			*tenant_id;
	char			*state_dir;
	enum log_level		 log_level;
	struct listen_conf	*listen;
	size_t			 nlisten;
	struct tls_conf		 tls;
	struct http_conf	 http;
	struct cors_conf	 cors;
	struct metrics_conf	 metrics;
	struct control_conf	 control;
	struct auth_conf	 auth;
	struct log_shipping_conf log_shipping;
	struct keyring_conf	 keyring;
	struct storage_conf	 storage;
	struct vault_conf	 vault;
	struct license_conf	 license;
	struct notifications_conf notifications;
};

/* The vault's own configuration (tenantd-vault -c FILE). */
struct vault_config {
	char			*path;
	char			*state_dir;
	enum log_level		 log_level;
	struct keyring_conf	 keyring;
	struct storage_conf	 storage;
	char			*listen;	/* socket path or tls://h:p */
	struct vault_tls_conf	 tls;
	char			**allow_users;	/* unix peers: names/uids */
	size_t			 nallow_users;
	int			 max_connections;
};

/* conf_load flags */
#define CONF_NO_SECRETS	0x01	/* tenantctl: do not open secret files */

/*
 * Parse FILE; on success return the config, on failure return NULL and
 * set *errors to the collected "FILE:LINE:COL: message" lines.
 */
struct config	*conf_load(const char *file, int flags, char **errors);
struct vault_config *conf_load_vault(const char *file, int flags,
		    char **errors);
void		 conf_free_vault(struct vault_config *);
struct config	*conf_ref(struct config *);
void		 conf_unref(struct config *);

/*
 * conf.c: the schema engine; conf-schema.c: the tables it walks. A new
 * config section is one row in the root table, a sub-table and a struct.
 * Field storage by type: STRING, SECRET: char *; BOOL, INT, ENUM: int;
 * DURATION_MS, DURATION_S, SIZE: uint64_t; LIST: array pointer at .offset
 * and size_t count at .count; MAP: the struct described by .sub.
 */
enum conf_type {
	CONF_STRING,
	CONF_SECRET,		/* a secret reference, stored as its path */
	CONF_BOOL,
	CONF_INT,
	CONF_DURATION_MS,	/* stored in milliseconds */
	CONF_DURATION_S,	/* stored in seconds */
	CONF_SIZE,		/* stored in bytes */
	CONF_ENUM,		/* stored as the index into .names */
	CONF_LIST,
	CONF_MAP,
};

#define CONF_REQUIRED	0x01

struct conf_ctx;
struct conf_node;
struct conf_key;
typedef int	(*conf_check_fn)(struct conf_ctx *, const struct conf_node *,
		    void *field);
typedef int	(*conf_parse_fn)(struct conf_ctx *, const struct conf_node *,
		    const struct conf_key *, void *field);
typedef void	(*conf_finish_fn)(struct conf_ctx *, const struct conf_node *,
		    void *obj);

struct conf_section {
	const struct conf_key	*keys;
	size_t			 nkeys;
	size_t			 size;		/* of the struct it fills */
	conf_finish_fn		 finish;	/* cross-key checks, last */
};

struct conf_key {
	const char		*name;
	enum conf_type		 type;
	size_t			 offset;
	int			 flags;
	const char		*def;		/* default, in file syntax */
	const char		*min;		/* bounds in file syntax; */
	const char		*max;		/* LIST: number of items */
	enum conf_type		 item;		/* LIST: type of the items */
	size_t			 count;		/* LIST: offset of the count */
	const struct conf_section *sub;		/* MAP, LIST of MAP */
	const char *const	*names;		/* ENUM, NULL-terminated */
	conf_check_fn		 check;		/* each value or list item */
	conf_parse_fn		 parse;		/* replaces the generic one */
};

extern const struct conf_section conf_root;
extern const struct conf_section conf_vault_root;

void	 conf_error(struct conf_ctx *, const struct conf_node *,
	    const char *, ...) PRINTFLIKE(3, 4);
int	 conf_flags(const struct conf_ctx *);
int	 conf_walk_map(struct conf_ctx *, const struct conf_node *,
	    const struct conf_section *, void *obj);
void	 conf_set_defaults(const struct conf_section *, void *obj);
int	 conf_load_section(const char *file, int flags,
	    const struct conf_section *root, void *obj, char **errors);
void	 conf_release(const struct conf_section *, void *obj);
const struct conf_node *conf_node_get(const struct conf_node *map,
	    const char *key);
const char *conf_node_scalar(const struct conf_node *);

/* secret.c: secrets are file paths or credential:NAME, never inline. */
int	 secret_resolve(const char *ref, char **path, char *err, size_t);
int	 secret_check_file(const char *path, char *err, size_t);
ssize_t	 secret_read(const char *path, void *buf, size_t len,
	    char *err, size_t);

/*
 * keyring.c: the only code that touches key bytes. A KEK (from a file, a
 * systemd credential or a passphrase file) unwraps a keyring master key,
 * which wraps numbered AES-256 data keys and the pseudonymization key.
 */
#define KEYRING_SEAL_OVERHEAD	33	/* version, term, nonce, GCM tag */
#define KEYRING_RECOVERY_LEN	48	/* "XXXX-XXXX-...-XXXX" + NUL */
#define KEYRING_PSEUDONYM_LEN	29	/* "p_" + 26 base32 + NUL */
#define KEYRING_ROTATE_SEALS	(1ULL << 30)

enum keyring_status {
	KEYRING_OK = 0,
	KEYRING_EAUTH = -1,	/* sealed value failed authentication */
	KEYRING_EFORMAT = -2,	/* not a sealed value / unknown version */
	KEYRING_ETERM = -3,	/* unknown or destroyed key term */
	KEYRING_EIO = -4,	/* keyring file could not be updated */
};

enum keyring_term_state {
	KEYRING_TERM_ACTIVE = 1,
	KEYRING_TERM_DECRYPT_ONLY = 2,
	KEYRING_TERM_DESTROYED = 3,
};

struct keyring_params {
	const char	*path;		/* the keyring file */
	const char	*kek;		/* file:PATH | credential:NAME |
					   passphrase-file:PATH */
	uint64_t	 rotate_after;	/* seconds; 0: no age rotation */
	uint64_t	 rotate_seals;	/* 0: KEYRING_ROTATE_SEALS */
	int		 create;	/* create the keyring if missing */
	int		 recovery;	/* at creation, make a recovery key */
	unsigned	 scrypt_log2n;	/* 0: 17 (passphrase KEKs, creation) */
};

struct keyring;

/*
 * Load (or, with params->create, create) the keyring. When a keyring is
 * created with params->recovery, the recovery key is written once to
 * recovery (KEYRING_RECOVERY_LEN bytes) and *created is set.
 */
int	 keyring_load(const struct keyring_params *, struct keyring **,
	    int *created, char *recovery, char *err, size_t errlen);
void	 keyring_free(struct keyring *);
int	 keyring_recover(const struct keyring_params *, const char *recovery,
	    char *err, size_t errlen);
int	 keyring_rotate(struct keyring *, uint32_t *term, char *err, size_t);
int	 keyring_retire(struct keyring *, uint32_t term, uint64_t in_use,
	    char *err, size_t);
uint32_t keyring_active_term(struct keyring *);
int	 keyring_term_state(struct keyring *, uint32_t term);	/* 0: none */
json_t	*keyring_status_json(struct keyring *);
int	 keyring_seal(struct keyring *, const void *aad, size_t aadlen,
	    const void *in, size_t len, uint8_t *out);	/* len + OVERHEAD */
int	 keyring_open(struct keyring *, const void *aad, size_t aadlen,
	    const uint8_t *in, size_t len, uint8_t *out);	/* len - OVERHEAD */
int	 keyring_sealed_term(const uint8_t *, size_t, uint32_t *term);
const char *keyring_strerror(int);
int	 keyring_pseudonym(struct keyring *, const char *tenant_id,
	    const char *oid, char *out);	/* KEYRING_PSEUDONYM_LEN */
void	 keyring_protect_process(void);	/* PR_SET_DUMPABLE 0, no core */
/* The Ed25519 key that signs audit checkpoints and anchors. */
#define KEYRING_AUDIT_SIG_LEN	64
#define KEYRING_AUDIT_PUB_LEN	32
int	 keyring_audit_sign(struct keyring *, const void *msg, size_t len,
	    uint8_t *sig);	/* KEYRING_AUDIT_SIG_LEN */
void	 keyring_audit_pubkey(struct keyring *, uint8_t *pub);
int	 keyring_kek_generate(const char *path, int *created, char *err,
	    size_t errlen);	/* a raw KEK file, made once */
int	 keyring_active_age(struct keyring *, uint64_t *created);
int	 keyring_load_conf(const struct keyring_conf *, const char *state_dir,
	    struct keyring **, char *err, size_t errlen);
int	 keyring_recover_conf(const struct keyring_conf *,
	    const char *state_dir, const char *recovery, char *err, size_t);

/*
 * store.c, store-writer.c: the only code that calls mdb_*. One LMDB
 * environment with named databases; every value sealed by the keyring;
 * writes go through one writer thread that commits batches in groups.
 */
enum store_status {
	STORE_OK = 0,
	STORE_NOTFOUND = -1,	/* no such record */
	STORE_FULL = -2,	/* storage.max_size (or the disk) is full */
	STORE_CORRUPT = -3,	/* a value failed authentication */
	STORE_KEY = -4,		/* a value's key term is unknown/destroyed */
	STORE_INVALID = -5,	/* bad argument: unknown db, size limits */
	STORE_IO = -6,		/* LMDB or system error (logged) */
	STORE_CLOSED = -7,	/* the store is shutting down */
};

struct store_params {
	const char	 *dir;		/* environment directory (made 0700) */
	const char *const *dbs;		/* named databases, NULL-terminated */
	uint64_t	  max_size;	/* bytes; the map never grows beyond */
	uint64_t	  initial_size;	/* 0: MINIMUM(64 MiB, max_size) */
	unsigned	  max_readers;	/* 0: 126 */
	size_t		  max_value;	/* 0: 1 MiB */
	struct keyring	 *keyring;
};

struct store;
struct store_batch;
/* Called on the submitter's event_base thread after the durable commit. */
typedef void (*store_done_fn)(int status, void *arg);
/* Scan callback: 0 continue, 1 stop, or a negative store_status. */
typedef int (*store_scan_fn)(const void *key, size_t keylen,
    const void *val, size_t vallen, void *arg);

int	 store_open(const struct store_params *, struct store **,
	    char *err, size_t errlen);
void	 store_close(struct store *);	/* drains pending writes */
const char *store_strerror(int);
int	 store_set_max_size(struct store *, uint64_t);
struct store_batch *store_batch_new(struct store *);
int	 store_batch_put(struct store_batch *, const char *db,
	    const void *key, size_t keylen, const void *val, size_t vallen);
int	 store_batch_del(struct store_batch *, const char *db,
	    const void *key, size_t keylen);
void	 store_batch_free(struct store_batch *);
int	 store_submit(struct store_batch *, struct event_base *,
	    store_done_fn, void *arg);	/* takes the batch */
int	 store_write(struct store_batch *);	/* synchronous; frees it */
int	 store_get(struct store *, const char *db, const void *key,
	    size_t keylen, void **val, size_t *vallen);	/* free(*val) */
int	 store_scan(struct store *, const char *db, const void *prefix,
	    size_t prefixlen, store_scan_fn, void *arg);
int	 store_count_term(struct store *, uint32_t term, uint64_t *count);
int	 store_rewrap(struct store *, size_t limit, size_t *rewrapped);
int	 store_scan_from(struct store *, const char *db, const void *start,
	    size_t startlen, store_scan_fn, void *arg);	/* keys >= start */

/*
 * Write hooks (store-writer.c, store.c): a batch may carry a function that
 * the writer thread calls inside the write transaction, in order with the
 * batch's other operations. It reads and writes through the store_txn_*
 * calls, so what it sees and writes is exactly what commits with the
 * batch: if the batch fails, everything the hook wrote is undone with it.
 * A hook may run more than once for one batch (a group that fails is
 * retried batch by batch), so it must derive its state from the
 * transaction, not from memory. It returns STORE_OK or fails the batch.
 */
struct store_txn;
typedef int (*store_hook_fn)(struct store_txn *, void *arg);
int	 store_batch_hook(struct store_batch *, store_hook_fn, void *arg,
	    void (*free_arg)(void *));
int	 store_txn_put(struct store_txn *, const char *db, const void *key,
	    size_t keylen, const void *val, size_t vallen);	/* seals */
int	 store_txn_del(struct store_txn *, const char *db, const void *key,
	    size_t keylen);
int	 store_txn_get(struct store_txn *, const char *db, const void *key,
	    size_t keylen, void **val, size_t *vallen);	/* free(*val) */
int	 store_txn_last(struct store_txn *, const char *db, void *key,
	    size_t *keylen, void **val, size_t *vallen);	/* free(*val) */

struct store_stats {
	uint64_t	used;		/* bytes of pages in use */
	uint64_t	mapsize;	/* current map */
	uint64_t	max_size;	/* storage.max_size */
	uint64_t	entries;	/* records, all databases */
};
int	 store_stats(struct store *, struct store_stats *);
int	 store_db_entries(struct store *, const char *db, uint64_t *);
int	 store_lock_holder(const char *dir, long *pid);

/*
 * audit.c, audit-verify.c, audit-export.c: the audit trail. One record per
 * action, numbered and hash-chained in commit order by the store's writer
 * thread (a write hook), sealed like every stored value, with signed
 * checkpoints. See docs/AUDIT.md.
 */
#define AUDIT_DB		"audit"
#define AUDIT_DETAILS_MAX	8
#define AUDIT_SOURCE_LEN	48

enum audit_outcome {
	AUDIT_OK = 0,
	AUDIT_DENIED,
	AUDIT_ERROR,
};

struct audit_action {
	const char	*name;		/* dotted verb: "settings.put" */
	const char	*ctl;		/* the tenantctl command, or NULL */
	const char	*route;		/* "PUT /v1/settings/{scope}/{key}" */
	const char	*summary;
};

struct audit_detail {
	char		 key[32];	/* [a-z0-9_] */
	char		 value[256];
	int		 is_int;
	long long	 num;
};

/* What a caller fills (audit_record_*); strings are bounded copies. */
struct audit_record {
	const struct audit_action *action;
	char		 actor[80];	/* pseudonym, system, operator:UID */
	char		 roles[80];	/* "admin,auditor" */
	char		 target[256];	/* opaque ids only */
	enum audit_outcome outcome;
	int		 status;	/* HTTP status; 0 when none */
	char		 request_id[72];
	char		 client_app[128];
	char		 source[AUDIT_SOURCE_LEN]; /* a /24 or /48 network */
	struct audit_detail details[AUDIT_DETAILS_MAX];
	size_t		 ndetails;
};

struct audit_params {
	uint64_t	 checkpoint_every;	/* records; 0: 1000 */
	uint64_t	 checkpoint_interval;	/* seconds; 0: 300 */
	uint64_t	 denied_per_source;	/* per minute; 0: 10 */
	uint64_t	 denied_total;		/* per minute; 0: 120 */
};

enum audit_format {
	AUDIT_CSV = 0,
	AUDIT_JSON,
	AUDIT_JSONL,
};

struct audit_filter {
	uint64_t	 from_seq, to_seq;	/* 0: open */
	char		 from_ts[32], to_ts[32]; /* ISO 8601 UTC; "": open */
	char		 actor[80];
	char		 action[64];		/* exact, or "keys.*" */
	char		 outcome[8];
	enum audit_format format;
	int		 bom;			/* CSV: UTF-8 BOM (default) */
};

struct audit_export;

extern const struct audit_action audit_actions[];
extern const size_t audit_nactions;

int	 audit_init(struct store *, struct keyring *,
	    const struct audit_params *, char *err, size_t);
void	 audit_shutdown(void);
int	 audit_enabled(void);
const struct audit_action *audit_action_find(const char *);
const struct audit_action *audit_action_for_ctl(const char *cmd);
json_t	*audit_actions_json(void);
int	 audit_record_init(struct audit_record *, const char *action,
	    const char *actor);		/* -1: no such action */
void	 audit_record_roles(struct audit_record *, const char *);
void	 audit_record_target(struct audit_record *, const char *, ...)
	    PRINTFLIKE(2, 3);
void	 audit_record_outcome(struct audit_record *, enum audit_outcome,
	    int status);
void	 audit_record_request(struct audit_record *, const char *request_id,
	    const char *client_app, const struct sockaddr *peer);
void	 audit_record_detail(struct audit_record *, const char *key,
	    const char *, ...) PRINTFLIKE(3, 4);
void	 audit_record_detail_int(struct audit_record *, const char *key,
	    long long);
void	 audit_source_format(const struct sockaddr *, char *, size_t);
/* In the same transaction as the batch's change; a failure fails both. */
int	 audit_batch_add(struct store_batch *, const struct audit_record *);
int	 audit_log_now(const struct audit_record *);	/* durable on 0 */
int	 audit_log_async(const struct audit_record *, struct event_base *);
int	 audit_denied(const struct audit_record *, struct event_base *);
void	 audit_tick(struct event_base *);	/* suppressed counts */
int	 audit_checkpoint(void);	/* sign the head now, if it moved */
int	 audit_prune(uint64_t through_seq, char *err, size_t);
void	 audit_pubkey(char *hex, size_t, char *key_id, size_t);
json_t	*audit_status_json(void);
json_t	*audit_verify(uint64_t from_seq);
int	 audit_filter_set(struct audit_filter *, const char *key,
	    const char *value, char *err, size_t);
struct audit_export *audit_export_new(const struct audit_filter *);
int	 audit_export_fill(struct audit_export *, struct evbuffer *,
	    size_t max);		/* 1 more, 0 done, <0 store_status */
uint64_t audit_export_rows(const struct audit_export *);
void	 audit_export_free(struct audit_export *);
const char *audit_export_ctype(const struct audit_filter *);

/* ctl-audit.c: the audit trail in tenantd and `tenantctl audit ...` */
void	 audit_daemon_start(struct event_base *, struct store *,
	    struct keyring *);
void	 audit_daemon_stop(void);
void	 audit_signal_reload(int ok);
int	 audit_ctl(uid_t, const char *cmd, const char *error);
void	 audit_ctl_detail(const char *key, const char *value);
void	 audit_ctl_denied(uid_t);

/* tenantctl-audit.c: the client side of `tenantctl audit ...` */
int	 tctl_parse_audit_verify(int, char **, json_t *);
int	 tctl_parse_audit_export(int, char **, json_t *);
int	 tctl_parse_audit_prune(int, char **, json_t *);
void	 tctl_print_audit_verify(json_t *);
void	 tctl_print_audit_actions(json_t *);
int	 tctl_stream_copy(int fd, const char *pending, size_t len);

/* metrics.c */
#define METRIC_ROUTE_UNMATCHED	(-1)
void	 metrics_init(size_t nworkers);
void	 metrics_request(size_t worker, int route, int status,
	    uint64_t duration_us);
void	 metrics_render(struct evbuffer *);
/* metrics_auth_failure() is declared after enum auth_result, below. */

/* ready.c */
enum ready_state {
	READY_OK = 0,
	READY_DEGRADED,		/* serving, but an operator should look */
	READY_FAIL,
};
void	 ready_set(const char *check, enum ready_state, const char *detail);
json_t	*ready_json(int *all_ready);

/* notify.c */
void	 notify_ready(const char *status);
void	 notify_reloading(void);
void	 notify_stopping(void);
void	 notify_status(const char *);
int	 notify_watchdog_usec(uint64_t *);
void	 notify_watchdog(void);

/* tenantd.c: the daemon's state as the control socket sees it. */
json_t	*daemon_status(void);		/* version, uptime, listeners, ready */
int	 daemon_reload(char **errors);	/* 0, or -1 with errors set */
int	 daemon_check_config(char **errors); /* parse only; 0 or -1 */
const struct config *daemon_config(void);

/*
 * control.c: the unix control socket. Peers are checked with SO_PEERCRED
 * (root or the admin group); requests and answers are one JSON object per
 * line: {"cmd":"status","args":{...}} -> {"ok":true,"result":...} or
 * {"ok":false,"error":"..."}.
 */
int	 control_init(struct event_base *, const struct config *);
void	 control_shutdown(void);

/* ctl-daemon.c: the daemon's table of control commands. */
struct ctl_peer {
	uid_t	uid;
	gid_t	gid;
	pid_t	pid;
};
typedef json_t *(*ctl_handler)(const struct ctl_peer *, json_t *args,
    char **error);
struct ctl_command {
	const char	*name;
	ctl_handler	 handler;
	const char	*summary;
};
const struct ctl_command *ctl_command_find(const char *);
/*
 * control.c: a command may stream after its answer line (audit export):
 * the handler calls ctl_stream_begin; control.c then sends frames
 * {"chunk":N}\n + N bytes, with at most CTL_STREAM_QUEUE bytes unsent,
 * and a last line {"end":true} or {"end":false,"error":"..."}.
 * fn appends about max bytes: 1 more, 0 done, -1 failed (*error set).
 */
#define CTL_STREAM_QUEUE	(256 * 1024)
typedef int (*ctl_stream_fn)(void *arg, struct evbuffer *, size_t max,
    char **error);
void	 ctl_stream_begin(ctl_stream_fn, void (*free_arg)(void *), void *);
json_t	*ctl_audit_verify(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_audit_export(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_audit_pubkey(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_audit_actions(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_audit_prune(const struct ctl_peer *, json_t *, char **);

/*
 * control.c, ctl-daemon.c, tenantctl.c: limits of the control protocol. A
 * ctl_handler borrows args and returns a new reference, or NULL with *error
 * set to a malloc'd message that the dispatcher frees.
 */
#define CTL_LINE_MAX		(64 * 1024)	/* one request line, bytes */

/*
 * vault-proto.c: the protocol between tenantd and tenantd-vault, shared by
 * both ends. A frame is a 4-byte big-endian length and one JSON object:
 * {"id":N,"op":"put"|"resolve"|"forget"|"stats",...} answered by
 * {"id":N,"ok":true,...} or {"id":N,"ok":false,"error":"..."}.
 */
#define VAULT_FRAME_MAX		(64 * 1024)
#define VAULT_FIELD_MAX		256	/* oid, upn, requester */
#define VAULT_NAME_MAX		512	/* display name, reason */
#define VAULT_DEFAULT_SOCKET	"/run/tenantd-vault/vault.sock"
#define VAULT_TLS_PREFIX	"tls://"

struct ssl_ctx_st;
int	 vault_address_parse(const char *, struct sockaddr_storage *,
	    socklen_t *, int *tls, char *err, size_t errlen);
int	 vault_frame_add(struct evbuffer *, json_t *);
int	 vault_frame_take(struct evbuffer *, json_t **, char *err, size_t);
int	 vault_pseudonym_ok(const char *);
int	 vault_text_ok(const char *, size_t max);
int	 vault_identity_ok(json_t *, char *err, size_t errlen);
struct ssl_ctx_st *vault_tls_ctx(int server, const struct vault_tls_conf *,
	    char *err, size_t errlen);
struct ssl_st *vault_tls_ssl(struct ssl_ctx_st *, const char *address);
int	 vault_call(const struct vault_conf *, json_t *request,
	    json_t **answer, char *err, size_t errlen);	/* blocking */

/*
 * daemon-store.c: tenantd's keyring and store: loading at start-up,
 * readiness, the rotation timer, background rewrap, metrics.
 */
#define DAEMON_DB_VAULT_PENDING	"vault_pending"
void	 daemon_store_start(struct event_base *, const struct config *);
void	 daemon_store_reload(const struct config *);
void	 daemon_store_stop(void);
struct store	*daemon_store(void);
struct keyring	*daemon_keyring(void);
json_t	*daemon_keys_status(void);
int	 daemon_keys_rewrap_start(char *err, size_t errlen);
int	 daemon_keys_retire(uint32_t term, char *err, size_t errlen);
void	 daemon_store_metrics(struct evbuffer *);

/*
 * vault-client.c: tenantd's side of the vault, on the main event loop.
 * vault_put() is acknowledged once the put is durable in tenantd's own
 * store (database vault_pending); delivery to the vault follows, with
 * retries while the vault is unreachable.
 */
typedef void (*vault_done_fn)(int status, json_t *result,
    const char *error, void *arg);	/* status 0 or -1 */
int	 vault_client_start(struct event_base *, const struct config *,
	    char *err, size_t errlen);
void	 vault_client_stop(void);
int	 vault_put(const char *pseudonym, json_t *identity,
	    vault_done_fn, void *arg);
int	 vault_put_sync(const char *pseudonym, json_t *identity,
	    char *err, size_t errlen);
int	 vault_resolve(const char *pseudonym, const char *requester,
	    const char *reason, vault_done_fn, void *arg);
int	 vault_forget(const char *pseudonym, vault_done_fn, void *arg);
int	 vault_stats(vault_done_fn, void *arg);
int	 vault_forget_pending(const char *pseudonym, char *err, size_t);
json_t	*vault_client_status(void);
void	 vault_client_metrics(struct evbuffer *);

/* vault-child.c: mode child: run and supervise tenantd-vault. */
int	 vault_child_start(struct event_base *, const struct config *,
	    char *err, size_t errlen);
void	 vault_child_stop(void);

/* ctl-keys.c: the keys and vault control commands. */
json_t	*ctl_keys_status(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_keys_rotate(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_keys_rewrap(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_keys_retire(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_vault_status(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_vault_pseudonym(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_vault_put(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_vault_resolve(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_vault_forget(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_vault_stats(const struct ctl_peer *, json_t *, char **);

/* vault-serve.c: tenantd-vault's connections and operations. */
struct vault_server;
extern const char *const vault_dbs[];	/* the vault's databases */
struct vault_server *vault_serve_start(struct event_base *,
	    const struct vault_config *, struct store *, const char *listen,
	    char *err, size_t errlen);
void	 vault_serve_stop(struct vault_server *);

/*
 * httpc.c: the one outbound HTTP client. libcurl's multi interface driven
 * by a libevent base; requests complete through a callback on that base.
 * An httpc is used only from the thread that runs its base.
 */
struct httpc;
struct httpc_xfer;

#define HTTPC_FOLLOW_REDIRECTS	0x01	/* up to 3, https only */
#define HTTPC_ALLOW_HTTP	0x02	/* plain http:// (loopback tests) */

struct httpc_request {
	const char		*method;	/* NULL: "GET" */
	const char		*url;
	const char *const	*headers;	/* "Name: value", NULL-ended */
	const void		*body;		/* copied; may be NULL */
	size_t			 body_len;
	uint64_t		 timeout_ms;	/* whole request; 0: 30 s */
	size_t			 max_body;	/* response cap; 0: 1 MiB */
	const char		*ca_file;	/* CAs trusted besides the system's */
	int			 flags;		/* HTTPC_* */
};

enum httpc_error {
	HTTPC_OK = 0,
	HTTPC_ERR_TIMEOUT,
	HTTPC_ERR_CONNECT,	/* DNS, refused, reset */
	HTTPC_ERR_TLS,		/* handshake or certificate verification */
	HTTPC_ERR_TOO_LARGE,	/* response body over max_body */
	HTTPC_ERR_OTHER,
};

struct httpc_response {
	enum httpc_error	 error;
	const char		*errmsg;	/* "" on success */
	long			 status;	/* 0 without an HTTP answer */
	const char		*body;		/* NUL-terminated, never NULL */
	size_t			 body_len;
	struct httpc_xfer	*xfer;		/* for httpc_response_header */
};

/* Called once per request on the base's thread; resp is valid only here. */
typedef void (*httpc_cb)(const struct httpc_response *resp, void *arg);

void		 httpc_global_init(void);
struct httpc	*httpc_new(struct event_base *);
void		 httpc_free(struct httpc *);	/* cancels, no callbacks */
struct httpc_xfer *httpc_start(struct httpc *, const struct httpc_request *,
		    httpc_cb, void *arg);	/* NULL: not started, no cb */
void		 httpc_cancel(struct httpc_xfer *);	/* before its cb only */
const char	*httpc_response_header(const struct httpc_response *,
		    const char *name);		/* first value or NULL */
const char	*httpc_error_name(enum httpc_error);

/*
 * jwks.c: the signing keys of the token authority. Reads the v1 and v2
 * OpenID metadata (issuers, jwks_uri) and the JWKS, keeps an immutable,
 * reference-counted key set that any thread may read, refreshes it from
 * its own event base and keeps the last good set when a fetch fails.
 */
struct jwks;
struct jwks_keyset;
struct evp_pkey_st;

#define JWKS_MIN_REFETCH	300	/* s between kid-miss refreshes */
#define JWKS_MAX_DOC		(256 * 1024)	/* metadata or JWKS bytes */

enum jwks_state {
	JWKS_NONE = 0,		/* no keys at all */
	JWKS_STALE,		/* keys from the store or a failed refresh */
	JWKS_FRESH,		/* the last refresh succeeded */
};

struct jwks_key {
	char			 kid[128];
	struct evp_pkey_st	*pkey;
	char			*pem;		/* SubjectPublicKeyInfo PEM */
	size_t			 pem_len;
};

/* Persistence hooks: save the last good set, load it at start. */
typedef void (*jwks_save_fn)(const char *json, size_t len, void *arg);
typedef char *(*jwks_load_fn)(size_t *len, void *arg);	/* malloc'd */

struct jwks_params {
	const char	*authority;	/* https://login.microsoftonline.com;
					   NULL: keys only from jwks_install */
	const char	*tenant_id;
	const char	*ca_file;	/* may be NULL */
	uint64_t	 refresh;	/* s, background refresh period */
	uint64_t	 min_refetch;	/* s; 0: JWKS_MIN_REFETCH */
	uint64_t	 timeout_ms;	/* per fetch; 0: 10 s */
	jwks_save_fn	 save;
	jwks_load_fn	 load;
	void		*hook_arg;
};

/* Runs on the waiter's base once the refresh in flight has finished. */
typedef void (*jwks_wait_fn)(void *arg);
struct jwks_waiter;

struct jwks	*jwks_new(struct event_base *, struct httpc *,
		    const struct jwks_params *);
void		 jwks_free(struct jwks *);	/* fires pending waiters */
void		 jwks_start(struct jwks *);	/* load hook, then fetch */
void		 jwks_refresh_now(struct jwks *);	/* any thread */
int		 jwks_kid_miss(struct jwks *);	/* any thread; 0: throttled */
struct jwks_waiter *jwks_wait_refresh(struct jwks *, struct event_base *,
		    jwks_wait_fn, void *);	/* NULL: none in flight */
void		 jwks_wait_cancel(struct jwks_waiter *);	/* before it ran */
enum jwks_state	 jwks_state(struct jwks *);
const char	*jwks_state_name(enum jwks_state);
uint64_t	 jwks_fetch_count(struct jwks *);	/* attempts started */
int		 jwks_install(struct jwks *, const char *json, size_t len,
		    int fresh, char *err, size_t errlen);

struct jwks_keyset *jwks_keyset_get(struct jwks *);	/* ref; NULL if none */

/*
 * jwks-key.c: key sets and their pure helpers (no I/O), also for the local
 * provider and the tests. Key sets are immutable once published.
 */
void		 jwks_keyset_put(struct jwks_keyset *);
const struct jwks_key *jwks_keyset_find(const struct jwks_keyset *,
		    const char *kid);
const char	*jwks_keyset_issuer(const struct jwks_keyset *, int ver);
size_t		 jwks_keyset_count(const struct jwks_keyset *);
struct jwks_keyset *jwks_keyset_new(const char *issuer_v1,
		    const char *issuer_v2);
struct jwks_keyset *jwks_keyset_ref(struct jwks_keyset *);
void		 jwks_keyset_add(struct jwks_keyset *, json_t *keys);
json_t		*jwks_json_load(const char *json, size_t len, char *err,
		    size_t errlen);
struct jwks_keyset *jwks_keyset_parse(const char *json, size_t len,
		    char *err, size_t errlen);
char		*jwks_keyset_dump(const struct jwks_keyset *, size_t *len);
json_t		*jwks_jwk_from_pkey(const struct evp_pkey_st *, const char *kid);
int		 jwks_metadata_parse(const char *json, size_t len,
		    const char *tenant_id, char **issuer, char **jwks_uri,
		    char *err, size_t errlen);
ssize_t		 base64url_decode(const char *in, size_t inlen,
		    unsigned char *out, size_t outlen);
char		*base64url_encode(const unsigned char *in, size_t len);

/*
 * auth.c: Entra ID access token validation (shape, header, signature,
 * claims, in that order) and a shared cache of verified tokens.
 */
#define AUTH_TOKEN_MAX		16384
#define AUTH_HEADER_MAX		4096
#define AUTH_CLOCK_SKEW_MAX	300
#define AUTH_ROLE_ADMIN		0x01
#define AUTH_ROLE_AUDITOR	0x02

enum auth_result {
	AUTH_OK = 0,
	AUTH_ERR_MISSING,		/* no Authorization header */
	AUTH_ERR_SCHEME,		/* not "Bearer <token>" */
	AUTH_ERR_QUERY_TOKEN,		/* access_token in the query string */
	AUTH_ERR_TOO_LARGE,
	AUTH_ERR_MALFORMED,		/* not three parts */
	AUTH_ERR_BASE64,
	AUTH_ERR_HEADER_JSON,
	AUTH_ERR_ALG,
	AUTH_ERR_HEADER_PARAM,		/* crit, jku, x5u, jwk */
	AUTH_ERR_KID,			/* kid missing or not a string */
	AUTH_ERR_NO_KEYS,		/* no key set loaded yet */
	AUTH_ERR_UNKNOWN_KID,
	AUTH_ERR_SIGNATURE,
	AUTH_ERR_PAYLOAD_JSON,
	AUTH_ERR_VERSION,
	AUTH_ERR_ISSUER,
	AUTH_ERR_TENANT,
	AUTH_ERR_AUDIENCE,
	AUTH_ERR_EXPIRED,
	AUTH_ERR_NOT_YET_VALID,
	AUTH_ERR_OID,
	AUTH_ERR_SCOPE,
	AUTH_ERR_APP_TOKEN,
	AUTH_ERR_CLIENT,
	AUTH_ERR_CLAIMS,		/* a claim of the wrong type or size */
	AUTH_ERR_NOT_CONFIGURED,	/* no auth: section */
	AUTH_ERR_INTERNAL,
	AUTH_RESULT_COUNT
};

struct auth_principal {
	char		 oid[64];
	char		 tid[64];
	char		 pseudonym[128];	/* from the pseudonym hook */
	char		 upn[256];	/* only ever passed to the vault */
	char		 app_id[64];	/* azp (v2) or appid (v1) */
	unsigned	 roles;		/* AUTH_ROLE_* */
	int		 version;	/* 1 or 2 */
	int		 app_only;	/* roles without scp */
	int64_t		 exp;		/* s since the epoch */
};

/* Fills out (NUL-terminated) from tid and oid; 0 or -1. */
typedef int (*auth_pseudonym_fn)(const char *tid, const char *oid,
    char *out, size_t outlen, void *arg);
typedef int64_t (*auth_clock_fn)(void);	/* s since the epoch */

struct auth_stats {
	uint64_t	cache_hits;
	uint64_t	cache_misses;
	uint64_t	verifications;	/* RSA signature checks */
	uint64_t	cache_entries;
};

struct auth;

int		 auth_conf_check(const struct auth_conf *, char *err, size_t);
void		 auth_conf_free(struct auth_conf *);
int		 auth_role_parse(const char *, unsigned *);
const char	*auth_role_name(unsigned single_role);
struct auth	*auth_new(const struct auth_conf *, const char *tenant_id,
		    struct jwks *, size_t cache_entries);
void		 auth_free(struct auth *);
void		 auth_set_pseudonymizer(struct auth *, auth_pseudonym_fn,
		    void *);
void		 auth_set_clock(struct auth *, auth_clock_fn);
enum auth_result auth_verify_bearer(struct auth *, const char *authz,
		    struct auth_principal *);
enum auth_result auth_verify_token(struct auth *, const char *token,
		    size_t len, struct auth_principal *);
const char	*auth_result_label(enum auth_result);
void		 auth_get_stats(struct auth *, struct auth_stats *);
void		 auth_principal_clear(struct auth_principal *);

/* The pre-parser and claim checks on their own, for the fuzzer. */
enum auth_result auth_check_shape(const char *token, size_t len,
		    json_t **header);
enum auth_result auth_check_claims(struct auth *,
		    const struct jwks_keyset *, json_t *payload,
		    struct auth_principal *);

/*
 * json-input.c: request bodies and command arguments checked against a
 * table-driven schema; problems collected as [{pointer, detail}] (RFC 9457
 * "errors"). See the top of json-input.c for the whole interface.
 */
#define JIN_MAX_DEPTH		32
#define JIN_POINTER_MAX		256

enum jin_type {
	JIN_STRING,		/* min/max: characters; charset: bytes */
	JIN_INT,		/* min/max: value */
	JIN_BOOL,
	JIN_TIME,		/* RFC 3339 UTC string */
	JIN_ENUM,		/* a string from names */
	JIN_ARRAY,		/* min/max: item count; items: each item */
	JIN_OBJECT,		/* sub: the nested schema */
	JIN_ANY,
};

#define JIN_REQUIRED	0x01
#define JIN_NULLABLE	0x02
#define JIN_MULTILINE	0x04	/* strings: newlines and tabs allowed */

struct jin_schema;
struct jin_field {
	const char		*name;
	enum jin_type		 type;
	int			 flags;
	int64_t			 min, max;
	const char		*charset;	/* allowed bytes, or NULL */
	const char		*charset_name;	/* for the message */
	const char *const	*names;		/* JIN_ENUM, NULL-ended */
	const struct jin_field	*items;		/* JIN_ARRAY */
	const struct jin_schema	*sub;		/* JIN_OBJECT */
	/* extra check of a scalar: 0, or -1 with detail set */
	int			(*check)(json_t *, char *detail, size_t);
};

struct jin_schema {
	const struct jin_field	*fields;
	size_t			 nfields;
	int			 allow_unknown;
};

json_t	*jin_errors(void);
void	 jin_error(json_t *errors, const char *pointer, const char *, ...)
	    PRINTFLIKE(3, 4);
json_t	*jin_parse(const char *, size_t, json_t *errors);
int	 jin_check(json_t *, const struct jin_schema *, const char *pointer,
	    json_t *errors);
int	 jin_time_parse(const char *, int64_t *epoch_s);
int	 jin_time_usec(const char *, uint64_t *usec);

/*
 * license.c: the vendor license (Ed25519-signed, checked against
 * license.trusted_keys), kept in the store. Premium features ask
 * license_feature_enabled(); nothing else depends on the license.
 */
#define LICENSE_DB		"license"
#define LICENSE_FEATURES_MAX	64

enum license_state {
	LICENSE_UNLICENSED = 0,
	LICENSE_VALID,
	LICENSE_GRACE,
	LICENSE_EXPIRED,
};

struct evp_pkey_st;
struct store;
void	 license_start(struct store *, const struct config *);
void	 license_reload(const struct config *);
void	 license_stop(void);
int	 license_install(json_t *doc, const char *tenant_id, json_t *errors,
	    char *err, size_t errlen);	/* 0 or an HTTP status */
json_t	*license_status_json(void);
int	 license_feature_enabled(const char *feature);
char	*license_canonical(json_t *license, size_t *len);
int	 license_check_shape(json_t *doc, json_t *errors);
enum license_state license_state_at(int64_t now, int64_t valid_from,
	    int64_t valid_until, uint64_t grace);
const char *license_state_name(enum license_state);
struct evp_pkey_st *license_key_load(const char *ref, char *err, size_t);

/*
 * notice.c: notices to the customer (admin-written and tenantd's own),
 * kept in the store; notice-webhook.c: their durable delivery to the
 * configured webhooks through an outbox in the store.
 */
#define NOTICE_DB		"notices"
#define NOTICE_OUTBOX_DB	"notice_outbox"
#define NOTICE_LIST_MAX		500
#define NOTICE_TITLE_MAX	200
#define NOTICE_BODY_MAX		8000

enum notice_kind {
	NOTICE_SECURITY = 0,
	NOTICE_MAINTENANCE,
	NOTICE_INCIDENT,
	NOTICE_CHANGE,
};
extern const char *const notice_kind_names[];	/* NULL-terminated */
extern const char *const notice_severity_names[];

void	 notice_start(struct event_base *, struct store *, struct config *);
void	 notice_reload(const struct config *old, struct config *);
void	 notice_stop(void);	/* a clean stop: clears the start marker */
int	 notice_publish(json_t *fields, const char *source, json_t **notice,
	    json_t *errors, char *err, size_t);	/* 0 or an HTTP status */
int	 notice_update(const char *id, json_t *fields, json_t **notice,
	    json_t *errors, char *err, size_t);	/* 0 or an HTTP status */
json_t	*notice_list(uint64_t since_us, char *err, size_t);
int	 notice_publish_system(const char *kind, const char *severity,
	    const char *title, const char *body);	/* any thread */
int	 notice_publish_system_once(const char *dedup, const char *kind,
	    const char *severity, const char *title, const char *body);

char	*notice_meta_get(const char *name);
int	 notice_meta_put(const char *name, const char *value);
void	 notice_set_store(struct store *);

/* ctl-notice.c */
json_t	*ctl_notice_publish(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_notice_update(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_notice_list(const struct ctl_peer *, json_t *, char **);
json_t	*ctl_notice_deliveries(const struct ctl_peer *, json_t *, char **);

/* tenantctl-notice.c: tenantctl's parse and print of those commands */
int	 ctl_parse_notice_publish(int, char **, json_t *);
int	 ctl_parse_notice_update(int, char **, json_t *);
int	 ctl_parse_notice_list(int, char **, json_t *);
void	 ctl_print_notice(json_t *);
void	 ctl_print_notice_list(json_t *);
void	 ctl_print_notice_deliveries(json_t *);

/* notice-webhook.c */
struct store_batch;
void	 webhook_start(struct event_base *, struct store *, struct config *);
void	 webhook_reload(struct config *);
void	 webhook_stop(void);
int	 webhook_enqueue(struct store_batch *, json_t *notice,
	    const char *event);	/* in the notice's own batch */
void	 webhook_kick(void);	/* any thread: deliver what is due */
json_t	*webhook_deliveries_json(size_t limit);
char	*webhook_payload(const struct webhook_conf *, json_t *notice,
	    const char *event, const char *delivery_id, const char *tenant);
void	 webhook_signature(const void *secret, size_t secretlen,
	    int64_t t, const char *body, size_t len, char *out, size_t);

/*
 * auth-local.c: the development provider (auth.provider: local). An RSA
 * signing key kept in the state directory, the key set and OpenID
 * metadata it publishes, and the tokens tenantctl token mints with it.
 */
#define AUTH_LOCAL_AUDIENCE	"api://tenantd-local"
#define AUTH_LOCAL_SCOPE	"access_as_user"
#define AUTH_LOCAL_CLIENT	"tenantctl"	/* azp of minted tokens */
#define AUTH_LOCAL_KEY_FILE	"auth-local-key.pem"	/* in state_dir */
#define AUTH_LOCAL_TTL_MAX	(24 * 3600)
#define AUTH_LOCAL_USER_MAX	64

struct auth_local;

struct auth_local *auth_local_open(const char *state_dir,
		    const char *tenant_id, char *err, size_t errlen);
void		 auth_local_free(struct auth_local *);
const char	*auth_local_issuer(const struct auth_local *);
char		*auth_local_keyset(const struct auth_local *, size_t *len);
json_t		*auth_local_jwks(const struct auth_local *);
json_t		*auth_local_metadata(const struct auth_local *,
		    const char *base_url);
char		*auth_local_mint(const struct auth_local *,
		    const struct auth_conf *, const char *user, unsigned roles,
		    uint64_t ttl, char *err, size_t errlen);

/*
 * auth-store.c: what authentication keeps in the store and the keyring:
 * the last good JWKS (the jwks save/load hooks) and pseudonyms (the auth
 * pseudonymizer).
 */
#define AUTH_STORE_DB		"auth"		/* the store's database */
#define AUTH_STORE_JWKS_KEY	"jwks"

struct auth_store {
	struct store		*store;
	struct event_base	*base;		/* NULL: write synchronously */
};

void	 auth_store_save_jwks(const char *json, size_t len, void *arg);
char	*auth_store_load_jwks(size_t *len, void *arg);
int	 auth_store_pseudonym(const char *tid, const char *oid, char *out,
	    size_t outlen, void *keyring);

/* metrics.c: refused tokens, per event-loop thread. */
void	 metrics_auth_failure(size_t worker, enum auth_result);

/* daemon-auth.c: authentication as the running daemon has it. */
void		 daemon_auth_init(struct event_base *, struct config *);
void		 daemon_auth_free(void);
struct auth	*daemon_auth(void);
struct jwks	*daemon_jwks(void);
const struct auth_local *daemon_auth_local(void);	/* NULL: not local */
char		*daemon_auth_mint(const char *user, unsigned roles,
		    uint64_t ttl, char **error);

/*
 * events.c: usage events, their per-day aggregates and distinct-user
 * markers in the store (key layout at the top of events.c).
 */
#define API_USERS_DB		"users"	/* pseudonyms the vault knows */
#define EVENTS_DB		"events"
#define EVENTS_DAYS_DB		"event_days"
#define EVENTS_USERS_DB		"event_users"
#define EVENTS_BATCH_MAX	500
#define EVENTS_NAME_MAX		64
#define EVENTS_NAME_CHARS	"abcdefghijklmnopqrstuvwxyz0123456789._-"
#define EVENTS_PROPS_MAX	16
#define EVENTS_PROP_LEN		256
#define EVENTS_METRICS_MAX	16
#define EVENTS_PAST_MAX		(7 * 86400)	/* s a ts may lie back */
#define EVENTS_FUTURE_MAX	300		/* s a ts may lie ahead */
#define EVENTS_KEY_MAX		192

enum events_group { EVENTS_BY_NAME = 0, EVENTS_BY_APP, EVENTS_BY_DAY };

struct events_query {
	char		 from[11], to[11];	/* YYYY-MM-DD, inclusive */
	int		 group_by;		/* enum events_group */
	char		 app[EVENTS_NAME_MAX + 1];	/* "": all */
	char		 name[EVENTS_NAME_MAX + 1];
};

int	 events_looks_like_address(const char *);
int	 events_check(json_t *body, uint64_t now_us, json_t *errors);
void	 events_agg_merge(json_t *agg, json_t *delta);
struct store_batch *events_batch(struct store *, const char *pseudonym,
	    json_t *events);
int	 events_days(const char *from, const char *to, int64_t *, int64_t *);
json_t	*events_summary(struct store *, const struct events_query *,
	    int *status);
int	 events_subject_export(struct store *, const char *pseudonym,
	    json_t **events);
int	 events_subject_erase(struct store *, struct store_batch *,
	    const char *pseudonym, size_t *events, size_t *markers);

/*
 * settings.c: web-part settings by scope (tenant, site:ID, user) with
 * strong ETags; conditional writes are decided in the write transaction.
 */
#define SETTINGS_DB		"settings"
#define SETTINGS_VALUE_MAX	(64 * 1024)	/* bytes of compact JSON */
#define SETTINGS_KEY_MAX	128
#define SETTINGS_KEY_CHARS	"abcdefghijklmnopqrstuvwxyz" \
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
#define SETTINGS_SITE_MAX	128
#define SETTINGS_SITE_CHARS	SETTINGS_KEY_CHARS ","
#define SETTINGS_RKEY_MAX	(2 + SETTINGS_SITE_MAX + 1 + \
				SETTINGS_KEY_MAX + 1)
#define SETTINGS_ETAG_LEN	32	/* "16hex8hex" quoted, NUL */
#define SETTINGS_LIST_MAX	1000

struct settings_write {
	char		 key[SETTINGS_RKEY_MAX];	/* record key */
	json_t		*value;		/* NULL: delete */
	const char	*if_match;	/* header values, or NULL */
	const char	*if_none_match;
	/* results */
	char		*record;
	char		 etag[SETTINGS_ETAG_LEN];
	char		 updated_at[40];
	int		 existed;
	int		 status;	/* 404, 412 or 428 when refused */
};

int	 settings_key_ok(const char *);
int	 settings_scope_prefix(const char *scope, const char *pseudonym,
	    char *out, size_t outlen);
void	 settings_write_add(struct store_batch *, struct settings_write *);
void	 settings_write_clear(struct settings_write *);
int	 settings_get(struct store *, const char *key, json_t **record);
int	 settings_list(struct store *, const char *prefix, const char *after,
	    size_t limit, int values, json_t **items, int *more);
int	 settings_subject_erase(struct store *, struct store_batch *,
	    const char *pseudonym, size_t *n);

/*
 * shipper.c, shipper-*.c: log shipping to Azure Monitor Logs. One thread
 * with its own event base; a durable queue per stream in the store (ops,
 * usage) or a durable cursor over the audit log (audit); batches of at
 * most 1 MiB of JSON, gzipped; retries, splitting and a dead-letter store.
 */
#define SHIP_DB_QUEUE		"ship_queue"
#define SHIP_DB_DEAD		"ship_dead"
#define SHIP_DB_STATE		"ship_state"
#define SHIP_MAX_BATCH		(1024 * 1024)	/* the API's limit */
#define SHIP_RECORD_MAX		(256 * 1024)	/* one queued record */

int	 shipper_start(struct event_base *, const struct config *,
	    struct store *);	/* NULL store: a private one (interim) */
void	 shipper_stop(void);	/* joins the thread; queued data stays */
int	 shipper_enqueue(enum ship_stream_id, json_t *record);	/* steals */
void	 shipper_log_sink(enum log_level, const char *line, size_t len);
json_t	*shipper_status(void);		/* any thread */
int	 shipper_retry_dead(char *err, size_t errlen);	/* any thread */
int	 shipper_test_records(unsigned count, size_t pad, char *err,
	    size_t errlen);		/* any thread */
void	 shipper_metrics_render(struct evbuffer *);
const char *shipper_stream_name(enum ship_stream_id);
/* Where a queue-limit drop is announced; notices come with issue 5. */
void	 shipper_notice_dropped(enum ship_stream_id, uint64_t dropped,
	    uint64_t total);

/* shipper-dest.c: the request each API wants (pure; unit tested). */
struct ship_request {
	char		*url;
	char		*headers[8];	/* "Name: value", NULL-ended */
	size_t		 nheaders;
};
int	 ship_gzip(const void *in, size_t len, int level, void **out,
	    size_t *outlen);
int	 ship_legacy_signature(const char *workspace_id, const void *key,
	    size_t keylen, size_t content_length, const char *date,
	    char *out, size_t outlen);	/* "SharedKey ws:sig" */
void	 ship_rfc1123_date(char *, size_t, time_t);
int	 ship_request_build(const struct log_shipping_conf *,
	    const char *stream, const char *token, const void *key,
	    size_t keylen, size_t body_len, int gzipped,
	    struct ship_request *);
void	 ship_request_free(struct ship_request *);

/* shipper-cred.c: bearer tokens for the ingestion API. */
struct ship_cred;
typedef void (*ship_token_fn)(const char *token, const char *error,
    void *arg);
struct ship_cred *ship_cred_new(struct event_base *, struct httpc *,
	    const struct log_shipping_conf *, const char *tenant_id,
	    char *err, size_t errlen);
void	 ship_cred_free(struct ship_cred *);
/* Calls fn now with a cached token, or once the fetch ends. */
void	 ship_cred_get(struct ship_cred *, ship_token_fn, void *arg);
void	 ship_cred_cancel(struct ship_cred *, void *arg);
/* A 401 with token: refresh once, unless already refreshed since. */
int	 ship_cred_rejected(struct ship_cred *, const char *token);
uint64_t ship_cred_fetches(struct ship_cred *);
char	*ship_client_assertion(const char *client_id, const char *aud,
	    const char *cert_pem_path, const char *key_path, char *err,
	    size_t errlen);		/* a signed JWT, malloc'd */

#endif /* TENANTD_H */
