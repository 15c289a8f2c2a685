/*
 * conf.c: loads the YAML configuration into a node tree that remembers
 * positions, then walks it with the schema tables of conf-schema.c,
 * collecting every error as "FILE:LINE:COL: message".
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "tenantd.h"

#define CONF_FILE_MAX	(1024 * 1024)
#define CONF_DEPTH_MAX	32
#define CONF_ERRORS_MAX	50
#define CONF_PATH_MAX	256

enum node_kind {
	NODE_SCALAR,
	NODE_MAP,		/* children: key, value, key, value, ... */
	NODE_SEQ,
	NODE_BAD,		/* refused (an alias); already reported */
};

struct conf_node {
	enum node_kind		 kind;
	int			 line;		/* 1-based */
	int			 col;
	int			 plain;		/* unquoted scalar */
	char			*text;
	struct conf_node	**child;
	size_t			 nchild;
};

struct conf_ctx {
	const char		*file;
	int			 flags;
	FILE			*errf;
	char			*errbuf;
	size_t			 errlen;
	int			 nerrors;
	char			 path[CONF_PATH_MAX];
	yaml_parser_t		 parser;
	const unsigned char	*buf;
	size_t			 len;
};

/* Errors. */

static void
error_vat(struct conf_ctx *ctx, int line, int col, int with_path,
    const char *fmt, va_list ap)
{
	if (++ctx->nerrors > CONF_ERRORS_MAX) {
		if (ctx->nerrors == CONF_ERRORS_MAX + 1)
			fprintf(ctx->errf, "%s:%d:%d: too many errors, "
			    "giving up\n", ctx->file, line, col);
		return;
	}
	fprintf(ctx->errf, "%s:%d:%d: ", ctx->file, line, col);
	if (with_path && ctx->path[0] != '\0')
		fprintf(ctx->errf, "%s: ", ctx->path);
	vfprintf(ctx->errf, fmt, ap);
	fputc('\n', ctx->errf);
}

static void PRINTFLIKE(4, 5)
error_at(struct conf_ctx *ctx, int line, int col, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	error_vat(ctx, line, col, 0, fmt, ap);
	va_end(ap);
}

/* An error about a value: prefixed with the dotted path of its key. */
void
conf_error(struct conf_ctx *ctx, const struct conf_node *node,
    const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	error_vat(ctx, node->line, node->col, 1, fmt, ap);
	va_end(ap);
}

int
conf_flags(const struct conf_ctx *ctx)
{
	return ctx->flags;
}

static size_t
path_push_key(struct conf_ctx *ctx, const char *name)
{
	size_t	len = strlen(ctx->path);

	snprintf(ctx->path + len, sizeof(ctx->path) - len, "%s%s",
	    len ? "." : "", name);
	return len;
}

static size_t
path_push_index(struct conf_ctx *ctx, size_t i)
{
	size_t	len = strlen(ctx->path);

	snprintf(ctx->path + len, sizeof(ctx->path) - len, "[%zu]", i);
	return len;
}

static void
path_pop(struct conf_ctx *ctx, size_t len)
{
	ctx->path[len] = '\0';
}

/* Reading the file. */

