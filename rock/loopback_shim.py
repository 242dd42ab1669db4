"""The in-sandbox shim that gives a `--network none` sandbox one loopback port in front of a unix socket mounted
from the host (the egress proxy's, the model proxy's): it listens on 127.0.0.1:<port> and pipes every connection
to the socket. Its source runs with the image's python3 (stdlib only)."""
from __future__ import annotations

_TEMPLATE = '''
import socket, threading
TARGET = {target!r}
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", {port})); server.listen({backlog})
def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
def serve(client):
    upstream = socket.socket(socket.AF_UNIX)
    try:
        upstream.connect(TARGET)
    except OSError:
        client.close(); upstream.close(); return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start(); pump(upstream, client)
while True:
    conn, _ = server.accept(); threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


def shim_source(port: int | str, socket_path: str, backlog: int = 64) -> str:
    """Python source of the shim for `port` (an int, or an expression such as `int(sys.argv[1])`, which then
    needs `import sys` ahead) forwarding to `socket_path` inside the sandbox."""
    return _TEMPLATE.format(target=socket_path, port=port, backlog=backlog)
