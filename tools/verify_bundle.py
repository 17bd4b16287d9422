#!/usr/bin/env python3
"""Independent verifier of whp audit bundles (contract revision 2).

Written from the specification alone (shared/spec/ALLOCATION.md, CONFIG.md,
PROTOCOL.md sections 3, 5 and 6, RULES2.md, vectors.json) and the project's
reading of RULES2 (docs/rules2.md), in Python 3 with the standard library
only, so that it shares no code with the Swift `whp` tool.

    python3 tools/verify_bundle.py DIR [--seed FILE] [--checkpoint FILE] [--json]
                                       [--pseudonym-key FILE] [--evaluation-key FILE]

DIR is what `whp audit-bundle --out DIR` writes: DIR/events.jsonl,
DIR/district-config/ and DIR/<trial_id>.commitment.json.

Exit status: 0 every check holds, 1 some check fails, 2 usage or I/O error.
Whatever the bundle holds, the verifier reports; it never raises.
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
PROVIDER_ARMS = ("WHP", "PSC")
ALGORITHM = "whp/v1"
TWO64 = 1 << 64
MASK64 = TWO64 - 1
NUMBER_LIMIT = 1 << 31          # docs/rules2.md: payload decimals are below 2^31
UNIFORM_MAX = 1 << 32           # ALLOCATION.md §3: 1 <= n <= 2^32
SHARE_MAX = 1000                # RULES2 R15: a share is an integer 0-1000
MIN_DATE = datetime.date(1900, 1, 1)
MAX_DATE = datetime.date(2999, 12, 31)     # R9: dates in range
CALENDAR_END = datetime.date(9999, 12, 31)  # arithmetic stops here

HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
DATE_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
INSTANT_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z\Z")
DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]{0,18})\Z")
TRIAL_ID_RE = re.compile(r"^[a-z0-9-]{1,64}\Z")
GROUP_RE = re.compile(r"^[a-z0-9_-]{1,64}\Z")
PROVIDER_ID_RE = re.compile(r"^[a-z0-9-]{1,64}\Z")
REFERRAL_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")

EVENT_TYPES = frozenset((
    "trial_started", "referred", "cancelled", "gatekeeper_decision", "allocated", "disclosed",
    "opted_out", "flagged_in_error", "export_made",
    # RULES2 R6, R14, R15
    "claimant_linked", "followed_up", "shares_set"))

FLAG_REASONS = ("ineligible", "duplicate", "wrong_group", "other")
STEPS = ("provider_referral", "started", "did_not_start", "left")
STEP_REASONS = {
    "did_not_start": ("declined", "did_not_attend", "not_suitable", "moved_away", "deceased", "other"),
    "left": ("completed", "found_work", "moved_away", "deceased", "health", "other"),
}
PROVIDER_KEYS = ("provider", "provider_stratum", "provider_index", "provider_seed", "provider_shares",
                 "provider_block", "provider_block_size", "provider_position")


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


# §8, with the ranges of RULES2 R9/R10: every parser here returns None rather
# than raising, and calendar arithmetic stops at 9999-12-31.
def parse_date(s):
    """A YYYY-MM-DD date (any year the calendar has); ValueError otherwise."""
    m = DATE_RE.match(s) if isinstance(s, str) else None
    if not m:
        raise ValueError("not a YYYY-MM-DD date: %r" % (s,))
    return datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_instant(s):
    m = INSTANT_RE.match(s) if isinstance(s, str) else None
    if not m:
        raise ValueError("not a YYYY-MM-DDTHH:MM:SSZ instant: %r" % (s,))
    return datetime.datetime(*(int(g) for g in m.groups()))


def date_of(s):
    """The date s names if it exists and lies in 1900-01-01 ... 2999-12-31, else None."""
    try:
        d = parse_date(s)
    except (ValueError, OverflowError):
        return None
    return d if MIN_DATE <= d <= MAX_DATE else None


def instant_of(s):
    """The instant s names if well-formed and dated 1900-01-01 ... 2999-12-31, else None."""
    try:
        t = parse_instant(s)
    except (ValueError, OverflowError):
        return None
    return t if MIN_DATE <= t.date() <= MAX_DATE else None


def add_days(d, k):
    """d + k days, clamped to 0001-01-01 ... 9999-12-31."""
    o = d.toordinal() + k
    if o > CALENDAR_END.toordinal():
        return CALENDAR_END
    if o < 1:
        return datetime.date.min
    return datetime.date.fromordinal(o)


def add_months(d, k):
    """ALLOCATION.md §8 add_months (k >= 0), clamped to 9999-12-31."""
    if k < 0:
        raise ValueError("add_months: k < 0")
    total = d.year * 12 + (d.month - 1) + k
    if total > 9999 * 12 + 11:
        return CALENDAR_END
    y, m = divmod(total, 12)
    m += 1
    return datetime.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def dec(s, limit=NUMBER_LIMIT):
    """A payload decimal (no sign, no leading zero) below `limit`, else None."""
    if not isinstance(s, str) or not DECIMAL_RE.match(s):
        return None
    n = int(s)
    return n if n < limit else None


def parse_decimal(s):
    n = dec(s, TWO64)
    if n is None:
        raise ValueError("not a decimal integer: %r" % (s,))
    return n


def is_hex64(s):
    return isinstance(s, str) and HEX64_RE.match(s) is not None


# RULES2 R4: key checks
def key_check(key):
    """HMAC(K, enc("whp/key-check/v1")) for a 32-byte key K."""
    return HMAC(key, enc("whp/key-check/v1"))


# RULES2 R15: provider draws
def provider_seed(seed, trial_id, pi, j):
    return HMAC(seed, enc("whp/provider/v1") + enc(trial_id) + enc(pi) + u64(j))


def provider_block_seed(seed, trial_id, pi, b):
    return HMAC(seed, enc("whp/provider-block/v1") + enc(trial_id) + enc(pi) + u64(b))


def provider_block_multiplier(seed, trial_id, pi, b, multipliers):
    return multipliers[uniform(provider_block_seed(seed, trial_id, pi, b), len(multipliers))]


def walk_items(t, items):
    """ALLOCATION.md §4's walk over (name, remaining) pairs in their given order."""
    for name, r in items:
        if r <= 0:
            continue
        if t < r:
            return name
        t -= r
    raise ValueError("draw: t beyond the urn")


def urn_draw(seed, items, m, position, dealt):
    """Position `position` of a permuted block: items = [(name, weight > 0)] in
    order, multiplier m, dealt = {name: draws at earlier positions}."""
    remaining = []
    for name, w in items:
        r = w * m - dealt.get(name, 0)
        if r < 0:
            raise ValueError("%s drawn more than %d times in its block" % (name, w * m))
        remaining.append((name, r))
    size = sum(w for _, w in items) * m
    if not 0 <= position < size:
        raise ValueError("position %d outside a block of size %d" % (position, size))
    return walk_items(uniform(seed, size - position), remaining)


def weighted_draw(seed, items):
    """Method simple over [(name, weight > 0)] in order."""
    return walk_items(uniform(seed, sum(w for _, w in items)), items)


def shares_string(shares):
    """`id=share` for every provider, sorted by id (UTF-8 bytes), joined by ','."""
    return ",".join("%s=%d" % (k, shares[k]) for k in sorted(shares, key=lambda s: s.encode("utf-8")))


def parse_shares(s):
    """[(id, share)] from a shares string, or None if it is not one (ids
    [a-z0-9-]{1,64} strictly ascending by bytes, shares decimal 0-1000)."""
    if not isinstance(s, str) or not s or len(s) > 100000:
        return None
    out = []
    for part in s.split(","):
        k, sep, v = part.partition("=")
        n = dec(v, SHARE_MAX + 1)
        if not sep or not PROVIDER_ID_RE.match(k) or n is None:
            return None
        if out and not out[-1][0].encode("utf-8") < k.encode("utf-8"):
            return None
        out.append((k, n))
    return out


def generate_provider_sequence(seed, trial_id, pi, phases, multipliers, method):
    """The provider draws of stratum pi as R15 derives them: phases = [(shares
    dict, number of draws)]; a draw opens a new block when the open one is full
    or its shares string differs."""
    out = []
    j, b, pos, size, m, open_shares, dealt = 0, -1, 0, 0, 0, None, {}
    for shares, count in phases:
        s = shares_string(shares)
        items = [(k, shares[k]) for k in sorted(shares, key=lambda x: x.encode("utf-8")) if shares[k] > 0]
        W = sum(w for _, w in items)
        for _ in range(count):
            p_j = provider_seed(seed, trial_id, pi, j)
            if method == "permuted_block":
                if b < 0 or pos >= size or s != open_shares:
                    b += 1
                    pos, open_shares, dealt = 0, s, {}
                    m = provider_block_multiplier(seed, trial_id, pi, b, multipliers)
                    size = W * m
                prov = urn_draw(p_j, items, m, pos, dealt)
                dealt[prov] = dealt.get(prov, 0) + 1
                out.append({"index": j, "block": b, "block_size": size, "position": pos, "provider": prov,
                            "provider_seed": p_j.hex(), "shares": s})
                pos += 1
            elif method == "simple":
                out.append({"index": j, "provider": weighted_draw(p_j, items), "provider_seed": p_j.hex(),
                            "shares": s})
            else:
                raise ValueError("unknown method %r" % (method,))
            j += 1
    return out


# ---------------------------------------------------------------------------
# TOML (tomllib where available; otherwise a reader for the config's subset)
# ---------------------------------------------------------------------------

