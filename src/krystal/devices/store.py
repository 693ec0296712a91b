"""Where device state lives (XDG state dir) and the stable UUID of each configured device."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uuids.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._ids, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise
