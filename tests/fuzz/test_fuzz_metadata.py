"""Hostile metadata, as a cloned repository can hold it: object ids that are paths (a sentinel
file outside the repository, /etc/passwd, git's own stdin), references with extra keys,
huge sizes and shapes, deep nesting, names that are not text. Decoding accepts only
metadata whose every object reference is 64 lowercase hex digits; smudge checks out the
recorded bytes or fails in one line, never reading outside the store or hanging."""

from __future__ import annotations

import io
import json
import re
import subprocess
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta import metadata as md
from git_theta.errors import GitThetaError, MetadataError
from git_theta.metadata import Metadata, ParamEntry
from git_theta.smudge import PassThrough
from git_theta.store import encode_object
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates.rebuild import rebuild
from testing.fuzzing import (
    assert_clean_stderr,
    assert_one_line,
    examples,
    package_env,
    run_with_timeout,
    slow,
    time_limit,
)
from testing.mutations import (
    HUGE_DIGITS,
    SENTINEL,
    SENTINEL_RELATIVE,
    Blob,
    HostileRef,
    deep_json,
    dump_json,
    hostile_ints,
    hostile_json,
    hostile_names,
    hostile_oids,
    mutated,
    resolve_oid,
)

PATH = "model.safetensors"
_OID = re.compile(r"[0-9a-f]{64}")


def _f32(rng: np.random.Generator, *shape: int) -> RawTensor:
    return RawTensor("F32", shape, rng.standard_normal(shape).astype("<f4").tobytes())


class Legit:
    """A metadata file with every update type, its objects in the sandbox's store, and the
    checkpoint it checks out as."""

    def __init__(self, sandbox) -> None:
        rng = np.random.default_rng(7)
        store = sandbox.store

        def put(tensor: RawTensor) -> dict[str, Any]:
            return store.put(encode_object(tensor)).to_json()

        def entry(base: RawTensor, *updates: dict[str, Any]) -> ParamEntry:
            obj = store.put(encode_object(base))
            draft = ParamEntry(base.dtype, base.shape, "", obj, tuple(updates))
            built = rebuild(draft, store.load_tensor)
            return ParamEntry(base.dtype, base.shape, content_hash(built.data), obj, updates)

        idx = RawTensor("I32", (2,), np.array([0, 5], "<i4").tobytes())
        params = {
            "a": entry(_f32(rng, 4, 4)),
            "s": entry(
                _f32(rng, 4, 4),
                {"type": "sparse", "count": 2, "indices": put(idx), "values": put(_f32(rng, 2))},
            ),
            "d": entry(_f32(rng, 2, 2), {"type": "dense", "object": put(_f32(rng, 2, 2))}),
            "l": entry(
                _f32(rng, 4, 4),
                {
                    "type": "low-rank",
                    "a": put(_f32(rng, 1, 4)),
                    "b": put(_f32(rng, 4, 1)),
                    "scale": 1.0,
                    "tolerance": 1.0,
                    "transpose": False,
                },
            ),
            "i": entry(
                _f32(rng, 4, 4),
                {"type": "ia3", "axis": 0, "tolerance": 1.0, "vector": put(_f32(rng, 4))},
            ),
        }
        self.meta = Metadata(format="safetensors", layout=None, params=params)
        self.data = md.encode(self.meta)
        self.doc = json.loads(self.data)
        with sandbox.session() as session:
            out = io.BytesIO()
            session.smudge(self.data, PATH, out)
        self.checkpoint = out.getvalue()


@pytest.fixture(scope="module")
def legit(sandbox) -> Legit:
    return Legit(sandbox)


# ---- strategies ----------------------------------------------------------------------------


def _refs(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """Key paths of every object reference in a metadata document."""
    paths = []
    for name, entry in doc["params"].items():
        # An earlier mutation may have replaced an entry, its object or its updates already.
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("object"), dict):
            paths.append(("params", name, "object"))
        updates = entry.get("updates", [])
        for i, record in enumerate(updates if isinstance(updates, list) else []):
            for key, value in record.items() if isinstance(record, dict) else ():
                if isinstance(value, dict) and "oid" in value:
                    paths.append(("params", name, "updates", i, key))
    return paths


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def hostile_docs(draw: st.DrawFn, doc: dict[str, Any], sentinel: HostileRef) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["ref", "ref", "entry", "record", "name", "top"]))
        names = list(doc["params"]) if isinstance(doc.get("params"), dict) else []
        if op == "ref" and _refs(doc):
            ref = _at(doc, draw(st.sampled_from(_refs(doc))))
            oid = draw(hostile_oids())
            ref["oid"] = resolve_oid(oid, sentinel.oid)
            if oid in (SENTINEL, SENTINEL_RELATIVE) or draw(st.booleans()):
                ref["size"] = sentinel.size  # as the attacker would: the existence check passes
            if draw(st.booleans()):
                ref[draw(hostile_names)] = 0  # no longer exactly {"oid", "size"}
            if draw(st.booleans()):
                ref["size"] = draw(hostile_ints)
        elif op == "entry" and names:
            entry = doc["params"][draw(st.sampled_from(names))]
            key = draw(st.sampled_from(["dtype", "shape", "hash", "object", "updates"]))
            entry[key] = draw(hostile_json)
        elif op == "record" and names:
            entry = doc["params"][draw(st.sampled_from(names))]
            if entry.get("updates"):
                record = draw(st.sampled_from(entry["updates"]))
                key = draw(st.sampled_from(sorted(record) + ["type", "extra"]))
                record[key] = draw(hostile_json)
        elif op == "name" and names:
            doc["params"][draw(hostile_names)] = doc["params"].pop(draw(st.sampled_from(names)))
        else:
            doc[draw(st.sampled_from(["git_theta", "format", "layout", "params"]))] = draw(
                hostile_json
            )
    return doc


