"""One writer per output folder: a preprocessed dataset, a fold folder, a prediction folder.

Two runs writing one folder mix their outputs (arrays of two plans, interleaved logs, a
predictions.csv that loses rows), so a run first takes the folder's lock and a second run is
refused with one message naming the folder, the holder (host, pid, since when, command) and what
to do. Cooperating writers (the `--shard I/N` array jobs of one dataset) take the lock *shared*
under one `group` (their settings): they run side by side, while an exclusive writer, a shared
writer of another group, or a second writer of the same `label` (the same shard twice) is refused.

How: every holder owns one marker file in the folder, `.fomo_nn_<name>.lock` (exclusive) or
`.fomo_nn_<name>.<label>.lock` (shared), created with O_CREAT|O_EXCL (atomic on local disks and on
NFSv3+/Lustre), holding its record as JSON, and kept under an exclusive `fcntl.flock` for the
holder's lifetime. The flock is the liveness test: the kernel drops it when the holder dies, even by
`kill -9`, so a marker whose flock can be taken is stale and is removed (no manual cleanup after a
crash, on local disks and on NFS, where Linux maps flock onto the server's locks). Where the
filesystem has no flock (Lustre mounted `noflock`, NFS without a lock daemon), liveness falls back
to the record: a holder on this host whose pid is gone (or reused: its start time differs) is
stale; one on another host cannot be checked from here, so the message says which file to delete
if that run is dead. Limitation: Lustre mounted `localflock` only excludes runs on one node.

A marker appears with its record already inside: the record is written to a hidden temporary file,
flocked, and hard-linked to the marker's name (atomic, EEXIST when held; the classic NFS lock-file
way), so a run starting at the same instant reads the real holder, never an empty record. Where hard
links are not offered, the marker is created empty and a reader waits a moment for its record.

A reader/writer use (`readers`: e.g. trainings reading a preprocessed dataset) is a shared group
whose holders each carry their own label: readers run side by side, a writer waits for none of them
and is refused while any lives (and a reader while a writer lives).

Before anything is created the folder is checked (`check_output_folder`): an existing file in its
path, a name longer than the filesystem allows, or a read-only place is one BadInputError naming the
path, instead of an OSError from the folder creation.

A process that already holds a folder's lock may take it again (nested steps of one command);
the lock excludes other processes, not threads of this one.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fomo_nn.utils.errors import BadInputError
from fomo_nn.utils.files import is_no_space, no_space_error

_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
RECORD_WAIT_SECONDS = 2.0  # how long a reader waits for the record of a marker created without a link
_HELD: dict[tuple[str, str], "RunLock"] = {}  # (folder, name) -> the lock this process holds


class RunLockedError(RuntimeError):
    """Another live run writes this folder."""


@dataclass
class Holder:
    """Who holds a marker, as its record says."""

    marker: Path
    host: str = "?"
    pid: int = 0
    pid_start: str | None = None
    started: str = "?"
    command: str = "?"
    label: str | None = None
    group: str | None = None
    purpose: str | None = None
    checked: bool = True  # False: liveness could not be checked from here (no flock, other host)

    def describe(self) -> str:
        who = f"{self.label}: " if self.label else (f"{self.purpose}: " if self.purpose else "")
        return f"{who}host {self.host}, pid {self.pid}, since {self.started}, command `{self.command}`"


class RunLock:
    """`with RunLock(folder, "train", "training"):` -- the body runs as the folder's one writer.

    `shared` (a group, e.g. the settings of an array job) with a unique `label` lets holders of the
    same group write side by side. `advice` ends the refusal message (what to do instead).
    """

    def __init__(self, folder: str | Path, name: str, purpose: str, shared: str | None = None,
                 label: str | None = None, advice: str = "",
                 reason: str = "two runs writing one folder would mix their outputs"):
        if shared is not None and not label:
            raise ValueError("a shared lock needs a label naming this holder (e.g. the shard)")
        self.folder, self.name, self.purpose = Path(folder), name, purpose
        self.shared, self.label, self.advice, self.reason = shared, label, advice, reason
        self.marker = self.folder / (f".fomo_nn_{name}.{_slug(label)}.lock" if shared is not None
                                     else f".fomo_nn_{name}.lock")
        self._fd: int | None = None  # -1: nested inside this process's own hold
        self._created: list[Path] = []  # folders the lock made, removed again if the run left them empty

    @property
    def _key(self) -> tuple[str, str]:
        return str(self.folder.resolve()), self.name

    def __enter__(self) -> "RunLock":
        if self._key in _HELD:  # this process already writes the folder (an enclosing step holds the lock)
            self._fd = -1
            return self
        check_output_folder(self.folder)
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._create_marker()
            self._check_others()
        except BaseException as error:
            self._remove_marker()
            if is_no_space(error):
                raise no_space_error(error, self.marker) from None
            if isinstance(error, OSError) and error.errno in _UNUSABLE:
                raise BadInputError(error.filename or self.folder, _unusable(error)) from None
            raise
        _HELD[self._key] = self
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None and self._fd >= 0:
            _HELD.pop(self._key, None)
            self._remove_marker()
        self._fd = None

    # ----------------------------------------------------------------- taking and giving back
    def _create_marker(self) -> None:
        for _ in range(5):  # a stale marker removed: try again
            linked = self._link_marker()
            if linked is None:
                break  # no hard links here: create the marker itself, below
            if linked:
                return
            holder = live_holder(self.marker)
            if holder is not None:
                raise RunLockedError(self._refusal([holder])) from None
        else:
            raise RunLockedError(f"{self.folder}: could not take the lock {self.marker.name} (other runs keep "
                                 "starting and stopping in this folder); try again")
        for _ in range(5):  # a stale marker removed, or a checker raced with our creation: try again
            try:
                self._fd = os.open(self.marker, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = live_holder(self.marker)
                if holder is not None:
                    raise RunLockedError(self._refusal([holder])) from None
                continue
            if _flock(self._fd, blocking=True) and not _same_file(self._fd, self.marker):
                os.close(self._fd)  # judged stale before we locked it, and removed: create it anew
                self._fd = None
                continue
            os.write(self._fd, json.dumps(self._record()).encode())
            os.fsync(self._fd)
            return
        raise RunLockedError(f"{self.folder}: could not take the lock {self.marker.name} (other runs keep "
                             "starting and stopping in this folder); try again")

    def _link_marker(self) -> bool | None:
        """The marker made whole in one step: its record written and flocked under a temporary name, then
        hard-linked into place. True: taken (self._fd holds it); False: a marker exists; None: this
        filesystem offers no hard links."""
        temporary = self.folder / f"{self.marker.name}.{socket.gethostname()}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _flock(fd, blocking=True)
            os.write(fd, json.dumps(self._record()).encode())
            os.fsync(fd)
            os.link(temporary, self.marker)
        except FileExistsError:
            os.close(fd)
            return False
        except OSError as error:
            os.close(fd)
            if error.errno in _NO_LINK:
                return None
            raise
        finally:
            temporary.unlink(missing_ok=True)
        self._fd = fd
        return True

    def _check_others(self) -> None:
        """The exclusive holder refuses while shared holders live, and a shared one while an exclusive or
        another group's holder lives. Each side checks after creating its own marker, so of two runs
        starting together at least one sees the other: never both go on."""
        exclusive = self.folder / f".fomo_nn_{self.name}.lock"
        candidates = sorted(self.folder.glob(f".fomo_nn_{self.name}.*.lock"))
        if self.shared is not None:
            candidates = [exclusive] + [p for p in candidates if p != self.marker]
        conflicts = []
        for path in candidates:
            holder = live_holder(path)
            if holder is not None and (self.shared is None or holder.group != self.shared):
                conflicts.append(holder)
        if conflicts:
            raise RunLockedError(self._refusal(conflicts))

    def _remove_marker(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd >= 0:
            if _same_file(fd, self.marker):
                self.marker.unlink(missing_ok=True)  # we hold its flock: no checker can be removing it too
            os.close(fd)
        for folder in self._created:  # a refused or failed run leaves no empty folder behind
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []

    def _record(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
                "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": _command(), "label": self.label, "group": self.shared, "purpose": self.purpose}

    def _refusal(self, holders: list[Holder]) -> str:
        others = sorted({h.purpose for h in holders if h.purpose and h.purpose != self.purpose})
        if others:
            lines = [f"{self.folder} is in use by another run ({', '.join(others)}), so this {self.purpose} run does "
                     f"not start ({self.reason}):"]
        else:
            lines = [f"{self.folder} is being written by another {self.purpose} run, so this one does not start "
                     f"({self.reason}):"]
        for holder in holders:
            other_settings = (self.shared is not None and holder.group is not None and holder.group != self.shared)
            lines.append(f"  {holder.describe()}" + (f" [settings: {holder.group}; this run: {self.shared}]"
                                                      if other_settings else ""))
        lines.append("Wait for it to finish or stop it, then rerun" + (f"; {self.advice}" if self.advice else "") + ".")
        unchecked = [h for h in holders if not h.checked]
        if unchecked:
            lines.append("This filesystem offers no lock the kernel releases, and a run on another host cannot be "
                         "checked from here: if it is no longer running, delete "
                         + ", ".join(str(h.marker) for h in unchecked) + " and rerun.")
        return "\n".join(lines)


def live_holder(marker: Path) -> Holder | None:
    """The live holder of `marker`, or None (no marker, or a stale one, which is removed)."""
    try:
        fd = _open_existing(marker)
    except FileNotFoundError:
        return None
    try:
        try:
            locked = _flock(fd, blocking=False)
        except BlockingIOError:  # its flock is held: the holder is alive
            return _holder(marker, _wait_for_record(fd), checked=True)
        record = _read_record(fd)
        if not locked and _fallback_live(record):
            return _holder(marker, record, checked=record is not None and record.get("host") == socket.gethostname())
        if _same_file(fd, marker):  # stale; we hold its flock, so no other checker removes it too
            marker.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)


def _open_existing(marker: Path) -> int:
    try:
        return os.open(marker, os.O_RDWR)
    except PermissionError:  # another user's run: read-only is enough to test the flock on local disks
        return os.open(marker, os.O_RDONLY)


def _fallback_live(record: dict | None) -> bool:
    """Without flock: stale only if the record proves it (this host, pid gone or reused)."""
    if record is None or record.get("host") != socket.gethostname():
        return True
    return _alive(int(record.get("pid", 0)), record.get("pid_start"))


def _flock(fd: int, blocking: bool) -> bool:
    """Take an exclusive flock (True), or False where the filesystem has none. BlockingIOError: held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as error:
        if error.errno in _NO_FLOCK:
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _read_record(fd: int) -> dict | None:
    try:
        record = json.loads(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _wait_for_record(fd: int) -> dict | None:
    """The record of a live marker; one created without a link may be empty for a moment."""
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    record = _read_record(fd)
    while record is None and time.monotonic() < deadline:
        time.sleep(0.02)
        record = _read_record(fd)
    return record


def _holder(marker: Path, record: dict | None, checked: bool) -> Holder:
    if record is None:  # being created this instant, or written by something else
        return Holder(marker, started="(no record yet)", checked=checked)
    fields = {k: record[k] for k in ("host", "pid", "pid_start", "started", "command", "label", "group", "purpose")
              if k in record}
    return Holder(marker, **fields, checked=checked)


def _alive(pid: int, pid_start: str | None) -> bool:
    if pid <= 0:
        return True  # unknown: do not steal
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    now = _process_start(pid)
    return not (now == "zombie" or (pid_start is not None and now is not None and now != pid_start))


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), 'zombie', or None (unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def _command() -> str:
    text = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else sys.executable
    return text if len(text) <= 300 else text[:297] + "..."


def _slug(label: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(label)).strip("-") or "holder"


# ------------------------------------------------------------------------------------ the folder itself
_UNUSABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOENT}


