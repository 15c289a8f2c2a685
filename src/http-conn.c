/* http-conn.c: placeholder, being written this session. */
#include "config.h"
#include "tenantd.h"
