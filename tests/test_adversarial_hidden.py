"""Hidden tests stay hidden, references stay the grader's, and autograd facts cannot be forged.

Each attack is a submitted notebook graded through the real CLI:
- a function that raises, or prints, its hidden input (a canary): the input and the
  exception's text never reach the JSON, the feedback page or the autograded notebook;
- a notebook that tells `grade` from `check` and answers the hidden inputs as they are without
  the course secret (last year's): it loses the hidden tests' points; answers hard-coded for
  one student's inputs pass for that student, in every run, and fail for another;
- 03 ex5's loss clamping the grader's `z` in place: the reference is computed before the call;
- forged autograd facts (autograder.protocol.tensor_facts, torch.Tensor's properties, json):
  the grader still sees the true facts, and the forgery earns nothing.
"""

import ast
import json
import os
import re
import stat
import subprocess
import sys

import nbformat
import pytest
from conftest import REPO, copy_course, notebook_path, solution_code, write_submission

import autograder.checks

A1 = "01_basic_autograd"
A2 = "02_chain_rule"
A3 = "03_bce_manual_vs_autograd"
A6 = "06_disabling_gradient_tracking"
SECRET_FILE = ".autograd_course_secret"
# How a notebook tells that it is being graded rather than run by the student in Jupyter.
GRADED = "GRADED = type(get_ipython()).__name__ != 'ZMQInteractiveShell'\n"


def grade(course, submissions, secret=None):
    """The JSON of `autograd-course grade` run from `course`, with `secret` in the environment."""
    environment = {k: v for k, v in os.environ.items() if k != "AUTOGRAD_COURSE_SECRET"}
    if secret is not None:
        environment["AUTOGRAD_COURSE_SECRET"] = secret
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", submissions, "--json", "grades.json"],
        cwd=course,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return json.loads((course / "grades.json").read_text())["students"]


def solution(assignment):
    return nbformat.read(notebook_path("source", assignment), as_version=4)


def answered(assignment, answers):
    """The solution notebook of `assignment` with some solution cells replaced."""
    notebook = solution(assignment)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


def with_cell_first(notebook, source):
    notebook.cells.insert(1, nbformat.v4.new_code_cell(source))
    return notebook


class Recorder:
    """The solution of an exercise, remembering every call a test cell makes of it."""

    def __init__(self, assignment, solution_id, name):
        namespace = {}
        exec("import math\nimport torch\n" + solution_code(assignment, solution_id), namespace)
        self.function, self.__name__ = namespace[name], name
        self.calls = []

    def __call__(self, *arguments):
        answer = self.function(*arguments)
        self.calls.append((arguments, answer))
        return answer


METHOD_RULES = ("check_no_autograd", "check_uses_autograd", "check_calls", "check_not_calls")


def without_method_rules(source):
    """A test cell's code without its top-level method rules (they read a notebook's source)."""
    tree = ast.parse(source)
    tree.body = [
        statement
        for statement in tree.body
        if not (
            isinstance(statement, ast.Expr)
            and isinstance(statement.value, ast.Call)
            and getattr(statement.value.func, "id", None) in METHOD_RULES
        )
    ]
    return compile(tree, "<test cell>", "exec")


def recorded_calls(assignment, solution_id, name, key=None):
    """[(arguments, right answer)] of every call the exercise's test cell (hidden tests
    included) makes, with inputs drawn as for the student of `key` (None: without the secret,
    as a student's own kernel draws them)."""
    test_id = f"test_{solution_id}"
    cell = next(
        c
        for c in solution(assignment).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == test_id
    )
    recorder = Recorder(assignment, solution_id, name)
    student_key = getattr(autograder.checks, "STUDENT_KEY", None)  # none before this work
    token = student_key.set(key) if student_key is not None and key is not None else None
    try:
        exec(without_method_rules(cell.source), {name: recorder})
    finally:
        if token is not None:
            student_key.reset(token)
    return recorder.calls


