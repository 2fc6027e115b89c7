"""The JSONL file ``flinks-async pull`` writes: the line format, the writer, and the scan
that ``--resume`` does before it touches a byte.

One line per login, one ``write`` per line (so a crash can only tear the last line)::

    {"login_id":"…","endpoint":"Investments","ok":true,"data":{…as Flinks sent it…}}
    {"login_id":"…","endpoint":"Investments","ok":false,"error":{"type":…,"message":…}}
    {"login_id":"…","endpoint":"Investments","ok":false,"ineligible":true,"error":{…}}

The third kind (``--skip-ineligible``) is a login Flinks' nightly refresh status lists as
no longer eligible: nothing was pulled for it, the person must re-link it.

Resume rules (:func:`scan`):

* Every complete line must be one of ours (a JSON object with ``login_id``, ``endpoint``
  and ``ok``) for the same endpoint; otherwise the file is refused and left as it is.
* A torn last line (no newline) is cut off only when the file is shown to be ours (at
  least one complete line of ours before it) and the tail starts like one of our lines.
  A file of one line without a newline, or anything else, is refused.
* The last line of a login wins: a failure followed by a success is a success.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import sys
from typing import Any, BinaryIO

import msgspec

from .._errors import APIError, FlinksError
from .._management_models import IneligibleLogin

__all__ = [
    "INELIGIBLE",
    "NotOurs",
    "Output",
    "ResumeState",
    "cut_torn_tail",
    "error_line",
    "ineligible_line",
    "ok_line",
    "scan",
]

#: what an ineligible login's line holds (near its start), for counting lines
INELIGIBLE = b'"ineligible":true'


_HEAD = b'{"login_id":'


class _Line(msgspec.Struct):
    login_id: str
    endpoint: str
    ok: bool


_LINE = msgspec.json.Decoder(_Line)


class NotOurs(ValueError):
    """The output file is not a flinks-async result file (or not for this endpoint)."""


@dataclasses.dataclass
class ResumeState:
    """What an existing output file holds, by login id (lower case)."""

    ok: set[str] = dataclasses.field(default_factory=set)
    failed: set[str] = dataclasses.field(default_factory=set)
    lines: int = 0
    torn_bytes: int = 0  #: bytes after the last complete line, to cut off


def scan(path: str, endpoint: str) -> ResumeState:
    """Read ``path`` (streamed: memory is the ids, not the payloads) and decide; raises
    :class:`NotOurs` without changing the file. A missing file is an empty state."""
    state = ResumeState()
    status: dict[str, bool] = {}
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return state
    with f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):  # the last line, torn
                if state.lines == 0 or not line.startswith(_HEAD):
                    raise NotOurs(
                        f"{path}: line {number} is incomplete and the file does not look "
                        "like a flinks-async result file; not resuming, it is left as it is"
                    )
                state.torn_bytes = len(line)
                break
            try:
                record = _LINE.decode(line)
            except (
                msgspec.DecodeError,
                msgspec.ValidationError,
                UnicodeDecodeError,
                RecursionError,
            ):
                raise NotOurs(
                    f"{path}: line {number} is not a flinks-async result line; not "
                    "resuming, the file is left as it is"
                ) from None
            if record.endpoint != endpoint:
                raise NotOurs(
                    f"{path}: line {number} holds {record.endpoint} results, this pull is "
                    f"{endpoint}; not resuming, the file is left as it is"
                )
            status[record.login_id.lower()] = record.ok
            state.lines += 1
    for login_id, ok in status.items():
        (state.ok if ok else state.failed).add(login_id)
    return state


def cut_torn_tail(path: str, state: ResumeState) -> None:
    """Remove the torn last line :func:`scan` found (and said was safe to remove)."""
    if state.torn_bytes:
        with open(path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.truncate(size - state.torn_bytes)
        print(
            f"flinks-async: repaired {path}: removed a torn last line of {state.torn_bytes} bytes",
            file=sys.stderr,
        )


def error_line(login_id: str, endpoint: str, error: FlinksError) -> bytes:
    """The line of a failed login."""
    err: dict[str, Any] = {
        "type": type(error).__name__,
        "message": str(error),
        "request_id": error.request_id,
    }
    if isinstance(error, APIError):
        err["flinks_code"] = error.flinks_code
        err["http_status"] = error.http_status
    return (
        msgspec.json.encode({"login_id": login_id, "endpoint": endpoint, "ok": False, "error": err})
        + b"\n"
    )


def ineligible_line(login_id: str, endpoint: str, info: IneligibleLogin) -> bytes:
    """The line of a login not pulled because it is no longer eligible for nightly refresh:
    the person must re-link it through Flinks Connect."""
    err = {
        "type": "IneligibleLogin",
        "message": "not eligible for nightly refresh: the person must re-link this login "
        "through Flinks Connect; nothing was pulled",
        "last_refresh_state": info.last_refresh_state,
        "last_refresh_error_code": info.last_refresh_error_code,
        "last_refresh_date": info.last_refresh_date,
    }
    line = {"login_id": login_id, "endpoint": endpoint, "ok": False, "ineligible": True}
    return msgspec.json.encode({**line, "error": err}) + b"\n"


def ok_line(login_id: str, endpoint: str, body: bytes) -> bytes:
    """The line of a login's payload, spliced in as Flinks sent it."""
    # JSON text has no raw newline inside strings, so folding them keeps it valid and one line.
    body = body.strip().replace(b"\r", b" ").replace(b"\n", b" ")
    head = msgspec.json.encode({"login_id": login_id, "endpoint": endpoint, "ok": True})
    return head[:-1] + b',"data":' + body + b"}\n"


class Output:
    """Appends whole lines with one write each: a crash can only tear the last line.

    ``truncate=True`` empties an existing file first (``--overwrite``). Created mode 0600.

    ``tentative=True`` (``pull``): the output only takes effect with its first line. The
    file is opened at once (so a path that cannot be written is an error before anything
    starts), but a truncation waits for the first write, and :meth:`close` with nothing
    written removes a file this object created: a pull stopped by a set-up error leaves
    no empty file behind, and an ``--overwrite`` that wrote nothing leaves the old file as
    it was.
    """

    def __init__(self, path: str, *, truncate: bool = False, tentative: bool = False) -> None:
        self.path = path
        self.written = 0  #: lines written
        self._created = False
        self._truncate = False
        if path == "-":
            self._fd = sys.stdout.fileno()
            self._stream: BinaryIO | None = sys.stdout.buffer
            return
        self._stream = None
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if not tentative:
            self._fd = os.open(path, flags | (os.O_TRUNC if truncate else 0), 0o600)
            return
        self._truncate = truncate
        try:  # O_EXCL: whether this object creates the file, without a race
            self._fd = os.open(path, flags | os.O_EXCL, 0o600)
            self._created = True
        except FileExistsError:  # there already (or a dangling symlink: never removed)
            self._fd = os.open(path, flags, 0o600)

    def write(self, line: bytes) -> None:
        self.written += 1
        if self._stream is not None:
            self._stream.write(line)
            self._stream.flush()
            return
        if self._truncate:
            os.ftruncate(self._fd, 0)
            self._truncate = False
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._stream is not None:
            return
        if self._created and not self.written:
            self._remove()
        elif stat.S_ISREG(os.fstat(self._fd).st_mode):  # not /dev/stdout, a pipe...
            os.fsync(self._fd)
        os.close(self._fd)

    def _remove(self) -> None:
        """Remove the file this object created, if the path still names it."""
        mine = os.fstat(self._fd)
        with contextlib.suppress(OSError):
            now = os.stat(self.path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.path)
