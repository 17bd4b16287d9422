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


# Referrals the session follows up: allocated WHP or PSC, and not allocated a
# place, in the trial the demo seed draws (read off a run of the session).
WHP_PSC = ["R-003", "R-007", "R-009"]
NOT_ALLOCATED = ["R-001", "R-005"]

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
# R-007 was referred by DCAMS reference number; the work coach now finds the
# claimant's NINO and links the two: one person, whose lock follows either
# identifier (RULES2 R6). A referral by the NINO is refused as the person's.
LINKED_NINO = "JH 88 21 04 C"
req("link_claimant", "work_coach", "WC0003", nino=LINKED_NINO, ref=claimants["R-007"]["ref"])
req("link_claimant", "work_coach", "WC0003", nino=LINKED_NINO, ref=claimants["R-007"]["ref"])
req("refer", "work_coach", "WC0003", referral_id="R-902", claimant={"nino": LINKED_NINO}, district="devon-cornwall",
    group="disability", referral_date="2017-11-13")
req("eligibility", "work_coach", "WC0003", claimant={"nino": LINKED_NINO}, date="2017-11-13")
# A claimant opts out of the evaluation (twice: the second is 'already').
req("opt_out", "evaluation_admin", "EV01", claimant=claimants["R-006"], date="2017-11-20")
# Work coaches refer their WHP and PSC participants to the provider (within 10
# working days of the decision), then record the starts (RULES2 R14). A
# follow-up on a referral without a place gets the same answer whatever the
# reason: under the hidden policy it shows nothing about RCG.
for r in WHP_PSC[:3]:
    req("follow_up", "work_coach", "WC0006", referral_id=r, step="provider_referral", date="2017-11-20")
req("follow_up", "work_coach", "WC0006", referral_id=NOT_ALLOCATED[0], step="provider_referral", date="2017-11-20")
req("follow_up", "work_coach", "WC0006", referral_id=NOT_ALLOCATED[1], step="provider_referral", date="2017-11-20")
req("opt_out", "evaluation_admin", "EV01", claimant=claimants["R-006"], date="2017-11-21")
# From 27 November, Example North's WHP places go 2 : 1 to provider A (a
# contract manager's market-share shift, RULES2 R15).
req("set_shares", "contract_manager", "CM01", district="example-north", arm="WHP", effective="2017-11-27",
    shares={"prov-a": 2, "prov-b": 1})
for j in range(8):
    k += 1
    rid = "R-%03d" % k
    claimants[rid] = {"nino": nino()}
    req("refer", "work_coach", "WC%04d" % rng.randrange(1, 50), referral_id=rid, claimant=claimants[rid], district="example-north",
        group=rng.choice(["disability", "early_access"]), referral_date="2017-11-27")
req("follow_up", "work_coach", "WC0006", referral_id=WHP_PSC[0], step="started", date="2017-11-27")
req("follow_up", "work_coach", "WC0006", referral_id=WHP_PSC[1], step="did_not_start", date="2017-11-27", reason="declined")
req("follow_up", "work_coach", "WC0006", referral_id=WHP_PSC[1], step="did_not_start", date="2017-11-27", reason="declined")
req("gatekeep", "gatekeeper", "GK05", run_id="gk-2017-11-28-example-north", district="example-north", gk_date="2017-11-28", capacity=6)
# A WHP place in Example North names its provider, to the work coach and to the claimant.
req("outcome", "work_coach", "WC0007", referral_id="R-%03d" % (k - 2), name="Mr A Khan")
req("outcome", "work_coach", "WC0007", referral_id="R-%03d" % (k - 2), audience="claimant")
req("outcome", "work_coach", "WC0007", referral_id=WHP_PSC[0], name="Ms B Okafor")
# Re-referral checks: inside the six-week lock, then after it.
for r in ["R-001", "R-004", "R-008"]:
    req("eligibility", "work_coach", "WC0004", claimant=claimants[r], date="2017-12-01")
req("refer", "work_coach", "WC0005", referral_id="R-901", claimant=claimants["R-001"], district="devon-cornwall",
    group="disability", referral_date="2017-12-01")
for r in ["R-001", "R-004", "R-008"]:
    req("eligibility", "work_coach", "WC0004", claimant=claimants[r], date="2017-12-26")
# A claimant asks directly, so the work coach discloses (and that is logged).
req("disclose", "work_coach", "WC0002", referral_id="R-004", reason="Claimant asked directly about their allocation")
# The gatekeeper flags an allocation made in error, with the group it should
# have had: it keeps its arm, its stratum and its lock.
req("flag_error", "gatekeeper", "GK01", referral_id="R-005", reason="wrong_group", corrected_group="early_access")
req("status", "work_coach", "WC0002")
req("status", "gatekeeper", "GK01")

out = [json.dumps(l, separators=(",", ":")) for l in lines]
# Bad input the service answers with an error and survives.
out.insert(5, '{"v":1,"id":"demo-bad-1","op":"refer","actor":{"role":"work_coach","id":"WC0001"},"referral_id":"R-999","claimant":{"nino":"QQ123456C"},"district":"devon-cornwall","group":"disability","referral_date":"2017-11-02"}')
out.insert(6, 'this is not JSON')
out.insert(7, '{"v":1,"id":"demo-bad-2","op":"gatekeep","actor":{"role":"work_coach","id":"WC0001"},"run_id":"x","district":"devon-cornwall","gk_date":"2017-11-13","capacity":1}')
print("\n".join(out))
