#!/usr/bin/env python3
"""Independent verifier of whp audit bundles.

Written from the specification alone (shared/spec/ALLOCATION.md, CONFIG.md,
PROTOCOL.md sections 3, 5 and 6, and vectors.json), in Python 3 with the
standard library only, so that it shares no code with the Swift `whp` tool.

    python3 tools/verify_bundle.py DIR [--seed FILE] [--checkpoint FILE] [--json]

DIR is what `whp audit-bundle --out DIR` writes: DIR/events.jsonl,
DIR/district-config/ and DIR/<trial_id>.commitment.json.

Exit status: 0 every check holds, 1 some check fails, 2 usage or I/O error.
"""

import argparse
import calendar
import datetime
import hashlib
import hmac
import json
import os
import re
import sys

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - older Pythons use the fallback below
    _toml = None

ARMS = ("WHP", "PSC", "RCG")
ALGORITHM = "whp/v1"
TWO64 = 1 << 64
MASK64 = TWO64 - 1

HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
DATE_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
INSTANT_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z$")
DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]*)$")
TRIAL_ID_RE = re.compile(r"^[a-z0-9-]{1,64}$")


# ---------------------------------------------------------------------------
# ALLOCATION.md: notation and primitives
# ---------------------------------------------------------------------------

def u32(n):
    if not 0 <= n < (1 << 32):
        raise ValueError("u32 out of range: %r" % (n,))
    return n.to_bytes(4, "big")


def u64(n):
    if not 0 <= n < TWO64:
        raise ValueError("u64 out of range: %r" % (n,))
    return n.to_bytes(8, "big")


def enc(s):
    """u32(len(b)) || b, b = UTF-8 bytes of s (or s itself when bytes)."""
    b = s if isinstance(s, (bytes, bytearray)) else s.encode("utf-8")
    return u32(len(b)) + bytes(b)


def H(x):
    return hashlib.sha256(x).digest()


def HMAC(k, x):
    return hmac.new(k, x, hashlib.sha256).digest()


# §1
def commitment(trial_id, seed):
    return H(enc("whp/seed-commitment/v1") + enc(trial_id) + seed)


# §2
def alloc_seed(seed, trial_id, stratum, i):
    return HMAC(seed, enc("whp/alloc/v1") + enc(trial_id) + enc(stratum) + u64(i))


def block_seed(seed, trial_id, stratum, b):
    return HMAC(seed, enc("whp/block/v1") + enc(trial_id) + enc(stratum) + u64(b))


def lottery_key(seed, trial_id, run_id, referral_id):
    return HMAC(seed, enc("whp/gatekeeper/v1") + enc(trial_id) + enc(run_id) + enc(referral_id))


# §3
def uniform_words(seed):
    """The word source of §3: x_j = first 8 bytes of HMAC(seed, enc(..) || u64(j))."""
    j = 0
    while True:
        yield int.from_bytes(HMAC(seed, enc("whp/uniform/v1") + u64(j))[:8], "big")
        j += 1


def uniform(seed, n, words=None):
    """An unbiased integer in [0, n), 1 <= n <= 2^32.

    `words` substitutes the word source (an iterable of u64 values), so that
    the rejection path can be tested; by default it is uniform_words(seed).
    """
    if not isinstance(n, int) or not 1 <= n <= (1 << 32):
        raise ValueError("uniform: n out of range: %r" % (n,))
    r = ((0 - n) & MASK64) % n        # (2^64 - n) mod n in 64-bit arithmetic
    bound = MASK64 - r                # 2^64 - 1 - r
    for x in (uniform_words(seed) if words is None else words):
        if x <= bound:
            return x % n
    raise ValueError("uniform: word source exhausted")


# §4
def active_arms(weights):
    return [a for a in ARMS if weights.get(a, 0) > 0]


def walk(t, remaining):
    """Walk the arms in canonical order: t < r_arm chooses the arm."""
    for arm in ARMS:
        r = remaining.get(arm, 0)
        if r <= 0:
            continue
        if t < r:
            return arm
        t -= r
    raise ValueError("draw: t beyond the urn")


def draw_permuted(a_i, weights, m_b, position, earlier_arms):
    """Arm of the allocation at `position` of a block with multiplier m_b."""
    remaining = {}
    for arm in active_arms(weights):
        remaining[arm] = weights[arm] * m_b - sum(1 for x in earlier_arms if x == arm)
        if remaining[arm] < 0:
            raise ValueError("arm %s drawn more than %d times in its block" % (arm, weights[arm] * m_b))
    size = sum(weights[a] for a in active_arms(weights)) * m_b
    if not 0 <= position < size:
        raise ValueError("position %d outside a block of size %d" % (position, size))
    t = uniform(a_i, size - position)
    return walk(t, remaining)


def draw_simple(a_i, weights):
    w = {a: weights[a] for a in active_arms(weights)}
    return walk(uniform(a_i, sum(w.values())), w)


def block_multiplier(seed, trial_id, stratum, b, multipliers):
    return multipliers[uniform(block_seed(seed, trial_id, stratum, b), len(multipliers))]


def generate_sequence(seed, trial_id, stratum, weights, multipliers, method, count):
    """The first `count` allocations of a stratum, as the spec derives them."""
    out = []
    W = sum(weights[a] for a in active_arms(weights))
    b, start, size, m, arms = -1, 0, 0, 0, []
    for i in range(count):
        a = alloc_seed(seed, trial_id, stratum, i)
        if method == "permuted_block":
            if b < 0 or i == start + size:
                b += 1
                start = i
                m = block_multiplier(seed, trial_id, stratum, b, multipliers)
                size = W * m
                arms = []
            pos = i - start
            arm = draw_permuted(a, weights, m, pos, arms)
            arms.append(arm)
            out.append({"index": i, "block": b, "block_size": size, "position": pos,
                        "arm": arm, "alloc_seed": a.hex()})
        elif method == "simple":
            out.append({"index": i, "arm": draw_simple(a, weights), "alloc_seed": a.hex()})
        else:
            raise ValueError("unknown method %r" % (method,))
    return out


# §5
def pseudonym(kp, normalised_id):
    return HMAC(kp, enc("whp/claimant/v1") + enc(normalised_id)).hex()


def research_id(ke, claimant_pseudonym_hex):
    return HMAC(ke, enc("whp/research-id/v1") + enc(claimant_pseudonym_hex)).hex()


# §6
def config_hash_of_files(files):
    """files: iterable of (relative path, bytes). Paths str or bytes, '/'-separated."""
    items = []
    for path, data in files:
        p = path if isinstance(path, bytes) else path.encode("utf-8")
        items.append((p, bytes(data)))
    items.sort(key=lambda kv: kv[0])  # bytes compare as unsigned, prefix first
    out = enc("whp/config/v1") + u32(len(items))
    for p, data in items:
        out += enc(p) + enc(data)
    return H(out)


