#!/usr/bin/env python3
"""Checks the Dockerfile without a Docker engine: every build command it runs succeeds here, every path it copies
exists (from the build context or from the build stage's output), the final user is numeric, and the binary it
ships reports its version and revision.

The build stage's commands run from the repository root (its WORKDIR is the context), with `/out` mapped to a
temporary directory and FLOWGATE_PROFILE=dev so the test build's artifacts are reused.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def main() -> int:
    dockerfile = ROOT / "Dockerfile"
    steps = instructions(dockerfile.read_text())
    problems: list[str] = []
    stage = None
    build_stage = None
    final_user = None
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp) / "out"
        env = dict(os.environ, FLOWGATE_PROFILE=os.environ.get("FLOWGATE_PROFILE", "dev"))
        # What `docker build --build-arg` would pass (see the Dockerfile's header).
        try:
            rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        except FileNotFoundError:
            rev = subprocess.CompletedProcess([], 1, "", "")
        # Without a git checkout (a source tarball) a stand-in proves the stamping all the same.
        build_args = {"FLOWGATE_GIT_REV": rev.stdout.strip() or "docker-check"}
        for word, args in steps:
            if word == "FROM":
                m = re.search(r"\bAS\s+(\S+)", args, re.IGNORECASE)
                stage = m.group(1) if m else None
                if stage and build_stage is None:
                    build_stage = stage
                continue
            if word in ("ARG", "ENV") and stage == build_stage and "=" in args:
                name, _, value = (x.strip() for x in args.partition("="))
                if word == "ARG":
                    env[name] = build_args.get(name, value)
                elif not value.startswith("$"):
                    env[name] = value
                continue
            if word == "COPY":
                parts = shlex.split(args)
                from_stage = next((p.split("=", 1)[1] for p in parts if p.startswith("--from=")), None)
                paths = [p for p in parts if not p.startswith("--")]
                for src in paths[:-1]:
                    if from_stage is None:
                        found = (ROOT / src).exists()
                        where = f"build context {src}"
                    else:
                        if from_stage != build_stage:
                            problems.append(f"COPY --from={from_stage}: not the build stage {build_stage}")
                            continue
                        local = Path(src.replace("/out", str(out_dir), 1)) if src.startswith("/out") else None
                        found = bool(local and local.exists() and (not src.endswith("/") or any(local.iterdir())))
                        where = f"build stage output {src}"
                    print(f"{'ok ' if found else 'MISSING'} COPY {where}")
                    if not found:
                        problems.append(f"COPY source missing: {where}")
                continue
            if word == "RUN" and stage == build_stage:
                command = args.replace("/out", str(out_dir))
                print(f"run {command}", flush=True)
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, env=env)
                if done.returncode != 0:
                    problems.append(f"RUN failed ({done.returncode}): {args}")
                continue
            if word == "USER":
                final_user = args
        if not final_user or not re.fullmatch(r"[0-9]+(:[0-9]+)?", final_user):
            problems.append(f"the final USER must be numeric (uid:gid) for runAsNonRoot; it is {final_user!r}")
        binary = out_dir / "bin" / "flowgate"
        if binary.exists():
            version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
            print(f"version: {version}")
            stamped = f"({build_args['FLOWGATE_GIT_REV']})"
            if not re.fullmatch(r"flowgate \S+ \((\S+)\)", version) or not version.endswith(stamped):
                problems.append(f"--version does not name the revision passed as a build argument {stamped}: {version!r}")
        if not (ROOT / ".dockerignore").read_text().count("target/"):
            problems.append(".dockerignore must exclude target/ (gigabytes of build output)")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(f"Dockerfile check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