static int
read_file(struct conf_ctx *ctx, unsigned char **bufp, size_t *lenp)
{
	struct stat	 st;
	unsigned char	*buf;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd;

	if ((fd = open(ctx->file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		error_at(ctx, 1, 1, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		error_at(ctx, 1, 1, "not a regular file");
		close(fd);
		return -1;
	}
	buf = xmalloc(CONF_FILE_MAX + 1);
	while (len <= CONF_FILE_MAX &&
	    (n = read(fd, buf + len, CONF_FILE_MAX + 1 - len)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			error_at(ctx, 1, 1, "cannot read: %s",
			    strerror(errno));
			break;
		}
		len += n;
	}
	close(fd);
	if (ctx->nerrors == 0 && len > CONF_FILE_MAX)
		error_at(ctx, 1, 1, "file is larger than 1 MiB");
	if (ctx->nerrors == 0 && len == 0)
		error_at(ctx, 1, 1, "configuration is empty");
	if (ctx->nerrors != 0) {
		free(buf);
		return -1;
	}
	*bufp = buf;
	*lenp = len;
	return 0;
}

/* YAML events to nodes. */

static void
syntax_error(struct conf_ctx *ctx)
{
	yaml_parser_t	*p = &ctx->parser;
	size_t		 i, line = 1, col = 1;

	if (p->error == YAML_READER_ERROR) {
		for (i = 0; i < p->problem_offset && i < ctx->len; i++) {
			col++;
			if (ctx->buf[i] == '\n') {
				line++;
				col = 1;
			}
		}
		error_at(ctx, (int)line, (int)col, "invalid input: %s (0x%X)",
		    p->problem ? p->problem : "unreadable", p->problem_value);
	} else if (p->context != NULL)
		error_at(ctx, (int)p->problem_mark.line + 1,
		    (int)p->problem_mark.column + 1,
		    "YAML syntax error: %s (%s at %d:%d)", p->problem,
		    p->context, (int)p->context_mark.line + 1,
		    (int)p->context_mark.column + 1);
	else
		error_at(ctx, (int)p->problem_mark.line + 1,
		    (int)p->problem_mark.column + 1, "YAML syntax error: %s",
		    p->problem ? p->problem : "cannot parse");
}

static int
next_event(struct conf_ctx *ctx, yaml_event_t *ev)
{
	if (yaml_parser_parse(&ctx->parser, ev))
		return 0;
	syntax_error(ctx);
	return -1;
}

static struct conf_node *
node_new(enum node_kind kind, const yaml_event_t *ev)
{
	struct conf_node	*node = xcalloc(1, sizeof(*node));

	node->kind = kind;
	node->line = (int)ev->start_mark.line + 1;
	node->col = (int)ev->start_mark.column + 1;
	return node;
}

static void
node_free(struct conf_node *node)
{
	size_t	i;

	if (node == NULL)
		return;
	for (i = 0; i < node->nchild; i++)
		node_free(node->child[i]);
	free(node->child);
	free(node->text);
	free(node);
}

static void
node_add(struct conf_node *parent, struct conf_node *child)
{
	parent->child = xreallocarray(parent->child, parent->nchild + 1,
	    sizeof(*parent->child));
	parent->child[parent->nchild++] = child;
}

static struct conf_node *
scalar_node(struct conf_ctx *ctx, const yaml_event_t *ev)
{
	struct conf_node	*node = node_new(NODE_SCALAR, ev);
	const char		*v = (const char *)ev->data.scalar.value;
	size_t			 len = ev->data.scalar.length;

	if (memchr(v, '\0', len) != NULL)
		error_at(ctx, node->line, node->col,
		    "NUL characters are not allowed");
	node->text = xstrndup(v, len);
	node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	return node;
}

static struct conf_node *load_node(struct conf_ctx *, yaml_event_t *, int);

/* Reads children until the matching end event; -1 on a syntax error. */
static int
load_children(struct conf_ctx *ctx, struct conf_node *node,
    yaml_event_type_t end, int depth)
{
	struct conf_node	*child;
	yaml_event_t		 ev;

	for (;;) {
		if (next_event(ctx, &ev) == -1)
			return -1;
		if (ev.type == end) {
			yaml_event_delete(&ev);
			return 0;
		}
		child = load_node(ctx, &ev, depth + 1);
		yaml_event_delete(&ev);
		if (child == NULL)
			return -1;
		node_add(node, child);
	}
}

static int
refused_event(struct conf_ctx *ctx, const yaml_event_t *ev)
{
	const yaml_char_t	*anchor = NULL, *tag = NULL;
	int			 line, col;

	line = (int)ev->start_mark.line + 1;
	col = (int)ev->start_mark.column + 1;
	if (ev->type == YAML_SCALAR_EVENT) {
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
	} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
	} else if (ev->type == YAML_MAPPING_START_EVENT) {
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
	}
	if (ev->type == YAML_ALIAS_EVENT || anchor != NULL)
		error_at(ctx, line, col, "YAML anchors and aliases are not "
		    "allowed");
	else if (tag != NULL)
		error_at(ctx, line, col, "YAML tags are not allowed");
	else
		return 0;
	return 1;
}

static struct conf_node *
load_node(struct conf_ctx *ctx, yaml_event_t *ev, int depth)
{
	struct conf_node	*node;
	int			 refused;

	refused = refused_event(ctx, ev);
	if (depth > CONF_DEPTH_MAX) {
		error_at(ctx, (int)ev->start_mark.line + 1,
		    (int)ev->start_mark.column + 1,
		    "nested deeper than %d levels", CONF_DEPTH_MAX);
		return NULL;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		node = scalar_node(ctx, ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		node = node_new(ev->type == YAML_SEQUENCE_START_EVENT ?
		    NODE_SEQ : NODE_MAP, ev);
		if (load_children(ctx, node, ev->type ==
		    YAML_SEQUENCE_START_EVENT ? YAML_SEQUENCE_END_EVENT :
		    YAML_MAPPING_END_EVENT, depth) == -1) {
			node_free(node);
			return NULL;
		}
		break;
	default:
		node = node_new(NODE_BAD, ev);
		break;
	}
	if (refused)
		node->kind = NODE_BAD;
	return node;
}

/* Expects the next event to be of type; reports and returns -1 if not. */
static int
expect_event(struct conf_ctx *ctx, yaml_event_t *ev, yaml_event_type_t type)
{
	if (next_event(ctx, ev) == -1)
		return -1;
	if (ev->type == type)
		return 0;
	if (ev->type == YAML_DOCUMENT_START_EVENT)
		error_at(ctx, (int)ev->start_mark.line + 1,
		    (int)ev->start_mark.column + 1,
		    "only one YAML document is allowed");
	else if (ev->type == YAML_STREAM_END_EVENT)
		error_at(ctx, 1, 1, "configuration is empty");
	yaml_event_delete(ev);
	return -1;
}

static struct conf_node *
load_document(struct conf_ctx *ctx)
{
	struct conf_node	*root = NULL;
	yaml_event_t		 ev;

	if (expect_event(ctx, &ev, YAML_STREAM_START_EVENT) == -1)
		return NULL;
	yaml_event_delete(&ev);
	if (expect_event(ctx, &ev, YAML_DOCUMENT_START_EVENT) == -1)
		return NULL;
	yaml_event_delete(&ev);
	if (next_event(ctx, &ev) == -1)
		return NULL;
	root = load_node(ctx, &ev, 0);
	yaml_event_delete(&ev);
	if (root == NULL)
		return NULL;
	if (expect_event(ctx, &ev, YAML_DOCUMENT_END_EVENT) == 0) {
		yaml_event_delete(&ev);
		if (expect_event(ctx, &ev, YAML_STREAM_END_EVENT) == 0)
			yaml_event_delete(&ev);
	}
	return root;
}

static struct conf_node *
parse_yaml(struct conf_ctx *ctx)
{
	struct conf_node	*root;

	if (!yaml_parser_initialize(&ctx->parser))
		fatalx("yaml_parser_initialize");
	yaml_parser_set_input_string(&ctx->parser, ctx->buf, ctx->len);
	root = load_document(ctx);
	yaml_parser_delete(&ctx->parser);
	if (root != NULL && root->kind == NODE_SCALAR && root->plain &&
	    (root->text[0] == '\0' || strcmp(root->text, "~") == 0 ||
	    strcmp(root->text, "null") == 0)) {
		error_at(ctx, 1, 1, "configuration is empty");
		node_free(root);
		return NULL;
	}
	return root;
}

/* Node accessors for check functions. */

const struct conf_node *
conf_node_get(const struct conf_node *map, const char *key)
{
	size_t	i;

	if (map == NULL || map->kind != NODE_MAP)
		return NULL;
	for (i = 0; i + 1 < map->nchild; i += 2) {
		if (map->child[i]->kind == NODE_SCALAR &&
		    strcmp(map->child[i]->text, key) == 0)
			return map->child[i + 1];
	}
	return NULL;
}

const char *
conf_node_scalar(const struct conf_node *node)
{
	if (node == NULL || node->kind != NODE_SCALAR)
		return NULL;
	return node->text;
}

static int
node_is_null(const struct conf_node *node)
{
	return node->kind == NODE_SCALAR && node->plain &&
	    (node->text[0] == '\0' || strcmp(node->text, "~") == 0 ||
	    strcmp(node->text, "null") == 0);
}

/* Scalar types. */

struct unit {
	const char	*suffix;
	int64_t		 mult;
};

static const struct unit duration_units[] = {
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
	{ "h", 60 * 60 * 1000 },
	{ "d", 24 * 60 * 60 * 1000 },
};

static const struct unit size_units[] = {
	{ "", 1 },
	{ "KiB", 1024 },
	{ "MiB", 1024 * 1024 },
	{ "GiB", 1024 * 1024 * 1024 },
	{ "KB", 1000 },
	{ "MB", 1000 * 1000 },
	{ "GB", 1000 * 1000 * 1000 },
};

static const struct unit plain_units[] = {
	{ "", 1 },
};

/* Decimal digits then a suffix from the table; -1 if malformed. */
static int
number_with_unit(const char *s, const struct unit *units, size_t nunits,
    int64_t *v)
{
	int64_t	n = 0;
	size_t	i;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (INT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*s - '0');
	}
	for (i = 0; i < nunits; i++) {
		if (strcmp(s, units[i].suffix) != 0)
			continue;
		if (n > INT64_MAX / units[i].mult)
			return -1;
		*v = n * units[i].mult;
		return 0;
	}
	return -1;
}

static int
parse_duration(const char *text, int64_t *v)
{
	/* A bare 0 needs no unit; other bare numbers are ambiguous. */
	if (strcmp(text, "0") == 0) {
		*v = 0;
		return 0;
	}
	return number_with_unit(text, duration_units, nitems(duration_units),
	    v);
}

static int
parse_size(const char *text, int64_t *v)
{
	return number_with_unit(text, size_units, nitems(size_units), v);
}

static int
parse_int(const char *text, int64_t *v)
{
	const char	*p = text;
	int64_t		 n;

	if (*p == '-')
		p++;
	if (number_with_unit(p, plain_units, nitems(plain_units), &n) == -1 ||
	    n > INT_MAX)
		return -1;
	*v = p == text ? n : -n;
	return 0;
}

static int
parse_bool(const char *text, int64_t *v)
{
	if (strcmp(text, "true") == 0)
		*v = 1;
	else if (strcmp(text, "false") == 0)
		*v = 0;
	else
		return -1;
	return 0;
}

static void
store_int(void *field, int64_t v)
{
	*(int *)field = (int)v;
}

static void
store_u64(void *field, int64_t v)
{
	*(uint64_t *)field = (uint64_t)v;
}

static void
store_seconds(void *field, int64_t v)
{
	*(uint64_t *)field = (uint64_t)(v / 1000);
}

static const struct conf_type_info {
	const char	*expect;
	size_t		 size;			/* of a list item */
	int		(*number)(const char *, int64_t *);
	void		(*store)(void *, int64_t);
} conf_types[] = {
	[CONF_STRING] = { "a string", sizeof(char *), NULL, NULL },
	[CONF_SECRET] = { "a file path or credential:NAME", sizeof(char *),
	    NULL, NULL },
	[CONF_BOOL] = { "true or false", sizeof(int), parse_bool,
	    store_int },
	[CONF_INT] = { "an integer", sizeof(int), parse_int, store_int },
	[CONF_DURATION_MS] = { "a duration like 30s, 15m, 90d",
	    sizeof(uint64_t), parse_duration, store_u64 },
	[CONF_DURATION_S] = { "a duration like 30s, 15m, 90d",
	    sizeof(uint64_t), parse_duration, store_seconds },
	[CONF_SIZE] = { "a size like 512, 64KiB, 1MiB", sizeof(uint64_t),
	    parse_size, store_u64 },
	[CONF_ENUM] = { "one of", sizeof(int), NULL, NULL },
	[CONF_LIST] = { "a list", 0, NULL, NULL },
	[CONF_MAP] = { "a map", 0, NULL, NULL },
};

static int64_t
bound(const struct conf_key *key, const char *text)
{
	int64_t	v;

	if (conf_types[key->type].number(text, &v) == -1)
		fatalx("conf: bad bound '%s' for '%s'", text, key->name);
	return v;
}

static int
check_range(const struct conf_key *key, int64_t v, const char *text,
    char *err, size_t errlen)
{
	if ((key->min == NULL || v >= bound(key, key->min)) &&
	    (key->max == NULL || v <= bound(key, key->max)))
		return 0;
	if (key->min != NULL && key->max != NULL)
		snprintf(err, errlen, "%s is out of range (allowed %s to %s)",
		    text, key->min, key->max);
	else if (key->min != NULL)
		snprintf(err, errlen, "%s is too small (at least %s)", text,
		    key->min);
	else
		snprintf(err, errlen, "%s is too large (at most %s)", text,
		    key->max);
	return -1;
}

static int
enum_index(const struct conf_key *key, const char *text)
{
	int	i;

	for (i = 0; key->names[i] != NULL; i++) {
		if (strcmp(key->names[i], text) == 0)
			return i;
	}
	return -1;
}

/* Sets a scalar field from text; -1 with err set (without the path). */
static int
scalar_set(const struct conf_key *key, const char *text, void *field,
    char *err, size_t errlen)
{
	const struct conf_type_info	*t = &conf_types[key->type];
	int64_t				 v;

	if (key->type == CONF_STRING || key->type == CONF_SECRET) {
		free(*(char **)field);
		*(char **)field = xstrdup(text);
		return 0;
	}
	if (key->type == CONF_ENUM) {
		if ((v = enum_index(key, text)) == -1)
			return -1;
		store_int(field, v);
		return 0;
	}
	if (t->number(text, &v) == -1)
		return -1;
	if (check_range(key, v, text, err, errlen) == -1)
		return -1;
	if (key->type == CONF_DURATION_S && v % 1000 != 0) {
		snprintf(err, errlen, "%s is not a whole number of seconds",
		    text);
		return -1;
	}
	t->store(field, v);
	return 0;
}

/* Defaults. */

void
conf_set_defaults(const struct conf_section *sec, void *obj)
{
	const struct conf_key	*key;
	char			 err[256];
	size_t			 i;

	for (i = 0; i < sec->nkeys; i++) {
		key = &sec->keys[i];
		if (key->type == CONF_MAP)
			conf_set_defaults(key->sub, (char *)obj + key->offset);
		else if (key->def != NULL &&
		    scalar_set(key, key->def, (char *)obj + key->offset, err,
		    sizeof(err)) == -1)
			fatalx("conf: bad default '%s' for '%s'", key->def,
			    key->name);
	}
}

/* Did-you-mean: the closest name by edit distance, if close enough. */

static size_t
edit_distance(const char *a, const char *b)
{
	size_t	row[65], i, j, diag, up, best;
	size_t	la = strlen(a), lb = strlen(b);

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			best = diag + (a[i - 1] != b[j - 1]);
			best = MINIMUM(best, up + 1);
			row[j] = MINIMUM(best, row[j - 1] + 1);
			diag = up;
		}
	}
	return row[lb];
}