class _MiniToml:
    """Comments, key = value, [table], [[array of tables]] (dotted names, so
    [[district.provider]] adds a table to the last [[district]]), basic and
    literal strings, integers, floats, booleans, bare dates, arrays and
    inline tables: the subset the config files use. Raises ValueError."""

    _KEY = re.compile(r"[A-Za-z0-9_-]+")
    _SCALAR = re.compile(r"true\b|false\b|([0-9]{4}-[0-9]{2}-[0-9]{2})(?![0-9T:])|"
                         r"([+-]?[0-9][0-9_]*)(\.[0-9][0-9_]*)?([eE][+-]?[0-9]+)?")

    def __init__(self, text):
        self.s = text
        self.i = 0

    def error(self, msg):
        line = self.s.count("\n", 0, min(self.i, len(self.s))) + 1
        raise ValueError("TOML line %d: %s" % (line, msg))

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

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
        if self.peek() in ("\"", "'"):
            return self.string()
        m = self._KEY.match(self.s, self.i)
        if not m:
            self.error("expected a key")
        self.i = m.end()
        return m.group(0)

    def dotted_key(self):
        parts = [self.key()]
        while True:
            self.ws()
            if self.peek() != ".":
                return parts
            self.i += 1
            parts.append(self.key())

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
                e = self.peek()
                self.i += 1
                simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
                if e in simple and e:
                    out.append(simple[e])
                elif e in ("u", "U"):
                    width = 4 if e == "u" else 8
                    digits = self.s[self.i:self.i + width]
                    if len(digits) != width or not re.match(r"^[0-9A-Fa-f]+\Z", digits):
                        self.error("bad unicode escape")
                    cp = int(digits, 16)
                    if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                        self.error("bad unicode escape")
                    out.append(chr(cp))
                    self.i += width
                else:
                    self.error("bad escape")
            else:
                out.append(c)

    def value(self, depth=0):
        if depth > 300:
            self.error("values nested too deeply")
        self.ws()
        c = self.peek()
        if not c:
            self.error("expected a value")
        if c in "\"'":
            return self.string()
        if c == "[":
            self.i += 1
            arr = []
            while True:
                self.ws(True)
                if self.peek() == "]":
                    self.i += 1
                    return arr
                arr.append(self.value(depth + 1))
                self.ws(True)
                if self.peek() == ",":
                    self.i += 1
                elif self.peek() != "]":
                    self.error("expected , or ]")
        if c == "{":
            self.i += 1
            tbl = {}
            self.ws()
            if self.peek() == "}":
                self.i += 1
                return tbl
            while True:
                k = self.key()
                self.ws()
                if self.peek() != "=":
                    self.error("expected =")
                self.i += 1
                if k in tbl:
                    self.error("duplicate key %s" % k)
                tbl[k] = self.value(depth + 1)
                self.ws()
                if self.peek() == ",":
                    self.i += 1
                elif self.peek() == "}":
                    self.i += 1
                    return tbl
                else:
                    self.error("expected , or }")
        m = self._SCALAR.match(self.s, self.i)
        if not m or not m.group(0):
            self.error("unsupported value")
        self.i = m.end()
        t = m.group(0)
        if t in ("true", "false"):
            return t == "true"
        if m.group(1):
            try:
                return datetime.date.fromisoformat(t)
            except ValueError:
                self.error("bad date %s" % t)
        if "__" in t or t.endswith("_") or "_." in t or "._" in t:
            self.error("bad number %s" % t)
        if m.group(3) or m.group(4):
            return float(t.replace("_", ""))
        digits = t.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0":
            self.error("leading zero in %s" % t)
        if len(digits) > 40:
            self.error("integer too long")
        return int(t.replace("_", ""))

    def parse(self):
        root = {}
        cur = root
        defined = set()      # ids of tables given a [header] or made by [[...]]
        while True:
            self.ws(True)
            if self.i >= len(self.s):
                return root
            if self.s.startswith("[[", self.i):
                self.i += 2
                parts = self.dotted_key()
                self.ws()
                if not self.s.startswith("]]", self.i):
                    self.error("expected ]]")
                self.i += 2
                parent = self._walk(root, parts[:-1])
                arr = parent.setdefault(parts[-1], [])
                if not isinstance(arr, list) or (arr and not all(isinstance(x, dict) for x in arr)):
                    self.error("%s is not an array of tables" % ".".join(parts))
                cur = {}
                arr.append(cur)
                defined.add(id(cur))
            elif self.peek() == "[":
                self.i += 1
                parts = self.dotted_key()
                self.ws()
                if self.peek() != "]":
                    self.error("expected ]")
                self.i += 1
                parent = self._walk(root, parts[:-1])
                existing = parent.get(parts[-1])
                if existing is None:
                    cur = parent[parts[-1]] = {}
                elif isinstance(existing, dict) and id(existing) not in defined:
                    cur = existing
                else:
                    self.error("table %s defined twice" % ".".join(parts))
                defined.add(id(cur))
            else:
                parts = self.dotted_key()
                self.ws()
                if self.peek() != "=":
                    self.error("expected =")
                self.i += 1
                tbl = self._walk(cur, parts[:-1])
                if parts[-1] in tbl:
                    self.error("duplicate key %s" % ".".join(parts))
                tbl[parts[-1]] = self.value()
            self.ws()
            if self.i < len(self.s) and self.s[self.i] not in "\r\n":
                self.error("unexpected text after value")

    def _walk(self, tbl, parts):
        for p in parts:
            nxt = tbl.get(p)
            if nxt is None:
                nxt = tbl[p] = {}
            elif isinstance(nxt, list) and nxt and isinstance(nxt[-1], dict):
                nxt = nxt[-1]
            elif not isinstance(nxt, dict):
                self.error("%s is not a table" % p)
            tbl = nxt
        return tbl


def load_toml(data):
    """Parse TOML bytes; raises ValueError (any failure of either reader)."""
    try:
        text = data.decode("utf-8")
        if _toml is not None:
            return _toml.loads(text)
        return _MiniToml(text).parse()
    except ValueError:
        raise
    except Exception as e:  # RecursionError, IndexError, ... in a hostile file
        raise ValueError("%s: %s" % (type(e).__name__, e))


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


def _json_loads(text):
    return json.loads(text, object_pairs_hook=_no_duplicates)


