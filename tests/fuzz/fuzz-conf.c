/*
 * fuzz-conf.c: libFuzzer target for the configuration loader: YAML into
 * nodes, the schema walk, every value parser and check, error reporting.
 * The input is written to a memfd and loaded by path, as tenantd does.
 */
#include "config.h"

#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tenantd.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	fd = -1;
static char	path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz", LOG_LEVEL_ERROR, 1);
	if ((fd = memfd_create("tenantd-fuzz-conf", 0)) == -1)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct config	*conf;
	char		*errors = NULL;

	if (ftruncate(fd, 0) == -1 ||
	    (len > 0 && pwrite(fd, data, len, 0) != (ssize_t)len))
		abort();
	conf = conf_load(path, CONF_NO_SECRETS, &errors);
	/* exactly one of a config or errors, and errors are lines */
	if ((conf == NULL) == (errors == NULL))
		abort();
	if (errors != NULL && errors[strlen(errors) - 1] != '\n')
		abort();
	conf_unref(conf);
	free(errors);
	return 0;
}
