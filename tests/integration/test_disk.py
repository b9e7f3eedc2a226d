"""pyti disk: the DiskHandler driven through the real binary on real ext4 images, checked against
e2fsprogs' own tools (e2fsck -fn must be clean after every write; `ls` must agree with debugfs)."""
import datetime
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest


def _tool(name):
    for d in ("/sbin", "/usr/sbin", "/bin", "/usr/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    p = shutil.which(name)
    if not p:
        pytest.skip(f"{name} (e2fsprogs) not installed")
    return p


@pytest.fixture
def disk(pyti_bin):
    def run(*args, ok=True):
        r = subprocess.run([pyti_bin, "disk", *map(str, args)], capture_output=True, text=True, timeout=120)
        if ok and r.returncode != 0:
            raise AssertionError(f"pyti disk {args} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    return run


def fsck_clean(img):
    r = subprocess.run([_tool("e2fsck"), "-fn", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def debugfs_ls(img, path):
    """{name: (ino, mode, uid, gid, size, 'YYYY-MM-DD HH:MM')} from `debugfs -R 'ls -l PATH'` in UTC."""
    r = subprocess.run([_tool("debugfs"), "-R", f"ls -l {path}", str(img)], capture_output=True, text=True,
                       env={**os.environ, "TZ": "UTC"})
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        f = line.split(None, 8)
        if len(f) < 9 or not f[0].isdigit():
            continue
        ino, mode, _ft, uid, gid, size, date, hm, name = f
        if name in (".", ".."):
            continue
        when = datetime.datetime.strptime(f"{date} {hm}", "%d-%b-%Y %H:%M").strftime("%Y-%m-%d %H:%M")
        out[name] = (int(ino), int(mode, 8), int(uid), int(gid), int(size), when)
    return out


def make_tree(root):
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "pkg" / "sub" / "data.bin").write_bytes(os.urandom(3 * 2**20 + 17))
    (root / "empty").write_bytes(b"")
    (root / "secret").write_text("s")
    os.chmod(root / "secret", 0o600)
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "with space.txt").write_text("spaced")
    os.symlink("pkg/__init__.py", root / "link")
    os.utime(root / "secret", ns=(1_000_000_000_123_456_789, 1_000_000_000_123_456_789))
    os.utime(root / "pkg" / "sub", ns=(1_234_567_890_000_000_005, 1_234_567_890_000_000_005))


def assert_same_tree(a, b):
    names_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    names_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    assert names_a == names_b
    for rel in names_a:
        sa, sb = os.lstat(a / rel), os.lstat(b / rel)
        assert stat.S_IFMT(sa.st_mode) == stat.S_IFMT(sb.st_mode), rel
        assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), rel
        assert sa.st_mtime_ns == sb.st_mtime_ns, rel
        if stat.S_ISREG(sa.st_mode):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        elif stat.S_ISLNK(sa.st_mode):
            assert os.readlink(a / rel) == os.readlink(b / rel), rel


def test_roundtrip(disk, tmp_path):
    img, src, out = tmp_path / "io.img", tmp_path / "src", tmp_path / "out"
    make_tree(src)
    disk("mkfs", img, "64M")
    assert img.stat().st_size == 64 * 2**20
    fsck_clean(img)
    disk("upload", img, src, "/job/src")
    fsck_clean(img)
    disk("download", img, "/job/src", out)
    assert_same_tree(src, out)
    # single files: into an existing directory under their own name, and overwritten in place
    disk("upload", img, src / "secret", "/job")
    (src / "secret").write_text("changed")
    disk("upload", img, src / "secret", "/job/secret")
    fsck_clean(img)
    disk("download", img, "/job/secret", tmp_path / "secret.back")
    assert (tmp_path / "secret.back").read_text() == "changed"


def test_ls_matches_debugfs(disk, tmp_path):
    img, src = tmp_path / "io.img", tmp_path / "src"
    make_tree(src)
    disk("mkfs", img, "32M")
    disk("upload", img, src, "/")
    for path in ("/", "/pkg", "/pkg/sub"):
        ref = debugfs_ls(img, path)
        # plain
        names = disk("ls", img, path).stdout.splitlines()
        assert sorted(names) == sorted(ref)
        # long
        seen = set()
        for line in disk("ls", "-l", img, path).stdout.splitlines():
            mode, _nlink, uid, gid, size, date, hm, rest = line.split(None, 7)
            name = rest.split(" -> ")[0]
            ino, rmode, ruid, rgid, rsize, rwhen = ref[name]
            assert mode == stat.filemode(rmode), (name, mode, oct(rmode))
            assert (int(uid), int(gid), int(size)) == (ruid, rgid, rsize), name
            assert f"{date} {hm}" == rwhen, name
            if stat.S_ISLNK(rmode):
                assert rest.split(" -> ")[1] == os.readlink(src / os.path.relpath(path, "/") / name)
            seen.add(name)
        assert seen == set(ref)
        # json
        for e in json.loads(disk("ls", "--json", img, path).stdout):
            ino, rmode, ruid, rgid, rsize, _ = ref[e["name"]]
            assert e["ino"] == ino and e["mode"] == stat.S_IMODE(rmode) and e["size"] == rsize
    assert json.loads(disk("ls", "--json", img, "/link").stdout)[0]["target"] == "pkg/__init__.py"


def test_rm(disk, tmp_path):
    img, src = tmp_path / "io.img", tmp_path / "src"
    make_tree(src)
    disk("mkfs", img, "32M")
    disk("upload", img, src, "/")
    r = disk("rm", img, "/pkg", ok=False)
    assert r.returncode != 0 and "directory" in r.stderr
    disk("rm", img, "/secret")
    disk("rm", "-r", img, "/pkg")
    fsck_clean(img)
    left = debugfs_ls(img, "/")
    assert "pkg" not in left and "secret" not in left and "run.sh" in left
    r = disk("rm", img, "/secret", ok=False)
    assert r.returncode == 3 and "no such file" in r.stderr


def test_errors_and_usage(disk, tmp_path):
    img, junk = tmp_path / "io.img", tmp_path / "junk"
    junk.write_bytes(os.urandom(2**20))
    disk("mkfs", img, "8M")
    r = disk("ls", junk, ok=False)
    assert r.returncode == 3 and "not an ext2/3/4" in r.stderr
    r = disk("download", img, "/nope", tmp_path / "x", ok=False)
    assert r.returncode == 3 and "no such file" in r.stderr and "/nope" in r.stderr
    r = disk("upload", img, tmp_path / "missing", "/x", ok=False)
    assert r.returncode == 3 and "missing" in r.stderr
    # image full: a clear message, and the image stays clean
    big = tmp_path / "big"
    big.write_bytes(os.urandom(12 * 2**20))
    r = disk("upload", img, big, "/big", ok=False)
    assert r.returncode == 3 and "image is full" in r.stderr
    fsck_clean(img)
    # usage errors exit 2; --help exits 0
    assert disk("mkfs", img, ok=False).returncode == 2
    assert disk("mkfs", img, "12Q", ok=False).returncode == 2
    assert disk("ls", "-x", img, ok=False).returncode == 2
    assert disk("frobnicate", ok=False).returncode == 2
    assert disk("ls", img, "relative", ok=False).returncode == 2
    for sub in ("mkfs", "upload", "download", "ls", "rm", "df"):
        r = disk(sub, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: pyti disk {sub}")
    assert disk("--help").stdout.startswith("usage: pyti disk")


def test_download_refuses_escaping_symlink(disk, tmp_path):
    img, src, out = tmp_path / "io.img", tmp_path / "src", tmp_path / "out"
    (src / "out").mkdir(parents=True)
    (src / "out" / "results.json").write_text("{}")
    os.symlink("/etc/passwd", src / "out" / "evil")
    disk("mkfs", img, "16M")
    disk("upload", img, src, "/")
    r = disk("download", img, "/out", out, ok=False)
    assert r.returncode == 3 and "refusing" in r.stderr and "evil" in r.stderr
    r = disk("download", "--skip-unsafe-links", img, "/out", tmp_path / "out2")
    assert (tmp_path / "out2" / "results.json").read_text() == "{}"
    assert not os.path.lexists(tmp_path / "out2" / "evil")
    assert "skipped symlink" in r.stderr


def test_refuses_image_locked_by_another_program(disk, tmp_path):
    """QEMU holds byte-range locks on the disks of a running VM; writing under it would corrupt them."""
    import fcntl

    img = tmp_path / "io.img"
    disk("mkfs", img, "8M")
    (tmp_path / "f").write_text("x")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,sys,time; f=open(sys.argv[1],'rb'); fcntl.lockf(f, fcntl.LOCK_SH, 1, 100); "
         "print('locked', flush=True); time.sleep(60)", str(img)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = disk("upload", img, tmp_path / "f", "/f", ok=False)
        assert r.returncode == 3 and "locked by another program" in r.stderr
        disk("ls", img, "/")  # reading is still allowed
    finally:
        holder.kill()
        holder.wait()
    disk("upload", img, tmp_path / "f", "/f")
    fsck_clean(img)


def test_kernel_mounts_our_image(disk, tmp_path):
    """The guest kernel is the real consumer: mount the image the host kernel's way (root and loop
    devices needed, else skipped), read what pyti wrote, write like the agent does, read it back."""
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("needs root and loop devices")
    img, src, mnt = tmp_path / "io.img", tmp_path / "src", tmp_path / "mnt"
    make_tree(src)
    mnt.mkdir()
    disk("mkfs", img, "64M")
    disk("upload", img, src, "/src")
    r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"loop mount not possible here: {r.stderr.strip()}")
    try:
        assert_same_tree(src, mnt / "src")
        (mnt / "out" / "logs").mkdir(parents=True)
        for i in range(300):  # enough entries for the kernel to index the directory
            (mnt / "out" / "logs" / f"task-{i:03d}.log").write_text(f"log {i}\n")
        (mnt / "out" / "results.json").write_text('{"status": "passed"}')
        os.symlink("logs/task-000.log", mnt / "out" / "first.log")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    fsck_clean(img)
    disk("download", img, "/out", tmp_path / "out")
    assert (tmp_path / "out" / "results.json").read_text() == '{"status": "passed"}'
    assert len(list((tmp_path / "out" / "logs").iterdir())) == 300
    assert os.readlink(tmp_path / "out" / "first.log") == "logs/task-000.log"
    # and pyti can keep writing to a directory the kernel indexed
    disk("rm", img, "/out/logs/task-007.log")
    disk("upload", img, src / "secret", "/out/logs/new")
    fsck_clean(img)


def test_download_keeps_hard_links_and_holes(disk, tmp_path):
    """Images written by others (here mke2fs -d, which keeps hard links) may hold hard links and
    sparse files: they come back as hard links and holes, not as copies and zeros."""
    src, img, out = tmp_path / "src", tmp_path / "io.img", tmp_path / "out"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(100000))
    os.link(src / "a", src / "b")
    (src / "d").mkdir()
    os.link(src / "a", src / "d" / "c")
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(200 * 2**20)
        f.write(b"tail")
    subprocess.run([_tool("mke2fs"), "-q", "-F", "-t", "ext4", "-d", str(src), str(img), "32M"], check=True)
    disk("download", img, "/", out, ok=True)
    ino = os.stat(out / "a").st_ino
    assert os.stat(out / "b").st_ino == ino and os.stat(out / "d" / "c").st_ino == ino
    assert (out / "d" / "c").read_bytes() == (src / "a").read_bytes()
    st = os.stat(out / "sparse")
    assert st.st_size == 200 * 2**20 + 4 and st.st_blocks * 512 <= 64 * 1024
    with open(out / "sparse", "rb") as f:
        assert f.read(4) == b"head"
        f.seek(200 * 2**20)
        assert f.read() == b"tail"


