"""The ways users take tarexport up, each run for real: `pip install` of the clone into a
fresh virtual environment and its `tarexport` command, the workflow as a Snakemake
`module` of a user's own workflow, a bare `snakemake` in a fresh clone, and a user's
configuration that names only its sources and images."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.workflowrun import ROOT, SNAKEFILE, export, run_measured, sha256_file, snakemake, write_config

EXAMPLES = os.path.join(ROOT, "examples")
SOURCES = [os.path.join(EXAMPLES, "oci-layout"), os.path.join(EXAMPLES, "app-archive.tar")]
IMAGES = ["example/base:1.0", "example/app"]
# what a clone holds that an install or a clone copy must not carry along
_NOT_COPIED = shutil.ignore_patterns(
    ".git", "build", "results", "dist", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"
)


def copy_clone(target: str) -> str:
    shutil.copytree(ROOT, target, ignore=_NOT_COPIED, symlinks=True)
    return target


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """The archives `snakemake export` writes for the example's images, by format."""
    digests = {}
    for fmt in ("docker", "oci"):
        work = str(tmp_path_factory.mktemp(f"reference-{fmt}"))
        export(work, sources=SOURCES, images=IMAGES, format=fmt)
        digests[fmt] = sha256_file(os.path.join(work, "results", "images.tar"))
    return digests


