"""Turn a `pip install --dry-run --report` JSON into constraints.txt (used by `make lock`)."""
import json
import sys

report = json.load(open(sys.argv[1]))
pins = sorted(
    f"{i['metadata']['name']}=={i['metadata']['version']}"
    for i in report["install"]
    if i["metadata"]["name"] != "flanmix"
)
print("# Known-good, fully pinned dependency set (resolved with pip on Python 3.11).")
print("# Used as `pip install -c constraints.txt`; regenerate with `make lock`.")
print("\n".join(pins))
