"""`RunSpec`: one run of a reproduction suite (a shipped config plus flag overrides)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a suite: a shipped config plus flag overrides, in `<runs_root>/<name>`,
    evaluated with `eval_flags` added to the harness's evaluation flags."""

    name: str
    config: str
    overrides: tuple[str, ...] = ()
    eval_flags: tuple[str, ...] = ()

    def config_flags(self) -> dict[str, str]:
        """`--name=value` lines of the config followed by the overrides (later ones win);
        absl's boolean forms `--name` / `--noname` become "true" / "false" (no training flag's
        name starts with "no")."""
        with open(self.config, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
        out: dict[str, str] = {}
        for line in lines + list(self.overrides):
            if line.startswith("--"):
                name, sep, value = line[2:].partition("=")
                if not sep and name.startswith("no"):
                    out[name[2:]] = "false"
                else:
                    out[name] = value if sep else "true"
        return out

    def config_steps(self) -> int:
        """`--max_steps` of the config (with overrides)."""
        return int(self.config_flags().get("max_steps", 2000))
