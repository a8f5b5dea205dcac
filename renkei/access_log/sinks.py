"""Where signed tree heads are kept outside the database (platform/DEPLOY.md, "The access
log's heads"). A sink has `append(note)`; one that can be read back also has `notes()`,
which verification checks the log against. Today: a directory (RENKEI_AUDIT_SINK). A
syslog host, an object store with a retention lock or an auditor's mailbox would be
further classes with the same two methods, listed by `sinks`."""

import os
from pathlib import Path

from models import utcnow


class DirectorySink:
    """One file per UTC day, opened append-only; every head is on disk (fsync) before
    `append` returns. Notes are separated by a blank line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, note: str):
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = self.path / f"heads-{utcnow():%Y-%m-%d}.txt"
        new = not name.exists()
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (note + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's name must survive a crash too
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def notes(self):
        """Every complete note, oldest file first (a note cut off by a crash is skipped)."""
        for name in sorted(self.path.glob("heads-*.txt")):
            text, signatures, in_signatures = [], [], False
            for line in name.read_text(errors="replace").split("\n"):
                if line == "":
                    if in_signatures and signatures:
                        yield "\n".join(text) + "\n\n" + "\n".join(signatures) + "\n"
                        text, signatures, in_signatures = [], [], False
                    elif text:
                        in_signatures = True
                elif in_signatures:
                    signatures.append(line)
                else:
                    text.append(line)


def sinks(settings) -> list:
    return [DirectorySink(settings.audit_sink)]
