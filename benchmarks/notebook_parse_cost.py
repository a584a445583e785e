"""What reading a submitted notebook costs the judge: peak memory and time, worst cases.

Each case is a notebook just under the size limit (`--bytes`, default the current
notebooks.MAX_NOTEBOOK_BYTES) built to be expensive in one way. The judge's work on it is
measured in a fresh forked process: `notebooks.read_notebook` (JSON, nbformat, validation),
then what `verdict.parsed_cell` does with every code cell for the method rules (ast.parse,
and IPython's TransformerManager). Peak memory is the most that process, or a child it parsed in,
held above what it held when it started (VmHWM, reset first; the child's ru_maxrss).

    cd /work/main && .venv/bin/python benchmarks/notebook_parse_cost.py [--bytes N] [--cases a,b]

It is a benchmark, not a test: run it by hand, from the course root.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import notebooks, verdict  # noqa: E402

NORMAL = ROOT / "source" / "07_training_loop" / "07_training_loop.ipynb"


def notebook(cells, metadata=None):
    return {"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}


def code(source, outputs=(), index=0):
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": f"c{index}",
        "metadata": {},
        "outputs": list(outputs),
        "source": source,
    }


def fill(size, piece, overhead=200):
    return piece * max(1, (size - overhead) // len(piece))


# case name -> the notebook's text, at about `size` bytes
CASES = {
    "normal course notebook": lambda size: NORMAL.read_text(),
    "one cell, a huge list": lambda size: json.dumps(
        notebook([code("x = [" + fill(size, "0,") + "0]")])
    ),
    "one cell, a huge list after a magic": lambda size: json.dumps(
        notebook([code("%time x = [" + fill(size, "0,") + "0]")])
    ),
    "one cell, a long attribute chain": lambda size: json.dumps(
        notebook([code("x" + fill(size, ".a"))])
    ),
    "in process: as many objects as allowed": lambda size: json.dumps(
        notebook(
            [code("1")],
            {"x": [{}] * (notebooks.IN_PROCESS_VALUES - 100), "y": fill(size // 5, "\U0001f600")},
        ),
        ensure_ascii=False,
    ),
    "many tiny cells": lambda size: json.dumps(
        notebook([code("1", index=i) for i in range(size // 130)])
    ),
    "metadata: many empty objects": lambda size: json.dumps(
        notebook([code("1")], {"x": [{} for _ in range((size - 200) // 4)]})
    ),
    "metadata: deep nesting": lambda size: (
        json.dumps(notebook([code("1")]))[:-1]
        + ', "deep": '
        + "[" * ((size - 300) // 2)
        + "]" * ((size - 300) // 2)
        + "}"
    ),
    "outputs: many small": lambda size: json.dumps(
        notebook(
            [
                code(
                    "1",
                    [{"output_type": "stream", "name": "stdout", "text": "x"}] * (size // 60),
                )
            ]
        )
    ),
    "outputs: one huge html": lambda size: json.dumps(
        notebook(
            [
                code(
                    "1",
                    [
                        {
                            "output_type": "display_data",
                            "data": {"text/html": fill(size, "<b>x</b>")},
                            "metadata": {},
                        }
                    ],
                )
            ]
        )
    ),
    "attachment: one huge image": lambda size: json.dumps(
        notebook(
            [
                {
                    "cell_type": "markdown",
                    "id": "m",
                    "metadata": {},
                    "source": "![x](attachment:x.png)",
                    "attachments": {"x.png": {"image/png": fill(size, "QUFB")}},
                }
            ]
        )
    ),
}


def measure(path):
    """(seconds, peak MB above the start, what happened) for the judge's reading of `path`."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # measured alone, in a process of its own
        os.close(reader)
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
        start_kb, started = vm("VmRSS"), time.perf_counter()
        try:
            nb = notebooks.read_notebook(path)
            for cell in nb.cells:
                if cell.cell_type == "code":
                    verdict.parsed_cell(cell.source)
            outcome = f"read, {len(nb.cells)} cells"
        except notebooks.BadNotebook as error:
            outcome = f"refused: {error}"
        except BaseException as error:  # noqa: BLE001 (what breaks is what is measured)
            outcome = f"{type(error).__name__}: {str(error)[:60]}"
        seconds = time.perf_counter() - started
        child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_mb = (max(vm("VmHWM"), child_kb) - start_kb) / 1024
        os.write(writer, json.dumps([seconds, peak_mb, outcome]).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return json.loads(text) if text else (0.0, 0.0, "the process died")


def vm(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=notebooks.MAX_NOTEBOOK_BYTES - 1024)
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    names = args.cases.split(",") if args.cases else list(CASES)
    print(f"{'case':40} {'MB':>7} {'seconds':>8} {'peak MB':>8}  result")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            path = Path(folder) / "case.ipynb"
            path.write_text(CASES[name](args.bytes))
            seconds, peak, outcome = measure(path)
            size = path.stat().st_size / 2**20
            print(f"{name:40} {size:7.2f} {seconds:8.3f} {peak:8.0f}  {outcome[:70]}")


if __name__ == "__main__":
    main()
