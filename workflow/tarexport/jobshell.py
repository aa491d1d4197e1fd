"""The shell functions every job's command calls (`tarexport`, `tarexport_link`,
`tarexport_small`), in one file under the build directory that each rule's command sources.

Sourced by each rule rather than set as Snakemake's global `shell.prefix`: inside another
workflow (a Snakemake module) a global prefix would also run before the user's own rules,
and theirs would replace ours. A short `. FILE;` also keeps the command Snakemake prints for
a failed or interrupted job to one readable line.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys

from . import buildpaths
from .fileio import write_if_changed

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SMALL_LAYER_SCRIPT = os.path.join(PACKAGE_DIR, "small_layer.sh")

# The job's entry point and the lean layer job's (an uncompressed blob of an OCI layout).
_MAIN = "import sys; from tarexport.__main__ import main; sys.exit(main())"
_LINK = "from tarexport.linklayer import main; main()"


def job_functions(build_dir: str, executable: str, module_path: list[str]) -> str:
    """The functions' text. Each job is a new Python process, so it starts lean (measured:
    60 -> 30 ms per small layer job): -S with the driving process's module path (the same
    packages, without running every .pth file), -c instead of -m (no runpy), -P (the working
    directory never shadows the package), and bytecode kept under the build directory even
    where PYTHONDONTWRITEBYTECODE is set (else every job compiles the package again). The
    package comes first: the one these jobs were planned with."""
    search = os.pathsep.join(dict.fromkeys([os.path.dirname(PACKAGE_DIR)] + [p for p in module_path if p]))
    python = " ".join(
        [
            f"PYTHONPATH={shlex.quote(search)}",
            f"PYTHONPYCACHEPREFIX={shlex.quote(os.path.join(os.path.abspath(build_dir), 'pycache'))}",
            "PYTHONDONTWRITEBYTECODE=",
            shlex.quote(executable),
            "-S -P -c",
        ]
    )
    with open(SMALL_LAYER_SCRIPT, encoding="utf-8") as script:
        small = "".join(line for line in script if line.strip() and not line.lstrip().startswith("#"))
    return (
        f'tarexport() {{ {python} {shlex.quote(_MAIN)} "$@"; }}\n'
        f'tarexport_link() {{ {python} {shlex.quote(_LINK)} "$@"; }}\n'
        f"{small}"
    )


def source_line(build_dir: str) -> str:
    """`. FILE;` for the start of every job's command, the file written (if it changed)
    under the build directory and named by its content: jobs on other hosts of a shared file
    system source the same text, and a changed interpreter never meets an old file."""
    text = job_functions(build_dir, sys.executable, sys.path)
    name = "functions-" + hashlib.sha256(text.encode()).hexdigest()[:16] + ".sh"
    path = os.path.abspath(buildpaths.job_functions(build_dir, name))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_if_changed(path, text.encode())
    return f". {shlex.quote(path)};"
