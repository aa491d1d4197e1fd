"""Stored layers found damaged at assembly are made again, from the sources the plan names.

A stored layer is checked against its record before an archive is written from it
(layerfiles.py), and hashed against its digest as it is written (jobs.py); what fails
either was changed after its job made it (a disk, a user, an object overwritten in
remote storage). Its job's recipe and source are all that is needed to make it again, so the
assembly does so instead of refusing, and the archive still gets the bytes the plan says.
Under remote storage the assembly sees staged copies: what it made again is also linked into
`publish_dir`, from where the workflow puts it back into storage (remotestorage.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from .errors import TarexportError
from .layerfiles import record_path
from .layers import run_layer_job
from .recipes import LayerRemake


class StoredLayerRepair:
    """Makes damaged stored layers of `build_dir` again, as the plan file at `plan_path` says."""

    def __init__(self, build_dir: str, plan_path: str, publish_dir: str = ""):
        self.build_dir = build_dir
        self.publish_dir = publish_dir
        with open(plan_path, encoding="utf-8") as handle:
            self.remakes = {path: LayerRemake(**job) for path, job in json.load(handle).items()}

    def _relative(self, stored: str) -> str:
        return os.path.relpath(stored, self.build_dir)

    def knows(self, stored: str) -> bool:
        return self._relative(stored) in self.remakes

    def remake(self, stored: str, why: str) -> None:
        """Make the stored layer at `stored` again (`why`: the check's message, said first)."""
        relative = self._relative(stored)
        job = self.remakes[relative]
        print(f"tarexport: {why}; making it again", file=sys.stderr)
        try:
            run_layer_job(job.recipe, job.source, stored, job.context, job.keep)
        except TarexportError as exc:
            raise TarexportError(f"{why}, and making it again failed: {exc}") from None
        if self.publish_dir:
            for made in (stored, record_path(stored)):
                _place(made, os.path.join(self.publish_dir, self._relative(made)))


def _place(made: str, target: str) -> None:
    """`made` also at `target`: a hard link where the file system allows, else a copy."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        os.link(made, temporary)
    except OSError:
        shutil.copyfile(made, temporary)
    os.replace(temporary, target)
