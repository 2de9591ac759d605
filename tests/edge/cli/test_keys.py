"""``spike-edge keys generate DIR`` through real subprocesses: ZeroMQ certificates, private secret files,
an allow-list folder without secrets, adding clients, refusing to overwrite."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import zmq.auth

from edge.live.security import ClientAllowList, ServerKey
from edge.protocol.security import CurveClient

CLI = [sys.executable, "-m", "edge", "keys", "generate"]


def generate(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, str(folder), *args], capture_output=True, text=True, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_certificates_with_private_secrets(tmp_path):
    keys = tmp_path / "keys"
    r = generate(keys, "--client", "alice", "--client", "bob")
    assert r.returncode == 0, r.stderr
    assert f"--curve-secret {keys / 'server.key_secret'} --curve-clients {keys / 'clients'}" in r.stdout
    assert f"--curve-key {keys / 'alice.key_secret'} --curve-server {keys / 'server.key'}" in r.stdout
    assert sorted(p.name for p in keys.iterdir()) == ["alice.key_secret", "bob.key_secret", "clients", "server.key",
                                                      "server.key_secret"], "no temporary files left behind"
    assert sorted(p.name for p in (keys / "clients").iterdir()) == ["alice.key", "bob.key"]
    assert mode(keys) == 0o700
    for secret in ("server.key_secret", "alice.key_secret", "bob.key_secret"):
        assert mode(keys / secret) == 0o600, secret
        public, secret_key = zmq.auth.load_certificate(keys / secret)
        assert len(public) == len(secret_key) == 40
    for public in (keys / "server.key", keys / "clients" / "alice.key", keys / "clients" / "bob.key"):
        assert mode(public) == 0o644 and zmq.auth.load_certificate(public)[1] is None, public
    server = ServerKey.load(keys / "server.key_secret")
    alice = CurveClient.load(keys / "alice.key_secret", keys / "server.key")
    assert alice.server_key == server.public_key
    assert alice.public_key in ClientAllowList.load(keys / "clients").keys
    assert alice.public_key != CurveClient.load(keys / "bob.key_secret", keys / "server.key").public_key


def test_generate_adds_clients_keeps_the_server_and_refuses_to_overwrite(tmp_path):
    keys = tmp_path / "keys"
    assert generate(keys).returncode == 0  # default client name: client
    server = (keys / "server.key_secret").read_bytes()
    r = generate(keys, "--client", "laptop")
    assert r.returncode == 0 and "kept the daemon's certificate" in r.stdout, r.stderr
    assert (keys / "server.key_secret").read_bytes() == server
    assert (keys / "clients" / "client.key").is_file() and (keys / "clients" / "laptop.key").is_file()

    client = (keys / "client.key_secret").read_bytes()
    r = generate(keys)
    assert r.returncode == 2 and "client.key_secret" in r.stderr and "--force" in r.stderr
    assert (keys / "client.key_secret").read_bytes() == client, "a refused run changes nothing"
    r = generate(keys, "--force")
    assert r.returncode == 0, r.stderr
    assert (keys / "client.key_secret").read_bytes() != client and (keys / "server.key_secret").read_bytes() != server

    for bad in ("../x", "server", ""):
        r = generate(keys, "--client", bad)
        assert r.returncode == 2 and "not a usable client name" in r.stderr, (bad, r.stderr)
