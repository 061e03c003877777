"""A real RTSP server for the reliability tests (run by the SYSTEM python3, which has `gi`).

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file clip.mp4 [--mount /stream] [--user U --password P]

Serves an H.264 mp4 (no re-encoding: filesrc ! qtdemux ! h264parse ! rtph264pay) on
rtsp://127.0.0.1:PORT/MOUNT. Each client session plays the file from the start. Prints
"READY <port>" on stdout once it listens. Commands on stdin, one per line:

    pause   stop pushing RTP for every session (connection and session stay open: a stall)
    resume  push again
    quit    exit

`--silent` instead runs a plain TCP server that accepts connections and never answers
(an RTSP server that hangs before DESCRIBE): a client can only time out.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading


def serve_silent(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    held = []  # keep accepted sockets open: the peer sees a live connection that never speaks

    def accept_loop():
        while True:
            conn, _ = listener.accept()
            held.append(conn)

    threading.Thread(target=accept_loop, daemon=True).start()
    print(f"READY {listener.getsockname()[1]}", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break


def serve_rtsp(port: int, path: str, mount: str, user: str | None, password: str | None) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = path.replace("\\", "\\\\").replace('"', '\\"')
    # valve: 'pause' drops buffers (the session stays up, nothing arrives = a stalled camera).
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! h264parse config-interval=-1 '
                       f'! valve name=gate drop=false ! rtph264pay name=pay0 pt=96 config-interval=1 )')
    factory.set_shared(False)
    factory.set_eos_shutdown(True)
    gates = []
    paused = {"on": False}

    def on_configure(_factory, media):
        gate = media.get_element().get_by_name("gate")
        gate.set_property("drop", paused["on"])
        gates.append(gate)

    factory.connect("media-configure", on_configure)
    if user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{port}", flush=True)
        sys.exit(1)
    print(f"READY {port}", flush=True)

    def on_stdin(channel, _condition):
        line = channel.readline()
        command = line.strip()
        if not line or command == "quit":
            loop.quit()
            return False
        if command in ("pause", "resume"):
            paused["on"] = command == "pause"
            for gate in gates:
                gate.set_property("drop", paused["on"])
            print(f"OK {command}", flush=True)
        return True

    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP, on_stdin)
    loop.run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", help="H.264 mp4 to serve")
    p.add_argument("--mount", default="/stream")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--silent", action="store_true", help="accept TCP connections and never answer")
    args = p.parse_args()
    if args.silent:
        serve_silent(args.port)
    else:
        serve_rtsp(args.port, args.file, args.mount, args.user, args.password)


if __name__ == "__main__":
    main()
