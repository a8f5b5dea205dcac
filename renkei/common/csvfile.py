"""CSV for spreadsheets (the access log's exports, the usage sheet): streamed in chunks,
every text cell made safe from formula injection (OWASP, "CSV Injection")."""

import csv
import io
import unicodedata

from renkei.common import offload

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # cells a spreadsheet would evaluate


def safe_cell(value):
    """A text cell a spreadsheet will not evaluate. Judged on its NFKC form with leading
    white space and line breaks stripped: Excel reads a full-width ＝ as = and skips
    leading spaces (issue 29)."""
    if not isinstance(value, str):
        return value
    bare = unicodedata.normalize("NFKC", value).lstrip(" \t\r\n\u3000")
    return "'" + value if bare.startswith(FORMULA_START) or value.startswith(FORMULA_START) else value


def chunks(header, rows, start: str = "", chunk: int = 65536):
    """CSV text in chunks of about `chunk` characters (memory flat however many rows),
    every cell made safe for a spreadsheet; `start` opens the first chunk (a BOM)."""
    buf = io.StringIO()
    buf.write(start)
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        if buf.tell() > chunk:
            offload.pause()  # a long export must not hold up the worker's other connections
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
