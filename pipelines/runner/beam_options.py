"""Beam options for a build: flanmix's defaults for the local runner and Dataflow, and the checks that
a remote runner's workers can reach the build's inputs and output (see `runner.graph`)."""
from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import resources
from pipelines.errors import FlanmixError
from pipelines.planning.plan import BuildPlan

LOCAL_RUNNER = "FnApiRunner"  # Beam's direct runner without the Prism download attempt
LOCAL_RUNNERS = {None, "FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner"}
# Below this much source data one process beats N: starting Beam's worker processes and loading the
# job into each cost 2-10 s on a 2-core machine (demo: 1.7 s -> 3.8 s; CoT, 33k examples: 2.8 s -> 5.3 s;
# 117 MB of Flan-like sources, benchmarks/scale.py: 15.1 s -> 14.7 s, at twice the memory; 1.2 GB:
# 144 s -> 100 s). Parity near 120 MB, where one process needs half the memory: 128 MiB.
MULTIPROCESS_MIN_SOURCE_BYTES = 128 * 1024 * 1024


def _flag(args: list[str], name: str) -> str | None:
    """The value of --name / --name=value in a Beam argument list (last one wins), else None."""
    value = None
    for i, a in enumerate(args):
        if a == f"--{name}":
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "true"
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def _has(args: list[str], *names: str) -> bool:
    return any(_flag(args, n) is not None for n in names)


def runner_name(beam_args: list[str]) -> str | None:
    runner = _flag(beam_args, "runner")
    return runner.rsplit(".", 1)[-1] if runner else None


def is_local(beam_args: list[str]) -> bool:
    return runner_name(beam_args) in LOCAL_RUNNERS


def default_local_args(plan: BuildPlan, cores: int | None = None) -> list[str]:
    """`flanmix build`'s default parallelism: all cores (Beam worker processes) once the sources are
    big enough to repay the processes' start-up, one in-process worker below that. The in-process
    worker talks to the runner over gRPC (`multi_threading` with one worker): as fast as `in_memory`
    here (the demo: 4.0-4.8 s either way), and unlike `in_memory` it answers progress requests while
    a bundle runs, so `--progress` can show live counters."""
    cores = cores or os.cpu_count() or 1
    source_bytes = sum(s.size_bytes for s in plan.sources)
    if cores > 1 and source_bytes >= MULTIPROCESS_MIN_SOURCE_BYTES:
        return ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
    return ["--direct_running_mode=multi_threading", "--direct_num_workers=1"]


class BuildOptionsView(PipelineOptions):
    """PipelineOptions that make each view class once.

    Beam builds a view (`view_as`) by constructing an argparse parser for the view's class and parsing
    the flags again, and it asks for views on every `Pipeline.apply` and runner step: about 170 views,
    0.37 s of the 0.42 s it takes to wire a build's job. Views of one options object share their
    values (`_all_options`), so handing back the view made first is the same answer; the cache is
    not pickled (`__getstate__`), so workers get plain options."""

    def view_as(self, cls):
        views = self.__dict__.get("_views")
        if views is None:
            views = {}
            object.__setattr__(self, "_views", views)
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def pipeline_options(beam_args: list[str], plan: BuildPlan | None = None, all_cores: bool = False) -> PipelineOptions:
    """Beam options with flanmix's defaults filled in where the user gave none (see the module doc).

    `all_cores`: for a local runner without --direct_running_mode / --direct_num_workers, use
    `default_local_args(plan)` (what `flanmix build` does; library callers get Beam's default)."""
    return BuildOptionsView(resolved_args(beam_args, plan, all_cores))


def resolved_args(beam_args: list[str], plan: BuildPlan | None = None, all_cores: bool = False) -> list[str]:
    """The Beam arguments `pipeline_options` builds from: the user's plus flanmix's defaults."""
    args = list(beam_args)
    runner = runner_name(args)
    if runner and "dask" in runner.lower():
        raise FlanmixError(
            "DaskRunner is not supported: in Beam 2.77 it silently loses data written through file sinks "
            "(only the last partition's writes are finalised; see README, 'Running at scale'). Use the local "
            "runner, DataflowRunner, or Flink/Spark through PortableRunner."
        )
    if runner is None:
        args.append(f"--runner={LOCAL_RUNNER}")
    if is_local(args):
        if all_cores and plan is not None and not _has(args, "direct_running_mode", "direct_num_workers"):
            args.extend(default_local_args(plan))
    elif runner == "DataflowRunner":
        if not _has(args, "setup_file", "sdk_container_image", "extra_package", "extra_packages", "requirements_file"):
            setup_py = resources.setup_file()
            if setup_py is None:
                raise FlanmixError(
                    "DataflowRunner: workers need the flanmix package; pass --setup_file PATH/TO/flanmix/setup.py "
                    "(from a checkout), --extra_package flanmix-X.tar.gz, or --sdk_container_image with flanmix installed"
                )
            args.append(f"--setup_file={setup_py}")
        if not _has(args, "save_main_session", "no_save_main_session"):
            args.append("--no_save_main_session")  # every DoFn lives in the installed package
    return args


