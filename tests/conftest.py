import os
import sys

# The package lives under workflow/ (the Snakemake catalog layout), not installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflow"))


import pytest


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory):
    """One Docker 20.10 engine with the scenario images, shared by all oracle tests."""
    from tests.engines import require
    from tests.oracle import start_oracle

    require("dockerd")
    yield from start_oracle(str(tmp_path_factory.mktemp("oracle")))


@pytest.fixture(scope="session")
def multi_save(oracle) -> str:
    """`docker save` of several images with shared and repeated layers, and an untagged one."""
    from tests.oracle import MULTI

    return oracle.save("multi.tar", *MULTI, oracle.ids["untagged"])
