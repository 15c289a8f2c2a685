/*
 * fake-entra.h: runs tests/integration/fake_entra.py (a TLS server with a
 * test CA) as a child process for the C unit tests and drives it through
 * its stdin/stdout command protocol.
 */
#ifndef FAKE_ENTRA_H
#define FAKE_ENTRA_H

#include <sys/wait.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

struct fake_entra {
	pid_t	 pid;
	FILE	*to;		/* its stdin */
	FILE	*from;		/* its stdout */
	json_t	*info;		/* the hello line */
	char	 dir[64];
};

static inline json_t *
fake_entra_read(struct fake_entra *fe)
{
	char	line[4096];

	if (fgets(line, sizeof(line), fe->from) == NULL)
		return NULL;
	return json_loads(line, 0, NULL);
}

static inline const char *
fake_entra_str(struct fake_entra *fe, const char *key)
{
	return json_string_value(json_object_get(fe->info, key));
}

/* 0 on success; -1 when python3 or the script is unavailable. */
static inline int
fake_entra_start(struct fake_entra *fe)
{
	const char	*top = getenv("TOP_SRCDIR");
	char		 script[1024];
	int		 in[2], out[2];

	memset(fe, 0, sizeof(*fe));
	snprintf(script, sizeof(script), "%s/tests/integration/fake_entra.py",
	    top != NULL ? top : ".");
	snprintf(fe->dir, sizeof(fe->dir), "/tmp/fake-entra.XXXXXX");
	if (access("/usr/bin/python3", X_OK) == -1 ||
	    access(script, R_OK) == -1 || mkdtemp(fe->dir) == NULL ||
	    pipe(in) == -1 || pipe(out) == -1)
		return -1;
	if ((fe->pid = fork()) == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl("/usr/bin/python3", "python3", script, "--dir", fe->dir,
		    (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	fe->to = fdopen(in[1], "w");
	fe->from = fdopen(out[0], "r");
	if ((fe->info = fake_entra_read(fe)) == NULL)
		return -1;
	return 0;
}

static inline json_t *
fake_entra_cmd(struct fake_entra *fe, const char *cmd)
{
	fprintf(fe->to, "%s\n", cmd);
	fflush(fe->to);
	return fake_entra_read(fe);
}

static inline long
fake_entra_count(struct fake_entra *fe, const char *kind)
{
	json_t	*c = fake_entra_cmd(fe, "counts");
	long	 n = (long)json_integer_value(json_object_get(c, kind));

	json_decref(c);
	return n;
}

static inline void
fake_entra_stop(struct fake_entra *fe)
{
	char	cmd[128];

	if (fe->to != NULL) {
		fprintf(fe->to, "quit\n");
		fclose(fe->to);
	}
	if (fe->from != NULL)
		fclose(fe->from);
	if (fe->pid > 0)
		waitpid(fe->pid, NULL, 0);
	json_decref(fe->info);
	if (fe->dir[0] != '\0' && strncmp(fe->dir, "/tmp/fake-entra.", 16) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fe->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "# cannot remove %s\n", fe->dir);
	}
}

/* Run base until *done is set or seconds pass; returns *done. */
static inline int
run_until(struct event_base *base, const int *done, int seconds)
{
	struct timeval	tv = { 0, 20000 };
	int		i;

	for (i = 0; i < seconds * 50 && !*done; i++) {
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return *done;
}

#endif /* FAKE_ENTRA_H */