class Installed:
    def __init__(self, venv: str, wheel: str):
        self.venv, self.wheel = venv, wheel
        self.command = os.path.join(venv, "bin", "tarexport")

    def run(self, *args: str, cwd: str, cache: str, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        env.pop("PYTHONPATH", None)
        return subprocess.run([self.command, *args], cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """A wheel built from a copy of the clone, installed into a new virtual environment,
    with the copy removed afterwards: the install stands alone. The environment sees this
    interpreter's packages, so the requirements are met without an index."""
    base = tmp_path_factory.mktemp("install")
    clone = copy_clone(str(base / "clone"))
    venv, wheels = str(base / "venv"), str(base / "wheels")
    python = os.path.join(venv, "bin", "python")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    pip = [python, "-m", "pip", "-q", "--disable-pip-version-check"]
    # built by this interpreter's setuptools (the venv's own, from ensurepip, may be older)
    build = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "wheel", "--no-build-isolation"]
    subprocess.run([*build, "--no-deps", "-w", wheels, clone], check=True)
    (wheel,) = (os.path.join(wheels, name) for name in os.listdir(wheels))
    subprocess.run([*pip, "install", "--no-build-isolation", "--no-index", wheel], check=True)
    shutil.rmtree(clone)
    return Installed(venv, wheel)


@pytest.mark.workflow
def test_the_wheel_carries_the_workflow_files_and_the_command(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    rules = {f"tarexport/workflow_files/workflow/rules/{os.path.basename(p)}" for p in _rule_files()}
    expected = {
        "tarexport/workflow_files/Snakefile",
        "tarexport/workflow_files/schemas/config.schema.yaml",
        "tarexport/workflow_files/config/config.yaml",
        "tarexport/workflow_files/config/README.md",
        "tarexport/workflow_files/profiles/default/config.yaml",
        "tarexport/workflow_files/workflow/report/summary.rst",
        "tarexport/workflow_files/workflow/report/workflow.rst",
        "tarexport/small_layer.sh",
        "tarexport/cli.py",
        *rules,
    }
    assert expected <= names, expected - names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tarexport = tarexport.cli:main" in zipfile.ZipFile(installed.wheel).read(entry_points).decode()


def _rule_files() -> list[str]:
    rules = os.path.join(ROOT, "workflow", "rules")
    return [os.path.join(rules, name) for name in os.listdir(rules) if name.endswith(".smk")]


@pytest.mark.workflow
def test_version(installed: Installed, tmp_path) -> None:
    from tarexport import __version__

    result = installed.run("--version", cwd=str(tmp_path), cache=str(tmp_path / "cache"))
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"tarexport {__version__}"


@pytest.mark.workflow
def test_save_writes_the_archive_snakemake_export_writes(installed: Installed, reference, tmp_path) -> None:
    work, cache = tmp_path / "work", str(tmp_path / "cache")
    work.mkdir()
    sources = [arg for source in SOURCES for arg in ("--source", os.path.relpath(source, work))]
    for fmt in ("docker", "oci"):
        result = installed.run(
            "save", "-o", f"{fmt}.tar", "--format", fmt, *sources, *IMAGES, cwd=str(work), cache=cache
        )
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert sha256_file(str(work / f"{fmt}.tar")) == reference[fmt]
        assert result.stdout == b""  # Snakemake's lines went to standard error
    # the installed workflow ran (the clone copy it was built from is gone), in the cache:
    # its jobs ran the installed package
    build = os.path.join(cache, "tarexport", "build")
    assert os.listdir(os.path.join(build, "layers"))
    (functions,) = os.listdir(os.path.join(build, "jobs"))
    with open(os.path.join(build, "jobs", functions)) as handle:
        assert f"PYTHONPATH={installed.venv}/lib/python3.11/site-packages:" in handle.read()
    # the screen: a line per stage, and the archive named last
    lines = result.stderr.decode().splitlines()
    assert lines[-3].startswith(f"tarexport: wrote {work}/oci.tar (") and reference["oci"] in lines[-3]
    # a repeated save reuses everything
    again = installed.run("save", "-o", "oci.tar", "--format", "oci", *sources, *IMAGES, cwd=str(work), cache=cache)
    assert again.returncode == 0 and "Nothing to be done" in again.stderr.decode()


@pytest.mark.workflow
def test_save_without_output_streams_to_standard_output(installed: Installed, reference, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    with open(tmp_path / "streamed.tar", "wb") as out:
        result = installed.run(
            "save", *(a for s in SOURCES for a in ("--source", s)), *IMAGES, cwd=str(tmp_path), cache=cache, stdout=out
        )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert sha256_file(str(tmp_path / "streamed.tar")) == reference["docker"]
    assert os.listdir(os.path.join(cache, "tarexport", "stdout")) == []  # streamed, then removed


@pytest.mark.workflow
def test_save_refuses_a_terminal(installed: Installed, tmp_path) -> None:
    leader, follower = pty.openpty()
    try:
        result = installed.run(
            "save", "--source", SOURCES[0], "example/base:1.0", cwd=str(tmp_path), cache=str(tmp_path), stdout=follower
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 1
    assert (
        result.stderr.decode()
        == "tarexport: error: refusing to write an archive to a terminal: give -o FILE or redirect\n"
    )
    assert not os.path.exists(tmp_path / "tarexport")  # nothing ran


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["save", "-o", "x.tar", "--source", "nowhere", "a:1"],
            1,
            "tarexport: error: source {cwd}/nowhere: does not exist",
        ),
        (
            ["save", "-o", "x.tar", "--format", "tar", "a:1"],
            2,
            "tarexport save: error: argument --format: invalid choice",
        ),
        (["save", "-o", "x.tar"], 2, "tarexport: error: name at least one IMAGE (or give --configfile)"),
    ],
)
def test_save_mistakes_are_one_line(installed: Installed, tmp_path, args: list[str], status: int, message: str) -> None:
    result = installed.run(*args, cwd=str(tmp_path), cache=str(tmp_path / "cache"))
    assert result.returncode == status
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("tarexport")]
    assert len(lines) == 1 and lines[0].startswith(message.format(cwd=tmp_path)), result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert not os.path.exists(tmp_path / "x.tar")


USER_SNAKEFILE = """
configfile: "config.yaml"


module tarexport:
    snakefile: {snakefile!r}
    config: config["tarexport"]


use rule * from tarexport as tx_*


rule all:
    default_target: True
    input: "bundle/members.txt"


rule members:
    input: config["tarexport"]["output"]
    output: "bundle/members.txt"
    shell: "tar -tf {{input}} | sort > {{output}}"
"""


