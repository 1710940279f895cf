"""Fixtures for the prged suite: the real daemon binary, the real reference model, a temporary
socket and state directory per test. Readiness is awaited the way systemd does it: through a
NOTIFY_SOCKET datagram carrying READY=1 (so every test also checks sd_notify)."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRGED = Path(os.environ.get("PRGED", ROOT / "build/bin/prged"))
MODEL = Path(os.environ.get("PRGE_MODEL", ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))

# A tiny classification task and budget: q = 1, batch = 1 keeps a step cheap on 2 cores.
TASK = {"template": "{sentence} It was", "labels": [" terrible", " great"],
        "text_fields": ["sentence"], "label_field": "label"}
TRAINER = {"task": TASK, "q": 1, "batch": 1, "eval_every": 0, "seed": 1}
LABELS = [" terrible", " great"]


def example(i):
    good = i % 2
    word = "wonderful" if good else "awful"
    return {"sentence": f"review {i}: a {word} film", "label": good}


def base_config(tmp, **over):
    cfg = {
        "socket": str(tmp / "prged.sock"),
        "state_dir": str(tmp / "state"),
        "model": str(MODEL),
        "threads": 2,
        "trainer": TRAINER,
        "training": {"refresh_every_s": 0.3, "checkpoint_every_s": 0.5},
        "limits": {"max_request_bytes": 65536, "max_clients": 64, "max_generate_tokens": 16},
        "log_level": "info",
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


class RPCError(Exception):
    def __init__(self, reply):
        self.code = reply["error"]["code"]
        self.message = reply["error"]["message"]
        super().__init__(f"{self.code}: {self.message}")


class Client:
    """One connection; call() sends a request and returns its result or raises RPCError."""

    def __init__(self, path, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = 0

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def read_reply(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, method, params=None):
        self.next_id += 1
        req = {"id": self.next_id, "method": method}
        if params is not None:
            req["params"] = params
        self.send_raw(json.dumps(req).encode() + b"\n")
        reply = self.read_reply()
        assert reply["id"] == self.next_id, reply
        return reply

    def call(self, method, params=None):
        reply = self.request(method, params)
        if "error" in reply:
            raise RPCError(reply)
        return reply["result"]

    def close(self):
        self.sock.close()


class Daemon:
    """The real prged on a temporary socket; start() returns once it sent READY=1."""

    def __init__(self, tmp: Path, config: dict):
        self.tmp = tmp
        self.config = config
        self.config_path = tmp / "prged.json"
        self.write_config()
        self.proc = None
        self.log_path = tmp / "prged.log"
        self.starts = 0

    def write_config(self):
        self.config_path.write_text(json.dumps(self.config))

    @property
    def socket_path(self):
        return Path(self.config["socket"])

    @property
    def profile_dir(self):
        return Path(self.config["state_dir"]) / "profiles"

    def start(self, timeout=60):
        notify_path = str(self.tmp / "notify.sock")
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(timeout)
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(PRGED), str(self.config_path)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.starts += 1
        try:
            deadline = time.monotonic() + timeout
            while True:
                notify.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    msg = notify.recv(4096).decode()
                except socket.timeout:
                    raise AssertionError(f"prged sent no READY=1 in {timeout} s:\n{self.log_text()}")
                if "READY=1" in msg.split("\n"):
                    return self
        finally:
            notify.close()

    def client(self, **kw):
        return Client(self.socket_path, **kw)

    def call(self, method, params=None):
        c = self.client()
        try:
            return c.call(method, params)
        finally:
            c.close()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def terminate(self, sig=signal.SIGTERM, timeout=60):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.log.close()
        return rc

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()


@pytest.fixture
def tmp():
    # Short and under /tmp: a Unix socket path must fit in 108 bytes.
    d = Path(tempfile.mkdtemp(prefix="prged-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_daemon(tmp):
    daemons = []

    def make(**over):
        d = Daemon(tmp, base_config(tmp, **over))
        daemons.append(d)
        return d

    yield make
    for d in daemons:
        d.stop()


@pytest.fixture
def daemon(make_daemon):
    return make_daemon().start()


def read_journal(path: Path):
    """Parses a profile journal independently of prged (format in Sources/prged/journal.h):
    returns [(split, [example, ...])] of the valid records and the byte offset where they end."""
    data = path.read_bytes()
    assert data[:8] == b"PRGEJRN1", "journal magic"
    off, records = 8, []
    while off + 8 <= len(data):
        length, crc = struct.unpack_from("<II", data, off)
        payload = data[off + 8: off + 8 + length]
        if length < 2 or len(payload) < length or zlib.crc32(payload) != crc:
            break
        lines = payload[1:].decode().splitlines()
        records.append((payload[0], [json.loads(l) for l in lines]))
        off += 8 + length
    return records, off


def pytest_configure(config):
    if not PRGED.exists():
        raise pytest.UsageError(f"{PRGED} is missing: run `make prged` (or `make`) first")
    if not MODEL.exists():
        raise pytest.UsageError(f"{MODEL} is missing: run `make setup` first")
