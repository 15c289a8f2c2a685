/*
 * test-shipper.c: log shipping's pure pieces: gzip, the legacy SharedKey
 * signature, the request each API wants.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tenantd.h"
#include "unit.h"

static void
test_placeholder(void)
{
	CHECK(1);
}

int
main(void)
{
	TEST(test_placeholder);
	return unit_done();
}
