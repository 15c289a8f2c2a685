/*
 * tenantctl-audit.c: the client side of `tenantctl audit ...`: options,
 * the verify report, and copying a streamed export to stdout or a file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tenantd.h"

#define STREAM_TIMEOUT_MS	60000
#define FRAME_LINE_MAX		256

static const char	*export_output;		/* -o FILE; NULL: stdout */

static int
parse_seq(const char *s, json_t *args, const char *key)
{
	char			*end;
	unsigned long long	 v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v == 0 ||
	    v > (1ULL << 53))
		return -1;
	json_object_set_new(args, key, json_integer((json_int_t)v));
	return 0;
}

/* audit verify [--from SEQ] */
int
tctl_parse_audit_verify(int argc, char **argv, json_t *args)
{
	if (argc == 0)
		return 0;
	if (argc == 2 && strcmp(argv[0], "--from") == 0)
		return parse_seq(argv[1], args, "from");
	return -1;
}

/* audit prune SEQ */
int
tctl_parse_audit_prune(int argc, char **argv, json_t *args)
{
	return argc == 1 ? parse_seq(argv[0], args, "through") : -1;
}

/*
 * audit export [--from X] [--to Y] [--actor A] [--action A] [--outcome O]
 * [--format csv|json|jsonl] [--no-bom] [-o FILE]; the daemon checks the
 * values with the same code as the HTTP route.
 */
int
tctl_parse_audit_export(int argc, char **argv, json_t *args)
{
	static const char *const names[] = {
		"from", "to", "actor", "action", "outcome", "format",
	};
	size_t	i;
	int	a;

	for (a = 0; a < argc; a++) {
		if (strcmp(argv[a], "--no-bom") == 0) {
			json_object_set_new(args, "bom", json_string("0"));
			continue;
		}
		if (a + 1 == argc)
			return -1;
		if (strcmp(argv[a], "-o") == 0 ||
		    strcmp(argv[a], "--output") == 0) {
			export_output = argv[++a];
			continue;
		}
		for (i = 0; i < nitems(names); i++)
			if (strncmp(argv[a], "--", 2) == 0 &&
			    strcmp(argv[a] + 2, names[i]) == 0)
				break;
		if (i == nitems(names))
			return -1;
		json_object_set_new(args, names[i], json_string(argv[++a]));
	}
	return 0;
}

void
tctl_print_audit_verify(json_t *r)
{
	json_int_t	n = json_integer_value(json_object_get(r, "records"));

	if (json_is_true(json_object_get(r, "ok")))
		printf("audit chain OK: %lld records through seq %lld, "
		    "%lld checkpoints\nhead: %s\n", (long long)n,
		    (long long)json_integer_value(json_object_get(r,
		    "last_seq")), (long long)json_integer_value(
		    json_object_get(r, "checkpoints")),
		    json_string_value(json_object_get(r, "head")));
	else
		printf("audit chain BROKEN at seq %lld: %s\n%s\n",
		    (long long)json_integer_value(json_object_get(r, "seq")),
		    json_string_value(json_object_get(r, "reason")),
		    json_string_value(json_object_get(r, "detail")));
	printf("key: Ed25519 %s (key id %s)\n",
	    json_string_value(json_object_get(r, "pubkey")),
	    json_string_value(json_object_get(r, "key_id")));
}

void
tctl_print_audit_actions(json_t *r)
{
	json_t		*a;
	size_t		 i;
	const char	*by;

	json_array_foreach(r, i, a) {
		by = json_string_value(json_object_get(a, "ctl"));
		printf("%-20s %s%s%s%s\n",
		    json_string_value(json_object_get(a, "action")),
		    json_string_value(json_object_get(a, "summary")),
		    by ? " (tenantctl " : "", by ? by : "", by ? ")" : "");
	}
}

/* --- the stream after the answer ------------------------------------------ */

