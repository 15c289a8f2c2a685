/*
 * control.c: the daemon side of the operator control socket: the unix
 * listener, peer credential checks, line framing with bounds, dispatch.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "tenantd.h"

#define CTL_CLIENTS_MAX		16
#define CTL_REQUEST_TIMEOUT	10	/* seconds per request */
#define CTL_BACKLOG		16

struct ctl_stream {
	ctl_stream_fn	 fn;
	void		(*free_arg)(void *);
	void		*arg;
};

struct ctl_client {
	TAILQ_ENTRY(ctl_client)	 entry;
	struct bufferevent	*bev;
	struct event		*timer;
	struct ctl_peer		 peer;
	int			 closing;	/* close once answered */
	int			 eof;		/* peer shut down writing */
	struct ctl_stream	 stream;	/* being sent after an answer */
};
TAILQ_HEAD(ctl_clients, ctl_client);

static struct {
	struct event_base	*base;
	struct evconnlistener	*listener;
	char			*path;
	char			*group;		/* admin group name or NULL */
	gid_t			 gid;
	struct ctl_clients	 clients;
	size_t			 nclients;
} ctl = { .clients = TAILQ_HEAD_INITIALIZER(ctl.clients) };

static void	ctl_client_free(struct ctl_client *);

static json_t *
ctl_error(const char *fmt, ...) PRINTFLIKE(1, 2);

static json_t *
ctl_error(const char *fmt, ...)
{
	va_list	 ap;
	char	 msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

/*
 * The one place every operator command passes through once its outcome is
 * known: one audit record (actor "operator:<uid>", the command's action,
 * the outcome). A command whose record cannot be written answers an error
 * and sends no stream.
 */
static int
ctl_audit(const struct ctl_peer *peer, const char *cmd, const char *error)
{
	char	first[256];

	if (error == NULL)
		return audit_ctl(peer->uid, cmd, NULL);
	/* multi-line errors (FILE:LINE:COL lists): the first line is enough */
	snprintf(first, sizeof(first), "%.*s", (int)strcspn(error, "\n"),
	    error);
	return audit_ctl(peer->uid, cmd, first);
}

/* --- streams after an answer (tenantctl audit export) --------------------- */

static struct ctl_stream	ctl_pending;	/* set by a handler */

void
ctl_stream_begin(ctl_stream_fn fn, void (*free_arg)(void *), void *arg)
{
	ctl_pending = (struct ctl_stream){ fn, free_arg, arg };
}

static void
ctl_stream_free(struct ctl_stream *s)
{
	if (s->free_arg != NULL)
		s->free_arg(s->arg);
	memset(s, 0, sizeof(*s));
}

static json_t *
ctl_execute(const struct ctl_peer *peer, const char *name, json_t *args)
{
	const struct ctl_command	*cmd;
	json_t				*result, *answer;
	char				*error = NULL;

	if ((cmd = ctl_command_find(name)) == NULL) {
		ctl_audit(peer, name, "unknown command");
		return ctl_error("unknown command '%.64s'", name);
	}
	result = cmd->handler(peer, args, &error);
	if (ctl_audit(peer, cmd->name, result != NULL ? NULL :
	    error != NULL ? error : "failed") == -1 && result != NULL) {
		json_decref(result);
		result = NULL;
		error = xstrdup("the audit record of this command could not "
		    "be written, so its answer is withheld (see the daemon's "
		    "log)");
	}
	if (result == NULL && ctl_pending.fn != NULL)
		ctl_stream_free(&ctl_pending);
	if (result != NULL)
		answer = json_pack("{s:b,s:o}", "ok", 1, "result", result);
	else
		answer = json_pack("{s:b,s:s}", "ok", 0, "error",
		    error != NULL ? error : "command failed");
	free(error);
	return answer;
}

/* Parse one request line and run it; always returns an answer. */
static json_t *
ctl_dispatch(const struct ctl_peer *peer, const char *line, size_t len)
{
	json_error_t	 jerr;
	json_t		*req, *args, *answer;
	const char	*name;

	if ((req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL)
		return ctl_error("malformed request: %s (column %d)",
		    jerr.text, jerr.column);
	name = json_string_value(json_object_get(req, "cmd"));
	args = json_object_get(req, "args");
	if (!json_is_object(req) || name == NULL)
		answer = ctl_error("malformed request: expected "
		    "{\"cmd\":\"NAME\",\"args\":{...}}");
	else if (args != NULL && !json_is_object(args))
		answer = ctl_error("malformed request: \"args\" must be an "
		    "object");
	else if (args == NULL) {
		args = json_object();
		answer = ctl_execute(peer, name, args);
		json_decref(args);
	} else
		answer = ctl_execute(peer, name, args);
	json_decref(req);
	return answer;
}

static void
ctl_arm_timer(struct ctl_client *c)
{
	struct timeval	tv = { CTL_REQUEST_TIMEOUT, 0 };

	evtimer_add(c->timer, &tv);
}

/* Queue an answer line; with close set, drop the client once it is out. */
static void
ctl_send(struct ctl_client *c, json_t *answer, int close)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);
	char		*s;

	if (answer == NULL || (s = json_dumps(answer, JSON_COMPACT)) == NULL)
		s = xstrdup("{\"ok\":false,\"error\":\"cannot encode the "
		    "answer (invalid UTF-8?)\"}");
	json_decref(answer);
	evbuffer_add(out, s, strlen(s));
	evbuffer_add(out, "\n", 1);
	free(s);
	if (close) {
		c->closing = 1;
		evbuffer_drain(bufferevent_get_input(c->bev),
		    evbuffer_get_length(bufferevent_get_input(c->bev)));
	}
	ctl_arm_timer(c);
}