static const char *
closest(const char *word, const char *(*name)(const void *, size_t),
    const void *arg, size_t n)
{
	const char	*best = NULL;
	size_t		 i, d, bestd = SIZE_MAX;

	for (i = 0; i < n; i++) {
		d = edit_distance(word, name(arg, i));
		if (d < bestd) {
			bestd = d;
			best = name(arg, i);
		}
	}
	if (best == NULL || bestd > 2 || bestd >= strlen(best))
		return NULL;
	return best;
}

static const char *
key_name(const void *arg, size_t i)
{
	return ((const struct conf_section *)arg)->keys[i].name;
}

static const char *
enum_name(const void *arg, size_t i)
{
	return ((const struct conf_key *)arg)->names[i];
}

static void
hint(char *buf, size_t len, const char *suggestion)
{
	if (suggestion != NULL)
		snprintf(buf, len, " (did you mean '%s'?)", suggestion);
	else
		buf[0] = '\0';
}

/* Walking values. */

static int walk_value(struct conf_ctx *, const struct conf_key *,
    const struct conf_node *, void *);

static void
enum_error(struct conf_ctx *ctx, const struct conf_key *key,
    const struct conf_node *node)
{
	char	names[256] = "", h[128];
	size_t	i, n = 0;

	for (i = 0; key->names[i] != NULL; i++)
		;
	hint(h, sizeof(h), closest(node->text, enum_name, key, i));
	for (i = 0; key->names[i] != NULL; i++)
		snprintf(names + strlen(names), sizeof(names) - strlen(names),
		    "%s%s", n++ ? ", " : "", key->names[i]);
	conf_error(ctx, node, "expected one of %s, got '%s'%s", names,
	    node->text, h);
}

