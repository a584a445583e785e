"""requirements.lock installs where students are: Python 3.10-3.13 on Linux and on macOS.

For each Python and platform, pip resolves the lock against the package index as that machine
would (`pip install --dry-run --only-binary=:all: --python-version X --platform P`): every pin
must have a wheel for it whose Requires-Python admits X.0, the first release of X, as Debian 12's
3.11.2 would need. pip evaluates markers (the lock's and the packages') for the Python running it,
not for --python-version and --platform, so it runs with --no-deps on the lock's lines for the
target, and the test evaluates each package's requirements for the target itself: every one must
be pinned, at a version it accepts. Needs the package index; the pip runs go in parallel.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

LOCK = REPO / "requirements.lock"

# The oldest systems the README promises: Ubuntu 22.04's glibc 2.35 (Debian 12 has 2.36), and
# macOS 14 on Apple silicon, the only Mac for which torch 2.13.0 has a wheel.
PLATFORMS = {
    "linux": {
        "tags": [f"manylinux_2_{glibc}_x86_64" for glibc in range(17, 36)]
        + ["manylinux2014_x86_64"],  # pip adds manylinux2010 and manylinux1 to this one
        "markers": {"sys_platform": "linux", "platform_system": "Linux"},
        "machine": "x86_64",
    },
    "macos": {
        "tags": ["macosx_14_0_arm64"],  # pip adds the older macOS versions
        "markers": {"sys_platform": "darwin", "platform_system": "Darwin"},
        "machine": "arm64",
    },
}
# The first release of each Python: Debian 12's 3.11.2 must find what 3.11.0 finds.
PYTHONS = ["3.10.0", "3.11.0", "3.12.0", "3.13.0"]
TARGETS = [(python, system) for system in PLATFORMS for python in PYTHONS]

# What PyPI's torch adds on Linux: its CUDA build. PyTorch's CPU index has none of these.
CUDA_PREFIXES = ("nvidia-", "cuda-", "triton")


def marker_environment(python, system):
    platform = PLATFORMS[system]
    return {
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "implementation_name": "cpython",
        "implementation_version": python,
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "platform_machine": platform["machine"],
        "platform_release": "",
        "platform_version": "",
        **platform["markers"],
        "extra": "",
    }


def lock_lines_for(environment):
    """The lock's requirements whose markers hold for `environment`, markers dropped."""
    requirements = []
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                requirements.append(f"{requirement.name}{requirement.specifier}")
    return requirements


def resolve(python, system, workdir):
    """pip's dry-run install of the lock for one target: (exit status, output, report or None)."""
    workdir.mkdir()
    requirements = workdir / "requirements.txt"
    requirements.write_text("\n".join(lock_lines_for(marker_environment(python, system))))
    report = workdir / "report.json"
    platform_flags = [flag for tag in PLATFORMS[system]["tags"] for flag in ("--platform", tag)]
    # Only the index counts, as on a student's machine: no pip config files (this machine's
    # point pip at a local CPU build of torch); of the PIP_ variables, only these two settings.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environment |= {
        key: os.environ[key] for key in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT") if key in os.environ
    }
    environment |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--only-binary=:all:",
         "--python-version", python, *platform_flags, "--target", str(workdir / "target"),
         # Read each wheel's metadata with range requests instead of downloading the wheel
         # (torch's is 500 MB).
         "--use-feature=fast-deps", "--report", str(report), "-r", str(requirements)],
        capture_output=True, text=True, env=environment, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    return result.returncode, output, json.loads(report.read_text()) if report.exists() else None


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lock")
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        runs = {
            target: pool.submit(resolve, *target, workdir / "-".join(target)) for target in TARGETS
        }
        return {target: run.result() for target, run in runs.items()}


def unmet_requirements(report, environment):
    """Each requirement of a resolved package that holds for `environment` but no pin meets."""
    pinned = {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in report}
    unmet, seen = [], set()
    # (package, extra): the requirements of every pin, and of every extra some requirement asks.
    pending = [(name, "") for name in pinned]
    while pending:
        name, extra = pending.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for line in pinned[name].get("requires_dist", []):
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not marker.evaluate({**environment, "extra": extra}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in pinned:
                cuda = name == "torch" and environment["sys_platform"] == "linux"
                if not (cuda and dependency.startswith(CUDA_PREFIXES)):
                    unmet.append(f"{name} needs {requirement}, which the lock does not pin")
                continue
            version = pinned[dependency]["version"]
            if not requirement.specifier.contains(version, prereleases=True):
                unmet.append(f"{name} needs {requirement}, but the lock pins {version}")
            pending += [(dependency, canonicalize_name(wanted)) for wanted in requirement.extras]
    return unmet


@pytest.mark.parametrize("python, system", TARGETS, ids=[f"{s}-py{p}" for p, s in TARGETS])
def test_every_pin_has_a_wheel_for_the_python_and_platform(resolutions, python, system):
    returncode, output, _ = resolutions[python, system]
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert returncode == 0, f"pip cannot install the lock on Python {python} ({system}):\n" + (
        "\n".join(errors) or output[-3000:]
    )
    # A yanked release installs when pinned, with only a warning: its authors withdrew it.
    assert not [line for line in output.splitlines() if "yanked" in line], output[-3000:]


@pytest.mark.parametrize("python, system", TARGETS, ids=[f"{s}-py{p}" for p, s in TARGETS])
def test_the_lock_pins_every_requirement_of_every_package(resolutions, python, system):
    returncode, _, report = resolutions[python, system]
    if returncode != 0:
        pytest.fail("pip could not resolve the lock: see the test above")
    # The course's own requirements (pyproject.toml) count as one more package's.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    course = {"metadata": {"name": "autograd-course", "version": "0", "requires_dist": project}}
    environment = marker_environment(python, system)
    assert unmet_requirements([*report["install"], course], environment) == []
