/* libFuzzer: the master's request path without HTTP — one body through JSON-RPC parsing, batch and
 * notification handling, auth per method and the parameter checks (rpc_process). The dispatcher
 * checks what rpc_process promises a handler: a known method the token grants, params an object
 * that passed the method's table. The first byte chooses the grants. */
#include <stdint.h>
#include <string.h>

#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *dispatch(void *ctx, const struct rpc_call *call, struct rpc_error *e)
{
	unsigned granted = *(unsigned *)ctx;
	const struct rpc_method *m = call->method;
	if (!m || rpc_method_find(m->name) != m || !json_is_object(call->params))
		__builtin_trap();
	if ((m->auth == RPC_AUTH_WORKER && !(granted & RPC_GRANT_WORKER)) ||
	    (m->auth == RPC_AUTH_USER && !(granted & RPC_GRANT_USER)))
		__builtin_trap();
	for (const struct rpc_param *p = m->params; p->name; p++) {
		json_t *v = json_object_get(call->params, p->name);
		if (p->required && !v)
			__builtin_trap();
		if (v && json_is_string(v) && p->format != RPC_FMT_NONE &&
		    !rpc_format_ok(p->format, json_string_value(v)))
			__builtin_trap();
	}
	if (json_object_size(call->params) % 3 == 2)
		return rpc_error_set(e, RPC_STALE_LEASE, json_pack("{s:i}", "attempt", 1), "stale");
	return json_pack("{s:O}", "echo", call->params);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned granted = data[0] & 3u;
	struct rpc_stats st;
	json_t *r = rpc_process((const char *)data + 1, size - 1, granted, 16, dispatch, &granted, &st);
	if (r) {
		if (!json_is_object(r) && !json_is_array(r))
			__builtin_trap();
		if (json_is_array(r) && (json_array_size(r) == 0 || json_array_size(r) > 16))
			__builtin_trap();
		char *s = json_dumps(r, JSON_COMPACT);
		if (!s)
			__builtin_trap();
		free(s);
		json_decref(r);
	} else if (st.notifications == 0 || st.notifications != st.requests) {
		__builtin_trap(); /* no answer only for bodies of notifications */
	}
	return 0;
}
