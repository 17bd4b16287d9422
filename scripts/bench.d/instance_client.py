#!/usr/bin/env python3
"""One client of one `whp serve` instance, for the multi-instance benchmark.
Usage: instance_client.py MODE N K -- whp serve ARGS...
MODE wait: N refers one at a time, each answer awaited; MODE pipe: N refers
written as fast as the instance reads them. K (0..) makes this instance's
claimants and referral ids disjoint from the others'. Waits on a start file
(argv env WHP_BENCH_GO) so all instances begin together. Prints
"requests seconds" for the client's own run."""
import os, subprocess, sys, threading, time

mode, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cmd = sys.argv[sys.argv.index("--") + 1:]
S = "ABCEGHJKLMNPRSTWXYZ"
D = ["devon-cornwall", "example-north", "leicestershire-northants", "example-south"]

def line(i):
    j = k * 10_000_000 + i
    nino = "%s%s%06d%s" % ("ABCEH"[k % 5], S[(j // 1000000) % 19], j % 1000000, "ABCD"[j % 4])
    return ('{"v":1,"id":"i%d-%d","op":"refer","actor":{"role":"work_coach","id":"WC1"},"referral_id":"I%d-%d",'
            '"claimant":{"nino":"%s"},"district":"%s","group":"disability","referral_date":"2017-11-01"}\n'
            % (k, i, k, i, nino, D[i % 4])).encode()

lines = [line(i) for i in range(n)]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
go = os.environ.get("WHP_BENCH_GO")
while go and not os.path.exists(go):
    time.sleep(0.001)
t0 = time.monotonic()
ok = 0
if mode == "wait":
    for l in lines:
        p.stdin.write(l)
        if b'"ok":true' in p.stdout.readline():
            ok += 1
    p.stdin.close()
else:
    def feed():
        p.stdin.write(b"".join(lines))
        p.stdin.close()
    t = threading.Thread(target=feed)
    t.start()
    # Answers are counted in large reads, not line by line: at 10,000
    # answers a second a Python line loop used most of a core, as much as
    # the server it was measuring.
    fd, tail, mark = p.stdout.fileno(), b"", b'"ok":true'
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            break
        data = tail + block
        ok += data.count(mark)
        cut = data.rfind(b"\n") + 1  # a mark never spans a newline: count whole lines only
        ok -= data[cut:].count(mark)
        tail = data[cut:]
    ok += tail.count(mark)
    t.join()
elapsed = time.monotonic() - t0
p.wait()
if ok != n:
    sys.exit("instance %d: only %d of %d refers answered ok" % (k, ok, n))
print("%d %.4f" % (n, elapsed))
