/*
 * json-input.c: request bodies and control-command arguments checked
 * against a small table-driven schema, before anything acts on them.
 *
 * Interface (prototypes in tenantd.h under "json-input.c"):
 *
 *   json_t *jin_parse(const char *buf, size_t len, json_t *errors);
 *	Parses a request body with JSON_REJECT_DUPLICATES, after refusing
 *	nesting deeper than JIN_MAX_DEPTH with a cheap pre-scan (so a
 *	10,000-deep body never reaches the parser's recursion). Invalid
 *	UTF-8, NUL bytes (raw or \u0000), integers out of range, trailing
 *	garbage and duplicate keys are refused. Returns the value, or NULL
 *	with one entry appended to errors.
 *
 *   int jin_check(json_t *value, const struct jin_schema *, const char
 *	*pointer, json_t *errors);
 *	Checks an object against a schema: each field's type, bounds,
 *	character set, enumerated names and custom check, required fields,
 *	and (unless the schema allows them) unknown fields. Every problem is
 *	appended to errors as {"pointer": RFC 6901 pointer, "detail": text};
 *	pointer is the object's own pointer ("" for the body). Returns the
 *	number of problems added (0: valid).
 *
 *   json_t *jin_errors(void) / jin_error(errors, pointer, fmt, ...):
 *	the error list, an array of {pointer, detail} objects, ready to be
 *	the "errors" member of an RFC 9457 problem document
 *	(http_problem_errors() sends one).
 *
 *   int jin_time_parse(const char *, int64_t *epoch_s) and
 *   jin_time_usec(const char *, uint64_t *): RFC 3339 UTC timestamps
 *	"2026-11-29T10:00:00Z" with optional fractional seconds.
 *
 * A schema is an array of struct jin_field. Types: JIN_STRING (min/max:
 * length in characters; charset: allowed bytes, else any character but
 * controls), JIN_INT (min/max: value), JIN_BOOL, JIN_TIME (an RFC 3339
 * UTC string), JIN_ENUM (a string in names), JIN_ARRAY (min/max: item
 * count; item and charset/names/sub apply to items), JIN_OBJECT (sub:
 * the nested schema), JIN_ANY. JIN_NULLABLE lets a field be null,
 * JIN_REQUIRED makes it mandatory.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tenantd.h"

json_t *
jin_errors(void)
{
	return json_array();
}

void
jin_error(json_t *errors, const char *pointer, const char *fmt, ...)
{
	char	detail[256];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	json_array_append_new(errors, json_pack("{s:s, s:s}", "pointer",
	    pointer, "detail", detail));
}

/* Deepest nesting of arrays and objects, strings skipped; stops early. */
static size_t
jin_depth(const char *buf, size_t len, size_t limit)
{
	size_t	i, depth = 0, deepest = 0;
	int	in_string = 0;

	for (i = 0; i < len && deepest <= limit; i++) {
		if (in_string) {
			if (buf[i] == '\\')
				i++;
			else if (buf[i] == '"')
				in_string = 0;
			continue;
		}
		if (buf[i] == '"')
			in_string = 1;
		else if (buf[i] == '[' || buf[i] == '{') {
			if (++depth > deepest)
				deepest = depth;
		} else if ((buf[i] == ']' || buf[i] == '}') && depth > 0)
			depth--;
	}
	return deepest;
}

json_t *
jin_parse(const char *buf, size_t len, json_t *errors)
{
	json_error_t	 jerr;
	json_t		*value;

	if (len == 0) {
		jin_error(errors, "", "the body is empty; a JSON object is "
		    "expected");
		return NULL;
	}
	if (jin_depth(buf, len, JIN_MAX_DEPTH) > JIN_MAX_DEPTH) {
		jin_error(errors, "", "nesting deeper than %d levels",
		    JIN_MAX_DEPTH);
		return NULL;
	}
	value = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (value == NULL) {
		jin_error(errors, "", "malformed JSON at byte %d: %s",
		    jerr.position, jerr.text);
		return NULL;
	}
	return value;
}

/* RFC 6901: "~" is "~0", "/" is "~1". */
static void
jin_pointer(char *out, size_t outlen, const char *base, const char *name)
{
	size_t	n;

	n = strlcpy(out, base, outlen);
	if (n + 1 < outlen)
		out[n++] = '/';
	for (; *name != '\0' && n + 2 < outlen; name++) {
		if (*name == '~' || *name == '/') {
			out[n++] = '~';
			out[n++] = *name == '~' ? '0' : '1';
		} else
			out[n++] = *name;
	}
	out[n < outlen ? n : outlen - 1] = '\0';
}

