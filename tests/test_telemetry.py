"""Offline and private: an ingest resolves no host name and leaves no device id (issue 12, defect 9).

Importing unstructured's PDF code loads onnxruntime, whose telemetry is on by default: DNS lookups
for a Microsoft events host and a device id under ~/.cache/Microsoft. mdp.runtime.configure_process
turns it off where each process starts, so parse workers inherit it.

Name resolution is watched in every process of the run: a ``sitecustomize`` on PYTHONPATH installs an
audit hook (Python-level lookups and connections), and, where a C compiler is present, a preloaded
library logs calls to the C resolver (native code such as onnxruntime's uploader does not go through
Python).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SITECUSTOMIZE = r"""
import os, sys

_LOG = os.environ.get("NAME_LOOKUP_LOG")
_WATCHED = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
            "socket.getnameinfo", "socket.connect", "socket.sendto"}


def _hook(event, args):
    if _LOG and event in _WATCHED:
        if event in ("socket.connect", "socket.sendto"):
            address = args[-1]
            if isinstance(address, (str, bytes)) or address is None:  # AF_UNIX: local, not a lookup
                return
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} python {event} {args!r}\n")


sys.addaudithook(_hook)
"""

RESOLVER_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void note(const char *fn, const char *name) {
    const char *log = getenv("NAME_LOOKUP_LOG");
    if (!log) return;
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0) return;
    char line[600];
    int n = snprintf(line, sizeof line, "%d native %s %s\n", (int)getpid(), fn, name ? name : "(null)");
    if (n > 0) write(fd, line, n < (int)sizeof line ? n : (int)sizeof line - 1);
    close(fd);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    note("getaddrinfo", node);
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}

struct hostent *gethostbyname(const char *name) {
    note("gethostbyname", name);
    struct hostent *(*real)(const char *) = dlsym(RTLD_NEXT, "gethostbyname");
    return real(name);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t len, struct hostent **result,
                    int *err) {
    note("gethostbyname_r", name);
    int (*real)(const char *, struct hostent *, char *, size_t, struct hostent **, int *) =
        dlsym(RTLD_NEXT, "gethostbyname_r");
    return real(name, ret, buf, len, result, err);
}
"""

# Variables that switch telemetry off: the run must set them itself, so none may come from the test.
PRIVACY_ENV = (
    "ORT_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "SCARF_NO_ANALYTICS",
    "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "TRANSFORMERS_OFFLINE",
    "UNSTRUCTURED_DISABLE_NOTICE",
)


PROBE = "import socket\ntry:\n    socket.getaddrinfo('probe.invalid', 80)\nexcept OSError:\n    pass\n"


def _resolver_shim(folder: Path) -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not sys.platform.startswith("linux"):
        return None
    source = folder / "resolver_shim.c"
    source.write_text(RESOLVER_SHIM)
    library = folder / "resolver_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source), "-ldl"], check=True)
    return library


def _pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    pdf.set_font("helvetica", size=12)
    for text in ("Glaciers carve valleys over thousands of years.", "Sea level rises when ice melts."):
        pdf.add_page()
        pdf.multi_cell(0, 8, text * 10)
    pdf.output(str(path))


@pytest.mark.slow
def test_an_ingest_resolves_no_name_and_writes_no_device_id(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    shim = _resolver_shim(hooks)
    home = tmp_path / "home"
    home.mkdir()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _pdf(corpus / "ice.pdf")
    (corpus / "notes.md").write_text("# Notes\n\nBananas grow in tropical climates.\n")
    log = tmp_path / "lookups.log"

    env = {k: v for k, v in os.environ.items() if k not in PRIVACY_ENV}
    env.pop("XDG_CACHE_HOME", None)  # caches default to HOME, which is empty here
    env.update(
        HOME=str(home),
        NAME_LOOKUP_LOG=str(log),
        PYTHONPATH=os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        MDP_CONFIG=str(tmp_path / "absent.toml"),
    )
    if shim is not None:
        env["LD_PRELOAD"] = os.pathsep.join(p for p in (str(shim), env.get("LD_PRELOAD", "")) if p)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mdp_cli",
            "ingest",
            str(corpus),
            "--store",
            str(tmp_path / "store"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["chunked_documents"] == 2 and report["by_format"]["pdf"]["chunked_documents"] == 1

    # the watch works: a lookup made the same way is seen (a probe, after the run)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import socket\ntry: socket.getaddrinfo('probe.invalid', 80)\nexcept OSError: pass",
        ],
        env=env,
        timeout=60,
    )
    assert probe.returncode == 0
    seen = log.read_text().splitlines()
    probes = [line for line in seen if "probe.invalid" in line]
    assert any(" python " in line for line in probes)
    if shim is not None:
        assert any(" native " in line for line in probes)
    lookups = [line for line in seen if "probe.invalid" not in line]
    assert lookups == [], lookups
    assert not (home / ".cache" / "Microsoft").exists()
    written = [p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()]
    assert [p for p in written if "/matplotlib/" not in p] == []  # a font cache is the only thing allowed
