/* test-conf.c: the configuration parser, schema, defaults and secrets. */
#include "config.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tenantd.h"
#include "unit.h"

#define GUID	"72f988bf-86f1-41af-91ab-2d7cd011db47"
#define MINIMAL	"tenant_id: " GUID "\n" \
	"listen:\n  - address: \"127.0.0.1:0\"\n    tls: false\n"

static char	tmpdir[] = "/tmp/test-conf.XXXXXX";
static char	conf_path[256];
static char	cert_path[256];
static char	key_path[256];

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int	fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fatal("write %s", path);
	fchmod(fd, mode);
	close(fd);
}

/* Loads text; returns the config or NULL with *errors set. */
static struct config *
load(const char *text, char **errors)
{
	write_file(conf_path, text, 0600);
	return conf_load(conf_path, 0, errors);
}

/* Loads text, expecting failure; returns the errors without "FILE:". */
static char *
load_errors(const char *text)
{
	static char	 buf[8192];
	struct config	*conf;
	char		*errors = NULL, *p, *line;
	size_t		 prefix = strlen(conf_path) + 1;

	conf = load(text, &errors);
	CHECK(conf == NULL);
	conf_unref(conf);
	buf[0] = '\0';
	for (p = errors; p != NULL && (line = strsep(&p, "\n")) != NULL;) {
		if (*line == '\0')
			continue;
		CHECK(strncmp(line, conf_path, prefix - 1) == 0);
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s\n",
		    line + prefix);
	}
	free(errors);
	return buf;
}

static void
test_minimal_defaults(void)
{
	struct config	*conf;
	char		*errors;

	conf = load(MINIMAL, &errors);
	CHECK(conf != NULL && errors == NULL);
	if (conf == NULL) {
		printf("# %s", errors);
		free(errors);
		return;
	}
	CHECK_STR(conf->tenant_id, GUID);
	CHECK_STR(conf->state_dir, "/var/lib/tenantd");
	CHECK(conf->log_level == LOG_LEVEL_INFO);
	CHECK(conf->nlisten == 1 && conf->listen[0].tls == 0);
	CHECK(conf->listen[0].ss.ss_family == AF_INET);
	CHECK(conf->tls.certificate == NULL && !conf->tls.self_signed);
	CHECK(conf->tls.hsts_max_age == 365 * 86400);
	CHECK(conf->http.workers == 0 && conf->http.max_connections == 1024);
	CHECK(conf->http.max_header_size == 16 * 1024);
	CHECK(conf->http.max_body_size == 1024 * 1024);
	CHECK(conf->http.idle_timeout == 60000);
	CHECK(conf->http.request_timeout == 30000);
	CHECK(conf->http.shutdown_timeout == 10000);
	CHECK(conf->cors.norigins == 0 && conf->cors.max_age == 600);
	CHECK(conf->metrics.allow_remote == 0);
	CHECK_STR(conf->control.socket, "/run/tenantd/control.sock");
	CHECK(conf->control.group == NULL);
	CHECK_STR(conf->path, conf_path);
	conf_unref(conf);
}

