"""`helpsteer synth`: synthetic HelpSteer-style data with a known truth, the default data of
`make demo`, the tests and the benchmarks.

Quality is learnable from text by a small model trained from scratch: answers come from a fixed
knowledge table (the same facts recur across prompts), a response is right or wrong about its
fact, coherent or word-scrambled, padded with 0-4 filler sentences (verbosity), more or less
technical (complexity), or a refusal. The annotator pool plants what the analysis must find:
per-annotator bias and noise, a few spammers who answer at random, and two style camps (lovers
of long answers, lovers of short ones) who split on pairs that differ only in length. The camps
judge a long answer (3-4 filler sentences) by its length and are indifferent to the length of
the others, so a long answer is polarising on its own, whatever it is compared with: the
per-response disagreement a mean-variance reward model can learn and a Bradley-Terry margin cannot.

Writes (under --out):
  helpsteer2/train.jsonl.gz, helpsteer2/validation.jsonl.gz        aggregated ratings (HelpSteer2 layout)
  helpsteer2/disagreements/disagreements.jsonl.gz                   per-annotator rating lists
  helpsteer2/preference/preference.jsonl.gz                         pairs with all_preferences_unprocessed
  helpsteer3/preference/train.jsonl.gz, .../validation.jsonl.gz     HelpSteer3 preference layout
  label_studio/ratings_export.json                                  the same ratings as a Label Studio export, with emails
  truth/responses.jsonl, truth/pairs.jsonl, truth/annotators.jsonl  the planted truth"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from .ids import response_id, stable_hash
from .schema import HELPSTEER_ATTRIBUTES as ATTRS

# The knowledge table: (question template, subject, answer) facts that recur across prompts.
_CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Egypt", "Cairo"), ("Canada", "Ottawa"),
             ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Chile", "Santiago"), ("Greece", "Athens"), ("Poland", "Warsaw"),
             ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Thailand", "Bangkok"), ("Cuba", "Havana")]
_SYMBOLS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("sodium", "Na"), ("potassium", "K"), ("copper", "Cu"), ("lead", "Pb"),
            ("tin", "Sn"), ("mercury", "Hg"), ("helium", "He"), ("carbon", "C"), ("oxygen", "O")]
_LEGS = [("spider", "eight"), ("insect", "six"), ("dog", "four"), ("bird", "two"), ("octopus", "eight"), ("crab", "ten"), ("horse", "four"), ("ant", "six")]
_FACTS = (
    [("What is the capital of {s}?", "The capital of {s} is {a}.", s, a, [x[1] for x in _CAPITALS]) for s, a in _CAPITALS]
    + [("What is the chemical symbol of {s}?", "The chemical symbol of {s} is {a}.", s, a, [x[1] for x in _SYMBOLS]) for s, a in _SYMBOLS]
    + [("How many legs does a {s} have?", "A {s} has {a} legs.", s, a, sorted({x[1] for x in _LEGS})) for s, a in _LEGS]
)
_ASK = ["{q}", "Quick question: {q}", "Can you tell me this? {q}", "{q} Please answer briefly.", "I am studying for a quiz. {q}"]
_FILLER = ["Let me know if you have any other questions.", "This is a common question that many people ask.",
           "I hope this answer is useful to you today.", "There are many interesting things to learn about this topic.",
           "Thank you for asking such a thoughtful question.", "Feel free to ask for more details at any time.",
           "Many students find this kind of fact easy to remember.", "It is always good to double check facts like this one."]
_TECH = ["This follows from the standard reference tables.", "Formally, the mapping is one to one within the taxonomy.",
         "Canonical sources document this attribute consistently.", "The nomenclature derives from established conventions."]
_REFUSALS = ["I am sorry, but I cannot help with that request.", "Sorry, I can not answer that.", "I would rather not answer this question.",
             "Unfortunately I am unable to help with this.", "I cannot provide that information, sorry."]
_DOMAINS = ["general", "stem", "code"]


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    n_prompts: int = 400
    n_annotators: int = 24  # pool size
    n_spammers: int = 2  # annotators who answer at random
    style_fraction: float = 0.7  # share of non-spammers in a style camp (half like long, half short)
    style_pair_fraction: float = 0.25  # prompts whose two responses differ only in length
    style_effect: float = 2.0  # how much a style camp adds to (lovers) or takes from (haters) a long answer's helpfulness
    multiturn_fraction: float = 0.2
    validation_fraction: float = 0.1


def _compose(rng: np.random.Generator, fact, correct: bool, coherent: bool, verbosity: int, complexity: int, refusal: bool) -> str:
    _, answer_t, s, a, pool = fact
    if refusal:
        return str(rng.choice(_REFUSALS)) + (" " + str(rng.choice(_FILLER)) if verbosity else "")
    value = a if correct else rng.choice([x for x in pool if x != a])
    core = answer_t.format(s=s, a=value)
    if not coherent:
        words = core.rstrip(".").split()
        rng.shuffle(words)
        core = " ".join(words).lower() + "."
    extra = [_TECH[i % len(_TECH)] for i in range(complexity)] + [_FILLER[j] for j in rng.choice(len(_FILLER), verbosity, replace=False)]
    return " ".join([core] + extra)


def _true_attrs(correct: bool, coherent: bool, verbosity: int, complexity: int, refusal: bool) -> dict[str, int]:
    if refusal:
        return {"helpfulness": 0, "correctness": 2, "coherence": 4, "complexity": 0, "verbosity": 0}
    if correct and coherent:
        helpful = 4 if verbosity <= 2 else 3
    elif correct:
        helpful = 2
    elif coherent:
        helpful = 1
    else:
        helpful = 0
    return {"helpfulness": helpful, "correctness": 4 if correct else 1, "coherence": 4 if coherent else 1,
            "complexity": min(4, complexity * 2), "verbosity": verbosity}


def quality(attrs: dict[str, int]) -> float:
    """Planted scalar quality: helpfulness, ties broken by correctness and coherence."""
    return attrs["helpfulness"] + 0.01 * attrs["correctness"] + 0.001 * attrs["coherence"]


class _Pool:
    """The annotator pool: bias, noise, spammer flag, style camp (+1 long, -1 short, 0 none)."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator):
        n = cfg.n_annotators
        self.bias = rng.normal(0.0, 0.3, n)
        self.noise = rng.uniform(0.3, 0.6, n)
        self.spammer = np.zeros(n, bool)
        self.spammer[rng.choice(n, cfg.n_spammers, replace=False)] = True
        self.style = np.zeros(n, int)
        normal = np.flatnonzero(~self.spammer)
        camp = rng.permutation(normal)[: int(round(len(normal) * cfg.style_fraction))]
        self.style[camp[: len(camp) // 2]] = 1
        self.style[camp[len(camp) // 2 :]] = -1
        self.style_effect = cfg.style_effect
        self.emails = [f"annotator{i:02d}@example.com" for i in range(n)]

    def perceived(self, k: int, attrs: dict[str, int]) -> float:
        """How helpful annotator k finds a response (before noise)."""
        # style camps: lovers of long answers add style_effect to a long answer, haters take it off
        return attrs["helpfulness"] + self.bias[k] + self.style_effect * self.style[k] * float(attrs["verbosity"] >= 3)

    def rate(self, rng, k: int, attrs: dict[str, int]) -> dict[str, int]:
        if self.spammer[k]:
            return {a: int(rng.integers(0, 5)) for a in ATTRS}
        out = {}
        for a in ATTRS:
            base = self.perceived(k, attrs) if a == "helpfulness" else attrs[a] + self.bias[k]
            out[a] = int(np.clip(np.rint(base + rng.normal(0, self.noise[k])), 0, 4))
        return out

    def prefer(self, rng, k: int, a: dict[str, int], b: dict[str, int]) -> int:
        """Strength -3..3, negative = response a better (HelpSteer convention)."""
        if self.spammer[k]:
            return int(rng.integers(-3, 4))
        d = self.perceived(k, b) - self.perceived(k, a) + rng.normal(0, self.noise[k])
        return int(np.clip(np.rint(1.2 * d), -3, 3))


def _split_of(context: list[dict], cfg: SynthConfig) -> str:
    """Split by context, so no prompt is in both train and validation."""
    h = int(stable_hash(str(cfg.seed), str(context))[:8], 16) / 0xFFFFFFFF
    return "validation" if h < cfg.validation_fraction else "train"


def _aggregate(values: list[int]) -> int:
    """HelpSteer2 aggregation: mean of the 3 annotators who agree most, rounded."""
    v = np.array(values, float)
    if len(v) > 3:
        med = np.median(v)
        v = v[np.argsort(np.abs(v - med), kind="stable")[:3]]
    return int(np.clip(np.floor(v.mean() + 0.5), 0, 4))


def _hs2_prompt(context: list[dict]) -> str:
    text = context[0]["content"]
    for t in context[1:]:
        text += f"\n<extra_id_1>{'User' if t['role'] == 'user' else 'Assistant'}\n{t['content']}"
    return text


def _justify(s: int) -> str:
    if s == 0:
        return "Both responses are about equally helpful."
    better = 1 if s < 0 else 2
    return f"@Response {better} is {'slightly ' if abs(s) == 1 else 'much ' if abs(s) == 3 else ''}better because it answers the question more helpfully."


def generate(cfg: SynthConfig):
    """Yield one dict per prompt: context, two responses with truth, ratings and preference votes."""
    rng = np.random.default_rng(cfg.seed)
    pool = _Pool(cfg, rng)
    n_fact = len(_FACTS)
    seen: set[str] = set()
    for p in range(cfg.n_prompts):
        fact = _FACTS[int(rng.integers(n_fact))]
        question = _ASK[int(rng.integers(len(_ASK)))].format(q=fact[0].format(s=fact[2]))
        context = [{"role": "user", "content": question}]
        if rng.random() < cfg.multiturn_fraction:
            prev = _FACTS[int(rng.integers(n_fact))]
            context = [{"role": "user", "content": prev[0].format(s=prev[2])},
                       {"role": "assistant", "content": prev[1].format(s=prev[2], a=prev[3])}, context[0]]
        style_pair = rng.random() < cfg.style_pair_fraction
        responses = []
        texts: set[str] = set()
        for j in range(2):
            if style_pair:
                spec = dict(correct=True, coherent=True, verbosity=4 if j == 0 else 0, complexity=0, refusal=False)
            else:
                refusal = rng.random() < 0.08
                spec = dict(correct=bool(rng.random() < 0.55), coherent=bool(rng.random() < 0.7), verbosity=int(rng.integers(0, 5)),
                            complexity=int(rng.integers(0, 3)), refusal=bool(refusal))
            text = _compose(rng, fact, **spec)
            for _ in range(50):  # the two responses of a pair differ, and a context's responses are unique
                key = stable_hash(str(context), text)
                if text not in texts and key not in seen:
                    break
                if style_pair:  # keep the length contrast, vary the rest
                    spec["complexity"] = int(rng.integers(0, 2))
                    spec["verbosity"] = int(rng.integers(3, 5)) if j == 0 else int(rng.integers(0, 2))
                else:
                    spec["verbosity"] = int(rng.integers(0, 5))
                text = _compose(rng, fact, **spec)
            texts.add(text)
            seen.add(stable_hash(str(context), text))
            attrs = _true_attrs(**spec)
            raters = list(rng.choice(cfg.n_annotators, 3, replace=False))
            ratings = {int(k): pool.rate(rng, int(k), attrs) for k in raters}
            hs = [r["helpfulness"] for r in ratings.values()]
            if max(hs) - min(hs) > 2:  # HelpSteer2: up to 5 annotators when helpfulness spread > 2
                others = [k for k in rng.permutation(cfg.n_annotators) if k not in ratings][:2]
                ratings.update({int(k): pool.rate(rng, int(k), attrs) for k in others})
            responses.append({"text": text, "spec": spec, "attrs": attrs, "ratings": ratings})
        if style_pair and rng.random() < 0.5:
            responses.reverse()
        voters = [int(k) for k in rng.choice(cfg.n_annotators, int(rng.integers(3, 6)), replace=False)]
        votes = {k: pool.prefer(rng, k, responses[0]["attrs"], responses[1]["attrs"]) for k in voters}
        yield {"index": p, "context": context, "responses": responses, "votes": votes, "style_pair": style_pair,
               "split": _split_of(context, cfg),
               "domain": _DOMAINS[p % len(_DOMAINS)]}, pool


def _write_gz(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with gzip.open(tmp, "wb", compresslevel=3) as f:
        for r in rows:
            f.write(orjson.dumps(r))
            f.write(b"\n")
    tmp.replace(path)


LAYOUTS = ("helpsteer2", "helpsteer2-disagreements", "helpsteer2-preference", "helpsteer3-preference", "label-studio")


def write_synthetic(cfg: SynthConfig, out: Path, only: str | None = None) -> dict[str, Path]:
    """Write every layout (or only one) plus the truth files; returns {kind: path}."""
    from .errors import UsageError

    if only is not None and only not in LAYOUTS:
        raise UsageError(f"--only must be one of {', '.join(LAYOUTS)}, got {only!r}")
    if cfg.n_prompts < 1:
        raise UsageError("--prompts must be at least 1")
    out = Path(out)
    want = set(LAYOUTS) if only is None else {only}
    hs2 = {"train": [], "validation": []}
    disagreements, hs2_pref, hs3 = [], [], {"train": [], "validation": []}
    ls_tasks, truth_resp, truth_pairs = [], [], []
    pool = None
    for item, pool in generate(cfg):
        ctx = item["context"]
        prompt_text = _hs2_prompt(ctx)
        r1, r2 = item["responses"]
        ids = []
        for r in (r1, r2):
            rid = response_id(ctx, r["text"])
            ids.append(rid)
            per = {a: [v[a] for v in r["ratings"].values()] for a in ATTRS}
            if "helpsteer2" in want:
                hs2[item["split"]].append({"prompt": prompt_text, "response": r["text"], **{a: _aggregate(per[a]) for a in ATTRS}})
            if "helpsteer2-disagreements" in want:
                disagreements.append({"prompt": prompt_text, "response": r["text"], **per})
            if "label-studio" in want:
                ls_tasks.append(_ls_task(len(ls_tasks) + 1, ctx, r["text"], rid, r["ratings"], pool))
            if only is None:
                truth_resp.append({"response_id": rid, "split": item["split"], "context": ctx, "response": r["text"], "attributes": r["attrs"],
                                   "quality": quality(r["attrs"]), **{k: v for k, v in r["spec"].items()}})
        votes = item["votes"]
        agg = int(np.clip(np.rint(np.mean(sorted(votes.values(), key=lambda s: abs(s - np.median(list(votes.values()))))[:3])), -3, 3))
        if "helpsteer2-preference" in want:
            hs2_pref.append({"split": item["split"], "prompt": prompt_text, "response_1": r1["text"], "response_2": r2["text"],
                             "preference_strength": agg, "preference_statement": _justify(agg), "preference_elaboration": "",
                             "three_most_similar_preferences": [], "all_preferences_unprocessed": [{"strength": s, "justification": _justify(s)} for s in votes.values()]})
        if "helpsteer3-preference" in want:
            hs3[item["split"]].append({"domain": item["domain"], "language": "english", "context": ctx, "response1": r1["text"], "response2": r2["text"],
                                       "overall_preference": agg, "individual_preference": [{"score": s, "reasoning": _justify(s)} for s in list(votes.values())[:3]]})
        if only is None:
            q1, q2 = quality(r1["attrs"]), quality(r2["attrs"])
            truth_pairs.append({"response_a_id": ids[0], "response_b_id": ids[1], "split": item["split"], "true_better": "a" if q1 > q2 else "b" if q2 > q1 else "tie",
                                "style_pair": item["style_pair"], "votes": {pool.emails[k]: s for k, s in votes.items()}})
    files: dict[str, Path] = {}
    if "helpsteer2" in want:
        for split, rows in hs2.items():
            files[f"helpsteer2-{split}"] = out / "helpsteer2" / f"{split}.jsonl.gz"
            _write_gz(files[f"helpsteer2-{split}"], rows)
    if "helpsteer2-disagreements" in want:
        files["helpsteer2-disagreements"] = out / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz"
        _write_gz(files["helpsteer2-disagreements"], disagreements)
    if "helpsteer2-preference" in want:
        files["helpsteer2-preference"] = out / "helpsteer2" / "preference" / "preference.jsonl.gz"
        _write_gz(files["helpsteer2-preference"], hs2_pref)
    if "helpsteer3-preference" in want:
        for split, rows in hs3.items():
            files[f"helpsteer3-preference-{split}"] = out / "helpsteer3" / "preference" / f"{split}.jsonl.gz"
            _write_gz(files[f"helpsteer3-preference-{split}"], rows)
    if "label-studio" in want:
        path = out / "label_studio" / "ratings_export.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(ls_tasks))
        files["label-studio"] = path
    if only is None and pool is not None:
        tdir = out / "truth"
        tdir.mkdir(parents=True, exist_ok=True)
        _write_lines(tdir / "responses.jsonl", truth_resp)
        _write_lines(tdir / "pairs.jsonl", truth_pairs)
        _write_lines(tdir / "annotators.jsonl", [
            {"annotator": pool.emails[k], "index": k, "spammer": bool(pool.spammer[k]), "style": int(pool.style[k]),
             "bias": float(pool.bias[k]), "noise": float(pool.noise[k])} for k in range(cfg.n_annotators)])
        files["truth"] = tdir
    return files


def _write_lines(path: Path, rows) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _ls_task(task_id: int, ctx: list[dict], text: str, rid: str, ratings: dict[int, dict], pool: _Pool) -> dict:
    data = {"messages": ctx, "response": text, "response_id": rid, "item_id": rid}
    anns = []
    for n, (k, r) in enumerate(ratings.items()):
        anns.append({
            "id": task_id * 10 + n, "completed_by": {"id": k + 1, "email": pool.emails[k]}, "was_cancelled": False,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "result": [{"from_name": a, "to_name": "response", "type": "choices", "value": {"choices": [str(r[a])]}} for a in ATTRS],
        })
    return {"id": task_id, "data": data, "annotations": anns}


__all__ = ["SynthConfig", "generate", "write_synthetic", "quality", "stable_hash"]
