"""`tarexport`: the workflow as one command, for `docker save` habits.

`tarexport save [-o FILE] [--source SRC]... IMAGE...` runs the very workflow `snakemake
export` runs (its Snakefile, through Snakemake's own command line: no second
implementation) with a configuration made from the options, in a build directory that
persists between saves (by default a per-user cache), so a repeated save reuses its layers.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import yaml

from . import __version__

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# a configuration file is a few kilobytes; the settings' own bounds are in settings.py
CONFIGFILE_MAX_CHARS = 16 << 20

# The keys of a configuration that name files: made absolute against the directory the
# command was started in, since the workflow runs in the build directory.
_PATH_KEYS = ("output", "build_dir", "lockfile")


def workflow_dir() -> str:
    """The directory holding the Snakefile, its rules, schema, default config and profile:
    beside the package when installed (tarexport/workflow_files), else the clone's root."""
    installed = os.path.join(PACKAGE_DIR, "workflow_files")
    if os.path.isfile(os.path.join(installed, "Snakefile")):
        return installed
    return os.path.dirname(os.path.dirname(PACKAGE_DIR))


def default_build_dir() -> str:
    """$XDG_CACHE_HOME/tarexport, as the XDG base directory rules place a per-user cache:
    a relative (or empty) $XDG_CACHE_HOME is invalid by those rules and ignored, for ~/.cache."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):
        cache = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "tarexport")


# --cores as Snakemake takes it: a number of job slots, or `all`
_CORES = re.compile(r"[1-9][0-9]{0,5}|all")


def _cores(text: str) -> str:
    if not _CORES.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number of job slots (or `all`)")
    return text


def _path(text: str) -> str:
    """A file name given as an option: not empty (it would name the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; name a file or directory")
    return text


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, with where to look (exit status 2, as argparse's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tarexport",
        description="Export container images to one reproducible archive that docker load, podman load "
        "and ctr import accept; daemonless.",
    )
    parser.add_argument("--version", action="version", version=f"tarexport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    save = commands.add_parser(
        "save",
        help="write images to one archive (as `docker save`)",
        description="Write IMAGEs (repo:tag, repo, image ID, repo@sha256:...) to one archive, byte-identical "
        "to `snakemake export` with the same settings. Options given override --configfile.",
    )
    save.add_argument("images", nargs="*", metavar="IMAGE", help="what to export (else the configfile's images)")
    save.add_argument(
        "-o", "--output", metavar="FILE", type=_path, help="the archive (default: standard output, never a terminal)"
    )
    save.add_argument(
        "--source",
        dest="sources",
        action="append",
        type=_path,
        metavar="SRC",
        help="where images come from, in order: an OCI layout directory, a docker-save tar, or a registry URL "
        "(https://host[:port]; http:// for a plain-http registry)",
    )
    save.add_argument("--format", choices=("docker", "oci"), help="archive layout (default docker)")
    save.add_argument("--compression", choices=("none", "gzip", "zstd"), help="whole-archive compression")
    save.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="picked from multi-platform images")
    save.add_argument(
        "--build-dir",
        metavar="DIR",
        type=_path,
        help=f"stored layers, reused by later saves (default {default_build_dir()})",
    )
    save.add_argument("--cores", metavar="N", type=_cores, help="Snakemake job slots (default: the workflow profile's)")
    save.add_argument(
        "--compressor-versions",
        choices=("pinned", "any"),
        help="with gzip or zstd: `any` accepts a compression library other than the tested one (other bytes)",
    )
    save.add_argument(
        "--lockfile", metavar="FILE", type=_path, help="record what each name resolved to (see --lock-mode)"
    )
    save.add_argument(
        "--lock-mode",
        choices=("update", "frozen"),
        help="`update` (default) rewrites the lock file; `frozen` exports exactly the images it locks",
    )
    save.add_argument("--configfile", metavar="CFG", type=_path, help="a tarexport configuration (config/README.md)")
    return parser


def source_entry(text: str, cwd: str) -> str | dict[str, Any]:
    """A --source as the configuration spells it: a registry for a URL, else a path."""
    if re.match(r"^https?://", text):
        url = text.rstrip("/")
        return (
            {"type": "registry", "url": url, "insecure": True}
            if url.startswith("http://")
            else {
                "type": "registry",
                "url": url,
            }
        )
    return os.path.join(cwd, text)


