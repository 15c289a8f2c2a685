/*
 * vault-child.c: vault.mode child: tenantd runs tenantd-vault itself (the
 * development setup and the tests), restarts it with backoff when it
 * dies, and stops it at shutdown. In production systemd runs the vault.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "tenantd.h"

#ifndef SBINDIR
#define SBINDIR			"/usr/sbin"
#endif
#define RESTART_MIN_MS		500
#define RESTART_MAX_MS		60000
#define STABLE_USEC		(60ULL * 1000000)	/* resets the backoff */
#define STOP_WAIT_MS		10000

static struct {
	struct event_base	*base;
	char			*program;
	char			*config;
	char			*address;
	pid_t			 pid;
	uint64_t		 started_us;
	uint64_t		 backoff_ms;
	struct event		*ev_chld, *ev_restart, *ev_term, *ev_int;
	int			 stopping;
} child;

/* vault.program, else tenantd-vault next to this binary, else SBINDIR. */
static char *
child_program(const struct config *conf)
{
	char	self[PATH_MAX], *slash, *path;
	ssize_t	n;

	if (conf->vault.program != NULL)
		return xstrdup(conf->vault.program);
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			xasprintf(&path, "%s/tenantd-vault", self);
			if (access(path, X_OK) == 0)
				return path;
			free(path);
		}
	}
	return xstrdup(SBINDIR "/tenantd-vault");
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void DEAD
child_exec(pid_t parent)
{
	sigset_t	 all;
	char		 f[] = "-f", c[] = "-c", s[] = "-S";
	char		*argv[] = { child.program, f, c, child.config, s,
			    child.address, NULL };

	prctl(PR_SET_PDEATHSIG, SIGTERM);	/* dies with tenantd */
	if (getppid() != parent)
		_exit(127);
	setpgid(0, 0);		/* tenantd, not the terminal, stops it */
	syscall(SYS_close_range, 3U, ~0U, 0U);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	execv(child.program, argv);
	_exit(127);
}

static int
child_spawn(void)
{
	pid_t	parent = getpid(), pid;

	if ((pid = fork()) == -1) {
		log_warn("vault: fork");
		return -1;
	}
	if (pid == 0)
		child_exec(parent);
	child.pid = pid;
	child.started_us = now_usec();
	log_info("vault: started %s (pid %ld)", child.program, (long)pid);
	return 0;
}

static void
restart_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct timeval	tv = { 5, 0 };

	if (child.pid == 0 && child_spawn() == -1)
		evtimer_add(child.ev_restart, &tv);
}

static void
child_exited(int status)
{
	struct timeval	tv;

	if (child.stopping) {
		log_info("vault: tenantd-vault exited during shutdown");
		return;
	}
	if (now_usec() - child.started_us > STABLE_USEC)
		child.backoff_ms = 0;
	child.backoff_ms = child.backoff_ms == 0 ? RESTART_MIN_MS :
	    MINIMUM(child.backoff_ms * 2, RESTART_MAX_MS);
	if (WIFEXITED(status))
		log_warnx("vault: tenantd-vault exited with status %d; "
		    "restarting in %llu ms", WEXITSTATUS(status),
		    (unsigned long long)child.backoff_ms);
	else
		log_warnx("vault: tenantd-vault killed by signal %d; "
		    "restarting in %llu ms", WTERMSIG(status),
		    (unsigned long long)child.backoff_ms);
	tv.tv_sec = child.backoff_ms / 1000;
	tv.tv_usec = child.backoff_ms % 1000 * 1000;
	evtimer_add(child.ev_restart, &tv);
}

/* tenantd is stopping: a vault that exits now is not restarted. */
static void
sigstop_cb(evutil_socket_t sig, short ev, void *arg)
{
	child.stopping = 1;
	evtimer_del(child.ev_restart);
}

static void
sigchld_cb(evutil_socket_t sig, short ev, void *arg)
{
	pid_t	pid;
	int	status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (pid == child.pid) {
			child.pid = 0;
			child_exited(status);
		}
}

int
vault_child_start(struct event_base *base, const struct config *conf,
    char *err, size_t errlen)
{
	child.base = base;
	child.program = child_program(conf);
	child.config = xstrdup(conf->vault.config);
	child.address = xstrdup(conf->vault.address);
	if (access(child.program, X_OK) == -1) {
		snprintf(err, errlen, "vault.mode child: %s: %s (set "
		    "vault.program)", child.program, strerror(errno));
		return -1;
	}
	if (access(child.config, R_OK) == -1) {
		snprintf(err, errlen, "vault.config %s: %s", child.config,
		    strerror(errno));
		return -1;
	}
	child.ev_chld = evsignal_new(base, SIGCHLD, sigchld_cb, NULL);
	child.ev_restart = evtimer_new(base, restart_cb, NULL);
	child.ev_term = evsignal_new(base, SIGTERM, sigstop_cb, NULL);
	child.ev_int = evsignal_new(base, SIGINT, sigstop_cb, NULL);
	if (child.ev_chld == NULL || child.ev_restart == NULL ||
	    child.ev_term == NULL || child.ev_int == NULL ||
	    event_add(child.ev_chld, NULL) == -1 ||
	    event_add(child.ev_term, NULL) == -1 ||
	    event_add(child.ev_int, NULL) == -1) {
		snprintf(err, errlen, "vault: SIGCHLD event");
		return -1;
	}
	if (child_spawn() == -1) {
		snprintf(err, errlen, "vault: cannot start %s", child.program);
		return -1;
	}
	return 0;
}

/* SIGTERM, wait for it to finish its writes, SIGKILL if it will not. */
void
vault_child_stop(void)
{
	struct timespec	ts = { 0, 50 * 1000000 };
	int		status, waited;

	if (child.base == NULL)
		return;
	if (child.pid > 0) {
		kill(child.pid, SIGTERM);
		for (waited = 0; waited < STOP_WAIT_MS; waited += 50) {
			if (waitpid(child.pid, &status, WNOHANG) != 0)
				break;
			nanosleep(&ts, NULL);
		}
		if (waited >= STOP_WAIT_MS) {
			log_warnx("vault: pid %ld did not stop; killing it",
			    (long)child.pid);
			kill(child.pid, SIGKILL);
			waitpid(child.pid, &status, 0);
		}
		log_info("vault: stopped pid %ld", (long)child.pid);
	}
	event_free(child.ev_chld);
	event_free(child.ev_restart);
	event_free(child.ev_term);
	event_free(child.ev_int);
	free(child.program);
	free(child.config);
	free(child.address);
	memset(&child, 0, sizeof(child));
}
