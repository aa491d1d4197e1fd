from __future__ import annotations

import os
import sys

# The package lives under workflow/ (the Snakemake catalog layout), not installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflow"))


import pytest

from tests.tiers import GUARD, RANK, TIERS, TierError, fixture_key, install


def pytest_configure(config: pytest.Config) -> None:
    install()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries exactly one tier (tests/tiers.py); tests sharing a fixture wider
    than one test run on one worker (pytest -n), which then sets it up once."""
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(tiers) or 'no tier'}")
        group = shared_fixture_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if wrong:
        raise pytest.UsageError(
            "every test carries exactly one tier marker (" + ", ".join(TIERS) + "):\n  " + "\n  ".join(wrong)
        )


def own_fixtures(item: pytest.Item) -> list[tuple[str, pytest.FixtureDef]]:
    """The fixtures this test uses, each with the definition it gets."""
    info = getattr(item, "_fixtureinfo", None)
    found = []
    for name in getattr(item, "fixturenames", ()):
        definitions = info.name2fixturedefs.get(name) if info else None
        if definitions:
            found.append((name, definitions[-1]))
    return found


def shared_fixture_group(item: pytest.Item) -> str:
    """The widest of the tests' own fixtures this test uses: a session fixture names its
    group (the Docker oracle: every module using it runs on one worker), a module fixture
    its module's. Empty: the test goes to whichever worker is free."""
    group = ""
    for name, definition in own_fixtures(item):
        if not getattr(definition.func, "__module__", "").startswith("tests"):
            continue  # pytest's own (tmp_path_factory...) cost nothing to share
        if definition.scope == "session":
            return f"session-{name}"
        if definition.scope in ("module", "package", "class"):
            group = f"module-{item.module.__name__ if item.module else item.nodeid.split('::')[0]}"
    return group


def tier_of(item: pytest.Item) -> str:
    return next(mark.name for mark in item.iter_markers() if mark.name in TIERS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    GUARD.test, GUARD.allowed, GUARD.violation = item.nodeid, tier_of(item), ""
    try:
        return (yield)
    finally:
        GUARD.test, GUARD.allowed = "", "timing"


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    # a fixture set up for each test is seen starting things in that test's own setup
    if fixturedef.scope == "function":
        return (yield)
    GUARD.fixtures.append(fixture_key(fixturedef.baseid, fixturedef.argname))
    try:
        return (yield)
    finally:
        GUARD.fixtures.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    GUARD.uses(fixture_key(definition.baseid, name) for name, definition in own_fixtures(item))
    result = yield
    if GUARD.violation:  # raised inside the test, but a test may have caught it
        raise TierError(GUARD.violation)
    return result


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if os.environ.get("TAREXPORT_TIER_AUDIT") != "1":
        return
    lower = [
        f"{nodeid}: marked {tier}, started at most {GUARD.started.get(nodeid, 'unit')}"
        for nodeid, tier in AUDIT.items()
        if tier in ("workflow", "engines") and RANK[GUARD.started.get(nodeid, "unit")] < RANK[tier]
    ]
    terminalreporter.section("tests that started nothing of their tier")
    for line in lower or ["none"]:
        terminalreporter.write_line(line)


AUDIT: dict[str, str] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    AUDIT[item.nodeid] = tier_of(item)


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


@pytest.fixture(autouse=True)
def signal_handlers_are_left_as_found():
    """A test that leaves a signal's handler changed changes every process started after
    it in this worker (an ignored SIGINT is inherited): it fails, and the handler is put back."""
    import signal

    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)
    before = {number: signal.getsignal(number) for number in numbers}
    yield
    changed = [signal.Signals(n).name for n in numbers if signal.getsignal(n) is not before[n]]
    for number in numbers:
        signal.signal(number, before[number])
    if changed:
        pytest.fail(f"the test left the handler of {', '.join(changed)} changed")
