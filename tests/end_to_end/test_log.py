"""`git theta log`: each commit's per-parameter diff, as `git theta diff C^ C` prints it."""

from __future__ import annotations


def test_log_prints_each_commit_that_changed_a_checkpoint(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("norm.scale"))
    (scratch.repo / "notes.txt").write_text("not a checkpoint\n")
    scratch.git("add", "notes.txt")
    scratch.git("commit", "-q", "-m", "notes only")
    scratch.commit("v3", scratch.edited("layers.0.attn.weight", delta=0.5))
    head = scratch.git("rev-parse", "HEAD").strip()

    out = scratch.env.theta("log", cwd=scratch.repo).stdout.decode()
    commits = [line.split()[1] for line in out.splitlines() if line.startswith("commit ")]
    assert len(commits) == 3 and commits[0] == head  # newest first; "notes only" skipped
    assert "notes only" not in out
    v3 = out.split("commit ")[1]
    expected = scratch.env.theta("diff", "HEAD^", "HEAD", cwd=scratch.repo).stdout.decode()
    summary = expected.splitlines()[1]
    assert summary.startswith("model.safetensors: 1 modified") and summary in v3
    assert "modified  layers.0.attn.weight" in v3
    assert "added" in out.split("commit ")[3]  # the first commit adds every parameter

    one = scratch.env.theta("log", "-n", "1", cwd=scratch.repo).stdout.decode()
    assert one.count("commit ") == 1 and "layers.0.attn.weight" in one
    ranged = scratch.env.theta("log", "HEAD~3..HEAD~1", cwd=scratch.repo).stdout.decode()
    assert ranged.count("\ncommit ") + ranged.startswith("commit ") == 1
    assert "norm.scale" in ranged


def test_log_limits_to_paths_and_reports_bad_revisions(scratch):
    scratch.commit("v1")
    out = scratch.env.theta("log", "--", "other.safetensors", cwd=scratch.repo).stdout
    assert out == b""
    bad = scratch.env.theta("log", "nope", cwd=scratch.repo, check=False)
    assert bad.returncode == 1
    assert bad.stderr.decode().strip() == "git-theta: error: bad revision 'nope'"
