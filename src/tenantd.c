/*
 * tenantd.c: the daemon's life: options, configuration, start-up, signals
 * as libevent events, all-or-nothing reload on SIGHUP and graceful
 * shutdown on SIGTERM/SIGINT.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "http.h"

static struct {
	const char		*conf_path;
	struct config		*conf;
	struct event_base	*base;
	struct event		*ev_term, *ev_int, *ev_hup, *ev_watchdog;
	uint64_t		 started_us;
	int			 debug;
	int			 stopping;
} tenantd;

static void DEAD
usage(void)
{
	fprintf(stderr, "usage: tenantd [-dfnV] [-c file]\n");
	exit(2);
}

const struct config *
daemon_config(void)
{
	return tenantd.conf;
}

/* Print each collected configuration error on stderr, or log them. */
static void
report_errors(const char *errors, int to_log)
{
	const char	*line = errors, *nl;

	if (!to_log) {
		fputs(errors, stderr);
		return;
	}
	while (*line != '\0') {
		nl = strchr(line, '\n');
		log_warnx("%.*s", (int)(nl ? nl - line : (long)strlen(line)),
		    line);
		if (nl == NULL)
			break;
		line = nl + 1;
	}
}

static SSL_CTX *
tls_setup(const struct config *conf, char *err, size_t errlen)
{
	size_t	i;

	for (i = 0; i < conf->nlisten; i++)
		if (conf->listen[i].tls)
			break;
	if (i == conf->nlisten)
		return NULL;
	if (conf->tls.self_signed &&
	    tls_self_signed_ensure(&conf->tls, err, errlen) == -1)
		return NULL;
	return tls_ctx_new(&conf->tls, err, errlen);
}

static int
uses_tls(const struct config *conf)
{
	size_t	i;

	for (i = 0; i < conf->nlisten; i++)
		if (conf->listen[i].tls)
			return 1;
	return 0;
}

int
daemon_check_config(char **errors)
{
	struct config	*conf;

	*errors = NULL;
	if ((conf = conf_load(tenantd.conf_path, 0, errors)) == NULL)
		return -1;
	conf_unref(conf);
	return 0;
}

/* Parse into a fresh config; swap only when all of it is valid. */
int
daemon_reload(char **errors)
{
	struct config	*conf;
	SSL_CTX		*ctx = NULL;
	char		 err[512];

	*errors = NULL;
	notify_reloading();
	if ((conf = conf_load(tenantd.conf_path, 0, errors)) == NULL)
		goto fail;
	if (uses_tls(conf) && (ctx = tls_setup(conf, err, sizeof(err))) ==
	    NULL) {
		xasprintf(errors, "%s: %s\n", tenantd.conf_path, err);
		conf_unref(conf);
		goto fail;
	}
	if (http_listeners_changed(conf))
		log_warnx("reload: listener changes take effect at the next "
		    "restart; the current listeners stay");
	http_reconfigure(conf, ctx);
	daemon_store_reload(conf);
	SSL_CTX_free(ctx);		/* the workers hold their references */
	license_reload(conf);
	notice_reload(tenantd.conf, conf);
	conf_unref(tenantd.conf);
	tenantd.conf = conf;
	if (!tenantd.debug)
		log_setlevel(conf->log_level);
	log_info("configuration reloaded from %s", tenantd.conf_path);
	notify_ready("serving");
	return 0;
fail:
	log_warnx("reload failed; the previous configuration stays in use");
	report_errors(*errors, 1);
	notify_ready("serving; last reload failed");
	return -1;
}

json_t *
daemon_status(void)
{
	int	 ready;
	json_t	*checks = ready_json(&ready);

	return json_pack("{s:s, s:i, s:I, s:s, s:o, s:b, s:o}",
	    "version", TENANTD_VERSION, "pid", (int)getpid(),
	    "uptime_s", (json_int_t)((now_usec() - tenantd.started_us) /
	    1000000), "config", tenantd.conf_path,
	    "listeners", http_listeners_json(), "ready", ready,
	    "checks", checks);
}

static void
shutdown_done(void *arg)
{
	event_base_loopbreak(tenantd.base);
}

static void
sig_stop_cb(evutil_socket_t sig, short ev, void *arg)
{
	if (tenantd.stopping) {
		log_info("second signal: stopping now");
		event_base_loopbreak(tenantd.base);
		return;
	}
	tenantd.stopping = 1;
	log_info("%s received; finishing requests under way",
	    sig == SIGTERM ? "SIGTERM" : "SIGINT");
	notify_stopping();
	http_shutdown(shutdown_done, NULL);
}

static void
sig_hup_cb(evutil_socket_t sig, short ev, void *arg)
{
	char	*errors;

	if (tenantd.stopping)
		return;
	log_info("SIGHUP received; reloading %s", tenantd.conf_path);
	audit_signal_reload(daemon_reload(&errors) == 0);
	free(errors);
}

static void
watchdog_cb(evutil_socket_t fd, short ev, void *arg)
{
	notify_watchdog();
}