def parse_event_line(lineno, raw):
    """One line of events.jsonl: an Event, or a BadLine saying what is wrong."""
    try:
        obj = _json_loads(raw.decode("utf-8"))
    except Exception as e:  # not UTF-8, not JSON, nested too deeply, a number too long, ...
        return BadLine(lineno, "line %d is not a JSON object: %s" % (lineno, str(e)[:200]))
    if not isinstance(obj, dict):
        return BadLine(lineno, "line %d is not a JSON object" % lineno)
    if set(obj) != {"seq", "type", "payload", "hash"}:
        return BadLine(lineno, "line %d has keys %s, expected seq, type, payload, hash"
                       % (lineno, ", ".join(sorted(k[:40] for k in obj))[:300]))
    seq, type_, payload, hash_hex = obj["seq"], obj["type"], obj["payload"], obj["hash"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < TWO64:
        return BadLine(lineno, "line %d: seq is not a positive integer below 2^64" % lineno)
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
    if not is_hex64(hash_hex):
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


def read_key_file(path, what):
    """A seed or key file: 64 lower-case hex digits and a newline (any file mode:
    a revealed seed is public, and an auditor's copy of a key is theirs)."""
    try:
        with open(path, "rb") as f:
            data = f.read(200)
    except OSError as e:
        raise UsageError("cannot read %s file %s: %s" % (what, path, e.strerror or e))
    if len(data) != 65 or data[64:] != b"\n" or not re.match(rb"^[0-9a-f]{64}\Z", data[:64]):
        raise UsageError("%s file %s must hold 64 lower-case hex digits and a newline" % (what, path))
    return bytes.fromhex(data[:64].decode("ascii"))


def read_seed_file(path):
    return read_key_file(path, "seed")


def read_checkpoint(path):
    try:
        with open(path, "rb") as f:
            obj = _json_loads(f.read(1 << 20).decode("utf-8"))
    except OSError as e:
        raise UsageError("cannot read checkpoint %s: %s" % (path, e.strerror or e))
    except Exception as e:
        raise UsageError("checkpoint %s is not JSON: %s" % (path, str(e)[:200]))
    if (not isinstance(obj, dict) or not isinstance(obj.get("trial_id"), str)
            or not isinstance(obj.get("seq"), int) or isinstance(obj.get("seq"), bool)
            or not 1 <= obj["seq"] < TWO64 or not is_hex64(obj.get("head"))):
        raise UsageError("checkpoint %s must be {trial_id, seq, head}" % path)
    return obj


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class Config:
    """What the checks need from district-config/ (trial.toml, districts.toml,
    the optional calendar.toml), and what is wrong with it."""

    def __init__(self):
        self.fatal = []           # problems that leave nothing to check against
        self.invalid = []         # CONFIG.md / RULES2 validation errors
        self.trial = {}
        self.districts = {}       # id -> {"psc", "rule", "weights", "providers": {arm: [(id, share)]}}
        self.locks = None         # {"not_selected_days", "rcg_months", "allocated_months"}
        self.allocated_once = False
        self.groups = None
        self.recruitment = {"opens": None, "closes": None, "max_backdate_days": 14}
        self.deadlines = {"provider_referral_working_days": 10, "start_working_days": 15, "pending_days": 28}
        self.bank_holidays = []
        self.has_providers = False

    @property
    def usable(self):
        return self.locks is not None and bool(self.districts)


def _config_date(value, where, cfg):
    if isinstance(value, datetime.date):
        cfg.invalid.append("%s must be a quoted \"YYYY-MM-DD\" string" % where)
        return None
    d = date_of(value)
    if d is None:
        cfg.invalid.append("%s %r is not a date from 1900-01-01 to 2999-12-31" % (where, value))
    return d


def _load_trial(cfg, trial):
    cfg.trial = trial
    locks = trial.get("locks")
    keys = ("not_selected_days", "rcg_months", "allocated_months")
    if isinstance(locks, dict) and all(_is_int(locks.get(k)) and locks[k] >= 1 for k in keys):
        cfg.locks = {k: locks[k] for k in keys}
    else:
        cfg.fatal.append("trial.toml: [locks] needs integers >= 1 for %s" % ", ".join(keys))
    if isinstance(locks, dict) and "allocated_once" in locks:
        if isinstance(locks["allocated_once"], bool):
            cfg.allocated_once = locks["allocated_once"]
        else:
            cfg.invalid.append("trial.toml: [locks] allocated_once is not a boolean")
    groups = trial.get("groups")
    if (isinstance(groups, list) and groups and all(isinstance(g, str) and GROUP_RE.match(g) for g in groups)
            and len(set(groups)) == len(groups)):
        cfg.groups = set(groups)
    else:
        cfg.invalid.append("trial.toml: groups is not a list of distinct [a-z0-9_-]{1,64} names")
        if isinstance(groups, list):
            cfg.groups = set(g for g in groups if isinstance(g, str))
    rec = trial.get("recruitment")
    if rec is not None:
        if not isinstance(rec, dict):
            cfg.invalid.append("trial.toml: recruitment is not a table")
        else:
            for k in ("opens", "closes"):
                if k in rec:
                    cfg.recruitment[k] = _config_date(rec[k], "trial.toml: [recruitment] " + k, cfg)
            if "max_backdate_days" in rec:
                v = rec["max_backdate_days"]
                if _is_int(v) and 0 <= v <= 365:
                    cfg.recruitment["max_backdate_days"] = v
                else:
                    cfg.invalid.append("trial.toml: [recruitment] max_backdate_days is not an integer 0-365")
    dl = trial.get("deadlines")
    if dl is not None:
        if not isinstance(dl, dict):
            cfg.invalid.append("trial.toml: deadlines is not a table")
        else:
            for k, v in dl.items():
                if k not in cfg.deadlines:
                    continue
                if not _is_int(v) or v < 0:
                    cfg.invalid.append("trial.toml: [deadlines] %s is not an integer >= 0" % k)
                else:
                    cfg.deadlines[k] = v


def _load_providers(cfg, did, d, entries, psc):
    """[[district.provider]] of one district: {arm: [(id, share)] sorted by id}."""
    out = {}
    if entries is None:
        return out
    if not isinstance(entries, list):
        cfg.invalid.append("districts.toml: %s: provider is not an array of tables" % did)
        return out
    seen = set()
    for n, e in enumerate(entries):
        where = "districts.toml: %s: provider %d" % (did, n)
        if not isinstance(e, dict):
            cfg.invalid.append(where + " is not a table")
            continue
        pid, name, arm, share = e.get("id"), e.get("name"), e.get("arm"), e.get("share")
        bad = []
        if not isinstance(pid, str) or not PROVIDER_ID_RE.match(pid):
            bad.append("id is not [a-z0-9-]{1,64}")
        elif pid in seen:
            bad.append("id %s is not unique in the district" % pid)
        if not isinstance(name, str) or not name:
            bad.append("name is not a non-empty string")
        if arm not in PROVIDER_ARMS:
            bad.append("arm is not WHP or PSC")
        elif arm == "PSC" and not psc:
            bad.append("arm PSC where psc = false")
        if not _is_int(share) or not 0 <= share <= SHARE_MAX:
            bad.append("share is not an integer 0-1000")
        if bad:
            cfg.invalid.append("%s: %s" % (where, "; ".join(bad)))
            continue
        seen.add(pid)
        out.setdefault(arm, []).append((pid, share))
    for arm in list(out):
        out[arm].sort(key=lambda x: x[0].encode("utf-8"))
        if not any(s for _, s in out[arm]):
            cfg.invalid.append("districts.toml: %s: the %s providers' shares are all 0" % (did, arm))
            del out[arm]
    return out


def _load_districts(cfg, dists):
    entries = dists.get("district")
    if not isinstance(entries, list) or not entries:
        cfg.fatal.append("districts.toml: no [[district]] tables")
        return
    for n, d in enumerate(entries):
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not TRIAL_ID_RE.match(d["id"]):
            cfg.invalid.append("districts.toml: district %d has no [a-z0-9-]{1,64} id" % n)
            continue
        did = d["id"]
        if did in cfg.districts:
            cfg.invalid.append("districts.toml: duplicate district %s" % did)
            continue
        w = d.get("weights", {})
        if not isinstance(w, dict):
            cfg.invalid.append("districts.toml: %s: weights is not a table" % did)
            continue
        weights, ok = {}, True
        for arm, v in w.items():
            if arm not in ARMS:
                cfg.invalid.append("districts.toml: %s: unknown arm %s in weights" % (did, arm))
                ok = False
            elif not _is_int(v) or v < 0:
                cfg.invalid.append("districts.toml: %s: weight of %s is not an integer >= 0" % (did, arm))
                ok = False
            else:
                weights[arm] = v
        if not ok:
            continue
        if not any(weights.values()):
            cfg.invalid.append("districts.toml: %s: all weights are 0" % did)
            continue
        psc = d.get("psc")
        if not isinstance(psc, bool):
            cfg.invalid.append("districts.toml: %s: psc is not a boolean" % did)
            psc = False
        rule = d.get("gatekeeper_rule")
        if rule not in ("fifo", "lottery"):
            cfg.invalid.append("districts.toml: %s: gatekeeper_rule is not fifo or lottery" % did)
            rule = None
        providers = _load_providers(cfg, did, d, d.get("provider"), psc)
        if "provider" in d:
            cfg.has_providers = True
        cfg.districts[did] = {"psc": psc, "rule": rule, "weights": weights, "providers": providers}


def load_config(root):
    cfg = Config()
    docs = {}
    for name in ("trial.toml", "districts.toml", "calendar.toml"):
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as f:
                docs[name] = load_toml(f.read())
        except FileNotFoundError:
            if name != "calendar.toml":
                cfg.fatal.append("%s is missing" % name)
        except (OSError, ValueError) as e:
            (cfg.fatal if name != "calendar.toml" else cfg.invalid).append(
                "%s cannot be read: %s" % (name, str(e)[:300]))
    trial = docs.get("trial.toml")
    if isinstance(trial, dict):
        _load_trial(cfg, trial)
    dists = docs.get("districts.toml")
    if isinstance(dists, dict):
        _load_districts(cfg, dists)
    cal = docs.get("calendar.toml")
    if isinstance(cal, dict):
        bh = cal.get("bank_holidays", [])
        if not isinstance(bh, list):
            cfg.invalid.append("calendar.toml: bank_holidays is not a list")
        else:
            for n, v in enumerate(bh):
                d = _config_date(v, "calendar.toml: bank_holidays[%d]" % n, cfg)
                if d is not None:
                    cfg.bank_holidays.append(d)
    return cfg


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

class Problems:
    def __init__(self, name):
        self.name = name
        self.items = []   # (seq or None, message)
        self.skipped = None
        self.count = 0    # what the check re-derived, for its summary

    def add(self, seq, message):
        self.items.append((seq, message))

    def result(self, ok_detail):
        if self.skipped is not None and not self.items:
            return {"name": self.name, "ok": False, "detail": "not checked: " + self.skipped}
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


def _short(v, n=80):
    """A payload value for a message: repr, cut to n characters."""
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


class _Replay:
    """One pass over the log in seq order (docs/rules2.md): every event is
    judged by the check the table names, against the state the events before
    it leave. Nothing here raises on a value from the bundle: each value is
    bounded or parsed to None before it is used."""

    def __init__(self, v):
        self.v = v
        self.cfg = v.config
        self.t = v.trial
        self.rules2 = v.rules == 2
        self.seed = v.seed
        self.P = {n: Problems(n) for n in ("dates", "locks", "links", "gatekeeper", "draws", "providers", "psc",
                                           "follow_up", "derived_seeds")}
        t = self.t
        # The draws are judged by trial.toml, which config_hash binds to the log;
        # trial_started's copies of these values are compared with it under
        # config_hash only (docs/rules2.md), so a changed copy fails that check
        # alone. trial_started's own values stand in where trial.toml has none.
        tt = self.cfg.trial
        self.method = tt.get("method") if tt.get("method") in ("permuted_block", "simple") else t["method"]
        bm = tt.get("block_multipliers")
        self.M = (bm if isinstance(bm, list) and bm and all(_is_int(m) and 1 <= m < NUMBER_LIMIT for m in bm)
                  else t["multipliers"])
        sbg = tt.get("stratify_by_group")
        self.sbg = sbg if isinstance(sbg, bool) else t["stratify_by_group"]
        tid = tt.get("trial_id")
        self.tid = (tid if isinstance(tid, str) and TRIAL_ID_RE.match(tid)
                    else t["trial_id"] if isinstance(t["trial_id"], str) else None)
        self.can_draw = self.method is not None and self.M is not None and self.sbg is not None
        if not self.can_draw:
            for n in ("draws", "providers", "derived_seeds"):
                self.P[n].skipped = "trial_started's method, block_multipliers or stratify_by_group is unusable"
        if self.tid is None:
            self.P["derived_seeds"].skipped = "trial_started has no trial_id"
        rec = self.cfg.recruitment
        self.opens = rec["opens"] if rec["opens"] is not None else t["recorded_day"]
        self.closes = rec["closes"]
        self.mbd = rec["max_backdate_days"]
        if self.rules2 and self.opens is None:
            self.P["dates"].add(1, "opens is unknown: no [recruitment] opens and trial_started's recorded_at "
                                   "is malformed")
        self.refs = {}            # referral_id -> state of the referral
        self.by_pseud = {}        # pseudonym -> [referral_id], in referred order
        self.awaiting = {}        # district -> {referral_id: ref} awaiting the gatekeeper
        self.alias_to = {}        # alias -> claimant (links applied so far)
        self.aliases_of = {}      # claimant -> [alias]
        self.opted = set()
        self.runs = {}
        self.run_order = []
        self.last_gk = {}         # district -> date of its latest run
        self.current_run = None
        self.strata = {}          # arm draws per stratum
        self.pstrata = {}         # provider draws per provider stratum
        self.shares_sets = {}     # (district, arm) -> [(effective, seq, shares string)]
        self.n_follow = self.n_links = self.n_provider = self.n_dates = 0

    # -- the person (R6) --------------------------------------------------------

    def person(self, pseud):
        return self.alias_to.get(pseud, pseud)

    def identifiers(self, person):
        return [person] + self.aliases_of.get(person, [])

    def person_refs(self, person):
        out = []
        for ident in self.identifiers(person):
            out.extend(self.by_pseud.get(ident, ()))
        return out

    def from_date(self, ref):
        """PROTOCOL.md §5 with R1's base: the decision's recorded date on rules 2."""
        base = ref["decision_day"] if self.rules2 else ref["gk_date"]
        if base is None:
            return None
        L = self.cfg.locks
        if ref["state"] == "not_selected":
            return add_days(base, L["not_selected_days"])
        if ref["state"] == "allocated":
            return add_months(base, L["rcg_months"] if ref["arm"] == "RCG" else L["allocated_months"])
        return None

    # -- the pass -----------------------------------------------------------------

    def run(self):
        for ev in self.v.events:
            p = ev.payload
            # a run ends at the first event that is neither a decision nor an
            # allocation of it
            if not (ev.type in ("gatekeeper_decision", "allocated") and self.current_run is not None
                    and p.get("run_id") == self.current_run):
                self.current_run = None
            rec = instant_of(p.get("recorded_at"))
            day = rec.date() if rec is not None else None
            if ev.type in EVENT_TYPES and ev.type != "trial_started":
                getattr(self, "on_" + ev.type)(ev, p, day)
        self.close_runs()
        return self

    def window(self, seq, what, date, day, bound_closes):
        """R2 (dates): opens <= date [<= closes], day - max_backdate_days <= date <= day."""
        D = self.P["dates"]
        self.n_dates += 1
        if self.opens is not None and date < self.opens:
            D.add(seq, "event %d: %s %s is before opens %s" % (seq, what, date, self.opens))
        elif bound_closes and self.closes is not None and date > self.closes:
            D.add(seq, "event %d: %s %s is after closes %s" % (seq, what, date, self.closes))
        elif day is not None and date < add_days(day, -self.mbd):
            D.add(seq, "event %d: %s %s is more than max_backdate_days (%d) before its recorded date %s"
                  % (seq, what, date, self.mbd, day))
        elif day is not None and date > day:
            D.add(seq, "event %d: %s %s is after its recorded date %s" % (seq, what, date, day))

    def on_referred(self, ev, p, day):
        L, seq = self.P["locks"], ev.seq
        rid, claimant, district, group = p.get("referral_id"), p.get("claimant"), p.get("district"), p.get("group")
        rdate = date_of(p.get("referral_date"))
        bad = []
        if not isinstance(rid, str) or not REFERRAL_ID_RE.match(rid):
            bad.append("referral_id %s is not 1-64 of A-Za-z0-9._:-" % _short(rid))
        elif rid in self.refs:
            bad.append("referral_id %s was used by event %d" % (rid, self.refs[rid]["seq"]))
        if not is_hex64(claimant):
            bad.append("claimant is not a 64-hex pseudonym")
        if district not in self.cfg.districts:
            bad.append("district %s is not in districts.toml" % _short(district))
        if self.cfg.groups is not None and group not in self.cfg.groups:
            bad.append("group %s is not in trial.toml" % _short(group))
        if rdate is None:
            bad.append("referral_date %s is not a date from 1900-01-01 to 2999-12-31" % _short(p.get("referral_date")))
        if bad:
            L.add(seq, "referred event %d: %s" % (seq, "; ".join(bad)))
        if rdate is None:
            return
        if self.rules2:
            self.window(seq, "referral_date", rdate, day, True)
        if isinstance(claimant, str):
            self.eligibility(seq, rid, claimant, rdate)
        if (isinstance(rid, str) and rid not in self.refs and isinstance(claimant, str)
                and isinstance(district, str) and isinstance(group, str)):
            ref = {"seq": seq, "id": rid, "pseud": claimant, "district": district, "group": group, "date": rdate,
                   "state": "awaiting", "gk_date": None, "decision_day": None, "arm": None, "run": None,
                   "steps": {}, "flag": None}
            self.refs[rid] = ref
            self.by_pseud.setdefault(claimant, []).append(rid)
            self.awaiting.setdefault(district, {})[rid] = ref

    def eligibility(self, seq, rid, claimant, rdate):
        """PROTOCOL.md §5 for the person (R6), with R1's base and allocated_once (R14)."""
        L = self.P["locks"]
        L.count += 1
        person = self.person(claimant)
        for other in self.person_refs(person):
            o = self.refs[other]
            if o["state"] in ("awaiting", "selected"):
                L.add(seq, "referred event %d (%s): the person's referral %s (event %d) still awaits the gatekeeper"
                      % (seq, _short(rid), other, o["seq"]))
                return
            if o["state"] == "allocated" and self.cfg.allocated_once:
                L.add(seq, "referred event %d (%s): the person was allocated (referral %s, event %d) and "
                           "[locks] allocated_once = true" % (seq, _short(rid), other, o["seq"]))
                return
            f = self.from_date(o)
            if f is not None and rdate < f:
                what = "not_selected" if o["state"] == "not_selected" else "allocated_" + o["arm"].lower()
                base = "recorded " + str(o["decision_day"]) if self.rules2 else "gk_date " + str(o["gk_date"])
                L.add(seq, "referred event %d (%s): referral_date %s is before %s, the from-date of the person's "
                           "referral %s (%s, %s)" % (seq, _short(rid), rdate, f, other, what, base))
                return

    def on_cancelled(self, ev, p, day):
        rid = p.get("referral_id")
        ref = self.refs.get(rid)
        if ref is None or ref["state"] != "awaiting":
            self.P["locks"].add(ev.seq, "cancelled event %d: referral %s is %s, not awaiting the gatekeeper"
                                % (ev.seq, _short(rid), "unknown" if ref is None else ref["state"]))
            return
        ref["state"] = "cancelled"
        self.awaiting.get(ref["district"], {}).pop(rid, None)

    def on_gatekeeper_decision(self, ev, p, day):
        G, seq = self.P["gatekeeper"], ev.seq
        rid, run_id, decision, rule = p.get("referral_id"), p.get("run_id"), p.get("decision"), p.get("rule")
        gk_date = date_of(p.get("gk_date"))
        if gk_date is None:
            G.add(seq, "gatekeeper_decision %d: gk_date %s is not a date from 1900-01-01 to 2999-12-31"
                  % (seq, _short(p.get("gk_date"))))
            return
        if decision not in ("selected", "not_selected"):
            G.add(seq, "gatekeeper_decision %d: decision %s" % (seq, _short(decision)))
            return
        if rule not in ("fifo", "lottery", "manual"):
            G.add(seq, "gatekeeper_decision %d: rule %s" % (seq, _short(rule)))
            return
        # R2's window judges every decision with a usable gk_date, whatever else is
        # wrong with it (the gatekeeper check reports that). Rules 1 has no such
        # check (docs/rules2.md): revision 1's verify never judged a date by the day
        # it was recorded.
        if self.rules2:
            self.window(seq, "gk_date", gk_date, day, False)
        if not isinstance(run_id, str) or not REFERRAL_ID_RE.match(run_id):
            G.add(seq, "gatekeeper_decision %d: run_id %s is not 1-64 of A-Za-z0-9._:-" % (seq, _short(run_id)))
            return
        capacity = p.get("capacity")
        if capacity is not None:
            if rule == "manual":
                G.add(seq, "gatekeeper_decision %d: a manual decision with a capacity" % seq)
            elif dec(capacity) is None:
                G.add(seq, "gatekeeper_decision %d: capacity %s is not a decimal below 2^31" % (seq, _short(capacity)))
        # A decision is applied only to a referral awaiting the gatekeeper, and only
        # when it matches its run (district, gk_date, rule): one that does not fails
        # gatekeeper and changes nothing, so its referral stays pending (docs/rules2.md).
        ref = self.refs.get(rid)
        if ref is None or ref["state"] != "awaiting":
            G.add(seq, "gatekeeper_decision %d: referral %s is %s, not awaiting the gatekeeper"
                  % (seq, _short(rid), "unknown" if ref is None else ref["state"]))
            return
        run = self.runs.get(run_id)
        if run is None or self.current_run != run_id:
            if run is not None:
                G.add(seq, "gatekeeper_decision %d: run %s resumes after other events" % (seq, run_id))
            district = ref["district"]
            pend = self.awaiting.get(district, {})
            run = {"id": run_id, "seq": seq, "district": district, "gk_date": gk_date, "rule": rule,
                   "capacity": capacity, "decisions": [], "allocations": [],
                   "pending": sorted((r for r in pend.values() if r["date"] <= gk_date), key=lambda r: r["seq"])}
            self.runs[run_id] = run
            self.run_order.append(run)
            if district in self.last_gk and gk_date < self.last_gk[district]:
                G.add(seq, "gatekeeper_decision %d: run %s on %s is back-dated before %s's run on %s"
                      % (seq, run_id, gk_date, district, self.last_gk[district]))
            self.last_gk[district] = max(gk_date, self.last_gk.get(district, gk_date))
            if rule != "manual":
                want_rule = self.cfg.districts.get(district, {}).get("rule")
                if rule != want_rule:
                    G.add(seq, "gatekeeper_decision %d: rule %s, but %s's gatekeeper_rule is %s"
                          % (seq, rule, district, want_rule))
        elif run["allocations"]:
            G.add(seq, "gatekeeper_decision %d: decision of run %s after its allocated events" % (seq, run_id))
        self.current_run = run_id
        if ref["district"] != run["district"] or gk_date != run["gk_date"] or rule != run["rule"]:
            G.add(seq, "gatekeeper_decision %d: referral %s in %s on %s by %s, but run %s is in %s on %s by %s"
                  % (seq, rid, ref["district"], gk_date, rule, run_id, run["district"], run["gk_date"], run["rule"]))
            return
        if capacity != run["capacity"]:
            G.add(seq, "gatekeeper_decision %d: capacity %s differs from run %s's %s"
                  % (seq, _short(capacity), run_id, _short(run["capacity"])))
        if ref["date"] > gk_date:
            G.add(seq, "gatekeeper_decision %d: referral %s is dated %s, after gk_date %s"
                  % (seq, rid, ref["date"], gk_date))
        if rule == "lottery":
            if not is_hex64(p.get("lottery_key")):
                G.add(seq, "gatekeeper_decision %d: a lottery decision without a 64-hex lottery_key" % seq)
        elif "lottery_key" in p:
            G.add(seq, "gatekeeper_decision %d: lottery_key in a %s decision" % (seq, rule))
        G.count += 1
        ref.update(state="selected" if decision == "selected" else "not_selected",
                   gk_date=gk_date, decision_day=day, run=run_id)
        self.awaiting.get(ref["district"], {}).pop(rid, None)
        run["decisions"].append({"seq": seq, "ref": rid, "referred_seq": ref["seq"], "date": ref["date"],
                                 "decision": decision, "key": p.get("lottery_key")})

    # -- allocations ------------------------------------------------------------------

    def on_allocated(self, ev, p, day):
        """An allocation of a referral selected in its run (same run_id and gk_date):
        its arm, provider and PSC rule are judged in the referral's district and
        stratum (docs/rules2.md). One that belongs to no such selection fails draws
        and is judged no further: it moves no stratum."""
        Dr, seq = self.P["draws"], ev.seq
        rid = p.get("referral_id")
        ref = self.refs.get(rid)
        if ref is None:
            Dr.add(seq, "allocated event %d: no referral %s" % (seq, _short(rid)))
            return
        if ref["state"] != "selected":
            Dr.add(seq, "allocated event %d: referral %s is %s, not selected and unallocated" % (seq, rid, ref["state"]))
            return
        if p.get("run_id") != ref["run"] or p.get("gk_date") != ref["gk_date"].isoformat():
            Dr.add(seq, "allocated event %d: run_id %s and gk_date %s, but referral %s was selected by run %s on %s"
                   % (seq, _short(p.get("run_id")), _short(p.get("gk_date")), rid, ref["run"], ref["gk_date"]))
            return
        in_run = self.current_run == ref["run"]
        if not in_run:
            Dr.add(seq, "allocated event %d: not committed with referral %s's run %s" % (seq, rid, ref["run"]))
        for k, rk in (("claimant", "pseud"), ("district", "district"), ("group", "group")):
            if p.get(k) != ref[rk]:
                Dr.add(seq, "allocated event %d: %s %s, referred event %d says %s"
                       % (seq, k, _short(p.get(k)), ref["seq"], _short(ref[rk])))
        arm = p.get("arm") if p.get("arm") in ARMS else None
        district_id = ref["district"]
        d = self.cfg.districts.get(district_id)
        if d is None:   # its referral failed locks; nothing to draw from
            Dr.add(seq, "allocated event %d: district %s is not in districts.toml" % (seq, _short(district_id)))
            return
        if arm == "PSC":
            self.P["psc"].count += 1
            if d is None or not d["psc"]:
                self.P["psc"].add(seq, "allocated event %d: PSC in %s, which has no psc = true"
                                  % (seq, _short(district_id)))
        sigma = None
        if self.can_draw:
            sigma = district_id + "|" + ref["group"] if self.sbg else district_id
            self.arm_draw(ev, p, d, sigma, arm)
            if self.seed is not None and self.tid is not None:
                self.arm_seeds(ev, p, d)
        if self.can_draw:
            self.provider_draw(ev, p, d, district_id, sigma, arm, day)
        if arm is not None:
            ref.update(state="allocated", arm=arm)
            self.runs[ref["run"]]["allocations"].append({"seq": seq, "referred_seq": ref["seq"], "in_run": in_run,
                                                         "ref": rid})

    def arm_draw(self, ev, p, d, sigma, arm):
        """ALLOCATION.md §4 from the stored alloc_seed and the stratum's blocks."""
        Dr, seq = self.P["draws"], ev.seq
        bad = []
        if p.get("stratum") != sigma:
            bad.append("stratum %s, expected %s" % (_short(p.get("stratum")), _short(sigma)))
        st = self.strata.setdefault(sigma, {"next": 0, "b": -1, "pos": 0, "size": None, "m": 0, "dealt": {},
                                            "broken": False})
        i = st["next"]
        st["next"] += 1
        idx = dec(p.get("index"))
        if idx is None:
            bad.append("index %s is not a decimal below 2^31" % _short(p.get("index")))
        elif idx != i:
            bad.append("index %d, expected %d (the stratum's next)" % (idx, i))
        a_i = bytes.fromhex(p["alloc_seed"]) if is_hex64(p.get("alloc_seed")) else None
        if a_i is None:
            bad.append("alloc_seed is not 64 lower-case hex digits")
        weights = d["weights"]
        items = [(a, weights[a]) for a in ARMS if weights.get(a, 0) > 0]
        W = sum(w for _, w in items)
        if arm is None:
            bad.append("arm %s is not WHP, PSC or RCG" % _short(p.get("arm")))
        elif weights.get(arm, 0) == 0:
            bad.append("arm %s has weight 0 in %s" % (arm, p.get("district")))
        want = None
        if self.method == "permuted_block":
            b, bs, pos = dec(p.get("block")), dec(p.get("block_size")), dec(p.get("position"))
            for k, val in (("block", b), ("block_size", bs), ("position", pos)):
                if val is None:
                    bad.append("%s %s is not a decimal below 2^31" % (k, _short(p.get(k))))
            if st["b"] < 0 or (st["size"] is not None and st["pos"] >= st["size"]) or (st["size"] is None and pos == 0):
                st.update(b=st["b"] + 1, pos=0, dealt={})
                if bs is not None and bs > 0 and bs <= UNIFORM_MAX and bs % W == 0 and bs // W in self.M:
                    st.update(size=bs, m=bs // W, broken=False)
                else:
                    bad.append("block_size %s is not W x a multiplier (W = %d, multipliers %s)"
                               % (_short(p.get("block_size")), W, self.M))
                    st.update(size=bs if bs else None, broken=True)
            if b is not None and b != st["b"]:
                bad.append("block %d, expected %d" % (b, st["b"]))
            if bs is not None and bs != st["size"]:
                bad.append("block_size %d, but block %d has size %s" % (bs, st["b"], st["size"]))
            if pos is not None and pos != st["pos"]:
                bad.append("position %d, expected %d" % (pos, st["pos"]))
            if not st["broken"] and a_i is not None and arm is not None and weights.get(arm, 0) > 0:
                try:
                    want = urn_draw(a_i, items, st["m"], st["pos"], st["dealt"])
                except ValueError as e:
                    bad.append(str(e))
            st["pos"] += 1
            if arm is not None:
                st["dealt"][arm] = st["dealt"].get(arm, 0) + 1
        elif a_i is not None and arm is not None and weights.get(arm, 0) > 0:
            try:
                want = weighted_draw(a_i, items)
            except ValueError as e:
                bad.append(str(e))
        if want is not None and want != arm:
            bad.append("arm %s, but the draw from alloc_seed gives %s" % (arm, want))
        if bad:
            Dr.add(seq, "allocated event %d (%s index %d): %s" % (seq, _short(sigma, 60), i, "; ".join(bad)))
        else:
            Dr.count += 1

    def arm_seeds(self, ev, p, d):
        """With S: alloc_seed = a_i and block_size = W * M[uniform(k_b, len M)]."""
        DS, seq = self.P["derived_seeds"], ev.seq
        sigma, idx = p.get("stratum"), dec(p.get("index"))
        if not isinstance(sigma, str) or idx is None:
            DS.add(seq, "allocated event %d: no stratum and index to derive alloc_seed from" % seq)
            return
        want = alloc_seed(self.seed, self.tid, sigma, idx).hex()
        if p.get("alloc_seed") != want:
            DS.add(seq, "allocated event %d: alloc_seed %s, the seed derives %s" % (seq, _short(p.get("alloc_seed")), want))
            return
        DS.count += 1
        if self.method == "permuted_block":
            b, bs = dec(p.get("block")), dec(p.get("block_size"))
            if b is None or bs is None:
                DS.add(seq, "allocated event %d: no block and block_size to derive" % seq)
                return
            W = sum(w for w in d["weights"].values() if w > 0)
            size = W * block_multiplier(self.seed, self.tid, sigma, b, self.M)
            if bs != size:
                DS.add(seq, "allocated event %d: block %d of %s has block_size %d, the seed derives %d"
                       % (seq, b, _short(sigma, 60), bs, size))

    # -- providers (R15) -----------------------------------------------------------

    def config_shares(self, district_id, arm):
        d = self.cfg.districts.get(district_id)
        provs = d["providers"].get(arm) if d is not None and arm is not None else None
        return provs or None

    def shares_in_force(self, district_id, arm, day):
        """The latest shares_set (effective <= day; ties: greatest seq), else the config's."""
        best = None
        for eff, seq, s in self.shares_sets.get((district_id, arm), ()):
            if eff <= day and (best is None or (eff, seq) > best[:2]):
                best = (eff, seq, s)
        if best is not None:
            return best[2]
        return ",".join("%s=%d" % x for x in self.config_shares(district_id, arm))

    def provider_draw(self, ev, p, d, district_id, sigma, arm, day):
        PR, seq = self.P["providers"], ev.seq
        provs = self.config_shares(district_id, arm) if d is not None else None
        present = [k for k in PROVIDER_KEYS if k in p]
        if not provs:
            if present:
                PR.add(seq, "allocated event %d: provider fields (%s) on %s in %s, which has no providers"
                       % (seq, ", ".join(present), _short(arm), _short(district_id)))
            return
        if sigma is None:
            PR.add(seq, "allocated event %d: no stratum for the provider draw" % seq)
            return
        if not present:
            PR.add(seq, "allocated event %d: an allocation to %s in %s without a provider draw"
                   % (seq, arm, district_id))
            return
        pi = sigma + "|" + arm
        st = self.pstrata.setdefault(pi, {"next": 0, "b": -1, "pos": 0, "size": None, "m": 0, "dealt": {},
                                          "shares": None, "broken": False})
        j = st["next"]
        st["next"] += 1
        bad = []
        if p.get("provider_stratum") != pi:
            bad.append("provider_stratum %s, expected %s" % (_short(p.get("provider_stratum")), _short(pi, 60)))
        pj = dec(p.get("provider_index"))
        if pj is None:
            bad.append("provider_index %s is not a decimal below 2^31" % _short(p.get("provider_index")))
        elif pj != j:
            bad.append("provider_index %d, expected %d" % (pj, j))
        p_j = bytes.fromhex(p["provider_seed"]) if is_hex64(p.get("provider_seed")) else None
        if p_j is None:
            bad.append("provider_seed is not 64 lower-case hex digits")
        recorded = p.get("provider_shares")
        if day is not None:
            in_force = self.shares_in_force(district_id, arm, day)
            if recorded != in_force:
                bad.append("provider_shares %s, the shares in force are %s" % (_short(recorded), in_force))
        else:  # the recorded_at check reports the date; judge the draw by the recorded shares
            in_force = recorded
        parsed = parse_shares(in_force)
        ids = [k for k, _ in provs]
        if parsed is None or [k for k, _ in parsed] != ids:
            bad.append("provider_shares %s are not the shares of %s's %s providers" % (_short(in_force), district_id, arm))
            parsed = None
        items = [(k, s) for k, s in parsed if s > 0] if parsed is not None else []
        W = sum(s for _, s in items)
        if parsed is not None and not items:
            bad.append("the shares %s leave no provider" % in_force)
        provider = p.get("provider")
        if items and provider not in [k for k, _ in items]:
            bad.append("provider %s is not one of %s with a share above 0" % (_short(provider), in_force))
        want = None
        if self.method == "permuted_block":
            b, bs, pos = (dec(p.get(k)) for k in ("provider_block", "provider_block_size", "provider_position"))
            for k, val in (("provider_block", b), ("provider_block_size", bs), ("provider_position", pos)):
                if val is None:
                    bad.append("%s %s is not a decimal below 2^31" % (k, _short(p.get(k))))
            if (st["b"] < 0 or in_force != st["shares"] or (st["size"] is not None and st["pos"] >= st["size"])
                    or (st["size"] is None and pos == 0)):
                st.update(b=st["b"] + 1, pos=0, dealt={}, shares=in_force)
                if W > 0 and bs is not None and 0 < bs <= UNIFORM_MAX and bs % W == 0 and bs // W in self.M:
                    st.update(size=bs, m=bs // W, broken=False)
                else:
                    bad.append("provider_block_size %s is not W x a multiplier (W = %d, multipliers %s)"
                               % (_short(p.get("provider_block_size")), W, self.M))
                    st.update(size=bs if bs else None, broken=True)
            if b is not None and b != st["b"]:
                bad.append("provider_block %d, expected %d" % (b, st["b"]))
            if bs is not None and bs != st["size"]:
                bad.append("provider_block_size %d, but provider block %d has size %s" % (bs, st["b"], st["size"]))
            if pos is not None and pos != st["pos"]:
                bad.append("provider_position %d, expected %d" % (pos, st["pos"]))
            if not st["broken"] and p_j is not None and items:
                try:
                    want = urn_draw(p_j, items, st["m"], st["pos"], st["dealt"])
                except ValueError as e:
                    bad.append(str(e))
            st["pos"] += 1
            if isinstance(provider, str):
                st["dealt"][provider] = st["dealt"].get(provider, 0) + 1
        else:
            for k in ("provider_block", "provider_block_size", "provider_position"):
                if k in p:
                    bad.append("%s under method simple" % k)
            if p_j is not None and items:
                try:
                    want = weighted_draw(p_j, items)
                except ValueError as e:
                    bad.append(str(e))
        if want is not None and want != provider:
            bad.append("provider %s, but the draw from provider_seed gives %s" % (_short(provider), want))
        if bad:
            PR.add(seq, "allocated event %d (%s provider index %d): %s" % (seq, _short(pi, 60), j, "; ".join(bad)))
        else:
            self.n_provider += 1
        if self.seed is not None and self.tid is not None:
            self.provider_seeds(ev, p)

    def provider_seeds(self, ev, p):
        """With S: provider_seed = p_j, provider_block_size = W * M[uniform(q_b, len M)]."""
        DS, seq = self.P["derived_seeds"], ev.seq
        pi, j = p.get("provider_stratum"), dec(p.get("provider_index"))
        if not isinstance(pi, str) or j is None:
            DS.add(seq, "allocated event %d: no provider_stratum and provider_index to derive provider_seed from" % seq)
            return
        want = provider_seed(self.seed, self.tid, pi, j).hex()
        if p.get("provider_seed") != want:
            DS.add(seq, "allocated event %d: provider_seed %s, the seed derives %s"
                   % (seq, _short(p.get("provider_seed")), want))
            return
        DS.count += 1
        if self.method == "permuted_block":
            b, bs = dec(p.get("provider_block")), dec(p.get("provider_block_size"))
            parsed = parse_shares(p.get("provider_shares"))
            W = sum(s for _, s in parsed) if parsed else 0
            if b is None or bs is None or W == 0:
                DS.add(seq, "allocated event %d: no provider_block, provider_block_size and shares to derive" % seq)
                return
            size = W * provider_block_multiplier(self.seed, self.tid, pi, b, self.M)
            if bs != size:
                DS.add(seq, "allocated event %d: provider block %d of %s has size %d, the seed derives %d"
                       % (seq, b, _short(pi, 60), bs, size))

    def on_shares_set(self, ev, p, day):
        PR, seq = self.P["providers"], ev.seq
        district_id, arm, eff_raw, s = p.get("district"), p.get("arm"), p.get("effective"), p.get("shares")
        bad = []
        provs = None
        if district_id not in self.cfg.districts:
            bad.append("district %s is not in districts.toml" % _short(district_id))
        elif arm not in PROVIDER_ARMS or not self.config_shares(district_id, arm):
            bad.append("%s has no %s providers" % (district_id, _short(arm)))
        else:
            provs = self.config_shares(district_id, arm)
        eff = date_of(eff_raw)
        if eff is None:
            bad.append("effective %s is not a date from 1900-01-01 to 2999-12-31" % _short(eff_raw))
        elif day is not None and eff < day:
            bad.append("effective %s is before its recorded date %s" % (eff, day))
        parsed = parse_shares(s)
        if parsed is None:
            bad.append("shares %s is not a shares string" % _short(s))
        elif provs is not None and [k for k, _ in parsed] != [k for k, _ in provs]:
            bad.append("shares %s do not name exactly the providers %s" % (_short(s), ",".join(k for k, _ in provs)))
        elif not any(n for _, n in parsed):
            bad.append("shares %s are all 0" % s)
        if bad:
            PR.add(seq, "shares_set event %d: %s" % (seq, "; ".join(bad)))
            return
        self.shares_sets.setdefault((district_id, arm), []).append((eff, seq, s))

    # -- other events --------------------------------------------------------------

    def on_disclosed(self, ev, p, day):
        if p.get("referral_id") not in self.refs:
            self.P["gatekeeper"].add(ev.seq, "disclosed event %d: no referral %s" % (ev.seq, _short(p.get("referral_id"))))

    def on_flagged_in_error(self, ev, p, day):
        G, seq = self.P["gatekeeper"], ev.seq
        rid, reason = p.get("referral_id"), p.get("reason")
        ref = self.refs.get(rid)
        if ref is None or ref["state"] not in ("selected", "not_selected", "allocated"):
            G.add(seq, "flagged_in_error %d: referral %s is %s, not decided by the gatekeeper"
                  % (seq, _short(rid), "unknown" if ref is None else ref["state"]))
            return
        if ref["flag"] is not None:
            G.add(seq, "flagged_in_error %d: referral %s was flagged by event %d" % (seq, rid, ref["flag"]))
            return
        if reason not in FLAG_REASONS:
            G.add(seq, "flagged_in_error %d: reason %s is not one of %s" % (seq, _short(reason), ", ".join(FLAG_REASONS)))
        if "corrected_group" in p:
            cg = p["corrected_group"]
            if reason != "wrong_group":
                G.add(seq, "flagged_in_error %d: corrected_group with reason %s, not wrong_group" % (seq, _short(reason)))
            elif self.cfg.groups is not None and cg not in self.cfg.groups:
                G.add(seq, "flagged_in_error %d: corrected_group %s is not in trial.toml" % (seq, _short(cg)))
        ref["flag"] = seq

    def on_opted_out(self, ev, p, day):
        L, seq = self.P["locks"], ev.seq
        c = p.get("claimant")
        if not is_hex64(c):
            L.add(seq, "opted_out event %d: claimant is not a 64-hex pseudonym" % seq)
            return
        if date_of(p.get("date")) is None:
            L.add(seq, "opted_out event %d: date %s is not a date from 1900-01-01 to 2999-12-31"
                  % (seq, _short(p.get("date"))))
        already = [i for i in self.identifiers(self.person(c)) if i in self.opted]
        if already:
            L.add(seq, "opted_out event %d: the person already opted out%s" % (
                seq, "" if already == [c] else " (under a linked identifier)"))
        self.opted.add(c)

    def on_export_made(self, ev, p, day):
        pass

    def on_claimant_linked(self, ev, p, day):
        K, seq = self.P["links"], ev.seq
        c, a = p.get("claimant"), p.get("alias")
        if not is_hex64(c) or not is_hex64(a) or c == a:
            K.add(seq, "claimant_linked event %d: claimant and alias must be two 64-hex pseudonyms" % seq)
            return
        if a in self.alias_to:
            if self.alias_to[a] == c:
                K.add(seq, "claimant_linked event %d: the same link was recorded before (a repeat appends nothing)" % seq)
            else:
                K.add(seq, "claimant_linked event %d: the alias is already linked to another claimant" % seq)
            return
        if a in self.aliases_of:
            K.add(seq, "claimant_linked event %d: the alias is already the claimant of a link" % seq)
            return
        if c in self.alias_to:
            K.add(seq, "claimant_linked event %d: the claimant is already the alias of a link" % seq)
            return
        self.alias_to[a] = c
        self.aliases_of.setdefault(c, []).append(a)
        waiting = [r for r in self.person_refs(c) if self.refs[r]["state"] in ("awaiting", "selected")]
        if len(waiting) > 1:
            K.add(seq, "claimant_linked event %d: the link gives the person two referrals awaiting the gatekeeper "
                       "(%s)" % (seq, ", ".join(waiting[:2])))
            return
        self.n_links += 1

    def on_followed_up(self, ev, p, day):
        F, seq = self.P["follow_up"], ev.seq
        rid, step, raw = p.get("referral_id"), p.get("step"), p.get("date")
        ref = self.refs.get(rid)
        date = date_of(raw)
        bad = None
        if ref is None:
            bad = "no referral %s" % _short(rid)
        elif ref["state"] != "allocated" or ref["arm"] not in ("WHP", "PSC"):
            bad = "referral %s is not allocated WHP or PSC" % rid
        elif step not in STEPS:
            bad = "step %s is not one of %s" % (_short(step), ", ".join(STEPS))
        elif date is None:
            bad = "date %s is not a date from 1900-01-01 to 2999-12-31" % _short(raw)
        elif step in STEP_REASONS and p.get("reason") not in STEP_REASONS[step]:
            bad = "step %s needs a reason of %s, not %s" % (step, ", ".join(STEP_REASONS[step]), _short(p.get("reason")))
        elif step not in STEP_REASONS and "reason" in p:
            bad = "step %s takes no reason" % step
        elif step in ref["steps"]:
            bad = "step %s of referral %s was taken before" % (step, rid)
        else:
            steps = ref["steps"]
            prev = {"provider_referral": None, "started": "provider_referral",
                    "did_not_start": "provider_referral", "left": "started"}[step]
            if step in ("started", "did_not_start") and ("started" in steps or "did_not_start" in steps):
                bad = "step %s after %s" % (step, "started" if "started" in steps else "did_not_start")
            elif prev is not None and prev not in steps:
                bad = "step %s before %s" % (step, prev)
            else:
                floor = steps[prev] if prev is not None else ref["decision_day"]
                what = prev + "'s date" if prev is not None else "the decision's recorded date"
                if floor is not None and date < floor:
                    bad = "date %s is before %s %s" % (date, what, floor)
        # R2 (docs/rules2.md): on rules 2 `dates` judges a follow-up dated after its
        # recorded date whatever else is wrong with it; on rules 1 `follow_up` does.
        if date is not None and day is not None and date > day:
            if self.rules2:
                self.P["dates"].add(seq, "event %d: follow-up date %s is after its recorded date %s" % (seq, date, day))
            elif bad is None:
                bad = "date %s is after its recorded date %s" % (date, day)
        if self.rules2 and date is not None:
            self.n_dates += 1
        if bad is not None:
            F.add(seq, "followed_up event %d: %s" % (seq, bad))
            return
        ref["steps"][step] = date
        self.n_follow += 1

    # -- runs ----------------------------------------------------------------------

    def close_runs(self):
        """Per run (PROTOCOL.md §3): what it decides, its order, its allocations."""
        G, Dr = self.P["gatekeeper"], self.P["draws"]
        for run in self.run_order:
            ds = run["decisions"]
            if not ds:
                continue
            for a, b in zip(ds, ds[1:]):
                if b["referred_seq"] < a["referred_seq"]:
                    G.add(b["seq"], "gatekeeper_decision %d of run %s is not in referred order" % (b["seq"], run["id"]))
                    break
            al = run["allocations"]
            for a, b in zip(al, al[1:]):
                if b["referred_seq"] < a["referred_seq"]:
                    Dr.add(b["seq"], "allocated event %d of run %s is not in referred order" % (b["seq"], run["id"]))
                    break
            # every selection allocated before the run ends (its first event that is
            # neither one of its decisions nor one of its allocations)
            allocated_in_run = {a["ref"] for a in al if a["in_run"]}
            for dd in ds:
                if dd["decision"] == "selected" and dd["ref"] not in allocated_in_run:
                    Dr.add(dd["seq"], "referral %s was selected by gatekeeper_decision %d (run %s) but not allocated "
                                      "in its run" % (dd["ref"], dd["seq"], run["id"]))
            if run["rule"] == "manual":
                continue
            n_sel = sum(1 for x in ds if x["decision"] == "selected")
            decided = {x["referred_seq"] for x in ds}
            pending = {r["seq"] for r in run["pending"]}
            if decided != pending:
                G.add(ds[0]["seq"], "capacity run %s decided %d referrals, but %d were pending in %s on %s"
                      % (run["id"], len(decided), len(pending), run["district"], run["gk_date"]))
            c = dec(run["capacity"]) if run["capacity"] is not None else None
            if c is not None and n_sel != min(c, len(ds)):
                G.add(ds[0]["seq"], "capacity run %s with capacity %d selected %d of %d" % (run["id"], c, n_sel, len(ds)))
            for seq, msg in order_problems(run):
                G.add(seq, msg)


def order_problems(run):
    """Selected before not selected: by lottery key (as bytes), or by
    (referral_date, referred seq) under fifo. Like every rule of a run as a
    whole, a broken order fails at the run's first decision (docs/rules2.md);
    the detail names the first decision, in log order, at which it breaks."""
    if run["rule"] == "lottery":
        rank = lambda d: bytes.fromhex(d["key"]) if is_hex64(d["key"]) else None
        what = "lottery key"
    else:
        rank = lambda d: (d["date"], d["referred_seq"])
        what = "(referral_date, referred seq)"
    max_sel = min_not = None
    for d in run["decisions"]:
        k = rank(d)
        if k is None:   # a decision of another rule in this run: the gatekeeper check reports it
            continue
        if d["decision"] == "selected":
            max_sel = k if max_sel is None or k > max_sel else max_sel
        else:
            min_not = k if min_not is None or k < min_not else min_not
        if max_sel is not None and min_not is not None and not max_sel < min_not:
            return [(run["decisions"][0]["seq"], "run %s (%s): a selected referral's %s is not below every not-selected one's "
                               "(broken at gatekeeper_decision %d, %s)" % (run["id"], run["rule"], what, d["seq"], d["ref"]))]
    return []


class Verifier:
    def __init__(self, bundle, seed=None, checkpoint=None, pseudonym_key=None, evaluation_key=None):
        self.bundle = bundle
        self.seed = seed
        self.checkpoint = checkpoint
        self.keys = {"pseudonym_key_check": pseudonym_key, "evaluation_key_check": evaluation_key}
        self.notes = []           # what main prints on stderr
        if not os.path.isdir(bundle):
            raise UsageError("%s is not a directory" % bundle)
        self.lines = load_events(os.path.join(bundle, "events.jsonl"))
        self.events = [e for e in self.lines if isinstance(e, Event)]
        self.config_dir = os.path.join(bundle, "district-config")
        if not os.path.isdir(self.config_dir):
            raise UsageError("%s has no district-config folder" % bundle)
        self.config = load_config(self.config_dir)
        self.trial = self._trial_started()
        self.rules = self.trial["rules"] if self.trial is not None else 2
        self.commitment_file, self.commitment_file_error = self._commitment_file()

    # -- inputs ------------------------------------------------------------

    def _trial_started(self):
        """Parameters from the trial_started event (seq 1), or None. Every
        problem with them is a config_hash failure at seq 1."""
        first = self.lines[0] if self.lines else None
        if not isinstance(first, Event) or first.seq != 1 or first.type != "trial_started":
            return None
        p = first.payload
        t = {"trial_id": p.get("trial_id"), "commitment": p.get("commitment"),
             "config_hash": p.get("config_hash"), "method": p.get("method"), "multipliers": None,
             "stratify_by_group": None, "frontline_rcg": p.get("frontline_rcg"), "rules": 1,
             "recorded_day": None, "errors": []}
        err = t["errors"]
        if not isinstance(t["trial_id"], str) or not TRIAL_ID_RE.match(t["trial_id"]):
            err.append("trial_id is not [a-z0-9-]{1,64}")
        for k in ("commitment", "config_hash"):
            if not is_hex64(t[k]):
                err.append("%s is not 64 lower-case hex digits" % k)
        if p.get("algorithm") != ALGORITHM:
            err.append("algorithm is %s, this verifier knows %s" % (_short(p.get("algorithm")), ALGORITHM))
        if t["method"] not in ("permuted_block", "simple"):
            err.append("method %s is not permuted_block or simple" % _short(t["method"]))
            t["method"] = None
        bm = p.get("block_multipliers")
        ms = [dec(x) for x in bm.split(",")] if isinstance(bm, str) and len(bm) < 100000 else [None]
        if ms and all(m is not None and m >= 1 for m in ms):
            t["multipliers"] = ms
        else:
            err.append("block_multipliers %s is not a list of decimals from 1 to 2^31 - 1" % _short(bm))
        sbg = p.get("stratify_by_group")
        if sbg in ("true", "false"):
            t["stratify_by_group"] = sbg == "true"
        else:
            err.append("stratify_by_group %s is not true/false" % _short(sbg))
        if t["frontline_rcg"] not in ("hidden", "dcams"):
            err.append("frontline_rcg %s is not hidden/dcams" % _short(t["frontline_rcg"]))
            t["frontline_rcg"] = None
        rec = instant_of(p.get("recorded_at"))
        t["recorded_day"] = rec.date() if rec is not None else None
        # docs/rules2.md: a trial_started with a value outside its field's domain
        # (an unknown rules value, a malformed key check, method, ...) is unreadable:
        # config_hash fails, and the rest of the log is judged as a rules 1 trial
        # (the checks only rules 2 has are left out), as whp verify judges it.
        unreadable = bool(err) and not all(e.startswith("algorithm ") or e.startswith("trial_id ") for e in err)
        unreadable = unreadable or rec is None
        for k in ("pseudonym_key_check", "evaluation_key_check"):
            if k in p and not is_hex64(p[k]):
                err.append("%s is not 64 lower-case hex digits" % k)
                unreadable = True
        # R0: rules absent = 1, "2" = 2; anything else fails config_hash.
        if "rules" in p:
            if p["rules"] != "2":
                err.append("rules %s is neither absent (rules 1) nor 2" % _short(p["rules"]))
                unreadable = True
            else:
                for k in ("pseudonym_key_check", "evaluation_key_check"):
                    if k not in p:
                        err.append("a rules 2 trial_started needs %s (64 lower-case hex digits)" % k)
                if not unreadable:
                    t["rules"] = 2
        for k, key in self.keys.items():
            if key is None:
                continue
            have = p.get(k)
            if not is_hex64(have):
                self.notes.append("%s: trial_started has no %s to check the given key against" % (k, k))
            elif key_check(key).hex() != have:
                err.append("the given %s file does not match trial_started's %s"
                           % ("pseudonym key" if k.startswith("pseudonym") else "evaluation key", k))
        return t

    def _commitment_file(self):
        """BUNDLE/<trial_id>.commitment.json, or (None, where we looked)."""
        t = self.trial
        if t is None or not isinstance(t["trial_id"], str) or not TRIAL_ID_RE.match(t["trial_id"]):
            return None, "no usable trial_id to name the commitment file"
        name = t["trial_id"] + ".commitment.json"
        path = os.path.join(self.bundle, name)
        if not os.path.isfile(path):
            return None, "no %s" % path
        try:
            with open(path, "rb") as f:
                obj = _json_loads(f.read(1 << 20).decode("utf-8"))
        except OSError as e:
            raise UsageError("cannot read %s: %s" % (path, e.strerror or e))
        except Exception as e:
            return {"_name": name, "_error": "%s is not JSON: %s" % (name, str(e)[:200])}, None
        if not isinstance(obj, dict):
            return {"_name": name, "_error": "%s is not a JSON object" % name}, None
        obj["_name"] = name
        return obj, None

    def _trial_ready(self, problems):
        if self.trial is None:
            problems.skipped = "no trial_started event at seq 1"
            return False
        return True

    def _config_ready(self, problems):
        if not self.config.usable:
            problems.skipped = "district-config unusable: " + "; ".join(self.config.fatal)
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
            pr.add(1, "the first event is %s at seq %d, not trial_started at seq 1" % (_short(first.type), first.seq))
            return pr.result("")
        tid, c = first.get("trial_id"), first.get("commitment")
        if not isinstance(tid, str) or not is_hex64(c):
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
        for ev in self.events:
            if ev.type not in EVENT_TYPES:
                pr.add(ev.seq, "event %d has the unknown type %s" % (ev.seq, _short(ev.type)))
            elif ev.type == "trial_started" and ev is not first:
                pr.add(ev.seq, "a second trial_started event at seq %d" % ev.seq)
        return pr.result("%d events, head %s" % (len(self.lines), h.hex()))

    def check_checkpoint(self):
        """ALLOCATION.md §10: the log still holds exactly head at seq."""
        pr = Problems("checkpoint")
        cp = self.checkpoint
        if self.trial is not None and cp["trial_id"] != self.trial["trial_id"]:
            pr.add(None, "the checkpoint is for trial %s, the log for %s"
                   % (_short(cp["trial_id"]), _short(self.trial["trial_id"])))
        at = [e for e in self.events if e.seq == cp["seq"]]
        if not at:
            pr.add(cp["seq"], "the log has no event %d (it holds %d lines)" % (cp["seq"], len(self.lines)))
        elif at[0].hash != cp["head"]:
            pr.add(cp["seq"], "event %d has hash %s, the checkpoint says %s" % (cp["seq"], at[0].hash, cp["head"]))
        return pr.result("event %d still has hash %s (the chain check recomputes it)" % (cp["seq"], cp["head"]))

    # -- config -----------------------------------------------------------------

    def check_config_hash(self):
        """§6 hash = trial_started's; trial_started agrees with trial.toml; R0/R4 fields."""
        pr = Problems("config_hash")
        try:
            got = config_hash_dir(self.config_dir).hex()
        except ConfigTreeError as e:
            pr.add(1, str(e))
            got = None
        except OSError as e:
            raise UsageError("cannot read %s: %s" % (self.config_dir, e.strerror or e))
        t = self.trial
        if t is None:
            pr.skipped = "no trial_started event at seq 1"
            return pr.result("")
        if got is not None and t["config_hash"] != got:
            pr.add(1, "district-config hashes to %s, trial_started says %s" % (got, _short(t["config_hash"])))
        if t["errors"]:
            pr.add(1, "trial_started does not match district-config: " + "; ".join(t["errors"]))
        for m in self.config.fatal:
            pr.add(1, "district-config: " + m)
        tt = self.config.trial
        if tt:
            want = {"trial_id": t["trial_id"], "method": t["method"], "block_multipliers": t["multipliers"],
                    "stratify_by_group": t["stratify_by_group"], "frontline_rcg": t["frontline_rcg"]}
            for k, v in want.items():
                if v is not None and tt.get(k) != v:
                    pr.add(1, "trial_started does not match district-config: %s = %s, trial.toml says %s"
                           % (k, _short(v), _short(tt.get(k))))
        if self.rules == 1:
            for m in self.config.invalid:
                pr.add(1, "district-config is not valid: " + m)
        return pr.result("%s (rules %d, %s, multipliers %s, stratify_by_group %s)"
                         % (got, self.rules, t["method"], t["multipliers"], str(t["stratify_by_group"]).lower()))

    def check_config_rules(self):
        """Rules 2: no fifo under hidden (R3); the config keys are valid (RULES2's CONFIG.md additions)."""
        pr = Problems("config_rules")
        frontline = None   # trial.toml's (R3 is a rule of the config), else trial_started's
        if self.config.trial.get("frontline_rcg") in ("hidden", "dcams"):
            frontline = self.config.trial["frontline_rcg"]
        elif self.trial is not None:
            frontline = self.trial["frontline_rcg"]
        if frontline == "hidden":
            fifo = sorted(did for did, d in self.config.districts.items() if d["rule"] == "fifo")
            if fifo:
                pr.add(1, "gatekeeper_rule = \"fifo\" under frontline_rcg = \"hidden\" in %s: fifo selects a known "
                          "prefix of the queue, so a not-allocated referral older than a visible WHP/PSC one is RCG; "
                          "use lottery or frontline_rcg = \"dcams\"" % ", ".join(fifo))
        for m in self.config.invalid:
            pr.add(1, "district-config is not valid: " + m)
        return pr.result("no fifo district under %s; the config's keys are valid" % frontline)

    def check_commitment_file(self):
        pr = Problems("commitment_file")
        cf = self.commitment_file
        # judged against trial_started, so a failure is at seq 1 (docs/rules2.md)
        if "_error" in cf:
            pr.add(1, cf["_error"])
            return pr.result("")
        for k in ("trial_id", "commitment", "config_hash"):
            if cf.get(k) != self.trial[k]:
                pr.add(1, "%s says %s = %s, trial_started says %s"
                       % (cf["_name"], k, _short(cf.get(k)), _short(self.trial[k])))
        return pr.result("%s matches trial_started" % cf["_name"])

    def check_commitment(self):
        pr = Problems("commitment")
        if not self._trial_ready(pr):
            return pr.result("")
        if not isinstance(self.trial["trial_id"], str):
            pr.add(1, "trial_started has no trial_id")
            return pr.result("")
        c = commitment(self.trial["trial_id"], self.seed).hex()
        if c != self.trial["commitment"]:
            pr.add(1, "the seed commits to %s, trial_started says %s" % (c, _short(self.trial["commitment"])))
        # the commitment file is commitment_file's: it must equal trial_started's
        return pr.result("the seed matches trial_started's commitment %s" % c)

    def check_recorded_at(self):
        pr = Problems("recorded_at")
        prev = None
        for ev in self.events:
            t = instant_of(ev.get("recorded_at"))
            if t is None:
                pr.add(ev.seq, "event %d: recorded_at %s is not a YYYY-MM-DDTHH:MM:SSZ instant from 1900 to 2999"
                       % (ev.seq, _short(ev.get("recorded_at"))))
                continue
            if prev is not None and t < prev[1]:
                pr.add(ev.seq, "event %d recorded_at %s is before event %d's %s"
                       % (ev.seq, ev.get("recorded_at"), prev[0], prev[1].strftime("%Y-%m-%dT%H:%M:%SZ")))
            if prev is None or t >= prev[1]:
                prev = (ev.seq, t)
        return pr.result("%d events, never decreasing" % len(self.events))

    def check_psc_config(self, pr):
        for did, d in sorted(self.config.districts.items()):
            if d["weights"].get("PSC", 0) > 0 and not d["psc"]:
                pr.add(None, "districts.toml gives PSC weight %d in %s, whose psc = false" % (d["weights"]["PSC"], did))

    def check_lottery(self, runs, tid):
        pr = Problems("lottery")
        if not self._trial_ready(pr):
            return pr.result("")
        if not isinstance(tid, str):
            pr.skipped = "trial_started has no trial_id"
            return pr.result("")
        n_keys = n_runs = 0
        for run in runs:
            if run["rule"] == "manual":
                continue
            n_runs += 1
            if run["rule"] == "lottery":
                for d in run["decisions"]:
                    if not is_hex64(d["key"]):
                        continue
                    want = lottery_key(self.seed, tid, run["id"], d["ref"]).hex()
                    if d["key"] != want:
                        pr.add(d["seq"], "gatekeeper_decision %d (run %s, %s): lottery_key %s, the seed derives %s"
                               % (d["seq"], run["id"], d["ref"], d["key"], want))
                    else:
                        n_keys += 1
        # the order of each run is the gatekeeper check's (docs/rules2.md)
        return pr.result("%d lottery keys in %d capacity runs derive from the seed" % (n_keys, n_runs))

    def providers_apply(self):
        """R15's check is in the report when the config lists a provider, or
        when the log holds provider facts that something must judge."""
        if self.config.has_providers:
            return True
        return any(ev.type == "shares_set" or (ev.type == "allocated" and any(k in ev.payload for k in PROVIDER_KEYS))
                   for ev in self.events)

    # -- all -------------------------------------------------------------------

    @staticmethod
    def _guard(name, fn):
        """A verifier bug must not hide as a crash: it becomes a failed check."""
        try:
            return fn()
        except UsageError:
            raise
        except Exception as e:  # pragma: no cover - reached only through a bug
            return {"name": name, "ok": False, "detail": "internal error of the verifier: %s: %s"
                    % (type(e).__name__, str(e)[:200])}

    def _replay_checks(self):
        r2 = self.rules == 2
        names = (["dates"] if r2 else []) + ["locks", "links", "gatekeeper", "draws"]
        names += (["providers"] if self.providers_apply() else []) + ["psc", "follow_up"]
        seed_names = ["derived_seeds", "lottery"] if self.seed is not None else []
        pre = Problems("x")
        if not (self._trial_ready(pre) and self._config_ready(pre)):
            out = {}
            for n in names + seed_names:
                pr = Problems(n)
                pr.skipped = pre.skipped
                if n == "psc" and self.config.usable:
                    self.check_psc_config(pr)
                out[n] = pr.result("")
            return names, out
        try:
            rp = _Replay(self).run()
        except Exception as e:  # pragma: no cover - reached only through a bug
            msg = "internal error of the verifier: %s: %s" % (type(e).__name__, str(e)[:200])
            return names, {n: {"name": n, "ok": False, "detail": msg} for n in names + seed_names}
        P = rp.P
        self.check_psc_config(P["psc"])
        out = {
            "dates": P["dates"].result("%d dates inside the window (opens %s, closes %s, max_backdate_days %d)"
                                       % (rp.n_dates, rp.opens, rp.closes, rp.mbd)),
            "locks": P["locks"].result("%d referrals made outside every lock of the person (%s)"
                                       % (P["locks"].count, "R1 base: the decision's recorded date" if r2
                                          else "base: gk_date")),
            "links": P["links"].result("%d links" % rp.n_links),
            "gatekeeper": P["gatekeeper"].result("%d decisions on pending referrals; capacity runs decide all "
                                                 "pending and select in order" % P["gatekeeper"].count),
            "draws": P["draws"].result("%d allocations in %d strata follow from their alloc_seeds"
                                       % (P["draws"].count, len(rp.strata))),
            "providers": P["providers"].result("%d provider draws in %d provider strata follow from their "
                                               "provider_seeds and the shares in force"
                                               % (rp.n_provider, len(rp.pstrata))),
            "psc": P["psc"].result("%d PSC allocations, all in psc = true districts" % P["psc"].count),
            "follow_up": P["follow_up"].result("%d follow-ups" % rp.n_follow),
        }
        if self.seed is not None:
            out["derived_seeds"] = P["derived_seeds"].result("%d seeds (alloc_seed, provider_seed) and every block "
                                                             "size derive from the seed" % P["derived_seeds"].count)
            out["lottery"] = self._guard("lottery", lambda: self.check_lottery(rp.run_order, rp.tid))
        return names, out

    def run(self):
        g = self._guard
        checks = [g("chain", self.check_chain), g("config_hash", self.check_config_hash)]
        if self.rules == 2:
            checks.append(g("config_rules", self.check_config_rules))
        if self.commitment_file is not None:
            checks.append(g("commitment_file", self.check_commitment_file))
        else:
            self.notes.append("commitment_file: left out of the report: %s" % self.commitment_file_error)
        checks.append(g("recorded_at", self.check_recorded_at))
        names, replayed = self._replay_checks()
        checks += [replayed[n] for n in names]
        if self.seed is not None:
            checks += [g("commitment", self.check_commitment), replayed["derived_seeds"], replayed["lottery"]]
        if self.checkpoint is not None:
            checks.append(g("checkpoint", self.check_checkpoint))
        head = self.events[-1].hash if self.events else None
        return {"ok": all(c["ok"] for c in checks), "events": len(self.lines), "head": head, "checks": checks}


def _say(line, stream=None):
    """print, with characters the terminal cannot show escaped (details quote bundle text)."""
    stream = stream or sys.stdout
    try:
        print(line, file=stream)
    except UnicodeEncodeError:
        print(line.encode("ascii", "backslashreplace").decode("ascii"), file=stream)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Independently verify a whp audit bundle (ALLOCATION.md v1, RULES2).")
    ap.add_argument("bundle", metavar="DIR", help="the folder written by `whp audit-bundle --out DIR`")
    ap.add_argument("--seed", metavar="FILE", help="the revealed master seed (64 lower-case hex digits and a newline)")
    ap.add_argument("--checkpoint", metavar="FILE",
                    help="a checkpoint {trial_id, seq, head} (`whp checkpoint`) the log must still hold")
    ap.add_argument("--pseudonym-key", metavar="FILE",
                    help="the pseudonym key Kp, checked against trial_started's pseudonym_key_check")
    ap.add_argument("--evaluation-key", metavar="FILE",
                    help="the evaluation key Ke, checked against trial_started's evaluation_key_check")
    ap.add_argument("--json", action="store_true", help="print {ok, events, head, checks} as JSON")
    args = ap.parse_args(argv)
    try:
        seed = read_seed_file(args.seed) if args.seed is not None else None
        kp = read_key_file(args.pseudonym_key, "pseudonym key") if args.pseudonym_key is not None else None
        ke = read_key_file(args.evaluation_key, "evaluation key") if args.evaluation_key is not None else None
        checkpoint = read_checkpoint(args.checkpoint) if args.checkpoint is not None else None
        v = Verifier(args.bundle, seed, checkpoint, kp, ke)
        report = v.run()
    except UsageError as e:
        print("verify_bundle: %s" % e, file=sys.stderr)
        return 2
    for note in v.notes:
        _say("verify_bundle: %s" % note, sys.stderr)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for c in report["checks"]:
            if c["ok"]:
                _say("%-16s ok    %s" % (c["name"], c["detail"]))
            else:
                at = " at seq %d" % c["first_bad_seq"] if "first_bad_seq" in c else ""
                _say("%-16s FAIL%s: %s" % (c["name"], at, c["detail"]))
        print("%s: %d events, head %s" % ("OK" if report["ok"] else "FAILED", report["events"], report["head"]))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
