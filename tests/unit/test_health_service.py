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


def test_a_probe_still_hanging_from_an_earlier_check_does_not_starve_the_next() -> None:
    # Given a dependency whose first probe hangs past the deadline and stays blocked
    release = threading.Event()

    class HangsOnce:
        name = "redis"
        calls = 0

        def check(self) -> None:
            HangsOnce.calls += 1
            if HangsOnce.calls == 1:
                release.wait(5)

    service = HealthService([HangsOnce()], timeout_s=0.2)
    try:
        assert service.check().dependencies["redis"].status == "down"
        # When the next check runs while the first probe is still blocked
        report = service.check()
        # Then the new probe ran at once instead of queueing behind the old one
        assert report.dependencies["redis"].status == "up"
    finally:
        release.set()


def test_a_probe_whose_client_cannot_be_built_reports_its_dependency_down() -> None:
    class UnbuildableClient:
        name = "postgres"

        def check(self) -> None:
            raise PermissionError("AccessDeniedException reading secret arn:aws:...:db-secret")

    report = HealthService([UnbuildableClient(), FakeProbe("redis")], timeout_s=1).check()
    assert report.dependencies["postgres"].status == "down"
    assert report.dependencies["postgres"].error == "PermissionError"
    assert report.dependencies["redis"].status == "up"
