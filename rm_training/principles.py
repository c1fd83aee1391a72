"""Principle data for binary-principle reward models (RLBFF: "does this response satisfy principle
P?"): HelpSteer3 `principle` rows (fulfilment Yes/No), principles derived from attribute ratings
with thresholds and several phrasings per attribute, statements extracted from HelpSteer3
feedback texts ("The response is mostly helpful." ...), and principle/label rows a user writes in
a JSONL file. Some phrasings are kept out of training to measure generalisation to new wording."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from helpsteer import store
from helpsteer.formats.principles import read_principles_file
from helpsteer.labels import feedback_statements, item_labels, labels_by_response

from .tokenizer import render

# Per attribute: (threshold direction, phrasings). A phrasing is satisfied when the attribute's
# label is >= its threshold (">=") or below it ("<"). The LAST phrasing of each attribute is the
# held-out one by default (never trained on; evaluated as principle_accuracy_heldout_phrasings).
PHRASINGS: dict[str, list[tuple[str, str]]] = {
    "helpfulness": [(">=", "The response is helpful."), (">=", "The response is helpful to the user."),
                    ("<", "The response is unhelpful."), (">=", "The response is genuinely helpful for this request.")],
    "correctness": [(">=", "The response is factually correct."), (">=", "The response is correct and accurate."),
                    ("<", "The response contains factual errors."), (">=", "Everything in the response is factually correct.")],
    "coherence": [(">=", "The response is coherent."), (">=", "The response is clear and coherent."),
                  ("<", "The response is incoherent."), (">=", "The response reads as clear, coherent text.")],
    "complexity": [(">=", "The response uses technical language."), (">=", "The response is written with technical expertise."),
                   ("<", "The response uses simple, non-technical language."), (">=", "The response contains technical language an expert would use.")],
    "verbosity": [(">=", "The response is verbose."), (">=", "The response is long and verbose."),
                  ("<", "The response is concise."), (">=", "The response is more verbose than it needs to be.")],
}
# Rewording of training principles (--principle_augment): a small from-scratch model trained on a
# few fixed sentences keys on their shape (how long the sentence is, which words end it, which verb
# opens it), so an unseen phrasing of a known principle lands wherever its shape sends it: without
# trailing words in training, "The response is more verbose than it needs to be." was scored as a
# complexity principle. Random rewording of the frame (subject, verb, adverb, opening and closing
# phrases, inserted words, a comma) leaves only the attribute words as the signal. No rewording is a
# held-out phrasing, and the subjects, adverbs, openings and closings below share no content word
# with one (tested).
_SUBJECTS = ("The response", "The answer", "The reply", "This response", "The assistant's answer")
_VERBS = ("uses", "has", "includes", "shows", "contains", "gives", "makes")
_ADVERBS = ("clearly", "really", "quite", "generally", "overall", "plainly")
_OPENINGS = ("Overall, ", "In short, ", "As written, ", "On the whole, ", "All in all, ", "Judged as a whole, ")
_CLOSINGS = (" overall", " as written", " in this reply", " for the user", " given the question", " on the whole", " in its answer")

REWORDING_WORDS = " ".join(_SUBJECTS + _VERBS + _ADVERBS + _OPENINGS + _CLOSINGS)

# Inserted words: the dataset's own, function words (scikit-learn's English stop words) and made-up
# letter strings; never a negation or a word that lessens ("not", "less", "few" ...) and never a
# content word of a phrasing above (held out or not), so that no inserted word is a principle's own or
# teaches the model to pass over a held-out phrasing's content words. Function words are fair game:
# any new phrasing has them ("than", "it", "be" in "more verbose than it needs to be").
_NEGATIONS = frozenset({"not", "no", "never", "cannot", "nor", "none", "unable", "without", "lack", "lacks", "fails", "wrong", "incorrect",
                        "nothing", "nobody", "noone", "nowhere", "neither", "few", "fewer", "less", "least", "hardly", "barely"})
_NOT_INSERTED = _NEGATIONS | ({w.lower() for ph in PHRASINGS.values() for _, t in ph for w in re.findall(r"[A-Za-z]+", t)} - ENGLISH_STOP_WORDS)
FUNCTION_WORDS = tuple(sorted(w for w in ENGLISH_STOP_WORDS if w.isalpha() and w not in _NOT_INSERTED))


def vocabulary(texts) -> list[str]:
    """The words of some texts that reword may insert (letters only, 2+ characters, no negation and
    no content word of a phrasing), sorted."""
    return sorted({w for t in texts for w in re.findall(r"[A-Za-z]{2,}", t) if w.lower() not in _NOT_INSERTED})


def _inserted(words, rng: np.random.Generator) -> str:
    """A word to insert: one of `words`, a function word, or a made-up letter string (a word the
    tokenizer never saw is split into pieces, which is how an unseen phrasing's new words reach the
    model)."""
    u = rng.random()
    if u < 1 / 3:
        return str(words[int(rng.integers(len(words)))])
    if u < 2 / 3:
        return FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))]
    while (w := "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(2, 10))))) in _NOT_INSERTED:
        pass
    return w


def reword(text: str, rng: np.random.Generator, words: list[str] = ()) -> str:
    """A random rewording of a principle's frame that keeps its meaning: "The response is verbose."
    -> "All in all, the reply is really verbose for the user." (only "The response ..." sentences).
    Given `words` (the dataset's vocabulary, see vocabulary), 60% of the time 1-5 words (see
    _inserted) are also inserted: as one run at the end (half of those times) or at one random place
    (a quarter), or scattered (a quarter), so that words the model has not seen in a principle, before
    or after the attribute words, do not sway it. A fifth of the time a comma follows a word."""
    m = re.fullmatch(r"The response (is|uses|contains) (.+)\.", text)
    if not m:
        return text
    verb, rest = m.groups()
    pick = lambda xs: str(xs[int(rng.integers(len(xs)))])  # noqa: E731
    if verb == "is":
        if rng.random() < 0.5:
            rest = f"{pick(_ADVERBS)} {rest}"
    elif rng.random() < 0.7:
        verb = pick(_VERBS)
    out = f"{pick(_SUBJECTS) if rng.random() < 0.6 else 'The response'} {verb} {rest}"
    if rng.random() < 0.5:
        out += pick(_CLOSINGS)
    if rng.random() < 0.4:
        out = pick(_OPENINGS) + out[0].lower() + out[1:]
    toks = out.split(" ")
    if len(words) and rng.random() < 0.6:
        new = [_inserted(words, rng) for _ in range(int(rng.integers(1, 6)))]
        u = rng.random()
        if u < 0.75:  # one run of words, a new phrase: at the end ("... than it needs to be") or anywhere
            at = len(toks) if u < 0.5 else int(rng.integers(len(toks) + 1))
            toks[at:at] = new
        else:
            for w in new:
                toks.insert(int(rng.integers(len(toks) + 1)), w)
    if rng.random() < 0.2 and len(toks) > 2:
        k = int(rng.integers(1, len(toks) - 1))
        toks[k] = toks[k].rstrip(",") + ","
    out = " ".join(toks)
    return out[0].upper() + out[1:] + "."


DEFAULT_THRESHOLDS = {"helpfulness": 3.0, "correctness": 3.0, "coherence": 3.0, "complexity": 2.0, "verbosity": 3.0}
DEFAULT_PRINCIPLE = "The response is helpful."

@dataclass
class Principled:
    response_id: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # rendered with the principle
    principle: list[str] = field(default_factory=list)
    label: list[float] = field(default_factory=list)  # 1 = satisfied
    heldout: list[bool] = field(default_factory=list)  # a phrasing kept out of training
    origin: list[str] = field(default_factory=list)  # principles | ratings | feedback | file

    def __len__(self) -> int:
        return len(self.label)

    def add(self, rid, text, principle, label, heldout, origin):
        self.response_id.append(rid)
        self.text.append(text)
        self.principle.append(principle)
        self.label.append(float(label))
        self.heldout.append(bool(heldout))
        self.origin.append(origin)


def load_principled(workspace: Path, name: str, tokenizer, split: str | None, *, purpose: str = "train", heldout_phrasings: int = 1,
                    thresholds: dict[str, float] | None = None, per_response: int = 0, principles_file: str | None = None,
                    seed: int = 0, augment: float = 0.0) -> Principled:
    """Principle examples of a dataset split. purpose="train" leaves out the held-out phrasings
    (the last `heldout_phrasings` of each attribute) and rewords that share of the rating-derived
    ones (`augment`, see reword); "eval" keeps the held-out phrasings, flagged, and rewords none."""
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    resp = store.load_table(workspace, name, "responses", ["response_id", "context", "response", "split"])
    if split is not None:
        resp = resp.filter(pl.col("split") == split)
    by_id = {r["response_id"]: r for r in resp.iter_rows(named=True)}
    rng = np.random.default_rng(seed)
    out = Principled()

    def emit(rid, principle, label, heldout, origin):
        r = by_id[rid]
        out.add(rid, render(tokenizer, r["context"], r["response"], principle=principle), principle, label, heldout, origin)

    # 1. the source's own principle rows (HelpSteer3 principle): one label per (response, principle)
    prin = store.load_table(workspace, name, "principles", ["response_id", "principle", "fulfilment"])
    if prin.height:
        agg = prin.filter(pl.col("response_id").is_in(list(by_id))).group_by("response_id", "principle", maintain_order=True).agg(pl.col("fulfilment").mean())
        for rid, p, f in agg.iter_rows():
            if f is not None and f != 0.5:
                emit(rid, p, 1.0 if f > 0.5 else 0.0, False, "principles")
    # 2. statements in feedback texts
    fb = store.load_table(workspace, name, "feedback", ["response_id", "feedback"])
    for rid, text in fb.filter(pl.col("response_id").is_in(list(by_id))).iter_rows():
        for p, lab in feedback_statements(text):
            emit(rid, p, lab, False, "feedback")
    # 3. derived from attribute ratings, automatically when the dataset has ratings and no principle rows
    if prin.height == 0:
        labels = labels_by_response(item_labels(workspace, name))
        words = vocabulary(r["response"] for r in by_id.values()) if purpose == "train" and augment else []
        for rid in by_id:
            lab = labels.get(rid)
            if not lab:
                continue
            cands = []
            for attr, phrasings in PHRASINGS.items():
                if attr not in lab:
                    continue
                n_train = len(phrasings) - heldout_phrasings
                for k, (direction, text) in enumerate(phrasings):
                    held = k >= n_train
                    if held and purpose == "train":
                        continue
                    sat = lab[attr] >= thresholds[attr]
                    cands.append((text, float(sat if direction == ">=" else not sat), held))
            if per_response and purpose == "train" and len(cands) > per_response:
                cands = [cands[i] for i in rng.choice(len(cands), per_response, replace=False)]
            for text, y, held in cands:
                if purpose == "train" and augment and rng.random() < augment:
                    text = reword(text, rng, words)
                emit(rid, text, y, held, "ratings")
    # 4. principle/label rows a user wrote: {"response_id" | ("prompt" or "messages") + "response", "principle", "label"}
    if principles_file:
        for rid, principle, label in read_principles_file(Path(principles_file)):
            if rid in by_id:  # rows of responses outside this split are skipped
                emit(rid, principle, label, False, "file")
    return out