@pytest.mark.workflow
def test_a_user_workflow_uses_it_as_a_module(reference, tmp_path) -> None:
    """`module` + `use rule * from tarexport as tx_*`, its config passed in by the user's
    workflow, run from the user's directory: the user's own rule consumes the archive."""
    (tmp_path / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=SNAKEFILE))
    config = {"output": "bundle/images.tar", "build_dir": "cache", "sources": SOURCES, "images": IMAGES}
    write_config(str(tmp_path), tarexport=config)
    run = run_measured([sys.executable, "-m", "snakemake", "--cores", "2"], str(tmp_path), 600)
    assert run.returncode == 0, run.output[-4000:]
    assert "tx_export" in run.output and "tx_layer_tar" in run.output  # renamed rules ran
    assert sha256_file(str(tmp_path / "bundle" / "images.tar")) == reference["docker"]
    members = (tmp_path / "bundle" / "members.txt").read_text().split()
    assert "manifest.json" in members and "repositories" in members
    # the user's other rules keep their own shell: no function of ours leaks into theirs
    again = run_measured([sys.executable, "-m", "snakemake", "--cores", "2", "-n"], str(tmp_path), 600)
    assert again.returncode == 0 and "Nothing to be done" in again.output


@pytest.mark.workflow
def test_bare_snakemake_in_a_fresh_clone_exports_the_example(tmp_path) -> None:
    clone = copy_clone(str(tmp_path / "clone"))
    dry = run_measured([sys.executable, "-m", "snakemake", "-n"], clone, 600)
    assert dry.returncode == 0 and "export" in dry.output and "Nothing to be done" not in dry.output, dry.output[-3000:]
    run = run_measured([sys.executable, "-m", "snakemake"], clone, 600)
    assert run.returncode == 0, run.output[-3000:]
    assert os.path.isfile(os.path.join(clone, "results", "images.tar"))


@pytest.mark.workflow
def test_a_user_config_of_sources_and_images_alone_is_complete(tmp_path) -> None:
    """Nothing of the example's config/config.yaml is merged into a user's file: its
    sources and images are the only ones, and the schema gives every default."""
    work = str(tmp_path)
    run = snakemake(work, "-n", configfile=write_config(work, images=IMAGES))
    assert run.returncode != 0
    assert "'sources' is a required property" in run.output and "examples" not in run.output
    run = export(work, sources=SOURCES[:1], images=["example/base:1.0"])
    assert run.returncode == 0
    assert os.path.isfile(os.path.join(work, "results", "images.tar"))


@pytest.mark.unit
def test_config_readme_documents_every_key() -> None:
    """The workflow catalog's convention: config/README.md names every key of the schema."""
    import yaml

    with open(os.path.join(ROOT, "schemas", "config.schema.yaml")) as handle:
        schema = yaml.safe_load(handle)
    with open(os.path.join(ROOT, "config", "README.md")) as handle:
        readme = handle.read()
    registry = next(
        item for item in schema["properties"]["sources"]["items"]["oneOf"] if "url" in item.get("properties", {})
    )
    keys = [*schema["properties"], *registry["properties"]]
    assert [key for key in keys if f"`{key}`" not in readme] == []