static void
jin_index_pointer(char *out, size_t outlen, const char *base, size_t i)
{
	snprintf(out, outlen, "%s/%zu", base, i);
}

/* Characters (code points) in a valid UTF-8 string. */
static size_t
utf8_chars(const char *s)
{
	size_t	n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static int
has_control(const char *s, int allow_newlines)
{
	for (; *s != '\0'; s++) {
		if (allow_newlines && (*s == '\n' || *s == '\t'))
			continue;
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	}
	return 0;
}

static int
jin_check_string(const struct jin_field *f, json_t *v, const char *ptr,
    json_t *errors)
{
	const char	*s = json_string_value(v);
	size_t		 n = utf8_chars(s);

	if (n < (size_t)f->min || (f->max > 0 && n > (size_t)f->max)) {
		jin_error(errors, ptr, "must be %lld to %lld characters long, "
		    "not %zu", (long long)f->min, (long long)f->max, n);
		return 1;
	}
	if (f->charset != NULL && s[strspn(s, f->charset)] != '\0') {
		jin_error(errors, ptr, "may contain only %s", f->charset_name ?
		    f->charset_name : f->charset);
		return 1;
	}
	if (f->charset == NULL && has_control(s, f->flags & JIN_MULTILINE)) {
		jin_error(errors, ptr, "must not contain control characters");
		return 1;
	}
	return 0;
}

static int
jin_check_int(const struct jin_field *f, json_t *v, const char *ptr,
    json_t *errors)
{
	json_int_t	i = json_integer_value(v);

	if (i >= f->min && i <= f->max)
		return 0;
	jin_error(errors, ptr, "must be an integer from %lld to %lld",
	    (long long)f->min, (long long)f->max);
	return 1;
}

static int
jin_check_enum(const struct jin_field *f, json_t *v, const char *ptr,
    json_t *errors)
{
	const char	*s = json_string_value(v);
	char		 list[256] = "";
	size_t		 i;

	for (i = 0; f->names[i] != NULL; i++)
		if (strcmp(f->names[i], s) == 0)
			return 0;
	for (i = 0; f->names[i] != NULL; i++) {
		if (i > 0)
			strlcat(list, ", ", sizeof(list));
		strlcat(list, f->names[i], sizeof(list));
	}
	jin_error(errors, ptr, "must be one of: %s", list);
	return 1;
}

static int
jin_check_time(const struct jin_field *f, json_t *v, const char *ptr,
    json_t *errors)
{
	int64_t	t;

	if (jin_time_parse(json_string_value(v), &t) == 0)
		return 0;
	jin_error(errors, ptr, "must be an RFC 3339 UTC time like "
	    "2026-11-29T10:00:00Z");
	return 1;
}

static int	jin_check_value(const struct jin_field *, enum jin_type,
		    json_t *, const char *, json_t *);

static int
jin_check_array(const struct jin_field *f, json_t *v, const char *ptr,
    json_t *errors)
{
	char	item[JIN_POINTER_MAX];
	size_t	i, n = json_array_size(v);
	int	bad = 0;

	if (n < (size_t)f->min || n > (size_t)f->max) {
		jin_error(errors, ptr, "must have %lld to %lld items, not %zu",
		    (long long)f->min, (long long)f->max, n);
		return 1;
	}
	for (i = 0; i < n; i++) {
		jin_index_pointer(item, sizeof(item), ptr, i);
		bad += jin_check_value(f->items, f->items->type,
		    json_array_get(v, i), item, errors);
	}
	return bad;
}

static int	jin_check_object(const struct jin_field *, json_t *,
		    const char *, json_t *);

static int
is_string(const json_t *v)
{
	return json_is_string(v);
}
static int
is_integer(const json_t *v)
{
	return json_is_integer(v);
}
static int
is_boolean(const json_t *v)
{
	return json_is_boolean(v);
}
static int
is_array(const json_t *v)
{
	return json_is_array(v);
}
static int
is_object(const json_t *v)
{
	return json_is_object(v);
}
static int
is_any(const json_t *v)
{
	return 1;
}

/* Per type: what it is called, its JSON type, its own checks. */
static const struct {
	enum jin_type	 type;
	const char	*name;
	int		(*is)(const json_t *);
	int		(*check)(const struct jin_field *, json_t *,
			    const char *, json_t *);
} jin_types[] = {
	{ JIN_STRING, "a string", is_string, jin_check_string },
	{ JIN_INT, "an integer", is_integer, jin_check_int },
	{ JIN_BOOL, "a boolean", is_boolean, NULL },
	{ JIN_TIME, "a string", is_string, jin_check_time },
	{ JIN_ENUM, "a string", is_string, jin_check_enum },
	{ JIN_ARRAY, "an array", is_array, jin_check_array },
	{ JIN_OBJECT, "an object", is_object, jin_check_object },
	{ JIN_ANY, "any value", is_any, NULL },
};

/* One value of the given type (a field, or an array item). */
static int
jin_check_value(const struct jin_field *f, enum jin_type type, json_t *v,
    const char *ptr, json_t *errors)
{
	char	detail[256];
	size_t	i;

	if (json_is_null(v) && (f->flags & JIN_NULLABLE))
		return 0;
	for (i = 0; i < nitems(jin_types) && jin_types[i].type != type; i++)
		;
	if (i == nitems(jin_types) || !jin_types[i].is(v)) {
		jin_error(errors, ptr, "must be %s%s", i < nitems(jin_types) ?
		    jin_types[i].name : "a value",
		    (f->flags & JIN_NULLABLE) ? " or null" : "");
		return 1;
	}
	if (jin_types[i].check != NULL &&
	    jin_types[i].check(f, v, ptr, errors) > 0)
		return 1;
	if (type == JIN_ARRAY || type == JIN_OBJECT || f->check == NULL ||
	    f->check(v, detail, sizeof(detail)) == 0)
		return 0;
	jin_error(errors, ptr, "%s", detail);
	return 1;
}

static int
jin_check_object(const struct jin_field *f, json_t *v, const char *ptr,
    json_t *errors)
{
	return f->sub != NULL ? jin_check(v, f->sub, ptr, errors) : 0;
}

static const struct jin_field *
jin_field_find(const struct jin_schema *schema, const char *name)
{
	size_t	i;

	for (i = 0; i < schema->nfields; i++)
		if (strcmp(schema->fields[i].name, name) == 0)
			return &schema->fields[i];
	return NULL;
}

int
jin_check(json_t *obj, const struct jin_schema *schema, const char *pointer,
    json_t *errors)
{
	const struct jin_field	*f;
	const char		*name;
	json_t			*v;
	char			 ptr[JIN_POINTER_MAX];
	size_t			 i;
	int			 bad = 0;

	if (!json_is_object(obj)) {
		jin_error(errors, pointer, "must be a JSON object");
		return 1;
	}
	json_object_foreach(obj, name, v) {
		jin_pointer(ptr, sizeof(ptr), pointer, name);
		if ((f = jin_field_find(schema, name)) != NULL)
			bad += jin_check_value(f, f->type, v, ptr, errors);
		else if (!schema->allow_unknown) {
			jin_error(errors, ptr, "unknown field");
			bad++;
		}
	}
	for (i = 0; i < schema->nfields; i++) {
		f = &schema->fields[i];
		if ((f->flags & JIN_REQUIRED) &&
		    json_object_get(obj, f->name) == NULL) {
			jin_pointer(ptr, sizeof(ptr), pointer, f->name);
			jin_error(errors, ptr, "is required");
			bad++;
		}
	}
	return bad;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac]Z"; also fills microseconds. */
int
jin_time_usec(const char *s, uint64_t *usec)
{
	struct tm	 tm;
	const char	*p;
	uint64_t	 frac = 0, scale = 1000000;
	time_t		 t;
	int		 mday;

	memset(&tm, 0, sizeof(tm));
	if (strlen(s) < 20 || (p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) ==
	    NULL || p != s + 19 || s[4] != '-' || s[10] != 'T')
		return -1;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
		if (p[-1] == '.')
			return -1;
	}
	if (p[0] != 'Z' || p[1] != '\0' || tm.tm_year < 70 ||
	    tm.tm_year > 8099)
		return -1;
	mday = tm.tm_mday;
	if ((t = timegm(&tm)) == (time_t)-1 || gmtime_r(&t, &tm) == NULL ||
	    tm.tm_mday != mday)		/* no February 30th */
		return -1;
	*usec = (uint64_t)t * 1000000 + frac;
	return 0;
}

int
jin_time_parse(const char *s, int64_t *epoch_s)
{
	uint64_t	usec;

	if (jin_time_usec(s, &usec) == -1)
		return -1;
	*epoch_s = (int64_t)(usec / 1000000);
	return 0;
}
