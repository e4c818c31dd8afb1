"""Request signatures, as keyward checks them (README "Signing a request").

`hex(HMAC-SHA256(secret, timestamp + "\\n" + METHOD + "\\n" + path_and_query + "\\n" + hex(sha256(body))))`
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Dict, Optional, Union

SIGNATURE_HEADER = "X-Keyward-Signature"
TIMESTAMP_HEADER = "X-Keyward-Timestamp"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

Body = Union[bytes, str, None]


def body_sha256(body: Body) -> str:
    """Lowercase hex SHA-256 of the body (a `str` is hashed as UTF-8)."""
    if body is None:
        return EMPTY_BODY_SHA256
    data = body.encode() if isinstance(body, str) else body
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Signature:
    timestamp: str
    signature: str

    def headers(self, signature_header: str = SIGNATURE_HEADER, timestamp_header: str = TIMESTAMP_HEADER) -> Dict[str, str]:
        """The headers a client sends (names as configured on the server)."""
        return {timestamp_header: self.timestamp, signature_header: self.signature}


def sign(
    secret: str,
    method: str,
    path_and_query: str,
    body: Body = None,
    timestamp: Optional[Union[int, str]] = None,
) -> Signature:
    """Signs a request. `path_and_query` is the target exactly as sent; `timestamp` defaults to now."""
    ts = str(int(time.time())) if timestamp is None else str(timestamp)
    message = f"{ts}\n{method.upper()}\n{path_and_query}\n{body_sha256(body)}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return Signature(ts, digest)
