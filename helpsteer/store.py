"""The workspace store: WS/datasets/NAME/{manifest.json, <table>.parquet, quarantine.jsonl, analysis/}.

Each write makes a new immutable version folder, WS/datasets/.versions/NAME/<id>, and WS/datasets/NAME
is a symlink to the current one, swapped with one os.replace. So at every instant NAME is either the
old version or the new one, never half of either; a writer holds NAME's lock (the filelock package)
for the whole read-modify-write, so two writers cannot lose each other's sources; and a reader pins
the version it first resolved (a flock'd pin file), so all its reads come from one version even
while a writer commits (the writer removes an old version only when nobody holds a pin on it).

The commit protocol, in order (a kill anywhere leaves a state `recover` resolves on the next write):
1. every file is written and fsynced in .versions/NAME/.tmp-<pid>-<rand>/;
2. that folder is renamed to .versions/NAME/<id> (ids sort by time);
3. a new symlink .link-NAME-<rand> -> .versions/NAME/<id> replaces NAME (os.replace, atomic): this
   is the commit point;
4. versions older than the current one that nobody pins are removed.
`recover` (under NAME's lock) removes staging folders and versions newer than the link's, or all
versions when there is no link (commits killed before step 3: rolled back). A workspace written
before versions existed (NAME a plain folder) is moved into .versions on its next write, atomically
where renameat2 exists."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import filelock
import orjson
import polars as pl

from .errors import UsageError
from .schema import TABLES, empty

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^\d{20}-\d+$")  # <time_ns>-<pid>: sorts by creation time
VERSIONS = ".versions"
LOCKS = ".locks"


def datasets_root(workspace: Path) -> Path:
    return Path(workspace) / "datasets"


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return name


def dataset_path(workspace: Path, name: str) -> Path:
    """WS/datasets/NAME: the user-facing path (a symlink to the current version)."""
    return datasets_root(workspace) / check_name(name)


def _versions_dir(workspace: Path, name: str) -> Path:
    return datasets_root(workspace) / VERSIONS / name


def _versions(workspace: Path, name: str) -> list[str]:
    """The complete version ids of NAME, oldest first."""
    d = _versions_dir(workspace, name)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if _VERSION.match(p.name) and (p / "manifest.json").exists())


def _resolve(workspace: Path, name: str) -> Path | None:
    """The folder NAME stands for now: the version its link points at, a pre-version plain folder,
    or None."""
    link = dataset_path(workspace, name)
    if link.is_symlink():
        target = Path(os.path.realpath(link))
        return target if (target / "manifest.json").exists() else None
    if link.is_dir() and (link / "manifest.json").exists():
        return link
    return None


# -- reading: one process sees one version of each dataset ----------------------------------------
# A pin is a file .versions/NAME/.pin-<id>-<pid>-<token> held open with a shared flock for as long as
# the reader reads that version; a writer removes an old version only when it can take an exclusive
# flock on every one of its pins (a pin of a dead process, or one released). flock, not pids, so it
# holds across pid namespaces (containers sharing a workspace) and pid reuse. Pins are kept per
# thread: the dashboard serves each browser session from a thread of one process.

try:
    import fcntl
except ImportError:  # not POSIX: a pin counts as held while its file exists
    fcntl = None

_local = threading.local()
_held_lock = threading.Lock()
_held: dict[str, int] = {}  # every pin this process holds (path -> fd), for the exit


def _pins() -> dict[tuple[str, str], tuple[Path, str | None]]:
    """This thread's pins: (workspace, name) -> (version folder, pin file or None)."""
    if not hasattr(_local, "pins"):
        _local.pins = {}
    return _local.pins


def _hold(version: Path) -> str | None:
    path = str(version.parent / f".pin-{version.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:  # a read-only workspace: nobody can write it, so nothing to pin against
        return None
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH)
    with _held_lock:
        _held[path] = fd
    return path


