"""Starts the real `keyward` binary on an ephemeral port with a fresh SQLite file."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from keyward import Keyward

ROOT = Path(__file__).resolve().parents[3]


def keyward_bin() -> str:
    if os.environ.get("KEYWARD_BIN"):
        return os.environ["KEYWARD_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "keyward")


class Server:
    def __init__(self, tmp: Path) -> None:
        self.token = "kwop_" + secrets.token_hex(16)
        env = {**os.environ, "KEYWARD_OPERATOR_TOKEN": self.token, "KEYWARD_LOG_FORMAT": "json"}
        self.log = open(tmp / "server.log", "w+")
        self.process = subprocess.Popen(
            [keyward_bin(), "--database", f"sqlite://{tmp}/keyward.db", "serve", "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log,
        )
        self.url = ""
        deadline = time.monotonic() + 60
        while not self.url:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError("keyward did not start:\n" + self.log.read())
            self.log.seek(0)
            for line in self.log:
                if "keyward is serving" in line:
                    self.url = "http://" + json.loads(line)["fields"]["address"]
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("keyward"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def kw(server: Server) -> Iterator[Keyward]:
    # Generous: a debug build loads its phone-number metadata on first use, on a shared machine.
    with Keyward(server.url, token=server.token, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def org(kw: Keyward) -> str:
    org = kw.create_org("Acme")["id"]
    kw.add_phone_number(org, "+1 415 555 0100")
    kw.add_phone_number(org, "+14155550101")
    kw.add_channel(org, "marketing", "Marketing")
    kw.add_channel(org, "alerts", "Alerts")
    return org
