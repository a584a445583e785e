"""How an error in a test cell shows in a student's notebook: the message first, then only the
frames of code the student can read (the test cell, their own functions), none of the
autograder's. Installed in the student's kernel when a test cell imports autograder."""

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def install():
    """Make IPython, if this is a kernel, show errors this way."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    if shell is not None:
        shell.set_custom_exc((Exception,), show_error)


def show_error(shell, kind, error, traceback, tb_offset=None):
    """IPython's traceback of `error` without the autograder's frames, the message at the top;
    an error that never passed through the autograder shows as IPython shows it."""
    count = count_frames(traceback)
    frames = without_autograder_frames(traceback)
    if count_frames(frames) == count:
        shell.showtraceback((kind, error, traceback), tb_offset=tb_offset)
        return
    formatted = shell.InteractiveTB.structured_traceback(kind, error, frames, tb_offset)
    shell._showtraceback(kind, error, [f"{kind.__name__}: {error}", "", *formatted])


def without_autograder_frames(traceback):
    """The traceback `traceback` with the frames of this package's code unlinked."""
    kept, frame = [], traceback
    while frame is not None:
        if not Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE):
            kept.append(frame)
        frame = frame.tb_next
    for frame, following in zip(kept, [*kept[1:], None], strict=True):
        frame.tb_next = following
    return kept[0] if kept else None


def count_frames(traceback):
    count = 0
    while traceback is not None:
        count, traceback = count + 1, traceback.tb_next
    return count
