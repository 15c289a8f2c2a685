/*
 * license.c: the vendor license: its document schema and canonical form,
 * the Ed25519 check against the configured vendor keys, the one stored
 * copy, and the state (valid, grace, expired) premium features ask about.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "tenantd.h"

#define LICENSE_KEY		"current"
#define SIG_B64_LEN		88	/* 64 bytes, padded base64 */
#define SIG_LEN			64

static struct {
	pthread_mutex_t	 mtx;
	struct store	*st;
	EVP_PKEY	**keys;
	size_t		 nkeys;
	uint64_t	 grace;		/* s */
	json_t		*license;	/* the verified "license" */
	int64_t		 valid_from, valid_until;
} lic = { .mtx = PTHREAD_MUTEX_INITIALIZER };

static const char *const state_names[] = {
	/* In the order of enum license_state. */
	"unlicensed", "valid", "grace", "expired",
};

/* --- the document ---------------------------------------------------- */

#define NAME_CHARS	"abcdefghijklmnopqrstuvwxyz0123456789._-"
#define ID_CHARS	"ABCDEFGHIJKLMNOPQRSTUVWXYZ" NAME_CHARS
#define B64_CHARS	"ABCDEFGHIJKLMNOPQRSTUVWXYZ" \
			"abcdefghijklmnopqrstuvwxyz0123456789+/="

static int
check_guid(json_t *v, char *detail, size_t len)
{
	const char	*s = json_string_value(v);
	size_t		 i;

	for (i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) != (s[i] == '-'))
			break;
	if (i == 36 && s[36] == '\0')
		return 0;
	snprintf(detail, len, "must be a GUID like "
	    "72f988bf-86f1-41af-91ab-2d7cd011db47");
	return -1;
}

static const struct jin_field feature_field = {
	"feature", JIN_STRING, .min = 1, .max = 64, .charset = NAME_CHARS,
	.charset_name = "a-z 0-9 . _ -"
};

static const struct jin_field license_fields[] = {
	{ "license_id", JIN_STRING, JIN_REQUIRED, .min = 1, .max = 64,
	    .charset = ID_CHARS, .charset_name = "A-Z a-z 0-9 . _ -" },
	{ "tenant_id", JIN_STRING, JIN_REQUIRED, .min = 36, .max = 36,
	    .charset = "0123456789abcdefABCDEF-",
	    .charset_name = "hexadecimal digits and -", .check = check_guid },
	{ "plan", JIN_STRING, JIN_REQUIRED, .min = 1, .max = 32,
	    .charset = NAME_CHARS, .charset_name = "a-z 0-9 . _ -" },
	{ "features", JIN_ARRAY, JIN_REQUIRED, .min = 0,
	    .max = LICENSE_FEATURES_MAX, .items = &feature_field },
	{ "seats", JIN_INT, JIN_REQUIRED, .min = 0, .max = 1000000000 },
	{ "valid_from", JIN_TIME, JIN_REQUIRED, .min = 0 },
	{ "valid_until", JIN_TIME, JIN_REQUIRED, .min = 0 },
};
static const struct jin_schema license_schema = {
	license_fields, nitems(license_fields), 0
};

static const struct jin_field document_fields[] = {
	{ "license", JIN_OBJECT, JIN_REQUIRED, .sub = &license_schema },
	{ "signature", JIN_STRING, JIN_REQUIRED, .min = SIG_B64_LEN,
	    .max = SIG_B64_LEN, .charset = B64_CHARS,
	    .charset_name = "base64 characters" },
};
static const struct jin_schema document_schema = {
	document_fields, nitems(document_fields), 0
};

/*
 * The signed bytes: the "license" object as compact JSON (no whitespace),
 * members sorted by name. The schema keeps every string within printable
 * ASCII, so no escaping rule can differ between encoders.
 */
char *
license_canonical(json_t *license, size_t *len)
{
	char	*s;

	s = json_dumps(license, JSON_COMPACT | JSON_SORT_KEYS);
	if (s != NULL && len != NULL)
		*len = strlen(s);
	return s;
}

/* The shape: 400 problems. */
int
license_check_shape(json_t *doc, json_t *errors)
{
	json_t	*l;
	int64_t	 from, until;

	if (jin_check(doc, &document_schema, "", errors) > 0)
		return -1;
	l = json_object_get(doc, "license");
	jin_time_parse(json_string_value(json_object_get(l, "valid_from")),
	    &from);
	jin_time_parse(json_string_value(json_object_get(l, "valid_until")),
	    &until);
	if (until <= from) {
		jin_error(errors, "/license/valid_until", "must be later than "
		    "valid_from");
		return -1;
	}
	return 0;
}

static int
signature_decode(const char *b64, unsigned char *sig)
{
	unsigned char	buf[SIG_LEN + 3];

	if (strlen(b64) != SIG_B64_LEN || strcmp(b64 + 86, "==") != 0 ||
	    EVP_DecodeBlock(buf, (const unsigned char *)b64, SIG_B64_LEN) !=
	    SIG_LEN + 2)
		return -1;
	memcpy(sig, buf, SIG_LEN);
	return 0;
}

