#!/usr/bin/env python3
"""Tests of verify_bundle.py against revision 2 of the contract (RULES2.md, as
docs/rules2.md reads it), on bundles written by tools/bundle_builder.py, a
pure-Python honest simulator: no whp binary is needed.

    python3 -m unittest discover -s tools -p 'test_*.py'

1. The RULES2 vectors (key_check, providers) through the verifier's and the
   builder's functions.
2. Honest rules-2 bundles pass, with and without the seed and the keys
   (permuted_block and simple; providers with a share change; links;
   follow-ups; allocated_once).
3. Tampered copies, re-chained so the chain still holds, fail the check
   docs/rules2.md names, at the seq of the event that breaks it.
4. Hostile bundles: the verifier reports, it never raises.
"""

import contextlib
import copy
import datetime
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bundle_builder as bb  # noqa: E402
import verify_bundle as vb  # noqa: E402

VECTORS = os.path.join(REPO, "Tests", "WHPCoreTests", "Fixtures", "vectors.json")


def load_vectors():
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def rechain(events):
    """Renumber seqs 1, 2, ... and recompute every hash (what a forger without S can do)."""
    first = events[0]["payload"]
    h = vb.genesis(first["trial_id"], bytes.fromhex(first["commitment"]))
    for n, e in enumerate(events, 1):
        e["seq"] = n
        h = vb.chain_next(h, n, e["type"], e["payload"])
        e["hash"] = h.hex()
    return events


def run_verifier(bundle, *extra):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = vb.main([bundle, "--json"] + list(extra))
    report = json.loads(out.getvalue()) if code in (0, 1) else None
    return code, report, err.getvalue()


class Case(unittest.TestCase):
    tmp = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rules2-")

    @classmethod
    def tearDownClass(cls):
        if cls.tmp:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def new_dir(self):
        return os.path.join(tempfile.mkdtemp(dir=self.tmp), "B")

    def write(self, trial, **kw):
        return trial.write(self.new_dir(), **kw)

    def write_events(self, trial, events, raw_lines=None):
        """A bundle of `trial`'s config and commitment with other events."""
        b = self.write(trial)
        with open(os.path.join(b, "events.jsonl"), "wb") as f:
            if raw_lines is None:
                raw_lines = [json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for e in events]
            f.write(b"".join(l + b"\n" for l in raw_lines))
        return b

    def tampered(self, trial, edit):
        """edit(events) changes a deep copy of the trial's events in place; then re-chained."""
        evs = copy.deepcopy(trial.events)
        edit(evs)
        return self.write_events(trial, rechain(evs))

    def verify(self, bundle, *extra):
        code, report, err = run_verifier(bundle, *extra)
        self.assertIn(code, (0, 1), err)
        return code, report

    def check(self, report, name):
        for c in report["checks"]:
            if c["name"] == name:
                return c
        self.fail("no check %s in %s" % (name, [c["name"] for c in report["checks"]]))

    def names(self, report):
        return [c["name"] for c in report["checks"]]

    def failing(self, report):
        return {c["name"] for c in report["checks"] if not c["ok"]}

    def assertAllOk(self, code, report):
        self.assertEqual([c for c in report["checks"] if not c["ok"]], [])
        self.assertEqual(code, 0)
        self.assertTrue(report["ok"])

    def assertFailsAt(self, code, report, name, seq, only=True):
        """`name` fails at `seq` (and, with only, no other check fails)."""
        self.assertEqual(code, 1, report)
        c = self.check(report, name)
        self.assertFalse(c["ok"], c)
        self.assertEqual(c.get("first_bad_seq"), seq, c)
        self.assertTrue(self.check(report, "chain")["ok"], self.check(report, "chain"))
        if only:
            self.assertEqual(self.failing(report), {name}, [c for c in report["checks"] if not c["ok"]])


def ev_at(events, seq):
    e = events[seq - 1]
    assert e["seq"] == seq
    return e


def insert(events, at_seq, type_, payload):
    """Insert an event before the event now at at_seq (len + 1: at the end); rechain renumbers."""
    events.insert(at_seq - 1, {"seq": 0, "type": type_, "payload": payload, "hash": ""})


# ---------------------------------------------------------------------------
# The scenario: a rules-2 trial with everything revision 2 adds
# ---------------------------------------------------------------------------

NORTH_PROVIDERS = [{"id": "prov-b", "name": "Provider B Ltd", "arm": "WHP", "share": 1},
                   {"id": "prov-a", "name": "Provider A Ltd", "arm": "WHP", "share": 1}]
SOUTH_PROVIDERS = [{"id": "w-1", "name": "Work One", "arm": "WHP", "share": 2},
                   {"id": "w-2", "name": "Work Two", "arm": "WHP", "share": 1},
                   {"id": "p-1", "name": "Public One", "arm": "PSC", "share": 1},
                   {"id": "p-2", "name": "Public Two", "arm": "PSC", "share": 0}]
RECRUITMENT = {"opens": "2018-01-01", "closes": "2018-03-31", "max_backdate_days": 14}


def districts(providers=True, south_rule="lottery"):
    return [bb.District("north", {"WHP": 1, "RCG": 1}, providers=NORTH_PROVIDERS if providers else ()),
            bb.District("south", {"WHP": 1, "PSC": 1, "RCG": 1}, psc=True, rule=south_rule,
                        providers=SOUTH_PROVIDERS if providers else ()),
            bb.District("east", {"WHP": 2, "RCG": 1})]


def full_trial(method="permuted_block", sbg=False, rules=2, s17_date="2018-02-21", providers=True, **kw):
    """Returns (trial, R): R names the events the tests tamper with."""
    kw.setdefault("recruitment", RECRUITMENT)
    kw.setdefault("deadlines", {"provider_referral_working_days": 10, "start_working_days": 15, "pending_days": 28})
    kw.setdefault("bank_holidays", ["2018-01-01", "2018-03-30", "2018-04-02"])
    t = bb.Trial(districts(providers), method=method, stratify_by_group=sbg, rules=rules, **kw)
    R = {}
    t.init("2017-12-20T09:00:00Z")
    groups = ("disability", "early_access")
    for k in range(1, 11):
        ident = "REF:1000000000%02d" % k if k <= 4 else "NINO:AB0000%02dC" % k
        R["N-%02d" % k] = t.refer("2018-01-08T09:00:00Z", "N-%02d" % k, ident, "north", groups[k % 2],
                                  "2018-01-0%d" % (1 + k % 8))
    for k in range(1, 13):
        date = "2018-01-07" if k == 11 else "2018-01-0%d" % (1 + k % 5)
        R["S-%02d" % k] = t.refer("2018-01-08T10:00:00Z", "S-%02d" % k, "NINO:AC0000%02dC" % k, "south",
                                  groups[k % 2], date)
    for k in range(1, 7):
        ident = "REF:2000000000%02d" % k if k >= 5 else "NINO:AD0000%02dC" % k
        R["E-%02d" % k] = t.refer("2018-01-08T10:30:00Z", "E-%02d" % k, ident, "east", groups[k % 2], "2018-01-03")
    R["cancel"] = t.cancel("2018-01-08T11:00:00Z", "S-12")
    R["east-run"] = t.gatekeep("2018-01-10T08:00:00Z", "run-east-1", "east", "2018-01-10",
                               decisions={"E-01": "selected", "E-02": "selected", "E-03": "selected",
                                          "E-04": "selected", "E-05": "not_selected"})
    R["north-run"] = t.gatekeep("2018-01-10T09:00:00Z", "run-north-1", "north", "2018-01-10", capacity=6)
    # back-dated by five days, inside max_backdate_days: R1 bases the locks on 2018-01-10
    R["south-run"] = t.gatekeep("2018-01-10T09:30:00Z", "run-south-1", "south", "2018-01-05", capacity=8)
    first = [rid for rid in sorted(t.refs) if t.refs[rid]["decided_at"] == "2018-01-10"]
    whp = [rid for rid in first if t.refs[rid]["arm"] == "WHP"]
    R["rcg"] = [rid for rid in first if t.refs[rid]["arm"] == "RCG"][0]
    R["psc"] = [rid for rid in first if t.refs[rid]["arm"] == "PSC"][0]
    R["south-ns"] = [rid for rid in sorted(t.refs) if rid.startswith("S-") and t.refs[rid]["state"] == "not_selected"][0]
    R["W1"], R["W2"] = whp[0], whp[1]
    R["fu-W1-pr"] = t.follow_up("2018-01-12T09:00:00Z", R["W1"], "provider_referral", "2018-01-12")
    R["fu-W2-pr"] = t.follow_up("2018-01-12T09:00:00Z", R["W2"], "provider_referral", "2018-01-11")
    R["fu-psc-pr"] = t.follow_up("2018-01-12T09:10:00Z", R["psc"], "provider_referral", "2018-01-10")
    if providers:
        R["shares-north"] = t.set_shares("2018-01-15T09:00:00Z", "north", "WHP", "2018-01-20",
                                         {"prov-a": 2, "prov-b": 1})
        R["shares-south"] = t.set_shares("2018-01-15T09:05:00Z", "south", "WHP", "2018-01-15",
                                         {"w-1": 2, "w-2": 1})      # unchanged: changes nothing
    for k in range(11, 15):
        R["N-%02d" % k] = t.refer("2018-01-16T09:00:00Z", "N-%02d" % k, "NINO:AB0000%02dC" % k, "north",
                                  groups[k % 2], "2018-01-16")
    R["north-run-2"] = t.gatekeep("2018-01-17T09:00:00Z", "run-north-2", "north", "2018-01-17", capacity=4)
    R["fu-W2-dns"] = t.follow_up("2018-01-19T09:00:00Z", R["W2"], "did_not_start", "2018-01-19", "declined")
    R["fu-W1-st"] = t.follow_up("2018-01-20T09:00:00Z", R["W1"], "started", "2018-01-20")
    for k in range(15, 27):
        R["N-%02d" % k] = t.refer("2018-01-22T09:00:00Z", "N-%02d" % k, "NINO:AB0000%02dC" % k, "north",
                                  groups[k % 2], "2018-01-%02d" % (20 + k % 3))
    for k in range(13, 17):
        R["S-%02d" % k] = t.refer("2018-01-22T09:30:00Z", "S-%02d" % k, "NINO:AC0000%02dC" % k, "south",
                                  groups[k % 2], "2018-01-22")
    R["north-run-3"] = t.gatekeep("2018-01-23T09:00:00Z", "run-north-3", "north", "2018-01-23", capacity=12)
    R["south-run-2"] = t.gatekeep("2018-01-23T09:30:00Z", "run-south-2", "south", "2018-01-23", capacity=5)
    R["link-E05"] = t.link("2018-01-24T09:00:00Z", "NINO:AB777705C", "REF:200000000005")
    R["link-E06"] = t.link("2018-01-24T09:01:00Z", "NINO:AB555506C", "REF:200000000006")   # E-06 is pending
    R["flag-wg"] = t.flag("2018-01-25T09:00:00Z", R["W2"], "wrong_group", corrected_group="early_access")
    R["flag-dup"] = t.flag("2018-01-25T09:01:00Z", R["rcg"], "duplicate")
    R["disclose"] = t.disclose("2018-01-25T09:02:00Z", R["rcg"])
    R["opt-out"] = t.opt_out("2018-01-25T09:03:00Z", "NINO:AB000005C", "2018-01-25")
    R["fu-W1-left"] = t.follow_up("2018-02-10T09:00:00Z", R["W1"], "left", "2018-02-10", "found_work")
    # exactly on the from-dates: E-05 (not selected, recorded 2018-01-10) under its linked NINO,
    # and the south not-selected person (R1: recorded 2018-01-10 + 42, not gk_date 2018-01-05 + 42)
    R["E-07"] = t.refer("2018-02-21T09:00:00Z", "E-07", "NINO:AB777705C", "east", "disability", "2018-02-21")
    south_ns_ident = "NINO:AC0000%sC" % R["south-ns"][2:]
    R["S-17"] = t.refer("2018-02-21T09:10:00Z", "S-17", south_ns_ident, "south", "disability", s17_date)
    # after closes: decisions go on (closes never bounds gk_date)
    R["east-run-2"] = t.gatekeep("2018-04-05T09:00:00Z", "run-east-2", "east", "2018-04-05",
                                 decisions={"E-06": "selected"})
    R["export"] = t.export("2018-04-06T09:00:00Z")
    return t, R


