/* image: unpack the root file system tarball that mmdebstrap --mode=unshare writes for an ordinary
 * user. A directory written by mmdebstrap in that mode would be owned by the user's subordinate
 * uids (files the user cannot trim, remove or map); unpacked here, without ownership, everything
 * belongs to the user — which is what the ns backend needs to map the root to its own uid.
 *
 * The tarball is ours (just made by mmdebstrap), but its paths are still checked: no absolute
 * paths, no "..", nothing written through a symlink (libarchive's SECURE flags, on a destination
 * without symlinks of its own). Device nodes, FIFOs and sockets are skipped: the sandboxes bring
 * their own /dev. setuid/setgid bits are dropped (libarchive keeps them only with ownership). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"

/* "./usr/bin/x" -> "usr/bin/x"; "./" and "." -> "" (the root itself). */
static const char *strip_dot(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	while (*p == '/')
		p++; /* refused below anyway: absolute paths are checked before stripping */
	if (strcmp(p, ".") == 0)
		return "";
	return p;
}

static void strip_trailing_slash(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

int image_unpack_rootfs(const char *tarball, const char *dest, size_t *skipped, struct pyti_err *err)
{
	if (skipped)
		*skipped = 0;
	if (mkdir_p(dest, 0755, err) < 0)
		return -1;
	/* libarchive's symlink check walks the whole path: resolve dest's own symlinks first. */
	_cleanup_free_ char *root = realpath(dest, NULL);
	if (!root)
		return pyti_err_set(err, errno, "%s", dest);

	struct archive *in = archive_read_new();
	struct archive *out = archive_write_disk_new();
	archive_read_support_format_tar(in);
	archive_read_support_filter_all(in);
	archive_write_disk_set_options(out, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
						    ARCHIVE_EXTRACT_SECURE_SYMLINKS |
						    ARCHIVE_EXTRACT_SECURE_NODOTDOT);
	int r = 0;
	if (archive_read_open_filename(in, tarball, 1 << 16) != ARCHIVE_OK) {
		r = pyti_err_set(err, archive_errno(in), "open %s: %s", tarball, archive_error_string(in));
		goto done;
	}
	struct archive_entry *e;
	for (;;) {
		int s = archive_read_next_header(in, &e);
		if (s == ARCHIVE_EOF)
			break;
		if (s < ARCHIVE_WARN) {
			r = pyti_err_set(err, archive_errno(in), "%s: %s", tarball, archive_error_string(in));
			goto done;
		}
		const char *name = archive_entry_pathname(e);
		if (!name || name[0] == '/') {
			r = pyti_err_set(err, 0, "%s: absolute entry '%s'", tarball, name ? name : "(null)");
			goto done;
		}
		_cleanup_free_ char *rel = xstrdup(strip_dot(name));
		strip_trailing_slash(rel);
		mode_t type = archive_entry_filetype(e);
		const char *hl = archive_entry_hardlink(e); /* tar hard links may carry no file type */
		bool is_link = hl != NULL;
		if (!is_link && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
			if (skipped)
				(*skipped)++;
			continue;
		}
		if (!*rel)
			continue; /* the root directory: dest already exists */
		_cleanup_free_ char *full = NULL;
		if (path_join_safe(root, rel, &full, err) < 0) {
			r = pyti_err_prefix(err, "%s", tarball);
			goto done;
		}
		archive_entry_set_pathname(e, full);
		_cleanup_free_ char *hfull = NULL;
		if (is_link) {
			_cleanup_free_ char *hrel = xstrdup(strip_dot(hl));
			strip_trailing_slash(hrel);
			if (hl[0] == '/' || path_join_safe(root, hrel, &hfull, err) < 0) {
				r = pyti_err_set(err, 0, "%s: hard link '%s' -> '%s' leaves the tree", tarball,
						 name, hl);
				goto done;
			}
			archive_entry_set_hardlink(e, hfull);
		}
		s = archive_write_header(out, e);
		if (s < ARCHIVE_WARN) {
			r = pyti_err_set(err, archive_errno(out), "%s: %s", full, archive_error_string(out));
			goto done;
		}
		if (!is_link && type == AE_IFREG && archive_entry_size(e) > 0) {
			const void *buf;
			size_t size;
			la_int64_t off;
			while ((s = archive_read_data_block(in, &buf, &size, &off)) == ARCHIVE_OK) {
				if (archive_write_data_block(out, buf, size, off) < ARCHIVE_WARN) {
					r = pyti_err_set(err, archive_errno(out), "write %s: %s", full,
							 archive_error_string(out));
					goto done;
				}
			}
			if (s != ARCHIVE_EOF) {
				r = pyti_err_set(err, archive_errno(in), "%s: %s", tarball, archive_error_string(in));
				goto done;
			}
		}
		if (archive_write_finish_entry(out) < ARCHIVE_WARN) {
			r = pyti_err_set(err, archive_errno(out), "%s: %s", full, archive_error_string(out));
			goto done;
		}
	}
done:
	/* close applies the deferred directory permissions and times */
	if (archive_write_close(out) < ARCHIVE_WARN && r == 0)
		r = pyti_err_set(err, archive_errno(out), "%s: %s", dest, archive_error_string(out));
	archive_write_free(out);
	archive_read_free(in);
	return r;
}
