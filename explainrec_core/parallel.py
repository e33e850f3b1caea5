"""Independent single-threaded jobs on one worker process per core.

The baselines and the meta-learner train tiny models on one torch thread each (a second thread made them slower:
`baselines.base.one_thread`), so a step that fits several of them one after another keeps all cores but one idle.
Their jobs are independent and seed themselves, so `run_jobs` hands them to a pool of spawned worker processes
(a fork of a process that holds torch's thread pools is not safe) and returns the results in the order of the
jobs, whatever order the workers finish in: the same results as one process.

`fn(shared, *job)` must be a module-level function (workers import it by name); `shared` is sent once to each
worker, not once per job.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def cpu_budget() -> int:
    """Cores this process may use: OMP_NUM_THREADS when set (a test worker's share), else its CPU affinity."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_shared: Any = None


def _start_worker(shared: Any) -> None:
    global _shared
    import torch

    torch.set_num_threads(1)  # one core per worker: the pool, not torch, spreads the work over the cores
    _shared = shared


def _call(fn: Callable, job: tuple) -> Any:
    return fn(_shared, *job)


def run_jobs(fn: Callable, shared: Any, jobs: Sequence[tuple], workers: int, *,
             cost: Callable[[tuple], float] | None = None,
             on_done: Callable[[tuple, Any], None] | None = None) -> list:
    """[fn(shared, *job) for job in jobs], on min(workers, len(jobs)) processes (here when that is 1). `cost`
    orders the jobs' starts, most expensive first, so the pool does not end with one worker busy and the rest
    idle; `on_done(job, result)` is called as each finishes (progress)."""
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        results = []
        for job in jobs:
            results.append(fn(shared, *job))
            if on_done:
                on_done(job, results[-1])
        return results
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else list(range(len(jobs)))
    results: list = [None] * len(jobs)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(shared,)) as pool:
        futures = {pool.submit(_call, fn, jobs[i]): i for i in order}
        try:
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_done:
                    on_done(jobs[i], results[i])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # a failed job ends the step without starting the rest
            raise
    return results
