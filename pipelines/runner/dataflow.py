"""`flanmix build --dataflow-check`: is this build ready for Dataflow? Answered offline.

Builds the real job with DataflowRunner and Beam's `--dry_run=True` (no network, no credentials, no
job submitted), then checks the portable pipeline Dataflow would receive:

- every environment is a Docker environment whose SDK container matches this Python and Beam
  version (what Dataflow's workers will run);
- every DoFn and CombineFn payload unpickles with Beam's own pickler (what each worker does first);
- the options are complete (`--setup_file` so workers install flanmix with its templates, schemas
  and vocabulary; `--no_save_main_session`), and no input or output is a local path a worker
  cannot see.

    >>> check = check_job(plan, vocab.model_proto, "gs://bucket/corpora/demo", [])
    >>> check.images
    ('gcr.io/cloud-dataflow/v1beta3/beam_python3.11_sdk:2.77.0',)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines.runner import beam_options, graph
from pipelines.errors import FlanmixError

# Filled in only where a real launch would find a default itself (gcloud's region; a default bucket,
# which needs the network). A missing --project fails the check, as it fails the launch.
PLACEHOLDERS = {
    "region": "us-central1",
    "temp_location": beam_options.DRY_RUN_TEMP,
}


@dataclass(frozen=True)
class DataflowCheck:
    images: tuple[str, ...]
    pickled_fns: int  # DoFn and CombineFn payloads that round-tripped through the pickler
    transforms: int
    options: tuple[str, ...]  # the Beam arguments the job was built with
    warnings: tuple[str, ...]  # what would stop a real run (local paths)

    def format(self) -> str:
        lines = [
            f"dataflow check: OK - {self.transforms} transforms, {self.pickled_fns} DoFn/CombineFn payloads "
            f"unpickle with Beam's pickler",
            f"  SDK container: {', '.join(self.images)}",
            f"  options: {' '.join(self.options)}",
        ]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def launch_args(beam_args: list[str]) -> list[str]:
    """The user's Beam arguments with DataflowRunner as the runner: what `flanmix build --runner
    DataflowRunner ...` would launch with."""
    return dry_run_args(beam_args, placeholders=False)[:-1]


def dry_run_args(beam_args: list[str], placeholders: bool = True) -> list[str]:
    """The user's Beam arguments for DataflowRunner with --dry_run=True; placeholders for the project,
    region and temp location the user did not give."""
    args, skip = [], False
    for a in beam_args:  # drop the user's runner: `--runner=X` or `--runner X`
        if skip:
            skip = False
        elif a == "--runner":
            skip = True
        elif not a.startswith("--runner="):
            args.append(a)
    args = ["--runner=DataflowRunner", *args, "--dry_run=True"]
    for name, value in PLACEHOLDERS.items() if placeholders else ():
        if not beam_options._has(args, name):
            args.append(f"--{name}={value}")
    return args


def expected_image() -> str:
    return f"beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:{beam.__version__}"


def _images(proto: beam_runner_api_pb2.Pipeline) -> tuple[str, ...]:
    images = []
    for env_id, env in sorted(proto.components.environments.items()):
        if env.urn != common_urns.environments.DOCKER.urn:
            raise FlanmixError(f"dataflow check: environment {env_id} is {env.urn}, not a Docker container")
        images.append(beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image)
    return tuple(dict.fromkeys(images))


def _unpickle_all(proto: beam_runner_api_pb2.Pipeline) -> int:
    count = 0
    for transform_id, transform in sorted(proto.components.transforms.items()):
        urn = transform.spec.urn
        fn = None
        if urn == common_urns.primitives.PAR_DO.urn:
            fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
        elif urn in (common_urns.composites.COMBINE_PER_KEY.urn, common_urns.composites.COMBINE_GLOBALLY.urn):
            fn = beam_runner_api_pb2.CombinePayload.FromString(transform.spec.payload).combine_fn
        if fn is None or fn.urn not in (python_urns.PICKLED_DOFN_INFO, python_urns.PICKLED_COMBINE_FN):
            continue
        try:
            pickler.loads(fn.payload)
        except Exception as exc:  # noqa: BLE001 - report which transform cannot be shipped
            raise FlanmixError(f"dataflow check: {transform.unique_name}: payload does not unpickle: {exc!r}") from None
        count += 1
    return count


def check_job(plan, model_proto: bytes, output_dir: str, beam_args: list[str]) -> DataflowCheck:
    """Build the job for Dataflow without submitting it and check it (see the module docstring).

    First the checks a real launch makes (`beam_options.check_launch`: Beam's option validation,
    local paths a worker cannot read): the check fails exactly where the launch would, with its
    message."""
    beam_options.check_launch(plan, output_dir, launch_args(beam_args))
    args = dry_run_args(beam_args)
    options = beam_options.pipeline_options(args)
    pipeline = beam.Pipeline(options=options)
    graph.construct(pipeline, plan, model_proto, output_dir)
    result = pipeline.run()
    proto = result.job.proto_pipeline
    images = _images(proto)
    wrong = [i for i in images if not i.endswith(expected_image())]
    if not images or wrong:
        raise FlanmixError(f"dataflow check: SDK container(s) {list(images)}; expected one ending in {expected_image()}")
    final_args = options.get_all_options(drop_default=True, retain_unknown_options=True)
    shown = tuple(f"--{k}={v}" for k, v in sorted(final_args.items()) if k in {
        "runner", "project", "region", "temp_location", "setup_file", "save_main_session", "sdk_container_image"})
    return DataflowCheck(
        images=images,
        pickled_fns=_unpickle_all(proto),
        transforms=len(proto.components.transforms),
        options=shown,
        warnings=(),
    )
