"""``wsreid ablate STUDY.yaml``: run an ablation study and print its table
(:func:`wsreid.ablate.ablation_study`; docs/ablations.md)."""

from __future__ import annotations

import argparse

from wsreid.cli.common import OVERRIDE_VALUE_HELP, add_common, add_overrides, path_argument, say_stop
from wsreid.errors import ExitCode


def add_parsers(sub) -> None:
    """Register ``ablate``."""
    p = sub.add_parser("ablate", help="run an ablation study (variants x seeds) and tabulate it")
    p.add_argument("study", help="study YAML file (docs/ablations.md)")
    add_overrides(p, f"override a recipe key in every run, after the study's own overrides ({OVERRIDE_VALUE_HELP})")
    p.add_argument("--output-dir", type=path_argument,
                   help="study directory (default: the study's output_dir, else runs/ablations/<study file name "
                        "without .yaml>; either, when relative, is relative to the working directory, not to the "
                        "study file)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="write the table, CSV and chart from the finished runs; run nothing")
    p.add_argument("--include-outdated", action="store_true",
                   help="tabulate finished runs whose recipe.yaml differs from what the study asks for now (runs "
                        "copied in from another study to pair by seed) instead of marking them outdated")
    p.add_argument("--rerun-outdated", action="store_true",
                   help="delete and train again the finished runs whose recipe differs from what the study asks for "
                        "now (another study in the same directory, a changed study file or -o); refused without it")
    p.add_argument("--subprocess", action="store_true",
                   help="run each training in its own `python -m wsreid run` process (isolates crashes and memory)")
    p.add_argument("--seeds", metavar="S[,S...]",
                   help="run only these seeds (a comma-separated subset or replacement of the study's seeds); "
                        "the table still covers the study's seeds, with the others shown as not run; a seed "
                        "beyond them is in this invocation's table only (add it to the study's seeds: to keep it)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL",
                   help="run only this variant (its exact label; repeatable); the table still covers every "
                        "variant, with the others as they stand")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run N trainings at once, each in its own process with cpus/N threads and its output "
                        "in OUTPUT_DIR/logs/ (default 1: one after another)")
    add_common(p)
    p.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    """Run the study and print the table; 0 when every run finished, 1 when some failed,
    130 when interrupted (143: stopped by SIGTERM, 129: by SIGHUP), 2 (before anything
    runs) when some planned run is invalid. ``--dry-run``: 0, or 2 when some planned run is
    invalid or the study would refuse finished runs it would replace (outdated, without
    ``--rerun-outdated``)."""
    from wsreid.ablate import STATE_DONE, STATE_OUTDATED, ablation_study, stopped_run_note
    from wsreid.engine import signals
    from wsreid.errors import StudyError

    try:
        report = ablation_study(args.study, output_dir=args.output_dir, overrides=args.override, seeds=args.seeds,
                                variants=args.variant, subprocess=args.subprocess, jobs=args.jobs,
                                disabled=args.disable_plugin, dry_run=args.dry_run, report_only=args.report_only,
                                include_outdated=args.include_outdated, rerun_outdated=args.rerun_outdated)
    except KeyboardInterrupt as exc:
        outcomes = getattr(exc, "outcomes", None)
        if outcomes is None:
            raise
        signum = signals.signal_of(exc)
        say_stop(f"{signals.describe(signum)} after {len(outcomes)} of {getattr(exc, 'total', len(outcomes))} runs; "
                 f"run the same command again to go on{stopped_run_note(exc)}")
        return signals.exit_code(signum)
    if report.dry_run:  # what the study would do: its exit status too, where it would refuse to run
        done = sum(o.status == STATE_DONE for o in report.outcomes)
        outdated = sum(o.status == STATE_OUTDATED for o in report.outcomes)
        counts = f"{done} finished" + (f", {outdated} outdated: " + (
            "--rerun-outdated trains them again" if args.rerun_outdated else
            "the study refuses them without --rerun-outdated") if outdated else "")
        print(f"{len(report.outcomes)} runs ({counts}); nothing was run")
        invalid = sum(o.status == "failed" for o in report.outcomes)
        if invalid:
            raise StudyError(f"{args.study}: {invalid} of {len(report.outcomes)} planned runs are invalid "
                             "(their FAILED lines above say why)", hint="fix them, then run the study")
        if report.refused is not None:
            raise report.refused
        return ExitCode.OK
    print(report.paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in report.paths.values()))
    return ExitCode.RUNS_FAILED if report.failed else ExitCode.OK