static int
walk_secret(struct conf_ctx *ctx, const struct conf_key *key,
    const struct conf_node *node, void *field)
{
	char	err[512], *path;

	if (secret_resolve(node->text, &path, err, sizeof(err)) == -1) {
		conf_error(ctx, node, "%s", err);
		return -1;
	}
	free(*(char **)field);
	*(char **)field = path;
	if ((ctx->flags & CONF_NO_SECRETS) == 0 &&
	    secret_check_file(path, err, sizeof(err)) == -1) {
		conf_error(ctx, node, "%s", err);
		return -1;
	}
	return 0;
}

static int
walk_scalar(struct conf_ctx *ctx, const struct conf_key *key,
    const struct conf_node *node, void *field)
{
	char	err[512] = "";

	if (node->kind != NODE_SCALAR) {
		conf_error(ctx, node, "expected %s, not a %s",
		    conf_types[key->type].expect,
		    node->kind == NODE_MAP ? "map" : "list");
		return -1;
	}
	if (key->type == CONF_STRING && node->text[0] == '\0') {
		conf_error(ctx, node, "must not be empty");
		return -1;
	}
	if (key->type == CONF_SECRET)
		return walk_secret(ctx, key, node, field);
	if (scalar_set(key, node->text, field, err, sizeof(err)) == 0)
		return 0;
	if (key->type == CONF_ENUM)
		enum_error(ctx, key, node);
	else if (err[0] != '\0')
		conf_error(ctx, node, "%s", err);
	else
		conf_error(ctx, node, "expected %s, got '%s'",
		    conf_types[key->type].expect, node->text);
	return -1;
}