@pytest.mark.workflow
def test_save_options_make_the_workflows_configuration(tmp_path) -> None:
    """Options override the configfile; every file name becomes absolute against the
    directory the command ran in (the workflow runs in the build directory)."""
    import argparse

    from tarexport.cli import save_config, snakemake_command

    (tmp_path / "my.yaml").write_text(
        "sources: [layout, {type: registry, url: 'https://r.example', ca_file: ca.pem}]\n"
        "images: [a:1]\nformat: oci\noutput: out.tar\nbuild_dir: b\nside_files: [sha256]\n"
    )
    args = argparse.Namespace(
        configfile="my.yaml",
        sources=None,
        images=[],
        format=None,
        compression="zstd",
        platform="linux/arm64",
        compressor_versions=None,
        output=None,
        build_dir=None,
        lockfile=None,
        lock_mode=None,
    )
    stdout_archive = "/cache/stdout/1.tar"
    config = save_config(args, str(tmp_path), "/cache", stdout_archive)
    assert config == {
        "sources": [
            str(tmp_path / "layout"),
            {"type": "registry", "url": "https://r.example", "ca_file": str(tmp_path / "ca.pem")},
        ],
        "images": ["a:1"],
        "format": "oci",
        "compression": "zstd",
        "platform": "linux/arm64",
        "output": str(tmp_path / "out.tar"),  # the configfile's, without -o
        "build_dir": str(tmp_path / "b"),  # the configfile's, without --build-dir
        "side_files": ["sha256"],
    }
    args.sources, args.images = ["saved.tar", "http://127.0.0.1:5000/", "https://r.example"], ["b:2"]
    args.output, args.build_dir, args.compressor_versions = "x.tar", "elsewhere", "any"
    args.lockfile, args.lock_mode = "release.lock", "frozen"
    config = save_config(args, str(tmp_path), "/cache", stdout_archive)
    assert config["sources"] == [
        str(tmp_path / "saved.tar"),
        {"type": "registry", "url": "http://127.0.0.1:5000", "insecure": True},
        {"type": "registry", "url": "https://r.example"},
    ]
    assert (config["images"], config["output"], config["build_dir"]) == (
        ["b:2"],
        str(tmp_path / "x.tar"),
        "/cache/build",
    )
    assert config["compressor_versions"] == "any"
    assert (config["lockfile"], config["lock_mode"]) == (str(tmp_path / "release.lock"), "frozen")
    # no output anywhere: standard output, and nothing published beside it
    args.configfile, args.output = None, None
    config = save_config(args, str(tmp_path), "/cache", stdout_archive)
    assert (config["output"], config["side_files"]) == (stdout_archive, [])
    command = snakemake_command("/cache/saves/c.yaml", "/cache", "3")
    assert command[3] == "export" and command[-4:] == ["--configfile", "/cache/saves/c.yaml", "--cores", "3"]


@pytest.mark.workflow
def test_saves_to_several_outputs_keep_their_own_records(installed: Installed, tmp_path) -> None:
    """One cache, several outputs: a failed save after a change still removes its own
    output's earlier archive (each output has its record), and a lock Snakemake left
    behind (kill -9) does not stop the next save."""
    cache, sources = str(tmp_path / "cache"), [arg for source in SOURCES for arg in ("--source", source)]
    for output, image in (("a.tar", "example/base:1.0"), ("b.tar", "example/app:1.0")):
        done = installed.run("save", "-o", output, *sources, image, cwd=str(tmp_path), cache=cache)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    locks = os.path.join(cache, "tarexport", ".snakemake", "locks")
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, "0.input.lock"), "w") as handle:  # as a killed Snakemake leaves it
        handle.write(str(tmp_path / "a.tar"))
    failed = installed.run("save", "-o", "a.tar", *sources, "example/none:1", cwd=str(tmp_path), cache=cache)
    assert failed.returncode == 1
    lines = failed.stderr.decode().splitlines()
    assert f"tarexport: removed {tmp_path}/a.tar: made from another configuration" in lines
    assert not os.path.exists(tmp_path / "a.tar") and os.path.isfile(tmp_path / "b.tar")


@pytest.mark.workflow
def test_sigterm_to_the_command_stops_the_workflow_it_started(installed: Installed, tmp_path) -> None:
    import signal
    import time

    from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, write_oci_layout

    layers = [make_layer({f"d{i}": os.urandom(3 << 20)}) for i in range(8)]
    layout = write_oci_layout(str(tmp_path / "src"), [LayoutEntry(Image(layers, make_config(layers)), ["big:1"])])
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    command = [installed.command, "save", "-o", "big.tar", "--compression", "gzip", "--source", layout, "big:1"]
    process = subprocess.Popen(command, cwd=str(tmp_path), env=env, stderr=subprocess.PIPE)
    stored = tmp_path / "cache" / "tarexport" / "build" / "layers"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (stored.is_dir() and any(stored.iterdir())):
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)  # to the command alone, as a CI runner's timeout does
    _, errors = process.communicate(timeout=120)
    assert process.returncode != 0, errors.decode()[-2000:]
    left = subprocess.run(
        ["pgrep", "-f", f"snakemake export --snakefile .* --directory {tmp_path}/cache"], capture_output=True
    )
    assert left.stdout == b"", "Snakemake outlived the command that started it"
    assert not (tmp_path / "big.tar").exists()
    again = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True)
    assert again.returncode == 0 and (tmp_path / "big.tar").is_file(), again.stderr.decode()[-2000:]
