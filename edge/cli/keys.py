"""``spike-edge keys generate DIR``: CURVE certificates for a daemon and its clients, in ZeroMQ's format.

Layout written (``zmq.auth.create_certificates`` makes each pair; ``NAME.key`` is public,
``NAME.key_secret`` holds the public and the secret key):

- ``DIR/server.key_secret`` (mode 600): the daemon's ``--curve-secret``;
- ``DIR/server.key``: the daemon's public certificate, every client's ``--curve-server``;
- ``DIR/NAME.key_secret`` (mode 600) for each ``--client NAME`` (default ``client``): that
  client's ``--curve-key``;
- ``DIR/clients/NAME.key``: that client's public certificate, in the folder the daemon takes as
  ``--curve-clients`` (the allow-list; no secret is ever written there).

A new ``DIR`` is created with mode 700. An existing server certificate is kept (so running the
command again with another ``--client`` adds a client to the same daemon); an existing client
certificate is an error. ``--force`` replaces both. Every file is generated in a private temporary
folder inside ``DIR`` and moved into place by ``firmware_io.atomic`` (a secret file is mode 600
before it holds anything).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import click
import zmq.auth

from edge.protocol.security import PUBLIC_SUFFIX, SECRET_SUFFIX
from firmware_io.atomic import atomic_path
from firmware_io.exits import ExitCode, fail

SERVER_NAME = "server"
CLIENTS_FOLDER = "clients"
DEFAULT_CLIENT = "client"
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _client_name(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for name in values:
        if not _NAME.fullmatch(name) or name == SERVER_NAME:
            raise click.BadParameter(f"{name!r} is not a usable client name (letters, digits, '.', '_', '-'; "
                                     f"up to 64; not {SERVER_NAME!r})", ctx, param)
    if len(set(values)) != len(values):
        raise click.BadParameter(f"a client name is given twice: {list(values)}", ctx, param)
    return values or (DEFAULT_CLIENT,)


def _install(source: Path, target: Path, mode: int) -> None:
    """Copy ``source`` to ``target`` atomically, the temporary file set to ``mode`` before it is written."""
    with atomic_path(target) as tmp:
        os.chmod(tmp, mode)
        tmp.write_bytes(source.read_bytes())


@click.group("keys")
def keys() -> None:
    """CURVE certificates for `spike-edge run --curve-secret/--curve-clients` and its clients."""


@keys.command("generate")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--client", "clients", multiple=True, callback=_client_name, metavar="NAME",
              help=f"Name of a client certificate to create (repeatable)  [default: {DEFAULT_CLIENT}]")
@click.option("--force", is_flag=True, help="Replace existing certificates (the server's included).")
def generate(directory: Path, clients: tuple[str, ...], force: bool) -> None:
    """Write the daemon's and the clients' CURVE certificates into DIR (see `docs/deploy.md`, Keys)."""
    server_secret = directory / f"{SERVER_NAME}{SECRET_SUFFIX}"
    new_server = force or not server_secret.exists()
    targets = [directory / f"{name}{SECRET_SUFFIX}" for name in clients]
    targets += [directory / CLIENTS_FOLDER / f"{name}{PUBLIC_SUFFIX}" for name in clients]
    if not force:
        existing = [str(path) for path in targets if path.exists()]
        if existing:
            fail(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; choose another --client "
                 "name, or --force to replace them")
        if not new_server and not (directory / f"{SERVER_NAME}{PUBLIC_SUFFIX}").is_file():
            fail(f"{server_secret} exists but {SERVER_NAME}{PUBLIC_SUFFIX} beside it does not; --force to "
                 "replace the server certificate")
    pairs = [(SERVER_NAME, directory)] if new_server else []  # (name, folder of its public certificate)
    pairs += [(name, directory / CLIENTS_FOLDER) for name in clients]
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / CLIENTS_FOLDER).mkdir(mode=0o755, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".keys-") as tmp:  # mode 700
            for name, public_dir in pairs:
                public, secret = zmq.auth.create_certificates(tmp, name)
                _install(Path(secret), directory / f"{name}{SECRET_SUFFIX}", SECRET_MODE)
                _install(Path(public), public_dir / f"{name}{PUBLIC_SUFFIX}", PUBLIC_MODE)
    except OSError as exc:
        fail(f"cannot write the certificates into {directory}: {exc}", ExitCode.BAD_INPUT)
    click.echo(f"{'wrote' if new_server else 'kept'} the daemon's certificate in {directory}")
    click.echo(f"  daemon:  spike-edge run ... --curve-secret {server_secret} "
               f"--curve-clients {directory / CLIENTS_FOLDER}")
    for name in clients:
        click.echo(f"  {name}:  spike-host CMD URL --curve-key {directory / (name + SECRET_SUFFIX)} "
                   f"--curve-server {directory / (SERVER_NAME + PUBLIC_SUFFIX)}")
