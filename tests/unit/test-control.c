/*
 * test-control.c: the control socket against real unix sockets. A forked
 * child runs control.c on an event loop with the daemon_* calls stubbed.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "tenantd.h"
#include "unit.h"

static char		 tmpdir[] = "/tmp/test-control.XXXXXX";
static char		 sockpath[256];
static struct config	 stub_conf;
static char		 stub_conf_path[] = "/x.yaml";
static pid_t		 daemon_pid;

/* Stubs for what tenantd.c provides. reload fails, check-config passes. */
json_t *
daemon_status(void)
{
	return json_pack("{s:s,s:i}", "version", "test", "pid", getpid());
}

int
daemon_reload(char **errors)
{
	*errors = xstrdup("/x.yaml:3:7: unknown key 'listn'");
	return -1;
}

int
daemon_check_config(char **errors)
{
	return 0;
}

const struct config *
daemon_config(void)
{
	return &stub_conf;
}

char *
daemon_auth_mint(const char *user, unsigned roles, uint64_t ttl,
    char **error)
{
	*error = xstrdup("not in this test");
	return NULL;
}

static pid_t
start_daemon(void)
{
	struct event_base	*base;
	pid_t			 pid;

	if ((pid = fork()) != 0)
		return pid;
	log_init("test-control", LOG_LEVEL_WARN, 1);
	if ((base = event_base_new()) == NULL)
		_exit(2);
	control_init(base, &stub_conf);
	event_base_dispatch(base);
	_exit(0);
}

static int
ctl_connect(void)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, sockpath, strlen(sockpath));
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
wait_for_socket(void)
{
	int	i, fd;

	for (i = 0; i < 500; i++) {
		if ((fd = ctl_connect()) != -1)
			return fd;
		usleep(20000);
	}
	return -1;
}

/* Read one answer line; NULL on EOF or after 20 s. */
static json_t *
read_answer(int fd)
{
	static char	 buf[4096];
	struct pollfd	 pfd = { fd, POLLIN, 0 };
	size_t		 len = 0;
	ssize_t		 n;

	while (len < sizeof(buf) - 1 && memchr(buf, '\n', len) == NULL) {
		if (poll(&pfd, 1, 20000) != 1)
			return NULL;
		if ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) <= 0)
			return NULL;
		len += n;
	}
	return json_loadb(buf, len, 0, NULL);
}

static json_t *
roundtrip(int fd, const char *line)
{
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
		return NULL;
	return read_answer(fd);
}

static const char *
answer_error(json_t *a)
{
	return json_string_value(json_object_get(a, "error"));
}

static int
is_eof(int fd)
{
	struct pollfd	pfd = { fd, POLLIN, 0 };
	char		c;

	return poll(&pfd, 1, 20000) == 1 && read(fd, &c, 1) == 0;
}

static void
test_status(void)
{
	json_t	*a;
	int	 fd;

	CHECK((fd = ctl_connect()) != -1);
	a = roundtrip(fd, "{\"cmd\":\"status\"}\n");
	CHECK(json_is_true(json_object_get(a, "ok")));
	CHECK_STR(json_string_value(json_object_get(json_object_get(a,
	    "result"), "version")), "test");
	json_decref(a);
	/* a second request on the same connection, with args */
	a = roundtrip(fd, "{\"cmd\":\"check-config\",\"args\":{}}\n");
	CHECK(json_is_true(json_object_get(a, "ok")));
	CHECK_STR(json_string_value(json_object_get(json_object_get(a,
	    "result"), "config")), "/x.yaml");
	json_decref(a);
	close(fd);
}

static void
check_error(const char *request, const char *expect)
{
	json_t	*a;
	int	 fd;

	CHECK((fd = ctl_connect()) != -1);
	a = roundtrip(fd, request);
	CHECK(a != NULL);
	CHECK(json_is_false(json_object_get(a, "ok")));
	CHECK(answer_error(a) != NULL &&
	    strstr(answer_error(a), expect) != NULL);
	if (answer_error(a) == NULL || strstr(answer_error(a), expect) == NULL)
		printf("# request %s: got '%s'\n", request,
		    answer_error(a) ? answer_error(a) : "(null)");
	json_decref(a);
	close(fd);
}

static void
test_errors(void)
{
	check_error("{\"cmd\":\n", "malformed request");
	check_error("[1,2]\n", "malformed request");
	check_error("{\"cmd\":\"status\",\"args\":[]}\n", "\"args\" must be");
	check_error("{\"cmd\":\"status\",\"args\":{\"x\":1}}\n",
	    "takes no arguments");
	check_error("{\"cmd\":\"frobnicate\"}\n", "unknown command");
	check_error("{\"cmd\":\"reload\"}\n", "/x.yaml:3:7: unknown key");
}

/* A last request without a newline is answered once the peer shuts down. */
static void
test_eof_request(void)
{
	const char	*req = "{\"cmd\":\"nope\"}";
	json_t		*a;
	int		 fd;

	CHECK((fd = ctl_connect()) != -1);
	CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
	CHECK(shutdown(fd, SHUT_WR) == 0);
	a = read_answer(fd);
	CHECK(a != NULL && strstr(answer_error(a), "unknown command") != NULL);
	CHECK(is_eof(fd));
	json_decref(a);
	close(fd);
}

