"""The journal file, readable whatever happens to it: Optuna's ``JournalFileBackend`` with its damage handled.

Optuna (5.0) appends one JSON record per line under a lock file, and reading skips a last line without its
newline (a record still being written). What it does not guard is a record cut for good: a full disk, a
killed NFS client, a copy taken mid-write. The next append lands right after the cut bytes and fuses with
them into a line that is not JSON, and from then on every read raises, for every study of the file.

Here:
- reading never raises on damage: a cut last record is skipped (as Optuna does), a fused line keeps the
  complete record at its end, and one line (``notice``) says what was found;
- an append first checks the tail under Optuna's lock: a cut last record is removed, a fused line rewritten,
  after the original is copied aside (``<journal>.damaged-<time>``), with one line saying so;
- a failed write (a full disk) is truncated back, so the file still ends on its last complete record;
- a stop signal waits for the append to end (``interrupts``), so it never leaves the lock file behind.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from typing import Any, Callable, Generator

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import LOCK_FILE_SUFFIX, get_lock_file

from facenet.errors import UserError

from .interrupts import uninterrupted

RECORD_START = b'{"op_code":'   # how every record Optuna writes begins (json.dumps of a dict led by op_code)
SNIFF = 16                      # first bytes shown of a file that is not a journal


class JournalError(UserError):
    """A journal that is not one, or that cannot be written."""


class JournalWriteError(JournalError, OSError):
    """A write that failed (a full disk): the circuit breaker treats it as the storage's, not a trial's."""


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_is_journal(path: str) -> None:
    """Refuse a file that holds something else (a YAML spec, random bytes) before Optuna parses it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(RECORD_START))
    except FileNotFoundError:
        return
    except OSError as e:
        raise JournalError(f"cannot read journal storage {path}: {e.strerror or e}; choose another --storage") from None
    if head and not head.startswith(RECORD_START):
        raise JournalError(f"{path} is not an Optuna journal (first bytes {head[:SNIFF]!r}); pass a journal "
                           f"file that facesearch or Optuna wrote, or a database URL, as --storage")


def salvage(line: bytes) -> tuple[list[dict], bool]:
    """(the records a line holds, whether it is whole): one record, or for cut bytes fused with later appends,
    every complete record among its pieces (each piece starts where a record starts)."""
    try:
        return [json.loads(line)], True
    except ValueError:
        pass
    starts = [i for i in range(len(line)) if line.startswith(RECORD_START, i)] + [len(line)]
    records = []
    for a, b in zip(starts, starts[1:]):
        try:
            records.append(json.loads(line[a:b]))
        except ValueError:
            pass
    return records, False


class CheckedJournal(JournalFileBackend):
    """Optuna's journal file backend, reading past damage and repairing it before it appends.

    Records are counted as they are yielded (not by line), so a fused line that holds no complete record
    can be read past without shifting the numbers Optuna's replay keeps.
    """

    def __init__(self, file_path: str, notice: Callable[[str], None] = to_stderr) -> None:
        check_is_journal(file_path)
        super().__init__(file_path)
        self._notice, self._told, self._fused = notice, set(), False
        self._offsets: dict[int, int] = {0: 0}   # records read -> byte offset after the last of them

    def _tell(self, key: str, line: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self._notice(line)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        with open(self._file_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size   # what is appended while we read waits for the next read
            number = log_number_from if log_number_from in self._offsets else 0
            pos = self._offsets[number]
            f.seek(pos)
            for n, line in enumerate(f):
                if pos + len(line) > size:
                    break
                pos += len(line)
                if not line.endswith(b"\n"):   # a cut last record, or one being written right now
                    if not os.path.lexists(self._file_path + LOCK_FILE_SUFFIX):
                        self._tell("cut", f"journal {self._file_path}: its last record is cut ({len(line)} bytes "
                                          f"after the last complete one); read without it, and the next run "
                                          f"that writes repairs the file (keeping a copy)")
                    break
                records, whole = salvage(line)
                if not whole:
                    self._fused = True
                    self._tell("fused", f"journal {self._file_path}: a line holds cut bytes fused with a later "
                                        f"write (near byte {pos - len(line)}); read past them, and the next run "
                                        f"that writes repairs the file (keeping a copy)")
                if not records:
                    continue
                first = number
                number += len(records)
                self._offsets[number] = pos   # a line's records are read together
                yield from records[max(0, log_number_from - first):]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        try:
            with uninterrupted(), get_lock_file(self._lock):   # a stop signal never leaves the lock behind
                self._repair()
                self._append(data)
        except JournalError:
            raise
        except OSError as e:   # the lock file itself could not be made (a full disk, a read-only folder)
            raise JournalWriteError(f"cannot write journal {self._file_path}: {e.strerror or e}; it is "
                                    f"unchanged; free disk space (or fix its folder's permissions) and rerun") from None

    def _append(self, data: bytes) -> None:
        fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as e:
                os.ftruncate(fd, end)   # never leave half a record: the file ends where it did
                raise JournalWriteError(f"cannot write journal {self._file_path}: {e.strerror or e}; it is "
                                        f"unchanged (every complete record kept); free disk space and rerun") from None
        finally:
            os.close(fd)

    def _repair(self) -> None:
        """Under the lock: make the file end on a complete record, and rewrite fused lines, if need be."""
        size = os.path.getsize(self._file_path)
        tail_cut = size > 0 and _last_byte(self._file_path) != b"\n"
        if not (tail_cut or self._fused):
            return
        backup = f"{self._file_path}.damaged-{dt.datetime.now():%Y%m%d-%H%M%S-%f}"
        shutil.copyfile(self._file_path, backup)
        with open(self._file_path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        cut = len(lines.pop()) if lines and not lines[-1].endswith(b"\n") else 0
        kept = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for line in lines for r in salvage(line)[0]]
        if self._fused:
            tmp = f"{self._file_path}.repair{os.getpid()}"
            with open(tmp, "wb") as f:
                f.writelines(kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file_path)
            self._offsets = {0: 0}   # byte offsets moved: the next read counts records from the start
        else:
            os.truncate(self._file_path, size - cut)
        what = ", ".join(filter(None, (f"cut {cut} bytes of a partial last record" if cut else "",
                                       "rewrote the lines fused after a cut"
                                       if self._fused else "")))
        self._fused = False
        self._notice(f"journal {self._file_path}: repaired ({what}); {len(kept)} complete records kept; "
                     f"the original is saved as {backup}")


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)
