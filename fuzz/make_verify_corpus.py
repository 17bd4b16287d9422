#!/usr/bin/env python3
"""Makes the verifier fuzz corpus and the hostile bundles (docs/reliability.md §3).

    WHP_BIN=.build-audit/debug/whp python3 fuzz/make_verify_corpus.py

Writes, from honest logs that a real `whp` makes for the two trials of
fuzz/verify-trials (the shipped config with the public demo seed, and a
`simple`-method trial):

- fuzz/corpus-verify/honest-*: honest events.jsonl texts (the demo session
  cut into one log per district, and a session of the simple trial), the
  seeds of the libFuzzer corpus;
- fuzz/hostile-bundles/<case>/: whole audit bundles, each an honest log with
  one forged fact and its hashes recomputed (ALLOCATION.md §7), so that only
  the forged fact is wrong; `expected` names the check and seq `whp verify`
  must fail (written by hand after reading the report: the generator keeps an
  existing `expected`);
- fuzz/corpus-verify/crafted-<case>: each hostile bundle's events.jsonl.

The demo session is examples/dcams-session.jsonl through `whp demo`; the
simple trial's session is written below. Standard library only.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "fuzz")
TRIALS = os.path.join(FUZZ, "verify-trials")
CORPUS = os.path.join(FUZZ, "corpus-verify")
HOSTILE = os.path.join(FUZZ, "hostile-bundles")
WHP = os.environ.get("WHP_BIN") or os.path.join(ROOT, ".build", "debug", "whp")


def enc(b):
    return len(b).to_bytes(4, "big") + b


def event_bytes(seq, type_, payload):
    out = enc(b"whp/event/v1") + (seq % (1 << 64)).to_bytes(8, "big") + enc(type_.encode())
    keys = sorted(payload, key=lambda k: k.encode())
    out += len(keys).to_bytes(4, "big")
    for k in keys:
        out += enc(k.encode()) + enc(payload[k].encode())
    return out


def rechain(events):
    """Recomputes every hash (events: dicts with seq, type, payload, hash)."""
    prev = None
    for e in events:
        if e["seq"] == 1:
            p = e["payload"]
            prev = hashlib.sha256(enc(b"whp/genesis/v1") + enc(p["trial_id"].encode()) + bytes.fromhex(p["commitment"])).digest()
        prev = hashlib.sha256(prev + event_bytes(e["seq"], e["type"], e["payload"])).digest()
        e["hash"] = prev.hex()
    return events


def renumber(events):
    for n, e in enumerate(events, 1):
        e["seq"] = n
    return events


def dump(events):
    return "".join(json.dumps({"seq": e["seq"], "type": e["type"], "payload": e["payload"], "hash": e["hash"]},
                              separators=(",", ":"), ensure_ascii=False) + "\n" for e in events)


def load(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def whp(args, now=None, stdin=None, cwd=ROOT):
    env = dict(os.environ, WHP_LOG="warning")
    if now:
        env["WHP_NOW"] = now
    r = subprocess.run([WHP] + args, input=stdin, capture_output=True, text=True, env=env, cwd=cwd)
    if r.returncode != 0:
        sys.exit("whp %s failed (%d): %s %s" % (" ".join(args), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r.stdout


def demo_log(tmp):
    run = os.path.join(tmp, "demo")
    whp(["demo", "--dir", run])
    out = os.path.join(tmp, "demo-bundle")
    whp(["audit-bundle", "--config", run + "/district-config", "--data", run + "/.whp", "--out", out])
    return load(os.path.join(out, "events.jsonl"))


def per_district(events):
    """The demo log cut into one honest log per district: trial_started and
    every event of that district's referrals (districts are independent)."""
    logs = {}
    district_of = {}
    for e in events[1:]:
        p = e["payload"]
        d = p.get("district") or district_of.get(p.get("referral_id"))
        if e["type"] == "referred":
            district_of[p["referral_id"]] = d
        if d:
            logs.setdefault(d, [json.loads(json.dumps(events[0]))]).append(json.loads(json.dumps(e)))
    return {d: rechain(renumber(log)) for d, log in logs.items()}


