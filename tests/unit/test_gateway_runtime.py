"""Running a handler in-process like the Lambda runtime, and the template facts it needs."""

import decimal
import json
import os
from pathlib import Path

import pytest

from localdev.invoke import load_env_file, main
from localdev.lambda_runtime import HandlerLoader, invoke, make_context, marshal
from localdev.template import load

FIXTURE = Path(__file__).parent.parent / "fixtures" / "gateway" / "template.yaml"
SECRET = "secret detail that must not reach the client"  # what the fixture's /boom raises


def test_memory_and_timeout_come_from_the_function_or_globals() -> None:
    functions = load(FIXTURE).functions
    assert (functions["EchoFunction"].memory_size, functions["EchoFunction"].timeout) == (256, 20)
    assert (functions["AuthorizerFunction"].memory_size, functions["AuthorizerFunction"].timeout) == (256, 5)


def test_authorizers_carry_identity_sources_ttl_and_response_mode() -> None:
    routes = {route.path: route for route in load(FIXTURE).routes}
    private = routes["/private/{proxy+}"].auth
    assert private is not None
    assert private.identity_sources == ("$request.header.Authorization",)
    assert private.ttl_seconds == 300
    assert private.simple_responses
    assert private.function == "AuthorizerFunction"
    uncached = routes["/uncached"].auth
    assert uncached is not None
    assert uncached.ttl_seconds == 0
    assert routes["/public/{item}"].auth is None  # Auth.Authorizer: NONE overrides the default


def test_the_context_looks_like_lambdas() -> None:
    function = load(FIXTURE).functions["EchoFunction"]
    context = make_context(function, "eu-west-1")
    assert context.function_name == "EchoFunction"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:EchoFunction"
    assert context.memory_limit_in_mb == 256
    assert context.log_group_name == "/aws/lambda/EchoFunction"
    assert "[$LATEST]" in context.log_stream_name
    # The function's 20 s, not Lambda's default 3 s; no tighter bound, which a loaded machine could miss.
    assert 3_000 < context.get_remaining_time_in_millis() <= 20_000
    assert make_context(function).aws_request_id != context.aws_request_id


def test_a_handler_module_loads_once_per_loader_under_its_own_name() -> None:
    functions = load(FIXTURE).functions
    loader = HandlerLoader()
    assert loader.handler(functions["EchoFunction"]) is loader.handler(functions["EchoFunction"])
    # Same file, two functions: two modules, as two Lambda functions never share state.
    assert loader.handler(functions["EchoFunction"]) is not loader.handler(functions["SecondUrlFunction"])
    assert loader.handler(functions["EchoFunction"]).__module__ == "lambda_EchoFunction"


def test_invoke_returns_the_answer_as_lambda_serialises_it() -> None:
    function = load(FIXTURE).functions["EchoFunction"]
    event = {"rawPath": "/x/plain"}
    assert invoke(HandlerLoader(), function, event) == {"plain": True}
    assert marshal({"n": decimal.Decimal("1.5"), "t": (1, 2)}) == {"n": 1.5, "t": [1, 2]}
    with pytest.raises(TypeError):
        marshal({1, 2})


def test_the_env_file_fills_in_without_overriding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "stack.env"
    env.write_text("# comment\nexport A_TEST_KEY=from-file\nB_TEST_KEY='quoted'\nC_TEST_KEY=x=y\n\n")
    monkeypatch.setenv("A_TEST_KEY", "already-set")
    for key in ("B_TEST_KEY", "C_TEST_KEY"):
        monkeypatch.delenv(key, raising=False)
    load_env_file(env)
    assert os.environ["A_TEST_KEY"] == "already-set"
    assert os.environ["B_TEST_KEY"] == "quoted"
    assert os.environ["C_TEST_KEY"] == "x=y"
    for key in ("B_TEST_KEY", "C_TEST_KEY"):
        monkeypatch.delenv(key)


def test_the_invoke_cli_prints_the_answer_and_fails_on_an_exception(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"rawPath": "/x/plain"}))
    bad.write_text(json.dumps({"rawPath": "/boom"}))
    common = ["--template", str(FIXTURE), "--env-file", str(tmp_path / "none.env")]
    assert main(["EchoFunction", str(good), *common]) == 0
    assert json.loads(capsys.readouterr().out) == {"plain": True}
    assert main(["EchoFunction", str(bad), *common]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err.strip()
        == "EchoFunction raised RuntimeError: secret detail that must not reach the client"
    )
    assert main(["EchoFunction", str(bad), *common, "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err
