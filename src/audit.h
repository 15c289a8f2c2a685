/*
 * audit.h: internals shared by audit.c (records, the chain), audit-verify.c
 * and audit-export.c: the stored record layout and a parsed view of it.
 * Nothing else includes it.
 */
#ifndef AUDIT_H
#define AUDIT_H

#define AUDIT_CHAIN_PREFIX	"tenantd audit chain v1\n"
#define AUDIT_CHECKPOINT_PREFIX	"tenantd audit checkpoint v1\n"
#define AUDIT_ANCHOR_PREFIX	"tenantd audit anchor v1\n"
#define AUDIT_KEY_LEN		8	/* seq, big-endian; 0 is the anchor */

/* A growable byte buffer. */
struct abuf {
	char	*p;
	size_t	 len, cap;
};

void	 abuf_add(struct abuf *, const void *, size_t);
void	 abuf_reserve(struct abuf *, size_t);
void	 abuf_str(struct abuf *, const char *);
void	 abuf_printf(struct abuf *, const char *, ...) PRINTFLIKE(2, 3);
void	 abuf_json_str(struct abuf *, const char *, size_t);
void	 abuf_free(struct abuf *);

/* The top-level fields of a canonical record, in canonical (key) order. */
enum audit_field {
	AF_ACTION,
	AF_ACTOR,
	AF_ACTOR_ROLES,
	AF_CLIENT_APP,
	AF_DETAILS,
	AF_OUTCOME,
	AF_REQUEST_ID,
	AF_SEQ,
	AF_SOURCE,
	AF_STATUS,
	AF_TARGET,
	AF_TS,
	AF_COUNT,
};

/* Raw JSON tokens of a record (strings with their quotes). */
struct audit_view {
	const char	*tok[AF_COUNT];
	size_t		 len[AF_COUNT];
	uint64_t	 seq;
};

extern const char *const audit_field_names[AF_COUNT];

int	 audit_parse(const char *, size_t, struct audit_view *);
size_t	 audit_unquote(const char *tok, size_t len, char *out);
int	 audit_is(const struct audit_view *, enum audit_field, const char *);
int	 audit_detail_str(const struct audit_view *, const char *key,
	    char *out, size_t outlen);
uint64_t audit_key_seq(const void *key);
void	 audit_seq_key(uint64_t, uint8_t *key);
void	 audit_chain(const uint8_t *prev, const void *canon, size_t len,
	    uint8_t *out);
void	 audit_hex(const uint8_t *, size_t, char *out);
int	 audit_unhex(const char *, size_t, uint8_t *out, size_t outlen);
void	 audit_signed_message(struct abuf *, const char *prefix,
	    const char *seq_key, uint64_t seq, const char *head_hex,
	    const char *ts);
int	 audit_sig_ok(const uint8_t *pub, const struct abuf *msg,
	    const char *sig_hex);
void	 audit_render(const struct audit_record *, struct abuf *pre,
	    struct abuf *mid);
void	 audit_deny_limits(uint64_t per_source, uint64_t total);
void	 audit_deny_flush(struct event_base *, int all);
const uint8_t	*audit_pub(void);
int	 audit_member(const char *obj, size_t len, const char *key,
	    const char **tok, size_t *toklen);
struct store	*audit_store(void);
struct keyring	*audit_keyring(void);

#ifdef AUDIT_TESTING
extern int	audit_test_fail;	/* fail the next N write hooks */
#endif

#endif /* AUDIT_H */
