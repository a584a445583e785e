"""JupyterHub for a class on one server: `make hub` starts it, as root, on 127.0.0.1.

Everyone logs in with their Linux account (PAM), and each server runs as its user
(LocalProcessSpawner, which is why the hub runs as root). Students' servers hold the student
edition; the instructor's runs in the course, with the formgrader. Grading is the `grader`
service, run as the account autograd-grader, which only the instructor may use.

Settings come from the environment (`make hub` sets them):
  AUTOGRAD_HUB_COURSE      the course root (default: the folder above this file)
  AUTOGRAD_HUB_INSTRUCTOR  the instructor's user name
  AUTOGRAD_HUB_STUDENTS    a file with one student user name per line (# comments allowed)
  AUTOGRAD_HUB_PORT        where the hub listens on 127.0.0.1 (default 8000; it also uses the
                           next three ports: the hub's API, the grader service, the proxy's API)
  AUTOGRAD_HUB_STATE       the hub's own folder (default /var/lib/autograd-course-hub): secrets/
                           (cookie secret, database: root's alone) and edition/
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

HUB = Path(__file__).resolve().parent
COURSE = Path(os.environ.get("AUTOGRAD_HUB_COURSE", HUB.parent)).resolve()
STATE = Path(os.environ.get("AUTOGRAD_HUB_STATE", "/var/lib/autograd-course-hub"))
INSTRUCTOR = os.environ["AUTOGRAD_HUB_INSTRUCTOR"]
STUDENTS = [
    name
    for line in Path(os.environ["AUTOGRAD_HUB_STUDENTS"]).read_text().splitlines()
    if (name := line.split("#")[0].strip())
]
PORT = int(os.environ.get("AUTOGRAD_HUB_PORT", "8000"))
GRADER_PORT = PORT + 2  # the hub's own API listens on PORT + 1, the proxy's on PORT + 3
BIN = Path(sys.executable).parent  # the course's .venv, which every account may run
GRADEBOOK = f"sqlite:///{COURSE / 'gradebook' / 'gradebook.db'}"

c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = PORT + 1
c.ConfigurableHTTPProxy.command = [str(HUB / "node_modules" / ".bin" / "configurable-http-proxy")]
# Not the proxy's default API port, 8001: with the default PORT, that is the hub's own.
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 3}"
c.JupyterHub.cookie_secret_file = str(STATE / "secrets" / "jupyterhub_cookie_secret")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'secrets' / 'jupyterhub.sqlite'}"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "secrets" / "proxy.pid")

c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {INSTRUCTOR, *STUDENTS}
c.Authenticator.admin_users = {INSTRUCTOR}

c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(HUB / "start-server")]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {"AUTOGRAD_HUB_BIN": str(BIN)}
c.Spawner.http_timeout = 300  # 30 servers starting at once took up to 117 s on 2 cores


def course_or_edition(spawner):
    """The instructor's server opens the course; a student's, their copy of the edition."""
    if spawner.user.name == INSTRUCTOR:
        spawner.environment.update(AUTOGRAD_HUB_COURSE=str(COURSE), AUTOGRAD_COURSE_DB=GRADEBOOK)
    else:
        spawner.environment.update(AUTOGRAD_HUB_EDITION=str(STATE / "edition"))


c.Spawner.pre_spawn_hook = course_or_edition

c.JupyterHub.services = [
    {
        "name": "grader",
        "url": f"http://127.0.0.1:{GRADER_PORT}",
        # hub/grader-service joins the grader's cgroup, then runs as autograd-grader.
        "command": [str(HUB / "grader-service")],
        "cwd": str(COURSE),
        "oauth_no_confirm": True,
        "environment": {
            "AUTOGRAD_HUB_COURSE": str(COURSE),
            "AUTOGRAD_COURSE_DB": GRADEBOOK,
            "AUTOGRAD_HUB_BIN": str(BIN),
            "PATH": f"{BIN}:/usr/bin:/bin",
        },
    }
]
c.JupyterHub.load_roles = [
    {"name": "grader-users", "users": [INSTRUCTOR], "scopes": ["access:services!service=grader"]},
]