def test_download_refuses_crafted_directory_loop(disk, tmp_path):
    img = tmp_path / "io.img"
    (tmp_path / "src" / "a" / "b").mkdir(parents=True)
    disk("mkfs", img, "8M")
    disk("upload", img, tmp_path / "src", "/")
    # a second name for directory /a inside itself: what a hostile guest could write
    r = subprocess.run([_tool("debugfs"), "-w", "-R", "link /a /a/b/loop", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = disk("download", img, "/a", tmp_path / "out", ok=False)
    assert r.returncode == 3 and "reached twice" in r.stderr


def test_download_stops_amplification(disk, tmp_path):
    """Names that share one inode without counting as links (a crafted image) would be copied
    each time: the download stops once it has written more than the image's own size."""
    img = tmp_path / "io.img"
    (tmp_path / "big").write_bytes(os.urandom(3 * 2**20))
    disk("mkfs", img, "8M")
    disk("upload", img, tmp_path / "big", "/d/big")
    for i in range(4):
        r = subprocess.run([_tool("debugfs"), "-w", "-R", f"link /d/big /d/copy{i}", str(img)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    r = disk("download", img, "/d", tmp_path / "out", ok=False)
    assert r.returncode == 3 and "more data than the image holds" in r.stderr


def test_download_replays_the_journal_of_a_dead_guest(disk, tmp_path):
    """A guest that dies with the I/O disk mounted leaves its last writes in the journal only (here:
    a copy of the image taken while mounted, after fsync). download replays it first."""
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("needs root and loop devices")
    img, snap, mnt = tmp_path / "io.img", tmp_path / "snap.img", tmp_path / "mnt"
    mnt.mkdir()
    disk("mkfs", img, "64M")
    r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"loop mount not possible here: {r.stderr.strip()}")
    try:
        (mnt / "out").mkdir()
        fd = os.open(mnt / "out" / "results.json", os.O_CREAT | os.O_WRONLY)
        os.write(fd, b'{"status": "passed"}')
        os.fsync(fd)
        os.close(fd)
        for d in (mnt / "out", mnt):
            fd = os.open(d, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        shutil.copyfile(img, snap)  # the disk as a crashed guest leaves it
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    r = disk("download", snap, "/out", tmp_path / "out", ok=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "results.json").read_text() == '{"status": "passed"}'
    fsck_clean(snap)


def test_df_matches_dumpe2fs(disk, tmp_path):
    img = tmp_path / "io.img"
    disk("mkfs", img, "32M")
    (tmp_path / "f").write_bytes(os.urandom(2**20))
    disk("upload", img, tmp_path / "f", "/f")
    r = subprocess.run([_tool("dumpe2fs"), "-h", str(img)], capture_output=True, text=True, check=True)
    ref = dict(l.split(":", 1) for l in r.stdout.splitlines() if ":" in l)
    u = json.loads(disk("df", "--json", img).stdout)
    assert u["block_size"] == int(ref["Block size"])
    assert u["blocks"] == int(ref["Block count"]) and u["free_blocks"] == int(ref["Free blocks"])
    assert u["inodes"] == int(ref["Inode count"]) and u["free_inodes"] == int(ref["Free inodes"])
    assert "free" in disk("df", img).stdout


def test_concurrent_writers_serialise(pyti_bin, disk, tmp_path):
    img = tmp_path / "io.img"
    disk("mkfs", img, "64M")
    srcs = []
    for i in range(6):
        d = tmp_path / f"src{i}"
        d.mkdir()
        for j in range(50):
            (d / f"f{j}").write_bytes(os.urandom(20000))
        srcs.append(d)
    procs = [subprocess.Popen([pyti_bin, "disk", "upload", str(img), str(d), f"/{d.name}"],
                              stderr=subprocess.PIPE, text=True) for d in srcs]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    fsck_clean(img)
    for d in srcs:
        assert sorted(disk("ls", img, f"/{d.name}").stdout.split()) == sorted(p.name for p in d.iterdir())
