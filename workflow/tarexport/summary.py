"""The archive's summary for Snakemake's report (`snakemake --report report.html`): what a
release engineer checks before shipping a bundle. Each image (names, image ID, layers,
size), the layers images share and the bytes sharing saved, the archive's size and
sha256, and how long each kind of job took in the run that made it.

Written by the export job next to the archive, from the plan's image list (a plan file),
the stored files' sizes, and the stage times the run's screen recorded (screen.py).
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .fileio import write_atomically
from .progress import amount


@dataclass(frozen=True)
class SummaryImage:
    names: list[str]
    image_id: str
    config_file: str  # relative to the build directory
    layers: list[tuple[str, str]]  # (digest in the archive, build file, relative; "" for a foreign layer left out)

    def to_json(self) -> dict[str, Any]:
        return {"names": self.names, "id": self.image_id, "config": self.config_file, "layers": self.layers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SummaryImage:
        return cls(data["names"], data["id"], data["config"], [tuple(layer) for layer in data["layers"]])


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def summary_html(
    images: list[SummaryImage],
    archive: str,
    size: int,
    sha256: str,
    settings: str,
    stages: dict[str, Any],
    build_dir: str = ".",
) -> str:
    def _size(path: str) -> int:
        return _file_size(os.path.join(build_dir, path)) if path else 0

    sizes = {digest: _size(path) for image in images for digest, path in image.layers}
    uses = Counter(digest for image in images for digest in dict.fromkeys(d for d, _ in image.layers))
    shared = [digest for digest, count in uses.items() if count > 1]
    saved = sum(sizes[digest] * (uses[digest] - 1) for digest in shared)
    image_rows = []
    for image in images:
        image_size = _size(image.config_file) + sum(sizes[d] for d in dict.fromkeys(d for d, _ in image.layers))
        names = "<br>".join(html.escape(name) for name in image.names) or "<i>(untagged)</i>"
        short = html.escape(image.image_id.removeprefix("sha256:")[:12])
        image_rows.append(
            [
                names,
                f'<code title="{html.escape(image.image_id)}">{short}</code>',
                str(len(image.layers)),
                f"{amount(image_size)} ({image_size} bytes)",
            ]
        )
    stage_rows = [
        [html.escape(name), str(times.get("jobs", 0)), f"{times.get('seconds', 0.0):.2f} s"]
        for name, times in stages.items()
    ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>tarexport: archive summary</title>",
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style></head><body>",
        "<h2>Archive</h2>",
        _table(
            ["file", "size", "sha256", "settings", "images", "distinct layers"],
            [
                [
                    f"<code>{html.escape(archive)}</code>",
                    f"{amount(size)} ({size} bytes)",
                    f"<code>sha256:{html.escape(sha256)}</code>",
                    html.escape(settings),
                    str(len(images)),
                    str(len(uses)),
                ]
            ],
        ),
        "<h2>Images</h2>",
        _table(["names", "image ID", "layers", "size"], image_rows),
        "<h2>Shared layers</h2>",
        f"<p>{len(shared)} of {len(uses)} distinct layers are used by more than one image; storing each once saved "
        f"{amount(saved)} ({saved} bytes).</p>",
        "<h2>Time by kind of job (the run that wrote the archive)</h2>",
        _table(["jobs", "run", "wall time"], stage_rows)
        if stage_rows
        else "<p>Not recorded (the workflow ran as a module of another, or its screen was off).</p>",
        "</body></html>",
    ]
    return "".join(parts)


def read_summary_images(path: str) -> list[SummaryImage]:
    with open(path, encoding="utf-8") as handle:
        return [SummaryImage.from_json(item) for item in json.load(handle)]


def write_summary(
    path: str,
    images_file: str,
    archive: str,
    size: int,
    sha256: str,
    settings: str,
    stages_file: str,
    own_time: dict[str, Any],
    build_dir: str = ".",
) -> None:
    """`stages_file`: the stage times recorded so far in this run (every stage before the
    archive's), to which the export job adds its own (`own_time`)."""
    images = read_summary_images(images_file)
    stages: dict[str, Any] = {}
    if stages_file:
        try:
            with open(stages_file, encoding="utf-8") as handle:
                stages = json.load(handle)
        except (OSError, ValueError):
            stages = {}
        stages["archive"] = own_time
    write_atomically(path, summary_html(images, archive, size, sha256, settings, stages, build_dir).encode())