static void
watchdog_start(void)
{
	uint64_t	usec;
	struct timeval	tv;

	if (!notify_watchdog_usec(&usec))
		return;
	usec /= 2;
	tv.tv_sec = usec / 1000000;
	tv.tv_usec = usec % 1000000;
	tenantd.ev_watchdog = event_new(tenantd.base, -1, EV_PERSIST,
	    watchdog_cb, NULL);
	event_add(tenantd.ev_watchdog, &tv);
}

static void
signals_start(void)
{
	signal(SIGPIPE, SIG_IGN);
	tenantd.ev_term = evsignal_new(tenantd.base, SIGTERM, sig_stop_cb,
	    NULL);
	tenantd.ev_int = evsignal_new(tenantd.base, SIGINT, sig_stop_cb, NULL);
	tenantd.ev_hup = evsignal_new(tenantd.base, SIGHUP, sig_hup_cb, NULL);
	if (tenantd.ev_term == NULL || tenantd.ev_int == NULL ||
	    tenantd.ev_hup == NULL)
		fatalx("installing signal events failed");
	event_add(tenantd.ev_term, NULL);
	event_add(tenantd.ev_int, NULL);
	event_add(tenantd.ev_hup, NULL);
}

static void
state_dir_ensure(const char *dir)
{
	struct stat	st;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		fatal("creating state directory %s", dir);
	if (stat(dir, &st) == -1)
		fatal("state directory %s", dir);
	if (!S_ISDIR(st.st_mode))
		fatalx("state directory %s is not a directory", dir);
	if (st.st_mode & 0077)
		log_warnx("state directory %s is accessible by group or others "
		    "(mode %04o); chmod 700 it", dir, st.st_mode & 07777);
}

static void
start(void)
{
	SSL_CTX	*ctx = NULL;
	char	 err[512];

	if (evthread_use_pthreads() == -1)
		fatalx("libevent threads unavailable");
	/* no core dumps or ptrace peeks at key material */
	keyring_protect_process();
	if ((tenantd.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	state_dir_ensure(tenantd.conf->state_dir);
	ready_set("config", READY_OK, tenantd.conf_path);
	daemon_store_start(tenantd.base, tenantd.conf);
	if (vault_client_start(tenantd.base, tenantd.conf, err,
	    sizeof(err)) == -1)
		fatalx("cannot start: %s", err);
	daemon_auth_init(tenantd.base, tenantd.conf);
	if (uses_tls(tenantd.conf) &&
	    (ctx = tls_setup(tenantd.conf, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	if (http_start(tenantd.base, tenantd.conf, ctx, err, sizeof(err)) == -1)
		fatalx("%s", err);
	SSL_CTX_free(ctx);
	if (control_init(tenantd.base, tenantd.conf) == -1)
		fatalx("control socket %s could not be opened",
		    tenantd.conf->control.socket);
	signals_start();
	watchdog_start();
	license_start(daemon_store(), tenantd.conf);
	notice_start(tenantd.base, daemon_store(), tenantd.conf);
	shipper_start(tenantd.base, tenantd.conf, daemon_store()); /* logs */
}

static void
stop(void)
{
	notice_stop();
	license_stop();
	control_shutdown();
	daemon_auth_free();		/* before the store it saves keys in */
	shipper_stop();
	vault_client_stop();
	daemon_store_stop();
	event_free(tenantd.ev_term);
	event_free(tenantd.ev_int);
	event_free(tenantd.ev_hup);
	if (tenantd.ev_watchdog != NULL)
		event_free(tenantd.ev_watchdog);
	event_base_free(tenantd.base);
	conf_unref(tenantd.conf);
	log_info("stopped");
}

static void
load_config_or_exit(int check_only)
{
	char	*errors = NULL;

	tenantd.conf = conf_load(tenantd.conf_path, 0, &errors);
	if (tenantd.conf == NULL) {
		report_errors(errors, 0);
		free(errors);
		exit(1);
	}
	if (check_only) {
		printf("configuration OK\n");
		conf_unref(tenantd.conf);
		exit(0);
	}
}

int
main(int argc, char *argv[])
{
	int	ch, foreground = 0, check_only = 0;

	tenantd.started_us = now_usec();
	tenantd.conf_path = TENANTD_CONF;
	while ((ch = getopt(argc, argv, "c:dfnV")) != -1) {
		switch (ch) {
		case 'c':
			tenantd.conf_path = optarg;
			break;
		case 'd':
			tenantd.debug = 1;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'n':
			check_only = 1;
			break;
		case 'V':
			printf("tenantd %s\n", TENANTD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (argc != optind)
		usage();
	log_init("tenantd", tenantd.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
	    1);
	load_config_or_exit(check_only);
	if (!tenantd.debug)
		log_setlevel(tenantd.conf->log_level);
	if (!foreground) {
		if (daemon(1, 0) == -1)
			fatal("daemon");
		log_init("tenantd", log_getlevel(), 0);
	}
	start();
	log_info("ready");
	notify_ready("serving");
	event_base_dispatch(tenantd.base);
	stop();
	return 0;
}
