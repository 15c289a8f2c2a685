/*
 * ready.c: readiness of each subsystem, for /readyz and tenantctl status.
 * Subsystems report their state by name; a degraded check is listed but
 * keeps the service ready (the shipper during an Azure outage, say).
 */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "tenantd.h"

#define READY_CHECKS_MAX	16

static const char *const ready_state_names[] = {
	[READY_OK] = "ok",
	[READY_DEGRADED] = "degraded",
	[READY_FAIL] = "fail",
};

static struct {
	char		 name[32];
	enum ready_state state;
	char		 detail[160];
} ready_checks[READY_CHECKS_MAX];
static size_t		ready_nchecks;
static pthread_mutex_t	ready_lock = PTHREAD_MUTEX_INITIALIZER;

void
ready_set(const char *check, enum ready_state state, const char *detail)
{
	size_t	i;

	pthread_mutex_lock(&ready_lock);
	for (i = 0; i < ready_nchecks; i++)
		if (strcmp(ready_checks[i].name, check) == 0)
			break;
	if (i == ready_nchecks) {
		if (i == READY_CHECKS_MAX)
			fatalx("%s: too many readiness checks", __func__);
		strlcpy(ready_checks[i].name, check,
		    sizeof(ready_checks[i].name));
		ready_nchecks++;
	}
	ready_checks[i].state = state;
	strlcpy(ready_checks[i].detail, detail ? detail : "",
	    sizeof(ready_checks[i].detail));
	pthread_mutex_unlock(&ready_lock);
}

json_t *
ready_json(int *all_ready)
{
	json_t	*list = json_array();
	size_t	 i;

	*all_ready = ready_nchecks > 0;
	pthread_mutex_lock(&ready_lock);
	for (i = 0; i < ready_nchecks; i++) {
		if (ready_checks[i].state == READY_FAIL)
			*all_ready = 0;
		json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:s}",
		    "name", ready_checks[i].name,
		    "state", ready_state_names[ready_checks[i].state],
		    "ok", ready_checks[i].state != READY_FAIL,
		    "detail", ready_checks[i].detail));
	}
	pthread_mutex_unlock(&ready_lock);
	return list;
}