def req(i, op, role, **fields):
    o = {"v": 1, "id": "s-%d" % i, "op": op, "actor": {"role": role, "id": "U%03d" % (i % 7)}}
    o.update(fields)
    return json.dumps(o, separators=(",", ":"))


def nino(n):
    return "%s%06d%s" % (["AB", "CE", "HJ", "KL"][n % 4], 100000 + n, "ABCD"[n % 4])


def simple_log(tmp):
    """A session of the simple trial: fifo, lottery and manual runs, providers
    (simple draws), cancellations, flags, an opt-out, a link, follow-ups."""
    t = os.path.join(TRIALS, "simple")
    data = os.path.join(tmp, "simple-data")
    seed = os.path.join(tmp, "simple-seed.hex")
    shutil.copy(os.path.join(t, "seed.hex"), seed)
    os.chmod(seed, 0o600)
    common = ["--config", os.path.join(t, "district-config"), "--data", data]
    whp(["init"] + common + ["--seeds", os.path.join(tmp, "simple-seeds"), "--import-seed", seed], now="2017-11-01T08:00:00Z")
    i = 0
    day1, day2, day3 = [], [], []
    for k in range(12):
        i += 1
        district = ["devon-cornwall", "example-north", "example-south"][k % 3]
        day1.append(req(i, "refer", "work_coach", referral_id="S-%d" % k, claimant={"nino": nino(k)}, district=district,
                        group=["disability", "early_access"][k % 2], referral_date="2017-11-%02d" % (5 + k)))
    i += 1
    day1.append(req(i, "cancel", "work_coach", referral_id="S-11", reason="withdrawn"))
    for district, cap in (("devon-cornwall", 3), ("example-north", 2), ("example-south", 1)):
        i += 1
        day1.append(req(i, "gatekeep", "gatekeeper", run_id="run-1-" + district, district=district, gk_date="2017-11-20", capacity=cap))
    for k in range(12, 20):
        i += 1
        district = ["devon-cornwall", "example-north", "example-south"][k % 3]
        day2.append(req(i, "refer", "work_coach", referral_id="S-%d" % k, claimant={"nino": nino(k)}, district=district,
                        group=["disability", "early_access"][k % 2], referral_date="2017-11-%02d" % (10 + k)))
    i += 1
    day2.append(req(i, "link_claimant", "work_coach", nino=nino(3), ref="127691290480"))
    for district, cap in (("devon-cornwall", 4), ("example-north", 5)):
        i += 1
        day2.append(req(i, "gatekeep", "gatekeeper", run_id="run-2-" + district, district=district, gk_date="2017-12-01", capacity=cap))
    i += 1
    day2.append(req(i, "gatekeep", "gatekeeper", run_id="run-2-south", district="example-south", gk_date="2017-12-01",
                    decisions=[{"referral_id": "S-14", "decision": "selected"}, {"referral_id": "S-17", "decision": "not_selected"}]))
    i += 1
    day2.append(req(i, "flag_error", "gatekeeper", referral_id="S-0", reason="wrong_group", corrected_group="early_access"))
    i += 1
    day2.append(req(i, "opt_out", "evaluation_admin", claimant={"nino": nino(1)}, date="2017-12-01"))
    i += 1
    day2.append(req(i, "disclose", "work_coach", referral_id="S-2", reason="audit"))
    for rid in ("S-0", "S-1", "S-3", "S-4", "S-6", "S-7", "S-9", "S-10", "S-12", "S-13", "S-15", "S-16", "S-18", "S-19"):
        for step, reason, d in (("provider_referral", None, 3), ("started", None, 5), ("left", "found_work", 12)):
            i += 1
            f = {"referral_id": rid, "step": step, "date": "2017-12-%02d" % d}
            if reason:
                f["reason"] = reason
            day3.append(req(i, "follow_up", "work_coach", **f))
    i += 1
    day3.append(req(i, "follow_up", "work_coach", referral_id="S-14", step="provider_referral", date="2017-12-04"))
    i += 1
    day3.append(req(i, "follow_up", "work_coach", referral_id="S-14", step="did_not_start", date="2017-12-06", reason="declined"))
    for now, lines in (("2017-11-20T10:00:00Z", day1), ("2017-12-01T10:00:00Z", day2), ("2017-12-14T10:00:00Z", day3)):
        whp(["serve"] + common, now=now, stdin="\n".join(lines) + "\n")
    out = os.path.join(tmp, "simple-bundle")
    whp(["audit-bundle"] + common + ["--out", out])
    return load(os.path.join(out, "events.jsonl"))