# ---------------------------------------------------------------------------
# 1. vectors
# ---------------------------------------------------------------------------

class Rules2Vectors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v = load_vectors()
        cls.S = bytes.fromhex(cls.v["seed"])
        cls.tid = cls.v["trial_id"]

    def test_key_check(self):
        self.assertEqual(len(self.v["key_check"]), 2)
        for c in self.v["key_check"]:
            self.assertEqual(vb.key_check(bytes.fromhex(c["key"])).hex(), c["hex"], c)
            self.assertEqual(bb._hmac(bytes.fromhex(c["key"]), bb._enc("whp/key-check/v1")).hex(), c["hex"])
        # the vectors' keys are the spec's pseudonym and research keys
        self.assertEqual({c["key"] for c in self.v["key_check"]}, {self.v["pseudonym_key"], self.v["research_key"]})

    def test_provider_seed(self):
        for c in self.v["providers"]["provider_seed"]:
            self.assertEqual(vb.provider_seed(self.S, self.tid, c["stratum"], c["j"]).hex(), c["hex"], c)

    def test_provider_block_seed(self):
        for c in self.v["providers"]["provider_block_seed"]:
            self.assertEqual(vb.provider_block_seed(self.S, self.tid, c["stratum"], c["b"]).hex(), c["hex"], c)

    def test_provider_sequences_generated(self):
        seqs = self.v["providers"]["sequences"]
        self.assertEqual({s["method"] for s in seqs}, {"permuted_block", "simple"})
        for s in seqs:
            phases = [(ph["shares"], ph["draws"]) for ph in s["phases"]]
            got = vb.generate_provider_sequence(self.S, self.tid, s["stratum"], phases, s["block_multipliers"],
                                                s["method"])
            self.assertEqual(got, s["draws"], s["stratum"])

    def test_share_change_abandons_the_open_block(self):
        s = self.v["providers"]["sequences"][0]
        first_new = s["phases"][0]["draws"]
        before, after = s["draws"][first_new - 1], s["draws"][first_new]
        self.assertLess(before["position"] + 1, before["block_size"], "the vector's block was still open")
        self.assertEqual((after["block"], after["position"]), (before["block"] + 1, 0))

    def test_provider_sequences_redrawn_from_recorded_seeds(self):
        # What the providers check does without S: every provider from its seed, block and earlier draws.
        for s in self.v["providers"]["sequences"]:
            dealt, block = {}, None
            for d in s["draws"]:
                items = [x for x in vb.parse_shares(d["shares"]) if x[1] > 0]
                W = sum(w for _, w in items)
                if s["method"] == "permuted_block":
                    if d["block"] != block:
                        block, dealt = d["block"], {}
                    got = vb.urn_draw(bytes.fromhex(d["provider_seed"]), items, d["block_size"] // W,
                                      d["position"], dealt)
                    dealt[got] = dealt.get(got, 0) + 1
                else:
                    got = vb.weighted_draw(bytes.fromhex(d["provider_seed"]), items)
                self.assertEqual(got, d["provider"], (s["stratum"], d["index"]))


class VectorBundles(Case):
    """The providers vectors as whole bundles: the builder reproduces every
    vector draw, and the verifier passes them (with the seed)."""

    def build(self, s):
        v = load_vectors()
        pi = s["stratum"]
        parts = pi.split("|")
        district, arm = parts[0], parts[-1]
        sbg = len(parts) == 3
        group = parts[1] if sbg else "disability"
        shares0 = s["phases"][0]["shares"]
        provs = [{"id": k, "name": k.upper(), "arm": arm, "share": n} for k, n in shares0.items()]
        d = bb.District(district, {arm: 1}, psc=(arm == "PSC"), providers=provs)
        t = bb.Trial([d], trial_id=v["trial_id"], seed=bytes.fromhex(v["seed"]), method=s["method"],
                     multipliers=s["block_multipliers"], stratify_by_group=sbg)
        t.init("2018-01-01T09:00:00Z")
        n = 0
        day = datetime.date(2018, 1, 2)
        for k, ph in enumerate(s["phases"]):
            if k > 0:
                t.set_shares("%sT08:00:00Z" % day, district, arm, day.isoformat(), ph["shares"])
            for _ in range(ph["draws"]):
                n += 1
                at = "%sT09:%02d:00Z" % (day, n)
                t.refer(at, "R-%d" % n, "NINO:AB%06dC" % n, district, group, day.isoformat())
                t.gatekeep(at, "run-%d" % n, district, day.isoformat(), capacity=1)
            day += datetime.timedelta(days=1)
        return t

    def test_vector_sequences_as_bundles(self):
        for s in load_vectors()["providers"]["sequences"]:
            with self.subTest(stratum=s["stratum"]):
                t = self.build(s)
                got = [e["payload"] for e in t.events if e["type"] == "allocated"]
                self.assertEqual(len(got), len(s["draws"]))
                for p, want in zip(got, s["draws"]):
                    self.assertEqual(p["provider_stratum"], s["stratum"])
                    self.assertEqual((p["provider_index"], p["provider"], p["provider_seed"], p["provider_shares"]),
                                     (str(want["index"]), want["provider"], want["provider_seed"], want["shares"]))
                    if s["method"] == "permuted_block":
                        self.assertEqual((p["provider_block"], p["provider_block_size"], p["provider_position"]),
                                         (str(want["block"]), str(want["block_size"]), str(want["position"])))
                b = self.write(t)
                self.assertAllOk(*self.verify(b))
                self.assertAllOk(*self.verify(b, "--seed", t.seed_file))


# ---------------------------------------------------------------------------
# 2. honest rules-2 bundles
# ---------------------------------------------------------------------------

