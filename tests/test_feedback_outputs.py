"""What the instructor and the student see of a graded notebook: the outputs the grader's worker
produced (printed text, the last expression's value, figures), Markdown with its math rendered
offline, and nothing executable from the student, in the feedback page, the autograded notebook
and nbgrader's formgrader view of it. And the class report's exercise-specific diagnoses and
readable figures."""

import base64
import csv
import json
import re
from html.parser import HTMLParser

import nbformat
import pytest
from conftest import copy_course, run_cli, student_notebook, write_submission
from nbformat.v4 import new_code_cell, new_markdown_cell

A1 = "01_basic_autograd"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What the student's notebook file claims a cell showed: none of it may come through.
CLAIMED_PNG = base64.b64encode(PNG_SIGNATURE + b"claimed-by-the-file").decode()
CLAIMED_OUTPUTS = [
    {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<b>claimed-html</b>"}},
    {"output_type": "display_data", "metadata": {}, "data": {"image/png": CLAIMED_PNG}},
    {
        "output_type": "execute_result",
        "execution_count": 1,
        "metadata": {},
        "data": {"text/plain": "claimed-result", "application/javascript": "alert(1)"},
    },
]
CELLS = [
    new_markdown_cell("The slope of $y = x^2$ is\n\n$$\\frac{dy}{dx} = 2x$$"),
    new_markdown_cell("A note <script>document.title = 'md-script'</script>"),
    new_markdown_cell('<img src="x" onerror="document.title = \'md-onerror\'">'),
    new_markdown_cell("[a link](javascript:document.title='md-javascript')"),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([0, 1, 2], [0, 1, 4])\n"
        "print('printed-value', 2 * 21)\n"
        "'last-' + 'value'"
    ),
    new_code_cell(
        "print(\"<script>document.title = 'printed-script'</script>"
        "<img src=x onerror=alert('printed-onerror')><a href='javascript:alert(1)'>x</a>\")\n"
        "'not shown, the cell ends with a semicolon';"
    ),
    new_code_cell(
        "'computed-' + 'by-the-grader'",
        outputs=[nbformat.from_dict(o) for o in CLAIMED_OUTPUTS],
        execution_count=1,
    ),
    new_code_cell("print('word ' * 400)"),
]
STUDENT_MARKERS = ["md-script", "md-onerror", "md-javascript", "printed-script", "printed-onerror"]


class Elements(HTMLParser):
    """Every element of a page, with its attributes, and the text inside its scripts."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.elements, self.scripts, self.in_script = [], [], False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        self.in_script = tag == "script"

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.scripts.append(data)


def assert_nothing_runs(html, own_scripts_allowed=False):
    """Nothing in `html` the student wrote can run: no script of theirs, no event handler, no
    javascript: URL, no SVG; every image is a PNG's data or a plain URL."""
    page = Elements(html)
    tags = [tag for tag, _ in page.elements]
    assert own_scripts_allowed or "script" not in tags
    assert not {"svg", "iframe", "object", "embed"} & set(tags)
    for script in page.scripts:
        assert not any(marker in script for marker in STUDENT_MARKERS), script
    for tag, attributes in page.elements:
        for name, value in attributes.items():
            if own_scripts_allowed and not any(m in value for m in STUDENT_MARKERS):
                continue  # the formgrader's own page has handlers of its own
            assert not name.startswith("on"), (tag, name, value)
            if name in ("href", "src"):
                assert not re.sub(r"\s", "", value).lower().startswith("javascript:"), value
    return page


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    notebook = student_notebook(A1)
    notebook.cells += CELLS
    write_submission(course / "submitted", "ada", A1, notebook)
    result = run_cli("grade", "submitted", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stderr
    page = (course / "feedback" / "ada" / A1 / f"{A1}.html").read_text()
    return course, page, course / "autograded" / "ada" / A1 / f"{A1}.ipynb"


def student_cell(notebook, source_start):
    (cell,) = [c for c in notebook.cells if c.source.startswith(source_start)]
    return cell


def test_the_feedback_page_shows_the_plot_and_the_values_the_grader_computed(graded):
    _, page, path = graded
    images = [a["src"] for tag, a in Elements(page).elements if tag == "img"]
    plot = student_cell(nbformat.read(path, as_version=4), "import matplotlib").outputs[-1]
    assert f"data:image/png;base64,{plot.data['image/png']}" in images  # the student's plot
    for image in images:
        assert base64.b64decode(image.removeprefix("data:image/png;base64,")).startswith(
            PNG_SIGNATURE
        )
    assert "printed-value 42" in page  # printed
    assert "last-value" in page and "computed-by-the-grader" in page  # last expressions' values
    for claimed in ("claimed-html", "claimed-result", CLAIMED_PNG):
        assert claimed not in page
    assert re.search(r"pre \{[^}]*white-space: pre-wrap", page)  # long lines wrap


def test_the_feedback_page_renders_markdown_and_math_offline(graded):
    _, page, _ = graded
    assert "<p>The slope of <math" in page  # Markdown as HTML, math as MathML
    assert "<mfrac>" in page and 'display="block"' in page and 'display="inline"' in page
    text = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)  # code may hold a $
    assert "$" not in text  # no math left for a script to typeset
    assert not re.search(r"<(script|link)[^>]*(src|href)=", page)  # nothing fetched


