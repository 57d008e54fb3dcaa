"""Load time against size for every format: each loader must be linear in its input.

    python benchmarks/loader_scaling.py              # 1 KB … 10 MB, plain and pathological inputs

For each input kind and size the file is written once and `qa.load.load_document` is timed
(best of 3). The last column, milliseconds per MB, stays flat when a loader is linear; a
quadratic one doubles it with every doubling of size. The CPU is named with the figures.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.cpu import cpu_name  # noqa: E402
from qa.load import load_document  # noqa: E402

SIZES = [1 << 10, 10 << 10, 100 << 10, 1 << 20, 10 << 20]
SENTENCE = "Iran shipped drones through the Caspian Sea to the Russian port of Makhachkala in 2023. "


def repeat_to(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit.encode("utf-8")))


KINDS = {
    "txt": ("txt", lambda n: repeat_to(SENTENCE + "\n", n)),
    "md (headings and text)": ("md", lambda n: repeat_to("# A heading\n\n" + SENTENCE + "\n\n", n)),
    "md (one heading line of spaces)": ("md", lambda n: "# " + " " * n + "x\n"),
    "html (paragraphs)": ("html", lambda n: "<html><body>" + repeat_to(f"<p>{SENTENCE}</p>", n) + "</body></html>"),
    "html (nested divs)": ("html", lambda n: "<div>" * (n // 10) + SENTENCE + "</div>" * (n // 10)),
    "html (unclosed tags)": ("html", lambda n: SENTENCE + repeat_to("<a <a ", n)),
}


def main() -> int:
    print(f"CPU: {cpu_name()}\n")
    print("| input | size | load ms | ms per MB |")
    print("|---|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp)
        for kind, (suffix, make) in KINDS.items():
            for size in SIZES:
                path = corpus / f"doc.{suffix}"
                path.write_text(make(size), encoding="utf-8")
                mb = path.stat().st_size / 2**20
                best = float("inf")
                for _ in range(3):
                    t = time.perf_counter()
                    load_document(path, corpus, budget=None)
                    best = min(best, time.perf_counter() - t)
                print(f"| {kind} | {size >> 10:,} KB | {best * 1000:.1f} | {best * 1000 / mb:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
