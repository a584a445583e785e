"""The grader: a JupyterHub service that grades the course, run by the hub as the Linux account
autograd-grader, so that students' code never runs as the instructor.

Its page (JUPYTERHUB_SERVICE_PREFIX) lists the course's assignments, each with how many
submissions are collected in submitted/ and a Grade button. Grade runs, as this service's
account, in the course root (AUTOGRAD_HUB_COURSE):

    autograd-course grade submitted --assignment A --json gradebook/grades.json
    autograd-course feedback --assignment A

and the page shows what they printed and their exit status. The instructor then hands the
feedback pages out with Release Feedback in the formgrader. One run at a time: a second Grade
while one runs is refused here, and a run started elsewhere holds the engine's run lock.

Only users with the scope access:services!service=grader (the instructor) get in: the hub's
OAuth refuses anyone else, and so does this service for anyone else's token.
"""

import asyncio
import html
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from autograder.course import assignments, course_root

COURSE = course_root(os.environ.get("AUTOGRAD_HUB_COURSE") or Path(__file__).parent.parent)
PREFIX = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/grader/")
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "td,th{padding:.3em 1em;text-align:left}pre{background:#f4f4f4;padding:1em;"
    "white-space:pre-wrap}.notice{background:#fff3cd;padding:.7em 1em}"
)


class Run:
    """A grading run of one assignment: its commands, each with its output so far and its exit
    status once it has ended."""

    def __init__(self, assignment):
        self.assignment = assignment
        self.started = time.strftime("%H:%M:%S")
        self.steps = []  # [command as typed, output, exit status or None]
        self.done = False

    async def go(self):
        commands = [
            ["grade", "submitted", "--assignment", self.assignment]
            + ["--json", "gradebook/grades.json"],
            ["feedback", "--assignment", self.assignment],
        ]
        # The service's hub token and OAuth settings are nothing student code should be near.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        try:
            for command in commands:
                step = [" ".join(["autograd-course", *command]), "", None]
                self.steps.append(step)
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "autograder", *command, cwd=COURSE, env=environment,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                async for line in process.stdout:
                    step[1] += line.decode(errors="replace")
                step[2] = await process.wait()
                if step[2]:
                    break  # no feedback from a run that did not grade
        finally:
            self.done = True

    def as_html(self):
        state = "finished" if self.done else "still running: this page refreshes every 5 s"
        parts = [
            f"<h2>Grading {html.escape(self.assignment)}, started at {self.started}: {state}</h2>"
        ]
        for command, output, status in self.steps:
            ended = "running" if status is None else f"exit status {status}"
            parts.append(
                f"<h3><code>{html.escape(command)}</code> ({ended})</h3>"
                f"<pre>{html.escape(output)}</pre>"
            )
        return "".join(parts)


class GraderPage(HubOAuthenticated, web.RequestHandler):
    last_run = None  # the service's one run at a time

    @web.authenticated
    def get(self):
        self.page()

    @web.authenticated
    def post(self):
        assignment = self.get_body_argument("assignment", "")
        if assignment not in assignments(COURSE):
            raise web.HTTPError(400, "no such assignment")
        run = GraderPage.last_run
        if run and not run.done:
            self.set_status(409)
            return self.page(
                f"{run.assignment} is still being graded (started at {run.started}): wait until "
                "it has finished, then click Grade again."
            )
        GraderPage.last_run = Run(assignment)
        IOLoop.current().spawn_callback(GraderPage.last_run.go)
        self.redirect(PREFIX, status=303)  # reloading the page does not grade again

    def page(self, notice=None):
        run = GraderPage.last_run
        submitted = COURSE / "submitted"
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            f"<td>{sum(path.is_dir() for path in submitted.glob(f'*/{name}'))}</td><td>"
            f'<form method="post">{self.xsrf_form_html()}'
            f'<input type="hidden" name="assignment" value="{html.escape(name)}">'
            "<button>Grade</button></form></td></tr>"
            for name in assignments(COURSE)
        )
        self.write(
            '<!doctype html><html><head><meta charset="utf-8"><title>Grader</title>'
            + ('<meta http-equiv="refresh" content="5">' if run and not run.done else "")
            + f"<style>{STYLE}</style></head><body><h1>Grader</h1>"
            + (f'<p class="notice">{html.escape(notice)}</p>' if notice else "")
            + f"<p>Signed in as {html.escape(self.current_user['name'])}. Grade runs the tests, "
            "hidden ones included, on the submissions collected in <code>submitted/</code>, as "
            "the grader account (never as you), and writes the feedback pages. Then hand them "
            "out with Release Feedback in the Formgrader.</p>"
            "<table><tr><th>assignment</th><th>collected submissions</th><th></th></tr>"
            + rows
            + "</table>"
            + (run.as_html() if run else "")
            + "</body></html>"
        )


def main():
    # What grading writes stays the course group's to change too: after grading by hand in the
    # formgrader, the instructor's `autograd-course feedback` rewrites the feedback pages.
    # (Release Feedback makes each released page readable by its student: autograder.exchange.)
    os.umask(0o007)
    app = web.Application(
        [
            (url_path_join(PREFIX, "oauth_callback"), HubOAuthCallbackHandler),
            (PREFIX, GraderPage),
        ],
        cookie_secret=os.urandom(32),
        xsrf_cookies=True,
    )
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app.listen(url.port, url.hostname)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
