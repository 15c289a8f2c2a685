#include "config.h"
#include "tenantd.h"
#include "unit.h"
int main(void) { return unit_done(); }
