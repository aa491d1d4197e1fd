"""Docker 20.10's `docker load` against the docker-save reader: crafted archives (hard
links, duplicate names, `./` and absolute names, writes through symlinks) load the image
the reader reads, or are ones the reader refuses (tests/test_fuzz.py UNTAR_CASES)."""

from __future__ import annotations

import pytest

from tests.engines import DOCKERD, DockerEngine, require
from tests.test_fuzz import UNTAR_CASES, UNTAR_IMAGES, write_untar_case

pytestmark = pytest.mark.engines


def test_docker_load_reads_what_the_reader_reads(tmp_path) -> None:
    require(DOCKERD)
    names = {image.image_id: which for which, image in UNTAR_IMAGES.items()}
    engine = DockerEngine()
    loaded: dict[str, str] = {}
    try:
        for case, (members, _, _) in UNTAR_CASES.items():
            path = write_untar_case(str(tmp_path / f"{case}.tar"), members)
            try:
                engine.docker("load", "-i", path)
            except RuntimeError:
                loaded[case] = "fails"
                continue
            image_id = engine.docker("image", "inspect", "--format", "{{.Id}}", "victim:1").strip()
            loaded[case] = names.get(image_id, image_id)
            engine.docker("rmi", "-f", image_id)
    finally:
        engine.stop()
    assert loaded == {case: docker for case, (_, _, docker) in UNTAR_CASES.items()}
    # where the reader reads an image, it is the one Docker loads; elsewhere it refuses
    for case, (_, ours, docker) in UNTAR_CASES.items():
        assert ours == docker or ours not in UNTAR_IMAGES, case