def _serialize(doc: dict[str, Any], *, ascii_only: bool, depth: int) -> bytes:
    text = dump_json(doc, ascii_only=ascii_only, depth=depth)
    # Keep the magic first line, so the parse (not the cheap check) has to decide.
    return text.replace(b'{"git_theta": ', md.MAGIC, 1)


@st.composite
def hostile_metadata(draw: st.DrawFn, legit: Legit, sentinel: HostileRef) -> Blob:
    kind = draw(st.sampled_from(["doc", "doc", "bytes"]))
    if kind == "bytes":
        return draw(mutated(legit.data))
    doc = draw(hostile_docs(legit.doc, sentinel))
    depth = draw(st.sampled_from([2, 100, 100_000]))
    return Blob(_serialize(doc, ascii_only=draw(st.booleans()), depth=depth))


def _metadata(sandbox, legit):
    return hostile_metadata(legit, sandbox.sentinel_ref)


# ---- properties ----------------------------------------------------------------------------


def _all_refs(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = [value] if "oid" in value else []
        return found + [r for v in value.values() for r in _all_refs(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in _all_refs(v)]
    return []


def check_decode(data: bytes) -> Metadata | None:
    """decode either refuses in one line or returns metadata that references objects by
    64 lowercase hex digits only, and that encodes again to bytes decoding to the same."""
    with time_limit():
        try:
            meta = md.decode(data, source=PATH)
        except MetadataError as exc:
            assert_one_line(exc)
            return None
    for entry in [meta.layout, *meta.params.values()]:
        if entry is None:
            continue
        for ref in _all_refs([entry.object.to_json(), *entry.updates]):
            assert isinstance(ref["oid"], str) and _OID.fullmatch(ref["oid"]), ref
            size = ref.get("size")
            assert type(size) is int and size >= 0, ref
    again = md.encode(meta)
    assert md.encode(md.decode(again)) == again
    return meta


def check_smudge(sandbox, legit: Legit, data: bytes) -> bytes | None:
    """smudge checks out the recorded checkpoint or fails in one line; it never opens a
    file outside the store, and never writes the sentinel's bytes."""
    out = io.BytesIO()
    with time_limit(), sandbox.audit() as audit, sandbox.session() as session:
        try:
            session.smudge(data, PATH, out)
        except PassThrough:
            out.write(data)
        except GitThetaError as exc:
            assert_one_line(exc)
            out = None
    assert not audit.forbidden(), f"opened {audit.forbidden()}"
    if out is None:
        return None
    result = out.getvalue()
    assert sandbox.mark not in result, "checked out the bytes of a file outside the repository"
    try:
        same = md.decode(data) == legit.meta
    except MetadataError:
        same = False
    if same:
        assert result == legit.checkpoint
    return result


@given(data=st.data())
def test_decode_accepts_only_well_formed_references(sandbox, legit, data):
    check_decode(data.draw(_metadata(sandbox, legit), label="metadata"))


@given(data=st.data())
def test_smudge_checks_out_recorded_bytes_or_fails_in_one_line(sandbox, legit, data):
    check_smudge(sandbox, legit, data.draw(_metadata(sandbox, legit), label="metadata"))


@settings(max_examples=examples(0.5))  # two git commands a case
@given(data=st.data())
def test_hostile_metadata_in_the_index_never_blocks_adding_a_checkpoint(sandbox, legit, data):
    """Whatever blob the index holds at the path, adding a valid checkpoint there works (the
    previous version is only a hint for reusing objects) and round trips."""
    blob = data.draw(_metadata(sandbox, legit), label="metadata")
    env = sandbox.git_env()
    oid = (
        subprocess.run(
            ["git", "hash-object", "-w", "--no-filters", "--stdin"],
            cwd=sandbox.repo,
            env=env,
            input=blob,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    subprocess.run(
        ["git", "update-index", "--add", "--cacheinfo", f"100644,{oid},{PATH}"],
        cwd=sandbox.repo,
        env=env,
        check=True,
    )
    with time_limit(), sandbox.audit() as audit, sandbox.session() as session:
        meta = session.clean(io.BytesIO(legit.checkpoint), PATH)
        out = io.BytesIO()
        session.smudge(meta, PATH, out)
    assert out.getvalue() == legit.checkpoint
    assert not audit.forbidden(), f"opened {audit.forbidden()}"


# ---- through git: a hostile repository checked out ---------------------------------------


class GitEnvVars(dict):
    """The environment for git commands; printed short in a falsifying example."""

    def __repr__(self) -> str:
        return "<git environment>"


@pytest.fixture(scope="module")
def tracked(sandbox):
    env = package_env(sandbox.git_env())
    repo = sandbox.repo
    for args in (
        ["git-theta", "install", "--local"],
        ["git", "config", "user.name", "Fuzz"],
        ["git", "config", "user.email", "fuzz@example.com"],
    ):
        assert run_with_timeout(args, cwd=repo, env=env).returncode == 0
    (repo / ".gitattributes").write_text(f"{PATH} filter=theta merge=theta diff=theta -text\n")
    return GitEnvVars(env)


def check_checkout(sandbox, env, blob: bytes) -> None:
    """Commit `blob` as the metadata (as a hostile clone would have it), then check it out:
    git succeeds without the sentinel's bytes in the file, or fails with one git-theta line,
    in bounded time."""
    repo = sandbox.repo
    # Gone first: otherwise git's index refresh cleans the file of the previous case.
    (repo / PATH).unlink(missing_ok=True)
    write = run_with_timeout(
        ["git", "hash-object", "-w", "--no-filters", "--stdin"], cwd=repo, env=env, input=blob
    )
    oid = write.stdout.decode().strip()
    for args in (
        ["git", "update-index", "--add", "--cacheinfo", f"100644,{oid},{PATH}"],
        ["git", "commit", "-q", "--allow-empty", "-m", "hostile", "--no-verify"],
    ):
        done = run_with_timeout(args, cwd=repo, env=env)
        assert done.returncode == 0, done.stderr
    checkout = run_with_timeout(["git", "checkout", "HEAD", "--", PATH], cwd=repo, env=env)
    lines = assert_clean_stderr(checkout.stderr, allow_git=True)
    if checkout.returncode != 0:
        assert len(lines) == 1, checkout.stderr
    elif (repo / PATH).exists():
        assert sandbox.mark not in (repo / PATH).read_bytes()


@slow()
@given(data=st.data())
def test_checkout_of_hostile_metadata(sandbox, legit, tracked, data):
    check_checkout(sandbox, tracked, data.draw(_metadata(sandbox, legit), label="metadata"))


# ---- the attacks of issue 14, spelled out ----------------------------------------------------


def _attack(legit: Legit, sandbox, name: str) -> bytes:
    doc = json.loads(legit.data)
    sentinel = str(sandbox.sentinel)
    size = sandbox.sentinel_ref.size
    tensor = sandbox.sentinel_tensor
    if name == "dense-update-reads-a-file-outside":
        # A parameter shaped like the sentinel's tensor, whose dense update names the file.
        base = sandbox.store.put(encode_object(RawTensor("U8", tensor.shape, bytes(tensor.nbytes))))
        doc["params"]["a"] = {
            "dtype": "U8",
            "shape": list(tensor.shape),
            "hash": sandbox.sentinel_hash,
            "object": base.to_json(),
            "updates": [{"type": "dense", "object": {"oid": sentinel, "size": size, "x": 0}}],
        }
    elif name == "relative-oid-climbs-out-of-the-store":
        values = doc["params"]["s"]["updates"][0]["values"]
        values.update(oid=resolve_oid(SENTINEL_RELATIVE, sentinel), size=size, x=0)
    elif name == "oid-is-dev-stdin":
        doc["params"]["l"]["updates"][0]["a"] = {"oid": "/dev/stdin", "size": 0, "x": 0}
    elif name == "oid-with-trailing-newline":
        doc["params"]["a"]["object"]["oid"] += "\n"
    elif name == "deep-nesting":
        doc["params"]["a"]["updates"] = "\x00DEEP\x00"
    elif name == "size-of-5000-digits":
        doc["params"]["a"]["object"]["size"] = "\x00HUGE\x00"
    elif name == "lone-surrogate-name":
        doc["params"]["\ud800"] = doc["params"].pop("a")
    return Blob(_serialize(doc, ascii_only=True, depth=100_000))


ATTACKS = [
    "dense-update-reads-a-file-outside",
    "relative-oid-climbs-out-of-the-store",
    "oid-is-dev-stdin",
    "oid-with-trailing-newline",
    "deep-nesting",
    "size-of-5000-digits",
    "lone-surrogate-name",
]
assert HUGE_DIGITS and deep_json  # the markers _serialize splices in


@pytest.mark.parametrize("name", ATTACKS)
def test_known_attack_is_refused_by_decode(sandbox, legit, name):
    meta = check_decode(_attack(legit, sandbox, name))
    if name != "lone-surrogate-name":  # may be refused, or kept if it encodes again
        assert meta is None, f"decode accepted {name}"


@pytest.mark.parametrize("name", ATTACKS)
def test_known_attack_through_smudge(sandbox, legit, name):
    check_smudge(sandbox, legit, _attack(legit, sandbox, name))


@pytest.mark.parametrize("name", ["dense-update-reads-a-file-outside", "oid-is-dev-stdin"])
def test_known_attack_through_git_checkout(sandbox, legit, tracked, name):
    check_checkout(sandbox, tracked, _attack(legit, sandbox, name))
