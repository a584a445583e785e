"""nbgrader settings of the course's image, in every pod (loaded before the course's own).

The instructor's collect (autograder.exchange.OwnerCheckedCollect) checks that each submission
belongs to the uid of the student it names. On Kubernetes no passwd database knows the students'
uids: the hub writes them to this roster (values.yaml, hub.extraConfig), which only the
instructor's server mounts, read-only.
"""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.OwnerCheckedCollect.owners_file = "/srv/autograd-roster/owners.json"