static void
test_long_line(void)
{
	char	*big;
	json_t	*a;
	int	 fd;

	big = xmalloc(CTL_LINE_MAX + 100);
	memset(big, ' ', CTL_LINE_MAX + 100);
	CHECK((fd = ctl_connect()) != -1);
	CHECK(write(fd, big, CTL_LINE_MAX + 100) == CTL_LINE_MAX + 100);
	a = read_answer(fd);
	CHECK(a != NULL && strstr(answer_error(a), "exceeds") != NULL);
	CHECK(is_eof(fd));
	json_decref(a);
	close(fd);
	free(big);
}

static void
test_client_limit(void)
{
	json_t	*a;
	int	 fds[16], fd, i;

	for (i = 0; i < 16; i++) {
		CHECK((fds[i] = ctl_connect()) != -1);
		a = roundtrip(fds[i], "{\"cmd\":\"status\"}\n");
		CHECK(json_is_true(json_object_get(a, "ok")));
		json_decref(a);
	}
	CHECK((fd = ctl_connect()) != -1);
	a = read_answer(fd);
	CHECK(a != NULL && strstr(answer_error(a), "too many") != NULL);
	json_decref(a);
	close(fd);
	for (i = 0; i < 16; i++)
		close(fds[i]);
	/* the slots come back once the daemon sees the EOFs */
	for (i = 0; i < 100; i++) {
		fd = ctl_connect();
		a = roundtrip(fd, "{\"cmd\":\"status\"}\n");
		close(fd);
		if (json_is_true(json_object_get(a, "ok")))
			break;
		json_decref(a);
		usleep(50000);
	}
	CHECK(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
}

static void
test_modes(void)
{
	struct stat	st;
	char		dir[256];

	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0750);
	CHECK(stat(sockpath, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    (st.st_mode & 07777) == 0660);
}

/* A second daemon on the same socket must refuse to start. */
static void
test_second_instance(void)
{
	pid_t	pid;
	int	status, fd;
	json_t	*a;

	pid = start_daemon();
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
	CHECK((fd = ctl_connect()) != -1);
	a = roundtrip(fd, "{\"cmd\":\"status\"}\n");
	CHECK(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	close(fd);
}

/* Another uid gets through the file modes but not SO_PEERCRED. */
static void
test_denied(void)
{
	char	 dir[256];
	json_t	*a;
	pid_t	 pid;
	int	 status, fd, ok;

	if (geteuid() != 0) {
		printf("# skipped: needs root to switch uid\n");
		return;
	}
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	chmod(tmpdir, 0755);
	chmod(dir, 0755);
	chmod(sockpath, 0666);
	if ((pid = fork()) == 0) {
		if (setgroups(0, NULL) == -1 || setresgid(65534, 65534,
		    65534) == -1 || setresuid(65534, 65534, 65534) == -1)
			_exit(2);
		fd = wait_for_socket();
		a = roundtrip(fd, "{\"cmd\":\"status\"}\n");
		ok = a != NULL && json_is_false(json_object_get(a, "ok")) &&
		    strstr(answer_error(a), "permission denied: uid 65534") !=
		    NULL;
		_exit(ok && is_eof(fd) ? 0 : 1);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	chmod(sockpath, 0660);
	chmod(dir, 0750);
}

/* A daemon killed without cleanup leaves its socket; the next takes over. */
static void
test_stale_socket(void)
{
	struct stat	 st;
	json_t		*a;
	int		 fd;

	kill(daemon_pid, SIGKILL);
	waitpid(daemon_pid, NULL, 0);
	CHECK(stat(sockpath, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK(ctl_connect() == -1 && errno == ECONNREFUSED);
	daemon_pid = start_daemon();
	CHECK((fd = wait_for_socket()) != -1);
	a = roundtrip(fd, "{\"cmd\":\"status\"}\n");
	CHECK(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	close(fd);
}

int
main(void)
{
	char	dir[256];
	int	fd;

	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	snprintf(sockpath, sizeof(sockpath), "%s/run/control.sock", tmpdir);
	stub_conf.path = stub_conf_path;
	stub_conf.control.socket = sockpath;

	daemon_pid = start_daemon();
	if ((fd = wait_for_socket()) == -1) {
		printf("Bail out! control socket never came up\n");
		return 1;
	}
	close(fd);
	TEST(test_modes);
	TEST(test_status);
	TEST(test_errors);
	TEST(test_eof_request);
	TEST(test_long_line);
	TEST(test_client_limit);
	TEST(test_second_instance);
	TEST(test_denied);
	TEST(test_stale_socket);
	kill(daemon_pid, SIGTERM);
	waitpid(daemon_pid, NULL, 0);
	unlink(sockpath);
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	rmdir(dir);
	rmdir(tmpdir);
	return unit_done();
}
