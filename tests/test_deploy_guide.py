"""The README's deploy guide, checked against what its commands need: the CLIs cannot run here (no cloud accounts),
so these tests hold the guide to the rules those CLIs apply, read in their source (README, "What was verified")."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The Supabase CLI's rule for [auth.third_party.clerk] domain (supabase/cli, apps/cli-go/pkg/config/config.go,
# clerkDomainPattern), applied by every command that loads config.toml (link, db push, start, ...).
SUPABASE_CLERK_DOMAIN = re.compile(r"^(clerk([.][a-z0-9-]+){2,}|([a-z0-9-]+[.])+clerk[.]accounts[.]dev)$")


@pytest.fixture(scope="module")
def guide() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Deploying to Modal\n")
    return readme[start : readme.index("\n## ", start + 1)]


def steps(guide: str) -> list[str]:
    """The numbered steps, each with its text up to the next one."""
    parts = re.split(r"(?m)^(?=\d+\. \*\*)", guide.split("**Troubleshooting**")[0])
    return [part for part in parts if re.match(r"\d+\. \*\*", part)]


def commands(guide: str) -> list[str]:
    """Every line of the guide's shell blocks, comments dropped, in order."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", guide, flags=re.S):
        lines += [
            line.split("  #")[0].strip()
            for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    return lines


def first_index(lines: list[str], pattern: str) -> int:
    return next(index for index, line in enumerate(lines) if re.search(pattern, line))


def env_references(value: object) -> set[str]:
    if isinstance(value, str):
        return set(re.findall(r"env\((\w+)\)", value))
    if isinstance(value, dict):
        return set().union(*(env_references(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(env_references(item) for item in value)) if value else set()
    return set()


def test_the_guide_is_a_numbered_list_and_every_command_step_says_what_it_prints(guide) -> None:
    found = steps(guide)
    assert [int(step.split(".")[0]) for step in found] == list(range(1, len(found) + 1))
    assert len(found) >= 8
    for step in found:
        if "```bash" in step or "`modal " in step:
            assert "prints" in step, step.splitlines()[0]


def test_every_variable_supabase_config_toml_reads_is_exported_before_the_cli_reads_it(guide) -> None:
    config = tomllib.loads((REPO / "supabase" / "config.toml").read_text())
    needed = env_references(config)
    assert needed == {"CLERK_DOMAIN"}  # a new env() in config.toml must be added to the guide (and here)
    lines = commands(guide)
    first_supabase_read = first_index(lines, r"^supabase (link|db push)")
    for name in needed:
        exports = [(index, line) for index, line in enumerate(lines) if line.startswith(f"export {name}=")]
        assert exports and exports[0][0] < first_supabase_read, f"{name} is not exported before `supabase link`"
        example = re.sub(r"<[^>]+>", "my-app", exports[0][1].split("=", 1)[1])
        assert SUPABASE_CLERK_DOMAIN.match(example), f"the CLI refuses {example!r}"


def test_the_package_is_installed_and_its_environment_used_before_modal_deploy(guide) -> None:
    lines = commands(guide)
    deploy = first_index(lines, r"modal deploy modal_app\.py")
    assert first_index(lines, r"make install") < deploy
    assert first_index(lines, r"source \.venv/bin/activate") < deploy


def test_every_secret_modal_app_names_is_created_with_its_required_keys(guide) -> None:
    source = (REPO / "modal_app.py").read_text()
    declared = re.findall(r'Secret\.from_name\(\s*"([\w-]+)"(?:,\s*required_keys=\[([^\]]*)\])?', source)
    assert {name for name, _ in declared} == {"robotrain-store", "robotrain-queue", "robotrain-api"}
    created = " ".join(commands(guide)).replace("\\ ", " ")
    for name, keys in declared:
        match = re.search(rf"modal secret create {name} (.*?)(?=modal secret create|$)", created)
        assert match, f"the guide never creates the secret {name}"
        for key in re.findall(r'"(\w+)"', keys):
            assert f"{key}=" in match.group(1), f"{name} is created without {key}"


def test_files_the_guide_names_exist(guide) -> None:
    for path in set(re.findall(r"\b((?:examples|supabase)/[\w./-]+\.(?:json|toml|md))", guide)) | {"modal_app.py"}:
        assert (REPO / path).exists(), path
