"""The progress of one import, kept in a small JSON file so that a re-run resumes it.

The file is keyed by the SHA-256 of the input: progress saved for other contents is ignored, so
an edited input is imported from its first line again (harmless: every write is conditional).
It is replaced atomically, so a crash while saving leaves the previous progress intact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ImportState", "Rejection", "fingerprint", "state_path_for"]

_FORMAT = 1


@dataclass(frozen=True)
class Rejection:
    """A line that was not imported, and why, in words a person can act on."""

    line: int
    reason: str


@dataclass
class ImportState:
    """What the committed lines of one input came to."""

    sha256: str
    lines_done: int = 0
    read: int = 0
    imported: int = 0
    present: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, sha256: str) -> ImportState | None:
        """The progress saved at ``path`` for the input with that hash; None if there is none.

        A file that is not ours, or saved for other contents, counts as none.
        """
        try:
            document: Any = json.loads(path.read_text(encoding="utf-8"))
            if document["format"] != _FORMAT or document["sha256"] != sha256:
                return None
            return cls(
                sha256=sha256,
                lines_done=int(document["lines_done"]),
                read=int(document["read"]),
                imported=int(document["imported"]),
                present=int(document["present"]),
                rejected=[
                    Rejection(int(r["line"]), str(r["reason"])) for r in document["rejected"]
                ],
            )
        except FileNotFoundError:
            return None
        except (KeyError, TypeError, ValueError):
            # Not a progress file of ours: starting over is safe, every write is conditional.
            return None

    def save(self, path: Path) -> None:
        """Write the progress to ``path``, replacing what was there in one step."""
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps({"format": _FORMAT, **asdict(self)}), encoding="utf-8")
        temporary.replace(path)


def state_path_for(input_path: Path) -> Path:
    """Where the progress of importing ``input_path`` is kept unless told otherwise."""
    return input_path.with_name(f"{input_path.name}.import-state.json")


def fingerprint(path: Path) -> tuple[str, int]:
    """The SHA-256 of the file at ``path`` and its number of lines, in one pass."""
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    # A last line without a newline is a line too.
    return digest.hexdigest(), lines + (last != b"\n")
