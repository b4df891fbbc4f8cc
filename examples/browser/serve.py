#!/usr/bin/env python3
"""Serves the pages of this directory (and the Uppy and tus-js-client files
that `npm ci` put in node_modules/) on one loopback origin, so that they talk
to tusd-rs on another origin, as a web application does.

    python3 serve.py [--host 127.0.0.1] [--port 8000]

--port 0 takes a free port. The first line printed names the origin.
"""

import argparse
import functools
import http.server
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


class Pages(http.server.SimpleHTTPRequestHandler):
    # Module scripts must come as JavaScript; older Pythons guess otherwise.
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
    }

    def end_headers(self):
        # A reload then shows an edited page at once.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):
        sys.stderr.write("serve.py: %s\n" % (format % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not (HERE / "node_modules" / "uppy").is_dir():
        sys.exit("serve.py: node_modules is missing: run `npm ci` in %s" % HERE)
    handler = functools.partial(Pages, directory=str(HERE))
    server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    host, port = server.server_address[:2]
    print("serving http://%s:%d/ (uppy.html, tus.html)" % (host, port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