static void
test_full(void)
{
	struct config	*conf;
	char		*errors, text[2048];

	snprintf(text, sizeof(text), "tenant_id: 72F988BF-86F1-41AF-91AB-"
	    "2D7CD011DB47\nstate_dir: /srv/t\nlog: {level: debug}\n"
	    "listen:\n  - address: \"[::]:8443\"\n"
	    "  - {address: \"[::1]:8080\", tls: false}\n"
	    "tls:\n  certificate: %s\n  key: %s\n  hsts_max_age: 0\n"
	    "http:\n  workers: 4\n  max_connections: 10\n"
	    "  max_header_size: 8KB\n  max_body_size: 2MiB\n"
	    "  idle_timeout: 1500ms\n  request_timeout: 2m\n"
	    "  shutdown_timeout: 0\n"
	    "cors:\n  allowed_origins: [https://contoso.sharepoint.com, "
	    "\"https://a.example:8443\", http://localhost:3000, "
	    "\"http://[::1]:9\"]\n  max_age: 1h\n"
	    "metrics: {allow_remote: true}\n"
	    "control: {socket: ./ctl.sock, group: root}\n",
	    cert_path, key_path);
	conf = load(text, &errors);
	CHECK(conf != NULL);
	if (conf == NULL) {
		printf("# %s", errors);
		free(errors);
		return;
	}
	CHECK_STR(conf->tenant_id, GUID);
	CHECK(conf->log_level == LOG_LEVEL_DEBUG);
	CHECK(conf->nlisten == 2 && conf->listen[0].tls == 1);
	CHECK(conf->listen[1].ss.ss_family == AF_INET6);
	CHECK_STR(conf->tls.certificate, cert_path);
	CHECK_STR(conf->tls.key, key_path);
	CHECK(conf->tls.hsts_max_age == 0);
	CHECK(conf->http.workers == 4 && conf->http.max_connections == 10);
	CHECK(conf->http.max_header_size == 8000);
	CHECK(conf->http.max_body_size == 2 * 1024 * 1024);
	CHECK(conf->http.idle_timeout == 1500);
	CHECK(conf->http.request_timeout == 120000);
	CHECK(conf->http.shutdown_timeout == 0);
	CHECK(conf->cors.norigins == 4);
	CHECK_STR(conf->cors.origins[0], "https://contoso.sharepoint.com");
	CHECK_STR(conf->cors.origins[3], "http://[::1]:9");
	CHECK(conf->cors.max_age == 3600);
	CHECK(conf->metrics.allow_remote == 1);
	CHECK_STR(conf->control.socket, "./ctl.sock");
	CHECK_STR(conf->control.group, "root");
	CHECK(conf_ref(conf) == conf && conf->refcnt == 2);
	conf_unref(conf);
	conf_unref(conf);
}

static void
test_self_signed(void)
{
	struct config	*conf;
	char		*errors;

	conf = load("tenant_id: " GUID "\nstate_dir: ./var\n"
	    "listen: [{address: \"127.0.0.1:0\"}]\ntls: self-signed\n",
	    &errors);
	CHECK(conf != NULL);
	if (conf == NULL)
		return;
	CHECK(conf->tls.self_signed == 1);
	CHECK_STR(conf->tls.certificate, "./var/tls/cert.pem");
	CHECK_STR(conf->tls.key, "./var/tls/key.pem");
	CHECK(conf->tls.hsts_max_age == 365 * 86400);
	conf_unref(conf);
}

static void
test_log_level_names(void)
{
	char		 text[512];
	enum log_level	 l;
	struct config	*conf;
	char		*errors;

	/* The schema's names must follow enum log_level. */
	for (l = LOG_LEVEL_ERROR; l <= LOG_LEVEL_DEBUG; l++) {
		snprintf(text, sizeof(text), MINIMAL "log:\n  level: %s\n",
		    log_level_name(l));
		conf = load(text, &errors);
		CHECK(conf != NULL && conf->log_level == l);
		conf_unref(conf);
	}
}

static void
test_unknown_keys(void)
{
	CHECK_STR(load_errors(MINIMAL "http:\n  listn: 3\n"),
	    "6:3: unknown key 'listn' in 'http'\n");
	CHECK_STR(load_errors(MINIMAL "http:\n  idle_timout: 3s\n"),
	    "6:3: unknown key 'idle_timout' in 'http' "
	    "(did you mean 'idle_timeout'?)\n");
	CHECK_STR(load_errors(MINIMAL "lsten: []\n"),
	    "5:1: unknown key 'lsten' (did you mean 'listen'?)\n");
	CHECK_STR(load_errors("tenant_id: " GUID "\nlisten:\n"
	    "  - adress: \"127.0.0.1:1\"\n"),
	    "3:5: unknown key 'adress' in 'listen[0]' "
	    "(did you mean 'address'?)\n"
	    "3:5: missing required key 'address' in 'listen[0]'\n"
	    "1:1: missing required key 'tls' (listen[0] has tls: true)\n");
	CHECK_STR(load_errors(MINIMAL "log: {level: debg}\n"),
	    "5:14: log.level: expected one of error, warn, info, debug, "
	    "got 'debg' (did you mean 'debug'?)\n");
}

