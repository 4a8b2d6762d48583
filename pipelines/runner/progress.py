"""Progress while a build runs, from the job's Beam counters (namespace `flanmix`).

The stages count what they do with the progress metrics declared in `pipelines.counters`: global
names (`rendered`, `packed_rows`, `written_rows`, ...) and per-dataset names `STAGE/DATASET`
(`read/cot_gsm8k`, ...). Those same counters are what Dataflow shows on the job page; here they are
printed at most every `every` seconds:

    [   10s] packed_rows 0 | rendered 60,928 | spilled_runs 0 | written_rows 0
             synthetic_0          read 15,360  rendered 15,232

- Local FnApiRunner: `pipeline.run()` blocks until the job is done, so `LiveFnApiRunner` asks the
  running bundles for their counters (the Fn API's progress requests, `progress_request_frequency`)
  and adds the counters of finished bundles. Workers reached over gRPC (`multi_threading`,
  `multi_processing`) answer while a bundle runs; the `in_memory` worker runs each bundle synchronously,
  so with it counters appear as stages finish.
- Other runners (Dataflow, portable): `pipeline.run()` returns at once and the job's metrics are
  polled with `result.metrics()` until it finishes.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.runner import PipelineState

from pipelines.counters import NAMESPACE, STAGE_ORDER


def counters_from_results(metric_results) -> dict[str, int]:
    """{name: total} of the flanmix counters in a `result.metrics()` (committed, else attempted)."""
    totals: Counter = Counter()
    for r in metric_results.query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = r.committed if r.committed is not None else r.attempted
        totals[r.key.metric.name] += int(value or 0)
    return dict(totals)


def counters_from_monitoring_infos(infos) -> dict[str, int]:
    from apache_beam.runners.portability import portable_metrics

    counters = portable_metrics.from_monitoring_infos(infos, user_metrics_only=True)[0]
    totals: Counter = Counter()
    for key, value in counters.items():
        if key.metric.namespace == NAMESPACE:
            totals[key.metric.name] += int(value)
    return dict(totals)


def format_progress(counters: dict[str, int], elapsed: float, previous: dict[str, int] | None = None,
                    max_datasets: int = 20) -> str:
    """One line of global counters, then one line per dataset whose counters changed (at most
    `max_datasets`).

    >>> print(format_progress({"read/a": 5, "rendered/a": 4, "rendered": 4, "written_rows": 0}, 3.2))
    [    3s] rendered 4 | written_rows 0
             a                                read 5  rendered 4
    """
    previous = previous or {}
    glob = {k: v for k, v in counters.items() if "/" not in k}
    lines = [f"[{elapsed:6.0f}s] " + " | ".join(f"{k} {v:,}" for k, v in sorted(glob.items()))]
    per: dict[str, dict[str, int]] = {}
    for name, value in counters.items():
        if "/" in name:
            stage, dataset = name.split("/", 1)
            per.setdefault(dataset, {})[stage] = value
    changed = [d for d in sorted(per) if any(previous.get(f"{s}/{d}") != v for s, v in per[d].items())]
    for dataset in changed[:max_datasets]:
        cells = "  ".join(f"{stage} {value:,}" for stage, value in sorted(per[dataset].items(), key=_stage_order))
        lines.append(f"         {dataset[:32]:32} {cells}")
    if len(changed) > max_datasets:
        lines.append(f"         ... and {len(changed) - max_datasets} more datasets")
    return "\n".join(lines)


def _stage_order(item):
    stage = item[0]
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


class Printer:
    """Prints counters at most every `every` seconds (and only when they changed)."""

    def __init__(self, every: float, emit: Callable[[str], None] = print):
        self.every, self.emit = every, emit
        self.start = time.monotonic()
        self._last_time = float("-inf")
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def offer(self, counters: dict[str, int], force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not counters or counters == self._last or (not force and now - self._last_time < self.every):
                return
            self.emit(format_progress(counters, now - self.start, self._last))
            self._last, self._last_time = dict(counters), now


# --- local: FnApiRunner with progress requests ---------------------------------------------------

class _LiveCounters:
    """Counters of finished bundles plus the latest snapshot of each running one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._done: Counter = Counter()
        self._running: dict[str, dict[str, int]] = {}
        self._stopped: set[str] = set()

    def running(self, instruction: str, counters: dict[str, int]) -> None:
        with self._lock:
            if instruction not in self._stopped:
                self._running[instruction] = counters

    def stopped(self, instruction: str) -> None:
        with self._lock:
            self._stopped.add(instruction)

    def bundle_done(self, counters: dict[str, int]) -> None:
        with self._lock:
            self._done.update(counters)
            for instruction in self._stopped:
                self._running.pop(instruction, None)
            self._stopped.clear()

    def total(self) -> dict[str, int]:
        with self._lock:
            total = Counter(self._done)
            for snapshot in self._running.values():
                total.update(snapshot)
            return dict(total)


