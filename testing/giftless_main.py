"""Serve giftless on 127.0.0.1 with waitress. Runs under the giftless virtualenv's Python
(scripts/install-lfs-server.sh), so it imports nothing from git-theta.

    python giftless_main.py --storage DIR [--port 0] [--user U --password P]

Prints `LISTENING <port>` once the socket is bound. With --user/--password the batch endpoint
asks for HTTP basic credentials (401 with LFS-Authenticate otherwise), as a hosted server does;
the upload/download/verify actions carry giftless's own signed tokens.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
from collections.abc import Callable, Iterable
from typing import Any

# waitress refuses bodies above 1 GiB by default; a 1 GiB checkpoint stored whole by Git LFS
# is just below that, and the benchmark may be run larger.
MAX_BODY_BYTES = 64 << 30


class FileChunks:
    """WSGI middleware: send a file-like response in 1 MiB reads.

    giftless answers downloads with an open file as the response iterable; iterated as-is it
    yields *lines*, which for binary data means thousands of tiny writes per MiB. uWSGI
    serves such responses through its file wrapper; this does the same for waitress.
    """

    CHUNK = 1 << 20

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        result = self.app(environ, start_response)
        if hasattr(result, "read"):
            wrapper = environ.get("wsgi.file_wrapper")
            if wrapper is not None:
                return wrapper(result, self.CHUNK)
        return result


class BasicAuth:
    """WSGI middleware: the batch endpoint needs `user:password`."""

    def __init__(self, app: Callable[..., Any], user: str, password: str) -> None:
        self.app = app
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.expected = f"Basic {token}"

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").endswith("/objects/batch"):
            if environ.get("HTTP_AUTHORIZATION") != self.expected:
                body = b'{"message": "Credentials needed"}'
                start_response(
                    "401 Unauthorized",
                    [
                        ("Content-Type", "application/vnd.git-lfs+json"),
                        ("LFS-Authenticate", 'Basic realm="Git LFS"'),
                        ("WWW-Authenticate", 'Basic realm="Git LFS"'),
                        ("Content-Length", str(len(body))),
                    ],
                )
                return [body]
        return self.app(environ, start_response)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    from giftless.app import init_app
    from waitress import create_server

    config = {
        "AUTH_PROVIDERS": ["giftless.auth.allow_anon:read_write"],
        "LEGACY_ENDPOINTS": False,
        "TRANSFER_ADAPTERS": {
            "basic": {
                "factory": "giftless.transfer.basic_streaming:factory",
                "options": {
                    "storage_class": "giftless.storage.local_storage:LocalStorage",
                    "storage_options": {"path": args.storage},
                },
            }
        },
        "PRE_AUTHORIZED_ACTION_PROVIDER": {
            "factory": "giftless.auth.jwt:factory",
            "options": {"algorithm": "HS256", "private_key": secrets.token_hex(16)},
        },
    }
    app: Callable[..., Any] = FileChunks(init_app(additional_config=config))
    if args.user is not None:
        app = BasicAuth(app, args.user, args.password or "")
    server = create_server(
        app,
        host="127.0.0.1",
        port=args.port,
        threads=args.threads,
        max_request_body_size=MAX_BODY_BYTES,
        ident="giftless",
    )
    print(f"LISTENING {server.effective_port}", flush=True)  # type: ignore[union-attr]
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