static void
test_types(void)
{
	CHECK_STR(load_errors(MINIMAL "http: {idle_timeout: 30}\n"),
	    "5:22: http.idle_timeout: expected a duration like 30s, 15m, "
	    "90d, got '30'\n");
	CHECK_STR(load_errors(MINIMAL "http: {max_body_size: 1TiB}\n"),
	    "5:23: http.max_body_size: expected a size like 512, 64KiB, "
	    "1MiB, got '1TiB'\n");
	CHECK_STR(load_errors(MINIMAL "http: {workers: two}\n"),
	    "5:17: http.workers: expected an integer, got 'two'\n");
	CHECK_STR(load_errors(MINIMAL "metrics: {allow_remote: yes}\n"),
	    "5:25: metrics.allow_remote: expected true or false, "
	    "got 'yes'\n");
	CHECK_STR(load_errors(MINIMAL "http: [1]\n"),
	    "5:7: http: expected a map, not a list\n");
	CHECK_STR(load_errors(MINIMAL "state_dir: {a: 1}\n"),
	    "5:12: state_dir: expected a string, not a map\n");
	CHECK_STR(load_errors(MINIMAL "state_dir: \"\"\n"),
	    "5:12: state_dir: must not be empty\n");
	CHECK_STR(load_errors(MINIMAL "state_dir:\n"),
	    "5:11: state_dir: no value given\n");
	CHECK_STR(load_errors(MINIMAL "cors: {max_age: 1500ms}\n"),
	    "5:17: cors.max_age: 1500ms is not a whole number of seconds\n");
	CHECK_STR(load_errors("tenant_id: " GUID "\nlisten: x\n"),
	    "2:9: listen: expected a list\n");
	CHECK_STR(load_errors("- a\n- b\n"),
	    "1:1: expected a map of settings at the top level\n");
}

static void
test_bounds(void)
{
	CHECK_STR(load_errors(MINIMAL "http: {workers: 257}\n"),
	    "5:17: http.workers: 257 is out of range (allowed 0 to 256)\n");
	CHECK_STR(load_errors(MINIMAL "http: {workers: -1}\n"),
	    "5:17: http.workers: -1 is out of range (allowed 0 to 256)\n");
	CHECK_STR(load_errors(MINIMAL "http: {idle_timeout: 2h}\n"),
	    "5:22: http.idle_timeout: 2h is out of range "
	    "(allowed 1s to 1h)\n");
	CHECK_STR(load_errors(MINIMAL "http: {max_header_size: 512}\n"),
	    "5:25: http.max_header_size: 512 is out of range "
	    "(allowed 1KiB to 1MiB)\n");
	CHECK_STR(load_errors(MINIMAL "http: {max_body_size: 99999999999"
	    "999999999GiB}\n"),
	    "5:23: http.max_body_size: expected a size like 512, 64KiB, "
	    "1MiB, got '99999999999999999999GiB'\n");
	CHECK_STR(load_errors("tenant_id: " GUID "\nlisten: []\n"),
	    "2:9: listen: needs at least 1 item\n");
}

static void
test_checks(void)
{
	CHECK_STR(load_errors("tenant_id: 72f988bf\nlisten: "
	    "[{address: \"127.0.0.1:1\", tls: false}]\n"),
	    "1:12: tenant_id: '72f988bf' is not a GUID like "
	    "72f988bf-86f1-41af-91ab-2d7cd011db47\n");
	CHECK_STR(load_errors("tenant_id: " GUID "\nlisten:\n"
	    "  - address: \"0.0.0.0:80\"\n    tls: false\n"),
	    "4:10: listen[0]: tls: false is only allowed on a loopback "
	    "address, not 0.0.0.0:80\n");
	CHECK_STR(load_errors("tenant_id: " GUID "\nlisten:\n"
	    "  - address: localhost:80\n    tls: false\n"),
	    "3:14: listen[0].address: 'localhost' is not an IPv4 or IPv6 "
	    "address (like 0.0.0.0:8443, [::]:8443, *:8443)\n");
	CHECK_STR(load_errors("tenant_id: " GUID "\nlisten:\n"
	    "  - address: \"*:8443\"\n"),
	    "1:1: missing required key 'tls' (listen[0] has tls: true)\n");
	CHECK_STR(load_errors(MINIMAL "tls: {hsts_max_age: 1d}\n"),
	    "5:6: missing required key 'certificate' in 'tls'\n"
	    "5:6: missing required key 'key' in 'tls'\n");
	CHECK_STR(load_errors(MINIMAL "tls: selfsigned\n"),
	    "5:6: tls: expected a map or 'self-signed', got 'selfsigned'\n");
	CHECK_STR(load_errors(MINIMAL "control: {group: no-such-group-x}\n"),
	    "5:18: control.group: group 'no-such-group-x' does not exist\n");
}