static size_t
item_size(const struct conf_key *key)
{
	return key->item == CONF_MAP ? key->sub->size :
	    conf_types[key->item].size;
}

/* Bounds on the number of items are plain integers. */
static int
list_count_ok(struct conf_ctx *ctx, const struct conf_key *key,
    const struct conf_node *node)
{
	size_t	n = node->nchild;

	if (key->min != NULL && n < strtoull(key->min, NULL, 10)) {
		conf_error(ctx, node, "needs at least %s item%s", key->min,
		    strcmp(key->min, "1") == 0 ? "" : "s");
		return 0;
	}
	if (key->max != NULL && n > strtoull(key->max, NULL, 10)) {
		conf_error(ctx, node, "has %zu items, at most %s are allowed",
		    n, key->max);
		return 0;
	}
	return 1;
}

/* The parse and check hooks of a LIST key apply to each item. */
static int
walk_list(struct conf_ctx *ctx, const struct conf_key *key,
    const struct conf_node *node, void *obj)
{
	struct conf_key	 item = *key;
	char		*items;
	size_t		 i, size = item_size(key), saved;
	int		 rc = 0;

	if (node->kind == NODE_BAD)
		return -1;
	if (node->kind != NODE_SEQ) {
		conf_error(ctx, node, "expected a list");
		return -1;
	}
	if (!list_count_ok(ctx, key, node))
		return -1;
	if (node->nchild == 0)
		return 0;
	items = xcalloc(node->nchild, size);
	*(char **)((char *)obj + key->offset) = items;
	*(size_t *)((char *)obj + key->count) = node->nchild;
	item.type = key->item;
	item.min = item.max = NULL;
	for (i = 0; i < node->nchild; i++) {
		saved = path_push_index(ctx, i);
		if (walk_value(ctx, &item, node->child[i], items + i * size))
			rc = -1;
		path_pop(ctx, saved);
	}
	return rc;
}

