"""TLS for the farm: a throwaway CA (trustme), a certificate for 127.0.0.1 and localhost, and a
CA bundle file that clients can trust.

An SDK that hard-codes ``https://`` (an adapter's ``https_only``) runs unchanged against the
farm only over TLS. The bundle holds the system CAs (from ``SSL_CERT_FILE`` when it is set,
else certifi, else OpenSSL's default file) followed by the farm's CA, so pointing
``SSL_CERT_FILE`` at it keeps every other HTTPS connection of the client working. The bundle
file is deleted on :meth:`FarmTLS.close`.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

import trustme

__all__ = ["FarmTLS", "system_ca_file"]


def system_ca_file() -> str | None:
    """The PEM file of the CAs this machine trusts, if one can be found."""
    env = os.environ.get("SSL_CERT_FILE")
    if env and Path(env).is_file():
        return env
    try:
        import certifi
    except ImportError:
        return ssl.get_default_verify_paths().cafile
    return certifi.where()


class FarmTLS:
    """The farm's CA, its server certificate and the CA bundle file written for clients."""

    def __init__(self, hosts: Iterable[str] = ("127.0.0.1", "localhost")) -> None:
        self._ca = trustme.CA(organization_name="imagerouter mock provider farm")
        self._cert = self._ca.issue_cert(*dict.fromkeys(hosts))
        self.ca_bundle: str = self._write_bundle()

    def _write_bundle(self) -> str:
        system = system_ca_file()
        parts = []
        if system:
            with contextlib.suppress(OSError):
                parts.append(Path(system).read_bytes().rstrip(b"\n") + b"\n")
        parts.append(self._ca.cert_pem.bytes())
        handle, path = tempfile.mkstemp(prefix="mockfarm-ca-", suffix=".pem")
        with os.fdopen(handle, "wb") as file:
            file.write(b"".join(parts))
        return path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the farm's server socket."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the farm (for tests and tools in this process)."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def close(self) -> None:
        """Delete the CA bundle file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ca_bundle)
