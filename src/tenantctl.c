/*
 * tenantctl.c: the operator CLI. Sends one command over the control socket
 * and prints the answer for people, or as JSON for scripts (--json).
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tenantd.h"

#define EXIT_FAILED		1	/* the daemon said no */
#define EXIT_USAGE		2
#define EXIT_UNREACHABLE	3	/* no daemon or no answer */

#define ANSWER_MAX		(64 * 1024 * 1024)
#define ANSWER_TIMEOUT_MS	60000

struct command {
	const char	*name;		/* may contain a space: "keys rotate" */
	const char	*usage;		/* the arguments after the name */
	const char	*summary;
	/* fills args from argv; NULL: the command takes no arguments */
	int		(*parse)(int, char **, json_t *args);
	void		(*print)(json_t *result);
	/* run here, without the daemon: returns the exit status */
	int		(*local)(const char *config, json_t *args);
};

static void	print_status(json_t *);
static void	print_reload(json_t *);
static void	print_check_config(json_t *);
static int	parse_token(int, char **, json_t *);
static void	print_token(json_t *);
static void	print_shipping_status(json_t *);
static void	print_shipping_retry(json_t *);
static int	parse_shipping_test(int, char **, json_t *);
static void	print_keys_status(json_t *);
static void	print_result(json_t *);
static int	parse_term(int, char **, json_t *);
static int	parse_oid(int, char **, json_t *);
static int	parse_put(int, char **, json_t *);
static int	parse_resolve(int, char **, json_t *);
static int	parse_pseudonym(int, char **, json_t *);
static int	keys_recover(const char *, json_t *);

static const struct command commands[] = {
	{ "status", "", "show version, uptime, listeners and readiness",
	    NULL, print_status, NULL },
	{ "reload", "", "re-read the configuration, apply it only if valid",
	    NULL, print_reload, NULL },
	{ "check-config", "", "check the daemon's configuration file",
	    NULL, print_check_config, NULL },
	{ "token", "--user NAME [--roles admin,auditor] [--ttl 1h]",
	    "print a development token (auth.provider: local)",
	    parse_token, print_token, NULL },
	{ "shipping status", "", "log shipping queues and dead letters",
	    NULL, print_shipping_status, NULL },
	{ "shipping retry", "", "re-send dead-lettered log records",
	    NULL, print_shipping_retry, NULL },
	{ "shipping test", "[-n COUNT] [-p PAD]",
	    "queue test records on the ops stream", parse_shipping_test,
	    NULL, NULL },
	{ "audit verify", "[--from SEQ]", "check the audit chain and its "
	    "signed checkpoints", tctl_parse_audit_verify,
	    tctl_print_audit_verify, NULL },
	{ "audit export", "[--from X] [--to Y] [--actor A] [--action A] "
	    "[--outcome O] [--format csv|json|jsonl] [--no-bom] [-o FILE]",
	    "audit records, streamed", tctl_parse_audit_export, NULL, NULL },
	{ "audit pubkey", "", "the audit signing key (Ed25519)", NULL,
	    print_result, NULL },
	{ "audit actions", "", "every action the audit trail records", NULL,
	    tctl_print_audit_actions, NULL },
	{ "audit prune", "SEQ", "remove records through SEQ (signed anchor)",
	    tctl_parse_audit_prune, print_result, NULL },
	{ "notice publish", "--kind K --severity S --title T [--body B] "
	    "[--starts-at T] [--ends-at T]", "publish a notice",
	    ctl_parse_notice_publish, ctl_print_notice, NULL },
	{ "notice update", "ID [--title T] [--body B] [--kind K] "
	    "[--severity S] [--starts-at T|none] [--ends-at T|none]",
	    "change a notice", ctl_parse_notice_update, ctl_print_notice,
	    NULL },
	{ "notice list", "[--since T]", "list notices",
	    ctl_parse_notice_list, ctl_print_notice_list, NULL },
	{ "notice deliveries", "", "webhook deliveries and their state",
	    NULL, ctl_print_notice_deliveries, NULL },
	{ "keys status", "", "key terms, rewrap progress, store use",
	    NULL, print_keys_status, NULL },
	{ "keys rotate", "", "make a new active data key term",
	    NULL, print_result, NULL },
	{ "keys rewrap", "", "re-seal all values under the active term",
	    NULL, print_result, NULL },
	{ "keys retire", "TERM", "destroy a term no value uses any more",
	    parse_term, print_result, NULL },
	{ "keys recover", "< KEY", "tenantd stopped: unwrap the keyring "
	    "with its recovery key", NULL, NULL, keys_recover },
	{ "vault status", "", "the vault connection and queued puts",
	    NULL, print_result, NULL },
	{ "vault stats", "", "identities and access log entries in the vault",
	    NULL, print_result, NULL },
	{ "vault pseudonym", "OID", "the pseudonym of a user", parse_oid,
	    print_result, NULL },
	{ "vault put", "OID UPN [NAME]", "register or correct an identity",
	    parse_put, print_result, NULL },
	{ "vault resolve", "PSEUDONYM REASON...", "re-identify (logged by "
	    "the vault)", parse_resolve, print_result, NULL },
	{ "vault forget", "PSEUDONYM", "erase the identity of a pseudonym",
	    parse_pseudonym, print_result, NULL },
};

