#!/usr/bin/env python3
"""tools/connect-proxy.py: a small HTTP CONNECT proxy on loopback, for the TLS and proxy tests.

  connect-proxy.py [--port N] [--auth USER:PASSWORD]

Prints "listening on http://127.0.0.1:PORT" first, then one line per tunnel it opens
("tunnel HOST:PORT") or refuses ("refused 407 HOST:PORT", "refused 405 METHOD"), flushed, so a
test can count the tunnels a job used. With --auth, a CONNECT without the right
Proxy-Authorization (Basic) is answered 407 with Proxy-Authenticate, as RFC 9110 says. Only
CONNECT is served (runnel tunnels http:// too when a proxy is set); other methods get 405.
"""
import argparse
import base64
import select
import socket
import socketserver
import sys
import threading

lock = threading.Lock()


def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk or len(head) > 65536:
                return
            head += chunk
        header, rest = head.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "CONNECT":
            say("refused 405 %s" % parts[0])
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\n\r\n")
            return
        target = parts[1]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if self.server.auth:
            want = "Basic " + base64.b64encode(self.server.auth.encode()).decode()
            if fields.get("proxy-authorization") != want:
                say("refused 407 %s" % target)
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"runnel-test\"\r\nContent-Length: 0\r\n\r\n")
                return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError) as e:
            say("refused 502 %s (%s)" % (target, e))
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        say("tunnel %s" % target)
        conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        pair = {conn: upstream, upstream: conn}
        try:
            while True:
                ready, _, _ = select.select(list(pair), [], [])
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description="HTTP CONNECT proxy for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--auth", help="USER:PASSWORD required in Proxy-Authorization")
    args = ap.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.auth = args.auth
    say("listening on http://127.0.0.1:%d" % server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
