"""Fixtures: shmkafkad with its embedded broker in a child process, and an
independent consumer (the Rust `consume-json` example over rust-rdkafka) to
read back what the broker stored.

Environment (run-tests.sh sets all three):
  SHMKAFKAD_BIN         the shmkafkad binary
  SHMKAFKA_CONSUME_BIN  the consume-json example binary
  SHMKAFKA_LIB          libshmkafka.so (read by the package itself)
"""

import itertools
import json
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT = 30.0


def _required_binary(env):
    path = os.environ.get(env)
    if not path or not Path(path).is_file():
        pytest.fail(f"{env} must name a built binary (client-lib/python/run-tests.sh sets it); got {path!r}")
    return path


@dataclass
class Daemon:
    socket: str
    bootstrap: str
    process: subprocess.Popen
    log: Path

    def log_text(self):
        return self.log.read_text(errors="replace")


def _start_daemon(tmp_path, extra_args, expect_bootstrap):
    binary = _required_binary("SHMKAFKAD_BIN")
    sock = str(tmp_path / "shmkafkad.sock")
    log = tmp_path / "shmkafkad.log"
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    process = subprocess.Popen(
        # The test's own spool: permanent failures are written there.
        [binary, "--socket", sock, "--spool-dir", str(tmp_path / "spool"),
         "--log-level", "info", *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=open(log, "wb"),
        env=env,
    )
    bootstrap = ""
    if expect_bootstrap:
        line = process.stdout.readline().decode().strip()
        prefix = "embedded-broker bootstrap="
        if not line.startswith(prefix):
            process.kill()
            pytest.fail(f"unexpected first line {line!r} from shmkafkad; log:\n{log.read_text()}")
        bootstrap = line[len(prefix):]
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"shmkafkad did not become ready; log:\n{log.read_text()}")
            time.sleep(0.05)
    return Daemon(sock, bootstrap, process, log)


def _stop(daemon):
    daemon.process.kill()
    daemon.process.wait()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """shmkafkad delivering to its embedded broker (librdkafka's mock
    cluster; topics are auto-created with 4 partitions)."""
    d = _start_daemon(tmp_path_factory.mktemp("daemon"), ["--embedded-broker"], True)
    yield d
    _stop(d)


@pytest.fixture
def small_message_daemon(tmp_path):
    """shmkafkad with its embedded broker whose producer refuses records over
    1000 bytes (librdkafka's message.max.bytes): each such record fails
    permanently with MSG_SIZE_TOO_LARGE."""
    d = _start_daemon(tmp_path, ["--embedded-broker", "-X", "message.max.bytes=1000"], True)
    yield d
    _stop(d)


@pytest.fixture
def stalled_daemon(tmp_path):
    """shmkafkad whose broker never answers: nothing is ever acknowledged,
    so rings fill and flushes time out, deterministically."""
    with socket.socket() as s:  # a port nobody listens on (closed right away)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = _start_daemon(tmp_path, ["--bootstrap-servers", f"127.0.0.1:{port}"], False)
    yield d
    _stop(d)


_counter = itertools.count()


@pytest.fixture
def topic_name(request):
    """A topic name no other test (or run) uses."""
    safe = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]
    return f"py-{safe}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


@dataclass
class Record:
    partition: int
    offset: int
    key: "bytes | None"
    value: "bytes | None"
    headers: list
    timestamp_ms: "int | None"


def _unhex(text):
    return None if text is None else bytes.fromhex(text)


@pytest.fixture
def consume(daemon):
    """consume(topic, expected, grace=1.0): every record of the topic as the
    broker stored it, read by an independent consumer, waiting for
    ``expected`` records and then ``grace`` seconds for extra ones."""

    def run(topic, expected, grace=1.0, timeout=30.0):
        binary = _required_binary("SHMKAFKA_CONSUME_BIN")
        out = subprocess.run(
            [binary, daemon.bootstrap, topic, str(expected), str(timeout), str(grace)],
            check=True,
            capture_output=True,
            timeout=timeout + grace + 30,
        )
        records = []
        for line in out.stdout.decode().splitlines():
            r = json.loads(line)
            records.append(Record(
                partition=r["partition"],
                offset=r["offset"],
                key=_unhex(r["key"]),
                value=_unhex(r["value"]),
                headers=[(name, _unhex(value)) for name, value in r["headers"]],
                timestamp_ms=r["timestamp_ms"],
            ))
        return records

    return run
