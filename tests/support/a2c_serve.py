"""Serve acme2certifier's WSGI application over HTTPS on one address, for renewd's tests.

Written into the test's directory by tests/support/a2c.rs and run with the venv's python, with
ACME_SRV_CONFIGFILE set. acme2certifier's own WSGI module would bind 0.0.0.0:80 over plain HTTP.

    serve.py ADDRESS PORT CERT_PEM KEY_PEM ACCESS_LOG POSTS_LOG

ACCESS_LOG gets one line per request: METHOD PATH STATUS. POSTS_LOG gets one JSON line per POST:
{"path": PATH, "payload": the decoded JWS payload or null}.
"""

import base64
import io
import json
import ssl
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

ADDRESS, PORT, CERT, KEY, ACCESS_LOG, POSTS_LOG = sys.argv[1:7]

# Importing the module reads the configuration (once per process) and sets up the database.
from acme2certifier.share.acme2certifier_wsgi import application  # noqa: E402

LOCK = threading.Lock()
# acme2certifier 0.46.3 with its SQLite handler is not safe under concurrent requests: the first
# renewalInfo requests of a process race to insert the same housekeeping row (UNIQUE constraint, a 500),
# and concurrent writes fail with "database is locked" (nonces lost: badNonce). One request at a time.
APP_LOCK = threading.Lock()
ACCESS = open(ACCESS_LOG, "a", buffering=1, encoding="utf-8")
POSTS = open(POSTS_LOG, "a", buffering=1, encoding="utf-8")


def jws_payload(body):
    """The JSON payload of a flattened JWS, or None."""
    try:
        payload = json.loads(body).get("payload") or ""
        if not payload:
            return None
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, AttributeError):
        return None


def recorded(environ, start_response):
    """Record a POST's payload, then hand the request (body restored) to acme2certifier."""
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        line = json.dumps({"path": environ.get("PATH_INFO", ""), "payload": jws_payload(body)})
        with LOCK:
            POSTS.write(line + "\n")
    with APP_LOCK:
        return list(application(environ, start_response))


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Handler(WSGIRequestHandler):
    def address_string(self):
        return self.client_address[0]  # no reverse DNS lookup

    def setup(self):
        # The TLS handshake here, on the request's thread, not in accept() on the server's.
        self.request.do_handshake()
        super().setup()

    def log_request(self, code="-", size="-"):
        try:
            code = int(code)  # wsgiref passes "200", http.server an HTTPStatus
        except (TypeError, ValueError):
            pass
        with LOCK:
            ACCESS.write(f"{self.command} {self.path} {code}\n")


def main():
    server = Server((ADDRESS, int(PORT)), Handler)
    server.set_app(recorded)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.base_environ["HTTPS"] = "on"  # wsgi.url_scheme https: the directory's URLs
    print(f"serving acme2certifier on https://{ADDRESS}:{PORT}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
