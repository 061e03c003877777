"""ZeroMQ CURVE for the PUB socket: encryption, and optionally authentication of subscribers.

Keys are ZeroMQ certificate files as written by pyzmq (`name.key` public, `name.key_secret` both):

    python -c "import zmq.auth; zmq.auth.create_certificates('keys', 'server'); \
               zmq.auth.create_certificates('keys', 'client')"

Publisher: [publish] curve_secret_key = "keys/server.key_secret"; with curve_clients = "DIR" only
subscribers whose public `*.key` file is in DIR get anything (ZAP authentication), without it any
subscriber that knows the server's public key may connect (encrypted, not authenticated). A
subscriber without CURVE, or with the wrong server key, never completes the handshake and
receives nothing.
"""
from __future__ import annotations

from pathlib import Path

import zmq

from stream.core.errors import ConfigError


def load_keys(path: str, what: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) z85 keys from a certificate file; ConfigError naming `what` if unusable."""
    import zmq.auth

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {path!r}: no such key file")
    try:
        public, secret_key = zmq.auth.load_certificate(file)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path!r}: not a ZeroMQ certificate ({exc})") from None
    if not public or len(public) != 40:
        raise ConfigError(f"{what} {path!r}: not a ZeroMQ certificate (no 40-character public-key)")
    if secret and (not secret_key or len(secret_key) != 40):
        raise ConfigError(f"{what} {path!r}: has no secret-key (use the .key_secret file, not the public .key)")
    return public, secret_key


def secure_server(socket: zmq.Socket, ctx: zmq.Context, *, secret_key_file: str, clients_dir: str):
    """Make `socket` a CURVE server before it binds; returns the authenticator to stop at close (or None)."""
    if not zmq.has("curve"):
        raise ConfigError("[publish] curve_secret_key: this libzmq was built without CURVE support")
    public, secret = load_keys(secret_key_file, "[publish] curve_secret_key", secret=True)
    authenticator = None
    if clients_dir:
        directory = Path(clients_dir)
        if not directory.is_dir() or not any(directory.glob("*.key")):
            raise ConfigError(f"[publish] curve_clients {clients_dir!r}: needs a directory of client public "
                              f"*.key files")
        from zmq.auth.thread import ThreadAuthenticator

        authenticator = ThreadAuthenticator(ctx)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(directory))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return authenticator


def client_curve(server_key_file: str, client_key_file: str | None) -> dict:
    """The `curve` argument of stream.clients.client.Subscriber: the server's public key and this client's key pair
    (a fresh throwaway pair when no file is given: enough when the publisher does not list clients)."""
    server_public, _ = load_keys(server_key_file, "--curve-server-key", secret=False)
    if client_key_file:
        public, secret = load_keys(client_key_file, "--curve-client-key", secret=True)
    else:
        public, secret = zmq.curve_keypair()
    return {"public": public, "secret": secret, "server": server_public}