def _release(pin: str | None) -> None:
    if pin is None:
        return
    with _held_lock:
        fd = _held.pop(pin, None)
    with contextlib.suppress(OSError):
        os.unlink(pin)
    if fd is not None:
        os.close(fd)


def _pin(workspace: Path, name: str) -> tuple[Path, str | None] | None:
    """Resolve NAME and pin that version. The pin is made before the link is read again, so a
    writer that removes old versions after its link swap either sees the pin or has already
    swapped, in which case the check fails and we resolve again."""
    for _ in range(100):
        version = _resolve(workspace, name)
        if version is None or not _is_version(version):  # none, or a pre-version plain folder
            return None if version is None else (version, None)
        pin = _hold(version)
        if pin is None or _resolve(workspace, name) == version:
            return version, pin
        _release(pin)
    raise UsageError(f"dataset {name!r} in {workspace} changes faster than it can be read; try again")


def _is_version(path: Path) -> bool:
    return path.parent.parent.name == VERSIONS


def _key(workspace: Path, name: str) -> tuple[str, str]:
    return (str(Path(workspace).resolve()), name)


def current(workspace: Path, name: str) -> Path | None:
    """The version folder this thread reads NAME from (pinned on first use), or None."""
    pins = _pins()
    key = _key(workspace, name)
    got = pins.get(key)
    if got is not None:
        if (got[0] / "manifest.json").exists():
            return got[0]
        # never read on from another version: that would mix two in one command
        raise UsageError(f"dataset {name!r} in {workspace} was deleted while this command read it; run it again")
    got = _pin(workspace, name)
    if got is None:
        return None
    pins[key] = got
    return got[0]


def _unpin(workspace: Path, name: str) -> None:
    got = _pins().pop(_key(workspace, name), None)
    if got is not None:
        _release(got[1])


def refresh() -> None:
    """Drop this thread's pins, so its next read sees the newest versions (the dashboard calls this
    at the start of each run of a page; a CLI command reads one version for its lifetime)."""
    pins = _pins()
    for _, pin in pins.values():
        _release(pin)
    pins.clear()


def _release_all() -> None:
    with _held_lock:
        held = list(_held)
    for pin in held:
        _release(pin)


atexit.register(_release_all)


def exists(workspace: Path, name: str) -> bool:
    return _resolve(workspace, name) is not None


def require(workspace: Path, name: str) -> Path:
    """The folder of NAME's version this process reads (a UsageError naming the datasets if none)."""
    path = current(workspace, name)
    if path is None:
        have = ", ".join(m["name"] for m in list_datasets(workspace)) or "none"
        raise UsageError(f"no dataset {name!r} in workspace {workspace} (datasets: {have}); create it with `helpsteer ingest`")
    return path


def read_manifest(workspace: Path, name: str) -> dict:
    return orjson.loads((require(workspace, name) / "manifest.json").read_bytes())


def names(workspace: Path) -> list[str]:
    root = datasets_root(workspace)
    if not root.exists():
        return []
    found = {p.name for p in root.iterdir() if _NAME.match(p.name)}
    if (root / VERSIONS).is_dir():
        found |= {p.name for p in (root / VERSIONS).iterdir() if _NAME.match(p.name)}
    return sorted(n for n in found if _resolve(workspace, n) is not None)


def list_datasets(workspace: Path) -> list[dict]:
    out = []
    for name in names(workspace):
        try:
            out.append(orjson.loads((require(workspace, name) / "manifest.json").read_bytes()))
        except (orjson.JSONDecodeError, OSError, UsageError):
            continue
    return out


