#!/usr/bin/env python3
"""An HTTPS business server for the https-hook tests: python3 https_hook_server.py PORT CERT KEY.

Serves HTTP/1.1 with keep-alive over TLS, prints one JSON line per request on stdout
(method, path, content type, form fields), and answers 403 to names starting with private_,
200 to everything else. Prints "ready" once it listens.
"""
import http.server
import json
import ssl
import sys
import urllib.parse


class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        print(json.dumps({"method": "POST", "path": self.path,
                          "ctype": self.headers.get("Content-Type", ""), "f": fields}), flush=True)
        code = 403 if fields.get("name", "").startswith("private_") else 200
        body = b"no" if code == 403 else b"ok"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