static const char	*socket_path;

static void DEAD
usage(FILE *f, int status)
{
	char	synopsis[128];
	size_t	i;

	fprintf(f, "usage: tenantctl [-c FILE] [-s SOCKET] [--json] "
	    "COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < nitems(commands); i++) {
		snprintf(synopsis, sizeof(synopsis), "%s%s%s",
		    commands[i].name, *commands[i].usage ? " " : "",
		    commands[i].usage);
		fprintf(f, "  %-26s %s\n", synopsis, commands[i].summary);
	}
	exit(status);
}

/* How many words of argv spell name ("keys rotate" is two), or 0. */
static int
command_match(const char *name, int argc, char **argv)
{
	size_t	len;
	int	i;

	for (i = 0; i < argc; i++) {
		len = strlen(argv[i]);
		if (strncmp(name, argv[i], len) != 0)
			return 0;
		if (name[len] == '\0')
			return i + 1;
		if (name[len] != ' ')
			return 0;
		name += len + 1;
	}
	return 0;
}

static const struct command *
command_find(int argc, char **argv, int *nwords)
{
	size_t	i;
	int	n;

	for (i = 0; i < nitems(commands); i++)
		if ((n = command_match(commands[i].name, argc, argv)) > 0) {
			*nwords = n;
			return &commands[i];
		}
	return NULL;
}

static const char *
get_str(json_t *obj, const char *key)
{
	const char	*s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "?";
}

/* 2m05s, 3h00m12s, 2d01h00m00s */
static void
format_uptime(char *buf, size_t len, json_int_t secs)
{
	long long	s = secs < 0 ? 0 : secs;

	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm%02llds", s / 3600,
		    s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%lldd%02lldh%02lldm%02llds", s / 86400,
		    s / 3600 % 24, s / 60 % 60, s % 60);
}

static void
print_listeners(json_t *listeners)
{
	json_t	*l;
	size_t	 i;

	printf("listeners:");
	json_array_foreach(listeners, i, l)
		printf("%s %s %s", i == 0 ? "" : ",", get_str(l, "scheme"),
		    get_str(l, "address"));
	printf("%s\n", json_array_size(listeners) == 0 ? " none" : "");
}

static void
print_checks(json_t *checks)
{
	json_t	*c;
	size_t	 i;

	json_array_foreach(checks, i, c) {
		if (json_is_true(json_object_get(c, "ok")))
			printf("  %s ok\n", get_str(c, "name"));
		else
			printf("  %s failed: %s\n", get_str(c, "name"),
			    get_str(c, "detail"));
	}
}

static void
print_status(json_t *r)
{
	char	uptime[64];

	format_uptime(uptime, sizeof(uptime),
	    json_integer_value(json_object_get(r, "uptime_s")));
	printf("tenantd %s (pid %lld), up %s\n", get_str(r, "version"),
	    (long long)json_integer_value(json_object_get(r, "pid")), uptime);
	printf("config: %s\n", get_str(r, "config"));
	print_listeners(json_object_get(r, "listeners"));
	printf("ready: %s\n",
	    json_is_true(json_object_get(r, "ready")) ? "yes" : "no");
	print_checks(json_object_get(r, "checks"));
}

static void
print_reload(json_t *r)
{
	printf("configuration reloaded from %s\n", get_str(r, "config"));
}

