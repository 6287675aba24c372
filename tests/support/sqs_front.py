"""An HTTP server in front of moto's SQS that answers chosen requests with an error exactly as SQS's JSON protocol
does (status, `__type`, `x-amzn-query-error`), and forwards every other request to moto unchanged: the way to see the
errors moto cannot produce (throttling, outages, AWS's answer to an expired receipt handle) through real boto3."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultySqsFront:
    """Answers the first `failures` requests for `operation` (an X-Amz-Target such as
    "AmazonSQS.ChangeMessageVisibility"; None: any) with `status` and an SQS error of type `code` carrying
    `message`, then forwards every request to moto unchanged. Counts the requests it saw and the ones it failed.

    With `short_polls_answer_empty`, every ReceiveMessage with WaitTimeSeconds 0 is answered empty, as SQS's short
    polling may answer when the servers it samples hold none of the queue's messages (AWS, "Amazon SQS short and
    long polling"); long polls, which query every server, go through."""

    def __init__(
        self,
        backend: str,
        *,
        failures: int,
        status: int,
        code: str,
        operation: str | None = None,
        message: str = "injected",
        fault: str = "Receiver",
        short_polls_answer_empty: bool = False,
    ):
        self.requests = 0
        self.failed = 0
        self.short_polls = 0
        front = self
        target = urlsplit(backend)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                front.requests += 1
                target_name = self.headers.get("X-Amz-Target")
                short_poll = (
                    target_name == "AmazonSQS.ReceiveMessage"
                    and json.loads(body or b"{}").get("WaitTimeSeconds", 0) == 0
                )
                if short_polls_answer_empty and short_poll:
                    front.short_polls += 1
                    empty = b"{}"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("Content-Length", str(len(empty)))
                    self.end_headers()
                    self.wfile.write(empty)
                    return
                chosen = operation is None or target_name == operation
                if chosen and front.failed < failures:
                    front.failed += 1
                    payload = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("x-amzn-query-error", f"{code};{fault}")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in {"content-length", "connection", "transfer-encoding", "server", "date"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultySqsFront:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