def absolute_paths(config: dict[str, Any], cwd: str) -> dict[str, Any]:
    """The configuration with its file names made absolute against `cwd`."""
    config = dict(config)
    for key in _PATH_KEYS:
        if isinstance(config.get(key), str):
            config[key] = os.path.join(cwd, config[key])
    sources = config.get("sources")
    if isinstance(sources, list):
        config["sources"] = [_absolute_source(source, cwd) for source in sources]
    return config


def _absolute_source(source: Any, cwd: str) -> Any:
    if isinstance(source, str):
        return os.path.join(cwd, source)
    if isinstance(source, dict):
        # the keys settings.py resolves (imported here: `tarexport --version` stays light)
        from .settings import REGISTRY_FILE_KEYS

        files = ("path", *REGISTRY_FILE_KEYS)
        return {
            key: os.path.join(cwd, value) if key in files and isinstance(value, str) else value
            for key, value in source.items()
        }
    return source


def save_config(args: argparse.Namespace, cwd: str, workdir: str, stdout_archive: str) -> dict[str, Any]:
    """The workflow's configuration for one save: the configfile's (if any), then the options.
    The archive goes to -o, else to the configfile's `output`, else to standard output (by
    way of `stdout_archive`); stored layers to the configfile's `build_dir` unless
    --build-dir is given, else under `workdir`."""
    config: dict[str, Any] = {}
    if args.configfile:
        with open(os.path.join(cwd, args.configfile), encoding="utf-8") as handle:
            text = handle.read(CONFIGFILE_MAX_CHARS + 1)  # bounded: it may be /dev/zero
        if len(text) > CONFIGFILE_MAX_CHARS:
            raise ValueError(f"--configfile {args.configfile}: longer than {CONFIGFILE_MAX_CHARS >> 20} MiB")
        loaded = yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise ValueError(f"--configfile {args.configfile}: not a mapping of settings (config/README.md)")
        config = absolute_paths(loaded, cwd)
    if args.sources:
        config["sources"] = [source_entry(source, cwd) for source in args.sources]
    if args.images:
        config["images"] = list(args.images)
    if args.lockfile:
        config["lockfile"] = os.path.join(cwd, args.lockfile)
    for key in ("format", "compression", "platform", "compressor_versions", "lock_mode"):
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    if args.output:
        config["output"] = os.path.join(cwd, args.output)
    config.setdefault("output", stdout_archive)
    if args.build_dir or "build_dir" not in config:
        config["build_dir"] = os.path.join(workdir, "build")
    # as `docker save -o`: the archive alone, unless the configfile asks for side files
    config.setdefault("side_files", [])
    if config["output"] == stdout_archive:
        config["side_files"] = []  # nothing is published beside standard output
    return config


def snakemake_command(config_path: str, workdir: str, cores: str | None) -> list[str]:
    """`snakemake export` in `workdir`, with the workflow's own profile."""
    root = workflow_dir()
    # the target first: --configfile takes every word up to the next option
    command = [sys.executable, "-m", "snakemake", "export", "--snakefile", os.path.join(root, "Snakefile")]
    command += ["--workflow-profile", os.path.join(root, "profiles", "default"), "--directory", workdir]
    command += ["--configfile", config_path]
    if cores:
        command += ["--cores", cores]
    # every value is an absolute path or a checked number: none that Snakemake reads as an option
    for option, value in zip(command[4::2], command[5::2], strict=True):
        if value.startswith("-"):
            raise ValueError(f"{option} {value[:40]!r}: a value that reads as an option")
    return command


def _overlap(first: str, second: str) -> bool:
    """Whether one of two absolute paths holds (or is) the other."""
    return os.path.commonpath([first, second]) in (first, second)