static const struct {
	const char	*origin;
	const char	*problem;
} origins[] = {
	{ "https://*.sharepoint.com", "is a wildcard; list each origin "
	    "exactly" },
	{ "https://contoso.sharepoint.com/", "must not end with '/'" },
	{ "https://contoso.sharepoint.com/x", "must not have a path, query "
	    "or fragment" },
	{ "http://contoso.sharepoint.com", "must use https:// (http:// only "
	    "for localhost)" },
	{ "ftp://contoso.com", "must start with https://" },
	{ "contoso.com", "must start with https://" },
	{ "https://Contoso.com", "must be lowercase" },
	{ "https://a.com:0", "has an invalid port" },
	{ "https://a.com:99999", "has an invalid port" },
	{ "https://a.com:", "has an invalid port" },
	{ "https://user@a.com", "has an invalid host" },
	{ "https://", "has an invalid host" },
	{ "https://[::1", "has an invalid IPv6 host" },
};

static void
test_origins(void)
{
	char	text[512], want[512];
	size_t	i;

	for (i = 0; i < nitems(origins); i++) {
		snprintf(text, sizeof(text), MINIMAL "cors:\n"
		    "  allowed_origins:\n    - ok.invalid\n    - \"%s\"\n",
		    origins[i].origin);
		snprintf(want, sizeof(want), "7:7: cors.allowed_origins[0]: "
		    "origin 'ok.invalid' must start with https://\n"
		    "8:7: cors.allowed_origins[1]: origin '%s' %s\n",
		    origins[i].origin, origins[i].problem);
		CHECK_STR(load_errors(text), want);
	}
}

static void
test_yaml_level(void)
{
	CHECK_STR(load_errors(MINIMAL "http: {workers: 1}\nhttp: {}\n"),
	    "6:1: duplicate key 'http' (first at 5:1)\n");
	CHECK_STR(load_errors("a: &x 1\nb: *x\n"),
	    "1:4: YAML anchors and aliases are not allowed\n"
	    "2:4: YAML anchors and aliases are not allowed\n"
	    "1:1: unknown key 'a'\n2:1: unknown key 'b'\n"
	    "1:1: missing required key 'tenant_id'\n"
	    "1:1: missing required key 'listen'\n");
	CHECK_STR(load_errors(MINIMAL "---\nfoo: 1\n"),
	    "5:1: only one YAML document is allowed\n");
	CHECK_STR(load_errors(""), "1:1: configuration is empty\n");
	CHECK_STR(load_errors("# nothing\n"), "1:1: configuration is empty\n");
	CHECK_STR(load_errors("tenant_id: [\n"),
	    "2:1: YAML syntax error: did not find expected node content "
	    "(while parsing a flow node at 2:1)\n");
	CHECK_STR(load_errors("tenant_id: x\n\xff\n"),
	    "2:1: invalid input: invalid leading UTF-8 octet (0xFF)\n");
	CHECK_STR(load_errors("tenant_id: !!str x\n"),
	    "1:12: YAML tags are not allowed\n"
	    "1:1: missing required key 'listen'\n");
}