def session_log(tmp, trial, name, days, started="2017-11-01T08:00:00Z"):
    """A small honest log: the trial started at `started`, then one `whp serve`
    per (WHP_NOW, requests) day. Requests the rules refuse leave no event."""
    t = os.path.join(TRIALS, trial)
    data = os.path.join(tmp, name + "-data")
    seed = os.path.join(tmp, name + "-seed.hex")
    shutil.copy(os.path.join(t, "seed.hex"), seed)
    os.chmod(seed, 0o600)
    common = ["--config", os.path.join(t, "district-config"), "--data", data]
    whp(["init"] + common + ["--seeds", os.path.join(tmp, name + "-seeds"), "--import-seed", seed], now=started)
    n = 0
    for now, requests in days:
        lines = []
        for op, role, fields in requests:
            n += 1
            lines.append(req(n, op, role, **fields))
        whp(["serve"] + common, now=now, stdin="\n".join(lines) + "\n")
    out = os.path.join(tmp, name + "-bundle")
    whp(["audit-bundle"] + common + ["--out", out])
    return load(os.path.join(out, "events.jsonl"))


def refer(rid, n, district, date, group="disability"):
    return ("refer", "work_coach", {"referral_id": rid, "claimant": {"nino": nino(n)}, "district": district,
                                    "group": group, "referral_date": date})


def gatekeep(run, district, date, capacity=None, decisions=None):
    f = {"run_id": run, "district": district, "gk_date": date}
    if decisions is not None:
        f["decisions"] = [{"referral_id": r, "decision": "selected" if sel else "not_selected"} for r, sel in decisions]
    else:
        f["capacity"] = capacity
    return ("gatekeep", "gatekeeper", f)


def follow(rid, step, date, reason=None):
    f = {"referral_id": rid, "step": step, "date": date}
    if reason:
        f["reason"] = reason
    return ("follow_up", "work_coach", f)