LOCATION_KEYS = ("path", "paths", "data_dir", "data_files", "_builder_dir")  # loader args naming files


def _local_locations(args) -> list[str]:
    """The file locations in a source's loader args that are local paths (not gs://, s3://, ...)."""
    found = []
    for key in LOCATION_KEYS:
        value = args.get(key)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item and "://" not in item:
                found.append(item)
    return found


def remote_problems(plan: BuildPlan, output_dir: str, beam_args: list[str]) -> list[str]:
    """Why a non-local runner's workers could not run this build (local paths they cannot see)."""
    if is_local(beam_args):
        return []
    problems = []
    if "://" not in output_dir:
        problems.append(f"--output {output_dir} is a local path; {runner_name(beam_args)} workers write to a bucket (gs://, s3://)")
    local = sorted({s.dataset for s in plan.sources if any(True for _ in _local_locations(s.args))})
    if local:
        problems.append(
            f"{len(local)} dataset(s) read local files ({', '.join(local[:5])}{', ...' if len(local) > 5 else ''}); "
            f"copy the data to a bucket and point the catalog entries' loader.args.path there"
        )
    return problems



def set_filesystem_options(beam_args: list[str]) -> None:
    """Give the launcher's FileSystems the job's storage options (S3 endpoint and keys, GCP project)."""
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(PipelineOptions(list(beam_args)))



DRY_RUN_TEMP = "gs://flanmix-dry-run/tmp"


def validation_errors(beam_args: list[str]) -> list[str]:
    """What Beam's own option validation says about these arguments for their runner: the errors
    `beam.Pipeline(options=...)` raises as "Pipeline has validations errors" (a malformed
    --project, a local --temp_location for Dataflow, ...), each as one line. Local runners: none
    checked here (they have nothing to launch). Without a gs:// --temp_location or
    --staging_location Dataflow would create a default bucket, which needs the network and the
    project's credentials: offline that cannot be judged, so a placeholder stands in for it."""
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.runner import create_runner

    args = resolved_args(list(beam_args))
    if is_local(args):
        return []
    if runner_name(args) == "DataflowRunner" and not any(
            str(_flag(args, name) or "").startswith("gs://") for name in ("temp_location", "staging_location")):
        args.append(f"--temp_location={DRY_RUN_TEMP}")  # the launch would try a default bucket (online)
    # --dry_run only skips the one online step of validation (a bucket's soft-delete policy)
    options = PipelineOptions([*args, "--dry_run=True"])
    try:
        runner = create_runner(options.view_as(StandardOptions).runner)
        errors = PipelineOptionsValidator(options, runner).validate()
    except Exception as exc:  # noqa: BLE001 - an unknown runner name, a value Beam cannot parse
        return [" ".join(str(exc).split())]
    return [" ".join(str(e).split()) for e in errors]


def launch_problems(plan: BuildPlan, output_dir: str, beam_args: list[str]) -> list[str]:
    """Why launching this build on its (non-local) runner would be refused before any work runs:
    Beam's option validation, and for Dataflow the local paths its workers cannot read. The same
    list decides `flanmix build` and `flanmix build --dataflow-check`."""
    problems = validation_errors(beam_args)
    if runner_name(beam_args) == "DataflowRunner":
        problems += remote_problems(plan, output_dir, beam_args)
    return problems


def check_launch(plan: BuildPlan, output_dir: str, beam_args: list[str]) -> None:
    """FlanmixError with one line naming every `launch_problems` entry, if there are any."""
    problems = launch_problems(plan, output_dir, beam_args)
    if problems:
        raise FlanmixError(f"{runner_name(beam_args)} cannot run this build: " + "; ".join(problems))
