/* libFuzzer: wheel_read_meta() and sdist_read_meta() of arbitrary bytes (nothing is unpacked). */
#include <stdint.h>
#include <string.h>

#include "pyti_archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char work[64], in_path[128];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!work[0]) {
		snprintf(work, sizeof work, "/tmp/pyti-fuzz-meta-XXXXXX");
		if (!mkdtemp(work))
			abort();
		snprintf(in_path, sizeof in_path, "%s/in.whl", work);
	}
	struct pyti_err err = {0};
	/* a plain write: write_file_atomic's fsync would dominate the run time */
	FILE *f = fopen(in_path, "wb");
	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
		abort();
	struct wheel_meta m;
	if (wheel_read_meta(in_path, &m, &err) == 0) {
		if (!m.name || !m.version)
			__builtin_trap();
		for (size_t i = 0; i < m.n_modules; i++)
			if (!arch_is_identifier(m.modules[i]))
				__builtin_trap();
		char *n = pep503_name(m.name, strlen(m.name));
		free(n);
		wheel_meta_free(&m);
	}
	if (sdist_read_meta(in_path, &m, &err) == 0)
		wheel_meta_free(&m);
	return 0;
}
