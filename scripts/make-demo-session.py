#!/usr/bin/env python3
"""Writes examples/dcams-session.jsonl: the example DCAMS session `whp demo` plays.

Deterministic (fixed random seed), so the committed file is reproducible:
    python3 scripts/make-demo-session.py > examples/dcams-session.jsonl
"""
import json
import random

rng = random.Random(2017)
FIRST = "ABCEGHJKLMNOPRSTWXYZ"
SECOND = "ABCEGHJKLMNPRSTWXYZ"
BAD = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def nino():
    while True:
        p = rng.choice(FIRST) + rng.choice(SECOND)
        if p not in BAD:
            return "%s %02d %02d %02d %s" % (p, rng.randrange(100), rng.randrange(100), rng.randrange(100), rng.choice("ABCD"))


lines = []
n = 0


def req(op, role, actor, **fields):
    global n
    n += 1
    lines.append(dict({"v": 1, "id": "demo-%d" % n, "op": op, "actor": {"role": role, "id": actor}}, **fields))


districts = ["devon-cornwall", "leicestershire-northants", "lincolnshire-nottinghamshire-rutland",
             "dorset-wiltshire-hampshire-iow", "example-north", "example-south"]
claimants = {}
req("status", "gatekeeper", "GK01")
k = 0
for d in districts:
    for j in range(12):
        k += 1
        c = {"nino": nino()} if k % 7 else {"ref": "%012d" % rng.randrange(10**12)}
        rid = "R-%03d" % k
        claimants[rid] = c
        req("refer", "work_coach", "WC%04d" % rng.randrange(1, 50), referral_id=rid, claimant=c, district=d,
            group=rng.choice(["disability", "early_access"]), referral_date="2017-11-%02d" % rng.randrange(1, 10))
# A work coach cancels one referral; a duplicate referral is refused.
req("cancel", "work_coach", "WC0001", referral_id="R-002", reason="Claimant moved out of the district")
req("refer", "work_coach", "WC0001", referral_id="R-900", claimant=claimants["R-003"], district="devon-cornwall",
    group="disability", referral_date="2017-11-10")
# Gatekeepers see what is pending and run their districts.
req("pending", "gatekeeper", "GK01", district="devon-cornwall", gk_date="2017-11-13")
for i, d in enumerate(districts[:-1]):
    req("gatekeep", "gatekeeper", "GK%02d" % (i + 1), run_id="gk-2017-11-13-" + d, district=d, gk_date="2017-11-13", capacity=8)
# The last district decides by hand.
south = ["R-%03d" % i for i in range(61, 73)]
req("gatekeep", "gatekeeper", "GK06", run_id="gk-2017-11-13-example-south", district="example-south", gk_date="2017-11-13",
    decisions=[{"referral_id": r, "decision": "selected" if i % 3 else "not_selected"} for i, r in enumerate(south)])
# A repeated run gets its first answer and changes nothing.
req("gatekeep", "gatekeeper", "GK01", run_id="gk-2017-11-13-devon-cornwall", district="devon-cornwall", gk_date="2017-11-13", capacity=8)
# Work coaches read outcomes (the RCG is hidden from them), for themselves and to tell the claimant.
for r in ["R-001", "R-004", "R-005", "R-006", "R-013", "R-050"]:
    req("outcome", "work_coach", "WC0002", referral_id=r, name="Mrs D Jones")
    req("outcome", "work_coach", "WC0002", referral_id=r, audience="claimant")
req("outcome", "work_coach", "WC0003", claimant=claimants["R-007"])
# Re-referral checks: inside the six-week lock, then after it.
for r in ["R-001", "R-004", "R-008"]:
    req("eligibility", "work_coach", "WC0004", claimant=claimants[r], date="2017-12-01")
    req("eligibility", "work_coach", "WC0004", claimant=claimants[r], date="2017-12-26")
req("refer", "work_coach", "WC0005", referral_id="R-901", claimant=claimants["R-001"], district="devon-cornwall",
    group="disability", referral_date="2017-12-01")
# A claimant asks directly, so the work coach discloses (and that is logged).
req("disclose", "work_coach", "WC0002", referral_id="R-004", reason="Claimant asked directly about their allocation")
# The gatekeeper flags an allocation made in error: it keeps its arm and lock.
req("flag_error", "gatekeeper", "GK01", referral_id="R-005", reason="wrong_group")
# A claimant opts out of the evaluation (twice: the second is 'already').
req("opt_out", "evaluation_admin", "EV01", claimant=claimants["R-006"], date="2017-11-20")
req("opt_out", "evaluation_admin", "EV01", claimant=claimants["R-006"], date="2017-11-21")
req("status", "work_coach", "WC0002")

out = [json.dumps(l, separators=(",", ":")) for l in lines]
# Bad input the service answers with an error and survives.
out.insert(5, '{"v":1,"id":"demo-bad-1","op":"refer","actor":{"role":"work_coach","id":"WC0001"},"referral_id":"R-999","claimant":{"nino":"QQ123456C"},"district":"devon-cornwall","group":"disability","referral_date":"2017-11-02"}')
out.insert(6, 'this is not JSON')
out.insert(7, '{"v":1,"id":"demo-bad-2","op":"gatekeep","actor":{"role":"work_coach","id":"WC0001"},"run_id":"x","district":"devon-cornwall","gk_date":"2017-11-13","capacity":1}')
print("\n".join(out))