static void
print_check_config(json_t *r)
{
	printf("configuration OK: %s\n", get_str(r, "config"));
}

/* Log shipping. */

static void
print_shipping_stream(const char *name, json_t *s)
{
	printf("  %-6s %-24s queued %lld, shipped %lld, failed %lld, "
	    "dropped %lld, dead %lld, waiting %lld (%lld bytes), lag %.1fs\n",
	    name, get_str(s, "name"),
	    (long long)json_integer_value(json_object_get(s, "queued")),
	    (long long)json_integer_value(json_object_get(s, "shipped")),
	    (long long)json_integer_value(json_object_get(s, "failed")),
	    (long long)json_integer_value(json_object_get(s, "dropped")),
	    (long long)json_integer_value(json_object_get(s,
	    "dead_letter_records")),
	    (long long)json_integer_value(json_object_get(s, "queue_records")),
	    (long long)json_integer_value(json_object_get(s, "queue_bytes")),
	    json_real_value(json_object_get(s, "lag_seconds")));
}

static void
print_shipping_status(json_t *r)
{
	const char	*name;
	json_t		*s, *d;
	size_t		 i;

	if (!json_is_true(json_object_get(r, "enabled"))) {
		printf("log shipping: off\n");
		return;
	}
	printf("log shipping: %s to %s\n", get_str(r, "api"),
	    get_str(r, "endpoint"));
	json_object_foreach(json_object_get(r, "streams"), name, s)
		print_shipping_stream(name, s);
	d = json_object_get(r, "dead_letters");
	if (json_array_size(d) > 0)
		printf("dead letters (first %zu):\n", json_array_size(d));
	json_array_foreach(d, i, s)
		printf("  %s %s HTTP %lld: %.120s\n", get_str(s, "time"),
		    get_str(s, "stream"), (long long)json_integer_value(
		    json_object_get(s, "status")), get_str(s, "response"));
}

static void
print_shipping_retry(json_t *r)
{
	printf("dead-lettered records queued again\n");
}

static int
parse_shipping_test(int argc, char **argv, json_t *args)
{
	char		*end;
	long long	 v;
	int		 i;

	for (i = 0; i + 1 < argc; i += 2) {
		v = strtoll(argv[i + 1], &end, 10);
		if (*end != '\0' || v < 0)
			return -1;
		if (strcmp(argv[i], "-n") == 0)
			json_object_set_new(args, "count", json_integer(v));
		else if (strcmp(argv[i], "-p") == 0)
			json_object_set_new(args, "pad", json_integer(v));
		else
			return -1;
	}
	return i == argc ? 0 : -1;
}

/* "key: value" per member, for results without their own printer. */
static void
print_result(json_t *r)
{
	const char	*key;
	json_t		*v;
	char		*text;

	json_object_foreach(r, key, v) {
		if (json_is_string(v))
			printf("%s: %s\n", key, json_string_value(v));
		else if ((text = json_dumps(v, JSON_ENCODE_ANY |
		    JSON_COMPACT)) != NULL) {
			printf("%s: %s\n", key, text);
			free(text);
		}
	}
}

static void
print_keys_status(json_t *r)
{
	json_t	*t, *rw = json_object_get(r, "rewrap");
	json_t	*st = json_object_get(r, "store");
	size_t	 i;
	char	 when[40];

	printf("keyring: %s (KEK: %s, recovery key: %s)\n", get_str(r, "path"),
	    get_str(r, "kek"), json_is_true(json_object_get(r, "recovery")) ?
	    "yes" : "no");
	printf("active term: %lld\n", (long long)json_integer_value(
	    json_object_get(r, "active_term")));
	json_array_foreach(json_object_get(r, "terms"), i, t) {
		format_iso8601(when, sizeof(when), (uint64_t)
		    json_integer_value(json_object_get(t, "created")) * 1000000);
		printf("  term %lld  %-12s  created %s  seals %lld\n",
		    (long long)json_integer_value(json_object_get(t, "term")),
		    get_str(t, "state"), when, (long long)json_integer_value(
		    json_object_get(t, "seals")));
	}
	printf("rewrap: %s, %lld values re-sealed\n", get_str(rw, "state"),
	    (long long)json_integer_value(json_object_get(rw, "rewrapped")));
	if (st != NULL)
		printf("store: %lld of %lld bytes used, %lld records\n",
		    (long long)json_integer_value(json_object_get(st, "used")),
		    (long long)json_integer_value(json_object_get(st,
		    "max_size")), (long long)json_integer_value(
		    json_object_get(st, "records")));
}