class ConfigTreeError(Exception):
    pass


def config_files(root):
    """Every regular file under root (hidden ones too) as (relative bytes path, bytes)."""
    found = []

    def visit(abs_dir, rel_parts):
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            parts = rel_parts + [e.name]
            rel = b"/".join(parts)
            if e.is_symlink():
                raise ConfigTreeError("symbolic link in the config folder: %s" % rel.decode("utf-8", "replace"))
            if e.is_dir(follow_symlinks=False):
                visit(e.path, parts)
            elif e.is_file(follow_symlinks=False):
                with open(e.path, "rb") as f:
                    found.append((rel, f.read()))
            else:
                raise ConfigTreeError("not a regular file in the config folder: %s" % rel.decode("utf-8", "replace"))

    visit(os.fsencode(root), [])
    return found


def config_hash_dir(root):
    return config_hash_of_files(config_files(root))


# §7
def event_bytes(seq, type_, payload):
    items = sorted(payload.items(), key=lambda kv: kv[0].encode("utf-8"))
    out = enc("whp/event/v1") + u64(seq) + enc(type_) + u32(len(items))
    for k, v in items:
        out += enc(k) + enc(v)
    return out


def genesis(trial_id, c):
    return H(enc("whp/genesis/v1") + enc(trial_id) + c)


def chain_next(prev, seq, type_, payload):
    return H(prev + event_bytes(seq, type_, payload))


# §8
def parse_date(s):
    m = DATE_RE.match(s) if isinstance(s, str) else None
    if not m:
        raise ValueError("not a YYYY-MM-DD date: %r" % (s,))
    return datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_instant(s):
    m = INSTANT_RE.match(s) if isinstance(s, str) else None
    if not m:
        raise ValueError("not a YYYY-MM-DDTHH:MM:SSZ instant: %r" % (s,))
    return datetime.datetime(*(int(g) for g in m.groups()))


def add_days(d, k):
    return d + datetime.timedelta(days=k)


def add_months(d, k):
    if k < 0:
        raise ValueError("add_months: k < 0")
    total = d.year * 12 + (d.month - 1) + k
    y, m = divmod(total, 12)
    m += 1
    return datetime.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def parse_decimal(s):
    if not isinstance(s, str) or not DECIMAL_RE.match(s):
        raise ValueError("not a decimal integer: %r" % (s,))
    return int(s)


# ---------------------------------------------------------------------------
# TOML (tomllib where available; otherwise a reader for the config's subset)
# ---------------------------------------------------------------------------

class _MiniToml:
    """Comments, key = value, [table], [[array of tables]], strings, integers,
    booleans, arrays and inline tables: the subset the config files use."""

    def __init__(self, text):
        self.s = text
        self.i = 0

    def error(self, msg):
        line = self.s.count("\n", 0, self.i) + 1
        raise ValueError("TOML line %d: %s" % (line, msg))

    def ws(self, newlines=False):
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                break

    def key(self):
        self.ws()
        if self.i < len(self.s) and self.s[self.i] in "\"'":
            return self.string()
        m = re.compile(r"[A-Za-z0-9_-]+").match(self.s, self.i)
        if not m:
            self.error("expected a key")
        self.i = m.end()
        return m.group(0)

    def string(self):
        q = self.s[self.i]
        self.i += 1
        out = []
        while True:
            if self.i >= len(self.s) or self.s[self.i] == "\n":
                self.error("unterminated string")
            c = self.s[self.i]
            self.i += 1
            if c == q:
                return "".join(out)
            if c == "\\" and q == '"':
                e = self.s[self.i]
                self.i += 1
                simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
                if e in simple:
                    out.append(simple[e])
                elif e in "uU":
                    width = 4 if e == "u" else 8
                    out.append(chr(int(self.s[self.i:self.i + width], 16)))
                    self.i += width
                else:
                    self.error("bad escape")
            else:
                out.append(c)

    def value(self):
        self.ws()
        if self.i >= len(self.s):
            self.error("expected a value")
        c = self.s[self.i]
        if c in "\"'":
            return self.string()
        if c == "[":
            self.i += 1
            arr = []
            while True:
                self.ws(True)
                if self.s[self.i] == "]":
                    self.i += 1
                    return arr
                arr.append(self.value())
                self.ws(True)
                if self.s[self.i] == ",":
                    self.i += 1
                elif self.s[self.i] != "]":
                    self.error("expected , or ]")
        if c == "{":
            self.i += 1
            tbl = {}
            self.ws()
            if self.s[self.i] == "}":
                self.i += 1
                return tbl
            while True:
                k = self.key()
                self.ws()
                if self.s[self.i] != "=":
                    self.error("expected =")
                self.i += 1
                if k in tbl:
                    self.error("duplicate key %s" % k)
                tbl[k] = self.value()
                self.ws()
                if self.s[self.i] == ",":
                    self.i += 1
                elif self.s[self.i] == "}":
                    self.i += 1
                    return tbl
                else:
                    self.error("expected , or }")
        m = re.compile(r"true|false|[+-]?[0-9][0-9_]*").match(self.s, self.i)
        if not m:
            self.error("unsupported value")
        self.i = m.end()
        t = m.group(0)
        if t in ("true", "false"):
            return t == "true"
        return int(t.replace("_", ""))

    def parse(self):
        root = {}
        cur = root
        while True:
            self.ws(True)
            if self.i >= len(self.s):
                return root
            if self.s.startswith("[[", self.i):
                self.i += 2
                name = self.key()
                self.ws()
                if not self.s.startswith("]]", self.i):
                    self.error("expected ]]")
                self.i += 2
                root.setdefault(name, [])
                if not isinstance(root[name], list):
                    self.error("%s is not an array of tables" % name)
                cur = {}
                root[name].append(cur)
            elif self.s[self.i] == "[":
                self.i += 1
                name = self.key()
                self.ws()
                if self.s[self.i] != "]":
                    self.error("expected ]")
                self.i += 1
                if name in root:
                    self.error("table %s defined twice" % name)
                cur = root[name] = {}
            else:
                k = self.key()
                self.ws()
                if self.i >= len(self.s) or self.s[self.i] != "=":
                    self.error("expected =")
                self.i += 1
                if k in cur:
                    self.error("duplicate key %s" % k)
                cur[k] = self.value()
            self.ws()
            if self.i < len(self.s) and self.s[self.i] not in "\r\n":
                self.error("unexpected text after value")


def load_toml(data):
    text = data.decode("utf-8")
    if _toml is not None:
        return _toml.loads(text)
    return _MiniToml(text).parse()


# ---------------------------------------------------------------------------
# The bundle
# ---------------------------------------------------------------------------

