"""What a run shows: a line per stage, the assembly's progress, the archive named last,
Snakemake's job blocks one flag (-p) away, and one short line for Ctrl-C."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from tarexport.progress import ProgressLine, amount
from tarexport.screen import Screen
from tests.imagefactory import Image, LayoutEntry, make_config, make_layer, write_oci_layout
from tests.workflowrun import SNAKEFILE, export, sha256_file, snakemake, write_config


def record(message: str | None = None, level: int = logging.INFO, **fields: object) -> logging.LogRecord:
    """A record as Snakemake logs it: its fields in `extra`."""
    made = logging.LogRecord("snakemake.logging", level, __file__, 1, message, None, None)
    made.__dict__.update(fields)
    return made


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_the_screen_says_stages_instead_of_jobs(tmp_path) -> None:
    out, clock = io.StringIO(), Clock()
    screen = Screen(out, interval=5.0, clock=clock)
    stats = {"layer_tar": 3, "image_files_0123456789ab": 1, "manifest_json": 1, "export": 1, "total": 6}
    assert not screen.filter(record("Job stats: ...", event="run_info", stats=stats))
    outputs = []
    for jobid in range(3):
        path = tmp_path / f"{jobid}.tar"
        path.write_bytes(b"x" * 1000)
        outputs.append(str(path))
        info = record(event="job_info", jobid=jobid, rule_name="layer_tar", output=[str(path)])
        assert not screen.filter(info)
    assert not screen.filter(record(event="job_finished", job_id=0))
    clock.now += 6  # past the interval: a progress line
    assert not screen.filter(record(event="job_finished", job_id=1))
    clock.now += 1  # within it: nothing until the stage ends
    assert not screen.filter(record(event="job_finished", job_id=2))
    for message in ("Select jobs to execute...", "Execute 3 jobs..."):
        assert not screen.filter(record(message))
    assert not screen.filter(record(event="progress", done=3, total=6))
    # what a user needs passes
    assert screen.filter(record("Nothing to be done (all requested files are present and up to date)."))
    assert screen.filter(record("a warning", logging.WARNING))
    assert screen.filter(record(event="job_error", rule_name="layer_tar"))
    assert out.getvalue().splitlines() == [
        "tarexport: to do: 3 layers, 1 image files, 1 index files, then the archive",
        "tarexport: layers: 2 of 3 done (2.0 KB so far)",
        "tarexport: layers: 3 of 3 done (3.0 KB, 7.0 s)",
    ]


@pytest.mark.unit
def test_after_ctrl_c_one_line_and_no_job_errors() -> None:
    out = io.StringIO()
    screen = Screen(out)
    assert not screen.filter(record("Terminating processes on user request, this might take some time."))
    assert not screen.filter(record(event="job_error", rule_name="layer_tar"))
    assert not screen.filter(record("RuleException:\nCalledProcessError ... PYTHONPATH=...", logging.ERROR))
    assert screen.filter(record("Complete log(s): .snakemake/log/x.log"))
    assert out.getvalue() == (
        "tarexport: interrupted; what was written is complete or removed, and the next run goes on from there\n"
    )


@pytest.mark.unit
def test_a_long_job_says_how_far_it_is() -> None:
    out, done = io.StringIO(), [0]
    with ProgressLine("writing results/images.tar", lambda: done[0], 3_000_000_000, 0.05, out):
        for _ in range(4):
            time.sleep(0.06)
            done[0] += 500_000_000
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("tarexport: writing results/images.tar: ") for line in lines)
    assert lines[-1].split(": ", 2)[2].split(" (")[0] in {f"{amount(n * 500_000_000)} of 3.0 GB" for n in range(1, 5)}
    assert amount(999) == "999 B" and amount(1_500_000) == "1.5 MB"
    quiet = io.StringIO()
    with ProgressLine("x", lambda: 0, 1, 10.0, quiet):
        pass  # shorter than the interval: nothing said
    assert quiet.getvalue() == ""


LAYERS = [make_layer({f"data{i}": os.urandom(3 << 20)}) for i in range(6)]
BIG = Image(LAYERS, make_config(LAYERS))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_oci_layout(str(tmp_path_factory.mktemp("src") / "layout"), [LayoutEntry(BIG, ["big:1"])])


@pytest.mark.workflow
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_run_shows_stages_and_names_the_archive_last(source: str, tmp_path, compression: str) -> None:
    work = str(tmp_path)
    run = export(work, sources=[source], images=["big:1"], compression=compression)
    lines = run.output.splitlines()
    assert max(len(line) for line in lines) < 200, run.output
    assert "jobid" not in run.output and "localrule" not in run.output
    assert "tarexport: layers: 6 of 6 done (" in run.output
    archive = os.path.join(work, "results", "images.tar")
    final = next(line for line in lines if line.startswith("tarexport: wrote"))
    size, digest = os.path.getsize(archive), sha256_file(archive)
    assert final == f"tarexport: wrote results/images.tar ({size} bytes, 1 images, sha256:{digest})"
    assert run.jobs["layer_tar"] == 6  # every job is still in Snakemake's own log
    # Snakemake's job blocks are one flag away
    os.unlink(archive)
    detailed = snakemake(work, "-p", configfile=os.path.join(work, "config.yaml"))
    assert detailed.returncode == 0 and "localrule export:" in detailed.output
    assert "tarexport: wrote results/images.tar" in detailed.output


@pytest.mark.workflow
def test_ctrl_c_says_one_short_line_and_leaves_what_kill_9_leaves(source: str, tmp_path) -> None:
    # Interrupted once a layer is stored, while the run still goes on: on a busy machine
    # (the suite on two workers) this test may first see the layer only after the whole
    # run has ended; such an attempt interrupted nothing and is made again in a new
    # directory. The run gets SIGINT's default disposition, as from a terminal, whatever
    # pytest inherited (started in the background by a shell without job control, SIGINT
    # is ignored, and so it would be in Snakemake, which then rightly goes on).
    for attempt in range(3):
        work = str(tmp_path / f"attempt{attempt}")
        os.makedirs(work)
        config = write_config(work, sources=[source], images=["big:1"], compression="gzip")
        command = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", work, "export", "--configfile", config]
        process = subprocess.Popen(
            command,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        layers = os.path.join(work, "build", "layers")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (os.path.isdir(layers) and os.listdir(layers)):
            time.sleep(0.01)
        if process.poll() is None:
            break
        process.communicate(timeout=300)
    else:
        raise AssertionError("every attempt ended before a layer was seen: nothing was interrupted")
    os.killpg(process.pid, signal.SIGINT)  # as the terminal does: Snakemake and its jobs
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    lines = output.splitlines()
    assert (
        "tarexport: interrupted; what was written is complete or removed, and the next run goes on from there" in lines
    ), output
    assert max(len(line) for line in lines) < 200 and "Traceback" not in output and "PYTHONPATH" not in output
    assert not os.path.exists(os.path.join(work, "results", "images.tar"))
    again = snakemake(work, configfile=config)
    assert again.returncode == 0, again.output[-3000:]
    reference = str(tmp_path / "reference")
    os.makedirs(reference)
    export(reference, sources=[source], images=["big:1"], compression="gzip")
    assert sha256_file(os.path.join(work, "results", "images.tar")) == sha256_file(
        os.path.join(reference, "results", "images.tar")
    )


class InterruptingStream(io.StringIO):
    """A terminal that Ctrl-C hits while Snakemake writes a line to it."""

    def write(self, text: str) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def interrupt_while_snakemake_writes() -> None:
    from snakemake.logging import ColorizingTextHandler

    handler = ColorizingTextHandler(nocolor=True, stream=InterruptingStream())
    handler.emit(logging.LogRecord("snakemake.logging", logging.INFO, "", 0, "Finished jobid: 3", None, None))


def interrupted_within(seconds: float) -> bool:
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except KeyboardInterrupt:
        return True
    return False


@pytest.mark.unit
def test_ctrl_c_while_snakemake_writes_a_line_is_raised_again_until_acted_on() -> None:
    from tarexport.interrupts import InterruptLatch

    latch = InterruptLatch(interval=0.2)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored, when pytest runs in the background
    try:
        # Snakemake's own terminal handler swallows it: the run would go on
        interrupt_while_snakemake_writes()
        assert not interrupted_within(1.0)
        assert latch.install()
        interrupt_while_snakemake_writes()
        assert latch.pending and interrupted_within(5.0)  # raised again
        latch.handled()  # Snakemake: "Terminating processes on user request"
        assert not interrupted_within(1.0)
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C of the user's is raised as ever
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    finally:
        latch.handled()
        signal.signal(signal.SIGINT, inherited)
        time.sleep(0.3)  # the latch's thread sees it and ends


@pytest.mark.unit
def test_the_screen_tells_the_latch_when_snakemake_acts_on_ctrl_c() -> None:
    told = []
    screen = Screen(io.StringIO(), show=False, on_terminating=lambda: told.append(1))
    assert screen.filter(record("Finished jobid: 3"))
    assert not told
    screen.filter(record("Terminating processes on user request, this might take some time."))
    assert told == [1]