/* 1 if any trusted key verifies sig over msg. Caller holds lic.mtx. */
static int
signature_trusted(const unsigned char *sig, const char *msg, size_t len)
{
	EVP_MD_CTX	*md;
	size_t		 i;
	int		 ok = 0;

	for (i = 0; i < lic.nkeys && !ok; i++) {
		if ((md = EVP_MD_CTX_new()) == NULL)
			break;
		ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL,
		    lic.keys[i]) == 1 && EVP_DigestVerify(md, sig, SIG_LEN,
		    (const unsigned char *)msg, len) == 1;
		EVP_MD_CTX_free(md);
	}
	return ok;
}

/* Tenant and signature: 422 problems. Caller holds lic.mtx. */
static int
license_check_trust(json_t *doc, const char *tenant_id, json_t *errors)
{
	json_t		*l = json_object_get(doc, "license");
	unsigned char	 sig[SIG_LEN];
	char		*canon;
	size_t		 len;
	int		 ok;

	if (strcasecmp(json_string_value(json_object_get(l, "tenant_id")),
	    tenant_id) != 0) {
		jin_error(errors, "/license/tenant_id", "this license is for "
		    "another tenant");
		return -1;
	}
	if (lic.nkeys == 0) {
		jin_error(errors, "/signature", "no vendor keys are trusted "
		    "(license.trusted_keys is empty)");
		return -1;
	}
	if (signature_decode(json_string_value(json_object_get(doc,
	    "signature")), sig) == -1) {
		jin_error(errors, "/signature", "is not 64 bytes of base64");
		return -1;
	}
	if ((canon = license_canonical(l, &len)) == NULL)
		return -1;
	ok = signature_trusted(sig, canon, len);
	free(canon);
	if (!ok)
		jin_error(errors, "/signature", "does not verify against any "
		    "trusted vendor key");
	return ok ? 0 : -1;
}

/* --- state ----------------------------------------------------------- */

enum license_state
license_state_at(int64_t now, int64_t from, int64_t until, uint64_t grace)
{
	if (now < from)
		return LICENSE_UNLICENSED;
	if (now < until)
		return LICENSE_VALID;
	if ((uint64_t)(now - until) < grace)
		return LICENSE_GRACE;
	return LICENSE_EXPIRED;
}

const char *
license_state_name(enum license_state state)
{
	return state_names[state];
}

/* Caller holds lic.mtx. */
static enum license_state
current_state(int64_t now)
{
	if (lic.license == NULL)
		return LICENSE_UNLICENSED;
	return license_state_at(now, lic.valid_from, lic.valid_until,
	    lic.grace);
}

static int64_t
days_until(int64_t now, int64_t t)
{
	return t > now ? (t - now) / 86400 : 0;
}

static json_t *
status_json_locked(int64_t now)
{
	enum license_state	 state = current_state(now);
	json_t			*l = lic.license, *j, *none;
	char			 grace_end[40];
	int64_t			 end;

	j = json_pack("{s:s}", "state", state_names[state]);
	if (l == NULL) {
		none = json_pack("{s:n, s:[], s:n, s:n, s:I}", "plan",
		    "features", "valid_until", "grace_until", "days_left",
		    (json_int_t)0);
		json_object_update(j, none);
		json_decref(none);
		return j;
	}
	end = lic.valid_until + (int64_t)lic.grace;
	format_iso8601(grace_end, sizeof(grace_end), (uint64_t)end * 1000000);
	json_object_set(j, "license_id", json_object_get(l, "license_id"));
	json_object_set(j, "plan", json_object_get(l, "plan"));
	json_object_set_new(j, "features", json_deep_copy(
	    json_object_get(l, "features")));
	json_object_set(j, "seats", json_object_get(l, "seats"));
	json_object_set(j, "valid_from", json_object_get(l, "valid_from"));
	json_object_set(j, "valid_until", json_object_get(l, "valid_until"));
	json_object_set_new(j, "grace_until", json_string(grace_end));
	json_object_set_new(j, "days_left", json_integer(
	    state == LICENSE_VALID ? days_until(now, lic.valid_until) :
	    state == LICENSE_GRACE ? days_until(now, end) : 0));
	return j;
}

json_t *
license_status_json(void)
{
	json_t	*j;

	pthread_mutex_lock(&lic.mtx);
	j = status_json_locked((int64_t)time(NULL));
	pthread_mutex_unlock(&lic.mtx);
	return j;
}

int
license_feature_enabled(const char *name)
{
	enum license_state	 state;
	json_t			*f;
	size_t			 i;
	int			 on = 0;

	pthread_mutex_lock(&lic.mtx);
	state = current_state((int64_t)time(NULL));
	if (state == LICENSE_VALID || state == LICENSE_GRACE)
		json_array_foreach(json_object_get(lic.license, "features"),
		    i, f)
			if (strcmp(json_string_value(f), name) == 0)
				on = 1;
	pthread_mutex_unlock(&lic.mtx);
	return on;
}