static int
walk_value(struct conf_ctx *ctx, const struct conf_key *key,
    const struct conf_node *node, void *field)
{
	if (node->kind == NODE_BAD)
		return -1;
	if (node_is_null(node)) {
		conf_error(ctx, node, "no value given");
		return -1;
	}
	if (key->parse != NULL)
		return key->parse(ctx, node, key, field);
	if (key->type == CONF_MAP) {
		conf_set_defaults(key->sub, field);
		return conf_walk_map(ctx, node, key->sub, field);
	}
	if (walk_scalar(ctx, key, node, field) == -1)
		return -1;
	if (key->check != NULL)
		return key->check(ctx, node, field);
	return 0;
}

/* Walking maps. */

static const struct conf_key *
find_key(const struct conf_section *sec, const char *name, size_t *idx)
{
	for (*idx = 0; *idx < sec->nkeys; (*idx)++) {
		if (strcmp(sec->keys[*idx].name, name) == 0)
			return &sec->keys[*idx];
	}
	return NULL;
}

static void
unknown_key(struct conf_ctx *ctx, const struct conf_section *sec,
    const struct conf_node *k)
{
	char	h[128];

	hint(h, sizeof(h), closest(k->text, key_name, sec, sec->nkeys));
	if (ctx->path[0] == '\0')
		error_at(ctx, k->line, k->col, "unknown key '%s'%s", k->text,
		    h);
	else
		error_at(ctx, k->line, k->col, "unknown key '%s' in '%s'%s",
		    k->text, ctx->path, h);
}