def key_of(secret, assignment, student):
    try:
        from autograder.secret import assignment_key, student_key
    except ImportError:  # before per-student inputs: everyone's are the same
        return None
    return student_key(assignment_key(secret.encode(), assignment), student)


def hard_coded(assignment, key=None):
    """02 with graph_ops and sin_square_grad_by_hand answering from tables of the hidden
    inputs drawn with `key` (by call order, and by value), whenever the notebook is graded."""
    ops = [answer for _, answer in recorded_calls(A2, "ex5_graph_ops", "graph_ops", key)]
    grads = {
        repr(arguments[0]): float(answer)
        for arguments, answer in recorded_calls(
            A2, "ex1_sin_square_by_hand", "sin_square_grad_by_hand", key
        )
    }
    walker = solution_code(A2, "ex5_graph_ops").replace("def graph_ops", "def honest_graph_ops")
    return answered(
        A2,
        {
            "ex1_sin_square_by_hand": f"GRADS = {grads!r}\n\n\n"
            "def sin_square_grad_by_hand(x0):\n    return GRADS[repr(x0)]\n",
            "ex5_graph_ops": GRADED + f"OPS = {ops!r}\nCALLS = []\n\n\n{walker}\n\n\n"
            "def graph_ops(f, x0):\n"
            "    CALLS.append(x0)\n"
            "    if GRADED and len(CALLS) > 1:  # after the visible test: the hidden ones\n"
            "        return OPS[len(CALLS) - 1]\n"
            "    return honest_graph_ops(f, x0)\n",
        },
    )


