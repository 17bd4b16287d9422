#!/usr/bin/env python3
"""Writes N pipelined `refer` request lines to stdout (valid NINOs, 4 districts)."""
import sys
n = int(sys.argv[1])
S = "ABCEGHJKLMNPRSTWXYZ"
D = ["devon-cornwall", "example-north", "leicestershire-northants", "example-south"]
out = sys.stdout
for i in range(n):
    out.write('{"v":1,"id":"r%d","op":"refer","actor":{"role":"work_coach","id":"WC1"},"referral_id":"R%d","claimant":{"nino":"A%s%06d%s"},"district":"%s","group":"disability","referral_date":"2017-11-01"}\n'
              % (i, i, S[(i // 1000000) % 19], i % 1000000, "ABCD"[i % 4], D[i % 4]))