static int
parse_term(int argc, char **argv, json_t *args)
{
	char	*end;
	long	 term;

	if (argc != 1)
		return -1;
	term = strtol(argv[0], &end, 10);
	if (*end != '\0' || term < 1)
		return -1;
	json_object_set_new(args, "term", json_integer(term));
	return 0;
}

static int
parse_oid(int argc, char **argv, json_t *args)
{
	if (argc != 1)
		return -1;
	json_object_set_new(args, "oid", json_string(argv[0]));
	return 0;
}

static int
parse_put(int argc, char **argv, json_t *args)
{
	if (argc < 2 || argc > 3)
		return -1;
	json_object_set_new(args, "oid", json_string(argv[0]));
	json_object_set_new(args, "upn", json_string(argv[1]));
	if (argc == 3)
		json_object_set_new(args, "display_name",
		    json_string(argv[2]));
	return 0;
}

static int
parse_pseudonym(int argc, char **argv, json_t *args)
{
	if (argc != 1)
		return -1;
	json_object_set_new(args, "pseudonym", json_string(argv[0]));
	return 0;
}

/* The reason is the rest of the line: "vault resolve p_x court order 12". */
static int
parse_resolve(int argc, char **argv, json_t *args)
{
	char	reason[VAULT_NAME_MAX + 1] = "";
	int	i;

	if (argc < 2)
		return -1;
	for (i = 1; i < argc; i++)
		if (strlcat(reason, i > 1 ? " " : "", sizeof(reason)) >=
		    sizeof(reason) || strlcat(reason, argv[i],
		    sizeof(reason)) >= sizeof(reason))
			return -1;
	json_object_set_new(args, "pseudonym", json_string(argv[0]));
	json_object_set_new(args, "reason", json_string(reason));
	return 0;
}

/*
 * With tenantd stopped (it holds the keyring in memory while it runs):
 * the recovery key on stdin unwraps the keyring, which is rewrapped under
 * the KEK keyring.kek names now.
 */
static int
keys_recover(const char *file, json_t *args)
{
	struct config	*conf;
	char		*errors = NULL, line[256], err[512];
	long		 pid;
	int		 rv;

	if ((conf = conf_load(file, 0, &errors)) == NULL) {
		fprintf(stderr, "tenantctl: %s", errors ? errors : "");
		free(errors);
		return EXIT_FAILED;
	}
	if (store_lock_holder(conf->storage.path, &pid)) {
		fprintf(stderr, "tenantctl: keys recover: tenantd is running "
		    "(pid %ld); stop it first\n", pid);
		conf_unref(conf);
		return EXIT_FAILED;
	}
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "recovery key: ");
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fprintf(stderr, "tenantctl: keys recover: no recovery key on "
		    "stdin\n");
		conf_unref(conf);
		return EXIT_USAGE;
	}
	line[strcspn(line, "\r\n")] = '\0';
	rv = keyring_recover_conf(&conf->keyring, conf->state_dir, line, err,
	    sizeof(err));
	explicit_bzero(line, sizeof(line));
	if (rv == 0)
		printf("keyring %s recovered; it is now wrapped by the KEK "
		    "of %s\n", conf->keyring.path, file);
	else
		fprintf(stderr, "tenantctl: keys recover: %s\n", err);
	conf_unref(conf);
	return rv == 0 ? 0 : EXIT_FAILED;
}

/* Only the token, so that TOKEN=$(tenantctl token --user alice) works. */
static void
print_token(json_t *r)
{
	printf("%s\n", get_str(r, "token"));
}

static const struct {
	char		unit;
	long long	seconds;
} ttl_units[] = {
	{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
};

/* "90", "90s", "15m", "1h", "1d"; -1 when malformed. */
static long long
parse_ttl(const char *s)
{
	char		*end;
	long long	 n;
	size_t		 i;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || end == s || n <= 0 || n > 366LL * 86400)
		return -1;
	if (*end == '\0')
		return n;
	for (i = 0; i < nitems(ttl_units); i++)
		if (end[0] == ttl_units[i].unit && end[1] == '\0')
			return n * ttl_units[i].seconds;
	return -1;
}

