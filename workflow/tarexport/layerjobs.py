"""The layer jobs' side of the plan (rules layer_tar and layer_blob): each job's recipe, its
command, and what it counts against (downloads, big layers, priority).

Uncompressed layers are stored by diff_id, layers kept as the source holds them (`layers:
keep`) by blob digest; both are content-addressed, so their recipes hold only what the job
must produce, and where it reads from is passed untracked.
"""

from __future__ import annotations

import shlex

from .exportcontext import ExportContext, Untracked
from .layerfiles import WHOLE_HASH_LIMIT, record_path
from .linklayer import checked_blob_path
from .recipes import LayerRecipe, LayerSource
from .sources.base import LayerRef
from .sources.blobs import SourceKind

# Above this, a layer job is limited to one per CPU. Measured on 2 cores with 16 job slots:
# 2 GB of 1-900 MB layers took 7.3 s with all running at once, 6.0 s two at a time; 1003
# layers of 512 KB took 20 s with 16 at once, 26.5 s two at a time. (At 4 MiB, the CI
# benchmark's 1.8 MB layers ran beside its 200 MB ones and its bytes cost more.)
BIG_LAYER = 1 << 20


class StoredLayers:
    """One family of layer jobs, by the hex digest that names each output: layers stored
    uncompressed by diff_id (rule layer_tar), or blobs kept as the source holds them by
    their own digest (rule layer_blob). Both read a blob, check it and store it."""

    def __init__(self, context: ExportContext, by_hex: dict[str, LayerRef]):
        self.context = context
        self.by_hex = by_hex

    def recipe(self, key: str) -> str:
        """What the job must produce (tracked): its output is named by digest anyway."""
        return LayerRecipe(self.by_hex[key].diff_id).to_text()

    def source(self, key: str) -> Untracked:
        """Where and how the job reads its blob (untracked: the bytes are verified)."""
        blob = self.by_hex[key].blob
        settings = self.context.settings
        return Untracked(
            LayerSource(
                blob,
                self.context.label(blob),
                settings.max_layer_expansion,
                settings.max_layer_mib << 20,
                settings.keep_free_mib << 20,
                settings.link_layers,
            ).to_text()
        )

    def storage_sources(self, key: str) -> list[str]:
        """The storage URL of the source the job reads, when it was given as one (else none):
        Snakemake stages it for the job, which may run where the plan's copy is not."""
        url = self.context.storage_url(self.by_hex[key].blob)
        return [url] if url else []

    def users(self, key: str) -> Untracked:
        """The images the layer serves, for messages."""
        return Untracked(self.context.plan.layer_users.get(self.by_hex[key].diff_id, "attestations"))

    def downloads(self, key: str) -> int:
        """1 for a job that downloads (counted against `parallel_downloads`), else 0."""
        return int(SourceKind(self.by_hex[key].blob.source_kind).downloads)

    def is_big(self, key: str) -> int:
        """1 for a layer job over BIG_LAYER bytes (counted against `big_layers`, the machine's
        CPUs), else 0: the profile gives more job slots than cores, which small jobs need
        (they mostly wait) and big ones do not (they contend for CPU and the disk)."""
        return int(self.by_hex[key].blob.size > BIG_LAYER)

    def priority(self, key: str) -> int:
        """Largest blobs first: on few cores, a big layer started last would run alone at the end.
        In MiB: small numbers keep the ILP scheduler's objective well scaled."""
        return max(self.by_hex[key].blob.size, 0) >> 20

    def command(self, key: str, output: str, log: str) -> Untracked:
        """An uncompressed layer job's whole command, made when Snakemake is about to start it.

        An uncompressed blob of an OCI layout directory is its own layer: nothing to inflate,
        only to link (or copy) and check. At 1000 layers a job's start is most of its cost;
        measured by hand per 512 KB layer: `tarexport layer` (which can inflate anything)
        about 33 ms, the lean Python `tarexport_link` 16-28 ms, the shell's `tarexport_small`
        (bash, ln, sha256sum) 8 ms. So a small blob that passes checked_blob_path (here, in
        Snakemake's process) goes to the shell; larger ones hash faster in Python (OpenSSL's
        1.3 GB/s against coreutils' 200-350 MB/s), and anything odd goes to Python, which
        names what is wrong. Messages go to the log; a download's progress lines also to the
        terminal (through tee: another process, so only there)."""
        return Untracked(lambda: self._command(key, output, log))

    def _command(self, key: str, output: str, log: str) -> str:
        layer = self.by_hex[key]
        blob = layer.blob
        label, images = self.context.label(blob), self.context.plan.layer_users[layer.diff_id]
        if blob.source_kind == SourceKind.OCI_LAYOUT and blob.digest == layer.diff_id and blob.size >= 0:
            link = "1" if self.context.settings.link_layers else "0"
            words = ["tarexport_link", blob.source_path, blob.member, str(blob.size), blob.digest, link, label]
            command = _shell_words(*words, images, output)
            path = blob.size <= WHOLE_HASH_LIMIT and checked_blob_path(blob.source_path, blob.member, blob.size)
            if path:
                small = ["tarexport_small", path, key, str(blob.size), link, output, record_path(output)]
                command = f"{_shell_words(*small)} {command}"  # the Python job: its fallback
        else:
            recipe, source = self.recipe(key), str(self.source(key))
            words = ["--recipe", recipe, "--source", source, "--context", images, "--output", output]
            command = "tarexport layer " + _shell_words(*words)
        if SourceKind(blob.source_kind).downloads:
            return f"{command} 2> >(tee {shlex.quote(log)} >&2)"
        return f"{command} 2> {shlex.quote(log)}"


def _shell_words(*words: str) -> str:
    return " ".join(shlex.quote(word) for word in words)