def check_save(config: dict[str, Any], workdir: str, cwd: str) -> None:
    """Everything a save can be refused for before it runs, checked before it creates a file
    or directory: the configuration as the workflow checks it (size, schema, write paths),
    local sources that exist, and a build directory (`workdir`: it holds the save's lock, its
    configurations and Snakemake's records) that is a directory and clear of every source."""
    # imported here: `tarexport --version` stays light
    from .errors import TarexportError
    from .settings import load_settings
    from .startup import checked_settings

    schema = os.path.join(workflow_dir(), "schemas", "config.schema.yaml")
    settings = load_settings(config, schema, cwd)  # bounded in size, then the schema
    if os.path.lexists(workdir) and not os.path.isdir(workdir):
        raise TarexportError(f"build directory {workdir} is not a directory; give another --build-dir")
    real_workdir = os.path.realpath(workdir)
    for spec in settings.sources:
        if spec.registry is not None:
            continue
        if not os.path.exists(spec.resolved):
            raise TarexportError("does not exist", source=spec.path)
        if _overlap(os.path.realpath(spec.resolved), real_workdir):
            raise TarexportError(
                f"the build directory {workdir} and this source overlap (one holds the other); give another"
                " --build-dir",
                source=spec.path,
            )
    checked_settings(config, schema, cwd)  # the output, build_dir and lock file, as the workflow checks them


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _run_workflow(command: list[str]) -> int:
    """Run Snakemake in a process group of its own, its lines to standard error (standard
    output may be the archive). Ctrl-C, SIGTERM and SIGHUP sent to this command are passed
    on to that group, Snakemake and its jobs, and Snakemake winds down as after its own
    Ctrl-C; this process waits for it, so it is never orphaned or cut off mid-cleanup.
    A run ended by a signal answers 128 + its number, as a shell does."""
    process = subprocess.Popen(command, stdout=sys.stderr.fileno(), process_group=0)

    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, number)

    previous = {number: signal.signal(number, forward) for number in _FORWARDED}
    try:
        while True:
            try:
                status = process.wait()
                break
            except InterruptedError:
                continue
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 128 - status if status < 0 else status


@contextlib.contextmanager
def _one_save_at_a_time(workdir: str) -> Iterator[None]:
    """Hold the build directory for this save; another save there waits. While held, no
    other save runs here, so a lock Snakemake left behind (kill -9, a crash) is stale and
    is cleared, and so are archives for standard output whose saves died."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "save.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"tarexport: waiting for another save in {workdir}", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(os.path.join(workdir, ".snakemake", "locks"), ignore_errors=True)
        streamed = os.path.join(workdir, "stdout")
        for name in os.listdir(streamed) if os.path.isdir(streamed) else []:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(streamed, name))
        yield


def _stream(archive: str) -> int:
    """The archive to standard output; it is unlinked first, so that nothing stays behind
    however the streaming ends."""
    with open(archive, "rb") as source:
        os.unlink(archive)
        try:
            shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # the reader stopped early (`| head`): as any writer of a pipe, stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
    return 0


def save(args: argparse.Namespace) -> int:
    cwd = os.getcwd()
    if not args.images and not args.configfile:
        print("tarexport: error: name at least one IMAGE (or give --configfile)", file=sys.stderr)
        return 2
    # Snakemake's working directory: its own records, the stored layers in build/, and the
    # archive for standard output (written, streamed, removed)
    workdir = os.path.abspath(os.path.join(cwd, args.build_dir) if args.build_dir else default_build_dir())
    stdout_archive = os.path.join(workdir, "stdout", f"{os.getpid()}.tar")
    try:
        config = save_config(args, cwd, workdir, stdout_archive)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"tarexport: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    to_stdout = config["output"] == stdout_archive
    if to_stdout and os.isatty(sys.stdout.fileno()):
        print("tarexport: error: refusing to write an archive to a terminal: give -o FILE or redirect", file=sys.stderr)
        return 1
    from .errors import TarexportError, error_line

    # everything is checked before the first file or directory is made
    try:
        check_save(config, workdir, cwd)
        text = yaml.safe_dump(config, sort_keys=True).encode()
        config_path = os.path.join(workdir, "saves", hashlib.sha256(text).hexdigest()[:16] + ".yaml")
        command = snakemake_command(config_path, workdir, args.cores)
    except (TarexportError, OSError) as error:
        print(error_line(error), file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"tarexport: error: {error}", file=sys.stderr)
        return 1
    with _one_save_at_a_time(workdir):
        os.makedirs(os.path.dirname(config_path), exist_ok=True)
        with open(config_path, "wb") as handle:
            handle.write(text)
        try:
            status = _run_workflow(command)
            if status != 0 or not to_stdout:
                return status
            return _stream(stdout_archive)
        finally:
            if to_stdout:  # named by this process: of no use to a later save
                with contextlib.suppress(OSError):
                    os.unlink(config_path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return save(args)
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # the build directory cannot be made or locked (permissions, a full disk)
        from .errors import error_line

        print(error_line(error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