static void
test_many_errors(void)
{
	char	*text, *errs;
	size_t	 i, n = 0;

	CHECK_STR(load_errors("tenant_id: nope\nhttp:\n  workers: x\n"
	    "  bogus: 1\nlisten: [{address: \"1.2.3.4:1\", tls: false}]\n"
	    "log: {level: loud}\n"),
	    "1:12: tenant_id: 'nope' is not a GUID like "
	    "72f988bf-86f1-41af-91ab-2d7cd011db47\n"
	    "3:12: http.workers: expected an integer, got 'x'\n"
	    "4:3: unknown key 'bogus' in 'http'\n"
	    "5:38: listen[0]: tls: false is only allowed on a loopback "
	    "address, not 1.2.3.4:1\n"
	    "6:14: log.level: expected one of error, warn, info, debug, "
	    "got 'loud'\n");
	/* The list stops at 50 errors plus one line saying so. */
	text = xcalloc(1, 100 * 16 + 1);
	for (i = 0; i < 100; i++)
		snprintf(text + strlen(text), 16, "k%03zu: 1\n", i);
	errs = load_errors(text);
	for (i = 0; errs[i] != '\0'; i++)
		n += errs[i] == '\n';
	CHECK(n == 51);
	CHECK(strstr(errs, "too many errors") != NULL);
	free(text);
}