def test_nothing_the_student_wrote_runs_in_the_feedback_page(graded):
    _, page, _ = graded
    assert_nothing_runs(page)
    # What the student printed is shown, as text.
    printed = "&lt;script&gt;document.title = &#x27;printed-script&#x27;&lt;/script&gt;"
    assert f"<pre class='output'>{printed}" in page


def test_the_autograded_notebook_has_the_graders_outputs(graded):
    _, _, path = graded
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    plot = student_cell(notebook, "import matplotlib")
    assert [o.output_type for o in plot.outputs] == ["stream", "execute_result", "display_data"]
    assert plot.outputs[0].text == "printed-value 42\n"
    assert plot.outputs[1].data == {"text/plain": "'last-value'"}
    assert base64.b64decode(plot.outputs[2].data["image/png"]).startswith(PNG_SIGNATURE)
    printed = student_cell(notebook, 'print("<script>')
    assert [o.output_type for o in printed.outputs] == ["stream"]  # `;`: no value shown
    claimed = student_cell(notebook, "'computed-")
    assert [o.data for o in claimed.outputs] == [{"text/plain": "'computed-by-the-grader'"}]
    assert "claimed" not in path.read_text()


def test_the_formgrader_shows_the_plot_and_runs_nothing_of_the_students(graded):
    """The autograded notebook through nbgrader's formgrader exporter, as it serves it."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    course, _, path = graded
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {
        **dict.fromkeys(["assignment_id", "notebook_id", "student"], A1),
        **dict.fromkeys(["first_name", "last_name", "base_url", "notebook_path"], ""),
        **{"submission_id": "1", "index": 0, "total": 1},
    }
    html, _ = HTMLExporter(config=config).from_filename(str(path), resources=resources)
    page = assert_nothing_runs(html, own_scripts_allowed=True)
    images = [a.get("src", "") for tag, a in page.elements if tag == "img"]
    assert any(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in images)
    assert "last-value" in html and "claimed" not in html


def test_a_forged_figure_is_refused_at_the_protocol():
    from autograder import protocol

    answer = {"error": None, "output": "", "value": None, "figures": []}
    assert protocol.checked_answer("run", answer) == answer
    png = base64.b64encode(PNG_SIGNATURE + b"data").decode()
    for figures in (
        ["PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+"],  # base64 of an SVG with a script
        ["'><script>alert(1)</script>"],
        [png] * 5,  # more than a cell may show
        [base64.b64encode(PNG_SIGNATURE + bytes(2**20)).decode()],  # too large
        png,
    ):
        with pytest.raises(protocol.BadMessage):
            protocol.checked_answer("run", {**answer, "figures": figures})
    with pytest.raises(protocol.BadMessage):
        protocol.checked_answer("run", {**answer, "value": ["not", "text"]})


# The report: a class of three on one assignment, one exercise diagnosed with the exercise's
# own mistake (a key not in the catalogue) and a catalogue misconception.
def attempt(score, diagnosis=None):
    return {
        "score": score,
        "max_score": 1.0,
        "passed": score == 1.0,
        "message": "",
        "diagnosis": diagnosis,
    }


CLASS = {
    student: {"06_x": {"tests": {"test_ex1": attempt(0.0, diagnosis), "test_ex2": attempt(1.0)}}}
    for student, diagnosis in [
        ("ada", "detach_forgotten"),
        ("bob", "detach_forgotten"),
        ("cy", "doubled"),
    ]
}


def test_the_report_counts_exercise_specific_diagnoses(tmp_path):
    grades = tmp_path / "grades.json"
    grades.write_text(json.dumps({"students": CLASS}))
    result = run_cli("report", grades, "--out", tmp_path / "report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "report" / "exercises.csv") as stream:
        rows = {r["exercise"]: r for r in csv.DictReader(stream)}
    assert rows["test_ex1"]["detach_forgotten"] == "2" and rows["test_ex1"]["doubled"] == "1"
    assert rows["test_ex2"]["detach_forgotten"] == "0"
    page = (tmp_path / "report" / "index.html").read_text()
    assert "detach_forgotten (2), doubled (1)" in page


def test_the_report_figures_are_readable():
    import matplotlib

    matplotlib.use("Agg")
    from autograder import report

    rows = report.exercise_rows(CLASS)
    scores = report.score_figure(rows)
    scores.canvas.draw()
    (axes,) = scores.axes
    legend = axes.get_legend().get_window_extent()
    bars = [bar.get_window_extent() for bar in axes.patches if bar.get_width() > 0]
    assert bars and not any(legend.overlaps(bar) for bar in bars)
    assert scores.bbox.contains(legend.x0, legend.y0) and scores.bbox.contains(legend.x1, legend.y1)
    diagnoses = report.misconception_figure(rows)
    diagnoses.canvas.draw()
    (diagnosed,) = diagnoses.axes
    assert "detach_forgotten" in [label.get_text() for label in diagnosed.get_yticklabels()]
    for ax in (axes, diagnosed):
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
