"""A tiny honest simulator of the whp service, for tests of verify_bundle.py.

It writes what `whp audit-bundle` writes (events.jsonl, district-config/,
<trial_id>.commitment.json) for a scripted scenario, following the spec and
RULES2 directly: the hash chain (ALLOCATION.md §7), the draws (§4, §3), the
lottery keys (§2), pseudonyms (§5), key checks (R4) and provider draws (R15).
It has its own small implementation of every byte rule, so that the
verifier's tests do not check the verifier against itself; the spec's vectors
pin both (tools/test_rules2.py).

It is a simulator, not the service: it does not refuse what the service would
refuse (a scenario is honest because its author wrote it so), except for a few
asserts that catch a mistaken script early.

    t = Trial(districts=[District("north", weights={"WHP": 1, "RCG": 1})])
    t.init("2018-01-02T09:00:00Z")
    t.refer("2018-01-02T09:00:00Z", "R-1", "NINO:AB123456C", "north", "disability", "2018-01-02")
    t.gatekeep("2018-01-03T09:00:00Z", "run-1", "north", "2018-01-03", capacity=1)
    t.write("/tmp/bundle")        # -> the bundle; t.seed_file is beside it
"""

import calendar
import datetime
import hashlib
import hmac
import json
import os

# -- byte rules (ALLOCATION.md), written again here on purpose ------------------------


def _u32(n):
    return n.to_bytes(4, "big")


def _u64(n):
    return n.to_bytes(8, "big")


def _enc(s):
    b = s if isinstance(s, bytes) else s.encode("utf-8")
    return _u32(len(b)) + b


def _hmac(k, x):
    return hmac.new(k, x, hashlib.sha256).digest()


def _sha(x):
    return hashlib.sha256(x).digest()


def _uniform(seed, n):
    r = (TWO64 - n) % n
    j = 0
    while True:
        x = int.from_bytes(_hmac(seed, _enc("whp/uniform/v1") + _u64(j))[:8], "big")
        if x <= TWO64 - 1 - r:
            return x % n
        j += 1


TWO64 = 1 << 64
ARMS = ("WHP", "PSC", "RCG")

DEFAULT_SEED = bytes(range(32))
DEFAULT_KP = bytes([0xA0] * 32)
DEFAULT_KE = bytes([0xE0] * 32)


def _walk(t, items):
    for name, r in items:
        if r <= 0:
            continue
        if t < r:
            return name
        t -= r
    raise AssertionError("walk beyond the urn")


def _add_months(d, k):
    total = d.year * 12 + d.month - 1 + k
    y, m = divmod(total, 12)
    return datetime.date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, _toml_value(x)) for k, x in v.items()) + " }"
    raise TypeError(v)


def sorted_ids(ids):
    return sorted(ids, key=lambda s: s.encode("utf-8"))


class District:
    def __init__(self, id, weights, psc=None, rule="lottery", providers=(), name=None):
        self.id = id
        self.name = name or id.replace("-", " ").title()
        self.weights = dict(weights)
        self.psc = bool(weights.get("PSC", 0)) if psc is None else psc
        self.rule = rule
        self.providers = [dict(p) for p in providers]     # {id, name, arm, share}


