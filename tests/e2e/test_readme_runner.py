"""The README's runner section, verbatim: every flag its `runledger runner` commands use is
one the runner has, the environment variables it names are the runner's, and the plain
script example (`--command './scripts/my-agent.sh'`, run from the checkout) does a run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from adapters import git
from tests.e2e.runner_helpers import runner, runner_command, wait_for_status
from tests.e2e.runs_helpers import ok
from tests.serve import ROOT
from tests.support import ALICE, Server, make_repo

README = (ROOT / "README.md").read_text()


def runner_commands() -> list[list[str]]:
    """The `runledger runner` commands in the README's shell blocks, as words."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    joined = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line) for line in joined if "runledger runner" in line]


def help_text() -> str:
    done = runner_command("--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_flag_the_readme_gives_the_runner_is_one_it_has() -> None:
    commands = runner_commands()
    assert len(commands) >= 5
    shown = help_text()
    flags = {word for words in commands for word in words if word.startswith("--")}
    assert flags >= {"--key", "--command", "--format", "--plan"}
    for flag in flags:
        assert re.search(rf"(^|\s|\[){re.escape(flag)}\b", shown), flag
    for name in ("RUNLEDGER_SERVER", "RUNLEDGER_RUNNER_KEY"):
        assert name in README and name in shown


def test_the_example_scripts_the_readme_names_are_there() -> None:
    for words in runner_commands():
        if "--command" in words:
            program = shlex.split(words[words.index("--command") + 1])[0]
            if program.startswith("./"):
                assert (ROOT / program).is_file(), program


def test_the_plain_script_example_does_a_run(server: Server, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with server.client(ALICE) as alice:
        project = ok(
            alice.post("/api/projects", json={"name": "shop", "repository_path": str(repo)}), 201
        )
        made = alice.post(
            f"/api/projects/{project['project_id']}/runs",
            json={"task": "Make the checkout button say Buy now"},
        )
        run_id = ok(made, 202)["run_id"]
        # Verbatim but for the server's address, which the README's RUNLEDGER_SERVER sets.
        with runner(server, tmp_path / "work", "./scripts/my-agent.sh", cwd=ROOT):
            run = wait_for_status(alice, run_id, "awaiting_review")
    assert run["diff_stats"]["files"] == 1
    notes = git.git(repo, "show", f"{run['branch']}:AGENT_NOTES.md")
    assert notes == "Make the checkout button say Buy now"
