"""Every benchmark (a script in benchmarks/) runs once at a tiny size: proof
that it still works, not a timing (speed is reported by the benchmarks,
never asserted)."""

import json
import math
import statistics
import subprocess
import sys

import pytest

from conftest import BENCHMARKS, benchmark

SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "measure")


def bench(tmp_path, script, *args):
    """``benchmarks/SCRIPT.py ARGS --json FILE``, run in this process: its figures, printed and written."""
    out = tmp_path / "figures.json"
    printed = benchmark(script).main([*args, "--json", str(out)])
    assert json.loads(out.read_text())["benchmark"] == printed["benchmark"]
    assert printed["machine"]["threads"] >= 1
    return printed


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_explains_its_options(script, capsys):
    with pytest.raises(SystemExit) as done:
        benchmark(script).main(["--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage:") and "--json" in printed and "docs/" in printed  # where its figures are


def test_train_step_against_diffusers(tmp_path, capsys):
    bench(tmp_path, "train_step", "--run", "cpu", "--batch-size", "2", "--repeats", "1")
    result = json.loads((tmp_path / "figures.json").read_text())
    ours, peer = result["contenders"]["ours"], result["contenders"]["diffusers"]
    assert ours["parameters"] < peer["parameters"]  # diffusers' DiT has a timestep MLP in every block
    assert 0 < ours["flops_per_step"] <= peer["flops_per_step"]
    ratio = statistics.median(peer["seconds"]) / statistics.median(ours["seconds"])  # samples/s at the same batch
    assert result["ratios"]["eager"] == pytest.approx(ratio)
    assert f"ours / diffusers (eager): {ratio:.2f}x" in capsys.readouterr().out


def test_preprocess_against_librosa(tmp_path):
    result = bench(tmp_path, "preprocess", "--run", "cpu", "--songs", "1", "--max-clips-per-song", "3",
                   "--repeats", "1")
    assert result["clips"] == 3
    assert result["max_relative_disagreement"] < 1e-3  # the same transform, computed twice
    assert result["contenders"]["ours (load_music_dataset)"]["audio_seconds"] > 0


def test_sampling_time_and_quality_per_step_count(tmp_path, capsys):
    result = bench(tmp_path, "sampling", "--run", "cpu", "--clips", "4", "--steps", "2", "3", "--train-steps", "4",
                   "--timesteps", "20", "--seeds", "0", "1")
    rows = result["contenders"]
    assert list(rows) == ["DDIM-2", "DDIM-3", "DPM++-2", "DPM++-3", "DDIM-20", "DDPM-20"]  # DDIM-50 is DDIM-T here
    assert result["split"]["held_out"] > 0 and result["reference"] == "DDIM-20"
    assert rows["DDPM-20"]["speedup_vs_ddpm"] == 1.0 and rows["DPM++-3"]["model_calls"] == 3
    for row in rows.values():
        assert row["seconds_per_clip"] > 0 and len(row["seconds"]) == 2
        for embedding in ("features", "judge"):
            assert len(row["fd"][embedding]["seeds"]) == 2 and math.isfinite(row["fd"][embedding]["mean"])
        for report in row["quality"]:
            assert all(fd["floor"] < fd["ceiling"] for fd in report["fd"].values())
    assert result["fd_noise"] >= 0 and math.isfinite(result["as_good_below"])
    ddim = result["fewest_steps"]["ddim"]  # DDIM-T is always as good as itself
    assert ddim is not None and ddim["steps"] <= 20 and ddim["calls_vs_reference"] == ddim["steps"] / 20
    assert "fewest steps as good as DDIM-20" in capsys.readouterr().out


def test_fewest_steps_are_as_good_as_ddim_50_from_there_on():
    compare = benchmark("sampling").compare

    def row(sampler, steps, *fd):
        return {"sampler": sampler, "steps": steps, "model_calls": steps,
                "fd": {"features": {"mean": sum(fd) / len(fd), "seeds": list(fd)}}}

    rows = {"DDIM-5": row("ddim", 5, 0.5, 0.5), "DDIM-10": row("ddim", 10, 0.33, 0.33),
            "DDIM-50": row("ddim", 50, 0.31, 0.29),  # spread 0.02
            "DPM++-5": row("dpm++", 5, 0.33, 0.33),  # within the noise, but 10 steps are not
            "DPM++-10": row("dpm++", 10, 0.4, 0.4), "DPM++-50": row("dpm++", 50, 0.2, 0.2),
            "DDPM-1000": row("ddpm", 1000, 0.26, 0.30)}  # spread 0.04: the FD noise
    result = compare(rows, ("ddim", "dpm++"), "DDIM-50", "DDPM-1000")
    assert result["fd_noise"] == pytest.approx(0.04) and result["as_good_below"] == pytest.approx(0.34)
    assert result["fewest_steps"]["ddim"] == {"steps": 10, "model_calls": 10, "calls_vs_reference": 0.2}
    assert result["fewest_steps"]["dpm++"]["steps"] == 50

def test_seed_workload_projection(tmp_path):
    result = bench(tmp_path, "seed_workload", "--run", "cpu", "--steps", "2", "--batch-size", "2",
                   "--data", "demo", "--sample-songs", "1")
    assert result["clip_count"] == round(710 * result["clips_per_song"])
    assert result["total_steps"] == 5 * (result["clip_count"] // 2)
    assert result["projected"] and result["measured_steps"] == 2 and result["seconds"] > 0


def test_fast_path_alternatives(tmp_path, capsys):
    bench(tmp_path, "fast_path", "--run", "cpu", "--batch-size", "2", "--repeats", "1")
    groups = json.loads((tmp_path / "figures.json").read_text())["groups"]
    lines = capsys.readouterr().out.splitlines()
    assert len(groups) == 4
    for group, figures in groups.items():
        (ours, ours_t), (alternative, alternative_t) = figures["seconds"].items()
        speedup = statistics.median(alternative_t) / statistics.median(ours_t)
        assert figures["speedup"] == pytest.approx(speedup)
        line = next(line for line in lines if line.startswith(f"  {group}: "))
        assert f" {ours} " in line and f" vs {alternative} " in line and line.endswith(f": {speedup:.2f}x")


def test_quality_of_a_variant_and_its_checkpoint_scored_again(tmp_path):
    """The benchmark trains, samples and scores a variant; `evaluate` on the
    checkpoint it left scores the same samples the same (same seed)."""
    from musicdiff_nb.__main__ import main as cli

    runs = tmp_path / "runs"
    result = bench(tmp_path, "quality", "--variants", "baseline", "--minutes", "0.02", "-n", "4",
                   "--sample-steps", "3", "--out", str(runs))
    row = result["rows"][0]
    assert row["variant"] == "baseline" and row["steps"] > 0 and row["n"] == 4
    for embedding in ("features", "judge"):
        fd = row["fd"][embedding]
        assert fd["floor"] < fd["ceiling"] and math.isfinite(fd["normalised"])
    cli(["evaluate", "--checkpoint", str(runs / "baseline" / "last.pt"), "-n", "4", "--steps", "3",
         "--json", str(tmp_path / "again.json")])
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["fd"]["features"]["fd"] == pytest.approx(row["fd"]["features"]["fd"], rel=1e-4)


def test_time_to_quality_against_a_diffusers_pipeline(tmp_path, capsys):
    minutes_to = benchmark("time_to_quality").minutes_to
    result = bench(tmp_path, "time_to_quality", "--minutes", "0.01", "0.02", "-n", "4", "--sample-steps", "2",
                   "--threshold", "2", "--out", str(tmp_path / "runs"))
    for name in ("ours", "diffusers"):
        rows = result["contenders"][name]["rows"]
        assert [r["minutes"] for r in rows] == [0.01, 0.02]
        assert 0 < rows[0]["steps"] <= rows[1]["steps"] and rows[1]["seconds"] >= 0.6  # the budget was spent
        assert all(math.isfinite(r["fd"]) for r in rows)
        assert (tmp_path / "runs" / name / "0.02min.pt").is_file()
        assert result["contenders"][name]["minutes_to_threshold"] == minutes_to(rows, 2)
    assert "minutes to FD <= 2" in capsys.readouterr().out


def test_minutes_to_threshold_is_the_first_mark_at_or_below_it():
    minutes_to = benchmark("time_to_quality").minutes_to

    rows = [{"minutes": 2, "fd": 0.5}, {"minutes": 5, "fd": 0.3}, {"minutes": 10, "fd": 0.2}]
    assert minutes_to(rows, 0.3) == 5 and minutes_to(rows, 0.6) == 2 and minutes_to(rows, 0.1) is None


def test_speedup_to_the_threshold_is_a_lower_bound_when_the_peer_never_reaches_it():
    speedup = benchmark("time_to_quality").speedup

    def result(ours, peer):
        return {"marks": (2, 5, 20), "contenders": {"ours": {"minutes_to_threshold": ours},
                                                    "diffusers": {"minutes_to_threshold": peer}}}
    assert speedup(result(5, 20)) == {"speedup": 4.0, "speedup_is_lower_bound": False}
    assert speedup(result(5, None)) == {"speedup": 4.0, "speedup_is_lower_bound": True}
    assert speedup(result(None, 5))["speedup"] is None


def test_streaming_memory_and_speed_against_memory(tmp_path, capsys):
    result = bench(tmp_path, "streaming", "--steps", "3", "--sizes", "1", "2", "--repeats", "1", "--songs", "1",
                   "--max-clips-per-song", "8", "--batch-size", "4")
    rows = result["rows"]
    assert list(rows) == ["streaming 1x", "streaming 2x", "in memory 1x"]
    assert rows["streaming 2x"]["clips"] == 2 * rows["streaming 1x"]["clips"] == 2 * rows["in memory 1x"]["clips"]
    assert rows["streaming 2x"]["disk_bytes"] > rows["streaming 1x"]["disk_bytes"] > 0
    for row in rows.values():
        assert row["steps_per_s"] > 0 and len(row["runs_steps_per_s"]) == 1
        assert row["peak_rss_bytes"] > 100 * 2**20  # at least what torch takes to load
        assert row["peak_anonymous_pss_bytes"] > 0 and row["peak_file_pss_bytes"] > 0
    ratio = rows["streaming 1x"]["steps_per_s"] / rows["in memory 1x"]["steps_per_s"]
    assert result["steps_per_s_ratio"] == pytest.approx(ratio)
    assert f"streaming / in memory (1x, median of 1): {ratio:.3f}" in capsys.readouterr().out
    cpu = rows["streaming 1x"]["cpu_seconds_per_step"] / rows["in memory 1x"]["cpu_seconds_per_step"]
    assert rows["in memory 1x"]["cpu_seconds_per_step"] > 0 and result["cpu_per_step_ratio"] == pytest.approx(cpu)


def test_profile_run_as_a_script(tmp_path):
    """`python benchmarks/profile_step.py ...`, as a user runs it: a script that imports its neighbours."""
    out = tmp_path / "profile.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "profile_step.py"), "--run", "cpu", "--batch-size", "2",
                           "--repeats", "1", "--json", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    eager = result["variants"]["eager"]
    assert result["config"]["hidden_size"] == 64 and result["flops_per_step"] > result["matmul_flops_per_step"] > 0
    assert eager["step_seconds"] > 0 and sum(eager["groups"].values()) == pytest.approx(eager["profiled_seconds"])
    assert "training step of our DiT (width 64, depth 2), batch 2" in done.stdout
