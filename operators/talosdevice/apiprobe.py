"""Is a device's Talos API up with this cluster's certificates? A mutual-TLS handshake with apid.

A TCP connect would also count an unrelated service on port 50000 (or Talos still in maintenance
mode with a self-signed certificate) as "installed". The handshake below succeeds only when the
machine presents a server certificate issued by the cluster's OS CA and accepts the talosconfig
client certificate signed by the same CA, which a Talos node can do only after it applied the
config it fetched from the boot service.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

# Talos writes Ed25519 PKCS#8 keys under its own PEM label; OpenSSL wants the standard one.
_TALOS_KEY_LABEL = "ED25519 PRIVATE KEY"


@dataclass(frozen=True)
class ClientCredentials:
    ca_pem: str
    cert_pem: str
    key_pem: str


def credentials_from_talosconfig(text: str) -> ClientCredentials | None:
    """The current context's CA, client certificate and key; None when the config lacks them."""
    try:
        config = yaml.safe_load(text) or {}
        context: Mapping[str, Any] = config["contexts"][config["context"]]
        decoded = [base64.b64decode(context[k]).decode() for k in ("ca", "crt", "key")]
    except (KeyError, TypeError, ValueError, yaml.YAMLError):
        return None
    ca, cert, key = decoded
    return ClientCredentials(ca, cert, key)


def client_context(creds: ClientCredentials) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=creds.ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    # ssl loads a certificate chain from files only; the files live for this call alone.
    with tempfile.TemporaryDirectory(prefix="trellis-talos-") as tmp:
        cert_path, key_path = os.path.join(tmp, "client.crt"), os.path.join(tmp, "client.key")
        key_pem = creds.key_pem.replace(_TALOS_KEY_LABEL, "PRIVATE KEY")
        for path, pem in ((cert_path, creds.cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
        context.load_cert_chain(cert_path, key_path)
    return context


def talos_api_answers(address: str, port: int, context: ssl.SSLContext, timeout: float = 2.0) -> bool:
    """True when apid at address:port completes a mutual-TLS handshake as a member of the cluster.

    The server certificate must name the address (Talos puts the node's addresses in apid's
    certificate), so a certificate copied from another machine does not pass either.
    """
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=address) as tls,
        ):
            # TLS 1.3 reports a refused client certificate only on the first read, so read once:
            # a server that kept the connection open (waiting for an HTTP/2 preface) times out.
            tls.settimeout(0.2)
            try:
                return bool(tls.recv(1))
            except TimeoutError:
                return True
    except (OSError, ssl.SSLError):
        return False
