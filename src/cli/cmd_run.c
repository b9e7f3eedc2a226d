/* placeholder: replaced when the command lands */
#include "cli.h"

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	(void)ctx;
	(void)argc;
	(void)argv;
	return cli_usage("'run' is not built yet");
}