class Trial:
    def __init__(self, districts, trial_id="whp-test", method="permuted_block", multipliers=(1, 2),
                 stratify_by_group=False, frontline_rcg="hidden", groups=("disability", "early_access"),
                 locks=(42, 24, 24), allocated_once=None, recruitment=None, deadlines=None, bank_holidays=None,
                 seed=DEFAULT_SEED, kp=DEFAULT_KP, ke=DEFAULT_KE, rules=2, extra_trial_toml=""):
        self.districts = {d.id: d for d in districts}
        self.district_order = [d.id for d in districts]
        self.trial_id = trial_id
        self.method = method
        self.M = list(multipliers)
        self.sbg = stratify_by_group
        self.frontline = frontline_rcg
        self.groups = list(groups)
        self.locks = locks
        self.allocated_once = allocated_once
        self.recruitment = recruitment
        self.deadlines = deadlines
        self.bank_holidays = bank_holidays
        self.seed, self.kp, self.ke = seed, kp, ke
        self.rules = rules
        self.extra_trial_toml = extra_trial_toml
        self.events = []
        self.head = None
        self.now = None
        self.refs = {}          # referral_id -> dict
        self.strata = {}
        self.pstrata = {}
        self.shares_sets = {}   # (district, arm) -> [(effective, seq, string)]
        self.links = {}         # alias pseudonym -> claimant pseudonym
        self.config_files = self._config_files()
        self.seed_file = None

    # -- config ----------------------------------------------------------------------

    def _config_files(self):
        t = ['trial_id = "%s"' % self.trial_id, 'method = "%s"' % self.method,
             "block_multipliers = %s" % _toml_value(self.M),
             "stratify_by_group = %s" % _toml_value(self.sbg), 'frontline_rcg = "%s"' % self.frontline,
             "groups = %s" % _toml_value(self.groups), "", "[locks]",
             "not_selected_days = %d" % self.locks[0], "rcg_months = %d" % self.locks[1],
             "allocated_months = %d" % self.locks[2]]
        if self.allocated_once is not None:
            t.append("allocated_once = %s" % _toml_value(self.allocated_once))
        for name, table in (("recruitment", self.recruitment), ("deadlines", self.deadlines)):
            if table is not None:
                t += ["", "[%s]" % name] + ["%s = %s" % (k, _toml_value(v)) for k, v in table.items()]
        files = {"trial.toml": ("\n".join(t) + "\n" + self.extra_trial_toml).encode("utf-8")}
        ds = ["# districts of a test trial (EXAMPLE districts, not real ones)"]
        for did in self.district_order:
            d = self.districts[did]
            ds += ["", "[[district]]", 'id = "%s"' % d.id, "name = %s" % json.dumps(d.name),
                   "psc = %s" % _toml_value(d.psc), 'gatekeeper_rule = "%s"' % d.rule,
                   "weights = %s" % _toml_value(d.weights)]
            for p in d.providers:
                ds += ["", "[[district.provider]]"] + ["%s = %s" % (k, _toml_value(p[k]))
                                                       for k in ("id", "name", "arm", "share")]
        files["districts.toml"] = ("\n".join(ds) + "\n").encode("utf-8")
        if self.bank_holidays is not None:
            files["calendar.toml"] = ("bank_holidays = %s\n" % _toml_value(self.bank_holidays)).encode("utf-8")
        return files

    def config_hash(self):
        items = sorted((k.encode("utf-8"), v) for k, v in self.config_files.items())
        out = _enc("whp/config/v1") + _u32(len(items))
        for k, v in items:
            out += _enc(k) + _enc(v)
        return _sha(out).hex()

    def commitment(self):
        return _sha(_enc("whp/seed-commitment/v1") + _enc(self.trial_id) + self.seed)

    # -- the log ----------------------------------------------------------------------

    def _append(self, now, type_, payload):
        assert self.now is None or now >= self.now, "recorded_at must not go backwards: %s < %s" % (now, self.now)
        self.now = now
        payload = {k: v for k, v in payload.items() if v is not None}
        payload["recorded_at"] = now
        seq = len(self.events) + 1
        items = sorted(payload.items(), key=lambda kv: kv[0].encode("utf-8"))
        e = _enc("whp/event/v1") + _u64(seq) + _enc(type_) + _u32(len(items))
        for k, v in items:
            e += _enc(k) + _enc(v)
        if self.head is None:
            self.head = _sha(_enc("whp/genesis/v1") + _enc(self.trial_id) + self.commitment())
        self.head = _sha(self.head + e)
        self.events.append({"seq": seq, "type": type_, "payload": payload, "hash": self.head.hex()})
        return seq

    def pseud(self, ident):
        """ident: "NINO:AB123456C" or "REF:123456789012" (normalised, §5)."""
        return _hmac(self.kp, _enc("whp/claimant/v1") + _enc(ident)).hex()

    def init(self, now):
        p = {"algorithm": "whp/v1", "trial_id": self.trial_id, "commitment": self.commitment().hex(),
             "config_hash": self.config_hash(), "method": self.method,
             "block_multipliers": ",".join(str(m) for m in self.M),
             "stratify_by_group": "true" if self.sbg else "false", "frontline_rcg": self.frontline}
        if self.rules == 2:
            p["rules"] = "2"
            p["pseudonym_key_check"] = _hmac(self.kp, _enc("whp/key-check/v1")).hex()
            p["evaluation_key_check"] = _hmac(self.ke, _enc("whp/key-check/v1")).hex()
        return self._append(now, "trial_started", p)

    def refer(self, now, rid, ident, district, group, date, actor="work_coach:WC0001"):
        assert rid not in self.refs, rid
        seq = self._append(now, "referred", {"referral_id": rid, "claimant": self.pseud(ident), "district": district,
                                              "group": group, "referral_date": date, "actor": actor})
        self.refs[rid] = {"seq": seq, "claimant": self.pseud(ident), "district": district, "group": group,
                          "date": date, "state": "awaiting", "gk_date": None, "run": None, "arm": None,
                          "decided_at": None}
        return seq

    def cancel(self, now, rid, reason="entered in error"):
        assert self.refs[rid]["state"] == "awaiting"
        self.refs[rid]["state"] = "cancelled"
        return self._append(now, "cancelled", {"referral_id": rid, "reason": reason, "actor": "work_coach:WC0001"})

    def lottery_key(self, run_id, rid):
        return _hmac(self.seed, _enc("whp/gatekeeper/v1") + _enc(self.trial_id) + _enc(run_id) + _enc(rid))

    def gatekeep(self, now, run_id, district, gk_date, capacity=None, decisions=None, actor="gatekeeper:GK01"):
        """A capacity run (the district's rule) or a manual one ({referral_id: "selected"/"not_selected"}).
        Returns {referral_id: seq of its decision}."""
        d = self.districts[district]
        if decisions is None:
            pending = sorted((r for r in self.refs.items() if r[1]["state"] == "awaiting"
                              and r[1]["district"] == district and r[1]["date"] <= gk_date),
                             key=lambda r: r[1]["seq"])
            if d.rule == "lottery":
                ranked = sorted(pending, key=lambda r: self.lottery_key(run_id, r[0]))
            else:
                ranked = sorted(pending, key=lambda r: (r[1]["date"], r[1]["seq"]))
            chosen = {rid for rid, _ in ranked[:capacity]}
            order = [(rid, "selected" if rid in chosen else "not_selected") for rid, _ in pending]
            rule = d.rule
        else:
            order = sorted(decisions.items(), key=lambda kv: self.refs[kv[0]]["seq"])
            rule = "manual"
        assert order, "a run that decides nothing"
        seqs = {}
        for rid, dec in order:
            ref = self.refs[rid]
            assert ref["state"] == "awaiting" and ref["district"] == district and ref["date"] <= gk_date, rid
            p = {"run_id": run_id, "referral_id": rid, "decision": dec, "gk_date": gk_date, "rule": rule,
                 "actor": actor}
            if rule == "lottery":
                p["lottery_key"] = self.lottery_key(run_id, rid).hex()
            if rule != "manual":
                p["capacity"] = str(capacity)
            seqs[rid] = self._append(now, "gatekeeper_decision", p)
            ref.update(state="selected" if dec == "selected" else "not_selected", gk_date=gk_date, run=run_id,
                       decided_at=now[:10])
        for rid, dec in order:
            if dec == "selected":
                seqs[rid, "allocated"] = self._allocate(now, rid)
        return seqs

    def _allocate(self, now, rid):
        ref = self.refs[rid]
        d = self.districts[ref["district"]]
        sigma = ref["district"] + "|" + ref["group"] if self.sbg else ref["district"]
        weights = [(a, d.weights.get(a, 0)) for a in ARMS if d.weights.get(a, 0) > 0]
        W = sum(w for _, w in weights)
        st = self.strata.setdefault(sigma, {"i": 0, "b": -1, "pos": 0, "size": 0, "m": 0, "dealt": {}})
        i = st["i"]
        a = _hmac(self.seed, _enc("whp/alloc/v1") + _enc(self.trial_id) + _enc(sigma) + _u64(i))
        p = {"referral_id": rid, "claimant": ref["claimant"], "district": ref["district"], "group": ref["group"],
             "stratum": sigma, "index": str(i), "alloc_seed": a.hex(), "gk_date": ref["gk_date"],
             "run_id": ref["run"]}
        if self.method == "permuted_block":
            if st["b"] < 0 or st["pos"] == st["size"]:
                st["b"] += 1
                k = _hmac(self.seed, _enc("whp/block/v1") + _enc(self.trial_id) + _enc(sigma) + _u64(st["b"]))
                st.update(pos=0, dealt={}, m=self.M[_uniform(k, len(self.M))])
                st["size"] = W * st["m"]
            rem = [(arm, w * st["m"] - st["dealt"].get(arm, 0)) for arm, w in weights]
            arm = _walk(_uniform(a, st["size"] - st["pos"]), rem)
            p.update(block=str(st["b"]), block_size=str(st["size"]), position=str(st["pos"]))
            st["pos"] += 1
            st["dealt"][arm] = st["dealt"].get(arm, 0) + 1
        else:
            arm = _walk(_uniform(a, W), weights)
        st["i"] += 1
        p["arm"] = arm
        provs = [x for x in d.providers if x["arm"] == arm]
        if provs:
            p.update(self._provider_draw(now[:10], ref["district"], sigma, arm, provs))
        ref.update(state="allocated", arm=arm)
        return self._append(now, "allocated", p)

    def shares_in_force(self, district, arm, day, provs):
        best = None
        for eff, seq, s in self.shares_sets.get((district, arm), []):
            if eff <= day and (best is None or (eff, seq) > best[:2]):
                best = (eff, seq, s)
        if best:
            return best[2]
        return ",".join("%s=%d" % (x["id"], x["share"]) for x in sorted(provs, key=lambda x: x["id"].encode()))

    def _provider_draw(self, day, district, sigma, arm, provs):
        s = self.shares_in_force(district, arm, day, provs)
        shares = [(k, int(v)) for k, v in (part.split("=") for part in s.split(","))]
        items = [(k, v) for k, v in shares if v > 0]
        W = sum(v for _, v in items)
        pi = sigma + "|" + arm
        st = self.pstrata.setdefault(pi, {"j": 0, "b": -1, "pos": 0, "size": 0, "m": 0, "dealt": {}, "s": None})
        j = st["j"]
        seed = _hmac(self.seed, _enc("whp/provider/v1") + _enc(self.trial_id) + _enc(pi) + _u64(j))
        out = {"provider_stratum": pi, "provider_index": str(j), "provider_seed": seed.hex(), "provider_shares": s}
        if self.method == "permuted_block":
            if st["b"] < 0 or st["pos"] == st["size"] or st["s"] != s:
                st["b"] += 1
                q = _hmac(self.seed, _enc("whp/provider-block/v1") + _enc(self.trial_id) + _enc(pi) + _u64(st["b"]))
                st.update(pos=0, dealt={}, s=s, m=self.M[_uniform(q, len(self.M))])
                st["size"] = W * st["m"]
            rem = [(k, v * st["m"] - st["dealt"].get(k, 0)) for k, v in items]
            prov = _walk(_uniform(seed, st["size"] - st["pos"]), rem)
            out.update(provider_block=str(st["b"]), provider_block_size=str(st["size"]),
                       provider_position=str(st["pos"]))
            st["pos"] += 1
            st["dealt"][prov] = st["dealt"].get(prov, 0) + 1
        else:
            prov = _walk(_uniform(seed, W), items)
        st["j"] += 1
        out["provider"] = prov
        return out

    def set_shares(self, now, district, arm, effective, shares, actor="contract_manager:CM01"):
        assert effective >= now[:10]
        s = ",".join("%s=%d" % (k, shares[k]) for k in sorted_ids(shares))
        seq = self._append(now, "shares_set", {"district": district, "arm": arm, "effective": effective,
                                                "shares": s, "actor": actor})
        self.shares_sets.setdefault((district, arm), []).append((effective, seq, s))
        return seq

    def flag(self, now, rid, reason, corrected_group=None):
        return self._append(now, "flagged_in_error", {"referral_id": rid, "reason": reason,
                                                       "corrected_group": corrected_group,
                                                       "actor": "gatekeeper:GK01"})

    def disclose(self, now, rid, reason="claimant asked"):
        return self._append(now, "disclosed", {"referral_id": rid, "reason": reason, "actor": "work_coach:WC0001"})

    def opt_out(self, now, ident, date):
        return self._append(now, "opted_out", {"claimant": self.pseud(ident), "date": date,
                                                "actor": "evaluation_admin:EV01"})

    def link(self, now, nino, ref):
        self.links[self.pseud(ref)] = self.pseud(nino)
        return self._append(now, "claimant_linked", {"claimant": self.pseud(nino), "alias": self.pseud(ref),
                                                      "actor": "work_coach:WC0001"})

    def follow_up(self, now, rid, step, date, reason=None):
        assert self.refs[rid]["arm"] in ("WHP", "PSC")
        return self._append(now, "followed_up", {"referral_id": rid, "step": step, "date": date, "reason": reason,
                                                  "actor": "work_coach:WC0001"})

    def export(self, now, rows="0"):
        return self._append(now, "export_made", {"manifest_sha256": "0" * 64, "rows": rows, "removed_opted_out": "0"})

    # -- the bundle --------------------------------------------------------------------

    def event_lines(self):
        return [json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for e in self.events]

    def write(self, out, commitment_file=True):
        """Write the bundle to `out` (created); the seed and key files go beside it
        (out + ".seed.hex", ".pseudonym.key", ".evaluation.key")."""
        os.makedirs(os.path.join(out, "district-config"))
        for name, data in self.config_files.items():
            with open(os.path.join(out, "district-config", name), "wb") as f:
                f.write(data)
        with open(os.path.join(out, "events.jsonl"), "wb") as f:
            f.write(b"".join(l + b"\n" for l in self.event_lines()))
        if commitment_file:
            with open(os.path.join(out, self.trial_id + ".commitment.json"), "w", encoding="utf-8") as f:
                json.dump({"trial_id": self.trial_id, "commitment": self.commitment().hex(),
                           "config_hash": self.config_hash(), "created": self.events[0]["payload"]["recorded_at"]},
                          f, indent=2)
        for suffix, key in ((".seed.hex", self.seed), (".pseudonym.key", self.kp), (".evaluation.key", self.ke)):
            with open(out.rstrip("/") + suffix, "w", encoding="ascii") as f:
                f.write(key.hex() + "\n")
        self.seed_file = out.rstrip("/") + ".seed.hex"
        return out


def lock_from(base, kind, locks=(42, 24, 24)):
    """The from-date after `base` (a date string) for not_selected / RCG / WHP-PSC (PROTOCOL.md §5)."""
    d = datetime.date.fromisoformat(base)
    if kind == "not_selected":
        return (d + datetime.timedelta(days=locks[0])).isoformat()
    return _add_months(d, locks[1] if kind == "RCG" else locks[2]).isoformat()