/*
 * Keep at most CTL_STREAM_QUEUE bytes queued; the write callback (below
 * half of it) asks for more. The end line closes the stream.
 */
static void
ctl_stream_pump(struct ctl_client *c)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev), *chunk;
	char		*error = NULL, hdr[48];
	int		 rv;

	chunk = evbuffer_new();
	while (c->stream.fn != NULL &&
	    evbuffer_get_length(out) < CTL_STREAM_QUEUE) {
		rv = c->stream.fn(c->stream.arg, chunk, CTL_STREAM_QUEUE / 4,
		    &error);
		if (evbuffer_get_length(chunk) > 0) {
			snprintf(hdr, sizeof(hdr), "{\"chunk\":%zu}\n",
			    evbuffer_get_length(chunk));
			evbuffer_add(out, hdr, strlen(hdr));
			evbuffer_add_buffer(out, chunk);
		}
		if (rv == 1)
			continue;
		ctl_stream_free(&c->stream);
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		bufferevent_enable(c->bev, EV_READ);
		ctl_send(c, rv == 0 ? json_pack("{s:b}", "end", 1) :
		    json_pack("{s:b,s:s}", "end", 0, "error",
		    error != NULL ? error : "failed"), c->closing);
		free(error);
	}
	evbuffer_free(chunk);
	ctl_arm_timer(c);
}

/* Answer one request; a command that streams starts sending. */
static void
ctl_answer(struct ctl_client *c, const char *line, size_t len, int close)
{
	ctl_send(c, ctl_dispatch(&c->peer, line, len), close);
	if (ctl_pending.fn == NULL)
		return;
	c->stream = ctl_pending;
	memset(&ctl_pending, 0, sizeof(ctl_pending));
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, CTL_STREAM_QUEUE / 2, 0);
	ctl_stream_pump(c);
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 len;

	while (!c->closing && c->stream.fn == NULL &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (len > CTL_LINE_MAX)
			ctl_send(c, ctl_error("request line exceeds %d bytes",
			    CTL_LINE_MAX), 1);
		else
			ctl_answer(c, line, len, 0);
		free(line);
	}
	if (!c->closing && evbuffer_get_length(in) > CTL_LINE_MAX)
		ctl_send(c, ctl_error("request line exceeds %d bytes",
		    CTL_LINE_MAX), 1);
	if (c->closing)
		evbuffer_drain(in, evbuffer_get_length(in));
}

/*
 * Once a closing client's answer is out, stop sending and wait for its EOF:
 * closing with its request unread would reset the connection and could
 * destroy the answer before the peer reads it.
 */
static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_client	*c = arg;

	if (c->stream.fn != NULL) {
		ctl_stream_pump(c);
		return;
	}
	if (!c->closing)
		return;
	if (c->eof)
		ctl_client_free(c);
	else
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	size_t			 len = evbuffer_get_length(in);

	if (!(what & BEV_EVENT_EOF)) {
		ctl_client_free(c);
		return;
	}
	c->eof = 1;
	bufferevent_disable(bev, EV_READ);
	/* a last request without a newline, as from `printf ... | nc -U` */
	if (!c->closing && len > 0 && len <= CTL_LINE_MAX)
		ctl_answer(c, (const char *)evbuffer_pullup(in, -1), len, 1);
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_client_free(c);
	else
		c->closing = 1;
}

