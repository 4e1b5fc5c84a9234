"""Property: whatever an LFS server does, a download ends in the right object or one clean line.

Hypothesis draws what the hostile server (testing/hostile_lfs.py, real sockets on 127.0.0.1)
answers to the next few batch and download requests: status codes, Retry-After values,
Content-Lengths that lie, bodies short, long, endless, corrupt or empty, trickles and stalls,
redirect chains and loops, falsified batch responses. For every draw:

- the transfer gives the right bytes, or a GitThetaError whose message is one printable line;
- no other exception escapes (that would be an internal error);
- the store holds nothing but correct objects, and its tmp dir is empty;
- it ends within a bound (the deadlines are set small).

A bounded, derandomized number of examples runs in the normal test run; set
GIT_THETA_FUZZ_EXAMPLES for more (e.g. 2000 overnight).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from git_theta.errors import GitThetaError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.transfer.batch import HttpTransport
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.queue import run_transfer
from testing.gitenv import GitEnv
from testing.hostile_lfs import BatchMutation, HostileLfs, Redirect, Reply

EXAMPLES = int(os.environ.get("GIT_THETA_FUZZ_EXAMPLES", "25"))
OPTIONS = TransferOptions(
    concurrency=2, max_retries=1, max_retry_delay=0.0, timeout=2.0, min_rate=8192, rate_window=0.2
)
# Two stalls of a window per request kind, a trickle cut after its window, and slack.
BOUND_SECONDS = 5.0
BLOBS = [bytes(range(256)) * 48, b"second object " * 700]
REFS = [ObjectRef(hashlib.sha256(b).hexdigest(), len(b)) for b in BLOBS]
GOOD = {ref.oid: blob for ref, blob in zip(REFS, BLOBS, strict=True)}

# 401 is left out: it asks `git credential fill`, whose answer is the machine's, not the test's.
STATUSES = [200, 200, 200, 200, 201, 204, 400, 403, 404, 410, 422, 429, 500, 502, 503, 504]
replies = st.builds(
    Reply,
    status=st.sampled_from(STATUSES),
    retry_after=st.none() | st.sampled_from(["0", "-3", "soon", "1e9", "0.01"]),
    length=st.sampled_from(["true", "true", "absent", "huge", "promised"]),
    body=st.sampled_from(["exact", "exact", "short", "long", "endless", "corrupt", "empty"]),
    trickle=st.sampled_from([0.0, 0.0, 0.0, 0.0, 0.02]),
    trickle_bytes=st.sampled_from([1, 64]),
    stall=st.sampled_from([False] * 7 + [True]),
    silent=st.sampled_from([False] * 9 + [True]),
    redirect=st.none() | st.none() | st.sampled_from(get_args(Redirect)),
    hops=st.integers(1, 5),
    # echo_auth is left out: it tests credential masking, not what a batch answer can do.
    batch=st.none() | st.sampled_from([m for m in get_args(BatchMutation) if m != "echo_auth"]),
    times=st.none() | st.integers(1, 3),
)
plans = st.fixed_dictionaries(
    {"batch": st.lists(replies, max_size=3), "download": st.lists(replies, max_size=3)}
)


@pytest.fixture(scope="module")
def server():
    with HostileLfs() as s:
        s.objects.update(GOOD)
        yield s


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    env = GitEnv(tmp_path_factory.mktemp("fuzz-lfs"), install=False)
    return Repo(env.init_repo())


def _check_store(store: ObjectStore) -> None:
    tmp = list(store.tmp_dir.iterdir()) if store.tmp_dir.exists() else []
    assert tmp == [], tmp
    if store.objects_dir.exists():
        for path in (p for p in store.objects_dir.rglob("*") if p.is_file()):
            assert GOOD.get(path.name) == path.read_bytes(), f"corrupt object {path}"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans)
def test_any_server_behaviour_gives_the_object_or_one_line(server, repo, plan):
    server.reset()
    for kind, replies_for_kind in plan.items():
        server.set(kind, *replies_for_kind)
    with tempfile.TemporaryDirectory() as tmp:
        store = ObjectStore(Path(tmp) / "store")
        transport = HttpTransport(Endpoint("origin", server.lfs_url()), repo, OPTIONS)
        start = time.monotonic()
        try:
            run_transfer(transport, "download", REFS, store, concurrency=2)
        except GitThetaError as exc:
            message = str(exc)
            event("one-line error")
            assert message.isprintable() and message.startswith("download from origin ("), message
        else:
            event("objects fetched")
            assert all(store.get(ref) == GOOD[ref.oid] for ref in REFS)
        finally:
            transport.close()
        assert time.monotonic() - start < BOUND_SECONDS
        _check_store(store)
