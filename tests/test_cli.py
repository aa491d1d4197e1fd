"""The jobs' command line: `python -m tarexport COMMAND --option value ...`."""

from __future__ import annotations

import pytest

from tarexport.__main__ import UsageError, main, parse

pytestmark = pytest.mark.unit


def test_options_flags_and_defaults() -> None:
    run, options = parse(["layer", "--recipe", "{}", "--keep", "--source", "{}", "--output", "o.tar"])
    assert run.__name__ == "_layer"
    assert options == {"recipe": "{}", "source": "{}", "output": "o.tar", "context": "", "keep": True}


def test_a_value_may_look_like_anything_but_an_option() -> None:
    _, options = parse(["layer", "--recipe", "-", "--source", "--x", "--output", "out"])
    assert options["source"] == "--x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a command is needed: layer"),
        (["nope"], "a command is needed"),
        (["layer", "--recipe", "{}", "--source", "{}"], "--output is required"),
        (["layer", "--recipe", "{}", "--source", "{}", "--output", "--keep"], "--output needs a value"),
        (["layer", "--output"], "--output needs a value"),
        (["layer", "--output=x"], "unexpected argument '--output=x'"),
        (["assemble", "--build-dir", "b", "--output", "o", "--format", "zip"], "--format must be one of docker, oci"),
    ],
)
def test_usage_errors_are_one_line_and_name_the_problem(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(argv)


def test_main_reports_usage_with_status_2(capsys) -> None:
    assert main(["layer", "--bogus"]) == 2
    assert capsys.readouterr().err.strip() == "tarexport: usage: layer: unexpected argument '--bogus'"
