#!/usr/bin/env python3
"""tools/verify_bundle.py on hostile bundles: it must never raise (RULES2 R10).

The inputs are the ones `whp verify` is fuzzed and tested with:

- fuzz/hostile-bundles/*: whole audit bundles, each with one forged fact
  and an `expected` file naming the check (and seq) that must fail. The
  verifier must exit 1 and fail those checks.
- fuzz/corpus-verify/*: the verifier fuzz target's committed corpus, each
  file the text of an `events.jsonl` (honest logs, crafted ones, and what
  fuzzing found). Each is put in a bundle with the district-config of the
  trial it names (fuzz/verify-trials) and verified as it is, and again
  re-chained (every hash recomputed per ALLOCATION.md section 7, so the
  forged values reach the checks behind `chain`) with the trial's seed.

For every input the verifier must return 0 or 1 (never raise, never exit 2:
the bundles are well-formed folders) and, with --json, print one JSON
report whose `ok` agrees with the exit status.

    python3 tools/test_hostile_bundles.py          # or: python3 -m unittest tools/test_hostile_bundles.py

Standard library only, like the verifier.
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import verify_bundle  # noqa: E402  (the verifier under test, imported as a module)

FUZZ = os.path.join(ROOT, "fuzz")
HOSTILE = os.path.join(FUZZ, "hostile-bundles")
CORPUS = os.path.join(FUZZ, "corpus-verify")
TRIALS = os.path.join(FUZZ, "verify-trials")


def run_verifier(argv):
    """verify_bundle.main(argv) in this process: (status, stdout, stderr, raised).
    `raised` is the traceback of an exception that escaped main: the failure
    this suite exists to catch (reported with the input that caused it)."""
    out, err = io.StringIO(), io.StringIO()
    raised = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = verify_bundle.main(argv)
        except SystemExit as e:  # argparse
            status = e.code
        except Exception:  # noqa: BLE001 - any escape is the finding
            status, raised = None, traceback.format_exc()
    return status, out.getvalue(), err.getvalue(), raised


# ALLOCATION.md section 7, written out again from the spec (not the verifier's code).

def enc(b):
    return len(b).to_bytes(4, "big") + b


def event_bytes(seq, type_, payload):
    out = enc(b"whp/event/v1") + (seq % (1 << 64)).to_bytes(8, "big") + enc(type_.encode("utf-8"))
    keys = sorted(payload, key=lambda k: k.encode("utf-8"))
    out += len(keys).to_bytes(4, "big")
    for k in keys:
        out += enc(k.encode("utf-8")) + enc(payload[k].encode("utf-8"))
    return out


def genesis(trial_id, commitment_hex):
    return hashlib.sha256(enc(b"whp/genesis/v1") + enc(trial_id.encode("utf-8")) + bytes.fromhex(commitment_hex)).digest()


def rechain(data):
    """events.jsonl with every event line's hash recomputed; other lines kept."""
    out, prev = [], None
    for raw in data.split(b"\n"):
        if not raw:
            out.append(raw)
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            seq, type_, payload = obj["seq"], obj["type"], obj["payload"]
            ok = (isinstance(obj, dict) and isinstance(seq, int) and not isinstance(seq, bool) and isinstance(type_, str)
                  and isinstance(payload, dict) and all(isinstance(v, str) for v in payload.values()))
            for s in [type_] + list(payload) + list(payload.values()):
                s.encode("utf-8")
        except Exception:
            ok = False
        if not ok:
            out.append(raw)
            continue
        if seq == 1 and type_ == "trial_started":
            try:
                prev = genesis(payload["trial_id"], payload["commitment"])
            except Exception:
                prev = None
        if prev is None or not 0 <= seq < (1 << 64):
            out.append(raw)
            continue
        prev = hashlib.sha256(prev + event_bytes(seq, type_, payload)).digest()
        obj["hash"] = prev.hex()
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return b"\n".join(out)


