"""Policy files: which semantic groups stay public, which are encrypted and for whom, which are dropped.

A policy is a TOML file::

    [[rule]]
    match = ["face"]          # group classes; "*" matches every class except the background
    action = "encrypt"        # public | encrypt | redact
    recipients = ["family"]   # key names in --keys-dir or paths to key / .pub files (encrypt only)
    grouping = "instance"     # optional: "instance" (one group per object) or "class" (one per class)
    scale = 1.3               # optional: grow each object's box to this many times its size (default 1)
    margin = 8                # optional: at least this many pixels on every side (default 0)

    [default]                 # optional; unmatched groups, including the background
    action = "public"

    [metadata]                # optional: keep the original EXIF/XMP (no thumbnail), encrypted
    recipients = ["family"]   # for these recipients; everyone else gets none of it

Actions: ``public`` groups are coded in the clear; ``encrypt`` groups are readable only with a
recipient's key; ``redact`` groups are dropped for good (not even ciphertext is stored).

Labels are matched case-insensitively.  ``"*"`` matches any class except ``background``: the
background (every block no object claims) is decided by a rule that names ``"background"``
explicitly, otherwise by ``[default]``.  A missing ``[default]`` means ``action = "public"``.

Deciding a label: the first rule whose ``match`` contains it decides; a label may appear in at most
one rule (a duplicate is an error, as is a label that an earlier ``"*"`` rule already covers).

Precedence when groups overlap (a face inside a person both want the same 16-px block):

1. the strictest action wins: redact > encrypt > public, so overlap never weakens protection;
2. among equal actions, the rule listed first in the file wins (list faces before people so a
   face inside a person stays its own group, readable by the face recipients);
3. labels no rule matches (decided by ``[default]``) come after every rule of the same action.

``Policy.rank`` turns this into one integer per label: lower wins the contested block.
``Decision.rule`` is a 0-based index into ``Policy.rules``; error messages count rules from 1,
as a person reading the file does ("rule 2" is the second ``[[rule]]``).
"""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import PolicyError
from .labels import class_label

ACTIONS = ("public", "encrypt", "redact")
STRICTNESS = {"redact": 0, "encrypt": 1, "public": 2}   # lower = stricter = wins an overlap
GROUPINGS = ("instance", "class")
MAX_MARGIN = 512                                         # pixels; more is surely a typo
MAX_SCALE = 4.0
ANY = "*"
BACKGROUND = "background"

# A misspelt class silently leaves those objects public, so near-misses of the built-in classes
# are refused (custom region labels are free-form and cannot be checked otherwise).
_BUILTIN = ("face", "person", "license_plate", BACKGROUND)
_ALIASES = {
    "people": "person", "human": "person", "humans": "person", "persons": "person",
    "faces": "face", "plate": "license_plate", "plates": "license_plate",
    "license plate": "license_plate", "licence plate": "license_plate",
    "number_plate": "license_plate", "number plate": "license_plate",
}

_RULE_KEYS = {"match", "action", "recipients", "grouping", "margin", "scale"}
_DEFAULT_KEYS = {"action", "recipients"}


@dataclass(frozen=True)
class Decision:
    action: str
    recipients: tuple[str, ...]
    rule: int | None          # 0-based index into Policy.rules; None = [default]


@dataclass(frozen=True)
class Rule:
    match: tuple[str, ...]
    action: str
    recipients: tuple[str, ...] = ()
    grouping: str = "instance"
    margin: int = 0
    scale: float = 1.0


@dataclass
class Policy:
    path: Path
    rules: list[Rule]
    default: Decision
    metadata: tuple[str, ...] = ()    # [metadata] recipients: who gets the original EXIF/XMP back

    def decide(self, label: str) -> Decision:
        label = class_label(label)
        for i, rule in enumerate(self.rules):
            if label in rule.match or (ANY in rule.match and label != BACKGROUND):
                return Decision(rule.action, rule.recipients, i)
        return self.default

    def rank(self, label: str) -> int:
        """Overlap precedence: lower wins a contested block (see the module docstring)."""
        d = self.decide(label)
        order = len(self.rules) if d.rule is None else d.rule
        return STRICTNESS[d.action] * (len(self.rules) + 1) + order

    def grouping(self, label: str) -> str:
        """Grouping for this label: "instance" or "class" (unmatched labels: "instance")."""
        d = self.decide(label)
        return "instance" if d.rule is None else self.rules[d.rule].grouping

    def margin(self, label: str) -> int:
        """Pixels to grow this label's objects by before snapping to blocks (unmatched labels: 0)."""
        d = self.decide(label)
        return 0 if d.rule is None else self.rules[d.rule].margin

    def scale(self, label: str) -> float:
        """How many times its box size this label's objects grow to (unmatched labels: 1)."""
        d = self.decide(label)
        return 1.0 if d.rule is None else self.rules[d.rule].scale

    def labels(self) -> set[str]:
        """Classes named by rules; contains "*" if some rule matches every class."""
        return {label for rule in self.rules for label in rule.match}


