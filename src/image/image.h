/* image: guest images under <state>/images/<suite>/ (see docs/contracts.md "State directory").
 *
 * A guest image is a Debian minbase root file system with python3, pip, venv, pytest and the cloud
 * kernel, built with debootstrap (root) or mmdebstrap --mode=unshare (ordinary user), trimmed, and
 * described by manifest.json. The ns backend mounts rootfs/ read-only as the sandbox root; the vm
 * module builds its initrd and qcow2 base from rootfs/ and vmlinuz in the same directory.
 *
 * An image is complete exactly when its manifest.json exists: it is built under
 * images/<suite>.tmp.<pid>/ and renamed into place as the last step. */
#ifndef PYTI_IMAGE_H
#define PYTI_IMAGE_H

#include "core.h"

/* Progress of a build: phase is a short name ("debootstrap", "trim", "kernel", "manifest"); line is
 * one line of tool output, or NULL when a phase starts and once a second while it runs. */
typedef void (*image_progress_fn)(void *arg, const char *phase, const char *line);

struct image_build_opts {
	const char *suite;  /* NULL = "bookworm"; "bookworm" or "trixie" */
	const char *mirror; /* NULL = the host's apt configuration (image_apt_mirror("/etc/apt", …)) */
	bool force;         /* rebuild even when a complete image exists */
	const char *profile; /* NULL or "full": with the build tools; "minimal": without them, named
			      * <suite>-minimal (`pyti run --suite bookworm-minimal`) */
	image_progress_fn progress; /* may be NULL */
	void *arg;
};

struct image_info {
	char *suite;
	char *dir;      /* <state>/images/<suite> */
	char *rootfs;   /* <dir>/rootfs */
	char *kernel;   /* <dir>/vmlinuz */
	char *manifest; /* <dir>/manifest.json */
	char *python;   /* "3.11.2" */
	char *display;  /* "bookworm (Python 3.11.2)": the "image" field of job.json / results.json */
	char *hash;     /* manifest hash (sha256 hex) */
	char *created;  /* ISO-8601 UTC */
	long long size_bytes;
	size_t n_packages;
};
void image_info_free(struct image_info *info); /* frees the members, not info itself; NULL ok */

/* Build (or, when a complete image exists and !o->force, do nothing).
 * Returns 0 when it built the image, 1 when the image was already up to date, -1 with err.
 * A missing tool or a suite/mirror problem is a usage error (exit 2); a failed build is infra (3). */
int image_build(const char *state_dir, const struct image_build_opts *o, struct pyti_err *err);

/* The image for suite (NULL = "bookworm"). A missing image is a configuration error (err->status =
 * PYTI_EXIT_USAGE, exit 2) whose message tells the user to run `pyti image build --suite X`.
 * On success the caller releases *out with image_info_free(). */
int image_find(const char *state_dir, const char *suite, struct image_info *out, struct pyti_err *err);

/* All complete images, sorted by suite. *out is an array of *n entries; free with image_list_free().
 * A missing state directory is an empty list. */
int image_list(const char *state_dir, struct image_info **out, size_t *n, struct pyti_err *err);
void image_list_free(struct image_info *list, size_t n);

/* Remove images/<suite> (and stale build directories of it). A missing image is a usage error. */
int image_rm(const char *state_dir, const char *suite, struct pyti_err *err);

/* ---- pieces of the build, public so that they can be tested on their own ---- */

/* true for the suites pyti builds ("bookworm", "trixie"). */
bool image_suite_valid(const char *suite);

/* The Debian archive URI to build suite from, read from an apt configuration directory
 * (<apt_dir>/sources.list, <apt_dir>/sources.list.d/ *.list and *.sources in deb822 format):
 * the first "deb" entry whose Suites include suite and whose Components include main; else the
 * first one serving any plain Debian suite (e.g. bookworm's mirror for trixie). Caller frees *out.
 * Nothing found is a usage error that suggests --mirror. */
int image_apt_mirror(const char *apt_dir, const char *suite, char **out, struct pyti_err *err);

/* One apt source file, appended to the candidates of image_apt_mirror(). deb822 when the name ends
 * in ".sources", one-line format otherwise. Exposed for the unit tests. */
struct image_apt_entry {
	char *uri;
	char **suites;
	size_t n_suites;
	bool main; /* Components include main */
};
int image_apt_parse_file(const char *path, struct image_apt_entry **entries, size_t *n,
			 struct pyti_err *err);
void image_apt_entries_free(struct image_apt_entry *entries, size_t n);

/* Installed packages from a dpkg status file: "name=version" strings sorted by name, and the
 * upstream version of the python3 package ("3.11.2", without epoch or Debian revision) — read from
 * the file, never by running the guest's python. python is NULL when python3 is not installed. */
struct image_pkgs {
	char **names; /* "name=version", sorted */
	size_t n;
	char *python;
};
int image_dpkg_status(const char *path, struct image_pkgs *out, struct pyti_err *err);
void image_pkgs_free(struct image_pkgs *p);
/* sha256 over the sorted package list and the suite (the manifest's "hash"). */
void image_pkgs_hash(const struct image_pkgs *p, const char *suite, char out[65]);

/* Unpack a root file system tarball (mmdebstrap's output for an ordinary user) into dest, without
 * ownership, refusing absolute or ".." paths and anything written through a symlink; device nodes,
 * FIFOs and sockets are skipped and counted in *skipped (may be NULL). */
int image_unpack_rootfs(const char *tarball, const char *dest, size_t *skipped, struct pyti_err *err);

/* true when images/<suite> holds a complete image (a readable manifest.json naming suite, and a
 * rootfs directory) — then a build without force is a no-op. */
bool image_up_to_date(const char *state_dir, const char *suite);
/* The image exists but its manifest records another package list than this pyti installs (an image
 * from an older pyti): image_find() warns, image_build() rebuilds it without --force. */
bool image_outdated(const char *state_dir, const char *suite);
/* The Debian packages every image gets on top of minbase, comma separated (recorded in the
 * manifest as "include"). */
const char *image_include_packages(void);

/* uv (src/image/uv.c): image_add_uv downloads uv's wheel with the host's pip (the user's pip
 * configuration; binary only, no dependencies: nothing of it runs on the host), writes its executable
 * to ROOTFS/usr/local/bin/uv and sets *version ("0.13.9"); on failure the image is built without it.
 * image_uv_extract writes the member uv-VERSION.data/scripts/uv of WHEEL into BINDIR/uv (never
 * through a link, size capped); image_uv_wheel_version parses "uv-VERSION-….whl" (NULL: not one). */
int image_add_uv(const char *rootfs, const char *tmp, char **version, struct pyti_err *err);
int image_uv_extract(const char *wheel, const char *version, const char *bindir, struct pyti_err *err);
char *image_uv_wheel_version(const char *name);

/* Remove images/<suite>.tmp.<pid> directories whose builder process is gone. Returns how many. */
int image_clean_stale(const char *state_dir, const char *suite, struct pyti_err *err);

#endif
