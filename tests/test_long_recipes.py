"""Job recipes too long for a command line: the kernel limits one argument to 128 KiB, and
an image of 600 layers has an OCI manifest recipe of about 150 KB (its job then failed with
"Argument list too long"). Past 16 KiB a recipe goes to its job as a file named by its
content: 100 layers (25 KB) take that path here, at a sixth of the cost."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from tests.imagefactory import LayoutEntry, make_image, write_oci_layout
from tests.workflowrun import export

pytestmark = pytest.mark.workflow


def test_a_recipe_past_the_inline_limit_goes_through_a_file(tmp_path) -> None:
    count = 100
    image = make_image([{f"f{i}": str(i).encode()} for i in range(count)])
    layout = write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(image, ["docker.io/library/tall:1"])])
    work = str(tmp_path / "work")
    os.makedirs(work)
    export(work, sources=[layout], images=["tall:1"], format="oci")
    recipes = [name for name in os.listdir(os.path.join(work, "build", "plan")) if name.startswith("recipe-")]
    assert recipes, "the long recipe went through a file"
    assert os.path.getsize(os.path.join(work, "build", "plan", recipes[0])) > 16 * 1024
    with tarfile.open(os.path.join(work, "results", "images.tar")) as archive:
        (entry,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert len(entry["Layers"]) == count