def trial_of(data):
    """The trial a corpus input names (as the Swift harness picks it)."""
    return "simple" if b'"trial_id":"whp-fuzz-simple"' in data else "demo"


def read(path, mode="r"):
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        return f.read()


def trial_id_of(name):
    text = read(os.path.join(TRIALS, name, "district-config", "trial.toml"))
    for line in text.splitlines():
        if line.startswith("trial_id"):
            return line.split("=", 1)[1].split("#")[0].strip().strip('"')
    raise AssertionError("no trial_id in %s" % name)


def config_hash(root):
    """ALLOCATION.md section 6: every file of the folder, by relative path."""
    files = []
    for d, _, names in os.walk(root):
        for n in names:
            full = os.path.join(d, n)
            files.append((os.path.relpath(full, root).replace(os.sep, "/").encode("utf-8"), read(full, "rb")))
    files.sort()
    out = enc(b"whp/config/v1") + len(files).to_bytes(4, "big")
    for p, data in files:
        out += enc(p) + enc(data)
    return hashlib.sha256(out).hexdigest()


def commitment_file(name, trial_id):
    seed = read(os.path.join(TRIALS, name, "seed.hex")).strip()
    c = hashlib.sha256(enc(b"whp/seed-commitment/v1") + enc(trial_id.encode("utf-8")) + bytes.fromhex(seed)).hexdigest()
    return {"trial_id": trial_id, "commitment": c, "config_hash": config_hash(os.path.join(TRIALS, name, "district-config")), "created": "2017-10-31T09:00:00Z"}