/* Caller holds lic.mtx; takes a reference to license. */
static void
current_set(json_t *license)
{
	json_decref(lic.license);
	lic.license = license;
	if (license == NULL)
		return;
	jin_time_parse(json_string_value(json_object_get(license,
	    "valid_from")), &lic.valid_from);
	jin_time_parse(json_string_value(json_object_get(license,
	    "valid_until")), &lic.valid_until);
}

/* --- install and load ------------------------------------------------ */

/*
 * Checks doc (the whole {"license", "signature"} body) and, when valid,
 * stores it and makes it current. Returns 0, or the HTTP status of the
 * problem (400, 422, 503, 507) with errors or err filled in.
 */
int
license_install(json_t *doc, const char *tenant_id, json_t *errors,
    char *err, size_t errlen)
{
	struct store_batch	*batch;
	char			*text;
	int			 rv;

	if (license_check_shape(doc, errors) == -1)
		return 400;
	pthread_mutex_lock(&lic.mtx);
	if (license_check_trust(doc, tenant_id, errors) == -1) {
		pthread_mutex_unlock(&lic.mtx);
		return 422;
	}
	if (lic.st == NULL) {
		pthread_mutex_unlock(&lic.mtx);
		snprintf(err, errlen, "the store is not available");
		return 503;
	}
	text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	batch = store_batch_new(lic.st);
	store_batch_put(batch, LICENSE_DB, LICENSE_KEY, strlen(LICENSE_KEY),
	    text, strlen(text));
	free(text);
	if ((rv = store_write(batch)) == STORE_OK)
		current_set(json_incref(json_object_get(doc, "license")));
	pthread_mutex_unlock(&lic.mtx);
	if (rv == STORE_OK)
		return 0;
	snprintf(err, errlen, "storing the license failed: %s",
	    store_strerror(rv));
	return rv == STORE_FULL ? 507 : 503;
}

/* Re-checks the stored license against the keys now trusted. */
static void
license_load_locked(const char *tenant_id)
{
	json_t	*doc, *errors;
	void	*val;
	size_t	 len;
	int	 rv;

	current_set(NULL);
	if (lic.st == NULL)
		return;
	rv = store_get(lic.st, LICENSE_DB, LICENSE_KEY, strlen(LICENSE_KEY),
	    &val, &len);
	if (rv == STORE_NOTFOUND)
		return;
	if (rv != STORE_OK) {
		log_warnx("license: reading the stored license failed: %s",
		    store_strerror(rv));
		return;
	}
	errors = jin_errors();
	doc = json_loadb(val, len, JSON_REJECT_DUPLICATES, NULL);
	free(val);
	if (doc != NULL && license_check_shape(doc, errors) == 0 &&
	    license_check_trust(doc, tenant_id, errors) == 0)
		current_set(json_incref(json_object_get(doc, "license")));
	else
		log_warnx("license: the stored license no longer verifies "
		    "against license.trusted_keys; running unlicensed");
	json_decref(doc);
	json_decref(errors);
}

/* --- vendor keys ----------------------------------------------------- */

/* A key inline ("-----BEGIN PUBLIC KEY-----...") or a PEM file path. */
EVP_PKEY *
license_key_load(const char *ref, char *err, size_t errlen)
{
	EVP_PKEY	*pkey = NULL;
	BIO		*bio;

	if (strncmp(ref, "-----BEGIN", 10) == 0)
		bio = BIO_new_mem_buf(ref, -1);
	else
		bio = BIO_new_file(ref, "r");
	if (bio == NULL) {
		snprintf(err, errlen, "cannot read %s", ref);
		return NULL;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		snprintf(err, errlen, "%s is not an Ed25519 public key in PEM",
		    strncmp(ref, "-----BEGIN", 10) == 0 ? "the inline key" :
		    ref);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

static void
keys_free_locked(void)
{
	size_t	i;

	for (i = 0; i < lic.nkeys; i++)
		EVP_PKEY_free(lic.keys[i]);
	free(lic.keys);
	lic.keys = NULL;
	lic.nkeys = 0;
}

static void
keys_load_locked(const struct license_conf *lc)
{
	char	err[256];
	size_t	i;

	keys_free_locked();
	lic.keys = xcalloc(lc->ntrusted_keys + 1, sizeof(*lic.keys));
	for (i = 0; i < lc->ntrusted_keys; i++) {
		if ((lic.keys[lic.nkeys] = license_key_load(
		    lc->trusted_keys[i], err, sizeof(err))) == NULL)
			log_warnx("license.trusted_keys[%zu]: %s", i, err);
		else
			lic.nkeys++;
	}
	lic.grace = lc->grace;
}

/* --- life ------------------------------------------------------------ */

void
license_start(struct store *st, const struct config *conf)
{
	pthread_mutex_lock(&lic.mtx);
	lic.st = st;
	keys_load_locked(&conf->license);
	license_load_locked(conf->tenant_id);
	pthread_mutex_unlock(&lic.mtx);
}

void
license_reload(const struct config *conf)
{
	license_start(lic.st, conf);
}

void
license_stop(void)
{
	pthread_mutex_lock(&lic.mtx);
	keys_free_locked();
	current_set(NULL);
	lic.st = NULL;
	pthread_mutex_unlock(&lic.mtx);
}
