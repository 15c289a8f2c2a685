/*
 * notice-watch.c: the conditions tenantd reports as notices on its own:
 * a start after an unclean shutdown, a changed or expiring TLS
 * certificate, storage above 85 %; and the life of the notice subsystem
 * in the daemon.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <event2/event.h>

#include "tenantd.h"

#define MARKER_NAME		"tenantd.running"
#define TLS_EXPIRY_WARN		(14 * 86400)
#define CHECK_INTERVAL		(24 * 3600)	/* s, daily */
#define STORAGE_INTERVAL	300		/* s */
#define STORAGE_HIGH		85		/* %, then a notice */
#define STORAGE_LOW		80		/* %, then re-armed */

static struct {
	char		*marker;
	char		*certificate;	/* path in force */
	struct event	*daily, *storage;
	struct store	*st;
} watch;

/* --- unclean shutdown ---------------------------------------------------- */

static void
marker_check(const char *state_dir)
{
	int	fd;

	free(watch.marker);
	xasprintf(&watch.marker, "%s/%s", state_dir, MARKER_NAME);
	if (access(watch.marker, F_OK) == 0) {
		log_warnx("%s exists: the previous run did not stop cleanly",
		    watch.marker);
		notice_publish_system("incident", "warning",
		    "tenantd restarted after an unclean shutdown",
		    "The service stopped without a clean shutdown (a crash, "
		    "a kill or a power loss) and has started again. Data "
		    "written before the stop was committed durably; requests "
		    "in flight at that moment may have failed and can be "
		    "retried.");
	}
	fd = open(watch.marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		log_warn("creating %s", watch.marker);
		return;
	}
	dprintf(fd, "%ld\n", (long)getpid());
	fsync(fd);
	close(fd);
}

/* --- TLS certificate ----------------------------------------------------- */

/* SHA-256 of the certificate (hex) and its notAfter; -1 if unreadable. */
static int
cert_info(const char *path, char *fp, size_t fplen, time_t *not_after)
{
	unsigned char	 md[32];
	unsigned int	 mdlen = sizeof(md);
	struct tm	 tm;
	X509		*x;
	FILE		*f;
	size_t		 i;

	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return -1;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL || X509_digest(x, EVP_sha256(), md, &mdlen) != 1 ||
	    ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
		X509_free(x);
		return -1;
	}
	X509_free(x);
	for (i = 0; i < mdlen && 2 * i + 2 < fplen; i++)
		snprintf(fp + 2 * i, 3, "%02x", md[i]);
	*not_after = timegm(&tm);
	return 0;
}

static void
tls_changed_check(const char *path)
{
	char	fp[65], *seen, body[256];
	time_t	not_after;

	if (cert_info(path, fp, sizeof(fp), &not_after) == -1)
		return;
	seen = notice_meta_get("tls-certificate");
	if (seen != NULL && strcmp(seen, fp) != 0) {
		snprintf(body, sizeof(body), "The service now presents a new "
		    "TLS certificate (SHA-256 fingerprint %s).", fp);
		notice_publish_system("security", "info",
		    "TLS certificate changed", body);
	}
	if (seen == NULL || strcmp(seen, fp) != 0)
		notice_meta_put("tls-certificate", fp);
	free(seen);
}

static void
tls_expiry_check(const char *path)
{
	char	fp[65], dedup[80], body[512], when[40];
	time_t	not_after, now = time(NULL);

	if (cert_info(path, fp, sizeof(fp), &not_after) == -1 ||
	    not_after - now > TLS_EXPIRY_WARN)
		return;
	format_iso8601(when, sizeof(when), (uint64_t)not_after * 1000000);
	snprintf(dedup, sizeof(dedup), "tls-expiry:%s", fp);
	snprintf(body, sizeof(body), "The TLS certificate (SHA-256 "
	    "fingerprint %s) %s %s. Install a renewed certificate and reload "
	    "the service.", fp, not_after > now ? "expires on" :
	    "expired on", when);
	notice_publish_system_once(dedup, "security", not_after > now ?
	    "warning" : "critical", "TLS certificate expires soon", body);
}

static void
daily_cb(evutil_socket_t fd, short ev, void *arg)
{
	tls_expiry_check(watch.certificate);
}

static const char *
tls_certificate(const struct config *conf)
{
	size_t	i;

	for (i = 0; i < conf->nlisten; i++)
		if (conf->listen[i].tls)
			return conf->tls.certificate;
	return NULL;
}

/* --- storage ------------------------------------------------------------ */

/* Once when use passes 85 % of storage.max_size; again after < 80 %. */
static void
storage_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct store_stats	 ss;
	char			*high, body[256];
	uint64_t		 pct;

	if (watch.st == NULL || store_stats(watch.st, &ss) != STORE_OK ||
	    ss.max_size == 0)
		return;
	pct = ss.used * 100 / ss.max_size;
	high = notice_meta_get("storage-high");
	if (pct >= STORAGE_HIGH && (high == NULL || strcmp(high, "1") != 0)) {
		snprintf(body, sizeof(body), "The service's storage is %llu %% "
		    "full (%llu of %llu bytes). Writes will fail when it is "
		    "full; raise storage.max_size or free space.",
		    (unsigned long long)pct, (unsigned long long)ss.used,
		    (unsigned long long)ss.max_size);
		if (notice_publish_system("incident", "warning",
		    "Storage above 85 %", body) == 0)
			notice_meta_put("storage-high", "1");
	} else if (pct < STORAGE_LOW && high != NULL && strcmp(high, "1") == 0)
		notice_meta_put("storage-high", "0");
	free(high);
}

/* --- life ---------------------------------------------------------------- */

void
notice_start(struct event_base *base, struct store *st,
    struct config *conf)
{
	struct timeval	tv = { CHECK_INTERVAL, 0 };
	const char	*cert = tls_certificate(conf);

	notice_set_store(st);
	webhook_start(base, st, conf);
	marker_check(conf->state_dir);
	watch.certificate = cert != NULL ? xstrdup(cert) : NULL;
	tls_changed_check(watch.certificate);
	tls_expiry_check(watch.certificate);
	watch.daily = event_new(base, -1, EV_PERSIST, daily_cb, NULL);
	event_add(watch.daily, &tv);
	watch.st = st;
	tv.tv_sec = STORAGE_INTERVAL;
	watch.storage = event_new(base, -1, EV_PERSIST, storage_cb, NULL);
	event_add(watch.storage, &tv);
	storage_cb(-1, 0, NULL);
}

/* After a reload was applied: what changed that customers must hear of. */
void
notice_reload(const struct config *old, struct config *conf)
{
	const char	*cert = tls_certificate(conf);

	webhook_reload(conf);
	free(watch.certificate);
	watch.certificate = cert != NULL ? xstrdup(cert) : NULL;
	tls_changed_check(watch.certificate);
	tls_expiry_check(watch.certificate);
}

void
notice_stop(void)
{
	if (watch.daily != NULL)
		event_free(watch.daily);
	if (watch.storage != NULL)
		event_free(watch.storage);
	watch.daily = watch.storage = NULL;
	watch.st = NULL;
	webhook_stop();
	notice_set_store(NULL);
	if (watch.marker != NULL && unlink(watch.marker) == -1 &&
	    errno != ENOENT)
		log_warn("removing %s", watch.marker);
	free(watch.marker);
	free(watch.certificate);
	watch.marker = watch.certificate = NULL;
}
