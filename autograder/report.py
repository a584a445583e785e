"""The class report: how each exercise went for the whole class, from a grading run's JSON.

Per exercise: how many submissions got full, partial or no points, the mean score, and how
often each misconception was diagnosed (the catalogue's, and the exercises' own mistakes); the
exercises nobody solved come first. Written as an HTML page with matplotlib figures and as CSV.
"""

import base64
import csv
import io
from collections import Counter
from html import escape

from autograder.course import CourseError
from autograder.misconceptions import CATALOGUE


def exercise_rows(results):
    """One row per (assignment, grade_id), in course order, with the class's numbers."""
    tests = {}
    for outcomes in results.values():
        for assignment, outcome in outcomes.items():
            if outcome.get("error") and not any(t["passed"] for t in outcome["tests"].values()):
                continue  # an ungradable submission says nothing about the exercises
            for grade_id, test in outcome["tests"].items():
                tests.setdefault((assignment, grade_id), []).append(test)
    rows = []
    for (assignment, grade_id), attempts in sorted(tests.items()):
        diagnoses = Counter(t.get("diagnosis") for t in attempts if t.get("diagnosis"))
        solved = sum(t["passed"] for t in attempts)
        rows.append(
            {
                "assignment": assignment,
                "exercise": grade_id,
                "max_score": attempts[0]["max_score"],
                "submissions": len(attempts),
                "solved": solved,
                "mean_score": sum(t["score"] for t in attempts) / len(attempts),
                "scores": [t["score"] for t in attempts],
                "diagnoses": diagnoses,  # the catalogue's and the exercise's own
                **{m.key: diagnoses.get(m.key, 0) for m in CATALOGUE},
            }
        )
    return rows


def diagnosis_keys(rows):
    """Every diagnosis to count: the catalogue's, then the exercises' own mistakes that were
    diagnosed (test cells name them: `Mistake(key, ...)`, `WrongValue(key, ...)`)."""
    catalogue = [m.key for m in CATALOGUE]
    own = sorted({key for r in rows for key in r["diagnoses"]} - set(catalogue))
    return catalogue + own


def write_report(results, folder):
    """Write index.html and exercises.csv into `folder`; the rows, for the caller's summary."""
    rows = exercise_rows(results)
    if not rows:
        raise CourseError("the grading results hold no graded exercise to report on")
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["assignment", "exercise", "max_score", "submissions", "solved", "mean_score"]
    keys = diagnosis_keys(rows)
    with open(folder / "exercises.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, columns + keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            counts = {key: row["diagnoses"].get(key, 0) for key in keys}
            writer.writerow({**row, **counts, "mean_score": f"{row['mean_score']:.2f}"})
    (folder / "index.html").write_text(page(rows, len(results)))
    return rows


def page(rows, students):
    unsolved = [r for r in rows if r["solved"] == 0]
    table = "".join(
        f"<tr><td>{escape(r['assignment'])}</td><td>{escape(r['exercise'])}</td>"
        f"<td>{r['solved']} / {r['submissions']}</td><td>{r['mean_score']:.2f} / "
        f"{r['max_score']:g}</td><td>{escape(top_diagnoses(r))}</td></tr>"
        for r in rows
    )
    nobody = (
        "<ul>"
        + "".join(f"<li>{escape(r['assignment'])}: {escape(r['exercise'])}</li>" for r in unsolved)
        + "</ul>"
        if unsolved
        else "<p>Every exercise was solved by at least one student.</p>"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Class report</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}"
        "td,th{padding:.25rem .7rem;border-bottom:1px solid #ddd;text-align:left}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Class report</h1><p>{students} students, {len(rows)} exercises.</p>"
        f"<h2>Nobody solved</h2>{nobody}"
        "<h2>Exercises</h2><table><tr><th>assignment</th><th>exercise</th><th>solved</th>"
        f"<th>mean score</th><th>most frequent misconceptions</th></tr>{table}</table>"
        f"<h2>Scores</h2>{figure(score_figure(rows))}"
        f"<h2>Misconceptions</h2>{figure(misconception_figure(rows))}</body></html>\n"
    )


def top_diagnoses(row):
    counts = sorted(row["diagnoses"].items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{key} ({count})" for key, count in counts[:3]) or "-"


def score_figure(rows):
    """Stacked bars per exercise: submissions with full, partial and no points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = [f"{r['assignment'][:2]} {r['exercise']}" for r in rows]
    full = [sum(s >= r["max_score"] for s in r["scores"]) for r in rows]
    none = [sum(s == 0 for s in r["scores"]) for r in rows]
    partial = [r["submissions"] - f - n for r, f, n in zip(rows, full, none, strict=True)]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5))
    left = [0] * len(rows)
    for values, label, color in [
        (full, "full points", "#1a7f37"),
        (partial, "some points", "#d4a72c"),
        (none, "no points", "#b42318"),
    ]:
        ax.barh(labels, values, left=left, label=label, color=color)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("submissions")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 submission
    # Above the bars, not on them: a legend inside the axes hides the bars it lands on.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def misconception_figure(rows):
    """How often each misconception was diagnosed, over the whole class."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = diagnosis_keys(rows)
    counts = [sum(r["diagnoses"].get(key, 0) for r in rows) for key in keys]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(keys) + 1.2))
    ax.barh(keys, counts, color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("diagnosed answers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def figure(fig):
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='figure' src='data:image/png;base64,{data}'>"
