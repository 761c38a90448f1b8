"""Container health check for the web service: GET /healthz from the local web server.

Docker runs this inside the container (Dockerfile HEALTHCHECK, docker-compose.yml). The request
is made the way the proxy makes it, so production settings accept it as is: the Host header is
a name from ALLOWED_HOSTS, and ``X-Forwarded-Proto: https`` keeps the HTTPS redirect away. A
redirect or any status other than 200 counts as unhealthy. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PORT = 8000
TIMEOUT_SECONDS = 4


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def allowed_host() -> str:
    """The first concrete name in ALLOWED_HOSTS (``.example.com`` stands for example.com)."""
    for entry in os.environ.get("ALLOWED_HOSTS", "").split(","):
        name = entry.strip().lstrip(".")
        if name and name != "*":
            return name
    return "localhost"


def main() -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/healthz",
        headers={"Host": allowed_host(), "X-Forwarded-Proto": "https"},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
