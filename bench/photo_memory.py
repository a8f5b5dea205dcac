"""The memory one photo costs while it is cleaned (issue 29: a 190 KB, 49-megapixel PNG
took a worker to 629 MB where the docs said about 400). Each case runs in a fresh
process; the figure is the growth of its peak resident size (ru_maxrss) from before the
decode to after renkei.attachments.images re-encoded the file and made its thumbnail. The baseline
is the same image's pixels held once in RGBA (width × height × 4 bytes).

Usage:  python bench/photo_memory.py"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASE = r"""
import io, resource, sys
sys.path.insert(0, {root!r})
from PIL import Image
mode, side, fmt = {mode!r}, {side}, {fmt!r}
img = Image.new(mode, (side, side))
if mode == "P":
    img.putpalette([i % 256 for i in range(768)]); img.info["transparency"] = 0
buf = io.BytesIO(); img.save(buf, fmt); data = buf.getvalue(); del img, buf
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from renkei.attachments import images
images._reencode(data, fmt.lower())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(data), (after - before) * 1024)
"""

CASES = [
    ("a 49 MP palette PNG with transparency (the assessment's file)", "P", 7000, "PNG"),
    ("a 49 MP RGB PNG", "RGB", 7000, "PNG"),
    ("a 48 MP phone JPEG (8000 × 6000 is close)", "RGB", 6928, "JPEG"),
    ("a 12 MP phone JPEG", "RGB", 3464, "JPEG"),
]


def main():
    rows = []
    for label, mode, side, fmt in CASES:
        out = subprocess.run(
            [sys.executable, "-c", CASE.format(root=str(ROOT), mode=mode, side=side, fmt=fmt)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        size, grew = int(out[0]), int(out[1])
        rgba = side * side * 4
        rows.append(
            {
                "case": label,
                "file_kb": round(size / 1024),
                "megapixels": round(side * side / 1e6, 1),
                "peak_growth_mb": round(grew / 2**20),
                "rgba_once_mb": round(rgba / 2**20),
                "ratio": round(grew / rgba, 2),
            }
        )
        print(
            f"{label}: file {size / 1024:.0f} KB, peak +{grew / 2**20:.0f} MB "
            f"= {grew / rgba:.2f}x its pixels once in RGBA ({rgba / 2**20:.0f} MB)"
        )
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "photo_memory.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
