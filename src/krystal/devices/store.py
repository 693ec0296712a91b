"""Where device state lives (XDG state dir) and the stable UUID of each configured device."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from krystal import journal


def state_dir(override: str = "") -> Path:
    """`override`, else $XDG_STATE_HOME/krystal/devices (default ~/.local/state/krystal/devices)."""
    return Path(override).expanduser() if override else journal.state_dir() / "devices"


class UuidStore:
    """name -> UUID, kept in one JSON file replaced atomically, so a restart finds the same ids."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ids: dict[str, str] = {}
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self._ids = {str(k): str(uuid.UUID(str(v))) for k, v in loaded.items()}
        except (OSError, ValueError):  # missing or garbled: start afresh (ids are re-made and kept)
            self._ids = {}

    def get(self, name: str, fixed: str = "") -> str:
        """The UUID of `name`: `fixed` when the config gives one, else the stored or a new one."""
        wanted = str(uuid.UUID(fixed)) if fixed else self._ids.get(name) or str(uuid.uuid4())
        if self._ids.get(name) != wanted:
            self._ids[name] = wanted
            self._save()
        return wanted

    def _save(self) -> None:
        replace_atomically(self.path, json.dumps(self._ids, indent=1, sort_keys=True))


def replace_atomically(path: Path, text: str) -> None:
    """`path` holds `text` or its old content, whole either way, whenever the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


Key = tuple[str, tuple[tuple[str, str], ...]]  # (command, arguments): what a command id stands for


class CommandBook:
    """command_id -> (command, answer) of a device's last `bound` commands, kept across restarts.

    Before a command runs, a "started" record is written (one os.write on O_APPEND: a kill -9
    after it cannot lose it); its answer follows as a "done" record. After a restart, a retry of a
    finished id gets the first answer, and an id that started but never finished gets "outcome
    unknown", never a second run. The file is rewritten (atomically) to the last `bound` ids when
    it holds four times as many lines. `path` None: in memory only.
    """

    def __init__(self, path: str | Path | None, bound: int = 256, fsync: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.bound = max(1, bound)
        self.fsync = fsync
        self.entries: OrderedDict[str, tuple[Key, dict[str, Any] | None]] = OrderedDict()
        self._lines = 0
        self._log: journal.JsonLines | None = None
        if self.path is None:
            return
        for record in journal.read_json_lines(self.path):
            self._lines += 1
            try:
                key = (str(record["command"]), tuple((str(k), str(v)) for k, v in record["arguments"]))
                self._remember(
                    str(record["id"]), key, record.get("answer") if record["state"] == "done" else None
                )
            except (KeyError, TypeError, ValueError):  # a foreign or damaged line: skipped
                continue
        self._log = journal.JsonLines(self.path, max_bytes=0, fsync=fsync)

    def get(self, command_id: str) -> tuple[Key, dict[str, Any] | None] | None:
        """(key, answer) of a known id; answer None: it started and its outcome is unknown."""
        return self.entries.get(command_id)

    def start(self, command_id: str, key: Key) -> None:
        """Record that `command_id` is about to run; raises OSError if that cannot be kept."""
        self._write(command_id, key, "started", None)

    def finish(self, command_id: str, key: Key, answer: dict[str, Any]) -> None:
        self._remember(command_id, key, answer)  # a retry in this process gets it even if the disk fails
        self._write(command_id, key, "done", answer)

    def _remember(self, command_id: str, key: Key, answer: dict[str, Any] | None) -> None:
        self.entries[command_id] = (key, answer)
        self.entries.move_to_end(command_id)
        while len(self.entries) > self.bound:
            self.entries.popitem(last=False)

    def _write(self, command_id: str, key: Key, state: str, answer: dict[str, Any] | None) -> None:
        """On disk, then in memory: a "started" that could not be written is not remembered (the
        command is not run, so a retry must run it, not be told its outcome is unknown)."""
        if self._log is None:
            self._remember(command_id, key, answer)
            return
        record: dict[str, Any] = {"id": command_id, "command": key[0], "arguments": key[1], "state": state}
        if answer is not None:
            record["answer"] = answer
        self._log.append(record)
        self._remember(command_id, key, answer)
        self._lines += 1
        if self._lines > 4 * self.bound:
            self._compact()

    def _compact(self) -> None:
        """The file rewritten to the remembered ids: a temporary file replaced atomically, so a
        kill at any point leaves either the old file or the new one, both whole."""
        assert self.path is not None and self._log is not None
        lines = []
        for command_id, (key, answer) in self.entries.items():
            record: dict[str, Any] = {"id": command_id, "command": key[0], "arguments": key[1]}
            record.update({"state": "done", "answer": answer} if answer is not None else {"state": "started"})
            lines.append(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        try:
            replace_atomically(self.path, "".join(lines))
        except OSError:
            return  # the long file is still whole: try again later
        self._log.close()
        self._log = journal.JsonLines(self.path, max_bytes=0, fsync=self.fsync)
        self._lines = len(self.entries)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