def load_policy(path) -> Policy:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except IsADirectoryError:
        raise PolicyError(f"{path}: is a directory, not a policy file") from None
    except OSError as e:
        raise PolicyError(f"{path}: cannot read policy file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: invalid TOML: {e}") from None

    def fail(where: str, msg: str):
        raise PolicyError(f"{path}: {where}: {msg}")

    unknown = sorted(set(data) - {"rule", "default", "metadata"})
    if unknown:
        fail("top level", f"unknown key '{unknown[0]}' (expected [[rule]], [default] and [metadata])")

    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        fail("top level", "'rule' must be an array of tables: write [[rule]], not [rule]")

    rules: list[Rule] = []
    seen: dict[str, int] = {}          # label -> rule number (1-based) that claims it
    for n, raw in enumerate(raw_rules, start=1):
        where = f"rule {n}"
        if not isinstance(raw, dict):
            fail(where, "must be a table ([[rule]])")
        _check_keys(raw, _RULE_KEYS, where, fail)
        if "match" not in raw:
            fail(where, "missing 'match' (a list of classes, e.g. match = [\"face\"])")
        match = _string_list(raw["match"], "match", where, fail)
        if not match:
            fail(where, "'match' is empty")
        for label in match:
            if label in seen:
                other = seen[label]
                fail(where, f"'{label}' listed twice" if other == n
                     else f"'{label}' is already matched by rule {other}")
            if seen.get(ANY, n) != n and label != BACKGROUND:
                fail(where, f"'{label}' can never match: rule {seen[ANY]} already matches '*'")
            _check_spelling(label, where, fail)
            seen[label] = n
        action, recipients = _action(raw, where, fail)

        grouping = raw.get("grouping", "instance")
        if grouping not in GROUPINGS:
            fail(where, f"'grouping' must be \"instance\" or \"class\", not {grouping!r}")
        margin = raw.get("margin", 0)
        if not isinstance(margin, int) or isinstance(margin, bool):
            fail(where, f"'margin' must be a whole number of pixels, not {margin!r}")
        if not 0 <= margin <= MAX_MARGIN:
            fail(where, f"'margin' must be between 0 and {MAX_MARGIN} pixels, not {margin}")
        scale = raw.get("scale", 1.0)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 1.0 <= scale <= MAX_SCALE:
            fail(where, f"'scale' must be a number from 1 (the object's box) to {MAX_SCALE:g}, not {scale!r}")
        rules.append(Rule(tuple(match), action, recipients, grouping, margin, float(scale)))

    raw_default = data.get("default", {"action": "public"})
    if not isinstance(raw_default, dict):
        fail("[default]", "must be a table: write [default] with action = ...")
    _check_keys(raw_default, _DEFAULT_KEYS, "[default]", fail)
    if "action" not in raw_default:
        fail("[default]", "missing 'action'")
    action, recipients = _action(raw_default, "[default]", fail)
    metadata: tuple[str, ...] = ()
    if "metadata" in data:
        raw_meta = data["metadata"]
        if not isinstance(raw_meta, dict):
            fail("[metadata]", "must be a table: write [metadata] with recipients = [...]")
        _check_keys(raw_meta, {"recipients"}, "[metadata]", fail)
        metadata = tuple(_string_list(raw_meta.get("recipients", []), "recipients", "[metadata]", fail))
        if not metadata:
            fail("[metadata]", "'recipients' is empty: the kept EXIF/XMP needs at least one recipient")
    return Policy(path, rules, Decision(action, recipients, None), metadata)


def _check_keys(raw: dict, allowed: set[str], where: str, fail) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        fail(where, f"unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def _string_list(value, key: str, where: str, fail) -> list[str]:
    if isinstance(value, str):
        fail(where, f"'{key}' must be a list of strings, e.g. {key} = [\"{value}\"]")
    if not isinstance(value, list):
        fail(where, f"'{key}' must be a list of strings, not {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, str):
            fail(where, f"'{key}' must contain only strings, found {item!r}")
        if not item.strip():
            fail(where, f"'{key}' contains an empty string")
        if key == "match" and not (item.isascii() and item.isprintable()):
            # "fаce" with a Cyrillic а, or full-width "ｆａｃｅ", would never match a detector's face
            fail(where, f"class {item!r} is not ASCII: class names are plain ASCII (e.g. \"face\")")
        out.append(class_label(item) if key == "match" else item.strip())
    return out


def _action(raw: dict, where: str, fail) -> tuple[str, tuple[str, ...]]:
    action = raw.get("action")
    if "action" not in raw:
        fail(where, "missing 'action' (public, encrypt or redact)")
    if action not in ACTIONS:
        fail(where, f"unknown action {action!r} (expected public, encrypt or redact)")
    if "recipients" not in raw:
        if action == "encrypt":
            fail(where, "action 'encrypt' needs 'recipients' (key names or key file paths)")
        return action, ()
    if action != "encrypt":
        fail(where, f"'recipients' is only allowed with action 'encrypt', not '{action}'")
    recipients = _string_list(raw["recipients"], "recipients", where, fail)
    if not recipients:
        fail(where, "'recipients' is empty: encrypt needs at least one recipient")
    dup = next((r for i, r in enumerate(recipients) if r in recipients[:i]), None)
    if dup is not None:
        fail(where, f"recipient '{dup}' listed twice")
    return action, tuple(recipients)


def _typo_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) between a and b: one slip of the
    keyboard is 1, where difflib's ratio lets one slip in a 4-letter word ("fase") through."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def _check_spelling(label: str, where: str, fail) -> None:
    if label in _BUILTIN or label == ANY:
        return
    guess = (_ALIASES.get(label)
             or next((c for c in _BUILTIN if _typo_distance(label, c) <= 1), None)
             or next(iter(difflib.get_close_matches(label, _BUILTIN, 1, 0.8)), None))
    if guess:
        fail(where, f"unknown class '{label}'; did you mean '{guess}'?")
