"""hub/kubernetes/, checked as far as it can be without a cluster or an image build.

The values validate, merged over the chart's defaults as helm merges them, against the schema of
the Zero to JupyterHub version they are written for (both vendored from its 4.4.0 tag). The
Dockerfile starts from a Python the lock supports, installs exactly the lock (and with it
torch==2.13.0, CPU-only as the Makefile says), and its student-edition stage is replayed here:
its COPY lines into a folder, its RUN lines there. The hub's hook (hub.extraConfig) runs for real
on stand-in spawners: uids, the roster file it writes, the instructor's mounts. The grader Job
mounts no Secret, no token, only the course (read-only) and the folders it writes, and runs as
a uid of its own; every uid, gid, path and image agrees across the files.
"""

import copy
import json
import re
import shlex
import shutil
import subprocess
import types
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO
from traitlets.config import Config

KUBERNETES = REPO / "hub" / "kubernetes"
CHART_VERSION = "4.4.0"
SCHEMA = KUBERNETES / f"z2jh-{CHART_VERSION}.values.schema.yaml"
CHART_DEFAULTS = KUBERNETES / f"z2jh-{CHART_VERSION}.values.yaml"
TORCH = "torch==2.13.0"


def load(name):
    documents = list(yaml.safe_load_all((KUBERNETES / name).read_text()))
    return documents[0] if len(documents) == 1 else documents