def small_sessions():
    """Small logs (2-8 KB, so the fuzzer runs them fast), one feature each."""
    dv, no, so = "devon-cornwall", "example-north", "example-south"
    return {
        "demo-block": ("demo", [
            ("2017-11-06T09:00:00Z", [refer("D-%d" % k, 10 + k, dv, "2017-11-0%d" % (1 + k)) for k in range(4)]
             + [gatekeep("run-d1", dv, "2017-11-06", 3)]),
            ("2017-11-20T09:00:00Z", [follow("D-%d" % k, "provider_referral", "2017-11-20") for k in range(4)]),
            ("2017-11-27T09:00:00Z", [follow("D-%d" % k, "started", "2017-11-27") for k in range(2)]
             + [follow("D-%d" % k, "did_not_start", "2017-11-27", "declined") for k in range(2, 4)]),
        ]),
        "demo-providers": ("demo", [
            ("2017-11-06T09:00:00Z", [refer("N-%d" % k, 20 + k, no, "2017-11-0%d" % (2 + k)) for k in range(4)]
             + [gatekeep("run-n1", no, "2017-11-06", 4),
                ("set_shares", "contract_manager", {"district": no, "arm": "WHP", "effective": "2017-11-10",
                                                    "shares": {"prov-a": 1, "prov-b": 3}})]),
            ("2017-11-13T09:00:00Z", [refer("N-%d" % k, 20 + k, no, "2017-11-1%d" % (k - 4)) for k in range(4, 7)]
             + [gatekeep("run-n2", no, "2017-11-13", 3)]),
        ]),
        "demo-people": ("demo", [
            ("2017-11-06T09:00:00Z", [refer("P-1", 31, dv, "2017-11-02"), refer("P-2", 32, so, "2017-11-03"),
                                      refer("P-4", 34, so, "2017-11-04"),
                                      ("link_claimant", "work_coach", {"nino": nino(31), "ref": "127691290480"}),
                                      ("cancel", "work_coach", {"referral_id": "P-1", "reason": "withdrawn"}),
                                      gatekeep("run-s1", so, "2017-11-06", 0),
                                      ("opt_out", "evaluation_admin", {"claimant": {"nino": nino(32)}, "date": "2017-11-06"}),
                                      ("flag_error", "gatekeeper", {"referral_id": "P-2", "reason": "duplicate"}),
                                      ("disclose", "work_coach", {"referral_id": "P-4", "reason": "audit"})]),
            ("2017-12-20T09:00:00Z", [refer("P-3", 32, so, "2017-12-19"), refer("P-5", 31, dv, "2017-12-19"),
                                      gatekeep("run-s2", so, "2017-12-20", 1), gatekeep("run-d2", dv, "2017-12-20", 1)]),
        ]),
        "demo-manual": ("demo", [
            ("2017-11-08T09:00:00Z", [refer("M-%d" % k, 40 + k, so, "2017-11-0%d" % (5 + k), "early_access") for k in range(3)]
             + [gatekeep("run-m1", so, "2017-11-08", decisions=[("M-0", True), ("M-1", False), ("M-2", True)])]),
        ]),
        "simple-fifo": ("simple", [
            ("2017-11-10T09:00:00Z", [refer("F-%d" % k, 50 + k, dv, "2017-11-0%d" % (2 + k), ["disability", "early_access"][k % 2])
                                      for k in range(5)] + [gatekeep("run-f1", dv, "2017-11-10", 3)]),
            ("2017-12-01T09:00:00Z", [follow("F-%d" % k, "provider_referral", "2017-12-01") for k in range(5)]),
        ]),
        "simple-lottery": ("simple", [
            ("2017-11-10T09:00:00Z", [refer("L-%d" % k, 60 + k, no, "2017-11-0%d" % (2 + k)) for k in range(4)]
             + [gatekeep("run-l1", no, "2017-11-10", 2), gatekeep("run-l2", so, "2017-11-10", 1)]),
            ("2018-01-10T09:00:00Z", [refer("L-9", 60, no, "2018-01-09"), refer("L-8", 61, no, "2018-01-09")]),
        ]),
    }


# --- The hostile bundles: one forged fact each, re-chained ---------------------

def first(events, pred):
    return next(k for k, e in enumerate(events) if pred(e))


def block_size_3e10(log):
    """The issue's first bundle: a block_size of 30000000000 on the allocation that opens a block."""
    k = first(log, lambda e: e["type"] == "allocated" and e["payload"].get("position") == "0")
    log[k]["payload"]["block_size"] = "30000000000"
    return log, "block_size 30000000000 at seq %d" % log[k]["seq"]


def block_size_below_2_31(log):
    """A block size that is a decimal below 2^31 but no W x multiplier (2147483646 = 3 x 715827882)."""
    k = first(log, lambda e: e["type"] == "allocated" and e["payload"].get("position") == "0")
    log[k]["payload"]["block_size"] = "2147483646"
    return log, "block_size 2147483646 at seq %d" % log[k]["seq"]


def repeated_index(log):
    """The issue's second bundle: inside an open block, an allocation repeats the index before it."""
    k = first(log, lambda e: e["type"] == "allocated" and e["payload"].get("position") == "1")
    prev = first(log, lambda e: e["type"] == "allocated" and e["payload"]["stratum"] == log[k]["payload"]["stratum"])
    log[k]["payload"]["index"] = log[prev]["payload"]["index"]
    return log, "index %s repeated at seq %d" % (log[k]["payload"]["index"], log[k]["seq"])


def decision_9999_then_referral(log):
    """The issue's third bundle: a decision dated 9999-12-31 followed by a referral of the same claimant."""
    k = first(log, lambda e: e["type"] == "gatekeeper_decision")
    log[k]["payload"]["gk_date"] = "9999-12-31"
    rid = log[k]["payload"]["referral_id"]
    ref = next(e for e in log if e["type"] == "referred" and e["payload"]["referral_id"] == rid)
    again = json.loads(json.dumps(ref))
    again["payload"]["referral_id"] = rid + "-again"
    again["payload"]["recorded_at"] = log[-1]["payload"]["recorded_at"]
    log.append(again)
    return renumber(log), "gk_date 9999-12-31 at seq %d, a referral of the same claimant at seq %d" % (k + 1, len(log))


