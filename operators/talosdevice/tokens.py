"""Per-device config tokens.

A token is an HMAC over the device's identity (namespace, name, UID, MAC and an optional rotation
value) keyed by a key derived from the cluster's secretbox secret. The secretbox secret only ever
reaches control-plane configs, so a worker cannot compute another device's token, and nothing has
to be stored per device: recreating the device (new UID), setting the rotation annotation, or
regenerating the secrets bundle invalidates old tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ROTATION_ANNOTATION = "talos.trellis.dev/token-rotation"
_CONTEXT = b"trellis talos config token v1"


def token_key(secretbox_secret: str) -> bytes:
    return hmac.new(secretbox_secret.encode(), _CONTEXT, hashlib.sha256).digest()


def device_token(key: bytes, namespace: str, name: str, uid: str, mac: str, rotation: str = "") -> str:
    message = "\0".join((namespace, name, uid, mac.lower(), rotation)).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def token_matches(expected: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
