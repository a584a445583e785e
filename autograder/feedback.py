"""A feedback page per student and notebook, in nbgrader's feedback/ layout.

It shows the score of each exercise with the check's message, and the student's own cells.
It is built from verdicts and the student's notebook only: the hidden tests, their inputs and
the expected values are not at hand here, so they cannot leak into it.
"""

from html import escape

from autograder.notebooks import nbgrader_meta

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; } td, th { padding: .3rem .8rem; border-bottom: 1px solid #ddd; }
.passed { color: #1a7f37; } .failed { color: #b42318; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; }
.test { border-left: 4px solid #ddd; padding-left: .8rem; margin: 1rem 0; }
"""


def feedback_page(title, notebook, tests):
    """HTML for one graded notebook; `tests` is {grade_id: {"score", "max_score", "passed",
    "message"}} in notebook order."""
    score = sum(t["score"] for t in tests.values())
    total = sum(t["max_score"] for t in tests.values())
    rows = "".join(
        f"<tr><td>{escape(grade_id)}</td><td>{t['score']:g} / {t['max_score']:g}</td>"
        f"<td class='{'passed' if t['passed'] else 'failed'}'>"
        f"{'passed' if t['passed'] else escape(t['message'])}</td></tr>"
        for grade_id, t in tests.items()
    )
    cells = "".join(cell_html(cell, tests) for cell in notebook.cells)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"<p>Score: <b>{score:g} / {total:g}</b></p>"
        f"<table><tr><th>exercise</th><th>points</th><th>result</th></tr>{rows}</table>"
        f"<h2>Your notebook</h2>{cells}</body></html>\n"
    )


def cell_html(cell, tests):
    grade_id = nbgrader_meta(cell).get("grade_id")
    if grade_id in tests and not nbgrader_meta(cell).get("solution"):
        t = tests[grade_id]
        verdict = "passed" if t["passed"] else escape(t["message"])
        return (
            f"<div class='test'><b>Test {escape(grade_id)}</b>: {t['score']:g} / "
            f"{t['max_score']:g} — <span class='{'passed' if t['passed'] else 'failed'}'>"
            f"{verdict}</span></div>"
        )
    if cell.cell_type == "code":
        return f"<pre>{escape(cell.source)}</pre>"
    return f"<pre style='background:none'>{escape(cell.source)}</pre>"
