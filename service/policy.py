"""The rules the service enforces (normalizer, thresholds, platform policy) and their reloads.

``PolicyHolder.rules`` is one immutable ``Rules`` object. A request reads it once and uses
that object throughout, and a reload builds the new object completely before it replaces the
old one in a single assignment, so no request ever mixes two policies. A bad policy file
raises before anything changes: the rules in force stay in force.

No web imports: the CLI uses this too.
"""

import contextlib
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from algospeak import Lexicon, Normalizer, Policy, PolicyError, load_lexicon
from service.scoring import Classification
from service.settings import Settings

logger = logging.getLogger(__name__)


def top_harm_category(classification: Classification) -> str:
    """The most likely harm category, whatever the label: what thresholds and policy key on."""
    scores = classification.category_scores
    return max((c for c in scores if c != "none"), key=scores.__getitem__)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """P(harmful) at or above ``review`` -> review, at or above ``block`` -> block; a category
    may override both (keyed by the most likely harm category)."""

    review: float = 0.5
    block: float = 0.9
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)

    def limits(self, category: str) -> tuple[float, float]:
        """The (review, block) thresholds in force for ``category``."""
        override = self.per_category.get(category, {})
        return override.get("review", self.review), override.get("block", self.block)

    def action(self, classification: Classification) -> str:
        review, block = self.limits(top_harm_category(classification))
        harmful = classification.label_scores["harmful"]
        if harmful >= block:
            return "block"
        if harmful >= review:
            return "review"
        return "allow"


@dataclass(frozen=True, slots=True)
class Rules:
    """What one request is decided by: the normalizer (built-in lexicon changed by the policy),
    the thresholds (settings overridden by the policy) and the policy itself (None without
    one). ``loaded_at`` says when these rules were put in force."""

    normalizer: Normalizer
    thresholds: Thresholds
    policy: Policy | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def decide(self, classification: Classification) -> tuple[str, bool]:
        """The action and whether the policy moderates the text's most likely harm category;
        an unmoderated one is always allowed, whatever its scores."""
        policy = self.policy
        if policy is not None and not policy.moderates(top_harm_category(classification)):
            return "allow", False
        return self.thresholds.action(classification), True


def build_rules(settings: Settings, lexicon: Lexicon, policy: Policy | None) -> Rules:
    """The rules for ``policy`` (None: the settings alone) over ``lexicon``. The policy's
    thresholds win over the settings', key by key; raises PolicyError when the policy does
    not fit the lexicon or the combined thresholds would put review above block."""
    if policy is None:
        thresholds = Thresholds(
            settings.review_threshold, settings.block_threshold, settings.category_thresholds
        )
        return Rules(Normalizer(lexicon), thresholds)
    per_category = {c: dict(levels) for c, levels in settings.category_thresholds.items()}
    for category, levels in policy.thresholds.items():
        per_category[category] = {**per_category.get(category, {}), **levels}
    thresholds = Thresholds(
        settings.review_threshold if policy.review is None else policy.review,
        settings.block_threshold if policy.block is None else policy.block,
        per_category,
    )
    _check_order(thresholds, policy.source)
    return Rules(Normalizer(policy.apply(lexicon)), thresholds, policy)


def _check_order(thresholds: Thresholds, source: str) -> None:
    """Review at or below block, for every category, once the settings' thresholds are in."""
    pairs = {"all categories": (thresholds.review, thresholds.block)}
    pairs |= {category: thresholds.limits(category) for category in thresholds.per_category}
    for where, (review, block) in pairs.items():
        if review > block:
            raise PolicyError(
                f"{source}: with the service's settings, {where} would have review {review} "
                f"above block {block}"
            )


class PolicyHolder:
    """The service's current ``rules`` and the policy file (``path``) they come from.

    ``error`` is why the last reload was refused (None after a good one). Reloads are
    serialized; reading ``rules`` never waits for one.
    """

    def __init__(self, settings: Settings, lexicon: Lexicon | None = None) -> None:
        """Load the configured policy; raises PolicyError when it is unusable, so a service
        never starts with a policy other than the one it was given."""
        self.path: Path | None = settings.policy_path
        self.error: str | None = None
        self._settings = settings
        self._lexicon = lexicon or load_lexicon(settings.lexicon_path)
        self._lock = threading.RLock()
        self._seen: str | None = None  # sha256 of the file's bytes last tried
        if self.path is None:
            self.rules = build_rules(settings, self._lexicon, None)
        else:
            self.rules = self._load(self.path)
            logger.info("policy %s in force", _name(self.rules))

    def reload(self) -> Rules:
        """Read the policy file again and put it in force, returning the new rules. On any
        problem raise PolicyError, keep the rules in force and remember the error. Without a
        policy file there is nothing to reload: that is a PolicyError too."""
        if self.path is None:
            raise PolicyError("no policy file is configured: set ALGOSPEAK_POLICY_PATH")
        with self._lock:
            try:
                rules = self._load(self.path)
            except PolicyError as exc:
                self.error = str(exc)
                logger.error("policy not reloaded, %s stays in force: %s", _name(self.rules), exc)
                raise
            self.rules, self.error = rules, None
            logger.info("policy %s in force", _name(rules))
            return rules

    def reload_if_changed(self) -> bool:
        """Reload when the file's bytes differ from those last tried, and say whether it did
        try; a bad file is tried once per change, not at every check."""
        if self.path is None:
            return False
        with self._lock:
            if _digest(self.path) == self._seen:
                return False
            with contextlib.suppress(PolicyError):  # logged and kept in `error` by reload
                self.reload()
            return True

    def _load(self, path: Path) -> Rules:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self._seen = None
            raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
        self._seen = hashlib.sha256(raw).hexdigest()
        return build_rules(self._settings, self._lexicon, Policy.from_yaml(raw, path.name))


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _name(rules: Rules) -> str:
    policy = rules.policy
    return "none" if policy is None else f"{policy.version} ({policy.sha256[:12]})"