/* Checks one "key: value" pair; remembers it in seen[] by schema index. */
static void
walk_pair(struct conf_ctx *ctx, const struct conf_section *sec,
    const struct conf_node *k, const struct conf_node *v,
    const struct conf_node **seen, void *obj)
{
	const struct conf_key	*key;
	size_t			 idx, saved;

	if (k->kind != NODE_SCALAR) {
		if (k->kind != NODE_BAD)
			error_at(ctx, k->line, k->col, "keys must be strings, "
			    "not maps or lists");
		return;
	}
	if ((key = find_key(sec, k->text, &idx)) == NULL) {
		unknown_key(ctx, sec, k);
		return;
	}
	if (seen[idx] != NULL) {
		error_at(ctx, k->line, k->col, "duplicate key '%s' (first at "
		    "%d:%d)", k->text, seen[idx]->line, seen[idx]->col);
		return;
	}
	seen[idx] = k;
	saved = path_push_key(ctx, key->name);
	if (key->type == CONF_LIST)
		walk_list(ctx, key, v, obj);
	else
		walk_value(ctx, key, v, (char *)obj + key->offset);
	path_pop(ctx, saved);
}

static void
missing_keys(struct conf_ctx *ctx, const struct conf_section *sec,
    const struct conf_node *map, const struct conf_node **seen)
{
	size_t	i;

	for (i = 0; i < sec->nkeys; i++) {
		if (seen[i] != NULL || !(sec->keys[i].flags & CONF_REQUIRED))
			continue;
		if (ctx->path[0] == '\0')
			error_at(ctx, map->line, map->col, "missing required "
			    "key '%s'", sec->keys[i].name);
		else
			error_at(ctx, map->line, map->col, "missing required "
			    "key '%s' in '%s'", sec->keys[i].name, ctx->path);
	}
}

/*
 * Fills obj from a map node; the caller has set the defaults. Returns -1
 * if any error was reported on the way.
 */
int
conf_walk_map(struct conf_ctx *ctx, const struct conf_node *map,
    const struct conf_section *sec, void *obj)
{
	const struct conf_node	**seen;
	int			  before = ctx->nerrors;
	size_t			  i;

	if (map->kind != NODE_MAP) {
		conf_error(ctx, map, "expected a map, not %s",
		    map->kind == NODE_SEQ ? "a list" : "a single value");
		return -1;
	}
	seen = xcalloc(sec->nkeys, sizeof(*seen));
	for (i = 0; i + 1 < map->nchild; i += 2)
		walk_pair(ctx, sec, map->child[i], map->child[i + 1], seen,
		    obj);
	missing_keys(ctx, sec, map, seen);
	free(seen);
	if (sec->finish != NULL)
		sec->finish(ctx, map, obj);
	return ctx->nerrors == before ? 0 : -1;
}

