"""The contract every merge strategy meets, and the option parsing they share.

A strategy combines the two (or more) sides of a parameter that changed differently on both
sides of a merge. The merge base is the "pre-trained model" of the task-vector literature, so
task vectors are `side - base` and TIES, DARE and task arithmetic need no extra input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from git_theta.errors import ConfigError

__all__ = ["MergeStrategy", "OptionDef", "parse_options", "resolve_weights"]


@dataclass(frozen=True)
class OptionDef:
    """One option a strategy accepts: its name, type (float, int or str), default and help."""

    name: str
    type: type
    default: Any
    help: str = ""


# Every strategy accepts per-side weights ("weights=0.3,0.7"); what they mean is the strategy's.
WEIGHTS = OptionDef("weights", str, "", "per-side weights, comma-separated (ours,theirs)")


class MergeStrategy(ABC):
    """A way to merge one parameter changed differently on both sides.

    Subclasses set the class attributes and implement `merge`. Requirements:
      - `merge` computes in float32 (float64 for F64 inputs) and returns an array of the
        sides' shape; casting back to the parameter's dtype is the caller's job.
      - It is deterministic: the same inputs, options and parameter name give the same bytes.
      - It raises ConfigError for options it cannot use (one line, naming the option).

    Attributes:
        name: the registry key (`average`, `ties`, ...).
        summary: one line for `--help` and docs.
        reference_url: the paper or documentation the convention follows.
        options: the options it reads, with defaults.
        needs_base: True when it cannot work without the merge base (task vectors).
        pick: for strategies that take one version whole: `ours`, `theirs` or `base`. Such a
            strategy reuses that version's stored entry, reads no tensor, and works for any dtype.
        side_inputs: kinds of per-side tensors it reads besides the parameter (`fisher`); the
            caller passes them to `merge` as `inputs={kind: [one array per side]}`, each of the
            parameter's shape and compute dtype.
    """

    name: str = ""
    summary: str = ""
    reference_url: str = ""
    options: tuple[OptionDef, ...] = ()
    needs_base: bool = False
    pick: str | None = None
    side_inputs: tuple[str, ...] = ()

    @abstractmethod
    def merge(
        self,
        base: np.ndarray | None,
        sides: Sequence[np.ndarray],
        weights: Sequence[float],
        options: Mapping[str, Any],
        *,
        name: str = "",
        inputs: Mapping[str, Sequence[np.ndarray]] | None = None,
    ) -> np.ndarray:
        """The merged values of parameter `name`.

        Args:
            base: the merge base's values (None when the parameter is new on both sides).
            sides: the changed versions, ours first; all of one shape and float dtype.
            weights: one weight per side, as given (each strategy says how it uses them).
            options: parsed options, every declared one present (defaults filled in).
            name: the parameter's name (seeds random strategies).
            inputs: the per-side tensors named in `side_inputs` (None when it declares none).

        Raises:
            ConfigError: an option value is out of range for this strategy.
        """

    def all_options(self) -> tuple[OptionDef, ...]:
        return (*self.options, WEIGHTS)

    def linear_coefficients(
        self, weights: Sequence[float], options: Mapping[str, Any]
    ) -> list[float] | None:
        """c_i such that this strategy's result is base + sum_i c_i (theta_i - base) for every
        input, or None when it is not such a linear map. Merges of low-rank updates use it
        to stay low-rank (git_theta/merges/low_rank.py)."""
        return None


def parse_options(strategy: MergeStrategy, raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed options for `strategy` from strings ("density" -> "0.5"), defaults filled in.

    Raises:
        ConfigError: an unknown option, or a value of the wrong type.
    """
    defs = {d.name: d for d in strategy.all_options()}
    unknown = sorted(set(raw) - set(defs))
    if unknown:
        valid = ", ".join(sorted(defs))
        raise ConfigError(
            f"merge strategy {strategy.name!r} has no option {unknown[0]!r} (its options: {valid})"
        )
    out: dict[str, Any] = {}
    for key, d in defs.items():
        if key not in raw:
            out[key] = d.default
            continue
        try:
            out[key] = d.type(raw[key])
        except ValueError:
            raise ConfigError(
                f"merge option {key}={raw[key]!r} is not a valid {d.type.__name__}"
            ) from None
    return out


def split_options(text: str) -> dict[str, str]:
    """`"density=0.5 lambda=1.0"` -> {"density": "0.5", "lambda": "1.0"}."""
    out: dict[str, str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"merge option {item!r} is not of the form key=value")
        out[key] = value
    return out


def resolve_weights(options: Mapping[str, Any], n: int, default: float = 1.0) -> list[float]:
    """The per-side weights from the `weights` option, `default` each when not given."""
    text = str(options.get("weights") or "")
    if not text:
        return [default] * n
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"merge option weights={text!r} is not a list of numbers") from None
    if len(weights) != n:
        raise ConfigError(f"merge option weights={text!r} needs {n} values, one per side")
    return weights


def check_range(options: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = float(options[key])
    if not low <= value <= high:
        raise ConfigError(f"merge option {key}={value} must be between {low} and {high}")
    return value
