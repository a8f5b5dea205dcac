"""Rebuild the English catalogue: extract the Japanese source strings, apply
translations/en.txt ("日本語|English" per line), write and compile the .po/.mo.
Run after changing UI text:  python translations/build.py"""

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "translations" / "en" / "LC_MESSAGES"


def main() -> int:
    pot = ROOT / "translations" / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-o",
            str(pot),
            "--no-location",
            "--omit-header",
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    table = dict(
        line.split("|", 1) for line in (ROOT / "translations" / "en.txt").read_text().splitlines() if "|" in line
    )
    catalog = read_po(pot.open("rb"), locale="en")
    missing = []
    for message in catalog:
        if message.id:
            message.string = table.get(message.id, "")
            if not message.string:
                missing.append(message.id)
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "messages.po").open("wb") as f:
        write_po(f, catalog)
    with (OUT / "messages.mo").open("wb") as f:
        write_mo(f, catalog)
    pot.unlink()
    for m in missing:
        print("untranslated:", m)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
