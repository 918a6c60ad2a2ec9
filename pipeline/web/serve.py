"""Run the web app with uvicorn: loopback by default; elsewhere only with a warning unless TLS is on."""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from reid_models.common import UserError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, tls: bool) -> str | None:
    """The warning printed when the app is reachable beyond this machine without TLS, else None."""
    if tls or is_loopback(host):
        return None
    return (f"warning: serving on {host} without TLS: passwords, session cookies and people's images cross "
            "the network in clear text, readable by anyone on it; pass --tls-cert CERT.pem --tls-key KEY.pem "
            "or keep the default --host 127.0.0.1 behind an HTTPS reverse proxy")


def check_tls(cert: str | None, key: str | None) -> bool:
    if (cert is None) != (key is None):
        raise UserError("--tls-cert and --tls-key go together: pass both files or neither")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{flag} file not found: {path}")
    return cert is not None


def serve(db: str | Path, host: str = "127.0.0.1", port: int = 8000, tls_cert: str | None = None,
          tls_key: str | None = None, device: str = "auto") -> None:
    """Open the store (StoreError in one line if it cannot be) and serve until Ctrl-C."""
    tls = check_tls(tls_cert, tls_key)
    from pipeline.access import users
    from pipeline.store import is_url

    from .app import create_app

    shown = db
    if is_url(db):
        from pipeline.store.postgres import redact

        shown = redact(str(db))
    has_users = bool(users.list_users(db))  # also migrates a store of an older schema to the access tables
    app = create_app(db, tls=tls, device=device)
    if not has_users:
        print(f"note: store {shown} has no users yet: add an admin with "
              f"`python -m pipeline users add NAME --db {shown} --role admin` to log in", file=sys.stderr)
    warning = exposure_warning(host, tls)
    if warning:
        print(warning, file=sys.stderr)
    import uvicorn

    scheme = "https" if tls else "http"
    print(f"serving store {shown} at {scheme}://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key, log_level="warning",
                server_header=False)
