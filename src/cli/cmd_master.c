/* pyti master: the JSON-RPC server in front of the store (src/master), and `pyti master hash-token`. */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "master.h"

static void master_usage(FILE *f)
{
	fputs("usage: pyti master [--config FILE] [--listen ADDR:PORT] [--store URL] [--ready-fd N]\n"
	      "       pyti master hash-token < TOKEN_FILE\n\n"
	      "Serve the raw-data JSON-RPC 2.0 API (docs/rpc.md) on POST /rpc: workers claim jobs, report\n"
	      "each task and finish; users submit runs and read their results. The master keeps no state of\n"
	      "its own (all of it is in the store), so several masters may share one PostgreSQL store behind a\n"
	      "load balancer. It runs until SIGINT or SIGTERM and logs one line per event on stderr.\n\n"
	      "  -c, --config FILE    INI file: [master] listen, store, lease_s, heartbeat_s, max_attempts,\n"
	      "                       body_limit, batch_limit, connections, store_handles, slow_down_ms;\n"
	      "                       [tokens] worker = SHA256, user = SHA256 (repeatable)\n"
	      "  -l, --listen ADDR:PORT  where to listen (default 127.0.0.1:8765; port 0: any free one)\n"
	      "  -s, --store URL      the store: a SQLite path, sqlite:PATH, postgresql://… or a libpq\n"
	      "                       key=value string (default: the file's, else pyti's --store,\n"
	      "                       $PYTI_STORE, STATE_DIR/pyti.db)\n"
	      "      --ready-fd N     write \"listening ADDR:PORT\" to fd N once the socket is up\n"
	      "  -v, --verbose        log heartbeats too\n\n"
	      "Tokens are configured as SHA-256 hashes, never in clear: `pyti master hash-token < FILE` prints\n"
	      "the hash of the token in FILE (its first line; the same as `printf %s TOKEN | sha256sum`).\n"
	      "Worker tokens may call hello, claim, heartbeat, report, upload and finish; user tokens submit,\n"
	      "cancel and rerun; status, results, runs, show and rpc.discover need no token.\n\n"
	      "exit status: 0 stopped by a signal, 2 usage or configuration error (file:line), 3 the store\n"
	      "or the socket could not be opened.\n",
	      f);
}

static int hash_token(void)
{
	char line[4096];
	if (!fgets(line, sizeof line, stdin))
		return cli_usage("master hash-token: no token on standard input");
	size_t n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (n == 0)
		return cli_usage("master hash-token: the token is empty");
	if (n < 16)
		return cli_usage("master hash-token: a token of %zu characters is too easy to guess (at least 16)", n);
	char hex[65];
	sha256_hex(line, n, hex);
	printf("%s\n", hex);
	return 0;
}

int cmd_master(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "hash-token") == 0) {
		if (argc > 2)
			return cli_usage("master hash-token reads the token from standard input (no arguments)");
		return hash_token();
	}
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"listen", required_argument, NULL, 'l'},
		{"store", required_argument, NULL, 's'},
		{"ready-fd", required_argument, NULL, 'R'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = NULL, *listen = NULL, *store = NULL;
	int ready_fd = -1, verbose = ctx->verbose, c;
	while ((c = getopt_long(argc, argv, "c:l:s:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 's':
			store = optarg;
			break;
		case 'R': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 0 || v > 1024)
				return cli_usage("master: --ready-fd wants a file descriptor number");
			ready_fd = (int)v;
			break;
		}
		case 'v':
			verbose++;
			break;
		case 'h':
			master_usage(stdout);
			return 0;
		default:
			master_usage(stderr);
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return cli_usage("master: unexpected argument '%s' (try 'pyti master --help')", argv[optind]);

	struct master_config cfg;
	master_config_init(&cfg);
	struct pyti_err err = {0};
	int rc = 0;
	if (config && master_config_load(&cfg, config, &err) < 0)
		goto fail;
	/* the command line wins over the file */
	if (listen && master_config_listen(&cfg, listen, &err) < 0)
		goto fail;
	if (store) {
		free(cfg.store_url);
		cfg.store_url = xstrdup(store);
	}
	if (!cfg.store_url) /* then pyti's global --store, $PYTI_STORE, STATE/pyti.db */
		cfg.store_url = cli_store_url(ctx, NULL);
	if (strcmp(cfg.store_url, "off") == 0) {
		master_config_free(&cfg);
		return cli_usage("master: the store cannot be off (PYTI_STORE=off): the master is its store");
	}
	cfg.verbose = verbose;
	if (ready_fd >= 0) {
		cfg.ready = fdopen(ready_fd, "w");
		if (!cfg.ready)
			return cli_usage("master: --ready-fd %d is not an open file descriptor", ready_fd);
	}
	if (cfg.n_worker_tokens == 0 && cfg.n_user_tokens == 0)
		fprintf(stderr, "pyti: warning: no tokens configured: only status, results, runs and rpc.discover "
				"can be called\n");
	if (master_serve(&cfg, ctx->state_dir, &err) < 0)
		goto fail;
	goto out;
fail:
	rc = cli_fail(&err);
out:
	if (cfg.ready)
		fclose(cfg.ready);
	master_config_free(&cfg);
	return rc;
}
