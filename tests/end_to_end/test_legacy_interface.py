"""git-theta 0.2's users at home (issue 19, items 9, 11, 12): its environment variables, merge
action names and `install --scope`; the resolver's `context` command, and prompts that never
swallow the next command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from git_theta.git.config import installed_config
from testing.gitenv import GitEnv
from tests.end_to_end.test_interactive_resolver import PROMPT, conflicted, finish, spawn  # noqa: F401
from tests.end_to_end.test_merge import F32, Branches, branches, edited  # noqa: F401

# ---- 11. merge action names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected_a"),
    [
        ("take_us", F32["a"] + 2),
        ("take_them", F32["a"] + 4),
        ("take_original", F32["a"]),
        ("average-ours-theirs", F32["a"] + 3),
        ("avg-ab", F32["a"] + 3),
        ("average-ours-original", F32["a"] + 1),
        ("average-theirs-original", F32["a"] + 2),
        ("average-all", F32["a"] + 2),
    ],
)
def test_git_theta_0_2_merge_action_names(branches, name, expected_a):  # noqa: F811
    branches.diverge(edited(a=F32["a"] + 2), edited(a=F32["a"] + 4))
    proc = branches.merge(env={"GIT_THETA_MERGE_STRATEGY": name})
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(branches.tensors()["a"], expected_a, rtol=1e-6)


# ---- 11. environment variables and install --scope ------------------------------------------


def test_update_type_variable_applies_to_plain_git_add(scratch):
    scratch.commit("v1")
    scratch.write(scratch.edited("embed.weight"))
    scratch.env.run(
        ["git", "add", "model.safetensors"],
        cwd=scratch.repo,
        env={"GIT_THETA_UPDATE_TYPE": "sparse"},
    )
    entry = json.loads(scratch.git("cat-file", "-p", ":model.safetensors"))["params"]
    assert entry["embed.weight"]["updates"][0]["type"] == "sparse"


def test_checkpoint_type_variable_names_the_format(scratch):
    scratch.commit("v1")
    scratch.write(scratch.edited("embed.weight"))
    proc = scratch.env.run(
        ["git", "add", "model.safetensors"],
        cwd=scratch.repo,
        env={"GIT_THETA_CHECKPOINT_TYPE": "tensorflow"},
        check=False,
    )
    assert proc.returncode != 0
    assert "tensorflow" in proc.stderr.decode()  # the format it names is used, and refused


def test_update_data_variable_is_not_silently_ignored(scratch):
    proc = scratch.env.run(
        ["git-theta", "ls-files"], cwd=scratch.repo, env={"GIT_THETA_UPDATE_DATA_PATH": "x.pt"}
    )
    assert "GIT_THETA_UPDATE_DATA_PATH (git-theta 0.2's side file) is not read" in (
        proc.stderr.decode()
    )


def test_install_scope_repository_is_local(tmp_path):
    env = GitEnv(tmp_path, install=False)
    repo = env.init_repo()
    env.theta("install", "--scope", "repository", cwd=repo)
    local = env.git("config", "--local", "--get", "filter.theta.process", cwd=repo)
    assert local.strip() == installed_config()["filter.theta.process"]
    assert (
        env.git("config", "--global", "--get", "filter.theta.process", cwd=repo, check=False) == ""
    )
    env.theta("install", "--scope", "global", cwd=repo)
    assert env.git("config", "--global", "--get", "filter.theta.process", cwd=repo).strip()


# ---- 9 and 12: the interactive resolver ----------------------------------------------------


def test_context_names_ours_and_theirs_with_their_commits(conflicted):  # noqa: F811
    child = spawn(conflicted, "git", "merge", "--no-edit", "theirs")
    child.expect_exact(PROMPT)
    child.sendline("context")
    child.expect(r"ours  : [0-9a-f]+ ours \(main\)")
    child.expect(r"theirs: [0-9a-f]+ theirs \(theirs\)")
    child.expect(r"base  : [0-9a-f]+ base")
    child.expect_exact(PROMPT)
    child.sendline("q")
    assert finish(child) == 1


def test_a_command_at_a_question_prompt_runs_as_a_command(conflicted):  # noqa: F811
    child = spawn(conflicted, "git", "merge", "--no-edit", "theirs")
    child.expect_exact(PROMPT)
    child.sendline("1 average")
    child.expect_exact("change (key=value ..., Enter keeps these): ")
    child.sendline("list")  # not an option: the defaults stay, and the table is shown
    child.expect_exact("average: a (2 left)")
    child.expect(r"a\s+\[2, 3\]")
    child.expect_exact(PROMPT)
    child.sendline("all take-theirs")
    child.expect_exact("[q]uit: ")
    child.sendline("list")  # at the yes/no prompt: shown, not taken as "no"
    child.expect(r"take-theirs")
    child.expect_exact(PROMPT)
    child.sendline("done")
    child.expect_exact("[q]uit: ")
    child.sendline("y")
    child.expect_exact("model.safetensors: merged")
    assert finish(child) == 0
    np.testing.assert_allclose(conflicted.tensors()["a"], F32["a"] + 3)


# ---- 11. git theta add --update-data with 0.2's side-file layout ----------------------------


def test_update_data_low_rank_side_file_on_the_committed_base(scratch):
    from safetensors.numpy import save_file

    scratch.commit("v1")
    w = scratch.params["layers.0.attn.weight"][1]
    rng = np.random.default_rng(5)
    r = rng.standard_normal((32, 2)).astype(np.float32)
    c = rng.standard_normal((2, 32)).astype(np.float32)
    side = scratch.env.root / "update.safetensors"
    save_file({"layers.0.attn.weight/R": r, "layers.0.attn.weight/C": c}, str(side))
    out = scratch.env.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--update-data",
        str(side),
        cwd=scratch.repo,
    ).stdout.decode()
    assert "1 low-rank" in out and "rewrote model.safetensors" in out
    from testing.checkpoints import read_safetensors

    got = read_safetensors(scratch.path)["layers.0.attn.weight"][1]
    np.testing.assert_allclose(got, w + r @ c, rtol=1e-5, atol=1e-5)
    assert scratch.git("status", "--porcelain") == "M  model.safetensors\n"
    entry = json.loads(scratch.git("cat-file", "-p", ":model.safetensors"))["params"]
    assert entry["layers.0.attn.weight"]["updates"][0]["type"] == "low-rank"


def test_update_data_ia3_side_file_nested_in_a_pt(scratch):
    torch = pytest.importorskip("torch")
    scratch.commit("v1")
    w = scratch.params["layers.1.attn.weight"][1]
    scale = np.linspace(0.5, 1.5, 32).astype(np.float32)
    side = scratch.env.root / "update.pt"
    torch.save({"layers.1.attn.weight": {"ia3": torch.from_numpy(scale)}}, side)
    scratch.env.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "ia3",
        "--update-data",
        str(side),
        cwd=scratch.repo,
    )
    from testing.checkpoints import read_safetensors

    got = read_safetensors(scratch.path)["layers.1.attn.weight"][1]
    np.testing.assert_allclose(got, w * scale, rtol=1e-6)  # 0.2 broadcast: columns


def test_update_data_with_a_foreign_layout_names_the_tensor(scratch):
    from safetensors.numpy import save_file

    scratch.commit("v1")
    side = scratch.env.root / "update.safetensors"
    save_file({"layers.0.attn.weight/lora_A": np.zeros((2, 32), np.float32)}, str(side))
    proc = scratch.env.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--update-data",
        str(side),
        cwd=scratch.repo,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"git-theta: error: {side}: tensor 'layers.0.attn.weight/lora_A' is not <param>/C and "
        "<param>/R (git-theta 0.2's low-rank layout)\n"
    )


# ---- 7. during a conflict, git theta diff shows ours against theirs -------------------------


def test_diff_during_a_conflict_compares_ours_and_theirs(branches):  # noqa: F811
    branches.diverge(edited(a=F32["a"] + 2, b=F32["b"] + 1), edited(a=F32["a"] + 4))
    assert branches.merge().returncode == 1
    plain = branches.git("diff").stdout.decode()
    assert plain.startswith("diff --cc model.safetensors")  # git's own: a header only
    out = branches.env.theta("diff", cwd=branches.repo).stdout.decode().splitlines()
    assert out[0] == (
        "# model.safetensors is conflicted: ours (:2) -> theirs (:3); changed on both sides: a"
    )
    assert out[1] == "diff --git-theta a/model.safetensors b/model.safetensors"
    rows = {line.split()[1]: line for line in out[4:]}
    assert set(rows) == {"a", "b"} and rows["a"].split()[0] == "modified"


def test_merge_progress_only_when_asked_or_at_a_terminal(branches):  # noqa: F811
    branches.diverge(edited(a=F32["a"] + 2), edited(a=F32["a"] + 4))
    shown = branches.merge("-c", "theta.merge.strategy=average", env={"GIT_THETA_PROGRESS": "1"})
    assert shown.returncode == 0
    assert "git-theta: merging model.safetensors" in shown.stderr.decode()
    branches.git("reset", "-q", "--hard", "HEAD~1")
    quiet = branches.merge("-c", "theta.merge.strategy=average")
    assert "git-theta: merging" not in quiet.stderr.decode()


def test_update_data_sparse_csr_side_file(scratch):
    from safetensors.numpy import save_file

    from testing.checkpoints import read_safetensors

    scratch.commit("v1")
    w = scratch.params["norm.scale"][1]
    side = scratch.env.root / "update.safetensors"
    delta = np.array([0.5, -1.25], np.float32)
    save_file(
        {
            "norm.scale/data": delta,
            "norm.scale/indices": np.array([3, 17], np.int32),
            "norm.scale/indptr": np.array([0, 2], np.int32),
            "norm.scale/shape": np.array([32], np.int64),
        },
        str(side),
    )
    out = scratch.env.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "sparse",
        "--update-data",
        str(side),
        cwd=scratch.repo,
    ).stdout.decode()
    assert "1 sparse" in out and "rewrote model.safetensors" in out
    got = read_safetensors(scratch.path)["norm.scale"][1]
    expected = w.copy()
    expected[[3, 17]] += delta
    np.testing.assert_array_equal(got, expected)
    entry = json.loads(scratch.git("cat-file", "-p", ":model.safetensors"))["params"]
    assert entry["norm.scale"]["updates"][0]["type"] == "sparse"
    assert entry["norm.scale"]["updates"][0]["count"] == 2
    assert scratch.git("status", "--porcelain") == "M  model.safetensors\n"


def test_the_conflict_message_points_to_git_theta_diff(branches):  # noqa: F811
    branches.diverge(edited(a=F32["a"] + 2), edited(a=F32["a"] + 4))
    err = branches.merge().stderr.decode()
    assert "; `git theta diff` compares ours and theirs" in err
