#!/usr/bin/env python3
"""A DCAMS client that waits for each answer: N `refer` requests, one at a time.
Usage: waiting_client.py N -- whp serve ARGS...   Prints requests/s."""
import json, subprocess, sys, time

n = int(sys.argv[1])
cmd = sys.argv[sys.argv.index("--") + 1:]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
S = "ABCEGHJKLMNPRSTWXYZ"
t0 = time.monotonic()
for i in range(n):
    nino = "W%s%06d%s" % (S[(i // 1000000) % 19], i % 1000000, "ABCD"[i % 4])
    line = json.dumps({"v": 1, "id": "w%d" % i, "op": "refer", "actor": {"role": "work_coach", "id": "WC1"},
                       "referral_id": "W%d" % i, "claimant": {"nino": nino}, "district": "example-north",
                       "group": "disability", "referral_date": "2017-11-01"}, separators=(",", ":"))
    p.stdin.write((line + "\n").encode())
    answer = p.stdout.readline()
    if b'"ok":true' not in answer:
        sys.exit("unexpected answer: %r" % answer)
elapsed = time.monotonic() - t0
p.stdin.close()
p.wait()
print("%.1f" % (n / elapsed))