static void
ctl_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_client	*c = arg;

	if (c->closing || c->stream.fn != NULL) {
		ctl_client_free(c);	/* a stalled stream, too */
		return;
	}
	ctl_send(c, ctl_error("no complete request within %d s",
	    CTL_REQUEST_TIMEOUT), 1);
}

static struct ctl_client *
ctl_client_new(evutil_socket_t fd, const struct ctl_peer *peer)
{
	struct ctl_client	*c;
	struct timeval		 tv = { CTL_REQUEST_TIMEOUT, 0 };

	c = xcalloc(1, sizeof(*c));
	c->peer = *peer;
	c->bev = bufferevent_socket_new(ctl.base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(ctl.base, ctl_timeout_cb, c);
	if (c->bev == NULL || c->timer == NULL)
		fatalx("control: cannot allocate a client");
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_LINE_MAX + 1);
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	ctl_arm_timer(c);
	TAILQ_INSERT_TAIL(&ctl.clients, c, entry);
	ctl.nclients++;
	return c;
}

static void
ctl_client_free(struct ctl_client *c)
{
	TAILQ_REMOVE(&ctl.clients, c, entry);
	ctl.nclients--;
	ctl_stream_free(&c->stream);
	event_free(c->timer);
	bufferevent_free(c->bev);
	free(c);
}

/* SO_PEERGROUPS: is gid among the peer's supplementary groups? */
static int
ctl_peer_in_group(int fd, gid_t gid)
{
	gid_t		 small[64], *groups = small;
	socklen_t	 len = sizeof(small);
	size_t		 i;
	int		 found = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1) {
		if (errno != ERANGE || len == 0 ||
		    len > NGROUPS_MAX * sizeof(gid_t))
			return 0;
		groups = xmalloc(len);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups,
		    &len) == -1)
			len = 0;
	}
	for (i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == gid)
			found = 1;
	if (groups != small)
		free(groups);
	return found;
}

static int
ctl_peer_allowed(int fd, const struct ctl_peer *peer)
{
	if (peer->uid == 0 || peer->uid == geteuid())
		return 1;
	if (ctl.group == NULL)
		return 0;
	return peer->gid == ctl.gid || ctl_peer_in_group(fd, ctl.gid);
}

static int
ctl_peer_read(int fd, struct ctl_peer *peer)
{
	struct ucred	uc;
	socklen_t	len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1) {
		log_warn("control: SO_PEERCRED");
		return -1;
	}
	peer->uid = uc.uid;
	peer->gid = uc.gid;
	peer->pid = uc.pid;
	return 0;
}

static void
ctl_deny(evutil_socket_t fd, const struct ctl_peer *peer)
{
	struct log_field	 field;
	json_t			*answer;
	char			 uid[16];

	snprintf(uid, sizeof(uid), "%u", (unsigned)peer->uid);
	field = (struct log_field){ "uid", uid };
	log_fields(LOG_LEVEL_WARN, &field, 1,
	    "control: permission denied for uid %s", uid);
	audit_ctl_denied(peer->uid);
	if (ctl.group == NULL)
		answer = ctl_error("permission denied: uid %s is not root or "
		    "the tenantd user", uid);
	else
		answer = ctl_error("permission denied: uid %s is not root, "
		    "the tenantd user or in group '%s'", uid, ctl.group);
	ctl_send(ctl_client_new(fd, peer), answer, 1);
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	static const char	 busy[] = "{\"ok\":false,\"error\":"
	    "\"too many control clients, try again later\"}\n";
	struct ctl_peer		 peer;

	if (ctl.nclients >= CTL_CLIENTS_MAX) {
		log_warnx("control: %d clients connected, refusing another",
		    CTL_CLIENTS_MAX);
		(void)send(fd, busy, sizeof(busy) - 1,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		close(fd);
		return;
	}
	if (ctl_peer_read(fd, &peer) == -1) {
		close(fd);
		return;
	}
	if (!ctl_peer_allowed(fd, &peer)) {
		ctl_deny(fd, &peer);
		return;
	}
	ctl_client_new(fd, &peer);
}

static void
ctl_accept_error_cb(struct evconnlistener *l, void *arg)
{
	log_warn("control: accept on %s", ctl.path);
}

static void
ctl_sockaddr(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		fatalx("control.socket %s: longer than %zu bytes", path,
		    sizeof(sun->sun_path) - 1);
	memcpy(sun->sun_path, path, strlen(path));
}

/* Create the socket's directory if missing, owned by the admin group. */
static void
ctl_make_parent(const char *path)
{
	struct stat	 st;
	char		*dir, *slash;

	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir) {
		free(dir);
		return;
	}
	*slash = '\0';
	if (stat(dir, &st) == -1) {
		if (errno != ENOENT || mkdir(dir, 0750) == -1)
			fatal("control.socket: creating directory %s", dir);
		if (ctl.group != NULL && chown(dir, (uid_t)-1, ctl.gid) == -1)
			fatal("control.socket: chown %s to group %s", dir,
			    ctl.group);
	} else if (!S_ISDIR(st.st_mode))
		fatalx("control.socket: %s is not a directory", dir);
	free(dir);
}