def decision_recorded_9999_then_referral(log):
    """A not-selected decision recorded on 9999-12-31 (its rules 2 lock base: the lock would end
    after the calendar, so it ends on 9999-12-31), then the same claimant referred again."""
    k = first(log, lambda e: e["type"] == "gatekeeper_decision" and e["payload"]["decision"] == "not_selected")
    log[k]["payload"]["recorded_at"] = "9999-12-31T23:59:59Z"
    rid = log[k]["payload"]["referral_id"]
    ref = next(e for e in log if e["type"] == "referred" and e["payload"]["referral_id"] == rid)
    again = json.loads(json.dumps(ref))
    again["payload"]["referral_id"] = rid + "-again"
    again["payload"]["recorded_at"] = log[-1]["payload"]["recorded_at"]
    log.append(again)
    return renumber(log), "recorded_at 9999-12-31 at seq %d, a referral of the same claimant at seq %d" % (k + 1, len(log))


def seq_near_int_max(log):
    """Seqs of 2^63 - 3 and 2^63 - 2 in the middle of the log (the verifier's next expected seq must
    not overflow at the events after them)."""
    log[5]["seq"] = (1 << 63) - 3
    log[6]["seq"] = (1 << 63) - 2
    return log, "seqs 2^63-3, 2^63-2 at lines 6, 7"


CASES = {
    "block-size-3e10": block_size_3e10,
    "block-size-2147483646": block_size_below_2_31,
    "repeated-index": repeated_index,
    "decision-9999-then-referral": decision_9999_then_referral,
    "decision-recorded-9999-then-referral": decision_recorded_9999_then_referral,
    "seq-near-int-max": seq_near_int_max,
}


def commitment_json(trial_dir, started):
    seed = open(os.path.join(trial_dir, "seed.hex")).read().strip()
    tid = started["payload"]["trial_id"]
    c = hashlib.sha256(enc(b"whp/seed-commitment/v1") + enc(tid.encode()) + bytes.fromhex(seed)).hexdigest()
    return json.dumps({"trial_id": tid, "commitment": c, "config_hash": started["payload"]["config_hash"],
                       "created": started["payload"]["recorded_at"]}, separators=(",", ":")) + "\n"


def write_bundle(name, events, note):
    d = os.path.join(HOSTILE, name)
    expected = os.path.join(d, "expected")
    keep = open(expected).read() if os.path.exists(expected) else None
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(TRIALS, "demo", "district-config"), os.path.join(d, "district-config"))
    text = dump(events)
    open(os.path.join(d, "events.jsonl"), "w").write(text)
    open(os.path.join(d, events[0]["payload"]["trial_id"] + ".commitment.json"), "w").write(commitment_json(
        os.path.join(TRIALS, "demo"), events[0]))
    open(os.path.join(d, "expected"), "w").write(keep or "# %s\n# check seq (fill in from `whp verify --bundle`)\n" % note)
    open(os.path.join(CORPUS, "crafted-" + name), "w").write(text)


def main():
    os.makedirs(CORPUS, exist_ok=True)
    os.makedirs(HOSTILE, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="whp-corpus-")
    try:
        demo = demo_log(tmp)
        by_district = per_district(demo)
        for d, log in sorted(by_district.items()):
            open(os.path.join(CORPUS, "honest-demo-" + d), "w").write(dump(log))
        simple = simple_log(tmp)
        open(os.path.join(CORPUS, "honest-simple"), "w").write(dump(simple))
        for name, (trial, days) in small_sessions().items():
            open(os.path.join(CORPUS, "honest-small-" + name), "w").write(dump(session_log(tmp, trial, name, days)))
        base = by_district["devon-cornwall"]
        for name, make in CASES.items():
            log, note = make(json.loads(json.dumps(base)))
            write_bundle(name, rechain(log), note)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