struct reader {
	int		 fd;
	char		*buf;
	size_t		 len, cap;
};

/* Make at least n bytes available; 0, or -1 on EOF or error. */
static int
reader_fill(struct reader *r, size_t n)
{
	struct pollfd	pfd = { r->fd, POLLIN, 0 };
	ssize_t		got;

	while (r->len < n) {
		if (r->cap < n || r->cap - r->len < 65536) {
			r->cap = MAXIMUM(n, r->len + 65536) * 2;
			r->buf = xreallocarray(r->buf, 1, r->cap);
		}
		if (poll(&pfd, 1, STREAM_TIMEOUT_MS) <= 0)
			return -1;
		if ((got = read(r->fd, r->buf + r->len, r->cap - r->len)) <= 0)
			return -1;
		r->len += (size_t)got;
	}
	return 0;
}

static void
reader_drop(struct reader *r, size_t n)
{
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
}

/* One frame line: {"chunk":N} (returns N), or the end line (-1, *end). */
static long long
read_frame(struct reader *r, json_t **end)
{
	char		*nl;
	json_t		*j;
	size_t		 n;

	*end = NULL;
	for (n = 1; (nl = memchr(r->buf, '\n', r->len)) == NULL; n = r->len + 1)
		if (n > FRAME_LINE_MAX * 16 || reader_fill(r, n) == -1)
			return -2;
	j = json_loadb(r->buf, (size_t)(nl - r->buf), 0, NULL);
	reader_drop(r, (size_t)(nl - r->buf) + 1);
	if (j == NULL)
		return -2;
	if (json_is_integer(json_object_get(j, "chunk"))) {
		n = (size_t)json_integer_value(json_object_get(j, "chunk"));
		json_decref(j);
		return (long long)n;
	}
	*end = j;
	return -1;
}

static int
copy_frames(struct reader *r, FILE *out)
{
	json_t		*end;
	long long	 n;
	const char	*err;
	int		 ok;

	while ((n = read_frame(r, &end)) >= 0) {
		if (reader_fill(r, (size_t)n) == -1)
			break;
		if (fwrite(r->buf, 1, (size_t)n, out) != (size_t)n) {
			fprintf(stderr, "tenantctl: audit export: %s: %s\n",
			    export_output ? export_output : "stdout",
			    strerror(errno));
			return -1;
		}
		reader_drop(r, (size_t)n);
	}
	if (n == -2 || end == NULL) {
		fprintf(stderr, "tenantctl: audit export: the stream from "
		    "tenantd ended early\n");
		return -1;
	}
	ok = json_is_true(json_object_get(end, "end"));
	if (!ok && (err = json_string_value(json_object_get(end, "error"))))
		fprintf(stderr, "tenantctl: audit export: %s\n", err);
	json_decref(end);
	return ok ? 0 : -1;
}

/*
 * Copy the frames that follow the answer (pending holds the bytes already
 * read after it) to stdout or -o FILE (mode 0600; removed on failure).
 */
int
tctl_stream_copy(int fd, const char *pending, size_t len)
{
	struct reader	 r = { fd, NULL, 0, 0 };
	FILE		*out = stdout;
	int		 ofd = -1, rv;

	if (export_output != NULL && ((ofd = open(export_output, O_WRONLY |
	    O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1 ||
	    (out = fdopen(ofd, "w")) == NULL)) {
		fprintf(stderr, "tenantctl: %s: %s\n", export_output,
		    strerror(errno));
		return 1;
	}
	r.buf = xmalloc(r.cap = MAXIMUM(len, 65536));
	memcpy(r.buf, pending, r.len = len);
	rv = copy_frames(&r, out);
	free(r.buf);
	if (fflush(out) != 0)
		rv = -1;
	if (out != stdout && fclose(out) != 0)
		rv = -1;
	if (rv == -1 && export_output != NULL)
		unlink(export_output);
	return rv == 0 ? 0 : 1;
}
