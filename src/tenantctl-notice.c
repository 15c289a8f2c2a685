/*
 * tenantctl-notice.c: tenantctl's side of the notice commands: options
 * into arguments, answers into lines for people.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tenantd.h"

static const struct {
	const char	*option;
	const char	*field;
} notice_options[] = {
	{ "--kind",	 "kind" },
	{ "--severity",	 "severity" },
	{ "--title",	 "title" },
	{ "--body",	 "body" },
	{ "--starts-at", "starts_at" },
	{ "--ends-at",	 "ends_at" },
	{ "--since",	 "since" },
};

/* "--option value" pairs; "none" clears a time. */
static int
option_pairs(int argc, char **argv, json_t *args, int allow_since)
{
	size_t	i;
	int	k;

	for (k = 0; k < argc; k += 2) {
		for (i = 0; i < nitems(notice_options); i++)
			if (strcmp(argv[k], notice_options[i].option) == 0)
				break;
		if (i == nitems(notice_options) || k + 1 >= argc ||
		    (strcmp(notice_options[i].field, "since") == 0) !=
		    allow_since)
			return -1;
		if (strcmp(argv[k + 1], "none") == 0 &&
		    strstr(notice_options[i].field, "_at") != NULL)
			json_object_set_new(args, notice_options[i].field,
			    json_null());
		else
			json_object_set_new(args, notice_options[i].field,
			    json_string(argv[k + 1]));
	}
	return 0;
}

int
ctl_parse_notice_publish(int argc, char **argv, json_t *args)
{
	return argc == 0 ? -1 : option_pairs(argc, argv, args, 0);
}

int
ctl_parse_notice_update(int argc, char **argv, json_t *args)
{
	if (argc < 3 || argv[0][0] == '-')
		return -1;
	json_object_set_new(args, "id", json_string(argv[0]));
	return option_pairs(argc - 1, argv + 1, args, 0);
}

int
ctl_parse_notice_list(int argc, char **argv, json_t *args)
{
	return option_pairs(argc, argv, args, 1);
}

static const char *
str(json_t *obj, const char *key)
{
	const char	*s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "-";
}

static void
print_notice_line(json_t *n)
{
	printf("%s  %-11s %-8s %s  %s\n", str(n, "id"), str(n, "kind"),
	    str(n, "severity"), str(n, "updated_at"), str(n, "title"));
}

void
ctl_print_notice(json_t *n)
{
	print_notice_line(n);
	if (*str(n, "body") != '\0' && strcmp(str(n, "body"), "-") != 0)
		printf("  %s\n", str(n, "body"));
}

void
ctl_print_notice_list(json_t *r)
{
	json_t	*n;
	size_t	 i;

	json_array_foreach(json_object_get(r, "notices"), i, n)
		print_notice_line(n);
	if (json_array_size(json_object_get(r, "notices")) == 0)
		printf("no notices\n");
}

void
ctl_print_notice_deliveries(json_t *r)
{
	json_t	*counts = json_object_get(r, "counts"), *d;
	size_t	 i;

	printf("pending %lld, delivered %lld, failed %lld\n",
	    json_integer_value(json_object_get(counts, "pending")),
	    json_integer_value(json_object_get(counts, "delivered")),
	    json_integer_value(json_object_get(counts, "failed")));
	json_array_foreach(json_object_get(r, "deliveries"), i, d)
		printf("%s  %-9s %2lld tries  %s  %s%s%s\n", str(d, "id"),
		    str(d, "state"),
		    json_integer_value(json_object_get(d, "attempts")),
		    str(d, "notice_id"), str(d, "url"),
		    json_is_string(json_object_get(d, "last_error")) ? "  " :
		    "", json_is_string(json_object_get(d, "last_error")) ?
		    str(d, "last_error") : "");
}