class UsageError(Exception):
    """Usage or I/O error: exit status 2."""


class Event:
    def __init__(self, line, seq, type_, payload, hash_hex):
        self.line, self.seq, self.type, self.payload, self.hash = line, seq, type_, payload, hash_hex

    def get(self, key, default=None):
        return self.payload.get(key, default)


class BadLine:
    def __init__(self, line, message):
        self.line, self.message = line, message


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError("duplicate key %r" % (k,))
        obj[k] = v
    return obj


def parse_event_line(lineno, raw):
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        return BadLine(lineno, "line %d is not a JSON object: %s" % (lineno, e))
    if not isinstance(obj, dict):
        return BadLine(lineno, "line %d is not a JSON object" % lineno)
    if set(obj) != {"seq", "type", "payload", "hash"}:
        return BadLine(lineno, "line %d has keys %s, expected seq, type, payload, hash" % (lineno, sorted(obj)))
    seq, type_, payload, hash_hex = obj["seq"], obj["type"], obj["payload"], obj["hash"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return BadLine(lineno, "line %d: seq is not a positive integer" % lineno)
    if not isinstance(type_, str):
        return BadLine(lineno, "line %d: type is not a string" % lineno)
    if not isinstance(payload, dict) or not all(isinstance(v, str) for v in payload.values()):
        return BadLine(lineno, "line %d: payload is not a flat map of strings" % lineno)
    try:
        type_.encode("utf-8")
        for k, v in payload.items():
            k.encode("utf-8")
            v.encode("utf-8")
    except UnicodeEncodeError:
        return BadLine(lineno, "line %d: a string is not valid Unicode" % lineno)
    if not isinstance(hash_hex, str) or not HEX64_RE.match(hash_hex):
        return BadLine(lineno, "line %d: hash is not 64 lower-case hex digits" % lineno)
    return Event(lineno, seq, type_, payload, hash_hex)


def load_events(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror or e))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [parse_event_line(n, raw) for n, raw in enumerate(lines, 1)]


def read_seed_file(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError("cannot read seed file %s: %s" % (path, e.strerror or e))
    if len(data) != 65 or data[64:] != b"\n" or not re.match(rb"^[0-9a-f]{64}$", data[:64]):
        raise UsageError("seed file %s must hold 64 lower-case hex digits and a newline" % path)
    return bytes.fromhex(data[:64].decode("ascii"))


def read_checkpoint(path):
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read().decode("utf-8"), object_pairs_hook=_no_duplicates)
    except OSError as e:
        raise UsageError("cannot read checkpoint %s: %s" % (path, e.strerror or e))
    except (UnicodeDecodeError, ValueError) as e:
        raise UsageError("checkpoint %s is not JSON: %s" % (path, e))
    if (not isinstance(obj, dict) or not isinstance(obj.get("trial_id"), str)
            or not isinstance(obj.get("seq"), int) or isinstance(obj.get("seq"), bool) or obj["seq"] < 1
            or not isinstance(obj.get("head"), str) or not HEX64_RE.match(obj["head"])):
        raise UsageError("checkpoint %s must be {trial_id, seq, head}" % path)
    return obj


class Config:
    """What the checks need from district-config/ (trial.toml, districts.toml)."""

    def __init__(self):
        self.errors = []          # problems that make the config unusable or invalid
        self.trial = {}
        self.districts = {}       # id -> {"psc": bool, "rule": str, "weights": {arm: int}}
        self.locks = None         # {"not_selected_days", "rcg_months", "allocated_months"}
        self.groups = None

    @property
    def usable(self):
        return self.locks is not None and bool(self.districts)


def load_config(root):
    cfg = Config()
    docs = {}
    for name in ("trial.toml", "districts.toml"):
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as f:
                docs[name] = load_toml(f.read())
        except FileNotFoundError:
            cfg.errors.append("%s is missing" % name)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            cfg.errors.append("%s cannot be read: %s" % (name, e))
    trial = docs.get("trial.toml")
    if isinstance(trial, dict):
        cfg.trial = trial
        locks = trial.get("locks")
        keys = ("not_selected_days", "rcg_months", "allocated_months")
        if isinstance(locks, dict) and all(
                isinstance(locks.get(k), int) and not isinstance(locks.get(k), bool) and locks[k] >= 1 for k in keys):
            cfg.locks = {k: locks[k] for k in keys}
        else:
            cfg.errors.append("trial.toml: [locks] needs integers >= 1 for %s" % ", ".join(keys))
        groups = trial.get("groups")
        if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
            cfg.groups = set(groups)
    dists = docs.get("districts.toml")
    if isinstance(dists, dict):
        entries = dists.get("district")
        if not isinstance(entries, list) or not entries:
            cfg.errors.append("districts.toml: no [[district]] tables")
            entries = []
        for n, d in enumerate(entries):
            if not isinstance(d, dict) or not isinstance(d.get("id"), str):
                cfg.errors.append("districts.toml: district %d has no id" % n)
                continue
            did = d["id"]
            if did in cfg.districts:
                cfg.errors.append("districts.toml: duplicate district %s" % did)
                continue
            w = d.get("weights", {})
            if not isinstance(w, dict):
                cfg.errors.append("districts.toml: %s: weights is not a table" % did)
                continue
            weights = {}
            for arm, v in w.items():
                if arm not in ARMS:
                    cfg.errors.append("districts.toml: %s: unknown arm %s in weights" % (did, arm))
                elif not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    cfg.errors.append("districts.toml: %s: weight of %s is not an integer >= 0" % (did, arm))
                else:
                    weights[arm] = v
            if not any(weights.values()):
                cfg.errors.append("districts.toml: %s: all weights are 0" % did)
                continue
            psc = d.get("psc")
            if not isinstance(psc, bool):
                cfg.errors.append("districts.toml: %s: psc is not a boolean" % did)
                psc = False
            rule = d.get("gatekeeper_rule")
            if rule not in ("fifo", "lottery"):
                cfg.errors.append("districts.toml: %s: gatekeeper_rule is not fifo or lottery" % did)
            cfg.districts[did] = {"psc": psc, "rule": rule, "weights": weights}
    return cfg


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

class Problems:
    def __init__(self, name):
        self.name = name
        self.items = []   # (seq or None, message)
        self.skipped = None

    def add(self, seq, message):
        self.items.append((seq, message))

    def result(self, ok_detail):
        if self.skipped is not None and not self.items:
            return {"name": self.name, "ok": False, "detail": self.skipped}
        if not self.items:
            return {"name": self.name, "ok": True, "detail": ok_detail}
        with_seq = [it for it in self.items if it[0] is not None]
        first = min(with_seq, key=lambda it: it[0]) if with_seq else self.items[0]
        detail = first[1]
        if len(self.items) > 1:
            detail += " (%d problems in all)" % len(self.items)
        out = {"name": self.name, "ok": False, "detail": detail}
        if first[0] is not None:
            out["first_bad_seq"] = first[0]
        return out


