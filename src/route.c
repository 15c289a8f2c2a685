/*
 * route.c: matching a method and path against the route table in api.c.
 * Patterns are literal segments and {name} segments; a {name} matches one
 * non-empty, percent-decoded segment.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "http.h"

#define SEGMENT_MAX	256

static int
segment_match(const char *pat, size_t plen, const char *seg, size_t slen,
    struct route_param *param)
{
	char	*decoded, *raw;
	size_t	 dlen;

	if (plen >= 2 && pat[0] == '{' && pat[plen - 1] == '}') {
		if (slen == 0 || slen > SEGMENT_MAX)
			return 0;
		raw = xstrndup(seg, slen);	/* this segment only */
		decoded = evhttp_uridecode(raw, 0, &dlen);
		free(raw);
		if (decoded == NULL)
			return 0;
		if (dlen == 0 || strlen(decoded) != dlen) {	/* NUL inside */
			free(decoded);
			return 0;
		}
		param->name = pat + 1;
		param->name_len = plen - 2;
		param->value = decoded;
		return 1;
	}
	return plen == slen && memcmp(pat, seg, slen) == 0;
}

/* Match PATH against PATTERN; on success fill PARAMS. */
static int
pattern_match(const char *pattern, const char *path,
    struct route_param *params, size_t *nparams)
{
	const char	*p = pattern, *s = path, *pe, *se;
	size_t		 n = 0;

	while (*p == '/' && *s == '/') {
		p++;
		s++;
		pe = p + strcspn(p, "/");
		se = s + strcspn(s, "/");
		if (n == ROUTE_PARAMS_MAX && *p == '{')
			goto fail;
		params[n].value = NULL;
		if (!segment_match(p, pe - p, s, se - s, &params[n]))
			goto fail;
		if (params[n].value != NULL)
			n++;
		p = pe;
		s = se;
	}
	if (*p != '\0' || *s != '\0')
		goto fail;
	*nparams = n;
	return 1;
fail:
	route_params_free(params, n);
	return 0;
}

static void
allow_add(char *allow, size_t len, const char *method)
{
	if (strstr(allow, method) != NULL)
		return;
	if (allow[0] != '\0')
		strlcat(allow, ", ", len);
	strlcat(allow, method, len);
}

/*
 * Returns the index of the matching route, ROUTE_NOT_FOUND, or
 * ROUTE_BAD_METHOD with ALLOW listing the methods the path takes.
 */
int
route_match(const char *method, const char *path, struct route_param *params,
    size_t *nparams, char *allow, size_t allowlen)
{
	struct route_param	 tmp[ROUTE_PARAMS_MAX];
	size_t			 i, n;
	int			 path_seen = 0;

	allow[0] = '\0';
	for (i = 0; i < api_nroutes; i++) {
		if (!pattern_match(api_routes[i].pattern, path, tmp, &n))
			continue;
		if (strcmp(api_routes[i].method, method) == 0) {
			memcpy(params, tmp, sizeof(tmp[0]) * n);
			*nparams = n;
			return (int)i;
		}
		route_params_free(tmp, n);
		allow_add(allow, allowlen, api_routes[i].method);
		path_seen = 1;
	}
	if (path_seen)
		allow_add(allow, allowlen, "OPTIONS");
	return path_seen ? ROUTE_BAD_METHOD : ROUTE_NOT_FOUND;
}

void
route_params_free(struct route_param *params, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		free(params[i].value);
		params[i].value = NULL;
	}
}
