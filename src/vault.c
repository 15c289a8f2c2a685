/*
 * vault.c: tenantd-vault, the pseudonym vault: options, its own
 * configuration, keyring and store, signals, and recovery of its keyring.
 * It holds pseudonym -> identity; tenantd never sees its files or keys.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "tenantd.h"

#define VAULT_CONF		"/etc/tenantd/vault.yaml"

static struct {
	const char		*conf_path;
	const char		*listen;	/* -S: overrides listen */
	struct vault_config	*conf;
	struct event_base	*base;
	struct keyring		*kr;
	struct store		*st;
	struct vault_server	*srv;
	struct event		*ev_term, *ev_int, *ev_hup, *ev_watchdog;
	int			 debug;
} vault;

static void DEAD
usage(void)
{
	fprintf(stderr, "usage: tenantd-vault [-dfnRV] [-c file] "
	    "[-S address]\n");
	exit(2);
}

static struct vault_config *
load_config(int to_log)
{
	struct vault_config	*vc;
	char			*errors = NULL;

	if ((vc = conf_load_vault(vault.conf_path, 0, &errors)) == NULL) {
		if (to_log)
			log_warnx("reload failed: %s", errors);
		else
			fputs(errors, stderr);
		free(errors);
	}
	return vc;
}

static void
sig_stop_cb(evutil_socket_t sig, short ev, void *arg)
{
	log_info("%s received; stopping", sig == SIGTERM ? "SIGTERM" :
	    "SIGINT");
	notify_stopping();
	event_base_loopbreak(vault.base);
}

/* Reload what can change without a restart: log level, storage size. */
static void
sig_hup_cb(evutil_socket_t sig, short ev, void *arg)
{
	struct vault_config	*vc;

	if ((vc = load_config(1)) == NULL)
		return;
	if (!vault.debug)
		log_setlevel(vc->log_level);
	if (store_set_max_size(vault.st, vc->storage.max_size) != STORE_OK)
		log_warnx("reload: storage.max_size refused");
	conf_free_vault(vault.conf);
	vault.conf = vc;
	log_info("configuration reloaded (listen and allow_users change at "
	    "the next restart)");
}

static void
watchdog_cb(evutil_socket_t fd, short ev, void *arg)
{
	notify_watchdog();
}

static void
events_start(void)
{
	struct timeval	tv;
	uint64_t	usec;

	signal(SIGPIPE, SIG_IGN);
	vault.ev_term = evsignal_new(vault.base, SIGTERM, sig_stop_cb, NULL);
	vault.ev_int = evsignal_new(vault.base, SIGINT, sig_stop_cb, NULL);
	vault.ev_hup = evsignal_new(vault.base, SIGHUP, sig_hup_cb, NULL);
	if (vault.ev_term == NULL || vault.ev_int == NULL ||
	    vault.ev_hup == NULL)
		fatalx("installing signal events failed");
	event_add(vault.ev_term, NULL);
	event_add(vault.ev_int, NULL);
	event_add(vault.ev_hup, NULL);
	if (!notify_watchdog_usec(&usec))
		return;
	tv.tv_sec = usec / 2 / 1000000;
	tv.tv_usec = usec / 2 % 1000000;
	vault.ev_watchdog = event_new(vault.base, -1, EV_PERSIST, watchdog_cb,
	    NULL);
	event_add(vault.ev_watchdog, &tv);
}

static void
state_dir_ensure(const char *dir)
{
	struct stat	st;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		fatal("creating state directory %s", dir);
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode))
		fatalx("state directory %s is not a directory", dir);
}

static void
start(void)
{
	struct store_params	 sp;
	char			 err[512];

	keyring_protect_process();
	if (evthread_use_pthreads() == -1)
		fatalx("libevent threads unavailable");
	if ((vault.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	state_dir_ensure(vault.conf->state_dir);
	if (keyring_load_conf(&vault.conf->keyring, vault.conf->state_dir,
	    &vault.kr, err, sizeof(err)) == -1)
		fatalx("cannot start: %s", err);
	memset(&sp, 0, sizeof(sp));
	sp.dir = vault.conf->storage.path;
	sp.dbs = vault_dbs;
	sp.max_size = vault.conf->storage.max_size;
	sp.keyring = vault.kr;
	if (store_open(&sp, &vault.st, err, sizeof(err)) == -1)
		fatalx("cannot start: %s", err);
	vault.srv = vault_serve_start(vault.base, vault.conf, vault.st,
	    vault.listen ? vault.listen : vault.conf->listen, err,
	    sizeof(err));
	if (vault.srv == NULL)
		fatalx("cannot start: %s", err);
	events_start();
}

static void
stop(void)
{
	vault_serve_stop(vault.srv);
	store_close(vault.st);
	keyring_free(vault.kr);
	event_free(vault.ev_term);
	event_free(vault.ev_int);
	event_free(vault.ev_hup);
	if (vault.ev_watchdog != NULL)
		event_free(vault.ev_watchdog);
	event_base_free(vault.base);
	conf_free_vault(vault.conf);
	log_info("stopped");
}

/* -R: unwrap the keyring with its recovery key (read from stdin). */
static int
recover(void)
{
	char	line[256], err[512];
	long	pid;
	int	rv;

	if (store_lock_holder(vault.conf->storage.path, &pid)) {
		fprintf(stderr, "tenantd-vault: the vault is running (pid "
		    "%ld); stop it first\n", pid);
		return 1;
	}
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fprintf(stderr, "tenantd-vault: no recovery key on stdin\n");
		return 1;
	}
	line[strcspn(line, "\r\n")] = '\0';
	rv = keyring_recover_conf(&vault.conf->keyring,
	    vault.conf->state_dir, line, err, sizeof(err));
	explicit_bzero(line, sizeof(line));
	if (rv == -1) {
		fprintf(stderr, "tenantd-vault: %s\n", err);
		return 1;
	}
	printf("keyring %s recovered\n", vault.conf->keyring.path);
	return 0;
}

int
main(int argc, char *argv[])
{
	int	ch, check_only = 0, recovery = 0;

	vault.conf_path = VAULT_CONF;
	while ((ch = getopt(argc, argv, "c:dfnRS:V")) != -1) {
		switch (ch) {
		case 'c':
			vault.conf_path = optarg;
			break;
		case 'd':
			vault.debug = 1;
			break;
		case 'f':
			break;		/* always in the foreground */
		case 'n':
			check_only = 1;
			break;
		case 'R':
			recovery = 1;
			break;
		case 'S':
			vault.listen = optarg;
			break;
		case 'V':
			printf("tenantd-vault %s\n", TENANTD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (argc != optind)
		usage();
	log_init("tenantd-vault", vault.debug ? LOG_LEVEL_DEBUG :
	    LOG_LEVEL_INFO, 1);
	if ((vault.conf = load_config(0)) == NULL)
		return 1;
	if (check_only) {
		printf("configuration OK\n");
		conf_free_vault(vault.conf);
		return 0;
	}
	if (recovery)
		return recover();
	if (!vault.debug)
		log_setlevel(vault.conf->log_level);
	start();
	notify_ready("serving");
	event_base_dispatch(vault.base);
	stop();
	return 0;
}
