"""Read template.yaml: the single source of the functions, their routes, URLs, schedules and tables.

CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...) are kept as ``Intrinsic`` values; the
local tools only need literal properties and can see where a value is computed in AWS.
"""

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


@dataclass(frozen=True)
class Intrinsic:
    tag: str
    value: Any


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Intrinsic:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return Intrinsic(tag_suffix, value)


_CfnLoader.add_multi_constructor("!", _intrinsic)


# API Gateway's defaults for an HttpApi Lambda authorizer without ReauthorizeEvery.
DEFAULT_AUTHORIZER_TTL_SECONDS = 300
# Lambda's defaults when neither the function nor Globals say otherwise.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Authorizer:
    """An HttpApi Lambda authorizer as SAM declares it under ``Auth.Authorizers.<name>``."""

    name: str
    function: str  # logical id of the authorizer function
    identity_sources: tuple[str, ...] = ()  # e.g. $request.header.Authorization
    ttl_seconds: int = DEFAULT_AUTHORIZER_TTL_SECONDS  # 0 disables the cache
    payload_format: str = "2.0"
    simple_responses: bool = False


@dataclass(frozen=True)
class Route:
    function: str  # logical id
    method: str  # upper case, or ANY
    path: str  # API Gateway path, e.g. /companions/{companion_id}, or $default
    auth: Authorizer | None = None  # the Lambda authorizer guarding it (the local gateway runs it), or None


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_uri: Path
    handler: str  # module.attribute, e.g. app.lambda_handler
    environment: dict[str, Any] = field(default_factory=dict)
    function_url: bool = False
    schedules: tuple[dict[str, Any], ...] = ()
    memory_size: int = DEFAULT_MEMORY_MB
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    function_url_auth_type: str | None = None  # NONE or AWS_IAM when the function has a URL

    @property
    def handler_file(self) -> Path:
        module, _ = self.handler.rsplit(".", 1)
        return self.code_uri / f"{module.replace('.', '/')}.py"

    @property
    def handler_attribute(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Template:
    raw: dict[str, Any]
    functions: dict[str, Function]
    routes: tuple[Route, ...]

    def global_environment(self) -> dict[str, str]:
        """The literal (not computed) variables Globals gives every function."""
        function_globals = self.raw.get("Globals", {}).get("Function", {})
        variables = function_globals.get("Environment", {}).get("Variables", {})
        return {name: value for name, value in variables.items() if isinstance(value, str)}

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.raw.get("Resources", {}).items()
            if resource.get("Type") == resource_type
        }


def load(path: Path = TEMPLATE) -> Template:
    raw = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    globals_ = raw.get("Globals", {}).get("Function", {})
    apis = {name: res for name, res in raw["Resources"].items() if res["Type"] == "AWS::Serverless::HttpApi"}
    functions: dict[str, Function] = {}
    routes: list[Route] = []
    for name, resource in raw["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        environment = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        events = props.get("Events", {})
        functions[name] = Function(
            logical_id=name,
            code_uri=(path.parent / props.get("CodeUri", globals_.get("CodeUri", "."))).resolve(),
            handler=props.get("Handler", globals_.get("Handler", "app.lambda_handler")),
            environment=environment,
            function_url="FunctionUrlConfig" in props,
            function_url_auth_type=props.get("FunctionUrlConfig", {}).get("AuthType"),
            memory_size=_literal_int(props.get("MemorySize", globals_.get("MemorySize")), DEFAULT_MEMORY_MB),
            timeout=_literal_int(props.get("Timeout", globals_.get("Timeout")), DEFAULT_TIMEOUT_SECONDS),
            schedules=tuple(
                event.get("Properties", {})
                for event in events.values()
                if event.get("Type") in ("Schedule", "ScheduleV2")
            ),
        )
        for event in events.values():
            if event.get("Type") != "HttpApi":
                continue
            event_props = event.get("Properties", {})
            auth = _authorizer_for(event_props, apis)
            routes.append(
                Route(
                    function=name,
                    method=str(event_props.get("Method", "ANY")).upper(),
                    path=event_props["Path"],
                    auth=auth,
                )
            )
    return Template(raw=raw, functions=functions, routes=tuple(routes))


def _authorizer_for(event_props: dict[str, Any], apis: dict[str, dict[str, Any]]) -> Authorizer | None:
    """The Lambda authorizer guarding a route, following SAM's defaulting rules."""
    api_ref = event_props.get("ApiId")  # routes without ApiId join SAM's implicit API, which has no auth
    api = apis.get(api_ref.value, {}) if isinstance(api_ref, Intrinsic) else {}
    auth = api.get("Properties", {}).get("Auth", {})
    chosen = event_props.get("Auth", {}).get("Authorizer", auth.get("DefaultAuthorizer"))
    if chosen in (None, "NONE"):
        return None
    authorizer = auth.get("Authorizers", {}).get(chosen, {})
    arn = authorizer.get("FunctionArn")
    if not (isinstance(arn, Intrinsic) and arn.tag == "GetAtt"):
        raise ValueError(f"authorizer {chosen!r} is not a Lambda authorizer of this template")
    target = arn.value if isinstance(arn.value, str) else ".".join(arn.value)
    identity = authorizer.get("Identity", {})
    # SAM's Identity block becomes API Gateway identity-source expressions.
    sources = (
        *(f"$request.header.{h}" for h in identity.get("Headers", ())),
        *(f"$request.querystring.{q}" for q in identity.get("QueryStrings", ())),
        *(f"$context.{c}" for c in identity.get("Context", ())),
        *(f"$stageVariables.{v}" for v in identity.get("StageVariables", ())),
    )
    return Authorizer(
        name=chosen,
        function=target.split(".")[0],
        identity_sources=sources,
        ttl_seconds=_literal_int(identity.get("ReauthorizeEvery"), DEFAULT_AUTHORIZER_TTL_SECONDS),
        payload_format=str(authorizer.get("AuthorizerPayloadFormatVersion", "2.0")),
        simple_responses=bool(authorizer.get("EnableSimpleResponses", False)),
    )


def _literal_int(value: Any, default: int) -> int:
    """A literal integer property; a computed one (!Ref, !If...) is only known in AWS, so the default."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@cache
def default() -> Template:
    return load()
