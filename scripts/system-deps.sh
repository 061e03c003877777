#!/usr/bin/env bash
# System packages the tests use: ffmpeg (H.264 fixtures), GStreamer's RTSP server (a real RTSP server on
# 127.0.0.1, driven by /usr/bin/python3), Chromium (live-view browser test), Mosquitto (MQTT bridge tests).
# Installed with apt-get when running as root and missing; otherwise the tests that need them skip and say why.
set -u
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' \
    >/dev/null 2>&1 || need+=(gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)  # MQTT bridge tests
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not root or no apt-get; missing: ${need[*]} (tests needing them will skip)" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || echo "system-deps: apt-get failed; tests needing ${need[*]} will skip" >&2
