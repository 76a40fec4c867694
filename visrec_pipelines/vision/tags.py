"""Readable semantic tags with confidences, from every source, merged into one short list.

Sources: ImageNet classes mapped to a product vocabulary (`imagenet_tags`, mapping in
imagenet_vocabulary.json), learned catalogue heads (`head_tags`), pixel colours
(`visrec_pipelines.vision.colours.colour_tags`) and an optional object detector
(`visrec_pipelines.vision.detection.detector_tags`). `merge_tags` turns their union into the few
tags worth showing and storing; `tags_to_text` / `tags_to_json` are the two stored forms.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

VOCABULARY_PATH = Path(__file__).with_name("imagenet_vocabulary.json")
# Spellings and near-synonyms folded into one name before merging (keys are lower case).
DEFAULT_SYNONYMS = {
    "gray": "grey", "tee": "t-shirt", "tshirt": "t-shirt", "t shirt": "t-shirt", "jeans": "trousers",
    "pants": "trousers", "handbag": "bag", "purse": "bag", "sneaker": "shoe", "sneakers": "shoe",
    "shoes": "shoe", "sofa bed": "sofa", "couch": "sofa", "television": "tv",
}
_ROUNDING = 1e-6  # float32 probabilities may sum to a hair over 1


@dataclass(frozen=True)
class Tag:
    """One readable tag. `sources` lists every source that agreed (set by `merge_tags`); `decided`:
    a calibrated head chose it with a threshold set on held-out items, so no generic bar applies."""
    name: str
    confidence: float
    source: str
    kind: str
    sources: tuple[str, ...] = ()
    decided: bool = False

    def __post_init__(self):
        confidence = float(self.confidence)
        if not -_ROUNDING <= confidence <= 1 + _ROUNDING:  # NaN fails this too
            raise ValueError(f"tag {self.name!r}: confidence {self.confidence!r} is not in [0, 1]")
        if not str(self.name).strip():
            raise ValueError("a tag needs a non-empty name")
        object.__setattr__(self, "confidence", min(max(confidence, 0.0), 1.0))
        object.__setattr__(self, "sources", tuple(self.sources) or (self.source,))


# --- ImageNet classes -> product vocabulary ---------------------------------------------------

@dataclass(frozen=True)
class ImagenetVocabulary:
    """class id -> (term, kind) for the ImageNet classes that mean something in a shop or on a poster."""
    terms: Mapping[int, tuple[str, str]]

    @classmethod
    def load(cls, path: Path | str = VOCABULARY_PATH) -> ImagenetVocabulary:
        from torchvision.models._meta import _IMAGENET_CATEGORIES  # names only: no weights, no download
        class_ids = {name: i for i, name in enumerate(_IMAGENET_CATEGORIES)}
        terms: dict[int, tuple[str, str]] = {}
        for term, entry in json.loads(Path(path).read_text())["terms"].items():
            for name in entry["classes"]:
                if name not in class_ids:
                    raise ValueError(f"{path}: {name!r} (under {term!r}) is not an ImageNet class name")
                if class_ids[name] in terms:
                    first = terms[class_ids[name]][0]
                    raise ValueError(f"{path}: {name!r} is mapped twice ({first!r}, {term!r})")
                terms[class_ids[name]] = (term, entry["kind"])
        return cls(terms)


@lru_cache(maxsize=1)
def default_vocabulary() -> ImagenetVocabulary:
    return ImagenetVocabulary.load()


def imagenet_tags(top_class_ids: Sequence[int], top_probs: Sequence[float],
                  vocabulary: ImagenetVocabulary | None = None) -> list[Tag]:
    """One image's top-k ImageNet classes -> vocabulary tags; a term's confidence is the summed
    probability of its classes (so 'running shoe' 0.3 + 'sandal' 0.2 -> 'shoe' 0.5)."""
    terms = (vocabulary or default_vocabulary()).terms
    mass: dict[tuple[str, str], float] = {}
    for class_id, prob in zip(top_class_ids, top_probs, strict=True):
        if (term := terms.get(int(class_id))) is not None:  # unmapped classes say nothing
            mass[term] = mass.get(term, 0.0) + float(prob)
    tags = [Tag(term, min(total, 1.0), "imagenet", kind) for (term, kind), total in mass.items()]
    return _by_confidence(tags)


# --- learned heads ----------------------------------------------------------------------------

def head_tags(probabilities: Mapping[str, Mapping[str, float]], min_confidence: float = 0.05,
              kinds: Mapping[str, str] | None = None) -> list[Tag]:
    """{label_group: {label: prob}} from learned heads -> tags of kind label_group (or ``kinds[group]``).
    Where a head's decisions come along (``heads.LabelScores.decided``) exactly those labels are
    tagged; otherwise every label at ``min_confidence`` or above (None/NaN = unknown)."""
    tags = []
    for group, labels in probabilities.items():
        kind = (kinds or {}).get(group, group)
        decided = getattr(labels, "decided", None)
        if decided is not None:
            tags += [Tag(label, _probability(labels.get(label)), "head", kind, decided=True) for label in decided]
            continue
        tags += [Tag(label, prob, "head", kind) for label, prob in labels.items()
                 if prob is not None and not math.isnan(prob) and prob >= min_confidence]
    return _by_confidence(tags)


def _probability(value) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


# --- merging ----------------------------------------------------------------------------------

def merge_tags(tag_lists: Iterable[Iterable[Tag]], min_confidence: float = 0.3, max_tags: int = 8,
               synonyms: Mapping[str, str] = DEFAULT_SYNONYMS, combine: str = "noisy_or",
               max_colours: int = 2, min_colour_ratio: float = 0.25) -> list[Tag]:
    """The union of several sources' tags -> a short, deduplicated list sorted by confidence.

    Tags naming the same thing (after lower-casing and `synonyms`) become one tag; a head's decided
    tags stay whatever their confidence (their bar was set on held-out items). Within a source
    the best one counts; across sources the evidence is combined by noisy-OR (independent sources
    that agree raise confidence) or "max". The merged kind prefers anything over the generic
    "object", so "object: shoe" + "category: shoe" is one category tag. Colours are kept apart
    from things ("orange" the colour is not "orange" the fruit), and a colour far below the
    dominant one (under `min_colour_ratio` of it) is dropped as an accent, not the item's colour.
    """
    if combine not in ("noisy_or", "max"):
        raise ValueError(f"combine must be 'noisy_or' or 'max', not {combine!r}")
    groups: dict[tuple[str, bool], list[Tag]] = {}
    for tag in (tag for tags in tag_lists for tag in tags):
        name = _canonical(tag.name, synonyms)
        groups.setdefault((name, tag.kind == "colour"), []).append(tag)
    merged = [_merge_group(name, tags, combine) for (name, _), tags in groups.items()]
    merged = [tag for tag in merged if tag.decided or tag.confidence >= min_confidence]
    merged = _drop_minor_colours(_by_confidence(merged), max_colours, min_colour_ratio)
    return _shortlist(merged, max_tags)


KEY_KINDS = ("category", "colour")  # what top_tag reads for the tag table and the item index


def _shortlist(tags: list[Tag], max_tags: int) -> list[Tag]:
    """The max_tags most confident, but never without the best category and colour tag: with many
    label groups, a 68-way category at 0.4 must not lose its place to a 5-way group at 0.9."""
    must = [next(t for t in tags if t.kind == kind) for kind in KEY_KINDS if any(t.kind == kind for t in tags)]
    chosen = {id(t) for t in must}
    rest = [t for t in tags if id(t) not in chosen]
    return _by_confidence(must + rest[:max(max_tags - len(must), 0)])


def _canonical(name: str, synonyms: Mapping[str, str]) -> str:
    key = " ".join(str(name).lower().split())
    return synonyms.get(key, key)


def _merge_group(name: str, tags: list[Tag], combine: str) -> Tag:
    best_per_source: dict[str, Tag] = {}
    for tag in sorted(tags, key=lambda t: -t.confidence):
        for source in tag.sources:
            best_per_source.setdefault(source, tag)
    confidences = [tag.confidence for tag in best_per_source.values()]
    if combine == "max":
        confidence = max(confidences)
    else:
        confidence = 1.0 - math.prod(1.0 - c for c in confidences)
    best = max(tags, key=lambda t: t.confidence)
    specific = [t for t in tags if t.kind != "object"]
    kind = max(specific, key=lambda t: t.confidence).kind if specific else "object"
    decided = [t for t in tags if t.decided]
    if decided:  # the head's decision names the kind: "category: Dress", not ImageNet's guess
        # ... and "Shorts" decided as category and as garment group stays the category
        kind = max(decided, key=lambda t: (t.kind in KEY_KINDS, t.confidence)).kind
    return Tag(name, confidence, best.source, kind, tuple(best_per_source), bool(decided))


def _drop_minor_colours(tags: list[Tag], max_colours: int, min_ratio: float) -> list[Tag]:
    colours = [t for t in tags if t.kind == "colour"]
    if not colours:
        return tags
    keep = {id(t) for t in colours[:max_colours] if t.confidence >= min_ratio * colours[0].confidence}
    return [t for t in tags if t.kind != "colour" or id(t) in keep]


def _by_confidence(tags: list[Tag]) -> list[Tag]:
    return sorted(tags, key=lambda t: (-t.confidence, t.kind, t.name))


# --- storage and reading ----------------------------------------------------------------------

def tags_to_text(tags: Iterable[Tag]) -> str:
    """'red; dress; striped' - for search indexes, captions and tables."""
    return "; ".join(tag.name for tag in tags)


def tags_to_json(tags: Iterable[Tag]) -> str:
    """Compact storage form: [[name, confidence, kind, "source+source"], ...]."""
    rows = [[t.name, round(t.confidence, 3), t.kind, "+".join(t.sources)] for t in tags]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def tags_from_json(text: str) -> list[Tag]:
    tags = []
    for name, confidence, kind, sources in json.loads(text):
        sources = tuple(sources.split("+"))
        tags.append(Tag(name, confidence, sources[0], kind, sources))
    return tags


def top_tag(tags: Iterable[Tag], kind: str) -> str | None:
    """Name of the most confident tag of this kind (None if there is none)."""
    candidates = [t for t in tags if t.kind == kind]
    return max(candidates, key=lambda t: t.confidence).name if candidates else None


def tag_accuracy(predicted_top: pd.Series, truth: pd.Series,
                 synonyms: Mapping[str, str] = DEFAULT_SYNONYMS) -> float:
    """Share of labelled rows whose prediction (aligned on the index) names the same thing after
    synonyms; a missing prediction counts as wrong, a missing truth is not counted."""
    truth = truth.dropna()
    if truth.empty:
        raise ValueError("no ground truth to compare with")
    predicted = predicted_top.reindex(truth.index)

    def normalise(values: pd.Series) -> pd.Series:
        return values.map(lambda v: None if v is None or pd.isna(v) else _canonical(v, synonyms))

    hits = normalise(predicted).to_numpy() == normalise(truth).to_numpy()
    return float(hits.mean())
