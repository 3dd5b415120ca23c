"""Security headers on every response: API answers, downloads, event streams and the dashboard.

- `Content-Security-Policy`: the dashboard may load only its own script and stylesheet and
  talk only to this origin (no inline code, no CDN, no plugins, no framing); every other
  response gets `default-src 'none'`, so a downloaded HTML or SVG file opened in a browser
  cannot run anything.
- `X-Content-Type-Options: nosniff`: a download is never re-read as HTML or script.
- `frame-ancestors 'none'` plus `X-Frame-Options: DENY`: no page of this server inside a frame.
- `Referrer-Policy: no-referrer`; `Cross-Origin-Opener-Policy` and `-Resource-Policy`:
  same-origin.
- `Cache-Control: no-store` on API answers that do not set their own: they carry a project's
  data and were fetched with a key.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        dashboard = path == "/ui" or path.startswith("/ui/")
        csp = (DASHBOARD_CSP if dashboard else API_CSP).encode()
        api = path.startswith("/v1/")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                added = [(k, v) for k, v in _COMMON if k not in present]
                if b"content-security-policy" not in present:
                    added.append((b"content-security-policy", csp))
                if api and b"cache-control" not in present:
                    added.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + added}
            await send(message)

        await self.app(scope, receive, send_wrapper)
