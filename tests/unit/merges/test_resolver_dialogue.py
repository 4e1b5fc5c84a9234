"""The resolver's dialogue, driven by a scripted terminal on metadata in a temp store."""

from __future__ import annotations

import numpy as np

from git_theta.compute import to_compute
from git_theta.merges.engine import FileMerge
from git_theta.metadata import Metadata, ParamEntry
from git_theta.resolver import resolve_interactively
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash


class Script:
    """A Terminal that answers from a list and records what was shown."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.shown: list[str] = []

    def write(self, text: str) -> None:
        self.shown.append(text)

    def read_line(self, prompt: str) -> str | None:
        self.shown.append(prompt)
        return self.answers.pop(0) if self.answers else None

    @property
    def text(self) -> str:
        return "".join(self.shown)


def put(store: ObjectStore, array: np.ndarray) -> ParamEntry:
    t = RawTensor.from_numpy(array)
    return ParamEntry(t.dtype, t.shape, content_hash(t.data), store.put(encode_object(t)))


def file_merge(tmp_path) -> FileMerge:
    store = ObjectStore(tmp_path)
    base = np.zeros(4, np.float32)

    def m(delta: float, step: int) -> Metadata:
        return Metadata(
            "safetensors",
            None,
            {
                "layer.0.w": put(store, base + delta),
                "layer.1.w": put(store, base - delta),
                "step": put(store, np.array([step], np.int64)),
            },
        )

    return FileMerge("m.safetensors", m(0, 0), [m(1, 1), m(3, 2)], store)


def values(fm: FileMerge, meta: Metadata, name: str) -> np.ndarray:
    return to_compute(fm.store.load_tensor(meta.params[name].object))


def test_pattern_skips_what_it_cannot_merge_then_all_remaining(tmp_path):
    fm = file_merge(tmp_path)
    term = Script("* average", "", "all take-ours", "y")
    result = resolve_interactively(fm, term)
    assert result is not None and not result.unresolved
    assert "skipped step: I64 values are not merged numerically; pick a side" in term.text
    assert "average: layer.0.w, layer.1.w (1 left)" in term.text
    assert "take-ours: step (0 left)" in term.text
    np.testing.assert_array_equal(values(fm, result.metadata, "layer.0.w"), np.full(4, 2.0))
    assert result.metadata.params["step"] == fm.sides[0].params["step"]


def test_bad_input_is_explained_and_asked_again(tmp_path):
    fm = file_merge(tmp_path)
    term = Script(
        "9 average",
        "1 nope",
        "1-2 ties",
        "density=2",  # out of range, found when merging: reported, then chosen again
        "done",
        "3 take-theirs",
        "n",
        "done",
        "y",
        "1-2 ties density=0.5",
        "y",
    )
    result = resolve_interactively(fm, term)
    assert result is not None
    assert "there is no row 9 (rows 1-3)" in term.text
    assert "unknown merge strategy 'nope'" in term.text
    assert "1 parameter(s) have no strategy yet: step" in term.text
    assert "git-theta: merge option density=2.0 must be between 1e-09 and 1.0" in term.text
    # ties at density 0.5 keeps the first half of equal-magnitude entries: disjoint mean 2.
    np.testing.assert_array_equal(values(fm, result.metadata, "layer.0.w"), [2.0, 2.0, 0, 0])


def test_eof_aborts(tmp_path):
    term = Script("1 average", None)
    assert resolve_interactively(file_merge(tmp_path), term) is None
    assert "aborted; the merge stays conflicted" in term.text
