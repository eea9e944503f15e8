"""An HTTP proxy in front of the real S3 server that injects faults on chosen requests.

SeaweedFS cannot be told to answer 503 SlowDown or drop a connection on demand; this proxy
forwards every request unchanged (Host header included, so SigV4 signatures stay valid) and
replaces chosen responses with a fault. Everything else is the real server's answer.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOWDOWN = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
ACCESS_DENIED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)


class FaultProxy:
    """``faults`` is consumed in order: each entry is None (forward) or "503" / "drop".

    Once ``faults`` is empty, ``rule(method, path, headers)`` (when set) decides per request:
    None (forward), "503", "drop", "403" (AccessDenied), or a number of seconds to hold the
    request. Held requests go one at a time, so N held requests take N times the delay: a bounded
    way to make a copy slow enough to kill its client in the middle of it. After the hold the rule
    is asked again (a number then means forward), so held requests of a killed client can be dropped
    instead of reaching the server long after it died.
    """

    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.faults: list[str | None] = []
        self.rule = None
        self.seen: list[str] = []
        self.injected = 0
        self.delayed = 0
        self.holding = 0  # requests waiting in or for the slow lane right now
        self.lock = threading.Lock()
        self.slow_lane = threading.Lock()
        proxy = self

        def respond_error(handler, status: int, body: bytes) -> None:
            proxy.injected += 1
            handler.send_response(status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    fault = proxy.faults.pop(0) if proxy.faults else None
                    proxy.seen.append(f"{self.command} {self.path}")

                def decide():
                    rule = proxy.rule
                    return rule(self.command, self.path, self.headers) if rule is not None else None

                if fault is None:
                    fault = decide()
                if isinstance(fault, int | float) and not isinstance(fault, bool):
                    with proxy.lock:
                        proxy.holding += 1
                    with proxy.slow_lane:
                        proxy.delayed += 1
                        time.sleep(fault)
                    with proxy.lock:
                        proxy.holding -= 1
                    # Decided again after the hold: a held request can still be dropped (its client
                    # may be gone by now); a second delay means "forward".
                    fault = decide()
                    if isinstance(fault, int | float):
                        fault = None
                if fault == "503":
                    respond_error(self, 503, SLOWDOWN)
                    return
                if fault == "403":
                    respond_error(self, 403, ACCESS_DENIED)
                    return
                if fault == "drop":
                    proxy.injected += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # A HEAD answer has no body but announces the object's size: keep the server's length.
                length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