static void
test_file_level(void)
{
	struct config	*conf;
	char		*errors, *big;

	conf = conf_load("/nonexistent/x.yaml", 0, &errors);
	CHECK(conf == NULL);
	CHECK_STR(errors, "/nonexistent/x.yaml:1:1: cannot open: No such "
	    "file or directory\n");
	free(errors);
	conf = conf_load(tmpdir, 0, &errors);
	CHECK(conf == NULL && strstr(errors, ": not a regular file") != NULL);
	free(errors);
	big = xmalloc(1024 * 1024 + 2);
	memset(big, '#', 1024 * 1024 + 1);
	big[1024 * 1024 + 1] = '\0';
	CHECK_STR(load_errors(big), "1:1: file is larger than 1 MiB\n");
	free(big);
	CHECK(strstr(load_errors("a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	    "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"),
	    "nested deeper than 32 levels") != NULL);
}

static void
test_no_secrets(void)
{
	struct config	*conf;
	char		*errors, text[512];

	snprintf(text, sizeof(text), MINIMAL "tls:\n  certificate: /nope/c\n"
	    "  key: /nope/k\ncontrol: {socket: /tmp/x.sock}\n");
	write_file(conf_path, text, 0600);
	conf = conf_load(conf_path, CONF_NO_SECRETS, &errors);
	CHECK(conf != NULL);
	if (conf != NULL)
		CHECK_STR(conf->control.socket, "/tmp/x.sock");
	conf_unref(conf);
	/* Syntax and schema errors are still reported. */
	write_file(conf_path, MINIMAL "http: {bogus: 1}\n", 0600);
	conf = conf_load(conf_path, CONF_NO_SECRETS, &errors);
	CHECK(conf == NULL && errors != NULL);
	free(errors);
	CHECK_STR(load_errors(text),
	    "6:16: tls.certificate: cannot read /nope/c: No such file or "
	    "directory\n"
	    "7:8: tls.key: key file /nope/k: No such file or directory\n");
}

static void
test_secret_files(void)
{
	char	err[512], want[512], buf[16];

	CHECK(secret_check_file(key_path, err, sizeof(err)) == 0);
	chmod(key_path, 0644);
	CHECK(secret_check_file(key_path, err, sizeof(err)) == -1);
	snprintf(want, sizeof(want), "key file %s is readable by group or "
	    "others (mode 0644); chmod 600 it", key_path);
	CHECK_STR(err, want);
	chmod(key_path, 0602);
	CHECK(secret_check_file(key_path, err, sizeof(err)) == -1);
	CHECK(strstr(err, "is writable by group or others (mode 0602)"));
	CHECK(secret_read(key_path, buf, sizeof(buf), err, sizeof(err)) == -1);
	chmod(key_path, 0400);
	CHECK(secret_check_file(tmpdir, err, sizeof(err)) == -1);
	CHECK(strstr(err, "is not a regular file") != NULL);
	CHECK(secret_read(key_path, buf, sizeof(buf), err, sizeof(err)) == 11);
	CHECK(memcmp(buf, "private key", 11) == 0);
	CHECK(secret_read(key_path, buf, 5, err, sizeof(err)) == -1);
	snprintf(want, sizeof(want), "key file %s is larger than 5 bytes",
	    key_path);
	CHECK_STR(err, want);
	chmod(key_path, 0600);
}

static void
test_secret_resolve(void)
{
	char	err[512], *path, want[300];

	CHECK(secret_resolve("/etc/k.pem", &path, err, sizeof(err)) == 0);
	CHECK_STR(path, "/etc/k.pem");
	free(path);
	unsetenv("CREDENTIALS_DIRECTORY");
	CHECK(secret_resolve("credential:tls.key", &path, err,
	    sizeof(err)) == -1);
	CHECK(strstr(err, "$CREDENTIALS_DIRECTORY, which is not set"));
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	CHECK(secret_resolve("credential:tls-key_1.pem", &path, err,
	    sizeof(err)) == 0);
	snprintf(want, sizeof(want), "%s/tls-key_1.pem", tmpdir);
	CHECK_STR(path, want);
	free(path);
	CHECK(secret_resolve("credential:..", &path, err, sizeof(err)) == -1);
	CHECK(secret_resolve("credential:a/b", &path, err, sizeof(err)) == -1);
	CHECK(secret_resolve("credential:", &path, err, sizeof(err)) == -1);
	CHECK(secret_resolve("-----BEGIN PRIVATE KEY-----", &path, err,
	    sizeof(err)) == -1);
	CHECK(strstr(err, "inline secrets are not allowed") != NULL);
	CHECK(strstr(err, "PRIVATE") == NULL);
	CHECK(secret_resolve("env:TLS_KEY", &path, err, sizeof(err)) == -1);
	CHECK_STR(err, "unknown secret scheme 'env:'; give a file path or "
	    "credential:NAME");
	CHECK(secret_resolve("", &path, err, sizeof(err)) == -1);
}

static void
test_credential_in_config(void)
{
	struct config	*conf;
	char		*errors, text[512], cred[300];

	snprintf(cred, sizeof(cred), "%s/tlskey", tmpdir);
	write_file(cred, "k", 0400);
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	snprintf(text, sizeof(text), MINIMAL "tls:\n  certificate: %s\n"
	    "  key: credential:tlskey\n", cert_path);
	conf = load(text, &errors);
	CHECK(conf != NULL);
	if (conf != NULL)
		CHECK_STR(conf->tls.key, cred);
	conf_unref(conf);
	unsetenv("CREDENTIALS_DIRECTORY");
	CHECK_STR(load_errors(text), "7:8: tls.key: credential:tlskey needs "
	    "$CREDENTIALS_DIRECTORY, which is not set (use LoadCredential= "
	    "in the systemd unit)\n");
}

static void
cleanup(void)
{
	char	path[300];

	snprintf(path, sizeof(path), "%s/tlskey", tmpdir);
	unlink(path);
	unlink(conf_path);
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
}

int
main(void)
{
	log_init("test", LOG_LEVEL_WARN, 1);
	if (mkdtemp(tmpdir) == NULL)
		fatal("mkdtemp");
	snprintf(conf_path, sizeof(conf_path), "%s/tenantd.yaml", tmpdir);
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	write_file(cert_path, "certificate", 0644);
	write_file(key_path, "private key", 0600);
	TEST(test_minimal_defaults);
	TEST(test_full);
	TEST(test_self_signed);
	TEST(test_log_level_names);
	TEST(test_unknown_keys);
	TEST(test_types);
	TEST(test_bounds);
	TEST(test_checks);
	TEST(test_origins);
	TEST(test_yaml_level);
	TEST(test_many_errors);
	TEST(test_file_level);
	TEST(test_no_secrets);
	TEST(test_secret_files);
	TEST(test_secret_resolve);
	TEST(test_credential_in_config);
	cleanup();
	return unit_done();
}
