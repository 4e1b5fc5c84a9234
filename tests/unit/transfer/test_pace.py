"""Deadlines and minimum rates (pace.py), their git config (options.py), and what of a server's
words reaches a message (redact.py)."""

from __future__ import annotations

import pytest

from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.pace import Pace, TooSlow, format_bytes
from git_theta.transfer.redact import clean_text, strip_url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


OPTIONS = TransferOptions(timeout=60.0, min_rate=1024, rate_window=30.0)


def test_a_healthy_multi_gb_transfer_is_never_cut():
    clock = Clock()
    size = 5 << 30
    pace = Pace(TransferOptions(), size, clock=clock)  # the defaults
    # 5 GiB at 2 MiB/s, in 1 MiB chunks, after a server that took 25 s to start sending.
    clock.now += 25
    for _ in range(size >> 20):
        clock.now += 0.5
        pace.advance(1 << 20)
    assert pace.remaining() > 0


def test_the_deadline_grows_with_the_size():
    assert OPTIONS.deadline(0) == 60.0
    assert OPTIONS.deadline(10 << 20) == 60.0 + 10 * 1024
    defaults = TransferOptions()
    assert defaults.deadline(10 << 30) > 100 * 24 * 3600  # 10 GiB: far beyond any healthy pace


def test_a_trickle_is_cut_after_one_window():
    clock = Clock()
    pace = Pace(OPTIONS, 1 << 20, clock=clock)
    for _ in range(29):  # a byte a second: fine while the first window is not over
        clock.now += 1
        pace.advance(1)
    clock.now += 1.5
    with pytest.raises(TooSlow) as info:
        pace.advance(1)
    assert str(info.value) == (
        "too slow: 1 B/s over the last 30 s (below theta.transfer.minRate = 1.0 KiB/s)"
    )


def test_the_rate_is_measured_over_the_last_window_not_since_the_start():
    clock = Clock()
    pace = Pace(OPTIONS, 1 << 30, clock=clock)
    for _ in range(100):  # 100 s at 100 KiB/s
        clock.now += 1
        pace.advance(100 << 10)
    with pytest.raises(TooSlow):  # then 40 s of nearly nothing: the average would hide it
        for _ in range(40):
            clock.now += 1
            pace.advance(10)


def test_a_new_attempt_measures_afresh_but_keeps_the_deadline():
    clock = Clock()
    pace = Pace(OPTIONS, 0, clock=clock)
    clock.now += 45
    pace.start_attempt()
    clock.now += 10
    pace.advance(0)  # within the new attempt's first window
    assert pace.remaining() == pytest.approx(5.0)
    assert pace.socket_timeout() == pytest.approx(5.0)
    clock.now += 6
    with pytest.raises(TooSlow, match=r"^not done within 60 s \(theta.transfer.timeout \+ size"):
        pace.advance(1)
    assert pace.silence_reason() == pace.deadline_reason()


def test_silence_is_reported_with_the_window_and_rate():
    pace = Pace(OPTIONS, 0, clock=Clock())
    assert pace.silence_reason() == (
        "too slow: nothing moved for 30 s (below theta.transfer.minRate = 1.0 KiB/s)"
    )


def test_format_bytes():
    assert [format_bytes(n) for n in (0, 1023, 1024, 3 << 20, 5 << 40)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "3.0 MiB",
        "5120.0 GiB",
    ]


@pytest.fixture
def repo(gitenv):
    return Repo(gitenv.init_repo())


def test_options_from_git_config(repo, gitenv):
    assert TransferOptions.from_config(repo) == TransferOptions()
    for key, value in [
        ("theta.transfer.timeout", "2.5"),
        ("theta.transfer.minRate", "64k"),
        ("theta.transfer.rateWindow", "10"),
    ]:
        gitenv.git("config", key, value, cwd=repo.toplevel)
    options = TransferOptions.from_config(repo)
    assert (options.timeout, options.min_rate, options.rate_window) == (2.5, 64 << 10, 10.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("theta.transfer.timeout", "soon", "git config theta.transfer.timeout = 'soon' is not a"),
        ("theta.transfer.timeout", "0", "must be a positive number of seconds"),
        ("theta.transfer.rateWindow", "-1", "must be a positive number of seconds"),
        ("theta.transfer.rateWindow", "inf", "must be a positive number of seconds"),
        ("theta.transfer.minRate", "fast", "must be a positive number of bytes per second"),
        ("theta.transfer.minRate", "0", "must be a positive number of bytes per second"),
    ],
)
def test_bad_option_values_are_one_line(repo, gitenv, key, value, message):
    gitenv.git("config", key, value, cwd=repo.toplevel)
    with pytest.raises(ConfigError, match=message):
        TransferOptions.from_config(repo)


def test_server_text_becomes_one_clean_line():
    text = "line one\nline two\r\x1b[2J\x1b]0;title\x07 see https://me:pw@host/x\u2028end " * 20
    cleaned = clean_text(text, secrets=["pw-long"])
    assert cleaned.startswith("line one line two see https://***@host/x end line one")
    assert len(cleaned) == 200 and cleaned.endswith("...")
    assert clean_text("token abcd1234 leaked", secrets=["abcd1234"]) == "token *** leaked"
    assert clean_text("lone \udc80 surrogate").isprintable()


def test_urls_lose_userinfo_query_and_fragment():
    assert strip_url("https://u:p@h.example:8443/a/b?X-Amz-Signature=s#f") == (
        "https://h.example:8443/a/b"
    )
    assert strip_url("http://[::1]:9/x") == "http://[::1]:9/x"
    assert strip_url("https://u@h/a?b", path=False) == "https://h"
    assert strip_url("http://[::1") == "(an invalid URL)"
