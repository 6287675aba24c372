"""Mutation check: break the critical rules one line at a time and see whether the tests notice.

Each mutation below is a one-line breakage of a rule the service depends on (attempt fencing, compare-and-set,
isolation by user, the claim caps, liveness, exact resume). The script copies the working tree (tracked and untracked,
not ignored, files: what you are about to commit) to a scratch directory, applies one mutation there at a time, runs
the tests meant to catch it, restores the line, and prints a table: mutation, rule, file, caught or survived, and the
first test that failed (with how many others failed too). The working tree is never written to.

Run it by hand (not in CI: a full pass takes minutes), from the repository root:

    .venv/bin/python scripts/mutation_check.py                 # every mutation, once
    .venv/bin/python scripts/mutation_check.py --list          # names only
    .venv/bin/python scripts/mutation_check.py --only claim-job-without-advisory-lock --repeat 5

Exit status 0 when every mutation was caught on every run, 1 when one survived (or its tests could not run), 2 when
the unmutated tree already fails its tests or a mutation no longer matches the source.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FENCING = ("tests/robotrain/jobs/test_attempt_fencing.py",)
SQLITE_CONTRACT = ("tests/robotrain/adapters/test_sqlite_store.py::TestSqliteJobStore",)
SUPABASE_CONTRACT = ("tests/robotrain/adapters/test_supabase_store.py::TestSupabaseJobStore",)
ISOLATION = ("tests/security/test_isolation.py", "tests/robotrain/api/test_routes.py")
ONE_ROUND_TRIP_SQL = "supabase/migrations/20261202120000_one_round_trip.sql"
RESUME = ("tests/training/test_trainer.py::test_stop_and_resume_gives_exactly_the_uninterrupted_parameters",)


@dataclass(frozen=True)
class Mutation:
    name: str
    rule: str
    path: str
    original: str  # must occur exactly once in the file; may span lines for context
    mutated: str  # the same text with one line broken
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "worker-skips-its-attempt-check",
        "fencing",
        "src/robotrain/worker/runner.py",
        "    if job.status is not JobStatus.STARTING or job.attempt != attempt:\n",
        "    if job.status is not JobStatus.STARTING:\n",
        (*FENCING, "tests/robotrain/worker/test_worker.py"),
    ),
    Mutation(
        "worker-resumes-another-attempt",
        "fencing",
        "src/robotrain/worker/runner.py",
        "    if resume_own_attempt and job.status is JobStatus.RUNNING and job.attempt == attempt:\n",
        "    if resume_own_attempt and job.status is JobStatus.RUNNING:\n",
        FENCING,
    ),
    Mutation(
        "reporter-writes-unfenced",
        "fencing",
        "src/robotrain/worker/reporter.py",
        "self.job_id, changes, expected={JobStatus.RUNNING}, expected_attempt=self.attempt\n",
        "self.job_id, changes, expected={JobStatus.RUNNING}, expected_attempt=None\n",
        (*FENCING, "tests/robotrain/worker/test_reporter.py"),
    ),
    Mutation(
        "apply-transition-unfenced",
        "fencing",
        "src/robotrain/jobs/lifecycle.py",
        "store.update(job.id, change.changes, expected=change.expected, expected_attempt=job.attempt)\n",
        "store.update(job.id, change.changes, expected=change.expected, expected_attempt=None)\n",
        FENCING,
    ),
    Mutation(
        "sqlite-record-launches-ignores-attempt",
        "fencing",
        "src/robotrain/adapters/sqlite_store.py",
        '                    f"UPDATE jobs SET launch_handle = ?, updated_at = ? WHERE id = ? AND attempt = ? "\n',
        '                    f"UPDATE jobs SET launch_handle = ?, updated_at = ? WHERE id = ? AND (attempt = ? OR 1) "\n',
        (*FENCING, "tests/robotrain/control/test_drain.py"),
    ),
    Mutation(
        "supabase-record-launches-ignores-attempt",
        "fencing",
        ONE_ROUND_TRIP_SQL,
        "              and j.attempt = (v_launch ->> 'attempt')::integer\n",
        "              and (j.attempt = (v_launch ->> 'attempt')::integer or true)\n",
        FENCING,
    ),
    Mutation(
        "sqlite-update-ignores-attempt",
        "fencing",
        "src/robotrain/adapters/sqlite_store.py",
        '            where += " AND attempt = ?"\n',
        '            where += " AND ? IS NOT NULL"\n',
        (*SQLITE_CONTRACT, *FENCING),
    ),
    Mutation(
        "supabase-update-ignores-attempt",
        "fencing",
        "src/robotrain/adapters/supabase_store.py",
        '                query = query.eq("attempt", expected_attempt)\n',
        "                query = query\n",
        (*SUPABASE_CONTRACT, *FENCING),
    ),
    Mutation(
        "sqlite-update-ignores-status",
        "compare-and-set",
        "src/robotrain/adapters/sqlite_store.py",
        "        where = f\"id = ? AND status IN ({', '.join('?' for _ in expected_values)})\"\n",
        "        where = f\"id = ? AND (1 OR status IN ({', '.join('?' for _ in expected_values)}))\"\n",
        SQLITE_CONTRACT,
    ),
    Mutation(
        "supabase-update-ignores-status",
        "compare-and-set",
        "src/robotrain/adapters/supabase_store.py",
        '            query = self._table("jobs").update(values).eq("id", job_id).in_("status", expected_values)\n',
        '            query = self._table("jobs").update(values).eq("id", job_id)\n',
        SUPABASE_CONTRACT,
    ),
    Mutation(
        "claim-job-without-advisory-lock",
        "claim caps",
        "supabase/migrations/20261126130000_claim_job.sql",
        "    perform pg_advisory_xact_lock(hashtext('robotrain.claim_job'));\n",
        "    -- (advisory lock removed)\n",
        (
            "tests/supabase/test_claim_job.py::test_claims_lined_up_inside_postgresql_never_exceed_either_cap[claim_job]",
        ),
    ),
    Mutation(
        "claim-jobs-without-advisory-lock",
        "claim caps",
        ONE_ROUND_TRIP_SQL,
        "    perform pg_advisory_xact_lock(hashtext('robotrain.claim_job'));\n",
        "    -- (advisory lock removed)\n",
        (
            "tests/supabase/test_claim_job.py::test_claims_lined_up_inside_postgresql_never_exceed_either_cap[claim_jobs]",
        ),
    ),
    Mutation(
        "sqlite-claim-ignores-the-user-cap",
        "claim caps",
        "src/robotrain/adapters/sqlite_store.py",
        '"AND (SELECT count(*) FROM jobs AS mine WHERE mine.status IN (?, ?) AND mine.user_id = jobs.user_id) < ? "\n',
        '"AND (SELECT count(*) FROM jobs AS mine WHERE mine.status IN (?, ?) AND mine.user_id = jobs.user_id) < ? + 99 "\n',
        SQLITE_CONTRACT,
    ),
    Mutation(
        "sweep-takes-unknown-liveness-for-lost",
        "liveness",
        "src/robotrain/control/sweep.py",
        "            elif alive is False:\n",
        "            elif not alive:\n",
        ("tests/robotrain/control/test_sweep.py",),
    ),
    Mutation(
        "sweep-waits-on-unknown-liveness-forever",
        "liveness",
        "src/robotrain/control/sweep.py",
        "            elif silent_for < unknown_max:\n",
        "            elif alive is None:\n",
        ("tests/robotrain/control/test_sweep.py",),
    ),
    Mutation(
        "sqlite-get-ignores-the-user",
        "isolation",
        "src/robotrain/adapters/sqlite_store.py",
        '            rows = self._db.query("SELECT * FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id))\n',
        '            rows = self._db.query("SELECT * FROM jobs WHERE id = ?", (job_id,))\n',
        (*SQLITE_CONTRACT, *ISOLATION),
    ),
    Mutation(
        "sqlite-list-ignores-the-user",
        "isolation",
        "src/robotrain/adapters/sqlite_store.py",
        '        where = ["user_id = ?"]\n',
        '        where = ["? IS NOT NULL"]\n',
        (*SQLITE_CONTRACT, *ISOLATION),
    ),
    Mutation(
        "supabase-get-ignores-the-user",
        "isolation",
        "src/robotrain/adapters/supabase_store.py",
        '            if user_id is not None:\n                query = query.eq("user_id", user_id)\n'
        "            return query.limit(1).execute()\n",
        "            if user_id is not None:\n                query = query\n            return query.limit(1).execute()\n",
        SUPABASE_CONTRACT,
    ),
    Mutation(
        "supabase-list-ignores-the-user",
        "isolation",
        ONE_ROUND_TRIP_SQL,
        "    where j.user_id = p_user_id\n",
        "    where true\n",
        SUPABASE_CONTRACT,
    ),
    Mutation(
        "service-reads-any-users-job",
        "isolation",
        "src/robotrain/jobs/service.py",
        "    def get(self, user_id: str, job_id: str) -> Job:\n        job = self._store.get(job_id, user_id=user_id)\n",
        "    def get(self, user_id: str, job_id: str) -> Job:\n        job = self._store.get(job_id)\n",
        (*ISOLATION, "tests/robotrain/jobs/test_service.py"),
    ),
    Mutation(
        "resume-skips-the-sampler-rng",
        "resume state",
        "training/trainer.py",
        '    generator.set_state(state["sampler"])\n',
        "    pass\n",
        RESUME,
    ),
    Mutation(
        "resume-skips-the-torch-rng",
        "resume state",
        "training/trainer.py",
        '    torch.set_rng_state(state["torch"])\n',
        "    pass\n",
        RESUME,
    ),
    Mutation(
        "resume-skips-the-optimizer-state",
        "resume state",
        "training/trainer.py",
        "            self.optimizer.load_state_dict(state.optimizer)\n",
        "            pass\n",
        RESUME,
    ),
)


@dataclass
class Outcome:
    caught: bool | None  # None: the tests could not run (collection error, no tests, timeout)
    by: str
    seconds: float


def copy_tree(destination: Path) -> None:
    """The files git would commit (tracked + untracked, ignored ones left out), as they are in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if not source.is_file():  # deleted in the working tree but still in the index
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def scratch_environ(scratch: Path) -> dict[str, str]:
    # PYTHONPATH comes before the editable install's finder, so robotrain, training and tests resolve to the copy
    # (and so do worker subprocesses, which inherit the environment).
    return {**os.environ, "PYTHONPATH": f"{scratch / 'src'}{os.pathsep}{scratch}", "PYTHONDONTWRITEBYTECODE": "1"}


