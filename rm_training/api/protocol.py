"""Connection timeouts uvicorn does not set itself: its HTTP protocol (httptools) with an idle
timeout before the first request as well as between requests, and a request-line-and-headers
timeout (408, then close) against clients that open connections and trickle bytes (slowloris).
The body timeout is the Guard's, in app.py. `helpsteer serve` passes `http_protocol(settings)`."""

from __future__ import annotations

import asyncio
import logging

from .settings import Settings

log = logging.getLogger(__name__)


def http_protocol(settings: Settings) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with `settings.timeout_header` (seconds from a request's first
    byte to the end of its headers) and the keep-alive timeout armed on a fresh connection too."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn[standard] brings httptools; without it only the keep-alive timeout holds
        log.warning("httptools is not installed: the header timeout is not enforced (pip install 'uvicorn[standard]')")
        return "h11"

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        timeout_header = settings.timeout_header

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_task: asyncio.TimerHandle | None = None
            # uvicorn arms its keep-alive timer only after a response: a connection that never
            # sends a byte would stay open for good
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._cancel_header_timer()
            self._header_task = self.loop.call_later(self.timeout_header, self._header_timeout)

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _cancel_header_timer(self) -> None:
            if getattr(self, "_header_task", None) is not None:
                self._header_task.cancel()
                self._header_task = None

        def _header_timeout(self) -> None:
            self._header_task = None
            if self.transport.is_closing():
                return
            msg = f"the request line and headers were not received within {self.timeout_header:g} s".encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: " + str(len(msg)).encode() + b"\r\nconnection: close\r\n\r\n" + msg)
            self.transport.close()

    return TimedHttpToolsProtocol