class LiveFnApiRunner(fn_runner.FnApiRunner):
    """Beam's FnApiRunner that prints the flanmix counters while the job runs.

    It asks running bundles for progress every `every` seconds (a constructor option of FnApiRunner)
    and, for the duration of `run_pipeline`, lets those progress replies reach a callback: Beam 2.77
    creates its ProgressRequester without one, so the class is swapped for a subclass that passes one
    (restored afterwards; if Beam's internals differ, the job runs without live progress)."""

    def __init__(self, every: float, emit: Callable[[str], None] = print):
        super().__init__(progress_request_frequency=max(0.1, min(every, 5.0)))
        self.printer = Printer(every, emit)
        self.live = _LiveCounters()

    def _execute_bundle(self, *args, **kwargs):
        result = super()._execute_bundle(*args, **kwargs)
        try:
            self.live.bundle_done(counters_from_monitoring_infos(result.process_bundle.monitoring_infos))
            self.printer.offer(self.live.total())
        except Exception:  # noqa: BLE001 - progress must never fail a build
            pass
        return result

    def run_pipeline(self, pipeline, options):
        original = getattr(fn_runner, "ProgressRequester", None)
        if original is None:
            return super().run_pipeline(pipeline, options)
        live, printer = self.live, self.printer

        class Requester(original):
            def __init__(self, worker_handler, instruction_id, frequency, callback=None):
                def report(progress):
                    live.running(instruction_id, counters_from_monitoring_infos(progress.monitoring_infos))
                    printer.offer(live.total())

                super().__init__(worker_handler, instruction_id, frequency, callback=report)
                self._flanmix_instruction = instruction_id

            def stop(self):
                super().stop()
                live.stopped(self._flanmix_instruction)

        fn_runner.ProgressRequester = Requester
        try:
            return super().run_pipeline(pipeline, options)
        finally:
            fn_runner.ProgressRequester = original


def runner_for(options, every: float):
    """The runner instance to give `beam.Pipeline`: a LiveFnApiRunner for the local FnApiRunner with
    progress on, else None (Beam picks the runner named in the options)."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    if every > 0 and isinstance(runner, str) and runner.rsplit(".", 1)[-1] == "FnApiRunner":
        return LiveFnApiRunner(every)
    return None


def run_and_report(pipeline, every: float, emit: Callable[[str], None] = print):
    """Run to completion, printing counters every `every` seconds (0: silent); returns the result.

    Raises if the job fails. The final counters are printed once at the end."""
    runner = pipeline.runner
    result = pipeline.run()
    if isinstance(runner, LiveFnApiRunner):
        result.wait_until_finish()
        runner.printer.offer(counters_from_results(result.metrics()), force=True)
        return result
    printer = Printer(every, emit) if every > 0 else None
    terminal = {PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED, PipelineState.UPDATED,
                PipelineState.DRAINED}
    while printer is not None:
        state = result.wait_until_finish(duration=int(every * 1000))
        try:
            printer.offer(counters_from_results(result.metrics()), force=state in terminal)
        except Exception:  # noqa: BLE001 - some runners have no metrics until the end
            pass
        if state in terminal or result.state in terminal:
            break
    state = result.wait_until_finish()
    if state is not None and state not in (PipelineState.DONE,) and state in terminal:
        raise RuntimeError(f"the job ended in state {state}")
    return result


class _DropKnownNoise:
    """Drops Beam worker log lines that say nothing actionable about a flanmix build."""

    NOISE = ("No semi_persistent_directory found",)

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.NOISE)


def quiet_known_beam_noise() -> None:
    """Called by the CLI: each multi_processing worker logs a warning about a directory Dataflow
    uses; hide that line (and only that one) from the user's terminal."""
    import logging

    logger = logging.getLogger("apache_beam.runners.portability.local_job_service")
    if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
        logger.addFilter(_DropKnownNoise())