def _unusable(error: OSError) -> str:
    why = {errno.EROFS: "is on a read-only filesystem", errno.EACCES: "is not writable (permission denied)",
           errno.EPERM: "is not writable (operation not permitted)",
           errno.ENOTDIR: "has a file where a folder must be", errno.EEXIST: "exists as a file, not a folder",
           errno.ENAMETOOLONG: "has a name longer than the filesystem allows",
           errno.ENOENT: "cannot be created in this place"}[error.errno]
    return f"cannot be used as an output folder: it {why}; choose another place"


def check_output_folder(folder: str | Path) -> None:
    """BadInputError naming the path when `folder` cannot be an output folder: a file in its place or in
    its path, a name longer than the filesystem allows (e.g. a long --tag), or a read-only place. Creates
    nothing."""
    folder = Path(os.path.abspath(folder))
    existing = next((p for p in (folder, *folder.parents) if os.path.lexists(p)), Path(folder.anchor))
    if not existing.is_dir():
        what = "the output folder" if existing == folder else f"a folder of {folder}"
        raise BadInputError(existing, f"is a file, but {what} must be created here; choose another output folder "
                                      "or move the file away")
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in folder.relative_to(existing).parts:
        if len(os.fsencode(part)) > limit:
            raise BadInputError(folder, f"the folder name {part[:40]!r}... is {len(os.fsencode(part))} bytes, longer "
                                        f"than the {limit} this filesystem allows (shorten --tag or --output)")
    if not os.access(existing, os.W_OK | os.X_OK):
        problem = "on a read-only filesystem" if _read_only_filesystem(existing) else "not writable by this user"
        raise BadInputError(existing, f"is {problem}, so {folder} cannot be written; choose another output folder")


def _read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