class HostileBundleTests(unittest.TestCase):
    maxDiff = None

    def check_report(self, label, status, out, err, raised):
        if raised:
            self.fail("%s: verify_bundle.py raised:\n%s" % (label, raised))
        self.assertIn(status, (0, 1), "%s: exit %r; stderr: %s" % (label, status, err[-2000:]))
        try:
            report = json.loads(out)
        except ValueError:
            self.fail("%s: --json printed no JSON report: %r" % (label, out[:500]))
        self.assertIsInstance(report, dict, label)
        self.assertEqual(report.get("ok"), status == 0, "%s: ok disagrees with the exit status" % label)
        names = [c.get("name") for c in report.get("checks", [])]
        self.assertEqual(len(names), len(set(names)), "%s: a check is reported twice: %s" % (label, names))
        return report

    def test_committed_hostile_bundles_fail_their_check(self):
        names = sorted(n for n in os.listdir(HOSTILE) if os.path.isfile(os.path.join(HOSTILE, n, "expected")))
        self.assertGreaterEqual(len(names), 3, "the issue's three crafted bundles are committed")
        seed = os.path.join(TRIALS, "demo", "seed.hex")
        for name in names:
            d = os.path.join(HOSTILE, name)
            expected = [line.split() for line in read(os.path.join(d, "expected")).splitlines()
                        if line.strip() and not line.startswith("#")]
            for extra in ([], ["--seed", seed]):
                label = "%s %s" % (name, " ".join(extra))
                status, out, err, raised = run_verifier([d, "--json"] + extra)
                report = self.check_report(label, status, out, err, raised)
                self.assertEqual(status, 1, "%s: a forged bundle must fail" % label)
                failed = {c["name"]: c.get("first_bad_seq") for c in report["checks"] if not c["ok"]}
                for check, seq in expected:
                    self.assertIn(check, failed, "%s: %s should fail (failed: %s)" % (label, check, failed))
                # The text report never raises either.
                status, _, err, raised = run_verifier([d] + extra)
                self.assertIsNone(raised, "%s (text): verify_bundle.py raised:\n%s" % (label, raised))
                self.assertEqual(status, 1, "%s (text): %s" % (label, err[-500:]))

    def test_fuzz_corpus_never_raises(self):
        files = sorted(f for f in os.listdir(CORPUS) if not f.startswith("."))
        self.assertTrue(files, "the corpus is committed")
        tmp = tempfile.mkdtemp(prefix="whp-hostile-")
        try:
            bundles = {}
            for name in ("demo", "simple"):
                trial_id = trial_id_of(name)
                b = os.path.join(tmp, name)
                shutil.copytree(os.path.join(TRIALS, name, "district-config"), os.path.join(b, "district-config"))
                with open(os.path.join(b, trial_id + ".commitment.json"), "w", encoding="utf-8") as f:
                    json.dump(commitment_file(name, trial_id), f)
                bundles[name] = b
            for f in files:
                data = read(os.path.join(CORPUS, f), "rb")
                name = trial_of(data)
                b = bundles[name]
                seed = os.path.join(TRIALS, name, "seed.hex")
                for variant, text, extra in (("as is", data, []), ("re-chained", rechain(data), ["--seed", seed])):
                    with open(os.path.join(b, "events.jsonl"), "wb") as out:
                        out.write(text)
                    label = "corpus %s (%s)" % (f, variant)
                    status, out_, err, raised = run_verifier([b, "--json"] + extra)
                    report = self.check_report(label, status, out_, err, raised)
                    if f.startswith("honest-"):
                        self.assertTrue(report["ok"], "%s: an honest log must pass: %s" % (
                            label, [c for c in report["checks"] if not c["ok"]]))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_generated_hostile_inputs_never_raise(self):
        """Inputs too large to commit (as VerifierCorpusTests makes them for whp)."""
        lines = read(os.path.join(CORPUS, "honest-demo-devon-cornwall"), "rb").split(b"\n")[:-1]
        head, tail = b"\n".join(lines[:10]) + b"\n", b"\n".join(lines[10:]) + b"\n"
        line11 = b'{"seq":11,"type":"referred","payload":{"x":'
        cases = {
            "a 2 MiB line": head + line11 + b'"' + b"a" * (2 << 20) + b'"},"hash":""}\n' + tail,
            "nesting 100,000 deep": head + line11 + b"[" * 100000 + b"]" * 100000 + b'},"hash":""}\n',
            "unclosed nesting": head + b"{" * 200000 + b"\n",
            "50,000 keys": head + line11[:-5] + b"{" + b",".join(b'"k%d":"v"' % k for k in range(50000)) + b'},"hash":"00"}\n',
            "invalid UTF-8": head + b"\xff\xfe\x00\x80\n",
            "CR LF": b"\r\n".join(lines) + b"\r\n",
            "empty": b"",
            "only newlines": b"\n\n\r\n",
            "a number of 10,000 digits": head + b'{"seq":1' + b"0" * 10000 + b',"type":"x","payload":{},"hash":""}\n',
        }
        for seq in ((1 << 63) - 1, (1 << 64) + 5, -(1 << 63), -1, 0):
            edited = list(lines)
            for k in (3, 4, 5):
                edited[k] = edited[k].replace(b'"seq":%d,' % (k + 1), b'"seq":%d,' % seq)
            cases["seqs %d" % seq] = b"\n".join(edited) + b"\n"
        tmp = tempfile.mkdtemp(prefix="whp-hostile-")
        try:
            b = os.path.join(tmp, "bundle")
            shutil.copytree(os.path.join(TRIALS, "demo", "district-config"), os.path.join(b, "district-config"))
            seed = os.path.join(TRIALS, "demo", "seed.hex")
            for name, data in cases.items():
                for variant, text, extra in (("as is", data, []), ("re-chained", rechain(data), ["--seed", seed])):
                    with open(os.path.join(b, "events.jsonl"), "wb") as out:
                        out.write(text)
                    label = "%s (%s)" % (name, variant)
                    status, out_, err, raised = run_verifier([b, "--json"] + extra)
                    report = self.check_report(label, status, out_, err, raised)
                    if name != "CR LF":
                        self.assertFalse(report["ok"], "%s must fail" % label)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