def load_table(workspace: Path, name: str, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    path = require(workspace, name) / f"{table}.parquet"
    if not path.exists():
        df = empty(table)
        return df.select(columns) if columns else df
    return pl.read_parquet(path, columns=columns)


def table_counts(folder: Path) -> dict[str, int]:
    counts = {}
    for t in TABLES:
        p = folder / f"{t}.parquet"
        counts[t] = pl.scan_parquet(p).select(pl.len()).collect().item() if p.exists() else 0
    return counts


# -- writing ----------------------------------------------------------------------------------------

def fault_point(step: str) -> None:
    """Fault tests stop a real process at a named step of a write: HELPSTEER_KILL_AT=<step> SIGKILLs it
    there; HELPSTEER_PAUSE_AT=<step> with HELPSTEER_PAUSE_FILE=<path> creates that file and waits
    (at most 120 s) until the test removes it. Steps: read (sources read, not yet checked),
    staged, versioned, linked, gc, migrated, deleted."""
    if os.environ.get("HELPSTEER_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("HELPSTEER_PAUSE_AT") == step and os.environ.get("HELPSTEER_PAUSE_FILE"):
        flag = Path(os.environ["HELPSTEER_PAUSE_FILE"])
        flag.touch()
        deadline = time.monotonic() + 120
        while flag.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    if pid <= 0:  # not a pid we wrote: keep what we cannot place
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # no directory handles to fsync there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _lock_path(workspace: Path, name: str) -> Path:
    return datasets_root(workspace) / LOCKS / f"{name}.lock"


@dataclass
class Writing:
    """One write of a dataset, under its lock: files go in `path`; `base` is the version it starts
    from (None: the dataset does not exist yet). `commit()` makes it the current version."""

    workspace: Path
    name: str
    path: Path
    base: Path | None
    committed: Path | None = None

    def copy_base(self, skip: tuple[str, ...] = ()) -> None:
        """Put the base version's files in the new one (hard links: versions are never modified in
        place, every write replaces a file), to rewrite some of them."""
        if self.base is None:
            return
        for p in self.base.iterdir():
            if p.name in skip or p.name.startswith("."):
                continue
            if p.is_dir():
                shutil.copytree(p, self.path / p.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(p, self.path / p.name)

    def commit(self) -> Path:
        if not (self.path / "manifest.json").exists():
            raise UsageError(f"dataset {self.name!r}: the new version in {self.path} lost its manifest.json before it was committed "
                             "(removed by something else?); nothing was written")
        _fsync_tree(self.path)
        fault_point("staged")
        vdir = self.path.parent
        version = vdir / _new_id(self.workspace, self.name)
        os.rename(self.path, version)  # the commit point
        _fsync_dir(vdir)
        fault_point("versioned")
        _point_link(self.workspace, self.name, version)
        fault_point("linked")
        self.committed = version
        _unpin(self.workspace, self.name)  # this thread now reads what it wrote
        _pins()[_key(self.workspace, self.name)] = (version, _hold(version))
        _gc(self.workspace, self.name)
        return version


def _new_id(workspace: Path, name: str) -> str:
    """A version id newer than every existing one (even if the clock stepped back)."""
    have = _versions(workspace, name)
    t = time.time_ns()
    if have:
        t = max(t, int(have[-1].split("-")[0]) + 1)
    return f"{t:020d}-{os.getpid()}"


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _point_link(workspace: Path, name: str, version: Path) -> None:
    link = dataset_path(workspace, name)
    tmp = link.parent / f".link-{name}-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(version, link.parent), tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def _live_pins(vdir: Path, version: str) -> bool:
    """Whether a reader still holds a pin on VERSION (removing the pins nobody holds)."""
    live = False
    for pin in vdir.glob(f".pin-{version}-*"):
        with _held_lock:
            if str(pin) in _held:  # ours
                live = True
                continue
        if fcntl is None:
            live = True
            continue
        try:
            fd = os.open(pin, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live = True
        else:
            pin.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return live


def _gc(workspace: Path, name: str) -> None:
    """Remove the versions older than the current one that no live process reads."""
    now = _resolve(workspace, name)
    vdir = _versions_dir(workspace, name)
    for v in _versions(workspace, name):
        if now is not None and v < now.name and not _live_pins(vdir, v):
            trash = vdir / f".trash-{v}"
            os.rename(vdir / v, trash)
            fault_point("gc")
            shutil.rmtree(trash, ignore_errors=True)


def recover(workspace: Path, name: str) -> None:
    """Finish or roll back what a killed write of NAME left behind (call under NAME's lock)."""
    root = datasets_root(workspace)
    link = dataset_path(workspace, name)
    vdir = _versions_dir(workspace, name)
    for tmp in _leftovers(root, "link", name):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)  # a migration's old plain folder, already exchanged
        else:
            tmp.unlink(missing_ok=True)
    # the layout before versions: NAME a plain folder, and the two-rename commit's leftovers
    if not link.exists() and not link.is_symlink():
        trash = sorted(_leftovers(root, "trash", name), key=lambda p: p.stat().st_mtime)
        if trash and not _versions(workspace, name):
            os.rename(trash[-1], link)  # a commit killed between its two renames: keep the old dataset
    for old in _leftovers(root, "trash", name):
        shutil.rmtree(old, ignore_errors=True)
    if link.is_dir() and not link.is_symlink():
        _migrate(workspace, name)
    if vdir.is_dir():
        for tmp in vdir.glob(".tmp-*"):  # under NAME's lock, a staging folder is a dead writer's
            shutil.rmtree(tmp, ignore_errors=True)
        for trash in vdir.glob(".trash-*"):
            shutil.rmtree(trash, ignore_errors=True)
        for p in vdir.iterdir():  # a version folder without its manifest cannot be a committed one
            if _VERSION.match(p.name) and not (p / "manifest.json").exists():
                shutil.rmtree(p, ignore_errors=True)
    if not link.is_symlink():
        migrated = [v for v in _versions(workspace, name) if (vdir / v / MIGRATED).exists()]
        if migrated:  # a migration without renameat2 killed between its rename and its link: finish it
            _point_link(workspace, name, vdir / migrated[-1])
    now = _resolve(workspace, name)
    if now is None and link.is_symlink():
        link.unlink()  # dangling: a delete killed before its last step
    for v in _versions(workspace, name):
        if now is None or v > now.name:  # committed after the link's version, or with no link: a killed commit, rolled back
            shutil.rmtree(vdir / v, ignore_errors=True)
    if now is not None:
        _gc(workspace, name)


def _leftovers(root: Path, kind: str, name: str) -> list[Path]:
    """.link-NAME-<hex8> and the pre-version layout's .trash-NAME-<hex8> (exactly NAME: not NAME-x's)."""
    pattern = re.compile(rf"^\.{kind}-{re.escape(name)}-[0-9a-f]{{8}}$")
    return [p for p in root.iterdir() if pattern.match(p.name)] if root.is_dir() else []


MIGRATED = ".migrated"  # in a version made from a pre-version plain folder


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _migrate(workspace: Path, name: str) -> None:
    """A pre-version plain folder NAME becomes a version and NAME its link, with no instant at
    which NAME is absent: a linked copy (hard links) is made a version, then the folder and a new
    link are exchanged in one renameat2. Elsewhere: the folder is renamed into .versions (marked, so
    that `recover` finishes the move if a kill comes before the link)."""
    link = dataset_path(workspace, name)
    vdir = _versions_dir(workspace, name)
    vdir.mkdir(parents=True, exist_ok=True)
    version = vdir / _new_id(workspace, name)
    tmp = link.parent / f".link-{name}-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(version, link.parent), tmp)
    staging = vdir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(link, staging, copy_function=_link_or_copy)
    os.rename(staging, version)
    if _exchange(tmp, link):
        fault_point("migrated")
        shutil.rmtree(tmp, ignore_errors=True)  # the old plain folder, now under the temporary name
    else:
        tmp.unlink()
        shutil.rmtree(version)
        (link / MIGRATED).touch()
        os.rename(link, version)
        fault_point("migrated")
        _point_link(workspace, name, version)
    _fsync_dir(link.parent)


def _pid_of(folder_name: str) -> int:
    try:
        return int(folder_name.split("-")[-2])
    except (ValueError, IndexError):
        return -1


@contextlib.contextmanager
def writing(workspace: Path, name: str, *, wait: bool = False):
    """Hold NAME's lock, recover it, and yield a `Writing` whose folder is removed unless committed.
    Without `wait`, a dataset another process is writing is a UsageError (exit 2) at once."""
    check_name(name)
    root = datasets_root(workspace)
    try:
        (root / LOCKS).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"workspace {workspace}: cannot write there ({e.strerror}); nothing was written") from None
    lock = filelock.FileLock(_lock_path(workspace, name))
    owner = _lock_path(workspace, name).with_suffix(".owner")
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except filelock.Timeout:  # (a subclass of OSError: caught first)
        who = owner.read_text().strip() if owner.exists() else "?"
        raise UsageError(f"dataset {name!r} in {workspace} is being written by another process (pid {who}); "
                         f"wait for it, or pass --wait to queue behind it") from None
    except OSError as e:
        raise UsageError(f"workspace {workspace}: cannot write there ({e.strerror or e}); nothing was written") from None
    try:
        owner.write_text(str(os.getpid()))
        recover(workspace, name)
        clean_stale(workspace)
        base = _resolve(workspace, name)
        if base is not None and _is_version(base):
            _unpin(workspace, name)  # a writer reads what it rewrites: the newest version
            base = current(workspace, name)
        vdir = _versions_dir(workspace, name)
        vdir.mkdir(parents=True, exist_ok=True)
        staging = vdir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        w = Writing(workspace=Path(workspace), name=name, path=staging, base=base)
        try:
            yield w
        finally:
            if w.committed is None:
                shutil.rmtree(staging, ignore_errors=True)
                with contextlib.suppress(OSError):
                    vdir.rmdir()  # a first write that failed leaves no folder of its name (the lock file stays)
    finally:
        owner.unlink(missing_ok=True)
        lock.release()  # the lock file is never removed: a waiter may hold it open


def delete(workspace: Path, name: str, *, wait: bool = False) -> None:
    require(workspace, name)
    with writing(workspace, name, wait=wait):
        root = datasets_root(workspace)
        vdir = _versions_dir(workspace, name)
        trash = root / VERSIONS / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(vdir, trash)  # from here NAME reads as absent; the link left dangling goes next
        fault_point("deleted")
        dataset_path(workspace, name).unlink(missing_ok=True)
        refresh()
        shutil.rmtree(trash, ignore_errors=True)


def clean_stale(workspace: Path) -> None:
    """Remove what killed writers left outside any dataset's versions: the pre-version layout's
    staging folders (datasets/.tmp-NAME-<pid>-<hex8>) and deletes' trash. A dataset's own staging
    folders are removed by `recover`, under its lock (taking other datasets' locks here could make
    their writers exit 2 for nothing)."""
    root = datasets_root(workspace)
    for tmp in root.glob(".tmp-*"):
        if tmp.is_dir() and not _alive(_pid_of(tmp.name)):
            shutil.rmtree(tmp, ignore_errors=True)
    for trash in root.glob(f"{VERSIONS}/.trash-*"):  # a delete killed before its rmtree
        shutil.rmtree(trash, ignore_errors=True)
    # the pre-version layout's commit killed between its two renames left only .trash-NAME-<hex8>: put it back
    for trash in root.glob(".trash-*-*"):
        name = trash.name[len(".trash-"):].rsplit("-", 1)[0]
        if _NAME.match(name) and trash.is_dir() and not dataset_path(workspace, name).exists() and not _versions(workspace, name):
            os.rename(trash, dataset_path(workspace, name))


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str))
    os.replace(tmp, path)


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)
