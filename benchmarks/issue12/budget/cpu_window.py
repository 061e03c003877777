"""Sum utime+stime of all ts-* processes over a steady window; print ms CPU per frame per stage."""
import os, sys, time, collections
start, length, fps = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
def snap():
    out = collections.Counter()
    for pid in os.listdir('/proc'):
        if not pid.isdigit(): continue
        try:
            comm = open(f'/proc/{pid}/comm').read().strip()
            if not comm.startswith('ts-'): continue
            f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
            out[comm.split(':')[0]] += (int(f[11]) + int(f[12]))
        except OSError: pass
    return out
# wait for 30+ capture processes
t_end = time.time() + 120
while time.time() < t_end:
    n = sum(1 for p in os.listdir('/proc') if p.isdigit() and os.path.exists(f'/proc/{p}/comm') and open(f'/proc/{p}/comm').read().startswith('ts-capture'))
    if n >= int(sys.argv[4]): break
    time.sleep(0.2)
time.sleep(start)
a = snap(); t0 = time.time(); time.sleep(length); b = snap(); dt = time.time() - t0
tick = os.sysconf('SC_CLK_TCK')
tot = 0
for k in sorted(b):
    ms = (b[k] - a[k]) / tick / dt / fps * 1000; tot += ms
    print(f"{k}: {ms:.3f} ms/frame")
print(f"total: {tot:.3f} ms/frame ({tot*fps/1000/os.cpu_count()*100:.0f}% of machine)")
