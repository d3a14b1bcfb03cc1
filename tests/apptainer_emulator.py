#!/usr/bin/env python3
"""Stands in for `apptainer` where none is installed: the commands the FOMO26 validator runs
(fomo26/container_templates container_validator/runner.py @ d442af2), with an /app folder ($EMULATED_APP)
standing for the image. `instance start` records the binds, `exec instance://NAME CMD` runs CMD on the host
with /input, /output, /tmp and /app mapped to the bound folders (and no GPU without --nvccli). Used to run
the organisers' own validator next to check_fomo26 in tests/test_container_fomo26.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

MAPPED = ("/input", "/output", "/tmp", "/app")


def main(arguments: list[str]) -> int:
    state = Path(os.environ["EMULATED_APPTAINER_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    if arguments == ["--version"]:
        print("apptainer version 1.3.0 (emulated)")
        return 0
    if arguments[:2] == ["instance", "start"]:
        binds = dict(reversed(arguments[i + 1].split(":")[:2]) for i, a in enumerate(arguments) if a == "--bind")
        binds["/app"], binds["gpu"] = os.environ["EMULATED_APP"], "--nvccli" in arguments
        (state / f"{arguments[-1]}.json").write_text(json.dumps(binds))
        return 0
    if arguments[:2] == ["instance", "stop"]:
        return 0
    if arguments[0] == "exec" and arguments[1].startswith("instance://"):
        binds = json.loads((state / f"{arguments[1].split('://')[1]}.json").read_text())

        def host_path(argument: str) -> str:
            inside = next((m for m in MAPPED if argument == m or argument.startswith(m + "/")), None)
            return binds[inside] + argument[len(inside):] if inside else argument

        command = [host_path(a) for a in arguments[2:]]
        command[0] = sys.executable if command[0] == "python" else command[0]
        env = {**os.environ, "TMPDIR": binds["/tmp"], **({} if binds["gpu"] else {"CUDA_VISIBLE_DEVICES": ""})}
        return subprocess.run(command, env=env).returncode
    print(f"apptainer (emulated): unsupported command {arguments}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
