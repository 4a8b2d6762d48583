"""Portable runners (the Job API: PortableRunner, FlinkRunner, SparkRunner): a job whose workers
never start must end with a message, not hang.

With `--environment_type EXTERNAL` (a worker pool), `PROCESS` or `DOCKER`, the runner asks for SDK
workers and waits for them to connect. A worker that dies at start (a pool whose `python` lacks
apache_beam: `ModuleNotFoundError`, a container that cannot be pulled) is not reported to the
launcher: the job stays RUNNING forever. So before the build's job, `probe_workers` submits a
one-element probe job with the same options and waits at most `--worker_start_timeout` seconds
(`DEFAULT_WORKER_START_TIMEOUT`) for it to finish. Its function lives in flanmix, so a worker
that has Beam but not flanmix fails the probe with the import error instead. Past the limit the
probe job is cancelled and the build fails naming the environment and the limit; nothing is
written. `LOOPBACK` (the worker is the launcher itself) and a limit of 0 skip the probe.

The probe proves that workers start and can run flanmix's code; a worker pool that breaks later in
the job is not covered (the runner's own failure handling applies there).
"""
from __future__ import annotations

import threading

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from pipelines.errors import FlanmixError

DEFAULT_WORKER_START_TIMEOUT = 300.0  # a Docker worker may have to pull its image first
PORTABLE_RUNNERS = {"PortableRunner", "FlinkRunner", "SparkRunner", "PrismRunner"}
PROBED_ENVIRONMENTS = {"EXTERNAL", "PROCESS", "DOCKER"}


def _probe(element: int) -> str:
    """Runs on a worker: importing this module there is the point (flanmix is installed)."""
    import pipelines

    return f"{pipelines.__name__}:{element}"


def needs_probe(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    name = runner.rsplit(".", 1)[-1] if isinstance(runner, str) else type(runner).__name__
    environment = (options.view_as(PortableOptions).environment_type or "").upper()
    return name in PORTABLE_RUNNERS and environment in PROBED_ENVIRONMENTS


def _cancel_quietly(result) -> None:
    def cancel():
        try:
            result.cancel()
        except Exception:  # noqa: BLE001 - the job service may not answer; the build fails anyway
            pass

    thread = threading.Thread(target=cancel, name="flanmix-cancel-probe", daemon=True)
    thread.start()
    thread.join(10)


def probe_workers(options: PipelineOptions, timeout: float = DEFAULT_WORKER_START_TIMEOUT) -> None:
    """FlanmixError unless a probe job with these options finishes within `timeout` seconds (see
    the module docstring). Does nothing for runners and environments that need no probe."""
    if timeout <= 0 or not needs_probe(options):
        return
    portable = options.view_as(PortableOptions)
    where = f"--environment_type {portable.environment_type}" + (
        f" --environment_config {portable.environment_config}" if portable.environment_config else "")
    pipeline = beam.Pipeline(options=PipelineOptions.from_dictionary(options.get_all_options(drop_default=True)))
    _ = pipeline | "FlanmixProbe" >> beam.Create([0]) | "ImportFlanmix" >> beam.Map(_probe)
    result = pipeline.run()
    try:
        state = result.wait_until_finish(duration=int(timeout * 1000))
    except Exception as exc:  # noqa: BLE001 - the probe job failed on its worker: say why, in one line
        text = " ".join(str(exc).split())
        raise FlanmixError(f"the SDK workers ({where}) could not run flanmix's code: {text[-400:]}") from None
    if state != PipelineState.DONE:
        _cancel_quietly(result)
        raise FlanmixError(
            f"no SDK worker ran a one-element probe job within {timeout:g} s ({where}): the workers' Python needs "
            f"apache_beam {beam.__version__} and flanmix installed, and must reach the job service; "
            f"--worker_start_timeout SECONDS sets the limit (0: no probe)")