class Verifier:
    def __init__(self, bundle, seed=None, checkpoint=None):
        self.bundle = bundle
        self.seed = seed
        self.checkpoint = checkpoint
        if not os.path.isdir(bundle):
            raise UsageError("%s is not a directory" % bundle)
        self.lines = load_events(os.path.join(bundle, "events.jsonl"))
        self.events = [e for e in self.lines if isinstance(e, Event)]
        self.config_dir = os.path.join(bundle, "district-config")
        if not os.path.isdir(self.config_dir):
            raise UsageError("%s has no district-config folder" % bundle)
        self.config = load_config(self.config_dir)
        self.trial = self._trial_started()
        self.commitment_file, self.commitment_file_error = self._commitment_file()

    # -- inputs ------------------------------------------------------------

    def _trial_started(self):
        """Parameters from the trial_started event (seq 1), or None."""
        first = self.events[0] if self.events else None
        if first is None or first.seq != 1 or first.type != "trial_started":
            return None
        p = first.payload
        t = {"trial_id": p.get("trial_id"), "commitment": p.get("commitment"),
             "config_hash": p.get("config_hash"), "method": p.get("method"),
             "errors": []}
        if not isinstance(t["trial_id"], str) or not TRIAL_ID_RE.match(t["trial_id"]):
            t["errors"].append("trial_id is not [a-z0-9-]{1,64}")
        for k in ("commitment", "config_hash"):
            if not isinstance(t[k], str) or not HEX64_RE.match(t[k]):
                t["errors"].append("%s is not 64 lower-case hex digits" % k)
        if p.get("algorithm") != ALGORITHM:
            t["errors"].append("algorithm is %r, this verifier knows %s" % (p.get("algorithm"), ALGORITHM))
        if t["method"] not in ("permuted_block", "simple"):
            t["errors"].append("method %r is not permuted_block or simple" % (t["method"],))
        try:
            parts = p.get("block_multipliers", "").split(",")
            t["multipliers"] = [parse_decimal(x) for x in parts]
            if any(m < 1 for m in t["multipliers"]):
                raise ValueError("multiplier < 1")
        except (ValueError, AttributeError) as e:
            t["multipliers"] = None
            t["errors"].append("block_multipliers %r is not a list of decimals >= 1 (%s)"
                               % (p.get("block_multipliers"), e))
        sbg = p.get("stratify_by_group")
        if sbg not in ("true", "false"):
            t["errors"].append("stratify_by_group %r is not true/false" % (sbg,))
        t["stratify_by_group"] = sbg == "true"
        t["frontline_rcg"] = p.get("frontline_rcg")
        if t["frontline_rcg"] not in ("hidden", "dcams"):
            t["errors"].append("frontline_rcg %r is not hidden/dcams" % (t["frontline_rcg"],))
        return t

    def _commitment_file(self):
        names = []
        if self.trial and isinstance(self.trial["trial_id"], str):
            names.append(self.trial["trial_id"] + ".commitment.json")
        try:
            names += sorted(n for n in os.listdir(self.bundle) if n.endswith(".commitment.json"))
        except OSError as e:
            raise UsageError("cannot list %s: %s" % (self.bundle, e.strerror or e))
        for name in names:
            path = os.path.join(self.bundle, name)
            if os.path.isfile(path):
                try:
                    with open(path, "rb") as f:
                        obj = json.loads(f.read().decode("utf-8"), object_pairs_hook=_no_duplicates)
                except OSError as e:
                    raise UsageError("cannot read %s: %s" % (path, e.strerror or e))
                except (UnicodeDecodeError, ValueError) as e:
                    return None, "%s is not JSON: %s" % (name, e)
                if not isinstance(obj, dict):
                    return None, "%s is not a JSON object" % name
                obj["_name"] = name
                return obj, None
        return None, "no <trial_id>.commitment.json in the bundle"

    def _trial_ready(self, problems):
        if self.trial is None:
            problems.skipped = "no trial_started event at seq 1"
            return False
        if self.trial["errors"]:
            problems.add(1, "trial_started: " + "; ".join(self.trial["errors"]))
            return False
        return True

    def _config_ready(self, problems):
        if not self.config.usable:
            problems.skipped = "district-config unusable: " + "; ".join(self.config.errors)
            return False
        return True

    # -- chain -------------------------------------------------------------

    def check_chain(self):
        pr = Problems("chain")
        if not self.lines:
            pr.add(1, "events.jsonl holds no events")
            return pr.result("")
        first = self.lines[0]
        if isinstance(first, BadLine):
            pr.add(1, first.message)
            return pr.result("")
        if first.seq != 1 or first.type != "trial_started":
            pr.add(1, "the first event is %s at seq %d, not trial_started at seq 1" % (first.type, first.seq))
            return pr.result("")
        tid, c = first.get("trial_id"), first.get("commitment")
        if not isinstance(tid, str) or not isinstance(c, str) or not HEX64_RE.match(c):
            pr.add(1, "trial_started lacks trial_id or a 64-hex commitment")
            return pr.result("")
        h = genesis(tid, bytes.fromhex(c))
        expected = 1
        for ev in self.lines:
            if isinstance(ev, BadLine):
                pr.add(expected, ev.message)
                break
            if ev.seq != expected:
                if ev.seq > expected:
                    pr.add(expected, "event %d is missing (line %d holds seq %d)" % (expected, ev.line, ev.seq))
                else:
                    pr.add(expected, "line %d holds seq %d where seq %d was expected" % (ev.line, ev.seq, expected))
                break
            h = chain_next(h, ev.seq, ev.type, ev.payload)
            if h.hex() != ev.hash:
                pr.add(ev.seq, "hash of event %d is %s, recomputed %s" % (ev.seq, ev.hash, h.hex()))
                break
            expected += 1
        return pr.result("%d events, head %s" % (len(self.lines), h.hex()))

    def check_checkpoint(self):
        """ALLOCATION.md §10: the log still holds exactly head at seq (so it was
        neither rewritten nor cut short before seq)."""
        pr = Problems("checkpoint")
        cp = self.checkpoint
        if self.trial is not None and cp["trial_id"] != self.trial["trial_id"]:
            pr.add(None, "the checkpoint is for trial %s, the log for %s" % (cp["trial_id"], self.trial["trial_id"]))
        at = [e for e in self.events if e.seq == cp["seq"]]
        if not at:
            pr.add(cp["seq"], "the log has no event %d (it holds %d lines)" % (cp["seq"], len(self.lines)))
        elif at[0].hash != cp["head"]:
            pr.add(cp["seq"], "event %d has hash %s, the checkpoint says %s" % (cp["seq"], at[0].hash, cp["head"]))
        return pr.result("event %d still has hash %s (the chain check recomputes it)" % (cp["seq"], cp["head"]))

    # -- trial_started against trial.toml --------------------------------------

    def check_trial_config(self):
        pr = Problems("trial_config")
        if not self._trial_ready(pr):
            return pr.result("")
        for ev in self.events[1:]:
            if ev.type == "trial_started":
                pr.add(ev.seq, "a second trial_started event at seq %d" % ev.seq)
        tt = self.config.trial
        if not tt:
            pr.add(None, "trial.toml unusable: " + "; ".join(self.config.errors))
            return pr.result("")
        t = self.trial
        want = {
            "trial_id": t["trial_id"],
            "method": t["method"],
            "block_multipliers": t["multipliers"],
            "stratify_by_group": t["stratify_by_group"],
            "frontline_rcg": t["frontline_rcg"],
        }
        for k, v in want.items():
            if tt.get(k) != v:
                pr.add(1, "trial_started says %s = %r, trial.toml says %r" % (k, v, tt.get(k)))
        return pr.result("trial_started agrees with trial.toml (%s, multipliers %s, stratify_by_group %s)"
                         % (t["method"], t["multipliers"], str(t["stratify_by_group"]).lower()))

    # -- config hash -------------------------------------------------------

    def check_config_hash(self):
        pr = Problems("config_hash")
        try:
            got = config_hash_dir(self.config_dir).hex()
        except ConfigTreeError as e:
            pr.add(None, str(e))
            return pr.result("")
        except OSError as e:
            raise UsageError("cannot read %s: %s" % (self.config_dir, e.strerror or e))
        if self.trial is None:
            pr.skipped = "no trial_started event at seq 1"
        elif self.trial["config_hash"] != got:
            pr.add(1, "district-config hashes to %s, trial_started says %s" % (got, self.trial["config_hash"]))
        cf = self.commitment_file
        if cf is not None and cf.get("config_hash") != got:
            pr.add(None, "district-config hashes to %s, %s says %s" % (got, cf["_name"], cf.get("config_hash")))
        elif cf is None:
            pr.add(None, self.commitment_file_error)
        return pr.result(got)

    # -- the commitment file against the log ------------------------------------

    def check_commitment_file(self):
        pr = Problems("commitment_file")
        cf = self.commitment_file
        if cf is None:
            pr.add(None, self.commitment_file_error)
            return pr.result("")
        if self.trial is None:
            pr.skipped = "no trial_started event at seq 1"
            return pr.result("")
        expected_name = "%s.commitment.json" % self.trial["trial_id"]
        if cf["_name"] != expected_name:
            pr.add(None, "the commitment file is %s, expected %s" % (cf["_name"], expected_name))
        for k in ("trial_id", "commitment", "config_hash"):
            if cf.get(k) != self.trial[k]:
                pr.add(None, "%s says %s = %r, trial_started says %r" % (cf["_name"], k, cf.get(k), self.trial[k]))
        created = cf.get("created")
        try:
            parse_instant(created)
        except ValueError:
            pr.add(None, "%s: created %r is not an instant" % (cf["_name"], created))
        return pr.result("%s matches trial_started" % cf["_name"])

    # -- the seed against the commitment -----------------------------------------

    def check_commitment(self):
        pr = Problems("commitment")
        if self.trial is None:
            pr.skipped = "no trial_started event at seq 1"
            return pr.result("")
        if not isinstance(self.trial["trial_id"], str):
            pr.add(1, "trial_started has no trial_id")
            return pr.result("")
        c = commitment(self.trial["trial_id"], self.seed).hex()
        if c != self.trial["commitment"]:
            pr.add(1, "the seed commits to %s, trial_started says %s" % (c, self.trial["commitment"]))
        cf = self.commitment_file
        if cf is None:
            pr.add(None, self.commitment_file_error)
        elif cf.get("commitment") != c:
            pr.add(None, "the seed commits to %s, %s says %s" % (c, cf["_name"], cf.get("commitment")))
        return pr.result("the seed matches commitment %s" % c)

    # -- allocations ---------------------------------------------------------

    def _allocated(self):
        return [e for e in self.events if e.type == "allocated"]

    def check_draws(self):
        pr = Problems("draws")
        if not (self._trial_ready(pr) and self._config_ready(pr)):
            return pr.result("")
        t = self.trial
        method, M, sbg = t["method"], t["multipliers"], t["stratify_by_group"]
        strata = {}   # stratum -> {"next": i, "b": b, "start": s, "size": n, "m": m, "arms": [...]}
        n_checked = 0
        for ev in self._allocated():
            p = ev.payload
            district, group = p.get("district"), p.get("group")
            d = self.config.districts.get(district)
            if d is None:
                pr.add(ev.seq, "allocated event %d: district %r is not in districts.toml" % (ev.seq, district))
                continue
            if not isinstance(group, str):
                pr.add(ev.seq, "allocated event %d has no group" % ev.seq)
                continue
            sigma = district + "|" + group if sbg else district
            if p.get("stratum") != sigma:
                pr.add(ev.seq, "allocated event %d: stratum %r, expected %r" % (ev.seq, p.get("stratum"), sigma))
            st = strata.setdefault(sigma, {"next": 0, "b": -1, "start": 0, "size": 0, "m": 0, "arms": []})
            i = st["next"]
            st["next"] += 1
            weights = d["weights"]
            W = sum(weights[a] for a in active_arms(weights))
            try:
                idx = parse_decimal(p.get("index"))
                a_i = p.get("alloc_seed")
                if not isinstance(a_i, str) or not HEX64_RE.match(a_i):
                    raise ValueError("alloc_seed is not 64 lower-case hex digits")
                a_i = bytes.fromhex(a_i)
                arm = p.get("arm")
                if arm not in ARMS:
                    raise ValueError("arm %r is not WHP, PSC or RCG" % (arm,))
                if weights.get(arm, 0) == 0:
                    raise ValueError("arm %s has weight 0 in %s" % (arm, district))
                if idx != i:
                    raise ValueError("index %d, expected %d (allocations of stratum %s are numbered 0, 1, 2, ...)"
                                     % (idx, i, sigma))
                if method == "permuted_block":
                    b, bs, pos = (parse_decimal(p.get(k)) for k in ("block", "block_size", "position"))
                    if st["b"] < 0 or i == st["start"] + st["size"]:
                        st.update(b=st["b"] + 1, start=i, size=bs, m=bs // W, arms=[])
                        if bs % W != 0 or bs // W not in M:
                            raise ValueError("block_size %d is not W x a multiplier (W = %d, multipliers %s)"
                                             % (bs, W, M))
                    earlier = list(st["arms"])
                    st["arms"].append(arm)      # the recorded arm counts for later positions
                    if b != st["b"]:
                        raise ValueError("block %d, expected %d" % (b, st["b"]))
                    if bs != st["size"]:
                        raise ValueError("block_size %d, but block %d has size %d" % (bs, b, st["size"]))
                    if pos != i - st["start"]:
                        raise ValueError("position %d, expected %d" % (pos, i - st["start"]))
                    want = draw_permuted(a_i, weights, st["m"], pos, earlier)
                else:
                    want = draw_simple(a_i, weights)
                if want != arm:
                    raise ValueError("arm %s, but the draw from alloc_seed gives %s" % (arm, want))
                n_checked += 1
            except (ValueError, TypeError) as e:
                pr.add(ev.seq, "allocated event %d (%s index %d): %s" % (ev.seq, sigma, i, e))
        return pr.result("%d allocations in %d strata follow from their alloc_seeds" % (n_checked, len(strata)))

    def check_derived_seeds(self):
        pr = Problems("derived_seeds")
        if not (self._trial_ready(pr) and self._config_ready(pr)):
            return pr.result("")
        t = self.trial
        tid, M = t["trial_id"], t["multipliers"]
        n_seeds = n_blocks = 0
        for ev in self._allocated():
            p = ev.payload
            try:
                sigma = p.get("stratum")
                if not isinstance(sigma, str):
                    raise ValueError("no stratum")
                i = parse_decimal(p.get("index"))
                want = alloc_seed(self.seed, tid, sigma, i).hex()
                if p.get("alloc_seed") != want:
                    raise ValueError("alloc_seed %s, the seed derives %s" % (p.get("alloc_seed"), want))
                n_seeds += 1
                if t["method"] == "permuted_block":
                    d = self.config.districts.get(p.get("district"))
                    if d is None:
                        raise ValueError("district %r is not in districts.toml" % (p.get("district"),))
                    W = sum(d["weights"][a] for a in active_arms(d["weights"]))
                    b = parse_decimal(p.get("block"))
                    size = W * block_multiplier(self.seed, tid, sigma, b, M)
                    if parse_decimal(p.get("block_size")) != size:
                        raise ValueError("block %d of %s has block_size %s, the seed derives %d"
                                         % (b, sigma, p.get("block_size"), size))
                    if p.get("position") == "0":
                        n_blocks += 1
            except (ValueError, TypeError) as e:
                pr.add(ev.seq, "allocated event %d: %s" % (ev.seq, e))
        return pr.result("%d alloc_seeds and %d block sizes derive from the seed" % (n_seeds, n_blocks))

    def check_psc(self):
        pr = Problems("psc")
        if not self._config_ready(pr):
            return pr.result("")
        for did, d in sorted(self.config.districts.items()):
            if d["weights"].get("PSC", 0) > 0 and not d["psc"]:
                pr.add(None, "districts.toml gives PSC weight %d in %s, whose psc = false"
                       % (d["weights"]["PSC"], did))
        n = 0
        for ev in self._allocated():
            if ev.get("arm") == "PSC":
                n += 1
                d = self.config.districts.get(ev.get("district"))
                if d is None or not d["psc"]:
                    pr.add(ev.seq, "allocated event %d: PSC in %s, which has no psc = true"
                           % (ev.seq, ev.get("district")))
        return pr.result("%d PSC allocations, all in psc = true districts" % n)

    def check_recorded_at(self):
        pr = Problems("recorded_at")
        prev = None
        for ev in self.events:
            try:
                t = parse_instant(ev.get("recorded_at"))
            except ValueError as e:
                pr.add(ev.seq, "event %d: recorded_at: %s" % (ev.seq, e))
                continue
            if prev is not None and t < prev[1]:
                pr.add(ev.seq, "event %d recorded_at %s is before event %d's %s"
                       % (ev.seq, ev.get("recorded_at"), prev[0], prev[1].strftime("%Y-%m-%dT%H:%M:%SZ")))
            if prev is None or t >= prev[1]:
                prev = (ev.seq, t)
        return pr.result("never decreases")

    # -- referrals, gatekeeper runs, lottery and locks -----------------------------

    def _replay(self):
        """One pass over the log; fills the gatekeeper and locks problem lists and
        returns the gatekeeper runs for the ordering and lottery checks."""
        gk, locks = Problems("gatekeeper"), Problems("locks")
        cfg = self.config
        refs = {}             # referral_id -> dict
        by_claimant = {}      # claimant -> [referral_id]
        runs = {}             # run_id -> dict
        run_order = []
        last_gk = {}          # district -> date of its latest run
        current_run = None
        L = cfg.locks

        def from_date(ref):
            if ref["state"] == "not_selected":
                return add_days(ref["gk_date"], L["not_selected_days"])
            if ref["state"] == "allocated":
                k = L["rcg_months"] if ref["arm"] == "RCG" else L["allocated_months"]
                return add_months(ref["gk_date"], k)
            return None

        for ev in self.events:
            p = ev.payload
            if ev.type != "gatekeeper_decision" and not (ev.type == "allocated" and current_run
                                                         and p.get("run_id") == current_run):
                current_run = None
            try:
                rec_day = parse_instant(p.get("recorded_at")).date()
            except ValueError:
                rec_day = None
            if ev.type == "referred":
                rid, claimant, district = p.get("referral_id"), p.get("claimant"), p.get("district")
                try:
                    rdate = parse_date(p.get("referral_date"))
                except ValueError as e:
                    gk.add(ev.seq, "referred event %d: referral_date: %s" % (ev.seq, e))
                    locks.add(ev.seq, "referred event %d: referral_date: %s" % (ev.seq, e))
                    continue
                if not isinstance(rid, str) or rid in refs:
                    gk.add(ev.seq, "referred event %d re-uses referral_id %r" % (ev.seq, rid))
                    continue
                if not isinstance(claimant, str) or not HEX64_RE.match(claimant):
                    locks.add(ev.seq, "referred event %d: claimant is not a 64-hex pseudonym" % ev.seq)
                if district not in cfg.districts:
                    gk.add(ev.seq, "referred event %d: district %r is not in districts.toml" % (ev.seq, district))
                if cfg.groups is not None and p.get("group") not in cfg.groups:
                    gk.add(ev.seq, "referred event %d: group %r is not in trial.toml" % (ev.seq, p.get("group")))
                if rec_day is not None and rdate > rec_day:
                    gk.add(ev.seq, "referred event %d: referral_date %s is after the day it was recorded"
                           % (ev.seq, rdate))
                # PROTOCOL.md §5: nothing pending, and on/after every from-date.
                for other in by_claimant.get(claimant, []):
                    o = refs[other]
                    if o["state"] in ("awaiting", "selected"):
                        locks.add(ev.seq, "referred event %d (%s): the claimant's referral %s (seq %d) still awaits "
                                  "the gatekeeper" % (ev.seq, rid, other, o["seq"]))
                        continue
                    f = from_date(o)
                    if f is not None and rdate < f:
                        what = "not_selected" if o["state"] == "not_selected" else "allocated_" + o["arm"].lower()
                        locks.add(ev.seq, "referred event %d (%s): referral_date %s is before %s, the from-date of "
                                  "referral %s (%s on %s)" % (ev.seq, rid, rdate, f, other, what, o["gk_date"]))
                refs[rid] = {"seq": ev.seq, "claimant": claimant, "district": district, "group": p.get("group"),
                             "date": rdate, "state": "awaiting", "gk_date": None, "arm": None, "run": None,
                             "decision_seq": None}
                by_claimant.setdefault(claimant, []).append(rid)
            elif ev.type == "cancelled":
                ref = refs.get(p.get("referral_id"))
                if ref is None:
                    gk.add(ev.seq, "cancelled event %d: no referral %r" % (ev.seq, p.get("referral_id")))
                elif ref["state"] != "awaiting":
                    gk.add(ev.seq, "cancelled event %d: referral %s is %s, not awaiting the gatekeeper"
                           % (ev.seq, p.get("referral_id"), ref["state"]))
                else:
                    ref["state"] = "cancelled"
            elif ev.type == "gatekeeper_decision":
                rid, run_id, decision, rule = p.get("referral_id"), p.get("run_id"), p.get("decision"), p.get("rule")
                try:
                    gk_date = parse_date(p.get("gk_date"))
                except ValueError as e:
                    gk.add(ev.seq, "gatekeeper_decision %d: gk_date: %s" % (ev.seq, e))
                    continue
                ref = refs.get(rid)
                if ref is None:
                    gk.add(ev.seq, "gatekeeper_decision %d: no referral %r" % (ev.seq, rid))
                    continue
                if decision not in ("selected", "not_selected"):
                    gk.add(ev.seq, "gatekeeper_decision %d: decision %r" % (ev.seq, decision))
                    continue
                if rule not in ("fifo", "lottery", "manual"):
                    gk.add(ev.seq, "gatekeeper_decision %d: rule %r" % (ev.seq, rule))
                    continue
                if rule == "lottery":
                    key = p.get("lottery_key")
                    if not isinstance(key, str) or not HEX64_RE.match(key):
                        gk.add(ev.seq, "gatekeeper_decision %d: a lottery decision without a 64-hex lottery_key"
                               % ev.seq)
                        continue
                elif "lottery_key" in p:
                    gk.add(ev.seq, "gatekeeper_decision %d: lottery_key in a %s decision" % (ev.seq, rule))
                if rec_day is not None and gk_date > rec_day:
                    gk.add(ev.seq, "gatekeeper_decision %d: gk_date %s is after the day it was recorded"
                           % (ev.seq, gk_date))
                run = runs.get(run_id)
                if run is None:
                    district = ref["district"]
                    run = {"id": run_id, "seq": ev.seq, "district": district, "gk_date": gk_date, "rule": rule,
                           "capacity": p.get("capacity"), "decisions": [], "allocations": [],
                           "pending": sorted((r for r in refs.values()
                                              if r["state"] == "awaiting" and r["district"] == district
                                              and r["date"] <= gk_date), key=lambda r: r["seq"])}
                    runs[run_id] = run
                    run_order.append(run)
                    if district in last_gk and gk_date < last_gk[district]:
                        gk.add(ev.seq, "gatekeeper_decision %d: run %s on %s is back-dated before %s's run on %s"
                               % (ev.seq, run_id, gk_date, district, last_gk[district]))
                    last_gk[district] = max(gk_date, last_gk.get(district, gk_date))
                    if rule != "manual":
                        want_rule = cfg.districts.get(district, {}).get("rule")
                        if rule != want_rule:
                            gk.add(ev.seq, "gatekeeper_decision %d: rule %s, but %s's gatekeeper_rule is %s"
                                   % (ev.seq, rule, district, want_rule))
                elif current_run != run_id:
                    gk.add(ev.seq, "gatekeeper_decision %d: run %s resumes after other events" % (ev.seq, run_id))
                elif run["allocations"]:
                    gk.add(ev.seq, "gatekeeper_decision %d: decision of run %s after its allocated events"
                           % (ev.seq, run_id))
                current_run = run_id
                for k, v in (("gk_date", gk_date), ("rule", rule), ("capacity", p.get("capacity"))):
                    if run[k] != v:
                        gk.add(ev.seq, "gatekeeper_decision %d: %s %s differs from run %s's %s"
                               % (ev.seq, k, v, run_id, run[k]))
                if ref["state"] != "awaiting":
                    gk.add(ev.seq, "gatekeeper_decision %d: referral %s is %s, not awaiting the gatekeeper"
                           % (ev.seq, rid, ref["state"]))
                    continue
                if ref["district"] != run["district"]:
                    gk.add(ev.seq, "gatekeeper_decision %d: referral %s is in %s, run %s is in %s"
                           % (ev.seq, rid, ref["district"], run_id, run["district"]))
                if ref["date"] > gk_date:
                    gk.add(ev.seq, "gatekeeper_decision %d: referral %s is dated %s, after gk_date %s"
                           % (ev.seq, rid, ref["date"], gk_date))
                ref.update(state="selected" if decision == "selected" else "not_selected",
                           gk_date=gk_date, run=run_id, decision_seq=ev.seq)
                run["decisions"].append({"seq": ev.seq, "ref": rid, "referred_seq": ref["seq"], "date": ref["date"],
                                         "decision": decision, "key": p.get("lottery_key")})
            elif ev.type == "allocated":
                rid = p.get("referral_id")
                ref = refs.get(rid)
                if ref is None:
                    gk.add(ev.seq, "allocated event %d: no referral %r" % (ev.seq, rid))
                    continue
                if ref["state"] != "selected":
                    gk.add(ev.seq, "allocated event %d: referral %s is %s, not selected and unallocated"
                           % (ev.seq, rid, ref["state"]))
                    continue
                if p.get("run_id") != ref["run"] or current_run != ref["run"]:
                    gk.add(ev.seq, "allocated event %d: not committed with referral %s's run %s"
                           % (ev.seq, rid, ref["run"]))
                for k, rk in (("claimant", "claimant"), ("district", "district"), ("group", "group")):
                    if p.get(k) != ref[rk]:
                        gk.add(ev.seq, "allocated event %d: %s %r, referred event %d says %r"
                               % (ev.seq, k, p.get(k), ref["seq"], ref[rk]))
                if p.get("gk_date") != ref["gk_date"].isoformat():
                    gk.add(ev.seq, "allocated event %d: gk_date %s, the decision says %s"
                           % (ev.seq, p.get("gk_date"), ref["gk_date"]))
                if p.get("arm") not in ARMS:
                    gk.add(ev.seq, "allocated event %d: arm %r" % (ev.seq, p.get("arm")))
                    continue
                ref.update(state="allocated", arm=p.get("arm"))
                runs[ref["run"]]["allocations"].append({"seq": ev.seq, "referred_seq": ref["seq"]})

        # Per run (PROTOCOL.md §3): what a run decides, and in which order.
        for run in run_order:
            ds = run["decisions"]
            if not ds:
                continue
            for a, b in zip(ds, ds[1:]):
                if b["referred_seq"] < a["referred_seq"]:
                    gk.add(b["seq"], "gatekeeper_decision %d of run %s is not in referred order" % (b["seq"], run["id"]))
                    break
            al = run["allocations"]
            for a, b in zip(al, al[1:]):
                if b["referred_seq"] < a["referred_seq"]:
                    gk.add(b["seq"], "allocated event %d of run %s is not in referred order" % (b["seq"], run["id"]))
                    break
            n_sel = sum(1 for d in ds if d["decision"] == "selected")
            if len(al) != n_sel:
                gk.add(ds[-1]["seq"], "run %s selected %d referrals but has %d allocated events"
                       % (run["id"], n_sel, len(al)))
            if run["rule"] == "manual":
                continue
            decided = {d["referred_seq"] for d in ds}
            pending = {r_["seq"] for r_ in run["pending"]}
            if decided != pending:
                gk.add(ds[0]["seq"], "capacity run %s decided %d referrals, but %d were pending in %s on %s"
                       % (run["id"], len(decided), len(pending), run["district"], run["gk_date"]))
            cap = run["capacity"]
            if cap is not None:
                try:
                    c = parse_decimal(cap)
                    if n_sel != min(c, len(ds)):
                        gk.add(ds[0]["seq"], "capacity run %s with capacity %d selected %d of %d"
                               % (run["id"], c, n_sel, len(ds)))
                except ValueError:
                    gk.add(ds[0]["seq"], "run %s: capacity %r is not a decimal" % (run["id"], cap))
            for seq, msg in self._order_problems(run):
                gk.add(seq, msg)
        return gk, locks, run_order

    @staticmethod
    def _order_problems(run):
        """Selected before not selected: by lottery key (as bytes), or by
        (referral_date, referred seq) under fifo. Reports the first decision, in
        log order, at which the run's decisions so far break the order."""
        if run["rule"] == "lottery":
            rank = lambda d: bytes.fromhex(d["key"])
            what = "lottery key"
        else:
            rank = lambda d: (d["date"], d["referred_seq"])
            what = "(referral_date, referred seq)"
        max_sel = min_not = None
        for d in run["decisions"]:
            k = rank(d)
            if d["decision"] == "selected":
                max_sel = k if max_sel is None or k > max_sel else max_sel
            else:
                min_not = k if min_not is None or k < min_not else min_not
            if max_sel is not None and min_not is not None and not max_sel < min_not:
                return [(d["seq"], "run %s (%s): a selected referral's %s is not below every not-selected one's "
                                   "(broken at gatekeeper_decision %d, %s)"
                         % (run["id"], run["rule"], what, d["seq"], d["ref"]))]
        return []

    def check_lottery(self, runs):
        pr = Problems("lottery")
        if not self._trial_ready(pr):
            return pr.result("")
        tid = self.trial["trial_id"]
        n_keys = n_runs = 0
        for run in runs:
            if run["rule"] == "manual":
                continue
            n_runs += 1
            if run["rule"] == "lottery":
                for d in run["decisions"]:
                    want = lottery_key(self.seed, tid, run["id"], d["ref"]).hex()
                    if d["key"] != want:
                        pr.add(d["seq"], "gatekeeper_decision %d (run %s, %s): lottery_key %s, the seed derives %s"
                               % (d["seq"], run["id"], d["ref"], d["key"], want))
                    else:
                        n_keys += 1
            for seq, msg in self._order_problems(run):
                pr.add(seq, msg)
        return pr.result("%d lottery keys derive from the seed; %d capacity runs select in order" % (n_keys, n_runs))

    # -- all -------------------------------------------------------------------

    def run(self):
        checks = [self.check_chain(), self.check_trial_config(), self.check_config_hash(),
                  self.check_commitment_file()]
        if self.seed is not None:
            checks += [self.check_commitment(), self.check_derived_seeds()]
        checks.append(self.check_draws())
        if self._trial_ready(Problems("x")) and self.config.usable:
            gk, locks, runs = self._replay()
            checks.append(gk.result("every decision is on a pending referral; capacity runs decide all "
                                    "pending and select in order"))
            if self.seed is not None:
                checks.append(self.check_lottery(runs))
            checks.append(self.check_psc())
            checks.append(locks.result("every referral was made outside the claimant's locks"))
        else:
            names = ["gatekeeper"] + (["lottery"] if self.seed is not None else []) + ["psc", "locks"]
            for name in names:
                pr = Problems(name)
                if self._trial_ready(pr):
                    self._config_ready(pr)
                checks.append(pr.result(""))
        checks.append(self.check_recorded_at())
        if self.checkpoint is not None:
            checks.append(self.check_checkpoint())
        head = None
        if self.events:
            head = self.events[-1].hash
        return {"ok": all(c["ok"] for c in checks), "events": len(self.lines), "head": head, "checks": checks}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Independently verify a whp audit bundle (ALLOCATION.md v1).")
    ap.add_argument("bundle", metavar="DIR", help="the folder written by `whp audit-bundle --out DIR`")
    ap.add_argument("--seed", metavar="FILE", help="the revealed master seed (64 lower-case hex digits and a newline)")
    ap.add_argument("--checkpoint", metavar="FILE",
                    help="a checkpoint {trial_id, seq, head} (`whp checkpoint`) the log must still hold")
    ap.add_argument("--json", action="store_true", help="print {ok, events, head, checks} as JSON")
    args = ap.parse_args(argv)
    try:
        seed = read_seed_file(args.seed) if args.seed is not None else None
        checkpoint = read_checkpoint(args.checkpoint) if args.checkpoint is not None else None
        report = Verifier(args.bundle, seed, checkpoint).run()
    except UsageError as e:
        print("verify_bundle: %s" % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for c in report["checks"]:
            if c["ok"]:
                print("%-16s ok    %s" % (c["name"], c["detail"]))
            else:
                at = " at seq %d" % c["first_bad_seq"] if "first_bad_seq" in c else ""
                print("%-16s FAIL%s: %s" % (c["name"], at, c["detail"]))
        print("%s: %d events, head %s" % ("OK" if report["ok"] else "FAILED", report["events"], report["head"]))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
