/*
 * api-license.c: GET /v1/license (any user) and PUT /v1/admin/license
 * (admin): the installed license and its state.
 */
#include "config.h"

#include "http.h"

void
api_license_get(struct request *req)
{
	http_reply_json(req, 200, license_status_json());
}

void
api_license_put(struct request *req)
{
	json_t	*doc, *errors;
	char	 err[256] = "";
	int	 status;

	if ((doc = api_json_body(req)) == NULL)
		return;
	errors = jin_errors();
	status = license_install(doc, http_conf(req)->tenant_id, errors, err,
	    sizeof(err));
	json_decref(doc);
	if (status == 0)
		http_reply_json(req, 200, license_status_json());
	else
		api_fail(req, status, errors, err);
	json_decref(errors);
}