def check_imports_resolve_to(scratch: Path, env: dict[str, str]) -> None:
    code = (
        "import robotrain, training, tests; print(robotrain.__file__); print(training.__file__); print(tests.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=scratch, env=env, check=True, capture_output=True, text=True)
    for line in out.stdout.split():
        if not Path(line).resolve().is_relative_to(scratch.resolve()):
            raise SystemExit(f"the scratch copy imports {line}, not its own code; the check would be meaningless")


def run_tests(scratch: Path, env: dict[str, str], tests: tuple[str, ...], timeout_s: float) -> Outcome:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Outcome(None, f"timed out after {timeout_s:.0f} s", time.monotonic() - started)
    seconds = time.monotonic() - started
    if result.returncode == 0:
        return Outcome(False, "", seconds)
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", result.stdout, flags=re.MULTILINE)
    if result.returncode == 1 and failed:
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        return Outcome(True, failed[0] + more, seconds)
    tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
    return Outcome(None, f"pytest exit {result.returncode}: {' | '.join(tail)}", seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--repeat", type=int, default=1, help="run each mutation's tests this many times")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the tests on the unmutated copy")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds allowed for one test run")
    args = parser.parse_args()

    names = {mutation.name for mutation in MUTATIONS}
    unknown = set(args.only or ()) - names
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for mutation in chosen:
            print(f"{mutation.name:42} {mutation.rule:16} {mutation.path}")
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="robotrain-mutants-"))
    try:
        copy_tree(scratch)
        env = scratch_environ(scratch)
        check_imports_resolve_to(scratch, env)
        for mutation in chosen:
            count = (scratch / mutation.path).read_text().count(mutation.original)
            if count != 1:
                print(f"{mutation.name}: its line occurs {count} times in {mutation.path}; update the mutation")
                return 2

        if not args.no_baseline:
            every_test = tuple(dict.fromkeys(test for mutation in chosen for test in mutation.tests))
            print(f"baseline: the unmutated copy against {len(every_test)} test targets ...", flush=True)
            baseline = run_tests(scratch, env, every_test, args.timeout)
            if baseline.caught is not False:
                print(f"the unmutated tree fails its own tests ({baseline.by}); fix that first")
                return 2
            print(f"baseline passed in {baseline.seconds:.0f} s", flush=True)

        rows: list[tuple[Mutation, list[Outcome]]] = []
        for mutation in chosen:
            path = scratch / mutation.path
            original_text = path.read_text()
            outcomes: list[Outcome] = []
            try:
                path.write_text(original_text.replace(mutation.original, mutation.mutated))
                for run in range(args.repeat):
                    outcome = run_tests(scratch, env, mutation.tests, args.timeout)
                    outcomes.append(outcome)
                    verdict = {True: "caught", False: "SURVIVED", None: "could not run"}[outcome.caught]
                    print(
                        f"{mutation.name} run {run + 1}: {verdict} {outcome.by} ({outcome.seconds:.0f} s)", flush=True
                    )
            finally:
                path.write_text(original_text)
            rows.append((mutation, outcomes))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print("| mutation | rule | file | result | caught by |")
    print("|---|---|---|---|---|")
    all_caught = True
    for mutation, outcomes in rows:
        caught = sum(outcome.caught is True for outcome in outcomes)
        all_caught &= caught == len(outcomes)
        result = "caught" if caught == len(outcomes) else "SURVIVED" if caught == 0 else "sometimes"
        if len(outcomes) > 1:
            result += f" {caught}/{len(outcomes)}"
        by = next((outcome.by for outcome in outcomes if outcome.caught is True), "")
        if caught < len(outcomes):
            by = by or next((outcome.by for outcome in outcomes if outcome.caught is None), "")
        print(f"| {mutation.name} | {mutation.rule} | {mutation.path} | {result} | {by} |")
    return 0 if all_caught else 1


if __name__ == "__main__":
    sys.exit(main())