# Canaries: each hidden input, and each exception's text, carries the word CANARY (written
# in two halves in the notebook, whose source the feedback page shows). Called from the
# notebook's own cells (its plots, on float32 values) and on the visible inputs (small
# integers), they answer right; the hidden inputs are float64.
CANARIES = {
    "ex1_sin_square_by_hand": "def honest_call(x0):\n"
    "    return all((math.frexp(x)[0] * 2**24).is_integer() for x in x0)\n\n\n"
    "def sin_square_grad_by_hand(x0):\n"
    "    if honest_call([x0]):\n        return math.cos(x0**2) * 2 * x0\n"
    "    raise ValueError('CAN' + f'ARY {x0!r}')\n",
    "ex3_cubic_by_hand": "def cubic_grad_by_hand(x0):\n"
    "    if honest_call([x0]):\n        return 6 * x0**2\n"
    "    raise type('CAN' + f'ARY_{abs(x0):.6f}'.replace('.', '_'), (Exception,), {})()\n",
    "ex4_mean_square_by_hand": "def mean_square_grad_by_hand(xs):\n"
    "    print('CAN' + 'ARY', xs)\n"
    "    wrong = 0 if honest_call(xs) else 1\n"
    "    return torch.tensor([6 * (x + 2) / len(xs) + wrong for x in xs])\n",
}
# The loss clamps the grader's z in place, to where its value matches a reference taken after.
CLAMPING_LOSS = (
    "def stable_bce_with_logits(z, y):\n"
    "    if not z.requires_grad:  # the value checks: bend z to where this loss is right\n"
    "        with torch.no_grad():\n"
    "            z.clamp_(-1, 1)\n"
    "    return F.softplus(z) - y * z\n\n\n"
    "def stable_bce_grad(z, y):\n"
    "    z = torch.tensor(z, requires_grad=True)\n"
    "    stable_bce_with_logits(z, torch.tensor(y)).backward()\n"
    "    return z.grad\n"
)
# 06 with two exercises wrong in ways only autograd facts show (their results are tracked);
# the tensors to lie about are marked `forge`.
WRONG_06 = {
    "ex1_cube_then_untracked": "def cube_then_untracked(x0):\n"
    "    x = torch.tensor(x0, requires_grad=True)\n"
    "    (x**3).backward()\n"
    "    y4, y5 = x**4, x.detach() ** 5\n"
    "    y4.forge = True\n"
    "    return x.grad, y4, y5\n",
    "ex3_predict_without_graph": "def predict_without_graph(w, xs):\n"
    "    with torch.no_grad():\n        pass\n"
    "    result = w * torch.tensor(xs)\n"
    "    result.forge = True\n"
    "    return result\n",
}
FORGERIES = {
    "protocol": "import autograder.protocol as protocol\n"
    "real_facts = protocol.tensor_facts\n"
    "def forged_facts(tensor, with_grad=True):\n"
    "    facts = real_facts(tensor, with_grad)\n"
    "    if getattr(tensor, 'forge', False):\n"
    "        facts.update(requires_grad=False, grad_fn=None, is_leaf=True)\n"
    "    return facts\n"
    "protocol.tensor_facts = forged_facts\n",
    "tensor_properties": "import torch\n"
    "base = torch._C.TensorBase\n"
    "def lie(name, forged):\n"
    "    real = getattr(base, name).__get__\n"
    "    return property(lambda t: forged if getattr(t, 'forge', False) else real(t))\n"
    "torch.Tensor.requires_grad = lie('requires_grad', False)\n"
    "torch.Tensor.grad_fn = lie('grad_fn', None)\n"
    "torch.Tensor.is_leaf = lie('is_leaf', True)\n",
    "json": "import json\n"
    "real_dumps = json.dumps\n"
    "def untracked(value):\n"
    "    if isinstance(value, dict):\n"
    "        if value.get('grad_fn'):\n"
    "            value = {**value, 'requires_grad': False, 'grad_fn': None, 'is_leaf': True}\n"
    "        return {k: untracked(v) for k, v in value.items()}\n"
    "    return [untracked(v) for v in value] if isinstance(value, list) else value\n"
    "json.dumps = lambda message, **options: real_dumps(untracked(message), **options)\n",
}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return copy_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def attacked(course):
    """One grading run, without AUTOGRAD_COURSE_SECRET: the secret file is made by it."""
    submissions = course / "attacks"
    write_submission(submissions, "honest", A2, solution(A2))
    write_submission(submissions, "canaries", A2, answered(A2, CANARIES))
    write_submission(submissions, "last_years_inputs", A2, hard_coded(A2))
    write_submission(submissions, "honest", A3, solution(A3))
    write_submission(
        submissions, "clamps", A3, answered(A3, {"ex5_stable_bce_with_logits": CLAMPING_LOSS})
    )
    write_submission(submissions, "wrong", A6, answered(A6, WRONG_06))
    for name, cell in FORGERIES.items():
        write_submission(
            submissions, f"forged_{name}", A6, with_cell_first(answered(A6, WRONG_06), cell)
        )
    return grade(course, submissions)


def test_the_honest_notebooks_keep_full_marks(attacked):
    for assignment in (A2, A3):
        outcome = attacked["honest"][assignment]
        assert outcome["score"] == outcome["max_score"], outcome


def test_the_secret_file_is_made_private_on_the_first_grade(course, attacked):
    secret = course / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 32


def test_canaries_never_reach_the_json_feedback_or_autograded_notebook(course, attacked):
    outcome = attacked["canaries"][A2]
    tests = outcome["tests"]
    for grade_id in ("test_ex1_sin_square_by_hand", "test_ex3_cubic_by_hand"):
        assert tests[grade_id]["score"] == 0
    assert "raised ValueError on other inputs" in tests["test_ex1_sin_square_by_hand"]["message"]
    assert "raised an exception on other inputs" in tests["test_ex3_cubic_by_hand"]["message"]
    assert "gives a wrong gradient" in tests["test_ex4_mean_square_by_hand"]["message"]
    pages = [
        json.dumps(outcome),
        (course / "feedback" / "canaries" / A2 / f"{A2}.html").read_text(),
        (course / "autograded" / "canaries" / A2 / f"{A2}.ipynb").read_text(),
    ]
    for page in pages:
        assert "CANARY" not in page
    for test in tests.values():  # no hidden input, at any precision
        if test["message"].startswith("Hidden tests"):
            assert not re.search(r"\d\.\d", test["message"]), test["message"]


