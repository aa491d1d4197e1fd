"""Where each tracked output lives under `build_dir`; the rules and the assembler agree here."""

from __future__ import annotations

import os


def layer(build_dir: str, diff_hex: str) -> str:
    return os.path.join(build_dir, "layers", diff_hex + ".tar")


def config(build_dir: str, image_hex: str) -> str:
    return os.path.join(build_dir, "configs", image_hex + ".json")


def v1_json(build_dir: str, v1_id: str) -> str:
    return os.path.join(build_dir, "docker", v1_id, "json")


def v1_version(build_dir: str, v1_id: str) -> str:
    return os.path.join(build_dir, "docker", v1_id, "VERSION")


def manifest(build_dir: str) -> str:
    return os.path.join(build_dir, "docker", "manifest.json")


def repositories(build_dir: str) -> str:
    return os.path.join(build_dir, "docker", "repositories")
