"""The build's workflow (workflow/Snakefile) and the trainings it runs (w2s_deception.trainings): the job
graph of each profile, the paper profile's cluster jobs (submitted to a stand-in `sbatch`), and that
stopping a build stops every job it started."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from w2s_deception.trainings import chapter_trainings, declared, notebook_needs

REPO = Path(__file__).resolve().parents[1]


def copy_root(root: Path) -> Path:
    """A repo root with the real toc, config and notebooks (what the workflow's graph reads)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_toc.yml", "_config.yml", "references.bib"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "book" / "_ext", root / "book" / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "book" / "_static" / "results").mkdir(parents=True)
    for name in ("intro.md", "_static/w2s.css"):
        shutil.copy(REPO / "book" / name, root / "book" / name)
    (root / "book" / "_static" / "results" / "simpo.csv.gz").write_bytes(b"")
    return root


def snakemake(root: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                           "--directory", str(root), *args], capture_output=True, text=True,
                          env={**os.environ, "W2S_RUNS_DIR": str(root / "runs"), **(env or {})}, **kw)


def dry_run_jobs(out: str) -> dict[str, list[dict[str, str]]]:
    """rule name → its jobs (their input/output/wildcards/resources lines) from a dry run's printout."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head:
            fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.MULTILINE))
            jobs.setdefault(head.group(1), []).append(fields)
    return jobs


def test_each_chapter_declares_its_trainings_once() -> None:
    """cpu: the frozen real models' feature splits are jobs of their own, every matrix waits for the rungs
    it reads, the mitigations' students for SimPO's teachers; smoke pre-trains every rung here."""
    cpu = declared("cpu")
    assert {f"reward_modeling/features-{r}-{s}" for r in ("smol", "gemma")
            for s in ("helpful", "train_gt", "train_w2s", "test")} <= set(cpu)
    assert set(cpu["reward_modeling/matrix"].needs) >= {"reward_modeling/pretrain-pico",
                                                        "reward_modeling/features-smol-test"}
    assert cpu["mitigations/filters"].needs == ("simpo/matrix",)
    assert cpu["controlled_task/alpha-0.25"].needs == ("controlled_task/simpo",)
    assert all(t.threads == 1 and t.gpus == 0 for t in cpu.values())
    assert not any("features" in name for name in declared("smoke"))
    paper = declared("paper")
    assert paper["simpo/matrix"].gpus == 8 and paper["reward_modeling/matrix"].mem_mb == 256_000
    # a notebook reads its own trainings and those of the chapters it re-reads
    assert notebook_needs("llama", chapter_trainings(["llama"], "cpu")) == ["simpo/matrix"]
    assert "controlled_task/simpo" in notebook_needs("thresholds", list(cpu.values()))
    assert notebook_needs("honesty", []) == []


def test_a_chapter_selected_alone_gets_every_training_it_needs(tmp_path: Path) -> None:
    """`--chapters simpo`: SimPO's matrix and the reward-modeling chapter's pre-trained rungs it reads."""
    simpo = declared("smoke", ["simpo"])
    assert set(simpo) == {"simpo/matrix", *(f"reward_modeling/pretrain-{r}" for r in ("s-nano", "s-micro", "s-mini"))}
    for name in ("simpo", "dpo", "alpha", "honesty", "llama", "mitigations", "thresholds", "spontaneous"):
        chosen = declared("smoke", [name])
        assert all(need in chosen for t in chosen.values() for need in t.needs), name
    root = copy_root(tmp_path)
    run = snakemake(root, "--dry-run", "--cores", "2", "--config", "profile=smoke", 'chapters=["simpo"]', "html=False")
    assert run.returncode == 0, run.stderr + run.stdout
    jobs = dry_run_jobs(run.stdout)
    assert sorted(j["wildcards"] for j in jobs["train"]) == sorted(
        f"chapter={n.split('/')[0]}, what={n.split('/')[1]}" for n in simpo)
    assert [j["wildcards"] for j in jobs["chapter"]] == ["chapter=simpo"]


def test_a_build_from_an_environment_whose_path_has_a_space(tmp_path: Path) -> None:
    """The workflow quotes the interpreter's path in every job's command."""
    from tests.test_book import make_root

    venv = tmp_path / "my env"
    venv.mkdir()
    (venv / "venv").symlink_to(Path(sys.prefix))
    python = venv / "venv" / "bin" / "python"
    root = make_root(tmp_path / "root", ["good"])
    run = subprocess.run([str(python), "-m", "w2s_deception.book", "--root", str(root), "--profile", "smoke",
                          "--skip-html"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "W2S_RUNS_DIR": str(tmp_path / "runs")})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (root / "book" / "good.ipynb").is_file()


def test_dry_run_graph_of_the_smoke_book(tmp_path: Path) -> None:
    """One train job per declared training, one chapter job per notebook (after exactly the trainings it
    reads), one HTML job."""
    root = copy_root(tmp_path)
    run = snakemake(root, "--dry-run", "--cores", "2", "--config", "profile=smoke")
    assert run.returncode == 0, run.stderr + run.stdout
    jobs = dry_run_jobs(run.stdout)
    trainings = declared("smoke")
    assert sorted(j["wildcards"] for j in jobs["train"]) == sorted(
        f"chapter={n.split('/')[0]}, what={n.split('/')[1]}" for n in trainings)
    chapters = {j["wildcards"].removeprefix("chapter="): j for j in jobs["chapter"]}
    assert set(chapters) == {p.stem for p in (REPO / "notebooks").glob("*.ipynb")}
    flags = lambda job: {Path(p).relative_to(root / "runs" / ".workflow" / "smoke").with_suffix("").as_posix()  # noqa: E731
                         for p in job["input"].split(", ") if p.endswith(".done")}
    for name, job in chapters.items():
        assert flags(job) == set(notebook_needs(name, list(trainings.values()))), name
    assert len(jobs["html"]) == 1
    # the site re-renders when its text, styles or Sphinx extension change, not for a chapter's results file
    html_inputs = set(jobs["html"][0]["input"].split(", "))
    assert {"book/intro.md", "references.bib", "book/_static/w2s.css", "book/_ext/w2s_sphinx.py"} <= html_inputs
    assert not any("results" in p for p in html_inputs)


def test_paper_profile_jobs_on_slurm(tmp_path: Path) -> None:
    """The paper profile through workflow/profiles/slurm, submitted to a stand-in `sbatch` that records
    each job: trainings ready at the start are submitted with their GPUs, memory and time; a matrix
    launches through `accelerate launch` with the FSDP config; nothing runs here."""
    root = copy_root(tmp_path / "root")
    bin_dir, log = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir(), log.mkdir()
    # Each submission to its own file, complete before it appears (the executor submits concurrently).
    (bin_dir / "sbatch").write_text('#!/bin/bash\ntmp=$(mktemp "$FAKE_SLURM_LOG/.job-XXXXXX")\n'
                                    'printf "%s\\n" "$@" > "$tmp"\nmv "$tmp" "$FAKE_SLURM_LOG/job-$$.txt"\n'
                                    'echo $((1000 + $$))\n')
    for tool in ("sacctmgr", "sshare"):
        (bin_dir / tool).write_text("#!/bin/bash\necho w2s\n")
    for tool in ("sacct", "squeue", "scontrol", "sinfo"):
        (bin_dir / tool).write_text("#!/bin/bash\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    dry = snakemake(root, "--dry-run", "--printshellcmds", "--config", "profile=paper",
                    "--profile", str(REPO / "workflow" / "profiles" / "slurm"))
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert len(dry_run_jobs(dry.stdout)["train"]) == len(declared("paper"))
    assert re.search(r"accelerate\.commands\.launch --config_file configs/accelerate/fsdp\.yaml --num_processes 8 -m "
                     r"w2s_deception\.trainings --profile paper --threads 8 "
                     r"--record \S+/simpo/matrix\.done'? simpo/matrix\b",
                     dry.stdout), dry.stdout

    ready = [t for t in declared("paper").values() if not t.needs]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM_LOG": str(log),
           "W2S_RUNS_DIR": str(root / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                             "--directory", str(root), "--config", "profile=paper",
                             "--profile", str(REPO / "workflow" / "profiles" / "slurm")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # submission is paced by the executor: two jobs are enough to check
        while len(list(log.glob("job-*"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    specs = {}
    for path in log.glob("job-*"):
        args = path.read_text().splitlines()
        target = re.search(r"--target-jobs 'train:chapter=(\w+),what=([\w.\-]+)'", "\n".join(args))
        specs[f"{target.group(1)}/{target.group(2)}"] = args
    assert len(specs) >= 2 and set(specs) <= {t.name for t in ready}, specs.keys()
    for name, args in specs.items():
        t = declared("paper")[name]
        assert f"--gpus={t.gpus}" in args and args[args.index("--mem") + 1] == str(t.mem_mb), (name, args)
        assert args[args.index("-t") + 1] == str(t.runtime_min) and args[args.index("-p") + 1] == "gpu"
        assert f"--cpus-per-task={t.threads}" in args


def sleeping_root(root: Path) -> Path:
    """A book whose one chapter marks that it started and then sleeps for minutes."""
    from tests.test_book import make_root, notebook

    make_root(root, ["sleepy"])
    notebook(root / "notebooks" / "sleepy.ipynb",
             'import os, pathlib, time\npathlib.Path(os.environ["W2S_TEST_MARKS"], "started").touch()\ntime.sleep(300)')
    return root


def build_processes(pid: int) -> list[psutil.Process]:
    """Processes started by the build with main process `pid` (they carry W2S_BUILD_PID in their environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != pid and proc.environ().get("W2S_BUILD_PID") == str(pid):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_build_stops_its_jobs(tmp_path: Path, signum: int) -> None:
    """SIGTERM or Ctrl-C: the build stops snakemake and every job; SIGKILL: no job outlives it by more than a
    few seconds (snakemake gets SIGTERM from the kernel, each job watches the build's pid)."""
    root = sleeping_root(tmp_path / "root")
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "W2S_TEST_MARKS": str(marks), "W2S_RUNS_DIR": str(tmp_path / "runs")}
    build = subprocess.Popen([sys.executable, "-m", "w2s_deception.book", "--root", str(root), "--profile", "smoke",
                              "--skip-html"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (marks / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (marks / "started").exists(), "the chapter never started"
        assert build_processes(build.pid), "no job carries the build's pid"
        sent = time.monotonic()
        build.send_signal(signum)
        build.wait(timeout=60)
        if signum != signal.SIGKILL:  # stopped at once (not after the jobs finish), with the shell's exit status
            assert build.returncode == 128 + signum and time.monotonic() - sent < 15, (build.returncode,
                                                                                     time.monotonic() - sent)
        deadline = time.monotonic() + 15
        while build_processes(build.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = build_processes(build.pid)
        assert not left, [p.cmdline() for p in left]
    finally:
        for proc in build_processes(build.pid):
            proc.kill()
        build.kill()


def test_a_training_job_that_meets_bad_data_says_so_in_one_line(tmp_path: Path) -> None:
    """A data error inside a training job: one line naming the training and the problem, no traceback, and
    no flag written (so the workflow runs the job again once the data are fixed)."""
    data = tmp_path / "data"
    data.mkdir()
    flag = tmp_path / "flag.done"
    run = subprocess.run([sys.executable, "-m", "w2s_deception.trainings", "--profile", "smoke", "--record", str(flag),
                          "reward_modeling/pretrain-s-nano"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "W2S_DATA_DIR": str(data), "W2S_RUNS_DIR": str(tmp_path / "runs")})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    assert lines == [line for line in run.stderr.splitlines() if line.strip() and "WARNING" not in line], run.stderr
    assert lines[0].startswith("FAILED reward_modeling/pretrain-s-nano: DataError: no data file ")
    assert not flag.exists()