class Honest(Case):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.t, cls.R = full_trial()

    def keys(self, b):
        return ["--pseudonym-key", b + ".pseudonym.key", "--evaluation-key", b + ".evaluation.key"]

    def test_passes_without_and_with_seed_and_keys(self):
        b = self.write(self.t)
        code, report = self.verify(b)
        self.assertAllOk(code, report)
        names = self.names(report)
        for n in ("chain", "config_hash", "config_rules", "commitment_file", "recorded_at", "dates", "locks",
                  "links", "gatekeeper", "draws", "providers", "psc", "follow_up"):
            self.assertIn(n, names)
        for n in ("commitment", "derived_seeds", "lottery", "checkpoint", "derived_tables"):
            self.assertNotIn(n, names)
        self.assertEqual(report["events"], len(self.t.events))
        self.assertEqual(report["head"], self.t.events[-1]["hash"])
        code, report = self.verify(b, "--seed", self.t.seed_file, *self.keys(b))
        self.assertAllOk(code, report)
        for n in ("commitment", "derived_seeds", "lottery"):
            self.assertIn(n, self.names(report))
        self.assertIn("follow-ups", self.check(report, "follow_up")["detail"])

    def test_scenario_exercises_revision_2(self):
        types = [e["type"] for e in self.t.events]
        for ty in ("claimant_linked", "followed_up", "shares_set", "flagged_in_error", "opted_out", "cancelled",
                   "disclosed", "export_made"):
            self.assertIn(ty, types)
        allocs = [e["payload"] for e in self.t.events if e["type"] == "allocated"]
        self.assertEqual({"WHP", "PSC", "RCG"}, {p["arm"] for p in allocs})
        with_provider = [p for p in allocs if "provider" in p]
        self.assertTrue(any(p["arm"] == "PSC" for p in with_provider))
        self.assertTrue(all(("provider" in p) == (p["district"] != "east" and p["arm"] != "RCG") for p in allocs))
        north = [p for p in with_provider if p["district"] == "north"]
        self.assertEqual({p["provider_shares"] for p in north}, {"prov-a=1,prov-b=1", "prov-a=2,prov-b=1"})
        # the share change abandoned an open block
        change = next(n for n, p in enumerate(north) if p["provider_shares"] == "prov-a=2,prov-b=1")
        before, after = north[change - 1], north[change]
        self.assertEqual(int(after["provider_block"]), int(before["provider_block"]) + 1)
        self.assertEqual(after["provider_position"], "0")
        # the unchanged south shares_set kept the south WHP block going
        south = [p for p in with_provider if p["provider_stratum"] == "south|WHP"]
        self.assertEqual({p["provider_shares"] for p in south}, {"w-1=2,w-2=1"})

    def test_commitment_file_absent_is_left_out(self):
        b = self.write(self.t, commitment_file=False)
        code, report, err = run_verifier(b)
        self.assertAllOk(code, report)
        self.assertNotIn("commitment_file", self.names(report))
        self.assertIn(os.path.join(b, "whp-test.commitment.json"), err)

    def test_commitment_file_edited(self):
        b = self.write(self.t)
        path = os.path.join(b, "whp-test.commitment.json")
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        obj["config_hash"] = "0" * 64
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        code, report = self.verify(b)
        self.assertEqual(code, 1)
        self.assertEqual(self.failing(report), {"commitment_file"})
        with open(path, "wb") as f:
            f.write(b"\xff not json")
        code, report = self.verify(b)
        self.assertEqual(self.failing(report), {"commitment_file"})

    def test_wrong_key_files_fail_config_hash(self):
        b = self.write(self.t)
        wrong = os.path.join(os.path.dirname(b), "wrong.key")
        with open(wrong, "w", encoding="ascii") as f:
            f.write("ab" * 32 + "\n")
        for flag in ("--pseudonym-key", "--evaluation-key"):
            with self.subTest(flag=flag):
                code, report = self.verify(b, flag, wrong)
                self.assertFailsAt(code, report, "config_hash", 1)
        # the pseudonym key is not the evaluation key
        code, report = self.verify(b, "--pseudonym-key", b + ".evaluation.key")
        self.assertFailsAt(code, report, "config_hash", 1)

    def test_seed_file_of_any_mode_and_usage_errors(self):
        b = self.write(self.t)
        os.chmod(self.t.seed_file, 0o644)   # a revealed seed is public
        self.assertAllOk(*self.verify(b, "--seed", self.t.seed_file))
        bad = os.path.join(os.path.dirname(b), "bad.hex")
        for content in (b"", b"ABCDEF\n", b"00" * 32, (b"00" * 32) + b"\n\n", b"\xff" * 65):
            with open(bad, "wb") as f:
                f.write(content)
            self.assertEqual(run_verifier(b, "--seed", bad)[0], 2, content)
        self.assertEqual(run_verifier(b, "--seed", os.path.join(self.tmp, "missing.hex"))[0], 2)
        self.assertEqual(run_verifier(b, "--seed", os.path.dirname(b))[0], 2)      # a folder
        self.assertEqual(run_verifier(b, "--pseudonym-key", bad)[0], 2)
        self.assertEqual(run_verifier(os.path.join(self.tmp, "nothing"))[0], 2)
        os.remove(os.path.join(b, "events.jsonl"))
        self.assertEqual(run_verifier(b)[0], 2)

    def test_text_output_and_command_line(self):
        b = self.write(self.t)
        script = os.path.join(HERE, "verify_bundle.py")
        p = subprocess.run([sys.executable, script, b, "--seed", self.t.seed_file], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.decode("utf-8").splitlines()
        self.assertTrue(any(l.startswith("providers ") and " ok " in l for l in lines), lines)
        self.assertTrue(lines[-1].startswith("OK:"))
        p = subprocess.run([sys.executable, script, b, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        report = json.loads(p.stdout)
        self.assertEqual(set(report), {"ok", "events", "head", "checks"})
        for c in report["checks"]:
            self.assertTrue({"name", "ok", "detail"} <= set(c) <= {"name", "ok", "detail", "first_bad_seq"})

    def test_checkpoint(self):
        b = self.write(self.t)
        cp = os.path.join(os.path.dirname(b), "cp.json")
        last = self.t.events[-1]
        with open(cp, "w", encoding="utf-8") as f:
            json.dump({"trial_id": "whp-test", "seq": last["seq"], "head": last["hash"]}, f)
        self.assertAllOk(*self.verify(b, "--checkpoint", cp))
        cut = self.write_events(self.t, self.t.events[:-1])
        code, report = self.verify(cut, "--checkpoint", cp)
        self.assertFailsAt(code, report, "checkpoint", last["seq"])


class HonestVariants(Case):
    def test_simple_stratified(self):
        t, _ = full_trial(method="simple", sbg=True)
        b = self.write(t)
        self.assertAllOk(*self.verify(b))
        self.assertAllOk(*self.verify(b, "--seed", t.seed_file))
        allocs = [e["payload"] for e in t.events if e["type"] == "allocated"]
        self.assertTrue(all("block" not in p and "provider_block" not in p for p in allocs))
        self.assertTrue(all(p["stratum"] == p["district"] + "|" + p["group"] for p in allocs))

    def test_permuted_stratified_multipliers(self):
        t, _ = full_trial(sbg=True, multipliers=(3, 1, 2))
        b = self.write(t)
        self.assertAllOk(*self.verify(b, "--seed", t.seed_file))

    def test_without_providers_the_check_is_left_out(self):
        t, _ = full_trial(providers=False)
        code, report = self.verify(self.write(t))
        self.assertAllOk(code, report)
        self.assertNotIn("providers", self.names(report))

    def test_defaults_without_recruitment_table(self):
        # opens = the UTC date of trial_started; referrals before it fail dates
        t, R = full_trial(recruitment=None, deadlines=None, bank_holidays=None)
        self.assertAllOk(*self.verify(self.write(t), "--seed", t.seed_file))
        b = self.tampered(t, lambda evs: ev_at(evs, 1)["payload"].update(recorded_at="2018-01-02T00:00:00Z"))
        code, report = self.verify(b)
        # N-01 is dated 2018-01-02: on opens, so fine; N-07 (2018-01-01) is before it
        bad = min(R["N-%02d" % k] for k in range(1, 11) if "2018-01-0%d" % (1 + k % 8) < "2018-01-02")
        self.assertFailsAt(code, report, "dates", bad, only=False)
        self.assertLessEqual(self.failing(report), {"dates", "config_hash"})

    def test_dcams_allows_fifo(self):
        t, _ = full_trial(frontline_rcg="dcams", providers=False)
        t2 = bb.Trial(districts(False, south_rule="fifo"), frontline_rcg="dcams", recruitment=RECRUITMENT)
        t2.init("2017-12-20T09:00:00Z")
        for k in range(6):
            t2.refer("2018-01-08T09:00:00Z", "S-%d" % k, "NINO:AB%06dC" % k, "south", "disability",
                     "2018-01-0%d" % (7 - k))
        t2.gatekeep("2018-01-09T09:00:00Z", "run-1", "south", "2018-01-09", capacity=3)
        for tr in (t, t2):
            self.assertAllOk(*self.verify(self.write(tr), "--seed", tr.seed_file))

    def test_rules_1_trial_has_no_rules_2_checks(self):
        # the same scenario as a rules 1 trial: no dates, no config_rules; locks from gk_date,
        # so S-17 may come on gk_date + 42 = 2018-02-16 there
        t, R = full_trial(rules=1, s17_date="2018-02-16", recruitment=None, deadlines=None, bank_holidays=None)
        code, report = self.verify(self.write(t), "--seed", t.seed_file)
        self.assertAllOk(code, report)
        self.assertNotIn("dates", self.names(report))
        self.assertNotIn("config_rules", self.names(report))
        self.assertIn("links", self.names(report))
        self.assertIn("follow_up", self.names(report))
        self.assertNotIn("rules", t.events[0]["payload"])
        # and a fifo district under hidden is fine on rules 1
        t1 = bb.Trial(districts(False, south_rule="fifo"), rules=1)
        t1.init("2017-12-20T09:00:00Z")
        t1.refer("2018-01-08T09:00:00Z", "S-1", "NINO:AB000001C", "south", "disability", "2018-01-07")
        t1.gatekeep("2018-01-09T09:00:00Z", "run-1", "south", "2018-01-09", capacity=1)
        self.assertAllOk(*self.verify(self.write(t1)))

    def test_allocated_once(self):
        def build(allocated_once):
            t = bb.Trial(districts(False), allocated_once=allocated_once, recruitment={"opens": "2018-01-01"})
            t.init("2017-12-20T09:00:00Z")
            for k in range(4):
                t.refer("2018-01-08T09:00:00Z", "E-%d" % k, "NINO:AB%06dC" % k, "east", "disability", "2018-01-08")
            t.gatekeep("2018-01-09T09:00:00Z", "run-1", "east", "2018-01-09",
                       decisions={"E-0": "selected", "E-1": "selected", "E-2": "not_selected"})
            arms = {rid: t.refs[rid]["arm"] for rid in ("E-0", "E-1")}
            # the not-selected person comes back after six weeks: fine either way
            ok = t.refer("2018-02-20T09:00:00Z", "E-2b", "NINO:AB000002C", "east", "disability", "2018-02-20")
            # an allocated person comes back after the 24 months
            late = t.refer("2020-01-10T09:00:00Z", "E-0b", "NINO:AB000000C", "east", "disability", "2020-01-10")
            return t, ok, late, arms

        t, _, late, _ = build(None)
        self.assertAllOk(*self.verify(self.write(t)))
        t, _, late, _ = build(False)
        self.assertAllOk(*self.verify(self.write(t)))
        t, _, late, arms = build(True)
        self.assertIn("allocated_once = true", t.config_files["trial.toml"].decode())
        code, report = self.verify(self.write(t))
        self.assertFailsAt(code, report, "locks", late)
        self.assertIn("allocated_once", self.check(report, "locks")["detail"])


# ---------------------------------------------------------------------------
# 3. tampered rules-2 bundles (re-chained)
# ---------------------------------------------------------------------------

class Tampered(Case):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.t, cls.R = full_trial()

    def edit_payload(self, seq, **changes):
        def edit(evs):
            p = ev_at(evs, seq)["payload"]
            for k, v in changes.items():
                if v is None:
                    p.pop(k, None)
                else:
                    p[k] = v
        return self.tampered(self.t, edit)

    def test_untampered_passes(self):
        self.assertAllOk(*self.verify(self.tampered(self.t, lambda evs: None)))

    # dates (R2) ----------------------------------------------------------------

    def test_backdated_referral_beyond_max_backdate_days(self):
        seq = self.R["N-15"]            # recorded 2018-01-22
        b = self.edit_payload(seq, referral_date="2018-01-07")   # 15 days back
        self.assertFailsAt(*self.verify(b), "dates", seq)
        self.assertIn("max_backdate_days", self.check(self.verify(b)[1], "dates")["detail"])
        b = self.edit_payload(seq, referral_date="2018-01-08")   # 14 days back: the bound itself
        self.assertAllOk(*self.verify(b))

    def test_referral_before_opens(self):
        seq = self.R["N-07"]            # recorded 2018-01-08
        b = self.edit_payload(seq, referral_date="2017-12-31")
        self.assertFailsAt(*self.verify(b), "dates", seq)
        self.assertIn("opens", self.check(self.verify(b)[1], "dates")["detail"])

    def test_referral_after_closes(self):
        # a referral recorded and dated after closes (2018-03-31), appended at the end
        def edit(evs):
            insert(evs, len(evs) + 1, "referred", {
                "referral_id": "LATE-1", "claimant": "cd" * 32, "district": "east", "group": "disability",
                "referral_date": "2018-04-06", "actor": "work_coach:WC0001", "recorded_at": "2018-04-06T10:00:00Z"})
        b = self.tampered(self.t, edit)
        self.assertFailsAt(*self.verify(b), "dates", len(self.t.events) + 1)
        self.assertIn("closes", self.check(self.verify(b)[1], "dates")["detail"])

    def test_referral_dated_after_its_recorded_date(self):
        seq = self.R["N-11"]            # recorded 2018-01-16
        b = self.edit_payload(seq, referral_date="2018-01-17")
        self.assertFailsAt(*self.verify(b), "dates", seq)

    def test_decision_dated_after_its_recorded_date(self):
        run = self.R["east-run"]        # recorded 2018-01-10, gk_date 2018-01-10
        seqs = sorted(v for v in run.values())

        def edit(evs):
            for s in seqs:
                ev_at(evs, s)["payload"]["gk_date"] = "2018-01-11"
        b = self.tampered(self.t, edit)
        self.assertFailsAt(*self.verify(b), "dates", seqs[0])

    def test_decision_backdated_beyond_max_backdate_days(self):
        run = self.R["east-run-2"]      # recorded 2018-04-05, deciding E-06 (dated 2018-01-03)
        seqs = sorted(run.values())

        def edit(evs, gk):
            for s in seqs:
                ev_at(evs, s)["payload"]["gk_date"] = gk
        self.assertFailsAt(*self.verify(self.tampered(self.t, lambda evs: edit(evs, "2018-03-21"))), "dates", seqs[0])
        self.assertAllOk(*self.verify(self.tampered(self.t, lambda evs: edit(evs, "2018-03-22"))))

    def test_decision_after_closes_is_fine(self):
        s = self.R["east-run-2"]["E-06"]
        self.assertEqual(ev_at(self.t.events, s)["payload"]["gk_date"], "2018-04-05")
        self.assertAllOk(*self.verify(self.write(self.t)))

    def test_follow_up_dated_after_its_recorded_date_fails_dates(self):
        seq = self.R["fu-W1-left"]      # recorded 2018-02-10
        self.assertFailsAt(*self.verify(self.edit_payload(seq, date="2018-02-11")), "dates", seq)

    # locks (R1, R6, R14) ----------------------------------------------------------

    def test_r1_lock_runs_from_the_recorded_date(self):
        # the south run was back-dated to 2018-01-05 but recorded on 2018-01-10:
        # the not-selected person may come back on 2018-02-21, not 2018-02-16
        seq = self.R["S-17"]
        self.assertFailsAt(*self.verify(self.edit_payload(seq, referral_date="2018-02-20")), "locks", seq)
        self.assertFailsAt(*self.verify(self.edit_payload(seq, referral_date="2018-02-16")), "locks", seq)

    def test_linked_person_reenters_inside_lock_by_the_other_identifier(self):
        # E-05 (REF) was not selected on 2018-01-10 and linked to a NINO on 2018-01-24; E-07 by that NINO
        # on 2018-02-21 is exactly on the from-date. A day earlier is inside the lock.
        seq = self.R["E-07"]
        self.assertFailsAt(*self.verify(self.edit_payload(seq, referral_date="2018-02-20")), "locks", seq)

    def test_referral_by_the_other_identifier_before_the_link_is_not_judged_by_it(self):
        # the same early re-referral, but made before the link was recorded: R6 judges it by
        # the links recorded before it, so it stands (and the link then joins a decided person)
        def edit(evs):
            e07 = ev_at(evs, self.R["E-07"])
            evs.remove(e07)
            e07["payload"].update(referral_date="2018-01-23", recorded_at="2018-01-23T12:00:00Z")
            insert(evs, self.R["link-E05"], e07["type"], e07["payload"])
        code, report = self.verify(self.tampered(self.t, edit))
        # E-07 now waits for the gatekeeper when the link is made: the person does not get two
        # awaiting referrals (E-05 was decided), so links holds too
        self.assertAllOk(code, report)

    def test_link_giving_two_awaiting_referrals_fails_links(self):
        # E-06 (REF) is pending when linked; a referral under the NINO made just before the link
        def edit(evs):
            insert(evs, self.R["link-E06"], "referred", {
                "referral_id": "E-99", "claimant": self.t.pseud("NINO:AB555506C"), "district": "east",
                "group": "disability", "referral_date": "2018-01-24", "actor": "work_coach:WC0001",
                "recorded_at": "2018-01-24T09:00:30Z"})
        code, report = self.verify(self.tampered(self.t, edit))
        self.assertFailsAt(code, report, "links", self.R["link-E06"] + 1)

    def test_pending_linked_alias_blocks_a_referral_by_the_nino(self):
        # after the link, E-06 (REF) awaits the gatekeeper: a referral by the NINO is a duplicate
        def edit(evs):
            insert(evs, self.R["link-E06"] + 1, "referred", {
                "referral_id": "E-98", "claimant": self.t.pseud("NINO:AB555506C"), "district": "east",
                "group": "disability", "referral_date": "2018-01-24", "actor": "work_coach:WC0001",
                "recorded_at": "2018-01-24T09:02:00Z"})
        code, report = self.verify(self.tampered(self.t, edit))
        self.assertFailsAt(code, report, "locks", self.R["link-E06"] + 1)
        self.assertIn("awaits the gatekeeper", self.check(report, "locks")["detail"])

    def test_rereferral_inside_rcg_lock(self):
        rcg = self.R["rcg"]
        claimant = self.t.refs[rcg]["claimant"]

        def edit(evs):
            insert(evs, self.R["E-07"], "referred", {
                "referral_id": "X-1", "claimant": claimant, "district": "east", "group": "disability",
                "referral_date": "2018-02-21", "actor": "work_coach:WC0001", "recorded_at": "2018-02-21T08:00:00Z"})
        code, report = self.verify(self.tampered(self.t, edit))
        self.assertFailsAt(code, report, "locks", self.R["E-07"])

    def test_cancel_of_a_decided_referral_and_repeated_opt_out(self):
        def edit(evs):
            insert(evs, self.R["opt-out"] + 1, "cancelled", {"referral_id": self.R["rcg"], "reason": "x",
                                                             "actor": "work_coach:WC0001",
                                                             "recorded_at": "2018-01-25T09:04:00Z"})
        self.assertFailsAt(*self.verify(self.tampered(self.t, edit)), "locks", self.R["opt-out"] + 1)

        def edit2(evs):
            p = dict(ev_at(evs, self.R["opt-out"])["payload"], recorded_at="2018-01-25T09:05:00Z")
            insert(evs, self.R["opt-out"] + 1, "opted_out", p)
        self.assertFailsAt(*self.verify(self.tampered(self.t, edit2)), "locks", self.R["opt-out"] + 1)

    def test_opt_out_under_a_linked_identifier_of_an_opted_out_person(self):
        # NINO:AB777705C is linked to E-05's REF: an opt-out of each is one person opting out twice
        def edit(evs):
            for n, ident in enumerate(("REF:200000000005", "NINO:AB777705C")):
                insert(evs, self.R["opt-out"] + 1 + n, "opted_out", {
                    "claimant": self.t.pseud(ident), "date": "2018-01-25", "actor": "evaluation_admin:EV01",
                    "recorded_at": "2018-01-25T09:0%d:00Z" % (5 + n)})
        self.assertFailsAt(*self.verify(self.tampered(self.t, edit)), "locks", self.R["opt-out"] + 2)

    # links (R6) ------------------------------------------------------------------

    def test_second_link_of_an_alias_to_another_claimant(self):
        def edit(evs):
            insert(evs, self.R["link-E06"] + 1, "claimant_linked", {
                "claimant": self.t.pseud("NINO:ZZ999999Z"), "alias": self.t.pseud("REF:200000000005"),
                "actor": "work_coach:WC0001", "recorded_at": "2018-01-24T09:02:00Z"})
        self.assertFailsAt(*self.verify(self.tampered(self.t, edit)), "links", self.R["link-E06"] + 1)

    def test_repeated_link_and_alias_used_as_claimant(self):
        for claimant, alias in (("NINO:AB777705C", "REF:200000000005"),     # the same pair again
                                ("REF:200000000005", "REF:300000000001"),   # an alias as a claimant
                                ("NINO:AB000001C", "NINO:AB777705C")):     # a claimant as an alias
            with self.subTest(claimant=claimant, alias=alias):
                def edit(evs):
                    insert(evs, self.R["link-E06"] + 1, "claimant_linked", {
                        "claimant": self.t.pseud(claimant), "alias": self.t.pseud(alias),
                        "actor": "work_coach:WC0001", "recorded_at": "2018-01-24T09:02:00Z"})
                self.assertFailsAt(*self.verify(self.tampered(self.t, edit)), "links", self.R["link-E06"] + 1)
        b = self.edit_payload(self.R["link-E05"], alias="not-hex")
        code, report = self.verify(b)
        self.assertFailsAt(code, report, "links", self.R["link-E05"], only=False)

    # follow-up (R14) ----------------------------------------------------------------

    def test_follow_up_out_of_order(self):
        seq = self.R["fu-W1-pr"]
        code, report = self.verify(self.edit_payload(seq, step="started"))
        self.assertFailsAt(code, report, "follow_up", seq)
        # left straight after provider_referral
        seq = self.R["fu-W1-st"]
        code, report = self.verify(self.edit_payload(seq, step="left", reason="completed"))
        self.assertFailsAt(code, report, "follow_up", seq)

    def test_follow_up_step_twice(self):
        def edit(evs):
            p = dict(ev_at(evs, self.R["fu-W1-pr"])["payload"], recorded_at="2018-01-12T09:20:00Z")
            insert(evs, self.R["fu-psc-pr"] + 1, "followed_up", p)
        self.assertFailsAt(*self.verify(self.tampered(self.t, edit)), "follow_up", self.R["fu-psc-pr"] + 1)

    def test_follow_up_on_rcg_and_unknown_and_not_selected_referrals(self):
        for rid in (self.R["rcg"], "NO-SUCH", "E-05"):
            with self.subTest(rid=rid):
                def edit(evs):
                    insert(evs, self.R["fu-psc-pr"] + 1, "followed_up", {
                        "referral_id": rid, "step": "provider_referral", "date": "2018-01-12",
                        "actor": "work_coach:WC0001", "recorded_at": "2018-01-12T09:20:00Z"})
                self.assertFailsAt(*self.verify(self.tampered(self.t, edit)), "follow_up", self.R["fu-psc-pr"] + 1)

    def test_follow_up_before_the_decisions_recorded_date(self):
        seq = self.R["fu-psc-pr"]       # dated 2018-01-10, the decision's recorded date (allowed)
        self.assertFailsAt(*self.verify(self.edit_payload(seq, date="2018-01-09")), "follow_up", seq)
        seq = self.R["fu-W1-st"]        # before its provider_referral (2018-01-12)
        self.assertFailsAt(*self.verify(self.edit_payload(seq, date="2018-01-11")), "follow_up", seq)

    def test_follow_up_reasons(self):
        for seq, change in ((self.R["fu-W2-dns"], {"reason": None}), (self.R["fu-W2-dns"], {"reason": "found_work"}),
                            (self.R["fu-W1-left"], {"reason": "declined"}), (self.R["fu-W1-st"], {"reason": "other"}),
                            (self.R["fu-W1-pr"], {"date": "9999-12-31"}), (self.R["fu-W1-pr"], {"step": "finished"})):
            with self.subTest(seq=seq, change=change):
                self.assertFailsAt(*self.verify(self.edit_payload(seq, **change)), "follow_up", seq)

    # gatekeeper: flags (R14) ---------------------------------------------------------

    def test_corrected_group_without_wrong_group(self):
        seq = self.R["flag-wg"]
        self.assertFailsAt(*self.verify(self.edit_payload(seq, reason="other")), "gatekeeper", seq)
        self.assertFailsAt(*self.verify(self.edit_payload(seq, corrected_group="nonsense")), "gatekeeper", seq)
        self.assertAllOk(*self.verify(self.edit_payload(seq, corrected_group=None)))
        seq = self.R["flag-dup"]
        self.assertFailsAt(*self.verify(self.edit_payload(seq, corrected_group="disability")), "gatekeeper", seq)

    # providers (R15) -------------------------------------------------------------------

    def provider_allocs(self, district=None):
        return [e for e in self.t.events if e["type"] == "allocated" and "provider" in e["payload"]
                and (district is None or e["payload"]["district"] == district)]

    def test_tampered_provider_fails_providers(self):
        e = self.provider_allocs("north")[3]
        other = "prov-a" if e["payload"]["provider"] != "prov-a" else "prov-b"
        self.assertFailsAt(*self.verify(self.edit_payload(e["seq"], provider=other)), "providers", e["seq"])

    def test_provider_shares_not_in_force(self):
        # an allocation after 2018-01-20 claiming the old shares
        e = [x for x in self.provider_allocs("north") if x["payload"]["provider_shares"] == "prov-a=2,prov-b=1"][0]
        code, report = self.verify(self.edit_payload(e["seq"], provider_shares="prov-a=1,prov-b=1"))
        self.assertFailsAt(code, report, "providers", e["seq"])
        self.assertIn("in force", self.check(report, "providers")["detail"])

    def test_shares_set_effective_later_is_not_in_force(self):
        # moving the north shares_set's effective date past the last allocation: every
        # allocation that used the new shares now claims shares not in force
        e = [x for x in self.provider_allocs("north") if x["payload"]["provider_shares"] == "prov-a=2,prov-b=1"][0]
        b = self.edit_payload(self.R["shares-north"], effective="2018-06-01")
        self.assertFailsAt(*self.verify(b), "providers", e["seq"])

    def test_shares_that_leave_no_provider(self):
        seq = self.R["shares-north"]
        code, report = self.verify(self.edit_payload(seq, shares="prov-a=0,prov-b=0"))
        self.assertFailsAt(code, report, "providers", seq)
        e = self.provider_allocs("north")[0]
        code, report = self.verify(self.edit_payload(e["seq"], provider_shares="prov-a=0,prov-b=0"))
        self.assertFailsAt(code, report, "providers", e["seq"])

    def test_bad_shares_set_events(self):
        seq = self.R["shares-north"]
        for change in ({"district": "nowhere"}, {"arm": "RCG"}, {"arm": "PSC"}, {"shares": "prov-a=2"},
                       {"shares": "prov-b=1,prov-a=2"}, {"shares": "prov-a=1001,prov-b=1"},
                       {"effective": "2018-01-14"}, {"effective": "3000-01-01"}):
            with self.subTest(change=change):
                code, report = self.verify(self.edit_payload(seq, **change))
                c = self.check(report, "providers")
                self.assertEqual(c.get("first_bad_seq"), seq, c)

    def test_missing_and_unexpected_provider_fields(self):
        e = self.provider_allocs("south")[0]
        drop = {k: None for k in vb.PROVIDER_KEYS}
        self.assertFailsAt(*self.verify(self.edit_payload(e["seq"], **drop)), "providers", e["seq"])
        rcg = next(x for x in self.t.events if x["type"] == "allocated" and x["payload"]["arm"] == "RCG")
        add = {k: e["payload"][k] for k in vb.PROVIDER_KEYS}
        self.assertFailsAt(*self.verify(self.edit_payload(rcg["seq"], **add)), "providers", rcg["seq"])

    def test_provider_block_facts(self):
        e = self.provider_allocs("north")[1]
        for change in ({"provider_position": "5"}, {"provider_block": "7"}, {"provider_index": "0"},
                       {"provider_stratum": "north|PSC"}, {"provider_block_size": "30000000000"},
                       {"provider_seed": "zz"}):
            with self.subTest(change=change):
                self.assertFailsAt(*self.verify(self.edit_payload(e["seq"], **change)), "providers", e["seq"],
                                   only=False)

    def test_wrong_provider_seed_fails_derived_seeds_with_seed(self):
        e = self.provider_allocs("north")[2]
        # a substitute seed that draws the same provider, so that only S can tell
        for k in range(200):
            fake = hashlib.sha256(b"fake %d" % k).hexdigest()
            b = self.edit_payload(e["seq"], provider_seed=fake)
            code, report = self.verify(b)
            if code == 0:
                break
        else:
            self.fail("no substitute provider_seed draws the same provider")
        self.assertAllOk(code, report)
        code, report = self.verify(b, "--seed", self.t.seed_file)
        self.assertFailsAt(code, report, "derived_seeds", e["seq"])

    def test_wrong_provider_block_size_with_seed(self):
        # a block opened with the other multiplier: without S it is a valid size; S tells
        e = next(x for x in self.provider_allocs("south") if x["payload"]["provider_position"] == "0")
        seqs = [x["seq"] for x in self.provider_allocs("south")
                if x["payload"]["provider_stratum"] == e["payload"]["provider_stratum"]
                and x["payload"]["provider_block"] == e["payload"]["provider_block"]]
        size = int(e["payload"]["provider_block_size"])
        W = 3 if e["payload"]["arm"] == "WHP" else 1
        other = str(W * (1 if size == 2 * W else 2))

        def edit(evs):
            for s in seqs:
                ev_at(evs, s)["payload"]["provider_block_size"] = other
        code, report = self.verify(self.tampered(self.t, edit), "--seed", self.t.seed_file)
        self.assertEqual(self.check(report, "derived_seeds").get("first_bad_seq"), e["seq"])

    def test_wrong_alloc_seed_and_lottery_key_with_seed(self):
        d = self.R["north-run"]
        seq = min(d.values())
        key = ev_at(self.t.events, seq)["payload"]["lottery_key"]
        b = self.edit_payload(seq, lottery_key=key[:-1] + ("0" if key[-1] != "0" else "1"))
        code, report = self.verify(b, "--seed", self.t.seed_file)
        self.assertFailsAt(code, report, "lottery", seq, only=False)

    # config_rules (R3), config_hash (R0, R4) ----------------------------------------------

    def test_fifo_under_hidden_fails_config_rules(self):
        t = bb.Trial(districts(False, south_rule="fifo"), recruitment=RECRUITMENT)
        t.init("2017-12-20T09:00:00Z")
        t.refer("2018-01-08T09:00:00Z", "S-1", "NINO:AB000001C", "south", "disability", "2018-01-07")
        t.gatekeep("2018-01-09T09:00:00Z", "run-1", "south", "2018-01-09", capacity=1)
        code, report = self.verify(self.write(t))
        self.assertFailsAt(code, report, "config_rules", 1)
        self.assertIn("lottery", self.check(report, "config_rules")["detail"])

    def test_rules_versions(self):
        for value in ("1", "3", "", "02", "2 "):
            with self.subTest(rules=value):
                b = self.edit_payload(1, rules=value)
                code, report = self.verify(b)
                self.assertFailsAt(code, report, "config_hash", 1, only=False)
        for k in ("pseudonym_key_check", "evaluation_key_check"):
            for v in (None, "AB" * 32, "ab" * 31):
                with self.subTest(key=k, value=v):
                    code, report = self.verify(self.edit_payload(1, **{k: v}))
                    self.assertFailsAt(code, report, "config_hash", 1)

    def test_trial_started_disagrees_with_trial_toml(self):
        for k, v in (("method", "simple"), ("frontline_rcg", "dcams"), ("stratify_by_group", "true"),
                     ("block_multipliers", "1,3"), ("algorithm", "whp/v2")):
            with self.subTest(key=k):
                code, report = self.verify(self.edit_payload(1, **{k: v}))
                self.assertFailsAt(code, report, "config_hash", 1, only=False)

    def test_unknown_event_type_and_second_trial_started(self):
        def edit(evs):
            insert(evs, 5, "reallocated", {"recorded_at": "2018-01-08T09:00:00Z"})

        def edit2(evs):
            insert(evs, 5, "trial_started", dict(evs[0]["payload"], recorded_at="2018-01-08T09:00:00Z"))
        for e in (edit, edit2):
            code, report = self.verify(self.tampered(self.t, e))
            self.assertEqual(code, 1)
            self.assertEqual(self.check(report, "chain").get("first_bad_seq"), 5)
            self.assertEqual(self.failing(report), {"chain"})


class ConfigFiles(Case):
    """The config keys of RULES2 and the two TOML readers."""

    def test_mini_reader_agrees_with_tomllib(self):
        t, _ = full_trial()
        texts = [v.decode("utf-8") for v in t.config_files.values()]
        for name in ("trial.toml", "districts.toml"):
            with open(os.path.join(REPO, "district-config", name), encoding="utf-8") as f:
                texts.append(f.read())
        cal = os.path.join(REPO, "district-config", "calendar.toml")
        if os.path.exists(cal):
            with open(cal, encoding="utf-8") as f:
                texts.append(f.read())
        texts.append('[[district]]\nid = "a"\n[district.weights]\nWHP = 1\n[[district.provider]]\nid = "p"\n'
                     'name = "P \\u00e9"\narm = \'WHP\'\nshare = 1_0\n[[district]]\nid = "b"\n'
                     '[[district.provider]]\nid = "q"\n[[district.provider]]\nid = "r"\n')
        texts.append('[recruitment]\nopens = 2018-01-01\ncloses = "2019-02-28"\nx = 1.5\ny = [[1, 2], ["a"]]\n')
        texts.append('a = ' + '[' * 200 + ']' * 200 + '\n')
        for text in texts:
            mini = vb._MiniToml(text).parse()
            if vb._toml is not None:
                self.assertEqual(mini, vb._toml.loads(text), text[:200])
            self.assertTrue(mini)
        self.assertEqual(vb._MiniToml(texts[-3]).parse()["district"][0]["provider"][0]["share"], 10)

    def test_mini_reader_refuses_what_tomllib_refuses(self):
        for text in ('a = 1\na = 2\n', '[t]\n[t]\n', 'a = [1,\n', 'a = "x\n', 'a = 01\n', '[[a]]\n[a]\n',
                     'a = ' + '[' * 5000 + ']' * 5000 + '\n', 'a = "\\ud800"\n', 'a = {b = 1, b = 2}\n', '= 1\n'):
            with self.subTest(text=text[:30]):
                with self.assertRaises(ValueError):
                    vb._MiniToml(text).parse()
                with self.assertRaises(ValueError):
                    vb.load_toml(text.encode("utf-8"))

    def test_provider_and_window_config_errors_fail_config_rules(self):
        cases = [
            ("districts.toml", "share = 1", "share = 1001"),
            ("districts.toml", 'id = "prov-a"', 'id = "Prov A"'),
            ("districts.toml", 'id = "prov-a"', 'id = "prov-b"'),            # not unique
            ("districts.toml", 'name = "Public One"', 'name = ""'),
            ("trial.toml", "max_backdate_days = 14", "max_backdate_days = 366"),
            ("trial.toml", 'opens = "2018-01-01"', "opens = 2018-01-01"),     # a TOML date, not a string
            ("trial.toml", 'closes = "2018-03-31"', 'closes = "2018-02-30"'),
            ("trial.toml", "pending_days = 28", "pending_days = -1"),
            ("calendar.toml", '"2018-03-30"', '"2018-13-30"'),
        ]
        for name, old, new in cases:
            with self.subTest(new=new):
                t, _ = full_trial()
                text = t.config_files[name].decode("utf-8")
                self.assertIn(old, text)
                t2, _ = full_trial()
                t2.config_files[name] = text.replace(old, new, 1).encode("utf-8")
                t2.events = []
                t2.head = None
                t2.now = None
                t2.init("2017-12-20T09:00:00Z")      # a trial_started over the edited config
                rest = copy.deepcopy(t.events[1:])
                b = self.write_events(t2, rechain([t2.events[0]] + rest))
                code, report = self.verify(b)
                c = self.check(report, "config_rules")
                self.assertFalse(c["ok"], c)
                self.assertEqual(c.get("first_bad_seq"), 1)
                self.assertTrue(self.check(report, "config_hash")["ok"], self.check(report, "config_hash"))

    def test_psc_provider_where_psc_is_false(self):
        d = [bb.District("north", {"WHP": 1, "RCG": 1}, psc=False,
                         providers=[{"id": "p", "name": "P", "arm": "PSC", "share": 1}])]
        t = bb.Trial(d)
        t.init("2017-12-20T09:00:00Z")
        code, report = self.verify(self.write(t))
        self.assertFailsAt(code, report, "config_rules", 1)
        self.assertIn("psc = false", self.check(report, "config_rules")["detail"])


def random_honest_trial(rng, method, sbg, multipliers):
    """A random scenario that the service could have written: fresh and returning
    claimants (only once every lock of their person has ended), capacity and manual
    runs, share changes, links of fresh identifiers, follow-ups in order."""
    ws = lambda arms: {a: rng.randrange(1, 4) for a in arms}
    ds = [bb.District("north", ws(("WHP", "RCG")), providers=[
              {"id": "prov-%s" % c, "name": c, "arm": "WHP", "share": rng.randrange(0, 3) + (c == "a")}
              for c in "abc"]),
          bb.District("south", ws(("WHP", "PSC", "RCG")), psc=True, providers=[
              {"id": "w-1", "name": "W1", "arm": "WHP", "share": rng.randrange(1, 4)},
              {"id": "p-1", "name": "P1", "arm": "PSC", "share": rng.randrange(1, 3)},
              {"id": "p-2", "name": "P2", "arm": "PSC", "share": rng.randrange(0, 3)}]),
          bb.District("east", ws(("WHP", "RCG")), rule="lottery")]
    t = bb.Trial(ds, method=method, stratify_by_group=sbg, multipliers=multipliers,
                 recruitment={"opens": "2018-01-01", "max_backdate_days": 7})
    t.init("2017-12-31T09:00:00Z")
    day = datetime.date(2018, 1, 2)
    people = {}         # identifier -> person key; person key -> [referral ids]
    refs_of = {}
    last_gk = {}
    n = 0
    steps = {}          # referral id -> [(step, date)]

    def person(ident):
        return people.get(ident, ident)

    def can_refer(ident, date):
        for rid in refs_of.get(person(ident), []):
            r = t.refs[rid]
            if r["state"] in ("awaiting", "selected"):
                return False
            if r["state"] == "cancelled":
                continue
            kind = "not_selected" if r["state"] == "not_selected" else r["arm"]
            if date < bb.lock_from(r["decided_at"], kind):
                return False
        return True

    for step in range(45):
        day += datetime.timedelta(days=rng.randrange(1, 4))
        clock = [0]

        def at():
            clock[0] += 1
            return "%sT09:%02d:%02dZ" % (day, clock[0] // 60, clock[0] % 60)
        for _ in range(rng.randrange(0, 5)):
            n += 1
            ident = ("REF:%012d" % n) if rng.random() < 0.3 else "NINO:AB%06dC" % n
            if rng.random() < 0.3 and refs_of:
                ident = rng.choice(sorted(refs_of))
                aliases = sorted(a for a, c in people.items() if c == ident)
                if aliases and rng.random() < 0.5:
                    ident = rng.choice(aliases)      # the person by another identifier
            date = max(day - datetime.timedelta(days=rng.randrange(0, 6)), datetime.date(2018, 1, 1)).isoformat()
            if can_refer(ident, date):
                rid = "R-%d" % n
                t.refer(at(), rid, ident, rng.choice(["north", "south", "east"]),
                        rng.choice(["disability", "early_access"]), date)
                refs_of.setdefault(person(ident), []).append(rid)
            if rng.random() < 0.05:
                waiting = [r for r, v in t.refs.items() if v["state"] == "awaiting"]
                if waiting:
                    t.cancel(at(), rng.choice(sorted(waiting)))
        unlinked = sorted(k for k in refs_of if k.startswith("REF:") and k not in people)
        if rng.random() < 0.3 and unlinked:
            # a referred reference number turns out to belong to a NINO nobody referred
            n += 1
            nino, ref = "NINO:AL%06dC" % n, rng.choice(unlinked)
            t.link(at(), nino, ref)
            people[ref] = nino
            refs_of[nino] = refs_of.pop(ref)
        for district in ("north", "south", "east"):
            if rng.random() < 0.5:
                continue
            gk = max(last_gk.get(district, datetime.date(2018, 1, 1)), day - datetime.timedelta(days=rng.randrange(0, 4)))
            pending = [r for r, v in t.refs.items() if v["state"] == "awaiting" and v["district"] == district
                       and v["date"] <= gk.isoformat()]
            if not pending:
                continue
            last_gk[district] = gk
            if rng.random() < 0.2:
                pick = rng.sample(sorted(pending), rng.randrange(1, len(pending) + 1))
                t.gatekeep(at(), "run-%d-%s" % (step, district), district, gk.isoformat(),
                           decisions={r: rng.choice(["selected", "not_selected"]) for r in pick})
            else:
                t.gatekeep(at(), "run-%d-%s" % (step, district), district, gk.isoformat(),
                           capacity=rng.randrange(0, 6))
        if rng.random() < 0.2:
            district, arm = rng.choice([("north", "WHP"), ("south", "WHP"), ("south", "PSC")])
            ids = [p["id"] for p in t.districts[district].providers if p["arm"] == arm]
            shares = {i: rng.randrange(0, 4) for i in ids}
            if any(shares.values()):
                t.set_shares(at(), district, arm, (day + datetime.timedelta(days=rng.randrange(0, 4))).isoformat(),
                             shares)
        for rid in sorted(t.refs):
            r = t.refs[rid]
            if r["arm"] not in ("WHP", "PSC") or rng.random() < 0.7:
                continue
            done = steps.setdefault(rid, [])
            names = [s_ for s_, _ in done]
            floor = done[-1][1] if done else r["decided_at"]
            if day.isoformat() < floor:
                continue
            if not done:
                nxt, reason = "provider_referral", None
            elif names[-1] == "provider_referral":
                nxt = rng.choice(["started", "did_not_start"])
                reason = "moved_away" if nxt == "did_not_start" else None
            elif names[-1] == "started":
                nxt, reason = "left", "health"
            else:
                continue
            t.follow_up(at(), rid, nxt, day.isoformat(), reason)
            done.append((nxt, day.isoformat()))
    return t


class RandomHonest(Case):
    """Random honest scenarios pass: a guard against false failures of the deep checks."""

    def test_random_honest_trials_pass(self):
        rng = random.Random(2018)
        for n in range(24):
            method = ("permuted_block", "simple")[n % 2]
            sbg = n % 4 >= 2
            mult = rng.choice([(1,), (1, 2), (2, 3, 1), (4,)])
            with self.subTest(n=n, method=method, sbg=sbg, multipliers=mult):
                t = random_honest_trial(rng, method, sbg, mult)
                types = [e["type"] for e in t.events]
                self.assertGreater(types.count("allocated"), 5)
                b = self.write(t)
                self.assertAllOk(*self.verify(b, "--seed", t.seed_file))


# ---------------------------------------------------------------------------
# 4. hostile bundles: the verifier never raises
# ---------------------------------------------------------------------------

NASTY = ["", "0", "00", "-1", "+1", "1e9", "1.0", "2147483647", "2147483648", "4294967296", "30000000000",
         "18446744073709551616", "9" * 400, "NaN", " 1", "9999-12-31", "0000-01-01", "2018-02-30", "1899-12-31",
         "3000-01-01", "2999-12-31", "9999-12-31T23:59:59Z", "2018-01-01T24:00:00Z", "x" * 3000, "\u0000",
         "\u00e9\u4e2d", "WHP", "PSC", "RCG", "selected", "lottery", "fifo", "manual", "wrong_group",
         "prov-a=0,prov-b=0", "prov-a=1", "=", ",", "a=1,a=1", "ab" * 32, "AB" * 32, "north", "south", "east",
         "N-01", "E-05", "run-north-1", "provider_referral", "started", "left", "did_not_start", "2"]
KEYS = ["referral_id", "claimant", "district", "group", "referral_date", "gk_date", "decision", "rule", "run_id",
        "lottery_key", "capacity", "stratum", "index", "arm", "alloc_seed", "block", "block_size", "position",
        "provider", "provider_stratum", "provider_index", "provider_seed", "provider_shares", "provider_block",
        "provider_block_size", "provider_position", "recorded_at", "step", "date", "reason", "alias",
        "corrected_group", "effective", "shares", "rules", "method", "block_multipliers", "trial_id",
        "commitment", "config_hash", "stratify_by_group", "frontline_rcg"]
TYPES = sorted(vb.EVENT_TYPES) + ["bogus", ""]


def mutate(rng, events):
    """One random change of the events (dicts); returns a description."""
    n = len(events)
    k = rng.randrange(n) if rng.random() < 0.9 else 0
    e = events[k]
    r = rng.random()
    if r < 0.45:
        key = rng.choice(list(e["payload"]) + KEYS) if rng.random() < 0.7 else rng.choice(KEYS)
        e["payload"][key] = rng.choice(NASTY + [v for x in rng.sample(events, 3) for v in x["payload"].values()])
        return "set %s of event %d" % (key, k + 1)
    if r < 0.6 and e["payload"]:
        key = rng.choice(list(e["payload"]))
        del e["payload"][key]
        return "delete %s of event %d" % (key, k + 1)
    if r < 0.7:
        e["type"] = rng.choice(TYPES)
        return "type of event %d" % (k + 1)
    if r < 0.8:
        events.insert(rng.randrange(n), copy.deepcopy(rng.choice(events)))
        return "duplicate an event"
    if r < 0.88:
        i, j = rng.randrange(n), rng.randrange(n)
        events[i], events[j] = events[j], events[i]
        return "swap two events"
    if r < 0.94 and n > 2:
        del events[rng.randrange(1, n)]
        return "delete an event"
    e["payload"] = {}
    return "empty payload of event %d" % (k + 1)


def raw_mutate(rng, lines):
    r = rng.random()
    k = rng.randrange(len(lines))
    if r < 0.2:
        lines.insert(k, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))))
    elif r < 0.35:
        lines[k] = lines[k][:rng.randrange(len(lines[k]))]
    elif r < 0.5:
        lines.insert(k, lines[k])
    elif r < 0.6:
        lines.insert(k, b"[" * 100000 + b"]" * 100000)
    elif r < 0.7:
        lines.insert(k, b'{"seq": 1e400, "type": "x", "payload": {}, "hash": "00"}')
    elif r < 0.8:
        lines.insert(k, b'{"seq": ' + b"9" * 5000 + b', "type": "x", "payload": {}, "hash": "00"}')
    elif r < 0.9:
        lines[k] = lines[k].replace(b'"payload":{', b'"payload":{"deep":' + b"{\"a\":" * 3000 + b"1" + b"}" * 3000 + b",", 1)
    else:
        lines.insert(k, b'{"seq":1,"seq":2,"type":"x","payload":{"a":"\\ud800"},"hash":"' + b"0" * 64 + b'"}')


class Hostile(Case):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bases = [full_trial()[0], full_trial(method="simple", sbg=True)[0]]

    def assertReports(self, bundle, *extra, what=""):
        code, report, err = run_verifier(bundle, *extra)
        self.assertIn(code, (0, 1), "%s: exit %d: %s" % (what, code, err[-2000:]))
        self.assertEqual(set(report), {"ok", "events", "head", "checks"})
        for c in report["checks"]:
            self.assertNotIn("internal error", c["detail"], (what, c))
            if "first_bad_seq" in c:
                self.assertIsInstance(c["first_bad_seq"], int)
        self.assertEqual(report["ok"], code == 0)
        return code, report

    def test_mutated_bundles(self):
        rng = random.Random(20180101)
        n_fail = 0
        for n in range(360):
            t = self.bases[n % 2]
            evs = copy.deepcopy(t.events)
            what = []
            for _ in range(rng.randrange(1, 5)):
                what.append(mutate(rng, evs))
            evs = [e for e in evs if isinstance(e, dict)]
            try:
                rechain(evs)
            except Exception:
                pass    # a mutation broke trial_started: the hashes stay as they were
            lines = [json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for e in evs]
            if rng.random() < 0.25:
                raw_mutate(rng, lines)
                what.append("raw")
            b = self.write_events(t, None, raw_lines=lines)
            extra = ["--seed", t.seed_file] if n % 3 == 0 else []
            code, _ = self.assertReports(b, *extra, what="; ".join(what))
            n_fail += code == 1
            shutil.rmtree(os.path.dirname(b))
        self.assertGreater(n_fail, 300)

    def test_mutated_configs(self):
        t = self.bases[0]
        rng = random.Random(7)
        bad = [b"\xff\xfe", b"a = " + b"[" * 5000, b"[[district]]\nid = 5\n", b"[locks]\nnot_selected_days = " +
               b"9" * 30 + b"\nrcg_months = 99999999999999999999\nallocated_months = 1\n",
               b"[[district]]\nid = \"north\"\nweights = { WHP = 99999999999999999999 }\npsc = false\n"
               b"gatekeeper_rule = \"lottery\"\n[[district.provider]]\nid = \"prov-a\"\nshare = 1\n",
               b"[recruitment]\nopens = \"9999-12-31\"\n", b"district = 3\n", b"[[district.provider]]\nid = \"x\"\n"]
        for n in range(40):
            b = self.write(t)
            name = rng.choice(["trial.toml", "districts.toml", "calendar.toml"])
            path = os.path.join(b, "district-config", name)
            if rng.random() < 0.5 and os.path.exists(path):
                with open(path, "rb") as f:
                    data = f.read()
                data = data + b"\n" + rng.choice(bad)
            else:
                data = rng.choice(bad)
            with open(path, "wb") as f:
                f.write(data)
            self.assertReports(b, "--seed", t.seed_file, what="%s %r" % (name, data[:60]))

    def test_huge_lock_lengths_clamp_at_9999(self):
        d = vb.datetime.date(2999, 12, 31)
        self.assertEqual(vb.add_months(d, 10 ** 30), vb.CALENDAR_END)
        self.assertEqual(vb.add_days(d, 10 ** 30), vb.CALENDAR_END)
        self.assertEqual(vb.add_days(vb.MIN_DATE, -10 ** 9), vb.datetime.date.min)
        self.assertEqual(vb.add_months(vb.parse_date("2016-02-29"), 24).isoformat(), "2018-02-28")
        t = bb.Trial(districts(False), locks=(10 ** 9, 10 ** 12, 10 ** 12), rules=1)
        t.init("2017-12-20T09:00:00Z")
        t.refer("2018-01-08T09:00:00Z", "E-1", "NINO:AB000001C", "east", "disability", "2018-01-08")
        t.gatekeep("2018-01-09T09:00:00Z", "run-1", "east", "2018-01-09", decisions={"E-1": "not_selected"})
        t.refer("2999-12-30T09:00:00Z", "E-2", "NINO:AB000001C", "east", "disability", "2999-12-30")
        code, report = self.assertReports(self.write(t))
        self.assertFailsAt(code, report, "locks", 4)
        self.assertIn("9999-12-31", self.check(report, "locks")["detail"])

    def test_dates_out_of_range(self):
        self.assertIsNone(vb.date_of("9999-12-31"))
        self.assertIsNone(vb.date_of("1899-12-31"))
        self.assertIsNone(vb.date_of("2018-02-29"))
        self.assertIsNone(vb.instant_of("3000-01-01T00:00:00Z"))
        self.assertEqual(vb.date_of("2999-12-31"), vb.MAX_DATE)
        for s in ("30000000000", "2147483648", "-1", "01", "1e3", "", None, "1" * 20):
            self.assertIsNone(vb.dec(s), s)
        self.assertEqual(vb.dec("2147483647"), 2 ** 31 - 1)

    # the three crafted bundles of RULES2 R10 ---------------------------------------------

    def test_block_size_of_thirty_billion(self):
        t = self.bases[0]
        e = next(x for x in t.events if x["type"] == "allocated" and x["payload"]["position"] == "0")
        evs = copy.deepcopy(t.events)
        ev_at(evs, e["seq"])["payload"]["block_size"] = "30000000000"
        b = self.write_events(t, rechain(evs))
        for extra in ([], ["--seed", t.seed_file]):
            code, report = self.assertReports(b, *extra)
            self.assertEqual(code, 1)
            self.assertEqual(self.check(report, "draws").get("first_bad_seq"), e["seq"])
            self.assertIn("30000000000", self.check(report, "draws")["detail"])
        # the same at a position inside the block, and as a provider block size
        e2 = next(x for x in t.events if x["type"] == "allocated" and x["payload"]["position"] == "1")
        evs = copy.deepcopy(t.events)
        ev_at(evs, e2["seq"])["payload"]["block_size"] = "30000000000"
        code, report = self.assertReports(self.write_events(t, rechain(evs)))
        self.assertEqual(self.check(report, "draws").get("first_bad_seq"), e2["seq"])

    def test_repeated_index_in_an_open_block(self):
        t = self.bases[0]
        allocs = [x for x in t.events if x["type"] == "allocated"]
        e = next(x for x in allocs if x["payload"]["position"] != "0")
        evs = copy.deepcopy(t.events)
        ev_at(evs, e["seq"])["payload"]["index"] = str(int(e["payload"]["index"]) - 1)
        for extra in ([], ["--seed", t.seed_file]):
            code, report = self.assertReports(self.write_events(t, rechain(copy.deepcopy(evs))), *extra)
            self.assertEqual(code, 1)
            c = self.check(report, "draws")
            self.assertEqual(c.get("first_bad_seq"), e["seq"], c)
            self.assertIn("the stratum's next", c["detail"])

    def test_decision_dated_9999_12_31_then_a_referral(self):
        for rules in (2, 1):
            with self.subTest(rules=rules):
                t = bb.Trial(districts(False), rules=rules, recruitment=RECRUITMENT if rules == 2 else None)
                t.init("2017-12-20T09:00:00Z")
                t.refer("2018-01-08T09:00:00Z", "E-1", "NINO:AB000001C", "east", "disability", "2018-01-08")
                d = t.gatekeep("2018-01-09T09:00:00Z", "run-1", "east", "2018-01-09", decisions={"E-1": "selected"})
                t.refer("2018-01-10T09:00:00Z", "E-2", "NINO:AB000001C", "east", "disability", "2018-01-10")
                t.refer("2018-01-10T09:00:00Z", "E-3", "NINO:AB000003C", "east", "disability", "2018-01-10")
                evs = copy.deepcopy(t.events)
                ev_at(evs, d["E-1"])["payload"]["gk_date"] = "9999-12-31"
                ev_at(evs, d["E-1", "allocated"])["payload"]["gk_date"] = "9999-12-31"
                code, report = self.assertReports(self.write_events(t, rechain(evs)), "--seed", t.seed_file)
                self.assertEqual(code, 1)
                c = self.check(report, "gatekeeper")
                self.assertEqual(c.get("first_bad_seq"), d["E-1"], c)
                self.assertIn("9999-12-31", c["detail"])
                # the decision is not applied: the referral still waits, so E-2 is a duplicate
                self.assertEqual(self.check(report, "locks").get("first_bad_seq"), d["E-1", "allocated"] + 1)
                self.assertTrue(self.check(report, "recorded_at")["ok"])

    def test_garbage_files(self):
        t = self.bases[0]
        for content in (b"", b"\n", b"\x00" * 100, os.urandom(4096), b"[" * 200000, b"{}\n" * 10,
                        b'{"seq":1,"type":"trial_started","payload":{},"hash":"' + b"0" * 64 + b'"}\n'):
            b = self.write(t)
            with open(os.path.join(b, "events.jsonl"), "wb") as f:
                f.write(content)
            code, report = self.assertReports(b, "--seed", t.seed_file, what=repr(content[:30]))
            self.assertEqual(code, 1)

    def test_command_line_on_hostile_bundles(self):
        t = self.bases[0]
        script = os.path.join(HERE, "verify_bundle.py")
        evs = copy.deepcopy(t.events)
        ev_at(evs, 3)["payload"]["referral_id"] = "\u00e9\u4e2d\u0001"
        ev_at(evs, 4)["payload"]["referral_date"] = "9999-12-31"
        b = self.write_events(t, rechain(evs))
        env = dict(os.environ, PYTHONIOENCODING="ascii")
        for extra in ([], ["--json"]):
            p = subprocess.run([sys.executable, script, b] + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertNotIn(b"Traceback", p.stderr)


if __name__ == "__main__":
    unittest.main()
