/*
 * auth-store.c: authentication's use of the store and the keyring: the
 * last good signing-key set survives a restart (jwks save/load hooks),
 * and principals get their pseudonym from the keyring.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "tenantd.h"

static void
auth_store_saved(int status, void *arg)
{
	if (status != STORE_OK)
		log_warnx("auth: saving the signing keys in the store failed: "
		    "%s", store_strerror(status));
}

/* jwks_save_fn: after every successful refresh, on the jwks thread. */
void
auth_store_save_jwks(const char *json, size_t len, void *arg)
{
	struct auth_store	*as = arg;
	struct store_batch	*batch;
	int			 rv;

	if (as == NULL || as->store == NULL)
		return;
	batch = store_batch_new(as->store);
	if ((rv = store_batch_put(batch, AUTH_STORE_DB, AUTH_STORE_JWKS_KEY,
	    strlen(AUTH_STORE_JWKS_KEY), json, len)) != STORE_OK) {
		store_batch_free(batch);
		auth_store_saved(rv, NULL);
		return;
	}
	if (as->base == NULL)
		rv = store_write(batch);
	else
		rv = store_submit(batch, as->base, auth_store_saved, NULL);
	if (rv != STORE_OK)
		auth_store_saved(rv, NULL);
}

/* jwks_load_fn: at start; NULL when nothing was saved yet. */
char *
auth_store_load_jwks(size_t *len, void *arg)
{
	struct auth_store	*as = arg;
	void			*val = NULL;
	char			*json;
	size_t			 vallen = 0;
	int			 rv;

	if (as == NULL || as->store == NULL)
		return NULL;
	rv = store_get(as->store, AUTH_STORE_DB, AUTH_STORE_JWKS_KEY,
	    strlen(AUTH_STORE_JWKS_KEY), &val, &vallen);
	if (rv != STORE_OK) {
		if (rv != STORE_NOTFOUND)
			log_warnx("auth: reading the stored signing keys "
			    "failed: %s", store_strerror(rv));
		return NULL;
	}
	json = xstrndup(val, vallen);	/* NUL-terminated for the parser */
	free(val);
	*len = vallen;
	return json;
}

static int
auth_store_lower(const char *in, char *out, size_t len)
{
	size_t	i;

	for (i = 0; in[i] != '\0'; i++) {
		if (i + 1 >= len)
			return -1;
		out[i] = tolower((unsigned char)in[i]);
	}
	out[i] = '\0';
	return 0;
}

/*
 * auth_pseudonym_fn; keyring is the daemon's keyring. GUIDs compare
 * without case, so they are lowercased: one user, one pseudonym.
 */
int
auth_store_pseudonym(const char *tid, const char *oid, char *out,
    size_t outlen, void *keyring)
{
	char	pseudonym[KEYRING_PSEUDONYM_LEN], t[64], o[64];

	if (keyring == NULL || outlen < sizeof(pseudonym) ||
	    auth_store_lower(tid, t, sizeof(t)) == -1 ||
	    auth_store_lower(oid, o, sizeof(o)) == -1 ||
	    keyring_pseudonym(keyring, t, o, pseudonym) != KEYRING_OK)
		return -1;
	memcpy(out, pseudonym, sizeof(pseudonym));
	return 0;
}
