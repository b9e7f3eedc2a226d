# pyti fetch sandbox: download the sdist of NAME==VERSION into DEST without building anything.
#
# `pip download --no-binary NAME` prepares the sdist's metadata, which means installing its build
# backend: slow, and impossible when the backend's own requirements do not support the guest's
# Python. This asks pip's own package finder instead — so every index, find-links, proxy and
# certificate setting of the user's pip configuration applies — for the sdist link of exactly that
# version, and downloads it with pip's session, checking the index's hash when it gives one.
# Exit status 0 with the file written; 3 when the index has no usable sdist; anything else (pip's
# internals are not what this expects, the network failed) makes the caller fall back to
# `pip download`. Embedded into pyti at build time (meson: getsdist_py.h); runs with the guest's
# Python, never on the host.
import hashlib
import os
import sys

MAX_SIZE = 512 << 20

try:
    from pip._internal.commands import create_command
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version
except ImportError as e:
    print(f"getsdist: pip internals: {e}", file=sys.stderr)
    sys.exit(2)

NO_SDIST = 3


def save(chunks, path, h):
    """Write chunks to path; the byte count, or -1 (and no file) past MAX_SIZE."""
    size = 0
    with open(path, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_SIZE:
                break
            if h:
                h.update(chunk)
            out.write(chunk)
    if size > MAX_SIZE:
        os.unlink(path)
        return -1
    return size


def main(name, version, dest):
    try:
        want = Version(version)
    except InvalidVersion:
        print(f"getsdist: invalid version {version!r}", file=sys.stderr)
        return NO_SDIST
    cmd = create_command("download")
    options, _ = cmd.parse_args(["--no-deps", "-d", dest, f"{name}=={version}"])
    with cmd.main_context():
        session = cmd.get_default_session(options)
        finder = cmd._build_package_finder(options=options, session=session, ignore_requires_python=True)
        links = [c.link for c in finder.find_all_candidates(canonicalize_name(name))
                 if c.version == want and not c.link.is_wheel]
        # prefer .tar.gz (what current tools publish) over .zip and older formats
        links.sort(key=lambda ln: (not ln.filename.endswith(".tar.gz"), ln.filename))
        if not links:
            print(f"getsdist: the index has no sdist of {name}=={version}", file=sys.stderr)
            return NO_SDIST
        link = links[0]
        fname = os.path.basename(link.filename)
        if not fname or fname.startswith(".") or fname != link.filename:
            print(f"getsdist: odd file name {link.filename!r}", file=sys.stderr)
            return NO_SDIST
        h = hashlib.new(link.hash_name) if link.hash_name in hashlib.algorithms_guaranteed else None
        tmp = os.path.join(dest, f".{fname}.part")
        if link.is_file:
            with open(link.file_path, "rb") as f:
                chunks = iter(lambda: f.read(1 << 16), b"")
                size = save(chunks, tmp, h)
        else:
            resp = session.get(link.url_without_fragment, stream=True)
            resp.raise_for_status()
            size = save(resp.iter_content(1 << 16), tmp, h)
        if size < 0:
            print(f"getsdist: {fname} is larger than {MAX_SIZE >> 20} MiB", file=sys.stderr)
            return NO_SDIST
        if h and link.hash and h.hexdigest() != link.hash:
            os.unlink(tmp)
            print(f"getsdist: {fname}: {link.hash_name} mismatch", file=sys.stderr)
            return NO_SDIST
        os.rename(tmp, os.path.join(dest, fname))
        print(f"getsdist: {fname} ({size} bytes)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:4]))
    except Exception as e:  # pip's internals moved, the network failed …: let `pip download` try
        print(f"getsdist: {e!r}", file=sys.stderr)
        sys.exit(2)
