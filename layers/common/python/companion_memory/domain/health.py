"""Reachability of every backing service, probed in parallel with one overall deadline."""

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, TimeoutError, wait

from companion_memory.models.health import DependencyHealth, HealthReport
from companion_memory.ports import DependencyProbe


class HealthService:
    def __init__(self, probes: Sequence[DependencyProbe], timeout_s: float) -> None:
        self._probes = probes
        self._timeout_s = timeout_s

    def check(self) -> HealthReport:
        started = time.perf_counter()
        # Probes run side by side, so one slow dependency costs the deadline once, not per probe. Each
        # check has its own threads: a probe still hanging from an earlier check must not make this one
        # queue and time out.
        executor = ThreadPoolExecutor(max_workers=max(1, len(self._probes)), thread_name_prefix="health")
        try:
            futures = {probe.name: executor.submit(_timed, probe) for probe in self._probes}
            wait(futures.values(), timeout=self._timeout_s)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        results: dict[str, DependencyHealth] = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=0)
            except TimeoutError:
                elapsed_ms = (time.perf_counter() - started) * 1000
                results[name] = DependencyHealth(
                    status="down",
                    latency_ms=round(elapsed_ms, 1),
                    error=f"timed out after {self._timeout_s}s",
                )
        status = "ok" if all(r.status == "up" for r in results.values()) else "degraded"
        return HealthReport(status=status, dependencies=results)


def _timed(probe: DependencyProbe) -> DependencyHealth:
    started = time.perf_counter()
    try:
        probe.check()
    except Exception as exc:  # a probe reports any failure as "down"; the type name is enough to act on
        return DependencyHealth(status="down", latency_ms=_ms_since(started), error=type(exc).__name__)
    return DependencyHealth(status="up", latency_ms=_ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