/* Refuse a live socket (another tenantd), remove a stale one. */
static void
ctl_clear_stale(const char *path)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd, rc;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return;
		fatal("control socket %s", path);
	}
	if (!S_ISSOCK(st.st_mode))
		fatalx("control socket %s exists and is not a socket; "
		    "refusing to replace it", path);
	ctl_sockaddr(&sun, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		fatal("control: socket");
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (rc == 0 || errno == EAGAIN)
		fatalx("control socket %s is in use: another tenantd is "
		    "running (stop it, or set control.socket)", path);
	if (errno != ECONNREFUSED && errno != ENOENT)
		fatal("control socket %s: probing the existing socket", path);
	close(fd);
	if (unlink(path) == -1 && errno != ENOENT)
		fatal("control socket %s: removing the stale socket", path);
	log_info("control: removed stale socket %s", path);
}

static int
ctl_bind(const char *path)
{
	struct sockaddr_un	 sun;
	mode_t			 old;
	int			 fd;

	ctl_sockaddr(&sun, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		fatal("control: socket");
	old = umask(0117);	/* never world-reachable, not even briefly */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		fatal("control socket %s: bind", path);
	umask(old);
	if (chmod(path, 0660) == -1)
		fatal("control socket %s: chmod", path);
	if (ctl.group != NULL && chown(path, (uid_t)-1, ctl.gid) == -1)
		fatal("control socket %s: chown to group %s", path, ctl.group);
	return fd;
}

static void
ctl_resolve_group(const char *name)
{
	struct group	*gr;

	if (name == NULL)
		return;
	errno = 0;
	if ((gr = getgrnam(name)) == NULL) {
		if (errno != 0)
			fatal("control.group %s", name);
		fatalx("control.group %s: no such group", name);
	}
	ctl.group = xstrdup(name);
	ctl.gid = gr->gr_gid;
}

int
control_init(struct event_base *base, const struct config *conf)
{
	const char	*path = conf->control.socket;
	int		 fd;

	if (path == NULL || *path == '\0')
		fatalx("control.socket is not set");
	ctl.base = base;
	ctl_resolve_group(conf->control.group);
	ctl_make_parent(path);
	ctl_clear_stale(path);
	fd = ctl_bind(path);
	ctl.listener = evconnlistener_new(base, ctl_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, CTL_BACKLOG, fd);
	if (ctl.listener == NULL)
		fatal("control socket %s: listen", path);
	evconnlistener_set_error_cb(ctl.listener, ctl_accept_error_cb);
	ctl.path = xstrdup(path);
	log_info("control socket %s", path);
	return 0;
}

void
control_shutdown(void)
{
	struct ctl_client	*c;

	while ((c = TAILQ_FIRST(&ctl.clients)) != NULL)
		ctl_client_free(c);
	if (ctl.listener != NULL) {
		evconnlistener_free(ctl.listener);
		ctl.listener = NULL;
	}
	if (ctl.path != NULL) {
		if (unlink(ctl.path) == -1 && errno != ENOENT)
			log_warn("control socket %s: unlink", ctl.path);
		free(ctl.path);
		ctl.path = NULL;
	}
	free(ctl.group);
	ctl.group = NULL;
}
