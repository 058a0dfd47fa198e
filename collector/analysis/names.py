"""Step-name understanding: tokens, naming styles, verbs, failure names and compensation pairs.

Names arrive as snake_case, camelCase, kebab-case, PascalCase, dotted CloudEvents types and
past-tense event names (``InventoryReserved``). Everything here is cached per distinct name:
a million spans carry only a few hundred distinct names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# verb form -> base verb
_VERB_FORMS: dict[str, str] = {}
for _base, _forms in {
    # -ing forms are left out on purpose: "BookingCreated" is about a booking, not booking
    "reserve": ("reserved",),
    "charge": ("charged",),
    "book": ("booked",),
    "debit": ("debited",),
    "allocate": ("allocated",),
    "lock": ("locked",),
    "hold": ("held",),
    "create": ("created",),
    "release": ("released",),
    "refund": ("refunded",),
    "cancel": ("cancelled", "canceled"),
    "credit": ("credited",),
    "deallocate": ("deallocated",),
    "unlock": ("unlocked",),
    "delete": ("deleted",),
    "undo": ("undone",),
    "compensate": ("compensated",),
    "revert": ("reverted",),
    "rollback": ("rolledback",),
}.items():
    _VERB_FORMS[_base] = _base
    for _form in _forms:
        _VERB_FORMS[_form] = _base

PAST = {
    "reserve": "reserved", "charge": "charged", "book": "booked", "debit": "debited",
    "allocate": "allocated", "lock": "locked", "hold": "held", "create": "created",
    "release": "released", "refund": "refunded", "cancel": "cancelled", "credit": "credited",
    "deallocate": "deallocated", "unlock": "unlocked", "delete": "deleted",
}  # fmt: skip

# action verb -> the verbs that undo it (first one is the canonical counterpart)
ACTION_PAIRS: dict[str, tuple[str, ...]] = {
    "reserve": ("release",),
    "charge": ("refund",),
    "book": ("cancel",),
    "debit": ("credit",),
    "allocate": ("deallocate",),
    "lock": ("unlock",),
    "hold": ("release",),
    "create": ("cancel", "delete"),
}
COMPENSATION_PAIRS: dict[str, tuple[str, ...]] = {}
for _action, _undos in ACTION_PAIRS.items():
    for _undo in _undos:
        COMPENSATION_PAIRS.setdefault(_undo, ())
        COMPENSATION_PAIRS[_undo] += (_action,)
PREFIX_VERBS = frozenset({"undo", "compensate", "revert", "rollback", "cancel"})
# these undo something whatever the saga contains; cancel/credit/delete only with a counterpart
STRONG_COMPENSATION_VERBS = frozenset(
    {"release", "refund", "deallocate", "unlock", "undo", "compensate", "revert", "rollback"}
)
FAILURE_WORDS = frozenset({"failed", "declined", "rejected", "timedout", "failure", "aborted"})
FRAMEWORK_SUFFIXES = ("Consumer", "Handler", "Command", "Activity")


@dataclass(frozen=True, slots=True)
class NameInfo:
    tokens: tuple[str, ...]
    style: str  # snake | kebab | dotted | space | pascal | camel | lower
    verb: str  # base verb, "" when none is recognised
    verb_last: bool  # event style: InventoryReserved
    obj: tuple[str, ...]
    failure: bool  # PaymentDeclined, payment_failed, ...
    stem: tuple[str, ...]  # tokens without the failure word


def _split(name: str) -> tuple[list[str], str]:
    if "_" in name:
        style = "snake"
    elif "-" in name:
        style = "kebab"
    elif " " in name:
        style = "space"
    elif "." in name:
        style = "dotted"
    elif name[:1].isupper():
        style = "pascal"
    elif any(c.isupper() for c in name):
        style = "camel"
    else:
        style = "lower"
    tokens: list[str] = []
    word = ""
    prev = ""
    for i, ch in enumerate(name):
        if not ch.isalnum():
            if word:
                tokens.append(word)
            word = ""
        elif (
            ch.isupper()
            and word
            and (prev.islower() or prev.isdigit() or (i + 1 < len(name) and name[i + 1].islower()))
        ):
            tokens.append(word)
            word = ch
        else:
            word += ch
        prev = ch
    if word:
        tokens.append(word)
    lowered = [t.lower() for t in tokens]
    joined: list[str] = []
    for t in lowered:
        if joined and (joined[-1], t) in {("roll", "back"), ("timed", "out")}:
            joined[-1] = joined[-1] + t
        else:
            joined.append(t)
    return joined, style


@lru_cache(maxsize=65536)
def name_info(name: str) -> NameInfo:
    """Tokens, style, verb/object and failure flag of one step or event name (cached)."""
    last_part = name.rsplit("/", 1)[-1]
    tokens, style = _split(last_part)
    if style == "dotted" and len(tokens) > 1 and "." in last_part:
        # reverse-DNS CloudEvents types: com.example.orders.PaymentDeclined -> PaymentDeclined
        tail = last_part.rsplit(".", 1)[-1]
        tail_tokens, tail_style = _split(tail)
        if tail_tokens and any(c.isupper() for c in tail):
            tokens, style = tail_tokens, tail_style
    failure = bool(tokens) and tokens[-1] in FAILURE_WORDS
    stem = tuple(tokens[:-1]) if failure else tuple(tokens)
    verb = ""
    verb_last = False
    obj: tuple[str, ...] = stem
    if stem and stem[0] in _VERB_FORMS:
        verb, obj = _VERB_FORMS[stem[0]], stem[1:]
    elif stem and stem[-1] in _VERB_FORMS:
        verb, obj, verb_last = _VERB_FORMS[stem[-1]], stem[:-1], True
    return NameInfo(tuple(tokens), style, verb, verb_last, obj, failure, stem)


@lru_cache(maxsize=65536)
def match_key(name: str) -> str:
    """Key under which differently styled names of one step compare equal.

    ``reserve_inventory``, ``ReserveInventory`` and ``InventoryReserved`` all give
    ``reserve:inventory``; names without a known verb fall back to their joined tokens.
    """
    info = name_info(name)
    if info.verb and info.obj and not info.failure:
        return f"{info.verb}:{'_'.join(info.obj)}"
    return "_".join(info.tokens) or name


def is_failure_name(name: str) -> bool:
    """True for …Failed, …Declined, …Rejected, …TimedOut (and snake/kebab forms)."""
    return name_info(name).failure


def render(tokens: tuple[str, ...] | list[str], style: str) -> str:
    """Spell tokens in a naming style."""
    if not tokens:
        return ""
    if style == "snake":
        return "_".join(tokens)
    if style == "kebab":
        return "-".join(tokens)
    if style == "space":
        return " ".join(tokens)
    if style == "dotted":
        return ".".join(tokens)
    pascal = "".join(t[:1].upper() + t[1:] for t in tokens)
    if style == "camel":
        return pascal[:1].lower() + pascal[1:]
    if style == "lower":
        return "".join(tokens)
    return pascal


def _spell(verb: str, obj: tuple[str, ...], info: NameInfo) -> str:
    if info.verb_last:
        return render((*obj, PAST.get(verb, verb)), info.style)
    return render((verb, *obj), info.style)


@dataclass(frozen=True, slots=True)
class Pairing:
    """What a name's wording says about compensation."""

    role: str  # "action" (has an inferred undo), "compensation", or ""
    counterpart: str  # spelled in the same style: the undo of an action / the action undone
    targets: tuple[str, ...] = ()  # match keys this compensation may undo
    strong: bool = False  # a compensation even when the saga holds no matching action


