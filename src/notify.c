/*
 * notify.c: the systemd notification protocol (READY, RELOADING, STOPPING,
 * STATUS, WATCHDOG). Without libsystemd these do nothing.
 */
#include "config.h"

#include <stdio.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "tenantd.h"

static void
notify_send(const char *msg)
{
#ifdef HAVE_SYSTEMD
	if (sd_notify(0, msg) < 0)
		log_debug("sd_notify failed");
#else
	(void)msg;
#endif
}

void
notify_ready(const char *status)
{
	char	msg[256];

	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	notify_send(msg);
}

void
notify_reloading(void)
{
	char	msg[128];

	/* systemd 253+ wants the monotonic time of the reload start */
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)now_usec());
	notify_send(msg);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1\nSTATUS=stopping");
}

void
notify_status(const char *status)
{
	char	msg[256];

	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	notify_send(msg);
}

/* Returns 1 and the interval when systemd wants watchdog pings. */
int
notify_watchdog_usec(uint64_t *usec)
{
#ifdef HAVE_SYSTEMD
	return sd_watchdog_enabled(0, usec) > 0;
#else
	(void)usec;
	return 0;
#endif
}

void
notify_watchdog(void)
{
	notify_send("WATCHDOG=1");
}
