"""Print the requirements the image installs: the project's dependencies and its ``docker`` extra
(read from pyproject.toml), plus what building the project itself needs without an index.

Used by the Dockerfile and by scripts/docker-setup.sh (which collects the matching wheels).
"""

import sys
import tomllib

with open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
deps = list(project["dependencies"])
deps += project.get("optional-dependencies", {}).get("docker", [])
if not any(d.replace(" ", "").lower().startswith("docker") for d in deps):
    deps.append("docker>=7")  # the docker worker runtime's client
print("\n".join([*deps, "setuptools>=68", "wheel"]))
