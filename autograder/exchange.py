"""nbgrader's exchange for a class on one machine: a folder of the course, made by the instructor.

nbgrader's default exchange, /usr/local/share/nbgrader/exchange, needs an administrator, and the
first `release_assignment` run by anyone creates it. nbgrader_config.py puts the exchange in the
course instead and calls `course_exchange` whenever the instructor's nbgrader or autograd-course
loads it, so the formgrader finds it (and offers Release and Collect) from a fresh clone.

nbgrader checks that every user may write to the exchange folder itself. Made here, it has the
sticky bit as well, as /tmp has: nobody can rename or remove what another user put in it. The
course's folder in it is made at once, the instructor's and closed to writes by others, so no
student can put a folder of their own where the course's outbound (released assignments),
inbound (submissions) or feedback folders go. nbgrader makes those with its own permissions:
outbound readable by everyone, inbound 2733 (students add submissions, under names nobody can
guess, and cannot list it), feedback 711 (each student opens only their own pages, by a name
made from their submission's secret).
"""

import os

EVERYONE_WRITES = 0o1777  # nbgrader's check requires write access; the sticky bit guards it
ONLY_OWNER_WRITES = 0o755


def course_exchange(root, course_id):
    """The exchange folder `root`, with the folder of `course_id` in it made if missing."""
    for path, mode in ((root, EVERYONE_WRITES), (os.path.join(root, course_id), ONLY_OWNER_WRITES)):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError:
            break  # not ours to make: nbgrader says the exchange is missing, in its own words
        os.chmod(path, mode)  # mkdir's mode is cut by the umask, and never sets the sticky bit
    return root
