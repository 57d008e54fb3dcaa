"""Two users upload at once: how long the small upload and a question take while a large upload is encoded.

    python benchmarks/upload_concurrency.py                 # a 150 KB upload, then a 100-byte one
    python benchmarks/upload_concurrency.py --large-kb 400

The chat page's app (``qa.web.WebApp``) runs in this process on a copy of the shipped corpus with
the real encoder. The large upload (SQuAD dev contexts, so nothing of it is in the embedding
cache) starts first; a second later the small one and a question are sent from other threads,
as other users' requests are. The large upload is read and encoded outside any lock, so the
small upload waits only for the short final step (adding to the index), never for the
encoding. The CPU is named with the figures; other jobs on the machine stretch them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa.config import Settings  # noqa: E402
from qa.cpu import cpu_name  # noqa: E402
from qa.pipeline import open_engine  # noqa: E402
from qa.web import WebApp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQUAD = Path("/work/shared/benchmarks/squad-v1.1-dev/dev-v1.1.json")
SMALL = "Zorvath radar\n\nThe Zorvath-9 radar was delivered to Kazan in 2031.\n"


def squad_text(size: int) -> str:
    """About ``size`` bytes of SQuAD dev contexts, one paragraph each."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    out, total = ["SQuAD contexts"], 0
    for article in data:
        for paragraph in article["paragraphs"]:
            out.append(paragraph["context"])
            total += len(paragraph["context"].encode("utf-8")) + 2
            if total >= size:
                return "\n\n".join(out) + "\n"
    return "\n\n".join(out) + "\n"


def no_progress(*args, **kwargs) -> None:
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large-kb", type=int, default=150, help="size of the large upload (default: 150)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory(prefix="qa-bench-upload-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(ROOT / "corpus", tmp / "corpus")
        settings = Settings(corpus=tmp / "corpus", index=tmp / "index")
        quiet = lambda msg: None  # noqa: E731
        app = WebApp(open_engine(settings, progress=False, log=quiet))
        import qa.web

        qa.web.stderr_log = quiet
        (tmp / "up").mkdir()
        large, small = tmp / "up" / "large.txt", tmp / "up" / "small.txt"
        large.write_text(squad_text(args.large_kb * 1024), encoding="utf-8")
        small.write_text(SMALL, encoding="utf-8")

        times: dict[str, float] = {}

        def timed(name: str, fn) -> threading.Thread:
            def run() -> None:
                t = time.perf_counter()
                fn()
                times[name] = time.perf_counter() - t
            thread = threading.Thread(target=run)
            thread.start()
            return thread

        big = timed("large upload", lambda: app.upload_files([str(large)], no_progress))
        time.sleep(1.0)
        others = [timed("small upload (sent 1 s later)", lambda: app.upload_files([str(small)], no_progress)),
                  timed("question (sent 1 s later)", lambda: app.api_ask("How many drones has Russia purchased?"))]
        for thread in others:
            thread.join()
        still = big.is_alive()
        big.join()
        ask = app.api_ask("Where was the Zorvath-9 radar delivered?")
        print(f"large upload: {large.stat().st_size / 1024:.0f} KB; still running when the others were done: {still}")
        print("| request | seconds |\n|---|--:|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.2f} |")
        print(f"the small upload is answerable: {'Kazan' in ask['answers'][0]['text'] if ask['answers'] else False}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
