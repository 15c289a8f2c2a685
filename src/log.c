/*
 * log.c: structured logging. Every record is one JSON line on stderr
 * (journald collects it) or to syslog when detached; a sink hook lets the
 * log shipper see the same lines.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "tenantd.h"

#define LOG_LINE_MAX	8192
#define LOG_MSG_MAX	2048

static const char	*log_procname = "tenantd";
static enum log_level	 log_level = LOG_LEVEL_INFO;
static int		 log_stderr = 1;
static log_sink_fn	 log_sink;
static __thread char	 log_reqid[65];

static const struct {
	const char	*name;
	int		 syslog_prio;
} log_levels[] = {
	[LOG_LEVEL_ERROR] = { "error", LOG_ERR },
	[LOG_LEVEL_WARN] = { "warn", LOG_WARNING },
	[LOG_LEVEL_INFO] = { "info", LOG_INFO },
	[LOG_LEVEL_DEBUG] = { "debug", LOG_DEBUG },
};

struct line {
	char	buf[LOG_LINE_MAX];
	size_t	len;
};

void
log_init(const char *procname, enum log_level level, int to_stderr)
{
	log_procname = procname;
	log_level = level;
	log_stderr = to_stderr;
	if (!to_stderr)
		openlog(procname, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_setlevel(enum log_level level)
{
	log_level = level;
}

enum log_level
log_getlevel(void)
{
	return log_level;
}

const char *
log_level_name(enum log_level level)
{
	return log_levels[level].name;
}

int
log_level_parse(const char *s, enum log_level *level)
{
	size_t	i;

	for (i = 0; i < nitems(log_levels); i++) {
		if (strcmp(s, log_levels[i].name) == 0) {
			*level = i;
			return 0;
		}
	}
	return -1;
}

void
log_set_sink(log_sink_fn fn)
{
	log_sink = fn;
}

void
log_set_request_id(const char *id)
{
	if (id == NULL)
		log_reqid[0] = '\0';
	else
		snprintf(log_reqid, sizeof(log_reqid), "%s", id);
}

static void
line_add(struct line *l, const char *s, size_t n)
{
	/* keep room for the closing "}" */
	if (n > sizeof(l->buf) - 2 - l->len)
		n = sizeof(l->buf) - 2 - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
line_add_escaped(struct line *l, const char *s, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	char			 esc[6];
	unsigned char		 c;
	size_t			 i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = c;
			line_add(l, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			line_add(l, esc, 6);
		} else
			line_add(l, (const char *)&s[i], 1);
	}
}

static void
line_add_pair(struct line *l, const char *key, const char *value)
{
	line_add(l, ",\"", 2);
	line_add_escaped(l, key, strlen(key));
	line_add(l, "\":\"", 3);
	line_add_escaped(l, value, strlen(value));
	line_add(l, "\"", 1);
}

static void
log_emit(enum log_level level, const struct log_field *fields, size_t nfields,
    const char *msg)
{
	struct line	 l;
	char		 ts[40];
	size_t		 i;

	l.len = 0;
	format_iso8601(ts, sizeof(ts), wall_usec());
	line_add(&l, "{\"ts\":\"", 7);
	line_add(&l, ts, strlen(ts));
	line_add(&l, "\"", 1);
	line_add_pair(&l, "level", log_levels[level].name);
	line_add_pair(&l, "proc", log_procname);
	line_add_pair(&l, "msg", msg);
	if (log_reqid[0] != '\0')
		line_add_pair(&l, "request_id", log_reqid);
	for (i = 0; i < nfields; i++)
		line_add_pair(&l, fields[i].key, fields[i].value);
	line_add(&l, "}", 1);
	if (log_sink != NULL && level <= LOG_LEVEL_INFO)
		log_sink(level, l.buf, l.len);
	if (log_stderr) {
		l.buf[l.len++] = '\n';
		if (write(STDERR_FILENO, l.buf, l.len) == -1)
			return;	/* nowhere left to report it */
	} else
		syslog(log_levels[level].syslog_prio, "%.*s", (int)l.len,
		    l.buf);
}

static void
log_vfields(enum log_level level, const struct log_field *fields,
    size_t nfields, int with_errno, const char *fmt, va_list ap)
{
	char	msg[LOG_MSG_MAX];
	int	saved_errno = errno;
	size_t	n;

	if (level > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (with_errno) {
		n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s",
		    strerror(saved_errno));
	}
	log_emit(level, fields, nfields, msg);
	errno = saved_errno;
}

void
log_fields(enum log_level level, const struct log_field *fields,
    size_t nfields, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vfields(level, fields, nfields, 0, fmt, ap);
	va_end(ap);
}

#define LOG_FN(name, level, with_errno)				\
void									\
name(const char *fmt, ...)						\
{									\
	va_list	ap;							\
									\
	va_start(ap, fmt);						\
	log_vfields(level, NULL, 0, with_errno, fmt, ap);		\
	va_end(ap);							\
}

LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vfields(LOG_LEVEL_ERROR, NULL, 0, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vfields(LOG_LEVEL_ERROR, NULL, 0, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