@lru_cache(maxsize=65536)
def pairing(name: str) -> Pairing:
    """Infer from wording whether a name is a compensable action or a compensation."""
    info = name_info(name)
    if info.failure or not info.verb:
        return Pairing("", "")
    if info.verb in PREFIX_VERBS and not info.verb_last and len(info.obj) >= 1:
        rest = info.obj
        if rest[0] in _VERB_FORMS and _VERB_FORMS[rest[0]] in ACTION_PAIRS:
            undone = render(rest, info.style)
            return Pairing("compensation", undone, (match_key(undone),), True)
        if info.verb != "cancel":
            undone = render(rest, info.style)
            return Pairing("compensation", undone, (match_key(undone),), True)
    if info.verb in COMPENSATION_PAIRS and info.obj:
        actions = COMPENSATION_PAIRS[info.verb]
        targets = tuple(f"{a}:{'_'.join(info.obj)}" for a in actions)
        return Pairing(
            "compensation",
            _spell(actions[0], info.obj, info),
            targets,
            info.verb in STRONG_COMPENSATION_VERBS,
        )
    if info.verb in ACTION_PAIRS and info.obj:
        return Pairing("action", _spell(ACTION_PAIRS[info.verb][0], info.obj, info))
    return Pairing("", "")


@lru_cache(maxsize=65536)
def framework_step_name(type_name: str) -> str:
    """``Shop.Billing.ChargePaymentConsumer`` -> ``ChargePayment``."""
    short = type_name.rsplit(".", 1)[-1].rsplit("+", 1)[-1]
    for suffix in FRAMEWORK_SUFFIXES:
        if short.endswith(suffix) and len(short) > len(suffix):
            return short[: -len(suffix)]
    return short


@lru_cache(maxsize=65536)
def stem_key(name: str) -> str:
    """Match key of a failure name without its failure word: ``PaymentChargeFailed`` -> ``charge:payment``."""
    info = name_info(name)
    if info.verb and info.obj:
        return f"{info.verb}:{'_'.join(info.obj)}"
    return "_".join(info.stem)
