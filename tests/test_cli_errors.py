"""User errors from the `mdp` command: one line naming the file and the fix, exit code 2, no secret
echoed; `--debug` or MDP_DEBUG=1 shows the traceback (issue 12, defects 8 and 11).

Passwords come from an environment variable, a file or a prompt as well as `--password`, which the
whole machine can read in `ps` for the length of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MDP = [sys.executable, "-m", "mdp_cli"]


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MDP_DEBUG"}
    environment.update(env)
    return subprocess.run(
        [*MDP, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=environment,
        input=stdin,
        start_new_session=True,  # no controlling terminal: a prompt reads stdin
    )


def one_line_error(out: subprocess.CompletedProcess[str], *must_name: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    (line,) = lines
    assert line.startswith("mdp: error: ") and "Traceback" not in out.stderr
    for word in must_name:
        assert word in line, line
    return line


@pytest.mark.parametrize(
    "command",
    [["query", "bananas"], ["quarantine"], ["index", "versions"], ["index", "checkout", "1"]],
)
def test_read_only_commands_never_create_a_store(tmp_path: Path, command: list[str]) -> None:
    store = tmp_path / "nowhere" / "store"
    line = one_line_error(run(*command, "--store", str(store)), str(store), "mdp ingest")
    assert "does not exist" in line
    assert not store.exists() and not store.parent.exists()


def test_k_must_be_positive(tmp_path: Path) -> None:
    for k in ("0", "-1"):
        one_line_error(run("query", "bananas", "-k", k, "--store", str(tmp_path)), "-k", ">= 1")


def test_store_pointing_at_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a store\n")
    (tmp_path / "corpus").mkdir()
    for command in (["query", "bananas"], ["ingest", str(tmp_path / "corpus")], ["quarantine"]):
        one_line_error(run(*command, "--store", str(a_file)), str(a_file), "folder")
    assert a_file.read_text() == "not a store\n"


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    one_line_error(run("ingest", str(missing), "--store", str(tmp_path / "s")), str(missing))
    for debug in (run("--debug", "ingest", str(missing)), run("ingest", str(missing), MDP_DEBUG="1")):
        assert debug.returncode == 2 and "Traceback" in debug.stderr and str(missing) in debug.stderr


def test_a_broken_config_names_the_file_and_field_and_echoes_no_value(tmp_path: Path) -> None:
    config = tmp_path / "mdp.toml"
    config.write_text('[parsing]\ntimeout_s = "soon"\n\n[parsing.passwords]\n"a.pdf" = 741852963\n')
    line = one_line_error(run("quarantine", "--config", str(config)), str(config), "parsing")
    assert "741852963" not in line and "soon" not in line
    config.write_text("[parsing\n")
    one_line_error(run("quarantine", "--config", str(config)), str(config), "TOML")


def test_malformed_passwords_are_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    store = str(tmp_path / "store")
    line = one_line_error(
        run("ingest", str(tmp_path / "corpus"), "--store", store, "--password", "hunter2secret")
    )
    assert "hunter2secret" not in line and "NAME_OR_GLOB=PASSWORD" in line
    secrets = tmp_path / "passwords.txt"
    secrets.write_text("# comment\n\nreport.pdf=fine\nthis line has no equals sign swordfish42\n")
    secrets.chmod(0o600)  # a readable one gets a warning line besides
    line = one_line_error(
        run("ingest", str(tmp_path / "corpus"), "--store", store, "--password-file", str(secrets)),
        str(secrets),
        "line 4",
    )
    assert "swordfish42" not in line
    line = one_line_error(
        run("ingest", str(tmp_path / "corpus"), "--store", store, "--password-env", "MDP_TEST_UNSET_VAR"),
        "MDP_TEST_UNSET_VAR",
    )


def _locked_pdf(path: Path, password: str) -> None:
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    pdf = FPDF()
    pdf.set_encryption(
        owner_password="owner", user_password=password, encryption_method=EncryptionMethod.AES_128
    )
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, f"This locked report is called {path.stem}. " + "Quarterly figures rose. " * 20)
    pdf.output(str(path))


@pytest.mark.slow
def test_passwords_from_environment_file_and_prompt(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _locked_pdf(corpus / "from-env.pdf", "env-pw-1")
    _locked_pdf(corpus / "from-file.pdf", "file-pw-2")
    _locked_pdf(corpus / "from-prompt.pdf", "prompt-pw-3")
    secrets = tmp_path / "passwords.txt"
    secrets.write_text("# one NAME_OR_GLOB=PASSWORD per line\nfrom-file.pdf=file-pw-2\n")
    secrets.chmod(0o600)
    out = run(
        "ingest",
        str(corpus),
        "--store",
        str(tmp_path / "store"),
        "--json",
        "--password-env",
        "from-env.pdf=MDP_TEST_PDF_PASSWORD",
        "--password-file",
        str(secrets),
        "--password-prompt",
        "from-prompt.pdf",
        stdin="prompt-pw-3\n",
        MDP_TEST_PDF_PASSWORD="env-pw-1",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["chunked_documents"] == 3, report["quarantine"]
    for secret in ("env-pw-1", "file-pw-2", "prompt-pw-3"):
        assert secret not in out.stdout and secret not in out.stderr
    assert "from-prompt.pdf" in out.stderr  # the prompt names what the password is for
