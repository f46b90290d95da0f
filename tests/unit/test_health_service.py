import threading

from companion_memory.domain.health import HealthService


class FakeProbe:
    def __init__(self, name: str, *, fails: bool = False, blocks: threading.Event | None = None) -> None:
        self.name = name
        self._fails = fails
        self._blocks = blocks

    def check(self) -> None:
        if self._blocks is not None:
            self._blocks.wait(5)
        if self._fails:
            raise ConnectionRefusedError("connection refused to secret-host:5432 password=hunter2")


def test_all_dependencies_up_is_ok() -> None:
    report = HealthService([FakeProbe("postgres"), FakeProbe("redis")], timeout_s=1).check()
    assert report.healthy
    statuses = {name: dep.status for name, dep in report.dependencies.items()}
    assert statuses == {"postgres": "up", "redis": "up"}


def test_a_failing_dependency_degrades_and_names_only_the_error_type() -> None:
    report = HealthService([FakeProbe("postgres", fails=True), FakeProbe("redis")], timeout_s=1).check()
    assert not report.healthy
    postgres = report.dependencies["postgres"]
    assert postgres.status == "down"
    # The message of a driver error can hold hosts or credentials; the report never does.
    assert postgres.error == "ConnectionRefusedError"
    assert report.dependencies["redis"].status == "up"


def test_a_hanging_dependency_is_reported_down_at_the_deadline() -> None:
    release = threading.Event()
    try:
        report = HealthService([FakeProbe("dynamodb", blocks=release)], timeout_s=0.05).check()
    finally:
        release.set()
    assert report.dependencies["dynamodb"].status == "down"
    assert "timed out" in (report.dependencies["dynamodb"].error or "")