def helm_merge(defaults, values):
    """`values` over `defaults` as helm merges them: maps key by key, null deletes a key, and
    anything else (lists too) replaces."""
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dockerfile_stages():
    """[(FROM line, [(instruction, arguments)])] of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (KUBERNETES / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append((arguments, []))
        else:
            stages[-1][1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def instructions(kind, stage=None):
    chosen = dockerfile_stages() if stage is None else [dockerfile_stages()[stage]]
    return [arguments for _, steps in chosen for name, arguments in steps if name == kind]


def course_settings():
    return load("values.yaml")["custom"]["autogradCourse"]


def grader_pod():
    return load("grader-job.yaml")["spec"]["template"]["spec"]


def test_values_validate_against_the_chart_schema():
    values = load("values.yaml")
    merged = helm_merge(yaml.safe_load(CHART_DEFAULTS.read_text()), values)
    jsonschema.Draft7Validator(yaml.safe_load(SCHEMA.read_text())).validate(merged)
    for vendored in (SCHEMA, CHART_DEFAULTS):
        assert f"zero-to-jupyterhub-k8s/blob/{CHART_VERSION}/" in vendored.read_text()[:400]
    assert f"--version {CHART_VERSION}" in (KUBERNETES / "values.yaml").read_text()


def test_one_image_everywhere():
    image = load("values.yaml")["singleuser"]["image"]
    reference = f"{image['name']}:{image['tag']}"
    folders_job = next(document for document in load("course.yaml") if document["kind"] == "Job")
    used = [
        container["image"]
        for pod in (grader_pod(), folders_job["spec"]["template"]["spec"])
        for container in pod["containers"]
    ]
    assert used and all(found == reference for found in used), (reference, used)


def test_dockerfile_starts_from_a_python_the_lock_supports():
    lock_header = (REPO / "requirements.lock").read_text().splitlines()[0]
    oldest, newest = re.search(r"Python (3\.\d+)-(3\.\d+)", lock_header).groups()
    supported = {f"3.{minor}" for minor in range(int(oldest[2:]), int(newest[2:]) + 1)}
    stages = dockerfile_stages()
    names = set()
    for line, _ in stages:
        image, _, name = line.partition(" AS ")
        if image not in names:  # a stage of its own, or the base image
            pinned = re.fullmatch(r"python:(3\.\d+)\.\d+-slim-(bookworm|trixie)", image)
            assert pinned, f"{image}: a python:X.Y.Z-slim-<debian> tag, pinned to its patch"
            assert pinned.group(1) in supported, (image, sorted(supported))
        names.add(name.strip())


def test_dockerfile_installs_exactly_the_lock():
    makefile = (REPO / "Makefile").read_text()
    torch_index = re.search(r"TORCH_INDEX=(https://[^\s`]+)", makefile).group(1)
    installs = [run for run in instructions("RUN") if "pip install" in run]
    assert installs == [
        f"pip install --extra-index-url {torch_index} -r requirements.lock",
        "pip install --no-deps --no-build-isolation . && rm -rf /tmp/autograd-course",
    ]
    assert "requirements.lock ./" in instructions("COPY", stage=0)
    lock = (REPO / "requirements.lock").read_text().splitlines()
    assert [line for line in lock if re.match(r"torch\b", line)] == [TORCH]


def test_dockerfile_keeps_solutions_out_and_runs_as_a_user():
    copied = [word for copy_ in instructions("COPY") for word in copy_.split()[:-1]]
    assert not [word for word in copied if word.startswith(("source", "gradebook", "."))]
    ignore = (KUBERNETES / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") - 1].startswith("#") and "!source/" not in ignore
    user = instructions("USER")[-1]
    assert user.isdigit() and int(user) != 0
    entrypoint = json.loads(instructions("ENTRYPOINT")[-1])
    assert entrypoint[-1] == "start-singleuser"
    assert json.loads(instructions("CMD")[-1]) == ["jupyterhub-singleuser"]
    start = (KUBERNETES / "start-singleuser").read_text()
    assert start.startswith("#!/bin/sh") and start.rstrip().endswith('exec "$@"')
    subprocess.run(["sh", "-n", str(KUBERNETES / "start-singleuser")], check=True)


def test_the_edition_stage_builds_the_edition_where_the_exchange_is_mounted(tmp_path):
    """The stage that builds the student edition, replayed: its COPY lines into a folder under
    tmp_path standing for /, its RUN lines there with .venv's autograd-course."""
    index = next(i for i, (line, _) in enumerate(dockerfile_stages()) if line.endswith("edition"))
    root = tmp_path / "root"
    workdir = None
    for name, arguments in dockerfile_stages()[index][1]:
        if name == "WORKDIR":
            workdir = arguments
            (root / workdir.lstrip("/")).mkdir(parents=True)
        elif name == "COPY":
            *sources, destination = arguments.split()
            target = root / workdir.lstrip("/") / destination
            for source in sources:
                if (REPO / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
                    shutil.copytree(REPO / source, target, ignore=ignore)
                else:
                    shutil.copy(REPO / source, target)
        elif name == "RUN":
            command = re.sub(r"(?<=\s)/", f"{root}/", " " + arguments)
            subprocess.run(
                ["sh", "-c", command],
                cwd=root / workdir.lstrip("/"),
                env={"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)},
                check=True,
                capture_output=True,
            )
    copied = instructions("COPY", stage=-1)
    edition = shlex.split(next(c for c in copied if "--from=edition" in c))[-1]
    config = (root / edition.lstrip("/") / "nbgrader_config.py").read_text()
    exchange = re.search(r"c\.Exchange\.root = '(.*)'", config).group(1)
    mounts = load("values.yaml")["singleuser"]["storage"]["extraVolumeMounts"]
    mounted = next(mount["mountPath"] for mount in mounts if mount["subPath"] == "exchange")
    assert exchange == f"{root}{mounted}" == f"{root}{workdir}/exchange"
    assert not any((root / edition.lstrip("/")).rglob("source"))


def run_hub_hook(tmp_path, roster=None):
    """hub.extraConfig run as the chart runs it, with the roster file in tmp_path."""
    values = load("values.yaml")
    values["custom"]["autogradCourse"]["rosterFile"] = str(tmp_path / "owners.json")
    if roster is not None:
        (tmp_path / "owners.json").write_text(json.dumps(roster))

    def get_config(key, default=None):
        value = values
        for level in key.split("."):
            value = value.get(level, default) if isinstance(value, dict) else default
        return value

    c = Config()
    exec(values["hub"]["extraConfig"]["autograd-course"], {"c": c, "get_config": get_config})
    return c.KubeSpawner


def spawn(spawner_config, name, hub_id):
    """What KubeSpawner does with the hook and the uid callables, on a stand-in spawner."""
    values = load("values.yaml")
    spawner = types.SimpleNamespace(
        user=types.SimpleNamespace(name=name, id=hub_id),
        environment=dict(values["singleuser"]["extraEnv"]),
        volume_mounts={  # as the chart sets them: a dict, keyed by index and name
            f"{index}-{mount['name']}": mount
            for index, mount in enumerate(values["singleuser"]["storage"]["extraVolumeMounts"])
        },
        supplemental_gids=[],
    )
    spawner_config.pre_spawn_hook(spawner)
    return spawner, spawner_config.uid(spawner), spawner_config.gid(spawner)


def test_each_user_gets_a_uid_of_their_own_in_the_roster(tmp_path):
    course = course_settings()
    kubespawner = run_hub_hook(tmp_path)
    first, first_uid, first_gid = spawn(kubespawner, "student1", 7)
    _, second_uid, _ = spawn(kubespawner, "student2", 8)
    _, instructor_uid, _ = spawn(kubespawner, course["instructor"], 1)
    assert first_uid == first_gid == course["studentUidBase"] + 7 != second_uid
    assert instructor_uid == course["instructorUid"] and 0 not in (first_uid, instructor_uid)
    roster = json.loads((tmp_path / "owners.json").read_text())
    assert roster == {"student1": first_uid, "student2": second_uid, "instructor": 1100}
    assert first.environment["AUTOGRAD_ROLE"] == "student" and first.supplemental_gids == []
    image_config = (KUBERNETES / "nbgrader_config.py").read_text()
    assert f'owners_file = "{course["rosterFile"]}"' in image_config


def test_a_uid_already_in_the_roster_is_not_given_to_another(tmp_path):
    kubespawner = run_hub_hook(tmp_path, roster={"alice": 200007})
    with pytest.raises(RuntimeError, match="uid 200007 of student1 is alice's"):
        spawn(kubespawner, "student1", 7)
    assert json.loads((tmp_path / "owners.json").read_text()) == {"alice": 200007}


def test_the_instructor_gets_the_course_the_roster_and_the_course_group(tmp_path):
    course = course_settings()
    instructor, _, _ = spawn(run_hub_hook(tmp_path), course["instructor"], 1)
    mounts = {mount["subPath"]: mount for mount in instructor.volume_mounts.values()}
    workdir = instructions("WORKDIR", stage=1)[0]
    assert mounts["course"]["mountPath"] == workdir and not mounts["course"].get("readOnly")
    assert mounts["roster"]["readOnly"] is True
    assert Path(course["rosterFile"]).parent == Path(mounts["roster"]["mountPath"])
    hub_mounts = load("values.yaml")["hub"]["extraVolumeMounts"]
    assert [m["mountPath"] for m in hub_mounts if m["subPath"] == "roster"] == [
        mounts["roster"]["mountPath"]
    ]
    assert instructor.supplemental_gids == [course["courseGid"]]
    assert instructor.environment["AUTOGRAD_ROLE"] == "instructor"
    grader = grader_pod()["containers"][0]
    grader_env = {variable["name"]: variable["value"] for variable in grader["env"]}
    assert instructor.environment["AUTOGRAD_COURSE_DB"] == grader_env["AUTOGRAD_COURSE_DB"]


def test_the_grader_job_has_no_secret_and_only_its_folders():
    pod = grader_pod()
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    manifest = yaml.safe_dump(load("grader-job.yaml"))  # without the comments
    assert not re.search(r"secret|projected|hostPath|envFrom", manifest, re.I)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert {name for name, volume in volumes.items() if "emptyDir" not in volume} == {
        "autograd-course"
    }
    assert volumes["autograd-course"]["persistentVolumeClaim"]["claimName"] == "autograd-course"
    mounts = {
        mount["subPath"]: mount
        for mount in pod["containers"][0]["volumeMounts"]
        if mount["name"] == "autograd-course"
    }
    assert mounts["course"]["readOnly"] is True
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
    assert writable == {"course/autograded", "course/feedback", "course/gradebook"}
    for path in writable:
        assert mounts[path]["mountPath"] == f"{mounts['course']['mountPath']}/{path[7:]}"


def test_the_grader_job_runs_as_the_grader_not_root_nor_a_user():
    course = course_settings()
    pod = grader_pod()
    security = pod["securityContext"]
    container = pod["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert 0 < security["runAsUser"] < course["studentUidBase"]
    assert security["runAsUser"] != course["instructorUid"]
    assert security["runAsGroup"] == course["courseGid"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"] and "add" not in container["capabilities"]
    labels = load("grader-job.yaml")["spec"]["template"]["metadata"]["labels"]
    policy = next(doc for doc in load("course.yaml") if doc["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    assert load("values.yaml")["singleuser"]["allowPrivilegeEscalation"] is False


def test_the_folders_belong_to_who_values_say():
    course = course_settings()
    job = next(doc for doc in load("course.yaml") if doc["kind"] == "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    owners = {}
    for uid, gid, folders in re.findall(r"chown (\d+):(\d+) ([^&\n]+)", script):
        owners.update(dict.fromkeys(folders.split(), (int(uid), int(gid))))
    hub_user = yaml.safe_load(CHART_DEFAULTS.read_text())["hub"]["containerSecurityContext"]
    assert owners["roster"] == (hub_user["runAsUser"], hub_user["runAsGroup"])
    instructor = (course["instructorUid"], course["courseGid"])
    for folder in ("course", "course/autograded", "course/feedback", "course/gradebook"):
        assert owners[folder] == instructor, folder
    assert owners["exchange"] == (0, 0) and "chmod 1777 exchange" in script