static int
parse_roles(const char *s, json_t *args)
{
	json_t	*roles = json_array();
	char	*copy = xstrdup(s), *p = copy, *name;

	while ((name = strsep(&p, ",")) != NULL)
		if (*name != '\0')
			json_array_append_new(roles, json_string(name));
	free(copy);
	json_object_set_new(args, "roles", roles);
	return 0;
}

static int
parse_token(int argc, char **argv, json_t *args)
{
	long long	ttl;
	int		i;

	for (i = 0; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--user") == 0)
			json_object_set_new(args, "user",
			    json_string(argv[i + 1]));
		else if (strcmp(argv[i], "--roles") == 0)
			parse_roles(argv[i + 1], args);
		else if (strcmp(argv[i], "--ttl") == 0 &&
		    (ttl = parse_ttl(argv[i + 1])) > 0)
			json_object_set_new(args, "ttl", json_integer(ttl));
		else
			return -1;
	}
	return i == argc && json_object_get(args, "user") != NULL ? 0 : -1;
}

static void DEAD
unreachable(const char *fmt, ...) PRINTFLIKE(1, 2);

/* Exit 3, saying which socket and why. */
static void
unreachable(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "tenantctl: cannot reach tenantd at %s: ",
	    socket_path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_UNREACHABLE);
}

/* The socket path from the configuration file; exits if unreadable. */
static const char *
socket_from_config(const char *file)
{
	struct config	*conf;
	char		*errors = NULL, *path;
	size_t		 len;

	if ((conf = conf_load(file, CONF_NO_SECRETS, &errors)) == NULL) {
		len = errors != NULL ? strlen(errors) : 0;
		fprintf(stderr, "tenantctl: cannot read the control socket "
		    "from %s (use -s SOCKET):\n%s%s", file,
		    len > 0 ? errors : "unknown error",
		    len > 0 && errors[len - 1] == '\n' ? "" : "\n");
		exit(EXIT_FAILED);
	}
	if (conf->control.socket == NULL) {
		fprintf(stderr, "tenantctl: %s: control.socket is not set\n",
		    file);
		exit(EXIT_FAILED);
	}
	path = xstrdup(conf->control.socket);
	conf_unref(conf);
	return path;
}

