"""Observer ``loss_log``: the losses every N steps, as JSON lines in the run directory."""

import json

from pydantic import Field

from wsreid import hookimpl
from wsreid.api import Params


class LossLogSettings(Params):
    """Settings of the loss log (recipe key settings.loss_log)."""

    every: int = Field(10, ge=1, description="write one line every N optimizer steps")
    file: str = Field("losses.jsonl", description="file name in the run directory")


@hookimpl
def wsreid_after_step(run, epoch, step, losses):
    """Append ``{"epoch", "step", "loss/...": value}`` every ``every`` steps (main process)."""
    settings = run.recipe.settings["loss_log"]
    if run.dist.is_main and step % settings.every == 0:
        with open(run.run_dir / settings.file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"epoch": epoch, "step": step, **losses}) + "\n")
