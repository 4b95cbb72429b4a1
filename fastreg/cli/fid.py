"""``fastreg fid``: FID/KID of a run against its data, or between two sources (runs, image folders,
``data:<name>``); runs are opened with :func:`fastreg.train.runs.open_run` (no optimizers, no reseeding)."""

from __future__ import annotations

import argparse
import sys

from .options import add_device_option, add_threads_option, check_writable_file, extractor_help


def add(commands) -> None:
    fid = commands.add_parser(
        "fid", help="FID/KID (named by extractor) between runs, image folders and datasets",
        description="One RUN_DIR: its generator against its training data (toy runs: W1 and modes). "
                    "Two sources: FID/KID between them; a source is a run folder, a folder of images "
                    "or data:<dataset>.")
    fid.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="a run folder (newest checkpoint, EMA generator), a folder of images, or data:<dataset>")
    fid.add_argument("--extractor", default="auto", help=extractor_help() + " (default: %(default)s)")
    fid.add_argument("--samples", type=int, default=1000, help="generated samples per run (default: %(default)s)")
    fid.add_argument("--seed", type=int, default=None,
                     help="latent seed (default: the run's seed, which reproduces its logged evaluations; 0 for "
                          "two sources)")
    fid.add_argument("--floor", action="store_true",
                     help="also score two disjoint halves of the real data against each other")
    fid.add_argument("--data", default="digits", help="dataset of --floor when no run is given (default: %(default)s)")
    fid.add_argument("--resolution", type=int, default=None,
                     help="resolution of data:<name> sources and of --floor without a run (default: the run's, "
                          "else 32)")
    fid.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    add_device_option(fid)
    add_threads_option(fid)
    fid.set_defaults(handler=run, value_errors_are_user_errors=True)


def run(args: argparse.Namespace) -> int:
    if len(args.sources) > 2:
        print("fastreg fid: sources: give one run, or two sources to compare", file=sys.stderr)
        return 2
    if not args.sources and not args.floor:
        print("fastreg fid: sources: give a RUN_DIR, two sources, or --floor with --data/--resolution",
              file=sys.stderr)
        return 2
    r = args.resolution
    if r is not None and not (8 <= r <= 64 and r & (r - 1) == 0):  # the sides fastreg trains at (train's rule)
        print(f"fastreg fid: --resolution: must be a power of two from 8 to 64, got {r}", file=sys.stderr)
        return 2
    if args.seed is not None and not 0 <= args.seed <= 2**63 - 2:
        print(f"fastreg fid: --seed: must be an integer from 0 to 2**63 - 2, got {args.seed}", file=sys.stderr)
        return 2
    if args.json:
        check_writable_file(args.json, "--json")  # before minutes of computing, not after
    results = fid_between(args) if len(args.sources) == 2 else fid_against_data(args)
    if args.json:
        import json

        from ..atomic import write_text

        write_text(args.json, json.dumps(results, indent=1))  # a kill mid-write keeps the previous result
    return 0


def fid_between(args: argparse.Namespace) -> dict:
    """FID/KID between two sources (fastreg.metrics.sources)."""
    from ..metrics.evaluation import describe
    from ..metrics.sources import compare, open_source
    from ..train.runs import open_run

    seed = 0 if args.seed is None else args.seed
    opened = {}
    for spec in sorted(args.sources, key=lambda spec: spec.startswith("data:")):  # runs first: their resolution
        run_resolution = next((s.resolution for s in opened.values() if s.kind == "run"), None)
        opened[spec] = open_source(spec, args.samples, seed, args.device, args.resolution or run_resolution,
                                   open_run=open_run)
    a, b = (opened[spec] for spec in args.sources)
    result = compare(a, b, args.extractor, args.samples, args.device or "cpu", seed)
    print(f"{a.label} ({result['samples_a']}) vs {b.label} ({result['samples_b']}): {describe(result)}")
    return {f"{args.sources[0]} vs {args.sources[1]}": result}


def fid_against_data(args: argparse.Namespace) -> dict:
    """A run's generator against its training data, and/or the real-data floor."""
    from ..metrics.evaluation import Evaluator, describe
    from ..metrics.sources import is_run
    from ..train.runs import open_run

    results, evaluators = {}, {}
    for path in args.sources:
        if not is_run(path):
            raise ValueError(f"sources: {path!r} is not a run folder (no config.yaml); to compare image folders "
                             f"or data:<dataset>, give two sources")
        opened = open_run(path, args.device)
        c = opened.config
        evaluator = Evaluator(opened.dataset, c.data, c.z_dim, args.samples, args.extractor, opened.device,
                              seed=c.seed if args.seed is None else args.seed, root=c.data_root)
        evaluators.setdefault(c.data, evaluator)
        if evaluator.extractor is not None:  # minutes for a large network on a CPU: say where the time went
            print(f"fastreg fid: {len(evaluator.real_features)} real images of {c.data} embedded with "
                  f"{evaluator.extractor.name} ({evaluator.setup_seconds:.1f} s, the extractor's set-up included)",
                  flush=True)
        result = evaluator(opened.sample)
        results[path] = {"step": opened.step, "samples": args.samples, **_provenance(evaluator), **result}
        print(f"{path} (step {opened.step}; {args.samples} generated): {describe(result)}")
    if args.floor:
        if not evaluators:
            from .. import data

            dataset = data.get_dataset(args.data, resolution=args.resolution or 32)
            evaluators[args.data] = Evaluator(dataset, args.data, 1, args.samples, args.extractor, args.device or "cpu",
                                              seed=args.seed or 0)
        for name, evaluator in evaluators.items():
            if evaluator.extractor is None:  # toy runs: no features, no floor
                continue
            floor = evaluator.real_floor()
            half = len(evaluator.real_features) // 2
            results[f"real-data floor: {name}"] = {"samples": half, **_provenance(evaluator), **floor}
            print(f"real-data floor, {name} ({half} vs {half} real): {describe(floor)}")
    return results


def _provenance(evaluator) -> dict:
    extractor = evaluator.extractor
    classifier = getattr(extractor, "classifier", None)
    return {"extractor": extractor.name if extractor else None, "resolution": getattr(extractor, "resolution", None),
            "real_samples": len(evaluator.real_features) if extractor else None,
            **({"classifier_held_out_count": classifier.held_out_count, "classifier_data_hash": classifier.data_hash}
               if classifier is not None else {})}
