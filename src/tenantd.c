/* tenantd.c: placeholder main, being written this session. */
#include "config.h"
#include "tenantd.h"
int main(void) { return 0; }
