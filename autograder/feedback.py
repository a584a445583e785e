"""What a student gets back for a graded notebook, where nbgrader keeps it: a feedback page
(feedback/) and the autograded notebook (autograded/).

The feedback page shows the score of each exercise with the check's message, and the
student's own cells. Both are built from verdicts, the student's notebook and the released
test cells only: the hidden tests, their inputs and the expected values are not at hand here,
so they cannot leak into them.
"""

import functools
import json
import os
import re
from html import escape, unescape
from pathlib import Path

import nbformat
from bleach.sanitizer import Cleaner
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from autograder.notebooks import nbgrader_meta, read_regular_file

# What nbgrader's formgrader may render of a student's markdown or raw cell, on the Jupyter
# server's origin: nbconvert's markdown output (math stays text, for MathJax), nothing active.
SAFE_TAGS = frozenset(
    "a abbr b blockquote br code dd del div dl dt em h1 h2 h3 h4 h5 h6 hr i img kbd li ol p pre "
    "s span strong sub sup table tbody td th thead tr ul".split()
)
SAFE_ATTRIBUTES = {
    "*": ["class", "title"],
    **{f"h{level}": ["class", "id", "title"] for level in range(1, 7)},
    "a": ["class", "href", "title"],
    "img": ["alt", "src", "title"],
    "td": ["align"],
    "th": ["align"],
}
SAFE_PROTOCOLS = frozenset({"http", "https", "mailto", "attachment"})
SAFE_URL = re.compile(r"(https?://|mailto:|attachment:|#|[^:]*([/?#]|$))")
STRICT = Cleaner(tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, protocols=SAFE_PROTOCOLS)
# The feedback page shows a markdown cell's math as MathML, made here: no script renders it,
# nothing is fetched. What latex2mathml writes is cleaned like the rest (\href, \style and
# text in \text{} are the student's).
MATHML_TAGS = frozenset(
    "math mrow mi mn mo ms mspace mtext msup msub msubsup mfrac msqrt mroot munder mover "
    "munderover mtable mtr mtd mstyle mpadded mphantom menclose merror mmultiscripts "
    "mprescripts none".split()
)
MATHML_ATTRIBUTES = (
    "class accent accentunder columnalign columnlines columnspacing depth display "
    "displaystyle fence form height largeop linethickness lspace mathsize mathvariant maxsize "
    "minsize movablelimits notation rowlines rowspacing rspace scriptlevel separator "
    "stretchy symmetric voffset width xmlns".split()
)
PAGE_CLEANER = Cleaner(
    tags=SAFE_TAGS | MATHML_TAGS,
    attributes={**SAFE_ATTRIBUTES, **{tag: MATHML_ATTRIBUTES for tag in MATHML_TAGS}},
    protocols=SAFE_PROTOCOLS,
)
# Math as nbconvert's renderer leaves it (escaped text): $$display$$, $inline$, \begin{env}.
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$]+?)\$|\\begin\{(\w+\*?)\}.+?\\end\{\3\}", re.S)
CODE = re.compile(r"(<pre>.*?</pre>|<code>.*?</code>)", re.S)  # where a $ is only a $
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# The autograded notebook's metadata (the submission's is not carried: it is never needed).
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; } td, th { padding: .3rem .8rem; border-bottom: 1px solid #ddd; }
.passed { color: #1a7f37; } .failed { color: #b42318; }
pre { background: #f6f8fa; padding: .6rem; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.output { background: none; border-left: 3px solid #ddd; } pre.error { color: #b42318; }
img.output { display: block; max-width: 100%; }
.test { border-left: 4px solid #ddd; padding-left: .8rem; margin: 1rem 0; }
"""


def feedback_page(title, notebook, tests):
    """HTML for one graded notebook; `tests` is {grade_id: {"score", "max_score", "passed",
    "message", and after manual grading "manual" and "comment"}} in notebook order."""
    score = sum(t["score"] for t in tests.values())
    total = sum(t["max_score"] for t in tests.values())
    rows = "".join(
        f"<tr><td>{escape(grade_id)}</td><td>{t['score']:g} / {t['max_score']:g}</td>"
        f"<td class='{'passed' if t['passed'] else 'failed'}'>"
        f"{'passed' if t['passed'] else escape(t['message'])}{grader_note(t)}</td></tr>"
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


def grader_note(test):
    """What a grader added to a test's result in the formgrader: a score and a comment."""
    note = " <em>(score set by your grader)</em>" if test.get("manual") else ""
    if test.get("comment"):
        note += (
            "<div class='comment'><b>Grader's comment:</b> "
            f"<span style='white-space: pre-wrap'>{escape(test['comment'])}</span></div>"
        )
    return note


def cell_html(cell, tests):
    grade_id = nbgrader_meta(cell).get("grade_id")
    if grade_id in tests and not nbgrader_meta(cell).get("solution"):
        t = tests[grade_id]
        verdict = "passed" if t["passed"] else escape(t["message"])
        return (
            f"<div class='test'><b>Test {escape(grade_id)}</b>: {t['score']:g} / "
            f"{t['max_score']:g} — <span class='{'passed' if t['passed'] else 'failed'}'>"
            f"{verdict}</span>{grader_note(t)}</div>"
        )
    if cell.cell_type == "code":
        return f"<pre>{escape(cell.source)}</pre>{outputs_html(cell.get('outputs', []))}"
    if cell.cell_type == "markdown":
        return markdown_html(cell.source)
    return f"<pre style='background:none'>{escape(cell.source)}</pre>"


def markdown_html(source):
    """A markdown cell as the feedback page shows it: as text if it holds HTML that could run
    (inert_source), else nbconvert's rendering with its math as MathML, cleaned with the
    allow-list (so it holds nothing that runs, whatever the cell)."""
    parts = CODE.split(markdown2html_mistune(inert_source("markdown", source)))
    parts[::2] = [MATH.sub(mathml, part) for part in parts[::2]]
    return PAGE_CLEANER.clean("".join(parts))


def mathml(match):
    """The MathML of one piece of math `MATH` matched, or the piece as it was if it is not
    LaTeX latex2mathml reads."""
    display, inline = match.group(1), match.group(2)
    latex = unescape(display or inline or match.group(0))
    try:
        return latex_to_mathml(latex, display="inline" if inline else "block")
    except Exception:  # noqa: BLE001 (it raises many kinds of error on LaTeX it cannot read)
        return match.group(0)


def outputs_html(outputs):
    """A code cell's outputs in an autograded notebook (student_outputs): text escaped,
    images only as PNG data."""
    parts = []
    for output in outputs:
        kind, data = output.get("output_type"), output.get("data", {})
        png = "".join(joined(data.get("image/png", "")).split())  # base64 may hold newlines
        if kind == "stream":
            parts.append(f"<pre class='output'>{escape(joined(output.get('text', '')))}</pre>")
        elif png and BASE64.fullmatch(png):
            src = f"data:image/png;base64,{png}"
            parts.append(f"<img class='output' alt='a figure the cell drew' src='{src}'>")
        elif "text/plain" in data:
            parts.append(f"<pre class='output'>{escape(joined(data['text/plain']))}</pre>")
        elif kind == "error":
            error = f"{joined(output.get('ename', ''))}: {joined(output.get('evalue', ''))}"
            parts.append(f"<pre class='output error'>{escape(error)}</pre>")
    return "".join(parts)


def joined(text):
    """nbformat's multiline string: a string, or a list of lines as a notebook file may hold."""
    return "".join(map(str, text)) if isinstance(text, list) else str(text)


def write_pages(folders, assignment, submission, notebook_name, page, outcome):
    """The autograded notebook and the feedback page of one graded notebook, where nbgrader
    keeps them; the submission's timestamp and secret (page["files"]) beside them."""
    student = submission.parent.name
    released = assignment.released_tests[notebook_name]
    autograded = folders.of("autograded", student, assignment.name)
    feedback = folders.of("feedback", student, assignment.name)
    graded = autograded_notebook(
        page["notebook"], released, page["verdicts"], page["cell_results"], page["broken"]
    )
    write_notebook(graded, autograded / notebook_name)
    write_submission_files(page["files"], autograded)
    write_submission_files(page["files"], feedback)
    write_feedback_page(
        folders, assignment.name, student, notebook_name, graded, outcome, list(released)
    )


def write_feedback_page(folders, assignment, student, notebook_name, graded, outcome, grade_ids):
    """The feedback page of one notebook, from its autograded notebook `graded` (all it shows of
    the student's work) and the scores of its tests (`grade_ids`, in notebook order) in
    `outcome`: what grading decided, or what the gradebook holds after manual grading."""
    stem = Path(notebook_name).stem
    tests = {gid: outcome["tests"][gid] for gid in grade_ids}
    title = f"{assignment}: {stem} ({student})"
    page = feedback_page(title, nbformat.from_dict(graded), tests)
    (folders.of("feedback", student, assignment) / f"{stem}.html").write_text(page)


def autograded_notebook(submitted, released_tests, verdicts, cell_results, broken):
    """The submission as graded: the released test cells with their verdicts as outputs, the
    student's cells with what they printed and raised. Hidden tests are never written here."""
    cells = []
    for index, cell in enumerate(submitted.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if cell.cell_type != "code":
            cells.append(inert(cell))
        elif grade_id in released_tests and not nbgrader_meta(cell).get("solution"):
            passed, message, _ = verdicts[grade_id]
            outputs = [] if passed else [error_output("CheckFailed", message)]
            cells.append({**released_tests[grade_id], "outputs": outputs})
        else:
            cells.append({**cell, "outputs": student_outputs(index, cell_results, broken)})
    return {**submitted, "metadata": NOTEBOOK_METADATA, "cells": cells}


def inert(cell):
    """A markdown or raw cell as it is safe to render: unchanged if everything it renders to is
    on the allow-list, else its text shown as text. Attachments are never carried."""
    cell = {key: value for key, value in cell.items() if key != "attachments"}
    return {**cell, "source": inert_source(cell["cell_type"], cell["source"])}


@functools.lru_cache(maxsize=2048)
def inert_source(cell_type, source):
    """The source of an `inert` cell; cached, since most cells are the released text."""
    if cell_type == "markdown":
        if not is_safe_html(markdown2html_mistune(source)):
            fence = "`" * max([3, *(len(run) + 1 for run in re.findall("`+", source))])
            note = "(Shown as text: this cell held HTML that could run in a browser.)"
            return f"{note}\n\n{fence}\n{source}\n{fence}"
    elif not is_safe_html(source):  # nbconvert renders a raw cell as HTML
        return escape(source)
    return source


def is_safe_html(html):
    """Whether `html` holds nothing but SAFE_TAGS, SAFE_ATTRIBUTES and safe URLs, as bleach
    (an HTML5 parser, as browsers have) reads it: cleaning it with the allow-list changes
    nothing but what keeping every tag and attribute would change too."""
    unsafe_urls = []

    def keep(tag, name, value):
        url = re.sub(r"[`\x00-\x20\x7f-\xa0\s]+", "", value).lower()
        if name in ("href", "src") and not SAFE_URL.match(url):
            unsafe_urls.append(url)
        return True

    every_tag = {name.lower() for name in re.findall(r"</?([A-Za-z][^\s/>]*)", html)}
    lenient = Cleaner(tags=every_tag, attributes=keep, protocols=SAFE_PROTOCOLS)
    return STRICT.clean(html) == lenient.clean(html) and not unsafe_urls


def student_outputs(index, cell_results, broken):
    """What a student cell showed when it ran in the worker: what it printed, the value of its
    last expression, its figures, what it raised. Never what the submission's file holds."""
    outputs = []
    result = cell_results.get(index)
    if result and result["output"]:
        outputs.append({"output_type": "stream", "name": "stdout", "text": result["output"]})
    if result and result.get("value") is not None:
        outputs.append(
            {
                "output_type": "execute_result",
                "execution_count": None,
                "data": {"text/plain": result["value"]},
                "metadata": {},
            }
        )
    for png in result.get("figures", []) if result else []:
        outputs.append({"output_type": "display_data", "data": {"image/png": png}, "metadata": {}})
    if result and result["error"]:
        outputs.append(error_output(result["error"][0], result["error"][1]))
    if index in broken:
        outputs.append(error_output("WorkerLost", broken[index]))
    return outputs


def error_output(name, message):
    # Plain dicts, in nbformat's shape: nbformat's constructors validate each output, which
    # cost more than all the rest of writing an autograded notebook.
    return {
        "output_type": "error",
        "ename": name,
        "evalue": message,
        "traceback": [f"{name}: {message}"],
    }


# Files nbgrader's exchange keeps beside a submission; release_feedback needs them next to
# the feedback. nbgrader writes a timestamp and a 32-character secret.
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")
SUBMISSION_FILE_BYTES = 4096


def submission_files(submission):
    """{name: content} of the SUBMISSION_FILES the submission has, or BadFile if one is not a
    regular file (a link, a named pipe, a device) or is too large."""
    files = {}
    for name in SUBMISSION_FILES:
        content = read_regular_file(submission / name, SUBMISSION_FILE_BYTES)
        if content is not None:
            files[name] = content
    return files


def submission_timestamp(files):
    """The text of the submission's timestamp.txt (nbgrader's exchange writes it), or None;
    `files` is what submission_files read."""
    try:
        return files.get("timestamp.txt", b"").decode()[:100].strip() or None
    except UnicodeDecodeError:
        return None


def write_submission_files(files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


def write_notebook(notebook, path):
    """Write `notebook` (built from a validated one, so not validated again: that is slow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named for this process: two runs writing the same notebook never share the partial file.
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    partial.write_text(json.dumps(notebook, ensure_ascii=False))
    partial.replace(path)  # a reader never sees half a notebook