static int
connect_daemon(void)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(socket_path) >= sizeof(sun.sun_path))
		unreachable("the path is longer than %zu bytes",
		    sizeof(sun.sun_path) - 1);
	memcpy(sun.sun_path, socket_path, strlen(socket_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		unreachable("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		unreachable("%s%s", strerror(errno), errno == ENOENT ||
		    errno == ECONNREFUSED ? " (is tenantd running?)" : "");
	return fd;
}

/*
 * A write error is not fatal yet: a daemon that refuses a peer answers and
 * stops reading, and the answer is still there to read.
 */
static void
send_request(int fd, const char *name, json_t *args)
{
	json_t	*req;
	char	*line;
	size_t	 len, off;
	ssize_t	 n;

	req = json_pack("{s:s,s:O}", "cmd", name, "args", args);
	if (req == NULL || (line = json_dumps(req, JSON_COMPACT)) == NULL) {
		fprintf(stderr, "tenantctl: cannot encode the request\n");
		exit(EXIT_FAILED);
	}
	json_decref(req);
	if ((len = strlen(line)) >= CTL_LINE_MAX) {
		fprintf(stderr, "tenantctl: the request exceeds %d bytes\n",
		    CTL_LINE_MAX);
		exit(EXIT_USAGE);
	}
	line[len++] = '\n';	/* where the NUL was */
	for (off = 0; off < len; off += n)
		if ((n = send(fd, line + off, len - off, MSG_NOSIGNAL)) == -1)
			break;
	free(line);
}

/* What arrived after the answer line: the start of a stream. */
static char	*after_answer;
static size_t	 after_len;

/* Read one answer line, bounded in size and time. */
static json_t *
read_answer(int fd)
{
	struct pollfd	 pfd = { fd, POLLIN, 0 };
	json_error_t	 jerr;
	json_t		*answer;
	char		*buf = NULL, why[160] = "";
	size_t		 len = 0, size = 0;
	ssize_t		 n;

	while (why[0] == '\0' && (len == 0 || memchr(buf, '\n', len) == NULL)) {
		if (len == size && size >= ANSWER_MAX) {
			snprintf(why, sizeof(why), "answer exceeds %d bytes",
			    ANSWER_MAX);
			break;
		}
		if (len == size) {
			size = size == 0 ? 4096 : size * 2;
			buf = xreallocarray(buf, size, 1);
		}
		if ((n = poll(&pfd, 1, ANSWER_TIMEOUT_MS)) == 0)
			snprintf(why, sizeof(why), "no answer within %d s",
			    ANSWER_TIMEOUT_MS / 1000);
		else if (n == -1 || (n = read(fd, buf + len, size - len)) == -1)
			snprintf(why, sizeof(why), "%s", strerror(errno));
		else if (n == 0)
			snprintf(why, sizeof(why), "connection closed without "
			    "an answer");
		else
			len += n;
	}
	if (why[0] != '\0') {
		free(buf);
		unreachable("%s", why);
	}
	n = (char *)memchr(buf, '\n', len) - buf + 1;
	if ((answer = json_loadb(buf, (size_t)n, 0, &jerr)) == NULL ||
	    !json_is_object(answer)) {
		free(buf);
		unreachable("malformed answer: %s", jerr.text);
	}
	after_len = len - (size_t)n;
	after_answer = xmalloc(after_len + 1);
	memcpy(after_answer, buf + n, after_len);
	free(buf);
	return answer;
}

/* Print the outcome; returns the exit status. */
static int
report(const struct command *cmd, json_t *answer, int as_json)
{
	json_t		*result = json_object_get(answer, "result");
	const char	*error;
	size_t		 len;

	if (!json_is_true(json_object_get(answer, "ok"))) {
		error = json_string_value(json_object_get(answer, "error"));
		if (error == NULL)
			error = "failed (no reason given)";
		len = strlen(error);
		fprintf(stderr, "tenantctl: %s: %s%s", cmd->name, error,
		    len > 0 && error[len - 1] == '\n' ? "" : "\n");
		return EXIT_FAILED;
	}
	if (as_json || cmd->print == NULL) {
		if (json_dumpf(result, stdout, JSON_INDENT(2) |
		    JSON_ENCODE_ANY) == 0)
			putchar('\n');
	} else
		cmd->print(result);
	return fflush(stdout) == 0 ? 0 : EXIT_FAILED;
}

static json_t *
parse_args(const struct command *cmd, int argc, char **argv)
{
	json_t	*args = json_object();

	if (cmd->parse == NULL ? argc > 0 :
	    cmd->parse(argc, argv, args) == -1) {
		fprintf(stderr, "usage: tenantctl [OPTIONS] %s%s%s\n",
		    cmd->name, *cmd->usage ? " " : "", cmd->usage);
		exit(EXIT_USAGE);
	}
	return args;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL, 'c' },
		{ "socket",	required_argument,	NULL, 's' },
		{ "json",	no_argument,		NULL, 'j' },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL,		0,			NULL, 0 },
	};
	const struct command	*cmd;
	const char		*file = TENANTD_CONF;
	json_t			*args, *answer;
	int			 ch, as_json = 0, nwords, fd, status;

	log_init("tenantctl", LOG_LEVEL_WARN, 1);
	while ((ch = getopt_long(argc, argv, "+c:s:jh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case 'h':
			usage(stdout, 0);
		default:
			usage(stderr, EXIT_USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage(stderr, EXIT_USAGE);
	if ((cmd = command_find(argc, argv, &nwords)) == NULL) {
		fprintf(stderr, "tenantctl: unknown command '%s'\n", argv[0]);
		usage(stderr, EXIT_USAGE);
	}
	args = parse_args(cmd, argc - nwords, argv + nwords);
	if (cmd->local != NULL) {
		status = cmd->local(file, args);
		json_decref(args);
		return status;
	}
	if (socket_path == NULL)
		socket_path = socket_from_config(file);
	fd = connect_daemon();
	send_request(fd, cmd->name, args);
	answer = read_answer(fd);
	if (json_is_true(json_object_get(json_object_get(answer, "result"),
	    "stream")))
		status = tctl_stream_copy(fd, after_answer, after_len);
	else
		status = report(cmd, answer, as_json);
	close(fd);
	free(after_answer);
	json_decref(answer);
	json_decref(args);
	return status;
}