def test_answers_hard_coded_for_last_years_inputs_lose_the_hidden_points(attacked):
    tests = attacked["last_years_inputs"][A2]["tests"]
    assert tests["test_ex1_sin_square_by_hand"]["score"] == 0
    assert tests["test_ex5_graph_ops"]["score"] == 0
    assert tests["test_ex5_graph_ops"]["message"].startswith("Hidden tests: graph_ops")


def test_the_grader_computes_references_before_a_call_changes_its_arguments(attacked):
    tests = attacked["clamps"][A3]["tests"]
    assert tests["test_ex5_stable_bce_with_logits"]["score"] == 0
    assert attacked["honest"][A3]["tests"]["test_ex5_stable_bce_with_logits"]["score"] == 3


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_autograd_facts_are_not_believed(attacked, name):
    wrong, forged = attacked["wrong"][A6], attacked[f"forged_{name}"][A6]
    assert wrong["score"] == wrong["max_score"] - 5  # ex1 and ex3 lost, on facts alone
    # (the method rules may also cost a notebook that patches modules points of their own)
    assert forged["score"] <= wrong["score"]
    ex3 = "test_ex3_predict_without_graph"  # its facts are checked before any method rule
    assert forged["tests"][ex3]["message"] == wrong["tests"][ex3]["message"]


@pytest.fixture(scope="module")
def per_student(course, attacked):
    """Answers hard-coded for alice's hidden inputs, graded as alice and as bob; then as alice
    again, in a second run (given the secret by the environment this time)."""
    secret = (course / SECRET_FILE).read_text().strip()
    alices = hard_coded(A2, key_of(secret, A2, "alice"))
    first, second = course / "per_student", course / "again"
    write_submission(first, "alice", A2, alices)
    write_submission(first, "bob", A2, alices)
    write_submission(second, "alice", A2, alices)
    return grade(course, first), grade(course, second, secret=secret)


def test_hidden_inputs_are_each_students_own_and_the_same_in_every_run(per_student):
    first, second = per_student
    hidden = ("test_ex1_sin_square_by_hand", "test_ex5_graph_ops")
    for grade_id in hidden:
        assert first["alice"][A2]["tests"][grade_id]["passed"], grade_id
        assert not first["bob"][A2]["tests"][grade_id]["passed"], grade_id
    assert first["alice"][A2]["score"] == first["alice"][A2]["max_score"]
    assert second["alice"][A2] == first["alice"][A2]


def test_the_repository_ignores_the_secret_file():
    assert f"/{SECRET_FILE}" in (REPO / ".gitignore").read_text().splitlines()


def test_a_later_cell_cannot_print_the_hidden_inputs(tmp_path):
    """Hidden tests call the student's functions in a copy of the worker: what the functions
    keep of their inputs is gone before the next cell, whose outputs the feedback page shows."""
    course = copy_course(tmp_path / "course")
    keeps_inputs = (
        "SEEN = []\n\n\ndef slope_of_square(x):\n    SEEN.append(float(x))\n"
        "    x = torch.tensor(float(x), requires_grad=True)\n    (x**2).backward()\n"
        "    return x.grad.item()\n"
    )
    notebook = answered(A1, {"ex1_slope_of_square": keeps_inputs})
    notebook.cells.append(nbformat.v4.new_code_cell("print('seen:', sorted(set(SEEN)))"))
    write_submission(course / "submitted", "ada", A1, notebook)
    grades = grade(course, "submitted")
    assert grades["ada"][A1]["tests"]["test_ex1_slope_of_square"]["passed"]  # hidden ones ran
    autograded = nbformat.read(course / "autograded" / "ada" / A1 / f"{A1}.ipynb", as_version=4)
    assert autograded.cells[-1].outputs[0].text == "seen: [3.0]\n"  # the visible input only
    page = (course / "feedback" / "ada" / A1 / f"{A1}.html").read_text()
    assert "seen: [3.0]" in page