/* Freeing. */

static void release_section(const struct conf_section *, void *);

static void
release_value(const struct conf_key *key, enum conf_type type, void *field)
{
	if (type == CONF_STRING || type == CONF_SECRET)
		free(*(char **)field);
	else if (type == CONF_MAP)
		release_section(key->sub, field);
}

static void
release_section(const struct conf_section *sec, void *obj)
{
	const struct conf_key	*key;
	char			*items, *field;
	size_t			 i, j, n;

	for (i = 0; i < sec->nkeys; i++) {
		key = &sec->keys[i];
		field = (char *)obj + key->offset;
		if (key->type != CONF_LIST) {
			release_value(key, key->type, field);
			continue;
		}
		items = *(char **)field;
		n = *(size_t *)((char *)obj + key->count);
		for (j = 0; j < n && items != NULL; j++)
			release_value(key, key->item,
			    items + j * item_size(key));
		free(items);
	}
}

/* The interface. */

static void
walk_root(struct conf_ctx *ctx, const struct conf_section *sec, void *obj)
{
	struct conf_node	*root;
	unsigned char		*buf;

	if (read_file(ctx, &buf, &ctx->len) == -1)
		return;
	ctx->buf = buf;
	if ((root = parse_yaml(ctx)) != NULL) {
		conf_set_defaults(sec, obj);
		if (root->kind != NODE_MAP)
			error_at(ctx, root->line, root->col, "expected a map of "
			    "settings at the top level");
		else
			conf_walk_map(ctx, root, sec, obj);
	}
	node_free(root);
	free(buf);
}

/*
 * Parse FILE into obj, described by the root table sec. On failure the
 * caller releases obj (conf_release) and *errors holds the messages.
 */
int
conf_load_section(const char *file, int flags,
    const struct conf_section *sec, void *obj, char **errors)
{
	struct conf_ctx	ctx;

	memset(&ctx, 0, sizeof(ctx));
	ctx.file = file;
	ctx.flags = flags;
	if ((ctx.errf = open_memstream(&ctx.errbuf, &ctx.errlen)) == NULL)
		fatal("open_memstream");
	walk_root(&ctx, sec, obj);
	if (fclose(ctx.errf) != 0)
		fatal("conf: writing errors");
	*errors = NULL;
	if (ctx.nerrors == 0) {
		free(ctx.errbuf);
		return 0;
	}
	*errors = ctx.errbuf;
	return -1;
}

void
conf_release(const struct conf_section *sec, void *obj)
{
	release_section(sec, obj);
}

struct config *
conf_load(const char *file, int flags, char **errors)
{
	struct config	*conf;

	conf = xcalloc(1, sizeof(*conf));
	conf->refcnt = 1;
	conf->path = xstrdup(file);
	if (conf_load_section(file, flags, &conf_root, conf, errors) == 0)
		return conf;
	conf_unref(conf);
	return NULL;
}

struct vault_config *
conf_load_vault(const char *file, int flags, char **errors)
{
	struct vault_config	*vc;

	vc = xcalloc(1, sizeof(*vc));
	vc->path = xstrdup(file);
	if (conf_load_section(file, flags, &conf_vault_root, vc,
	    errors) == 0)
		return vc;
	conf_free_vault(vc);
	return NULL;
}

void
conf_free_vault(struct vault_config *vc)
{
	if (vc == NULL)
		return;
	release_section(&conf_vault_root, vc);
	free(vc->path);
	free(vc);
}

struct config *
conf_ref(struct config *conf)
{
	__atomic_add_fetch(&conf->refcnt, 1, __ATOMIC_RELAXED);
	return conf;
}

void
conf_unref(struct config *conf)
{
	if (conf == NULL ||
	    __atomic_sub_fetch(&conf->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	release_section(&conf_root, conf);
	free(conf->path);
	free(conf);
}
