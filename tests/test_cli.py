"""The command lines: the jobs' (`python -m tarexport COMMAND --option value ...`) and the
checks `tarexport save` makes before it writes anything."""

from __future__ import annotations

import os

import pytest

from tarexport import cli
from tarexport.__main__ import UsageError, main, parse
from tests.imagefactory import LayoutEntry, make_image, write_oci_layout

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


# `tarexport save`: refused before it writes anything (these never get as far as Snakemake)


@pytest.fixture
def layout(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An OCI layout in a directory the test runs in, with a home of its own (its cache)."""
    write_oci_layout(str(tmp_path / "layout"), [LayoutEntry(make_image([{"a": b"A"}]), ["app:1"])])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return str(tmp_path / "layout")


def tree(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(top, name), root) for top, dirs, files in os.walk(root) for name in dirs + files
    )


def alias_bomb_config(path: str) -> None:
    """A configuration of a few hundred bytes whose `platform` is a billion strings."""
    lines = ["anchors:", '  l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 9)]
    lines += ["sources: [layout]", "images: [app:1]", "platform: *l8"]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--build-dir", "layout/cache"],
            "source {tmp}/layout: the build directory {tmp}/layout/cache and this source overlap",
        ),
        (["--build-dir", "layout"], "source {tmp}/layout: the build directory {tmp}/layout and this source overlap"),
        (["--build-dir", "."], "source {tmp}/layout: the build directory {tmp} and this source overlap"),
        (["--source", "nowhere"], "source {tmp}/nowhere: does not exist"),
        (["-o", "layout/x.tar"], "source {tmp}/layout: config key output: {tmp}/layout/x.tar lies inside this source"),
        (["--platform", "linux"], "config key platform: 'linux' does not match"),
        (["--configfile", "bomb.yaml"], "config key platform: more than 50000 values in the configuration"),
    ],
)
def test_save_checks_everything_before_it_writes(layout: str, tmp_path, capsys, args: list[str], message: str) -> None:
    alias_bomb_config(str(tmp_path / "bomb.yaml"))
    before = tree(str(tmp_path))
    assert cli.main(["save", "-o", "x.tar", "--source", "layout", *args, "app:1"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tarexport: error: " + message.format(tmp=tmp_path)), lines
    assert tree(str(tmp_path)) == before  # not a lock, a directory or a configuration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cores=--delete-all-output"], "argument --cores: '--delete-all-output' is not a whole number of job slots"),
        (["--cores", "0"], "argument --cores: '0' is not a whole number"),
        (["--cores", "2.5"], "argument --cores: '2.5' is not a whole number"),
        (["--cores=-1"], "argument --cores: '-1' is not a whole number"),
        (["-o", ""], "argument -o/--output: an empty path"),
        (["--build-dir="], "argument --build-dir: an empty path"),
        (["--source="], "argument --source: an empty path"),
        (["--lockfile="], "argument --lockfile: an empty path"),
        (["--configfile="], "argument --configfile: an empty path"),
    ],
)
def test_save_option_values_are_checked(capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["save", *args, "app:1"])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tarexport save: error: {message}"), lines


def test_save_takes_a_number_of_cores_or_all() -> None:
    for cores in ("1", "16", "all"):
        assert cli._parser().parse_args(["save", "--cores", cores, "app:1"]).cores == cores


def test_no_value_given_to_snakemake_reads_as_an_option() -> None:
    assert cli.snakemake_command("/cache/saves/c.yaml", "/cache", "4")[-2:] == ["--cores", "4"]
    with pytest.raises(ValueError, match="--cores '--delete-all-output': a value that reads as an option"):
        cli.snakemake_command("/cache/saves/c.yaml", "/cache", "--delete-all-output")
    with pytest.raises(ValueError, match="--directory '-n'"):
        cli.snakemake_command("/cache/saves/c.yaml", "-n", None)


@pytest.mark.parametrize("value", ["cache", "./cache", "", "~/cache"])
def test_a_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """The XDG Base Directory rules: a relative path in $XDG_CACHE_HOME is invalid and ignored."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert cli.default_build_dir() == str(tmp_path / ".cache" / "tarexport")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    assert cli.default_build_dir() == str(tmp_path / "elsewhere" / "tarexport")


def test_a_configfile_is_read_up_to_a_bound(layout: str, tmp_path, capsys) -> None:
    (tmp_path / "huge.yaml").write_text("# " + "x" * (16 << 20) + "\n")
    assert cli.main(["save", "-o", "x.tar", "--configfile", "huge.yaml"]) == 1
    assert capsys.readouterr().err == "tarexport: error: --configfile huge.yaml: longer than 16 MiB\n"
