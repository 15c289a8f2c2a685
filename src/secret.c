/*
 * secret.c: secret references (a file path, or credential:NAME under
 * systemd's $CREDENTIALS_DIRECTORY), never inline values, and the checks
 * that keep secret files private to the daemon.
 */
#include "config.h"

#include <sys/stat.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "tenantd.h"

#define CREDENTIAL_PREFIX	"credential:"
#define CREDENTIAL_NAME_MAX	64

static int
credential_name_ok(const char *name)
{
	size_t	len = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789_.-");

	return len > 0 && len <= CREDENTIAL_NAME_MAX && name[len] == '\0' &&
	    strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int
credential_path(const char *name, char **path, char *err, size_t errlen)
{
	const char	*dir;

	if (!credential_name_ok(name)) {
		snprintf(err, errlen, "credential name must be 1 to %d of "
		    "A-Z a-z 0-9 _ . - (and not . or ..)", CREDENTIAL_NAME_MAX);
		return -1;
	}
	if ((dir = getenv("CREDENTIALS_DIRECTORY")) == NULL || *dir == '\0') {
		snprintf(err, errlen, "credential:%s needs "
		    "$CREDENTIALS_DIRECTORY, which is not set (use "
		    "LoadCredential= in the systemd unit)", name);
		return -1;
	}
	xasprintf(path, "%s/%s", dir, name);
	return 0;
}

/* Refuses what looks like a secret written inline, without echoing it. */
static int
path_ref_ok(const char *ref, char *err, size_t errlen)
{
	const char	*p;
	size_t		 scheme;

	if (*ref == '\0') {
		snprintf(err, errlen, "secret reference is empty");
		return 0;
	}
	for (p = ref; *p != '\0' && !iscntrl((unsigned char)*p); p++)
		;
	if (*p != '\0' || strncmp(ref, "-----", 5) == 0) {
		snprintf(err, errlen, "inline secrets are not allowed; give a "
		    "file path or credential:NAME");
		return 0;
	}
	scheme = strspn(ref, "abcdefghijklmnopqrstuvwxyz");
	if (scheme > 0 && ref[scheme] == ':' && ref[scheme + 1] != '/') {
		snprintf(err, errlen, "unknown secret scheme '%.*s:'; give a "
		    "file path or credential:NAME", (int)MINIMUM(scheme, 32),
		    ref);
		return 0;
	}
	return 1;
}

int
secret_resolve(const char *ref, char **path, char *err, size_t errlen)
{
	size_t	plen = strlen(CREDENTIAL_PREFIX);

	*path = NULL;
	if (strncmp(ref, CREDENTIAL_PREFIX, plen) == 0)
		return credential_path(ref + plen, path, err, errlen);
	if (!path_ref_ok(ref, err, errlen))
		return -1;
	*path = xstrdup(ref);
	return 0;
}

static int
secret_check_stat(const char *path, const struct stat *st, char *err,
    size_t errlen)
{
	const char	*what = NULL;

	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "key file %s is not a regular file",
		    path);
		return -1;
	}
	if (st->st_mode & (S_IRGRP | S_IROTH))
		what = "readable";
	else if (st->st_mode & (S_IWGRP | S_IWOTH))
		what = "writable";
	if (what != NULL) {
		snprintf(err, errlen, "key file %s is %s by group or others "
		    "(mode %04o); chmod 600 it", path, what,
		    (unsigned)(st->st_mode & 07777));
		return -1;
	}
	if (st->st_uid != geteuid() && st->st_uid != 0) {
		snprintf(err, errlen, "key file %s is owned by uid %u, not by "
		    "uid %u or root", path, (unsigned)st->st_uid,
		    (unsigned)geteuid());
		return -1;
	}
	return 0;
}

int
secret_check_file(const char *path, char *err, size_t errlen)
{
	struct stat	st;

	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "key file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return secret_check_stat(path, &st, err, errlen);
}

static ssize_t
read_all(int fd, unsigned char *buf, size_t len)
{
	size_t	off = 0;
	ssize_t	n;

	while (off < len) {
		n = read(fd, buf + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		off += n;
	}
	return (ssize_t)off;
}

/*
 * Reads at most len bytes of a secret file, checking the open file again
 * so a swap after secret_check_file is caught. A longer file is an error.
 * The buffer is wiped on failure; the caller wipes it after use.
 */
ssize_t
secret_read(const char *path, void *buf, size_t len, char *err, size_t errlen)
{
	struct stat	st;
	unsigned char	extra;
	ssize_t		n = -1;
	int		fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(err, errlen, "key file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1)
		snprintf(err, errlen, "key file %s: %s", path,
		    strerror(errno));
	else if (secret_check_stat(path, &st, err, errlen) == 0) {
		if ((n = read_all(fd, buf, len)) == -1)
			snprintf(err, errlen, "key file %s: %s", path,
			    strerror(errno));
		else if ((size_t)n == len && read_all(fd, &extra, 1) != 0) {
			snprintf(err, errlen, "key file %s is larger than %zu "
			    "bytes", path, len);
			n = -1;
		}
	}
	close(fd);
	if (n == -1)
		OPENSSL_cleanse(buf, len);
	return n;
}
